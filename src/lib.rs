//! sluice: a PostgreSQL connection pooler.
//!
//! The binary is a thin shell around [`run`], so tests and benchmarks start the pooler in process on
//! `127.0.0.1:0`. Modules: [`config`] (TOML), [`client`] (one client session: login and relay),
//! [`pool`] (server connections per database and user), [`server`] (one PostgreSQL connection),
//! [`params`] (session parameter tracking), [`cancel`] (cancel keys); observability: [`metrics`]
//! (counters, gauges, `/metrics`, `/healthz`, `/readyz`), [`clients`] (live client sessions),
//! [`admin`] (the admin console).
#![deny(rust_2018_idioms)]
#![forbid(unsafe_code)]

pub mod admin;
pub mod buffers;
pub mod cancel;
pub mod client;
pub mod clients;
pub mod clock;
pub mod config;
pub mod metrics;
pub mod net;
pub mod params;
pub mod pool;
pub mod prepared;
pub mod router;
pub mod server;

pub use config::Config;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, RwLock};
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
    /// The configuration in force (RELOAD swaps it).
    config: RwLock<Arc<Config>>,
    users: RwLock<Arc<HashMap<String, Arc<UserAuth>>>>,
    pub pools: DashMap<PoolKey, Arc<Pool>>,
    pub cancels: Arc<CancelMap>,
    /// Seeds mock SCRAM secrets for unknown users, so repeated tries see a stable salt.
    pub mock_secret: [u8; 16],
    /// Live client sessions (SHOW CLIENTS, KILL).
    pub clients: Arc<clients::ClientList>,
    /// Histograms for `/metrics`; None when `metrics_listen` is off.
    pub histograms: Option<metrics::HistogramRecorder>,
    /// Admin console state (PAUSE, SHUTDOWN).
    pub console: admin::Console,
    /// Serialises the creation of pools.
    creating: std::sync::Mutex<()>,
}

impl Shared {
    pub fn new(config: Config) -> Arc<Shared> {
        let users = users_of(&config);
        let histograms = config
            .metrics_addr()
            .map(|_| metrics::HistogramRecorder::new());
        Arc::new(Shared {
            histograms,
            clients: Arc::default(),
            console: admin::Console::default(),
            config: RwLock::new(Arc::new(config)),
            users: RwLock::new(Arc::new(users)),
            pools: DashMap::new(),
            cancels: Arc::new(CancelMap::default()),
            mock_secret: rand::random(),
            creating: std::sync::Mutex::new(()),
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A configured user, with its secrets.
    pub fn user(&self, name: &str) -> Option<Arc<UserAuth>> {
        self.users
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// Reads the config file again and applies it (admin console RELOAD). Returns what changed
    /// and what waits for a restart, one line each; on an invalid file, the error (naming the
    /// key at fault) and nothing changes.
    pub fn reload(&self) -> Result<Vec<String>, String> {
        let old = self.config();
        let path = old
            .source
            .clone()
            .ok_or("sluice was started without a config file: nothing to reload")?;
        let mut new = Config::load(&path).map_err(|e| e.to_string())?;
        let mut notes = Vec::new();
        // Sockets and threads are set up once.
        if new.pooler.listen != old.pooler.listen {
            notes.push(format!(
                "pooler.listen changed to {:?}: takes effect at restart",
                new.pooler.listen
            ));
            new.pooler.listen = old.pooler.listen.clone();
        }
        if new.pooler.metrics_listen != old.pooler.metrics_listen {
            notes.push("pooler.metrics_listen changed: takes effect at restart".to_owned());
            new.pooler.metrics_listen = old.pooler.metrics_listen.clone();
        }
        if new.pooler.workers != old.pooler.workers {
            notes.push("pooler.workers changed: takes effect at restart".to_owned());
            new.pooler.workers = old.pooler.workers;
        }
        if new.pooler.max_client_conn != old.pooler.max_client_conn {
            notes.push("pooler.max_client_conn changed: takes effect at restart".to_owned());
            new.pooler.max_client_conn = old.pooler.max_client_conn;
        }
        let users = users_of(&new);
        let new = Arc::new(new);
        *self.users.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(users);
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = new.clone();

        // Existing pools: size and server address apply in place; anything else that changed
        // applies to pools made from now on.
        let pools: Vec<Arc<Pool>> = self.pools.iter().map(|e| e.value().clone()).collect();
        for pool in pools {
            let Some(db) = new.databases.get(&pool.key.database) else {
                notes.push(format!(
                    "database {} removed: no new sessions; connected ones continue",
                    pool.key.database
                ));
                continue;
            };
            let Some(auth) = self.user(&pool.key.user) else {
                continue;
            };
            let (target, settings) =
                pool_parts(&new, db, &pool.key.database, &pool.key.user, &auth);
            let (target, size) = match pool.key.role {
                pool::Role::Primary => (target, settings.size),
                pool::Role::Replica(i) => match db.replicas.get(i) {
                    Some(r) => {
                        let (target, settings) = replica_parts(r, &target, &settings);
                        (target, settings.size)
                    }
                    None => continue,
                },
            };
            if pool.size() != size {
                notes.push(format!(
                    "pool {}: pool_size {} -> {size}",
                    pool.key,
                    pool.size()
                ));
                pool.set_size(size);
            }
            if pool.set_target(target) {
                notes.push(format!(
                    "pool {}: server changed; connections are remade as they are given back",
                    pool.key
                ));
                pool.reconnect();
                pool.close_idle(metrics::CloseReason::Admin);
            }
        }
        let (od, nd) = (&old.databases, &new.databases);
        for (name, db) in nd {
            match od.get(name) {
                None => notes.push(format!("database {name} added")),
                Some(o) if o.replicas != db.replicas => notes.push(format!(
                    "database {name}: replicas changed: take effect at restart"
                )),
                _ => {}
            }
        }
        if old.users != new.users {
            notes.push("users reloaded".to_owned());
        }
        tracing::info!(changes = notes.len(), "configuration reloaded");
        for n in &notes {
            tracing::info!("reload: {n}");
        }
        Ok(notes)
    }
}

/// A primary pool's server target and settings, from the config.
fn pool_parts(
    config: &Config,
    db: &config::DatabaseConfig,
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
    (target, settings)
}

/// A replica pool's server target and settings: the primary's, at the replica's address and with
/// its own size when it has one.
fn replica_parts(
    r: &config::ReplicaConfig,
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

fn users_of(config: &Config) -> HashMap<String, Arc<UserAuth>> {
    {
        config
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
            .collect()
    }
}

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
        let statements = Arc::default();
        let (router, replicas) = match self.router_for(db, &key, &target, &settings, &statements) {
            Some((router, replicas)) => (Some(router), replicas),
            None => (None, Vec::new()),
        };
        let pool = Pool::with_parts(key.clone(), target, settings, statements, router, replicas);
        self.attach(&pool);
        self.pools.insert(key, pool.clone());
        Ok(pool)
    }

    /// The router (with the replicas' health checkers) and replica pools of a primary pool, when
    /// its database lists replicas (transaction mode only: a session-mode client keeps one
    /// server throughout).
    fn router_for(
        self: &Arc<Self>,
        db: &config::DatabaseConfig,
        key: &PoolKey,
        primary: &ServerTarget,
        settings: &PoolSettings,
        statements: &Arc<prepared::PoolStatements>,
    ) -> Option<(Arc<router::Router>, Vec<Arc<Pool>>)> {
        if db.replicas.is_empty() || settings.mode != PoolMode::Transaction {
            return None;
        }
        let health_target = |t: &ServerTarget| router::ReplicaTarget {
            host: t.host.clone(),
            port: t.port,
            dbname: t.dbname.clone(),
            user: t.user.clone(),
            password: t.password.clone(),
        };
        let policy = router::HealthPolicy {
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
                role: pool::Role::Replica(i),
                ..key.clone()
            };
            health.push(router::spawn_checker(
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
            router::ReplicaSet::new(db.load_balance, health).with_primary_reads(db.primary_reads);
        let router = Arc::new(router::Router {
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
            stats: router::RouteStats::default(),
        });
        Some((router, pools))
    }
}

impl Shared {
    /// Every pool, in a stable order (by key).
    pub fn pool_list(&self) -> Vec<Arc<Pool>> {
        let mut v: Vec<Arc<Pool>> = self.pools.iter().map(|e| e.value().clone()).collect();
        v.sort_by(|a, b| a.key.cmp(&b.key));
        v
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

impl metrics::http::Source for Shared {
    fn render(&self, draining: bool) -> String {
        let pools = self.pool_list();
        let samples: Vec<metrics::PoolSample<'_>> = pools.iter().map(|p| p.sample()).collect();
        let globals = metrics::Globals {
            client_connections: self.clients.connections(),
            max_client_connections: self.config().pooler.max_client_conn,
            draining,
        };
        metrics::prometheus::render(&samples, &globals, self.histograms.as_ref())
    }

    fn config(&self) -> Arc<Config> {
        Shared::config(self)
    }
}

/// The background tasks of observation; aborted when dropped (at the end of [`run`]).
struct Observer {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Observer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Starts the stats upkeep and, with `metrics_listen`, the HTTP endpoint (binding it now, so a
/// taken port fails start-up).
async fn observe(shared: &Arc<Shared>, drain: watch::Receiver<bool>) -> std::io::Result<Observer> {
    let mut tasks = vec![tokio::spawn(upkeep(shared.clone()))];
    if let Some(addr) = shared.config().metrics_addr() {
        tasks.push(metrics::http::start(addr, shared.clone(), drain).await?);
    }
    Ok(Observer { tasks })
}

async fn upkeep(shared: Arc<Shared>) {
    // Samples pile up between folds (a few MB a second at 100k transactions/s): fold often.
    let tick = Duration::from_secs(1);
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_period = Instant::now();
    for pool in shared.pool_list() {
        pool.counters.roll_period(last_period);
    }
    loop {
        interval.tick().await;
        if let Some(h) = &shared.histograms {
            h.upkeep();
        }
        let now = Instant::now();
        if now.duration_since(last_period) >= metrics::STATS_PERIOD {
            last_period = now;
            for pool in shared.pool_list() {
                pool.counters.roll_period(now);
            }
        }
    }
}

/// Serves clients on `listener` until `shutdown` completes, then drains: idle clients are told the
/// pooler is shutting down (57P01), clients inside a transaction may finish it, and whatever is
/// left after `shutdown_timeout` is closed.
/// The tokio runtime `config` asks for (`pooler.workers`). One worker is a current-thread
/// runtime, like PgBouncer's single event loop: tasks never move between threads and a wake-up
/// never has to reach another core, which is the cheapest per transaction (bench/README.md).
/// More workers are a multi-thread runtime (0: one per CPU core).
pub fn runtime(config: &Config) -> std::io::Result<tokio::runtime::Runtime> {
    let workers = config.pooler.workers;
    let mut builder = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        if workers > 0 {
            b.worker_threads(workers);
        }
        b
    };
    builder.enable_all().build()
}

pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let shared = Shared::new(config);
    let (drain_tx, drain_rx) = watch::channel(false);
    let limit = Arc::new(Semaphore::new(shared.config().pooler.max_client_conn));
    let mut clients = JoinSet::new();
    let _observer = observe(&shared, drain_rx.clone()).await?;
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
    let grace = shared.config().pooler.shutdown_timeout;
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
    let config = shared.config();
    let p = &config.pooler;
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
