//! sluice: a PostgreSQL connection pooler.
//!
//! The binary is a thin shell around [`run`], so tests and benchmarks start the pooler in process on
//! `127.0.0.1:0`. Modules: [`config`] (TOML), [`client`] (one client session: login and relay),
//! [`pool`] (server connections per database and user), [`server`] (one PostgreSQL connection),
//! [`params`] (session parameter tracking), [`cancel`] (cancel keys); observability: [`stats`]
//! (counters and gauges per pool), [`registry`] (live clients and servers), [`exporter`]
//! (`/metrics`, `/healthz`, `/readyz`), [`admin`] (the admin console).
#![deny(rust_2018_idioms)]
#![forbid(unsafe_code)]

pub mod admin;
pub mod buffers;
pub mod cancel;
pub mod client;
pub mod config;
pub mod exporter;
pub mod params;
pub mod pool;
pub mod prepared;
pub mod registry;
pub mod router;
pub mod server;
pub mod stats;

pub use config::Config;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use dashmap::DashMap;
use sluice_proto::auth::{PasswordSecret, ScramVerifier};
use sluice_proto::backend::ErrorResponse;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::cancel::CancelMap;
use crate::config::{AuthType, PoolMode};
use crate::pool::{Pool, PoolKey, PoolSettings};
use crate::server::ServerTarget;

/// A configured user, with its SCRAM verifier derived once at start-up.
#[derive(Debug)]
pub struct UserAuth {
    pub name: String,
    pub auth_type: Option<AuthType>,
    pub pool_mode: Option<PoolMode>,
    pub secret: Option<PasswordSecret>,
    pub scram: Option<ScramVerifier>,
}

/// What every client task shares.
pub struct Shared {
    pub config: Config,
    pub users: HashMap<String, Arc<UserAuth>>,
    pub pools: DashMap<PoolKey, Arc<Pool>>,
    pub cancels: Arc<CancelMap>,
    /// Seeds mock SCRAM secrets for unknown users, so repeated tries see a stable salt.
    pub mock_secret: [u8; 16],
    /// Live client sessions (SHOW CLIENTS, KILL).
    pub clients: Arc<registry::Clients>,
    /// Histograms for `/metrics`; None when `metrics_listen` is off.
    pub exporter: Option<exporter::Exporter>,
    /// Admin console state (PAUSE, SHUTDOWN).
    pub console: admin::Console,
}

impl Shared {
    pub fn new(config: Config) -> Arc<Shared> {
        let users = config
            .users
            .iter()
            .map(|(name, u)| {
                let secret = u
                    .password
                    .as_deref()
                    .map(|p| PasswordSecret::parse(p).expect("validated"));
                let scram = secret.as_ref().and_then(|s| s.scram_verifier());
                let auth = UserAuth {
                    name: name.clone(),
                    auth_type: u.auth_type,
                    pool_mode: u.pool_mode,
                    secret,
                    scram,
                };
                (name.clone(), Arc::new(auth))
            })
            .collect();
        let exporter = config.metrics_addr().map(|_| exporter::Exporter::new());
        Arc::new(Shared {
            exporter,
            clients: Arc::default(),
            console: admin::Console::default(),
            config,
            users,
            pools: DashMap::new(),
            cancels: Arc::new(CancelMap::default()),
            mock_secret: rand::random(),
        })
    }

    /// The pool for (database, user), made on first use.
    pub fn pool_for(
        self: &Arc<Self>,
        database: &str,
        user: &str,
        auth: &UserAuth,
    ) -> Result<Arc<Pool>, String> {
        let key = PoolKey {
            database: database.to_owned(),
            user: user.to_owned(),
        };
        if let Some(pool) = self.pools.get(&key) {
            return Ok(pool.clone());
        }
        let db = self
            .config
            .databases
            .get(database)
            .ok_or_else(|| format!("database \"{database}\" does not exist"))?;
        let p = &self.config.pooler;
        let (server_user, password) = match &db.server_user {
            Some(su) => (su.clone(), db.server_password.clone()),
            None => (
                user.to_owned(),
                auth.secret
                    .as_ref()
                    .and_then(|s| s.plain())
                    .map(str::to_owned),
            ),
        };
        let target = ServerTarget {
            host: db.host.clone(),
            port: db.port,
            dbname: db.dbname.clone().unwrap_or_else(|| database.to_owned()),
            user: server_user,
            password,
        };
        let settings = PoolSettings {
            size: db.pool_size.unwrap_or(p.default_pool_size),
            mode: auth.pool_mode.or(db.pool_mode).unwrap_or(p.pool_mode),
            connect_timeout: p.server_connect_timeout,
            login_retry: p.server_login_retry,
            idle_timeout: p.server_idle_timeout,
            lifetime: p.server_lifetime,
            reset_query: p.server_reset_query.clone(),
            query_wait_timeout: p.query_wait_timeout,
            max_message_size: p.max_message_size,
            max_prepared_statements: p.max_prepared_statements,
        };
        let pool = self
            .pools
            .entry(key.clone())
            .or_insert_with(|| {
                let pool = Pool::new(key, target, settings);
                stats::attach(self, &pool);
                pool
            })
            .clone();
        Ok(pool)
    }
}

/// Serves clients on `listener` until `shutdown` completes, then drains: idle clients are told the
/// pooler is shutting down (57P01), clients inside a transaction may finish it, and whatever is
/// left after `shutdown_timeout` is closed.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let shared = Shared::new(config);
    let (drain_tx, drain_rx) = watch::channel(false);
    let limit = Arc::new(Semaphore::new(shared.config.pooler.max_client_conn));
    let mut clients = JoinSet::new();
    let _observer = exporter::start(&shared, drain_rx.clone()).await?;
    let maintenance = tokio::spawn(maintain(shared.clone()));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = shared.console.shutdown_requested() => break,
            accepted = listener.accept() => {
                let (mut stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: wait a moment rather than spin.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                match limit.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let shared = shared.clone();
                        let drain = drain_rx.clone();
                        clients.spawn(async move {
                            client::serve(shared, stream, peer, drain).await;
                            drop(permit);
                        });
                    }
                    Err(_) => {
                        clients.spawn(async move {
                            let mut out = BytesMut::new();
                            ErrorResponse::fatal(sluice_proto::sqlstate::TOO_MANY_CONNECTIONS, "sorry, too many clients already (max_client_conn)").write(&mut out);
                            let _ = stream.write_all(&out).await;
                        });
                    }
                }
            }
            Some(_) = clients.join_next(), if !clients.is_empty() => {}
        }
    }
    drop(listener);
    let _ = drain_tx.send(true);
    shared.clients.drain();
    let grace = shared.config.pooler.shutdown_timeout;
    let drained = tokio::time::timeout(grace, async {
        while clients.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            remaining = clients.len(),
            "shutdown_timeout reached; closing remaining clients"
        );
        clients.shutdown().await;
    }
    maintenance.abort();
    Ok(())
}

/// Closes idle server connections past their idle timeout or lifetime.
async fn maintain(shared: Arc<Shared>) {
    let p = &shared.config.pooler;
    let tick = (p.server_idle_timeout.min(p.server_lifetime) / 4)
        .clamp(Duration::from_millis(50), Duration::from_secs(5));
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let now = Instant::now();
        let pools: Vec<Arc<Pool>> = shared.pools.iter().map(|e| e.value().clone()).collect();
        for pool in pools {
            pool.close_expired(now);
        }
    }
}
