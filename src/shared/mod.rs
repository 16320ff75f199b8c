//! [`Shared`]: what every client task, the console and the background tasks share: the
//! configuration in force and its users, the pools, the cancel keys, the client list, the
//! histogram recorder and the console's state.
//!
//! * `pools.rs`: making a pool (and its replica pools and router) from the config;
//! * `users.rs`: [`UserAuth`], a user's parsed secrets;
//! * `console.rs`: [`Console`], paused databases and SHUTDOWN;
//! * `limits.rs`: [`Limits`], the memory budgets and the incident counters and log;
//! * `live.rs`: the JSON of the live page (`/api/live`) and `/debug/queries`.
//! * `lookup.rs`: `auth_query`, users not in `[users]` looked up in PostgreSQL and cached;
//! * `caps.rs`: [`ClientCaps`], client connections counted per database and per user (a login
//!   holds a guard; a session gives its places back through its pool).
//!
//! Owns: the pooler-wide state, passed by handle (no global). Must not: run sessions, accept
//! connections or apply a RELOAD (`listener`, `client`, `reload` do, through it).

mod caps;
mod console;
mod limits;
mod live;
mod lookup;
mod pools;
mod users;

pub use caps::{CapGuard, ClientCaps};
pub use console::Console;
pub use limits::Limits;
pub(crate) use pools::{pool_parts, replica_parts};
pub use users::{UserAuth, users_of};

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use dashmap::DashMap;

use crate::cancel::CancelMap;
use crate::clients::ClientList;
use crate::config::Config;
use crate::metrics::http::Source;
use crate::metrics::{Globals, HistogramRecorder, PoolSample, prometheus};
use crate::pool::{Pool, PoolKey};

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
    pub clients: Arc<ClientList>,
    /// Histograms for `/metrics`; None when `metrics_listen` is off.
    pub histograms: Option<HistogramRecorder>,
    /// Admin console state (PAUSE, SHUTDOWN).
    pub console: Console,
    /// Memory budgets, refusal counters and the incident log.
    pub limits: Arc<Limits>,
    /// Statistics per (database, user, query fingerprint): SHOW QUERIES, `/debug/queries`.
    pub query_stats: Arc<crate::diag::QueryStats>,
    /// The last minutes of each pool, for the live page (`live.rs`).
    pub live: crate::diag::live::LiveHistory,
    /// Users looked up with `auth_query`.
    pub auth_cache: lookup::AuthCache,
    /// Client connections per database and per user (`max_db_client_connections`, ...).
    pub client_caps: ClientCaps,
    /// Server connections across pools per database (`db:NAME`) and per user (`user:NAME`).
    pub server_caps: DashMap<String, Arc<crate::pool::ServerCap>>,
    /// Serialises the creation of pools.
    creating: std::sync::Mutex<()>,
}

impl Shared {
    pub fn new(config: Config) -> Arc<Shared> {
        let users = users_of(&config);
        let histograms = config.metrics_addr().map(|_| HistogramRecorder::new());
        let limits = Arc::new(Limits::new(&config));
        let query_stats = Arc::new(crate::diag::QueryStats::new(
            config.pooler.query_stats_max_entries,
        ));
        Arc::new(Shared {
            limits,
            query_stats,
            live: Default::default(),
            histograms,
            clients: Arc::default(),
            console: Console::default(),
            config: RwLock::new(Arc::new(config)),
            users: RwLock::new(Arc::new(users)),
            pools: DashMap::new(),
            cancels: Arc::new(CancelMap::default()),
            mock_secret: rand::random(),
            creating: std::sync::Mutex::new(()),
            auth_cache: lookup::AuthCache::default(),
            client_caps: ClientCaps::default(),
            server_caps: DashMap::new(),
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

    /// What a new session of `pool` makes its query-statistics tracker from, with the settings
    /// in force; None with `query_stats = false`.
    pub fn query_tracker(&self, pool: &crate::pool::Pool) -> Option<crate::diag::TrackerSeed> {
        let config = self.config();
        let p = &config.pooler;
        p.query_stats.then(|| crate::diag::TrackerSeed {
            store: self.query_stats.clone(),
            scope: pool.scope().clone(),
            settings: crate::diag::TrackerSettings {
                log_min_duration_us: p.log_min_duration.as_micros() as u64,
                log_parameters: p.log_parameters,
            },
        })
    }

    /// Puts `config` in force, with its users (RELOAD); returns it as shared.
    pub fn install(&self, config: Config) -> Arc<Config> {
        let users = users_of(&config);
        let config = Arc::new(config);
        *self.users.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(users);
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = config.clone();
        self.limits.apply(&config);
        for cap in self.server_caps.iter() {
            let max = match cap.setting {
                "max_db_connections" => config.max_db_connections(&cap.name),
                _ => config.max_user_connections(&cap.name),
            };
            cap.set_max(max);
        }
        config
    }

    /// Every pool, in a stable order (by key).
    /// Per pool: how many clients are idle in a transaction, and the longest one's time in
    /// that state (µs).
    pub fn idle_in_transaction(&self) -> HashMap<PoolKey, (usize, u64)> {
        let now = crate::clock::now_us();
        let mut out: HashMap<PoolKey, (usize, u64)> = HashMap::new();
        for c in self.clients.snapshot() {
            let (state, since) = c.activity.state();
            let Some(pool) = &c.pool else { continue };
            if state == crate::clients::activity::IDLE_IN_TRANSACTION {
                let e = out.entry(pool.key.clone()).or_default();
                e.0 += 1;
                e.1 = e.1.max(now.saturating_sub(since));
            }
        }
        out
    }

    pub fn pool_list(&self) -> Vec<Arc<Pool>> {
        let mut v: Vec<Arc<Pool>> = self.pools.iter().map(|e| e.value().clone()).collect();
        v.sort_by(|a, b| a.key.cmp(&b.key));
        v
    }
}

/// What `/metrics` and `/readyz` see of the pooler.
impl Source for Shared {
    fn render(&self, draining: bool) -> String {
        let pools = self.pool_list();
        let samples: Vec<PoolSample<'_>> = pools.iter().map(|p| p.sample()).collect();
        let globals = Globals {
            client_connections: self.clients.connections(),
            max_client_connections: self.config().pooler.max_client_conn,
            draining,
        };
        let mut page = prometheus::render(&samples, &globals, self.histograms.as_ref());
        self.limits.render(&mut page);
        let holders = self.idle_in_transaction();
        let rows: Vec<_> = pools
            .iter()
            .zip(&samples)
            .filter(|(p, _)| p.key.role == crate::pool::Role::Primary)
            .map(|(p, s)| {
                let (n, age) = holders.get(&p.key).copied().unwrap_or((0, 0));
                (&s.labels, n, age as f64 / 1e6)
            })
            .collect();
        prometheus::render_idle_in_transaction(&mut page, &rows);
        page
    }

    fn config(&self) -> Arc<Config> {
        Shared::config(self)
    }

    fn json(&self, path: &str) -> Option<String> {
        match path {
            "/api/live" => Some(self.live_json()),
            "/debug/queries" => Some(self.queries_json()),
            _ => None,
        }
    }
}
