//! A pool of server connections for one (database, user): its connections and its control state.
//!
//! `open` counts every connection the pool is responsible for: idle, lent out, or being
//! connected; it never exceeds `size`. The files, one concept each:
//! * `checkout.rs`: [`Pool::checkout`] and the hand-off of returned connections and freed slots
//!   to the oldest waiter;
//! * `wait_watch.rs`: `query_wait_timeout` for queued waiters, one watch task per pool;
//! * `guard.rs`: [`ServerGuard`] (a lent connection; dropped, it goes back, or is closed if
//!   `dirty`) and the slot guard, which make a waiter that gives up safe;
//! * `connect.rs`: opening a connection;
//! * `outage.rs`: who may connect while the server is down (one probe at a time, the wait);
//! * `pause.rs`: PAUSE; `key.rs`, `settings.rs`: what the pool is and how it is set up.
//!
//! Here: the pool itself, its control state (PAUSE, RECONNECT, RELOAD of size and address, the
//! list of its server connections) and expiry. A primary pool of a database with replicas also
//! holds the replicas' pools and the [`Router`] that chooses among them.
//!
//! Owns: server connections between clients, and the decisions about them (reuse, close,
//! hand-off). Must not: relay client traffic, or know sessions beyond their count; its counters
//! ([`PoolCounters`]) are written here and read by `metrics`.

mod caps;
mod checkout;
mod connect;
mod guard;
mod key;
mod outage;
mod pause;
mod settings;
mod wait_watch;

pub use caps::ServerCap;
pub use checkout::CheckoutError;
pub use guard::ServerGuard;
pub use key::{PoolKey, Role};
pub use pause::Pause;
pub use settings::{PoolSettings, SessionTimeouts};

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use crate::clock::now_us;
use crate::metrics::{CloseReason, PoolCounters, PoolGauges, PoolLabels, PoolSample, PoolState};
use crate::params::{GreetingMemo, Params, ParamsInterner, StartupMemo};
use crate::prepared::PoolStatements;
use crate::pubsub::{Hub, HubSettings};
use crate::router::Router;
use crate::server::list::ServerList;
use crate::server::{ServerConn, ServerTarget};
use outage::Outage;
use wait_watch::Waiter;

struct State {
    /// Boxed, as everywhere in the pool: a connection changes hands on every checkout and return,
    /// and moving a pointer is cheaper than moving the whole `ServerConn` (192 bytes).
    #[allow(clippy::vec_box)]
    idle: Vec<Box<ServerConn>>,
    open: usize,
    /// Checkouts waiting, oldest first (`wait_watch.rs`).
    waiters: VecDeque<Waiter>,
    /// The earliest deadline the waiters' watch sleeps until; None while no watch runs.
    watch_until: Option<Instant>,
    /// Whether the server is taken to be down, and who may connect meanwhile.
    outage: Outage,
}

pub struct Pool {
    pub key: PoolKey,
    /// Where new server connections go; RELOAD may change it.
    target: Mutex<Arc<ServerTarget>>,
    /// The pool's size (`settings.size` at first; RELOAD may change it).
    size: AtomicUsize,
    pub settings: PoolSettings,
    state: Mutex<State>,
    /// ParameterStatus values of the pool's first login, sent to clients at their login.
    startup_params: Mutex<Option<Arc<Params>>>,
    /// Their tracked subset, which every client starts from; clients share it until they change it.
    client_defaults: OnceLock<Params>,
    /// Caps across pools this pool's connections count under (`max_db_connections`,
    /// `max_user_connections`); set once when the pool is made, empty without caps.
    server_caps: OnceLock<Vec<Arc<ServerCap>>>,
    /// Run when a client session of this pool ends: gives its place under the client caps back
    /// (`shared/caps.rs`; here so that a session keeps no guard of its own).
    client_release: OnceLock<Box<dyn Fn() + Send + Sync>>,
    /// Parameter lists clients of this pool logged in with, shared by the clients that have the
    /// same ones (see [`Pool::shared_params`]).
    interned: ParamsInterner,
    /// What startup parameter lists became on a server (login needs no server for a list it
    /// knows).
    pub startup_memo: StartupMemo,
    /// The outcome and ParameterStatus messages of each startup list logins settled without a
    /// server (client/login.rs writes them once per list).
    pub greetings: GreetingMemo,
    /// Prepared statements (transaction mode), shared by a database's primary and replica pools
    /// so that a statement has one server-side name wherever it runs.
    pub statements: Arc<PoolStatements>,
    /// Read/write splitting (a primary pool of a database with replicas).
    pub router: Option<Arc<Router>>,
    /// A primary pool's replica pools, by the index of `router`'s replica set; empty otherwise.
    pub replicas: Vec<Arc<Pool>>,
    /// Everything counted about this pool.
    pub counters: PoolCounters,
    /// PAUSE (admin console): checkouts wait while it is set.
    pub pause: Pause,
    /// Server connections made before this (µs since the Unix epoch) are closed when given back
    /// (RECONNECT, KILL, a RELOAD that moved the server).
    reconnect_before: AtomicU64,
    /// This pool's server connections, for SHOW SERVERS.
    pub servers: ServerList,
    /// Server connections lent out: the number of clients holding one.
    lent: AtomicUsize,
    /// Logged-in client sessions of this pool.
    sessions: AtomicUsize,
    /// LISTEN / NOTIFY in transaction mode: made at the first LISTEN (see [`Pool::pubsub`]).
    pubsub: OnceLock<Arc<Hub>>,
    /// Its database and user as shared strings, for what each session would otherwise copy (its
    /// client list entry, the scope its query statistics count under); made at the first session.
    scope: OnceLock<Arc<crate::diag::Scope>>,
    /// Wakes the waiters' watch early (`wait_watch.rs`).
    watch_wake: tokio::sync::Notify,
}

impl Pool {
    /// A pool sharing `statements` with its database's other pools; for a primary pool with
    /// replicas, `router` and the replicas' pools (in the order of the router's replica set).
    pub fn with_parts(
        key: PoolKey,
        target: ServerTarget,
        settings: PoolSettings,
        statements: Arc<PoolStatements>,
        router: Option<Arc<Router>>,
        replicas: Vec<Arc<Pool>>,
    ) -> Arc<Pool> {
        Arc::new(Pool {
            key,
            target: Mutex::new(Arc::new(target)),
            size: AtomicUsize::new(settings.size),
            settings,
            state: Mutex::new(State {
                idle: Vec::new(),
                open: 0,
                waiters: VecDeque::new(),
                watch_until: None,
                outage: Outage::default(),
            }),
            startup_params: Mutex::new(None),
            client_defaults: OnceLock::new(),
            server_caps: OnceLock::new(),
            client_release: OnceLock::new(),
            interned: ParamsInterner::default(),
            startup_memo: StartupMemo::default(),
            greetings: GreetingMemo::default(),
            statements,
            router,
            replicas,
            counters: PoolCounters::default(),
            pause: Pause::default(),
            reconnect_before: AtomicU64::new(0),
            servers: ServerList::default(),
            lent: AtomicUsize::new(0),
            sessions: AtomicUsize::new(0),
            pubsub: OnceLock::new(),
            scope: OnceLock::new(),
            watch_wake: tokio::sync::Notify::new(),
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
            && t.password == target.password
            && t.tls.mode == target.tls.mode;
        // New TLS files (a RELOAD): connections made from now on use them; the open ones
        // stay, as they are not a different server.
        let new_files = match (&t.tls.connector, &target.tls.connector) {
            (Some(a), Some(b)) => !Arc::ptr_eq(a, b),
            _ => false,
        };
        if !same || new_files {
            let mut target = target;
            // Keys a client proved stay usable when only the address or the TLS files changed.
            if target.user == t.user && target.password.is_none() && target.pass.scram.is_none() {
                target.pass.scram = t.pass.scram.clone();
            }
            *t = Arc::new(target);
        }
        !same
    }

    /// SCRAM pass-through: the keys recovered from a client's proof, for server logins of a pool
    /// that has no password. Keys of a newer secret (a password rotated in PostgreSQL) replace
    /// older ones.
    pub fn learn_scram_keys(&self, keys: sluice_proto::auth::ScramKeys) {
        let mut t = self.target.lock().unwrap_or_else(|p| p.into_inner());
        // Only for a pool that logs in as the client's own user (no server_user).
        if t.password.is_none() && t.user == self.key.user && t.pass.scram.as_ref() != Some(&keys) {
            let mut target = (**t).clone();
            target.pass.scram = Some(keys);
            *t = Arc::new(target);
        }
    }

    /// The maximum number of server connections.
    pub fn size(&self) -> usize {
        self.size.load(Ordering::Relaxed)
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

    /// RECONNECT: connections made until now are closed when given back.
    pub fn reconnect(&self) {
        self.reconnect_before.store(now_us(), Ordering::Relaxed);
        // The listening connection too: it may be on a server the pool has moved away from.
        if let Some(hub) = self.pubsub.get() {
            hub.reconnect();
        }
    }

    /// Whether a connection made at `connect_time` (µs) must be closed instead of reused.
    pub fn must_reconnect(&self, connect_time: u64) -> bool {
        connect_time <= self.reconnect_before.load(Ordering::Relaxed)
    }

    /// A client session of this pool logged in.
    pub fn session_opened(&self) {
        self.sessions.fetch_add(1, Ordering::Relaxed);
    }

    /// A client session of this pool ended.
    pub fn session_closed(&self) {
        self.sessions.fetch_sub(1, Ordering::Relaxed);
        if let Some(release) = self.client_release.get() {
            release();
        }
    }

    /// What [`Self::session_closed`] also does (set once, when the pool is made).
    pub fn on_session_closed(&self, release: Box<dyn Fn() + Send + Sync>) {
        let _ = self.client_release.set(release);
    }

    /// Server connections lent out now.
    pub fn lent(&self) -> usize {
        self.lent.load(Ordering::Relaxed)
    }

    /// Closes `conn` for `reason` and frees its slot.
    pub(super) fn discard(self: &Arc<Self>, conn: Box<ServerConn>, reason: CloseReason) {
        tracing::debug!(pool = %self.key, server = conn.id, reason = reason.label(), "server connection closed");
        self.counters.closed(reason);
        drop(conn);
        self.release_slot(None);
    }

    /// Closes a connection that a client left in the middle of something (it vanished, was
    /// killed, or its session failed). PostgreSQL notices a closed socket only when it next reads
    /// or writes, so a query under way would run to its end, holding a backend beyond the pool's
    /// size: a CancelRequest goes first (the backend's pid and key are known), then the
    /// connection is closed. Its slot stays taken until then.
    pub(super) fn close_unclean(self: &Arc<Self>, conn: Box<ServerConn>) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return self.discard(conn, CloseReason::Unclean);
        };
        let pool = self.clone();
        rt.spawn(async move {
            let timeout = pool.settings.connect_timeout;
            crate::cancel::send_cancel(&conn.target, conn.pid, conn.key, timeout).await;
            pool.discard(conn, CloseReason::Unclean);
        });
    }

    /// Closes idle connections past `server_idle_timeout` or `server_lifetime`, and marks those
    /// idle past `server_check_delay` for a check before their next lending. Returns how many
    /// were closed.
    pub fn close_expired(self: &Arc<Self>, now: Instant) -> usize {
        let expired: Vec<Box<ServerConn>> = {
            let mut st = self.state();
            let s = &self.settings;
            let (mut keep, expired): (Vec<_>, Vec<_>) =
                std::mem::take(&mut st.idle).into_iter().partition(|c| {
                    now.duration_since(c.last_used) < s.idle_timeout
                        && now.duration_since(c.created) < s.lifetime
                });
            if !s.check_delay.is_zero() {
                for c in &mut keep {
                    if now.duration_since(c.last_used) >= s.check_delay {
                        c.check_due = true;
                    }
                }
            }
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

    /// Counts this pool's connections under `caps` (once, when the pool is made).
    pub fn set_server_caps(self: &Arc<Self>, caps: Vec<Arc<ServerCap>>) {
        for c in &caps {
            c.register(self);
        }
        let _ = self.server_caps.set(caps);
    }

    pub(super) fn caps(&self) -> &[Arc<ServerCap>] {
        self.server_caps.get().map_or(&[], Vec::as_slice)
    }

    /// A cap of this pool that is full now, if any (why a checkout waited).
    pub fn full_cap(&self) -> Option<&ServerCap> {
        self.caps().iter().map(|c| c.as_ref()).find(|c| c.is_full())
    }

    /// Takes a place under every cap, or none (then the first full cap).
    pub(super) fn acquire_caps(&self) -> Result<(), Arc<ServerCap>> {
        let caps = self.caps();
        for (i, c) in caps.iter().enumerate() {
            if !c.try_acquire() {
                for taken in &caps[..i] {
                    taken.release();
                }
                return Err(c.clone());
            }
        }
        Ok(())
    }

    pub(super) fn release_caps(&self) {
        for c in self.caps() {
            c.release();
        }
    }

    /// Closes one idle connection, to make room under a cap for another pool. Whether it did.
    pub(super) fn close_one_idle(self: &Arc<Self>) -> bool {
        // The oldest idle one (the list is used from its end).
        let conn = {
            let mut st = self.state();
            if st.idle.is_empty() {
                return false;
            }
            st.idle.remove(0)
        };
        self.discard(conn, CloseReason::IdleTimeout);
        true
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
            st.waiters.iter().filter(|w| !w.tx.is_closed()).count(),
        )
    }

    /// Idle connections marked for a check before they are lent again (`server_check_delay`).
    pub fn checks_due(&self) -> usize {
        self.state().idle.iter().filter(|c| c.check_due).count()
    }

    /// (idle, open, waiting, when the longest waiting checkout started), under one lock.
    pub fn wait_state(&self) -> (usize, usize, usize, Option<Instant>) {
        let st = self.state();
        let mut live = st.waiters.iter().filter(|w| !w.tx.is_closed());
        let oldest = live.next().map(|w| w.since);
        let waiting = live.count() + usize::from(oldest.is_some());
        (st.idle.len(), st.open, waiting, oldest)
    }

    /// A reading of the pool's state, for its gauges.
    pub fn state_now(&self) -> PoolState {
        let (idle, open, queued, queued_since) = self.wait_state();
        let (held, held_since) = self.pause.held();
        PoolState {
            idle,
            open,
            lent: self.lent(),
            queued,
            queued_since,
            held,
            held_since,
            sessions: self.sessions.load(Ordering::Relaxed),
            // A primary pool's sessions include those busy on (or waiting for) its replicas'.
            elsewhere: self
                .replicas
                .iter()
                .map(|p| p.lent() + p.wait_state().2)
                .sum(),
            size: self.size(),
            paused: self.pause.is_set(),
        }
    }

    /// The pool's gauges now (SHOW POOLS, `/metrics`).
    pub fn gauges(&self) -> PoolGauges {
        PoolGauges::compute(&self.state_now(), Instant::now())
    }

    /// The labels of this pool's metrics.
    pub fn labels(&self) -> PoolLabels {
        PoolLabels {
            database: self.key.database.clone(),
            user: self.key.user.clone(),
            role: self.key.role.label(),
            replica: match self.key.role {
                Role::Replica(_) => {
                    let t = self.target();
                    Some(format!("{}:{}", t.host, t.port))
                }
                Role::Primary => None,
            },
        }
    }

    /// The pool's LISTEN / NOTIFY hub (transaction mode), made on first use. Its dedicated
    /// listening connection logs in like the pool's own, to the pool's current target, but is not
    /// one of the pool's `size`.
    /// Its database and user, shared by its sessions (and the scope of their query statistics).
    pub fn scope(&self) -> &Arc<crate::diag::Scope> {
        self.scope
            .get_or_init(|| Arc::new(crate::diag::Scope::new(&self.key.database, &self.key.user)))
    }

    pub fn pubsub(self: &Arc<Self>) -> &Arc<Hub> {
        self.pubsub.get_or_init(|| {
            let pool = Arc::downgrade(self);
            let settings = HubSettings {
                name: self.key.to_string(),
                retry: self.settings.login_retry,
                queue_size: self.settings.listen_queue_size,
                max_message_size: self.settings.max_message_size,
            };
            Hub::new(
                settings,
                Box::new(move || {
                    let pool = pool.clone();
                    Box::pin(async move {
                        let Some(pool) = pool.upgrade() else {
                            return Err(crate::server::ConnectError::Protocol(
                                "the pool is gone".into(),
                            ));
                        };
                        let s = &pool.settings;
                        crate::server::connect(
                            pool.target(),
                            s.connect_timeout,
                            s.max_message_size,
                            s.tcp,
                        )
                        .await
                    })
                }),
            )
        })
    }

    /// This pool as a scrape sees it.
    pub fn sample(&self) -> PoolSample<'_> {
        PoolSample {
            pubsub: self.pubsub.get().map(|h| h.sample()),
            labels: self.labels(),
            gauges: self.gauges(),
            counters: &self.counters,
            router: self.router.as_deref(),
        }
    }
}
