//! Making pools from the config: a (database, user) pool on first use, with its replica pools
//! and router when the database lists replicas, each given its histograms and its database's
//! PAUSE state.

use std::sync::Arc;

use super::{Shared, UserAuth};
use crate::config::{Config, DatabaseConfig, PoolMode, ReplicaConfig};
use crate::pool::{Pool, PoolKey, PoolSettings, Role, ServerCap, SessionTimeouts};
use crate::prepared::PoolStatements;
use crate::router::{HealthPolicy, ReplicaSet, ReplicaTarget, RouteStats, Router, spawn_checker};
use crate::server::{PassThrough, ServerTarget, TcpOptions};

impl Shared {
    /// The pool for (database, user), made on first use.
    pub fn pool_for(
        self: &Arc<Self>,
        database: &str,
        user: &str,
        auth: &UserAuth,
    ) -> Result<Arc<Pool>, String> {
        let key = PoolKey::primary(database, user);
        if let Some(pool) = self.pools.get(&key) {
            return Ok(pool.clone());
        }
        let config = self.config();
        let db = config
            .databases
            .get(database)
            .ok_or_else(|| format!("database \"{database}\" does not exist"))?;
        let (target, settings) = pool_parts(&config, db, database, user, auth);
        // One creation at a time, and no map entry held while creating: a primary pool's
        // replica pools go into the same map (a DashMap shard lock is not reentrant).
        let _creating = self.creating.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(pool) = self.pools.get(&key) {
            return Ok(pool.clone());
        }
        let statements = Arc::new(PoolStatements::new(self.limits.statements.clone()));
        let (router, replicas) = match self.router_for(db, &key, &target, &settings, &statements) {
            Some((router, replicas)) => (Some(router), replicas),
            None => (None, Vec::new()),
        };
        let pool = Pool::with_parts(key.clone(), target, settings, statements, router, replicas);
        pool.set_server_caps(vec![
            self.server_cap(
                "max_db_connections",
                database,
                config.max_db_connections(database),
            ),
            self.server_cap(
                "max_user_connections",
                user,
                config.max_user_connections(user),
            ),
        ]);
        pool.on_session_closed(self.client_caps.release_fn(database, user));
        self.attach(&pool);
        self.pools.insert(key, pool.clone());
        Ok(pool)
    }

    /// The router (with the replicas' health checkers) and replica pools of a primary pool, when
    /// its database lists replicas (transaction mode only: a session-mode client keeps one
    /// server throughout).
    fn router_for(
        self: &Arc<Self>,
        db: &DatabaseConfig,
        key: &PoolKey,
        primary: &ServerTarget,
        settings: &PoolSettings,
        statements: &Arc<PoolStatements>,
    ) -> Option<(Arc<Router>, Vec<Arc<Pool>>)> {
        if db.replicas.is_empty() || settings.mode != PoolMode::Transaction {
            return None;
        }
        let health_target = |t: &ServerTarget| ReplicaTarget {
            host: t.host.clone(),
            port: t.port,
            dbname: t.dbname.clone(),
            user: t.user.clone(),
            password: t.password.clone(),
        };
        let policy = HealthPolicy {
            interval: db.replica_check_interval,
            max_lag_time: (!db.max_replica_lag.is_zero()).then_some(db.max_replica_lag),
            max_lag_bytes: db.max_replica_lag_bytes,
            connect_timeout: self.config().pooler.server_connect_timeout,
        };
        let mut pools = Vec::new();
        let mut health = Vec::new();
        let mut addrs = Vec::new();
        for (i, r) in db.replicas.iter().enumerate() {
            let (target, s) = replica_parts(r, primary, settings);
            let rkey = PoolKey {
                role: Role::Replica(i),
                ..key.clone()
            };
            health.push(spawn_checker(
                health_target(primary),
                health_target(&target),
                policy.clone(),
            ));
            addrs.push(format!("{}:{}", r.host, r.port));
            let p = Pool::with_parts(
                rkey.clone(),
                target,
                s,
                statements.clone(),
                None,
                Vec::new(),
            );
            self.attach(&p);
            self.pools.insert(rkey, p.clone());
            pools.push(p);
        }
        let replicas =
            ReplicaSet::new(db.load_balance, health).with_primary_reads(db.primary_reads);
        let router = Arc::new(Router {
            replicas: Arc::new(replicas),
            addrs,
            read_your_writes: db.read_your_writes,
            read_your_writes_window: db.read_your_writes_window,
            writing_functions: db
                .writing_functions
                .iter()
                .map(|f| f.trim().to_lowercase())
                .collect(),
            fallback: db.replica_fallback,
            stats: RouteStats::default(),
        });
        Some((router, pools))
    }

    /// The cap `setting` of `name` (a database or a user), made on first use.
    fn server_cap(&self, setting: &'static str, name: &str, max: usize) -> Arc<ServerCap> {
        let key = match setting {
            "max_db_connections" => format!("db:{name}"),
            _ => format!("user:{name}"),
        };
        self.server_caps
            .entry(key)
            .or_insert_with(|| ServerCap::new(setting, name, max))
            .clone()
    }

    /// Gives a new pool its histograms and the PAUSE state of its database. Called once per pool.
    fn attach(&self, pool: &Pool) {
        if let Some(h) = &self.histograms {
            pool.counters.set_histograms(h.histograms(&pool.labels()));
        }
        if self.console.is_paused(&pool.key.database) {
            pool.pause.set(true);
        }
    }
}

/// A primary pool's server target and settings, from the config.
pub(crate) fn pool_parts(
    config: &Config,
    db: &DatabaseConfig,
    database: &str,
    user: &str,
    auth: &UserAuth,
) -> (ServerTarget, PoolSettings) {
    let p = &config.pooler;
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
        pass: pass_through(db, auth, password.is_none()),
        password,
        tls: config
            .tls
            .as_deref()
            .map(|t| t.server_for(database).clone())
            .unwrap_or_default(),
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
        cache_unnamed: db
            .cache_unnamed_statements
            .unwrap_or(p.cache_unnamed_statements),
        timeouts: SessionTimeouts::new(
            p.query_timeout,
            p.idle_transaction_timeout,
            p.client_idle_timeout,
        ),
        check_delay: p.server_check_delay,
        tcp: TcpOptions {
            keepalive: p.tcp_keepalive,
            keepidle: p.tcp_keepidle,
            keepintvl: p.tcp_keepintvl,
            keepcnt: p.tcp_keepcnt,
            user_timeout: p.tcp_user_timeout,
        },
        listen_queue_size: p.listen_queue_size,
    };
    (target, settings)
}

/// A replica pool's server target and settings: the primary's, at the replica's address and with
/// its own size when it has one.
pub(crate) fn replica_parts(
    r: &ReplicaConfig,
    primary: &ServerTarget,
    settings: &PoolSettings,
) -> (ServerTarget, PoolSettings) {
    let target = ServerTarget {
        host: r.host.clone(),
        port: r.port,
        ..primary.clone()
    };
    let mut s = settings.clone();
    if let Some(size) = r.pool_size {
        s.size = size;
    }
    (target, s)
}

/// What a pool without a password logs in with: the user's md5 secret when that is what sluice
/// holds (SCRAM keys come later, from a client's proof: `Pool::learn_scram_keys`).
fn pass_through(db: &DatabaseConfig, auth: &UserAuth, no_password: bool) -> PassThrough {
    let md5 = match &auth.secret {
        Some(sluice_proto::auth::PasswordSecret::Md5(m))
            if no_password && db.server_user.is_none() =>
        {
            Some(m.clone())
        }
        _ => None,
    };
    PassThrough { md5, scram: None }
}
