//! A pool of server connections for one (database, user).
//!
//! # Life of a server connection
//! `open` counts every connection the pool is responsible for: idle, lent out, or being connected.
//! It never exceeds `size`. A checkout takes an idle connection (most recently used first), or, under
//! `size`, takes a *slot* and connects, or else queues as a waiter. Waiters are served first come,
//! first served: a returned connection, or a freed slot, is handed straight to the oldest waiter
//! over a oneshot channel.
//!
//! Cancel safety: everything handed over travels inside a guard ([`ServerGuard`], [`Slot`]). If a
//! waiter gives up (timeout, client gone) after the hand-off, dropping its receiver drops the guard,
//! which passes the connection or slot on to the next waiter. Nothing leaks a slot.
//!
//! A guard dropped while its connection is `dirty` (mid-transaction, unknown state) closes the
//! connection and frees its slot; a clean one goes back to the pool.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::config::PoolMode;
use crate::params::{Params, ParamsInterner};
use crate::prepared::{PoolStatements, PreparedStats};
use crate::server::{self, ConnectError, ServerConn, ServerTarget};
use crate::stats::{CloseReason, PoolMetrics};

/// Pool settings, resolved from the config.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub size: usize,
    pub mode: PoolMode,
    pub connect_timeout: Duration,
    pub login_retry: Duration,
    pub idle_timeout: Duration,
    pub lifetime: Duration,
    pub reset_query: String,
    pub query_wait_timeout: Duration,
    pub max_message_size: usize,
    /// Per server connection; 0 turns statement renaming off.
    pub max_prepared_statements: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PoolKey {
    pub database: String,
    pub user: String,
    pub role: Role,
}

impl PoolKey {
    pub fn primary(database: &str, user: &str) -> PoolKey {
        PoolKey {
            database: database.to_owned(),
            user: user.to_owned(),
            role: Role::Primary,
        }
    }
}

/// Which server of a database a pool connects to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Role {
    #[default]
    Primary,
    /// The replica at this index of the database's `replicas` list.
    Replica(usize),
}

impl Role {
    /// The `role` label of metrics.
    pub fn label(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Replica(_) => "replica",
        }
    }
}

impl std::fmt::Display for PoolKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.role {
            Role::Primary => write!(f, "{}/{}", self.database, self.user),
            Role::Replica(i) => write!(f, "{}/{}/replica{i}", self.database, self.user),
        }
    }
}

/// Why a checkout failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CheckoutError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("no server connection available within {0:?} (query_wait_timeout)")]
    Timeout(Duration),
}

enum Take {
    Conn(Box<ServerConn>),
    Slot(Slot),
    Wait(oneshot::Receiver<Handoff>),
}

enum Handoff {
    Conn(ServerGuard),
    Slot(Slot),
}

struct State {
    /// Boxed, as everywhere in the pool: a connection changes hands on every checkout and return,
    /// and moving a pointer is cheaper than moving the whole `ServerConn` (192 bytes).
    #[allow(clippy::vec_box)]
    idle: Vec<Box<ServerConn>>,
    open: usize,
    /// With when each started waiting.
    waiters: VecDeque<(oneshot::Sender<Handoff>, Instant)>,
    /// After a failed connect, new connects wait until then and fail with the same error.
    backoff: Option<(Instant, ConnectError)>,
    /// Consecutive failed connects, for the backoff length.
    failures: u32,
}

/// Counters read by the admin console and metrics.
#[derive(Debug, Default)]
pub struct PoolStats {
    pub checkouts: AtomicU64,
    pub wait_timeouts: AtomicU64,
    pub connects: AtomicU64,
    pub connect_failures: AtomicU64,
    pub closed: AtomicU64,
}

pub struct Pool {
    pub key: PoolKey,
    /// Where new server connections go; RELOAD may change it.
    target: Mutex<Arc<ServerTarget>>,
    /// The pool's size (`settings.size` at first; RELOAD may change it).
    size: std::sync::atomic::AtomicUsize,
    pub settings: PoolSettings,
    state: Mutex<State>,
    /// ParameterStatus values of the pool's first login, sent to clients at their login.
    startup_params: Mutex<Option<Arc<Params>>>,
    /// Their tracked subset, which every client starts from; clients share it until they change it.
    client_defaults: OnceLock<Params>,
    /// Parameter lists clients of this pool logged in with, shared by the clients that have the
    /// same ones (see [`Pool::shared_params`]).
    interned: ParamsInterner,
    pub stats: PoolStats,
    /// Prepared statements (transaction mode), shared by a database's primary and replica pools
    /// so that a statement has one server-side name wherever it runs.
    pub statements: Arc<PoolStatements>,
    /// Read/write splitting (a primary pool of a database with replicas).
    pub router: Option<Arc<crate::router::Router>>,
    /// A primary pool's replica pools, by the index of `router`'s replica set; empty otherwise.
    pub replicas: Vec<Arc<Pool>>,
    pub prepared: PreparedStats,
    /// Transactions, queries, waits, bytes; PAUSE state; server list (see `stats.rs`).
    pub metrics: PoolMetrics,
}

impl Pool {
    /// A pool sharing `statements` with its database's other pools; for a primary pool with
    /// replicas, `router` and the replicas' pools (in the order of the router's replica set).
    pub fn with_parts(
        key: PoolKey,
        target: ServerTarget,
        settings: PoolSettings,
        statements: Arc<PoolStatements>,
        router: Option<Arc<crate::router::Router>>,
        replicas: Vec<Arc<Pool>>,
    ) -> Arc<Pool> {
        Arc::new(Pool {
            key,
            target: Mutex::new(Arc::new(target)),
            size: std::sync::atomic::AtomicUsize::new(settings.size),
            settings,
            state: Mutex::new(State {
                idle: Vec::new(),
                open: 0,
                waiters: VecDeque::new(),
                backoff: None,
                failures: 0,
            }),
            startup_params: Mutex::new(None),
            client_defaults: OnceLock::new(),
            interned: ParamsInterner::default(),
            stats: PoolStats::default(),
            statements,
            router,
            replicas,
            prepared: PreparedStats::default(),
            metrics: PoolMetrics::default(),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock would be a bug in this module; the state is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The database column of the admin console: the name, with `@host:port` for a replica's
    /// pool (so each pool has its own row, as tools keyed on database and user expect).
    pub fn console_database(&self) -> String {
        match self.key.role {
            Role::Primary => self.key.database.clone(),
            Role::Replica(_) => format!(
                "{}@{}:{}",
                self.key.database,
                self.target().host,
                self.target().port
            ),
        }
    }

    pub fn target(&self) -> Arc<ServerTarget> {
        self.target
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Points new server connections at `target` (RELOAD). Returns whether it changed; the
    /// caller closes the old connections as they come back (RECONNECT).
    pub fn set_target(&self, target: ServerTarget) -> bool {
        let mut t = self.target.lock().unwrap_or_else(|p| p.into_inner());
        let same = t.host == target.host
            && t.port == target.port
            && t.dbname == target.dbname
            && t.user == target.user
            && t.password == target.password;
        if !same {
            *t = Arc::new(target);
        }
        !same
    }

    /// The maximum number of server connections.
    pub fn size(&self) -> usize {
        self.size.load(Ordering::Relaxed)
    }

    /// Changes the pool's size (RELOAD). Growing hands the new slots to waiting clients at once;
    /// shrinking closes connections as they come back until the pool fits.
    pub fn set_size(self: &Arc<Self>, size: usize) {
        let mut st = self.state();
        self.size.store(size, Ordering::Relaxed);
        while st.open < size {
            let Some((tx, _)) = st.waiters.pop_front() else {
                break;
            };
            st.open += 1;
            if let Err(Handoff::Slot(mut back)) = tx.send(Handoff::Slot(Slot {
                pool: Some(self.clone()),
            })) {
                // That waiter gave up: the slot is not used after all.
                back.pool = None;
                st.open -= 1;
            }
        }
        while st.open > size {
            let Some(conn) = st.idle.pop() else {
                break;
            };
            st.open -= 1;
            self.stats.closed.fetch_add(1, Ordering::Relaxed);
            self.metrics.closed(CloseReason::Admin);
            drop(conn);
        }
    }

    pub fn startup_params(&self) -> Option<Arc<Params>> {
        self.startup_params
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The parameter values a new client starts with (the tracked ones of the first login), once a
    /// server login has been made.
    pub fn client_defaults(&self) -> Option<Params> {
        self.client_defaults.get().cloned()
    }

    /// `params`, or an equal list other clients of this pool already share (see
    /// [`ParamsInterner`]).
    pub fn shared_params(&self, params: Params) -> Params {
        self.interned.share(params)
    }

    /// Waits up to `wait` for a server connection.
    /// While the pool is PAUSEd (admin console) the checkout waits for RESUME, within `wait`.
    pub async fn checkout(self: &Arc<Self>, wait: Duration) -> Result<ServerGuard, CheckoutError> {
        // Fast path, most checkouts under load: an idle connection is there. No timer is armed and
        // no clock read (arming and cancelling a timeout costs more than the rest of a checkout).
        let mut first = None;
        if !self.metrics.pause.is_set() {
            match self.try_take()? {
                Take::Conn(conn) if conn.is_alive() => {
                    self.stats.checkouts.fetch_add(1, Ordering::Relaxed);
                    self.metrics.waited(Duration::ZERO);
                    return Ok(ServerGuard::new(self.clone(), conn));
                }
                take => first = Some(take),
            }
        }
        // Boxed: the timer and the wait make a big future, and only waiting checkouts need it.
        Box::pin(self.checkout_wait(wait, first)).await
    }

    /// A checkout that may have to wait, within `wait`.
    async fn checkout_wait(
        self: &Arc<Self>,
        wait: Duration,
        first: Option<Take>,
    ) -> Result<ServerGuard, CheckoutError> {
        let started = Instant::now();
        let checkout = async {
            if first.is_none() {
                self.metrics.pause.wait().await;
            }
            self.checkout_inner(first).await
        };
        match tokio::time::timeout(wait, checkout).await {
            Ok(r) => {
                if r.is_ok() {
                    self.stats.checkouts.fetch_add(1, Ordering::Relaxed);
                    self.metrics.waited(started.elapsed());
                }
                r
            }
            Err(_) => {
                self.stats.wait_timeouts.fetch_add(1, Ordering::Relaxed);
                self.metrics.waited(started.elapsed());
                Err(CheckoutError::Timeout(wait))
            }
        }
    }

    /// `first`: what the fast path already took, if anything.
    async fn checkout_inner(
        self: &Arc<Self>,
        mut first: Option<Take>,
    ) -> Result<ServerGuard, CheckoutError> {
        loop {
            let take = match first.take() {
                Some(t) => t,
                None => self.try_take()?,
            };
            let slot = match take {
                Take::Conn(conn) => {
                    if conn.is_alive() {
                        return Ok(ServerGuard::new(self.clone(), conn));
                    }
                    tracing::debug!(pool = %self.key, server = conn.id, "idle server connection closed by the server");
                    self.stats.closed.fetch_add(1, Ordering::Relaxed);
                    self.metrics.closed(CloseReason::ServerLost);
                    // Its slot is ours to reconnect with.
                    Slot {
                        pool: Some(self.clone()),
                    }
                }
                Take::Slot(slot) => slot,
                Take::Wait(rx) => match rx.await {
                    Ok(Handoff::Conn(mut guard)) => {
                        if guard.conn().is_alive() {
                            return Ok(guard);
                        }
                        guard.conn_mut().dirty = true;
                        drop(guard);
                        continue;
                    }
                    Ok(Handoff::Slot(slot)) => slot,
                    // The pool dropped our sender without an answer: cannot happen while the pool
                    // lives, but retrying is always safe.
                    Err(_) => continue,
                },
            };
            // Boxed: connecting is rare, and its future would otherwise make every checkout
            // future (and so every client task) that much bigger.
            return Box::pin(self.connect_with(slot)).await;
        }
    }

    /// The synchronous part of a checkout, under the lock.
    fn try_take(self: &Arc<Self>) -> Result<Take, CheckoutError> {
        let mut st = self.state();
        if let Some(conn) = st.idle.pop() {
            return Ok(Take::Conn(conn));
        }
        if st.open < self.size() {
            if let Some((until, err)) = &st.backoff {
                if Instant::now() < *until {
                    return Err(err.clone().into());
                }
            }
            st.open += 1;
            return Ok(Take::Slot(Slot {
                pool: Some(self.clone()),
            }));
        }
        let (tx, rx) = oneshot::channel();
        st.waiters.push_back((tx, Instant::now()));
        Ok(Take::Wait(rx))
    }

    async fn connect_with(self: &Arc<Self>, mut slot: Slot) -> Result<ServerGuard, CheckoutError> {
        let s = &self.settings;
        match server::connect(self.target(), s.connect_timeout, s.max_message_size).await {
            Ok(mut conn) => {
                let local = conn.stream.local_addr().ok();
                conn.entry = Some(self.metrics.servers.register(conn.id, conn.pid, local));
                self.stats.connects.fetch_add(1, Ordering::Relaxed);
                {
                    let mut st = self.state();
                    st.backoff = None;
                    st.failures = 0;
                }
                {
                    let mut p = self
                        .startup_params
                        .lock()
                        .unwrap_or_else(|p| p.into_inner());
                    if p.is_none() {
                        *p = Some(Arc::new(conn.params.clone()));
                        let _ = self.client_defaults.set(conn.params.tracked());
                    }
                }
                tracing::debug!(pool = %self.key, server = conn.id, pid = conn.pid, "server connection opened");
                slot.pool = None;
                Ok(ServerGuard::new(self.clone(), Box::new(conn)))
            }
            Err(err) => {
                self.stats.connect_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(pool = %self.key, error = %err, "server connection failed");
                let mut st = self.state();
                st.failures = st.failures.saturating_add(1);
                // 1x, 2x, 4x ... the configured retry interval, at most 30 x.
                let factor = 1u32 << st.failures.saturating_sub(1).min(5);
                let wait = s
                    .login_retry
                    .saturating_mul(factor)
                    .min(s.login_retry.saturating_mul(30));
                st.backoff = Some((Instant::now() + wait, err.clone()));
                drop(st);
                drop(slot);
                Err(err.into())
            }
        }
    }

    /// A clean connection comes back: to the oldest waiter, else to the idle list.
    fn checkin(self: &Arc<Self>, mut conn: Box<ServerConn>) {
        conn.last_used = Instant::now();
        if conn.last_used.duration_since(conn.created) >= self.settings.lifetime {
            tracing::debug!(pool = %self.key, server = conn.id, "server connection reached server_lifetime");
            return self.discard(conn, CloseReason::Lifetime);
        }
        if let Some(e) = &conn.entry {
            if self.metrics.must_reconnect(e.info.connect_time) {
                return self.discard(conn, CloseReason::Admin);
            }
        }
        let mut st = self.state();
        if st.open > self.size() {
            // RELOAD made the pool smaller.
            drop(st);
            return self.discard(conn, CloseReason::Admin);
        }
        while let Some((tx, _)) = st.waiters.pop_front() {
            match tx.send(Handoff::Conn(ServerGuard::new(self.clone(), conn))) {
                Ok(()) => return,
                Err(Handoff::Conn(mut back)) => conn = back.take(),
                Err(Handoff::Slot(_)) => unreachable!("we sent a connection"),
            }
        }
        if let Some(e) = &conn.entry {
            e.info.returned();
        }
        st.idle.push(conn);
    }

    fn discard(self: &Arc<Self>, conn: Box<ServerConn>, reason: CloseReason) {
        tracing::debug!(pool = %self.key, server = conn.id, reason = reason.label(), "server connection closed");
        self.stats.closed.fetch_add(1, Ordering::Relaxed);
        self.metrics.closed(reason);
        drop(conn);
        self.release_slot();
    }

    /// A slot is free again: the oldest waiter may connect with it; else `open` shrinks.
    fn release_slot(self: &Arc<Self>) {
        let mut st = self.state();
        if st.open > self.size() {
            st.open -= 1;
            return;
        }
        while let Some((tx, _)) = st.waiters.pop_front() {
            match tx.send(Handoff::Slot(Slot {
                pool: Some(self.clone()),
            })) {
                Ok(()) => return,
                Err(Handoff::Slot(mut back)) => back.pool = None,
                Err(Handoff::Conn(_)) => unreachable!("we sent a slot"),
            }
        }
        st.open -= 1;
    }

    /// Closes idle connections past `server_idle_timeout` or `server_lifetime`. Returns how many.
    pub fn close_expired(self: &Arc<Self>, now: Instant) -> usize {
        let expired: Vec<Box<ServerConn>> = {
            let mut st = self.state();
            let s = &self.settings;
            let (keep, expired): (Vec<_>, Vec<_>) =
                std::mem::take(&mut st.idle).into_iter().partition(|c| {
                    now.duration_since(c.last_used) < s.idle_timeout
                        && now.duration_since(c.created) < s.lifetime
                });
            st.idle = keep;
            expired
        };
        let n = expired.len();
        for conn in expired {
            let reason = if now.duration_since(conn.created) >= self.settings.lifetime {
                CloseReason::Lifetime
            } else {
                CloseReason::IdleTimeout
            };
            self.discard(conn, reason);
        }
        n
    }

    /// Closes every idle connection now (admin console). Returns how many.
    pub fn close_idle(self: &Arc<Self>, reason: CloseReason) -> usize {
        let idle = std::mem::take(&mut self.state().idle);
        let n = idle.len();
        for conn in idle {
            self.discard(conn, reason);
        }
        n
    }

    /// Numbers for the admin console and metrics: (idle, open, waiting).
    pub fn counts(&self) -> (usize, usize, usize) {
        let st = self.state();
        (
            st.idle.len(),
            st.open,
            st.waiters.iter().filter(|(w, _)| !w.is_closed()).count(),
        )
    }

    /// (idle, open, waiting, when the longest waiting checkout started), under one lock.
    pub fn wait_state(&self) -> (usize, usize, usize, Option<Instant>) {
        let st = self.state();
        let mut live = st.waiters.iter().filter(|(w, _)| !w.is_closed());
        let oldest = live.next().map(|(_, since)| *since);
        let waiting = live.count() + usize::from(oldest.is_some());
        (st.idle.len(), st.open, waiting, oldest)
    }
}

/// The right to open one connection, counted in `open`. Dropped unused, it frees the slot.
struct Slot {
    pool: Option<Arc<Pool>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            pool.release_slot();
        }
    }
}

/// A server connection lent to one client. Dropped, it goes back to the pool, or is closed if dirty.
pub struct ServerGuard {
    conn: Option<Box<ServerConn>>,
    pool: Arc<Pool>,
}

impl ServerGuard {
    fn new(pool: Arc<Pool>, conn: Box<ServerConn>) -> Self {
        pool.metrics.lent.fetch_add(1, Ordering::Relaxed);
        if let Some(e) = &conn.entry {
            e.info.lent();
        }
        ServerGuard {
            conn: Some(conn),
            pool,
        }
    }

    fn take(&mut self) -> Box<ServerConn> {
        self.conn
            .take()
            .expect("guard holds a connection until dropped")
    }

    pub fn conn(&self) -> &ServerConn {
        self.conn
            .as_ref()
            .expect("guard holds a connection until dropped")
    }

    pub fn conn_mut(&mut self) -> &mut ServerConn {
        self.conn
            .as_mut()
            .expect("guard holds a connection until dropped")
    }

    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }
}

impl Drop for ServerGuard {
    fn drop(&mut self) {
        self.pool.metrics.lent.fetch_sub(1, Ordering::Relaxed);
        if let Some(conn) = self.conn.take() {
            if conn.dirty {
                let lost = conn
                    .entry
                    .as_ref()
                    .is_some_and(|e| e.info.lost.load(Ordering::Relaxed));
                let reason = if lost {
                    CloseReason::ServerLost
                } else {
                    CloseReason::Unclean
                };
                self.pool.discard(conn, reason);
            } else {
                self.pool.checkin(conn);
            }
        }
    }
}
