//! Pool statistics for the admin console (SHOW POOLS, SHOW STATS) and Prometheus (`/metrics`).
//!
//! # Design
//! - **Counters** (transactions, queries, bytes, connections closed by reason, errors by SQLSTATE
//!   class...) are plain atomics in each pool's [`PoolMetrics`], bumped with relaxed adds on the
//!   hot path and read by both the console and the scrape. One source, so SHOW STATS and `/metrics`
//!   always agree, and they work whether or not `metrics_listen` is set.
//! - **Gauges** (clients active/waiting/idle, servers active/idle/connecting, longest wait) are not
//!   kept anywhere: they are computed when someone asks, from the pool's own state. They cannot
//!   drift under churn and return to exactly 0 when the load stops; the hot path pays nothing.
//! - **Histograms** (client wait, transaction and query duration) go through the `metrics` crate
//!   into a `metrics-exporter-prometheus` recorder owned by this pooler instance (see
//!   [`crate::exporter`]). Each pool registers its handles once, so recording is a lock-free push
//!   with no key lookup. No global recorder is installed: several poolers in one process (the
//!   tests) each keep their own numbers. With `metrics_listen` unset the handles are no-ops.
//!
//! Labels are bounded: database, user and role per pool, plus a close reason or an SQLSTATE class.
//! Nothing is labelled per client, query or statement.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use metrics::Histogram;
use tokio::sync::watch;

use crate::Shared;
use crate::clients::{ClientEntry, NewClient};
use crate::clock::now_us;
use crate::pool::{CheckoutError, Pool, ServerGuard};
use crate::server::list::ServerList;

/// Why a server connection was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Unused for `server_idle_timeout`.
    IdleTimeout,
    /// Older than `server_lifetime`.
    Lifetime,
    /// Given back in an unknown state: its client left mid-transaction, or a reset failed.
    Unclean,
    /// It died: an I/O error or the server closed it, while in use or while idle.
    ServerLost,
    /// PAUSE, KILL or RECONNECT on the admin console.
    Admin,
}

impl CloseReason {
    pub const ALL: [CloseReason; 5] = [
        CloseReason::IdleTimeout,
        CloseReason::Lifetime,
        CloseReason::Unclean,
        CloseReason::ServerLost,
        CloseReason::Admin,
    ];

    pub fn label(self) -> &'static str {
        match self {
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::Lifetime => "lifetime",
            CloseReason::Unclean => "unclean",
            CloseReason::ServerLost => "server_lost",
            CloseReason::Admin => "admin",
        }
    }
}

/// The histogram handles of one pool.
pub struct Histograms {
    pub wait: Histogram,
    pub transaction: Histogram,
    pub query: Histogram,
}

/// PAUSE state of one pool: checkouts wait while it is set.
pub struct Pause {
    flag: AtomicBool,
    tx: watch::Sender<bool>,
    /// Checkouts held by the pause: ticket → since when.
    held: Mutex<HashMap<u64, Instant>>,
    next_ticket: AtomicU64,
}

impl Default for Pause {
    fn default() -> Self {
        Pause {
            flag: AtomicBool::new(false),
            tx: watch::channel(false).0,
            held: Mutex::new(HashMap::new()),
            next_ticket: AtomicU64::new(0),
        }
    }
}

impl Pause {
    pub fn set(&self, paused: bool) {
        self.flag.store(paused, Ordering::SeqCst);
        self.tx.send_replace(paused);
    }

    pub fn is_set(&self) -> bool {
        self.flag.load(Ordering::Relaxed)
    }

    /// Returns at once unless paused; else when resumed.
    pub async fn wait(&self) {
        if !self.flag.load(Ordering::Relaxed) {
            return;
        }
        let ticket = self.next_ticket.fetch_add(1, Ordering::Relaxed);
        self.held_map().insert(ticket, Instant::now());
        struct Release<'a>(&'a Pause, u64);
        impl Drop for Release<'_> {
            fn drop(&mut self) {
                self.0.held_map().remove(&self.1);
            }
        }
        let _release = Release(self, ticket);
        let mut rx = self.tx.subscribe();
        // The sender lives as long as the pool, so this only ends when the flag clears.
        let _ = rx.wait_for(|paused| !*paused).await;
    }

    fn held_map(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Instant>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// (checkouts held, the oldest one's start).
    pub fn held(&self) -> (usize, Option<Instant>) {
        let map = self.held_map();
        (map.len(), map.values().min().copied())
    }
}

/// Per-second averages over the last completed stats period (SHOW STATS' avg_* columns).
#[derive(Debug, Clone, Copy, Default)]
pub struct Averages {
    pub xact_count: u64,
    pub query_count: u64,
    pub recv: u64,
    pub sent: u64,
    pub xact_time: u64,
    pub query_time: u64,
    pub wait_time: u64,
}

/// Totals of one pool at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Totals {
    pub xact_count: u64,
    pub query_count: u64,
    pub received: u64,
    pub sent: u64,
    pub xact_time_us: u64,
    pub query_time_us: u64,
    pub wait_time_us: u64,
    pub waits: u64,
}

impl Totals {
    pub fn add(&mut self, o: &Totals) {
        self.xact_count += o.xact_count;
        self.query_count += o.query_count;
        self.received += o.received;
        self.sent += o.sent;
        self.xact_time_us += o.xact_time_us;
        self.query_time_us += o.query_time_us;
        self.wait_time_us += o.wait_time_us;
        self.waits += o.waits;
    }

    fn averages_since(&self, before: &Totals, secs: f64) -> Averages {
        let d = |a: u64, b: u64| a.saturating_sub(b);
        let per_sec = |v: u64| (v as f64 / secs.max(1e-9)).round() as u64;
        let per = |v: u64, n: u64| v.checked_div(n).unwrap_or(0);
        let xacts = d(self.xact_count, before.xact_count);
        let queries = d(self.query_count, before.query_count);
        Averages {
            xact_count: per_sec(xacts),
            query_count: per_sec(queries),
            recv: per_sec(d(self.received, before.received)),
            sent: per_sec(d(self.sent, before.sent)),
            xact_time: per(d(self.xact_time_us, before.xact_time_us), xacts),
            query_time: per(d(self.query_time_us, before.query_time_us), queries),
            wait_time: per(
                d(self.wait_time_us, before.wait_time_us),
                d(self.waits, before.waits),
            ),
        }
    }
}

/// Everything counted about one pool, beyond `pool.stats` and `pool.prepared`.
#[derive(Default)]
pub struct PoolMetrics {
    pub transactions: AtomicU64,
    pub queries: AtomicU64,
    pub xact_time_us: AtomicU64,
    pub query_time_us: AtomicU64,
    /// Total time clients waited for a server connection, and how many waits (checkouts that
    /// got a connection or timed out).
    pub wait_time_us: AtomicU64,
    pub waits: AtomicU64,
    /// Bytes read from and written to this pool's clients.
    pub received: AtomicU64,
    pub sent: AtomicU64,
    /// Server connections lent out: the number of clients holding one.
    pub lent: AtomicUsize,
    /// Logged-in client sessions.
    pub sessions: AtomicUsize,
    closed: [AtomicU64; 5],
    errors: Mutex<BTreeMap<[u8; 2], u64>>,
    histograms: OnceLock<Histograms>,
    pub pause: Pause,
    /// Server connections made before this (µs since the Unix epoch) are closed when given back.
    reconnect_before: AtomicU64,
    pub servers: ServerList,
    /// (totals at the start of the last completed period, averages over it, current period start).
    period: Mutex<Option<(Totals, Instant, Averages)>>,
}

impl PoolMetrics {
    pub fn set_histograms(&self, h: Histograms) {
        let _ = self.histograms.set(h);
    }

    /// A checkout ended after `waited`, with a connection or a timeout.
    pub fn waited(&self, waited: Duration) {
        self.wait_time_us
            .fetch_add(waited.as_micros() as u64, Ordering::Relaxed);
        self.waits.fetch_add(1, Ordering::Relaxed);
        if let Some(h) = self.histograms.get() {
            h.wait.record(waited.as_secs_f64());
        }
    }

    pub fn closed(&self, reason: CloseReason) {
        self.closed[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn closed_count(&self, reason: CloseReason) -> u64 {
        self.closed[reason as usize].load(Ordering::Relaxed)
    }

    /// An error (its SQLSTATE) went to a client.
    pub fn error_code(&self, code: &str) {
        let b = code.as_bytes();
        let class = match b {
            [a, b, ..] if a.is_ascii_alphanumeric() && b.is_ascii_alphanumeric() => {
                [a.to_ascii_uppercase(), b.to_ascii_uppercase()]
            }
            _ => *b"XX",
        };
        let mut map = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        *map.entry(class).or_insert(0) += 1;
    }

    /// An ErrorResponse body from the server went to a client.
    pub fn error_sent(&self, body: &[u8]) {
        let fields = sluice_proto::backend_view::ErrorFields::decode(body);
        self.error_code(fields.ok().and_then(|f| f.code()).unwrap_or("XX000"));
    }

    /// Errors sent to clients, by SQLSTATE class.
    pub fn errors(&self) -> Vec<(String, u64)> {
        let map = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        map.iter()
            .map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), *v))
            .collect()
    }

    /// RECONNECT: connections made until now are closed when given back.
    pub fn reconnect(&self) {
        self.reconnect_before.store(now_us(), Ordering::Relaxed);
    }

    /// Whether a connection made at `connect_time` (µs) must be closed instead of reused.
    pub fn must_reconnect(&self, connect_time: u64) -> bool {
        connect_time <= self.reconnect_before.load(Ordering::Relaxed)
    }

    pub fn totals(&self) -> Totals {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Totals {
            xact_count: l(&self.transactions),
            query_count: l(&self.queries),
            received: l(&self.received),
            sent: l(&self.sent),
            xact_time_us: l(&self.xact_time_us),
            query_time_us: l(&self.query_time_us),
            wait_time_us: l(&self.wait_time_us),
            waits: l(&self.waits),
        }
    }

    /// Closes the stats period: averages are taken over the time since the last call.
    pub fn roll_period(&self, now: Instant) {
        let totals = self.totals();
        let mut p = self.period.lock().unwrap_or_else(|p| p.into_inner());
        let avg = match &*p {
            Some((before, start, _)) => {
                totals.averages_since(before, now.duration_since(*start).as_secs_f64())
            }
            None => Averages::default(),
        };
        *p = Some((totals, now, avg));
    }

    pub fn averages(&self) -> Averages {
        let p = self.period.lock().unwrap_or_else(|p| p.into_inner());
        p.as_ref().map(|(_, _, a)| *a).unwrap_or_default()
    }

    fn record_query(&self, d: Duration) {
        self.queries.fetch_add(1, Ordering::Relaxed);
        self.query_time_us
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
        if let Some(h) = self.histograms.get() {
            h.query.record(d.as_secs_f64());
        }
    }

    fn record_transaction(&self, d: Duration) {
        self.transactions.fetch_add(1, Ordering::Relaxed);
        self.xact_time_us
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
        if let Some(h) = self.histograms.get() {
            h.transaction.record(d.as_secs_f64());
        }
    }
}

/// Gauges of one pool at one moment, computed from its state.
#[derive(Debug, Clone, Copy, Default)]
pub struct PoolGauges {
    /// Clients holding a server connection.
    pub clients_active: usize,
    /// Clients waiting for one (in the pool's queue or held by PAUSE).
    pub clients_waiting: usize,
    /// Logged-in clients doing neither.
    pub clients_idle: usize,
    pub servers_active: usize,
    pub servers_idle: usize,
    /// Being connected and logged in.
    pub servers_connecting: usize,
    pub size: usize,
    /// The longest current wait.
    pub longest_wait: Duration,
    pub paused: bool,
}

impl PoolGauges {
    pub fn of(pool: &Pool) -> PoolGauges {
        let (idle, open, waiting, oldest) = pool.wait_state();
        let m = &pool.metrics;
        let lent = m.lent.load(Ordering::Relaxed);
        let (held, held_oldest) = m.pause.held();
        let now = Instant::now();
        let longest = [oldest, held_oldest]
            .into_iter()
            .flatten()
            .map(|t| now.saturating_duration_since(t))
            .max()
            .unwrap_or_default();
        let waiting = waiting + held;
        let sessions = m.sessions.load(Ordering::Relaxed);
        // A primary pool's sessions include those busy on (or waiting for) its replicas' pools.
        let elsewhere: usize = pool
            .replicas
            .iter()
            .map(|p| p.metrics.lent.load(Ordering::Relaxed) + p.wait_state().2)
            .sum();
        PoolGauges {
            clients_active: lent,
            clients_waiting: waiting,
            clients_idle: sessions.saturating_sub(lent + waiting + elsewhere),
            servers_active: lent,
            servers_idle: idle,
            servers_connecting: open.saturating_sub(idle + lent),
            size: pool.size(),
            longest_wait: longest,
            paused: m.pause.is_set(),
        }
    }

    /// Share of the pool's connections in use (lent out or being connected), 0 to 1.
    pub fn utilization(&self) -> f64 {
        if self.size == 0 {
            return 0.0;
        }
        ((self.servers_active + self.servers_connecting) as f64 / self.size as f64).min(1.0)
    }
}

/// Gives a new pool its histograms and the PAUSE state of its database. Called once per pool.
pub fn attach(shared: &Shared, pool: &Pool) {
    if let Some(exporter) = &shared.exporter {
        let replica = match pool.key.role {
            crate::pool::Role::Replica(_) => {
                let t = pool.target();
                Some(format!("{}:{}", t.host, t.port))
            }
            crate::pool::Role::Primary => None,
        };
        pool.metrics
            .set_histograms(exporter.histograms(&pool.key, replica));
    }
    if shared.console.is_paused(&pool.key.database) {
        pool.metrics.pause.set(true);
    }
}

/// What a client session counts as it runs: its entry in the client list and its open request and
/// transaction. Owned by the session; hooks in `client.rs` call it at a few points.
pub struct SessionStats {
    pub client: ClientEntry,
    query_start: Option<Instant>,
    xact_start: Option<Instant>,
}

impl SessionStats {
    /// Registers a client that has just logged in to `pool`.
    pub fn new(
        shared: &Shared,
        pool: &Arc<Pool>,
        stream: &tokio::net::TcpStream,
        peer: std::net::SocketAddr,
        pid: i32,
        application_name: Option<&str>,
        server: Option<&ServerGuard>,
    ) -> SessionStats {
        let client = shared.clients.register(NewClient {
            database: &pool.key.database,
            user: &pool.key.user,
            pool: Some(pool.clone()),
            addr: peer,
            local: stream.local_addr().ok(),
            application_name: application_name.unwrap_or(""),
            remote_pid: pid,
        });
        if let Some(g) = server {
            link(&client, g);
        }
        SessionStats {
            client,
            query_start: None,
            xact_start: None,
        }
    }

    /// A message went to the server: a request (and maybe a transaction) is under way.
    #[inline]
    pub fn request(&mut self) {
        if self.query_start.is_none() {
            let now = Instant::now();
            self.query_start = Some(now);
            self.xact_start.get_or_insert(now);
        }
    }

    /// ReadyForQuery from the server: a request ended; a transaction too if `tx_status` is idle.
    /// `more`: further requests are already queued behind it.
    pub fn ready(&mut self, pool: &Pool, tx_status: u8, more: bool) {
        let now = Instant::now();
        let started = self.query_start.take().unwrap_or(now);
        pool.metrics.record_query(now.duration_since(started));
        if tx_status == b'I' {
            let started = self.xact_start.take().unwrap_or(started);
            pool.metrics.record_transaction(now.duration_since(started));
        }
        if more {
            self.request();
        }
    }

    /// The relay lost its server connection.
    pub fn server_lost(&mut self, pool: &Pool, guard: &ServerGuard) {
        if let Some(e) = &guard.conn().entry {
            e.info.lost.store(true, Ordering::Relaxed);
        }
        self.query_start = None;
        self.xact_start = None;
        pool.metrics
            .error_code(sluice_proto::sqlstate::CONNECTION_FAILURE);
    }

    /// Runs a checkout as this client's wait: shown as waiting meanwhile, linked to the server
    /// connection after.
    pub async fn waiting(
        &self,
        checkout: impl Future<Output = Result<ServerGuard, CheckoutError>>,
    ) -> Result<ServerGuard, CheckoutError> {
        struct Waiting<'a>(&'a ClientEntry);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.info.wait_since.store(0, Ordering::Relaxed);
            }
        }
        let now = now_us();
        self.client.info.request_time.store(now, Ordering::Relaxed);
        self.client.info.wait_since.store(now, Ordering::Relaxed);
        let _w = Waiting(&self.client);
        let guard = checkout.await?;
        link(&self.client, &guard);
        Ok(guard)
    }
}

fn link(client: &ClientEntry, guard: &ServerGuard) {
    if let Some(e) = &guard.conn().entry {
        e.info.client.store(client.info.id, Ordering::Relaxed);
    }
}

/// How often SHOW STATS' averages are recomputed.
pub const STATS_PERIOD: Duration = Duration::from_secs(15);
