//! `auth_query`: users not in `[users]` looked up in PostgreSQL, cached for `auth_cache_ttl`.
//!
//! The lookup runs on a short-lived connection of its own (connect as `auth_user`, one query,
//! close): no pool is kept for it, since a looked-up secret is cached and a lookup is needed only
//! on a cache miss, after the TTL, or after a failed login (which forgets the entry, so a
//! password rotated in PostgreSQL is seen by the next login). Only users found are cached; an
//! unknown user is looked up at each try.
//!
//! The query gets the user name as `$1` and returns (name, secret); no row, or a NULL secret,
//! is no such user: the client gets the same exchange as any unknown user and fails with 28P01.
//! The default query ([`crate::config::DEFAULT_AUTH_QUERY`]) refuses expired passwords.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_proto::auth::PasswordSecret;
use tokio_postgres::NoTls;

use super::{Shared, UserAuth};
use crate::config::Config;

/// Looked-up users by (database, user).
#[derive(Default)]
pub struct AuthCache {
    entries: dashmap::DashMap<(String, String), (Arc<UserAuth>, Instant)>,
}

/// Where and how one database looks users up.
struct Lookup {
    host: String,
    port: u16,
    dbname: String,
    user: String,
    password: Option<String>,
    query: String,
}

fn lookup_for(config: &Config, database: &str) -> Option<Lookup> {
    let db = config.databases.get(database)?;
    let auth_user = db.auth_user.as_ref().or(config.pooler.auth_user.as_ref())?;
    let password = config.users.get(auth_user).and_then(|u| u.password.clone());
    Some(Lookup {
        host: db.host.clone(),
        port: db.port,
        dbname: db.dbname.clone().unwrap_or_else(|| database.to_owned()),
        user: auth_user.clone(),
        password,
        query: db
            .auth_query
            .clone()
            .unwrap_or_else(|| config.pooler.auth_query.clone()),
    })
}

impl Shared {
    /// The user as configured, or else as `auth_query` finds it for `database` (cached).
    /// `Ok(None)`: no such user. `Err`: the lookup itself failed (said without secrets).
    pub async fn find_user(
        &self,
        database: &str,
        user: &str,
    ) -> Result<Option<Arc<UserAuth>>, String> {
        if let Some(u) = self.user(user) {
            return Ok(Some(u));
        }
        let config = self.config();
        let Some(lookup) = lookup_for(&config, database) else {
            return Ok(None);
        };
        let key = (database.to_owned(), user.to_owned());
        let ttl = config.pooler.auth_cache_ttl;
        if let Some(e) = self.auth_cache.entries.get(&key)
            && e.1.elapsed() < ttl
        {
            return Ok(Some(e.0.clone()));
        }
        let timeout = config.pooler.server_connect_timeout;
        let found = run_lookup(&lookup, user, timeout).await?;
        match found {
            Some(auth) => {
                let auth = Arc::new(auth);
                self.auth_cache
                    .entries
                    .insert(key, (auth.clone(), Instant::now()));
                Ok(Some(auth))
            }
            None => {
                self.auth_cache.entries.remove(&key);
                Ok(None)
            }
        }
    }

    /// Forgets a looked-up user (after a failed login, so the next one asks PostgreSQL again).
    pub fn forget_user(&self, database: &str, user: &str) {
        self.auth_cache
            .entries
            .remove(&(database.to_owned(), user.to_owned()));
    }
}

async fn run_lookup(l: &Lookup, user: &str, timeout: Duration) -> Result<Option<UserAuth>, String> {
    let mut cfg = tokio_postgres::Config::new();
    cfg.host(&l.host)
        .port(l.port)
        .dbname(&l.dbname)
        .user(&l.user)
        .application_name("sluice-auth-query")
        .connect_timeout(timeout);
    if let Some(p) = &l.password {
        cfg.password(p);
    }
    let failed = |what: &str, e: tokio_postgres::Error| {
        format!(
            "auth_query as \"{}\" on {}:{}: {what}: {}",
            l.user,
            l.host,
            l.port,
            describe(&e)
        )
    };
    let work = async {
        let (client, connection) = cfg.connect(NoTls).await.map_err(|e| failed("connect", e))?;
        let task = tokio::spawn(async move {
            let _ = connection.await;
        });
        let row = client
            .query_opt(l.query.as_str(), &[&user])
            .await
            .map_err(|e| failed("query", e));
        task.abort();
        row
    };
    let row = tokio::time::timeout(timeout * 2, work)
        .await
        .map_err(|_| {
            format!(
                "auth_query on {}:{}: no answer within {:?}",
                l.host,
                l.port,
                timeout * 2
            )
        })??;
    let Some(row) = row else { return Ok(None) };
    if row.len() < 2 {
        return Err("auth_query must return two columns (name, secret)".into());
    }
    let secret: Option<String> = row
        .try_get(1)
        .map_err(|e| format!("auth_query's second column: {e}"))?;
    let Some(secret) = secret.filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    // A malformed secret is no usable secret: the login fails like a wrong password.
    let Ok(secret) = PasswordSecret::parse(&secret) else {
        return Ok(None);
    };
    let scram = secret.scram_verifier();
    Ok(Some(UserAuth {
        name: user.to_owned(),
        auth_type: None,
        pool_mode: None,
        secret: Some(secret),
        scram,
    }))
}

/// The server's message (with its SQLSTATE) or the client error; never a password.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}
