//! The live client sessions: the admin console's SHOW CLIENTS and KILL, and the wake-up that
//! tells every session the pooler is draining.
//!
//! Each client is listed once it has logged in and removed by an RAII handle ([`ClientEntry`])
//! when its session ends. State that changes while the entry lives is kept in atomics, written
//! at most a few times per transaction and never under a lock; readers (the console) only take
//! snapshots. The server connections' list is the pool's ([`crate::server::list`]).
//!
//! [`SessionStats`] (session.rs) is what one session reports into its entry and its pool's
//! counters while it runs.
//!
//! Owns: the list, each session's stop bits. Must not: hold a session's own state or decide
//! anything about its server connection.

pub mod activity;
mod session;

pub use activity::Activity;
pub use session::{Arrival, SessionStats};

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use dashmap::DashMap;

use crate::clock::now_us;
use crate::pool::Pool;

/// Every logged-in client session, the admin console's included.
#[derive(Default)]
pub struct ClientList {
    map: DashMap<u64, Arc<ClientInfo>>,
    next_id: AtomicU64,
    /// Client connections open, logged in or not (SHOW LISTS' login_clients is the difference).
    connections: AtomicUsize,
    /// The pooler is draining: every session, listed now or later, has [`STOP_DRAIN`] set.
    draining: AtomicBool,
}

/// One client session.
pub struct ClientInfo {
    pub id: u64,
    /// Shared with the pool's other sessions (every byte here is multiplied by the clients).
    pub database: Arc<str>,
    pub user: Arc<str>,
    /// None for an admin console session.
    pub pool: Option<Arc<Pool>>,
    pub addr: SocketAddr,
    pub local: Option<SocketAddr>,
    pub connect_time: u64,
    pub application_name: Box<str>,
    /// The process id sluice gave the client in BackendKeyData.
    pub remote_pid: i32,
    /// TLS version and cipher suite; `None` for plain TCP.
    pub tls: Option<Box<str>>,
    /// When the client started waiting for a server connection; 0 while not waiting.
    pub wait_since: AtomicU64,
    /// When the client last asked for a server connection (its login time before that).
    pub request_time: AtomicU64,
    /// What it is doing now (state, time in state, waits, current statement).
    pub activity: Activity,
    /// The task to wake when the session is asked to stop (`stop` says why): registered once by
    /// the session's wait (a waker here instead of a `Notify` whose waiting future every idle
    /// client's task would keep; bench/README.md, "Idle client memory").
    waker: Mutex<Option<Waker>>,
    /// [`STOP_DRAIN`] and [`STOP_KILL`] bits.
    stop: AtomicU8,
}

/// The pooler is shutting down: finish the transaction, then leave.
pub const STOP_DRAIN: u8 = 1;
/// KILL on the admin console: leave now.
pub const STOP_KILL: u8 = 2;

impl ClientInfo {
    /// Completes once the session is asked to stop: KILL on the admin console, or the pooler
    /// draining (see [`ClientList::drain`]); [`Self::stop_requested`] tells which. (A loop that
    /// waits on more than this polls [`Self::poll_stop`].)
    pub async fn killed(&self) {
        std::future::poll_fn(|cx| self.poll_stop(cx, 0).map(drop)).await
    }

    /// Ready with the stop bits set beyond `handled`; if there are none, this task is woken when
    /// more are set. Costs a lock: a loop polls it once, then looks at [`Self::stop_requested`]
    /// (the bits are set before the wake-up) until that shows new bits.
    pub fn poll_stop(&self, cx: &mut Context<'_>, handled: u8) -> Poll<u8> {
        {
            let mut waker = self.waker.lock().unwrap_or_else(|p| p.into_inner());
            match waker.as_ref() {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => *waker = Some(cx.waker().clone()),
            }
        }
        // After registering: bits set before it are seen here, bits set after it wake the task.
        match self.stop_requested() & !handled {
            0 => Poll::Pending,
            bits => Poll::Ready(bits),
        }
    }

    /// Sets `bit` and wakes the session.
    fn request_stop(&self, bit: u8) {
        self.stop.fetch_or(bit, Ordering::Release);
        let waker = self.waker.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = waker.as_ref() {
            w.wake_by_ref();
        }
    }

    /// The [`STOP_DRAIN`] / [`STOP_KILL`] bits set so far.
    pub fn stop_requested(&self) -> u8 {
        self.stop.load(Ordering::Acquire)
    }
}

/// Keeps a client registered; dropping it removes the entry.
pub struct ClientEntry {
    pub info: Arc<ClientInfo>,
    clients: Arc<ClientList>,
}

impl Drop for ClientEntry {
    fn drop(&mut self) {
        self.clients.map.remove(&self.info.id);
        if let Some(pool) = &self.info.pool {
            pool.session_closed();
        }
    }
}

/// Counts an open client connection until dropped.
pub struct ConnectionCount(Arc<ClientList>);

impl Drop for ConnectionCount {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What a client registers with.
pub struct NewClient<'a> {
    pub database: Arc<str>,
    pub user: Arc<str>,
    pub pool: Option<Arc<Pool>>,
    pub addr: SocketAddr,
    pub local: Option<SocketAddr>,
    pub application_name: &'a str,
    pub remote_pid: i32,
    /// TLS version and cipher suite (SHOW CLIENTS' `tls`); `None` for plain TCP.
    pub tls: Option<String>,
}

impl ClientList {
    /// Counts a new client connection, if fewer than `max` (`max_client_conn`) are open.
    pub fn connection(self: &Arc<Self>, max: usize) -> Option<ConnectionCount> {
        self.connections
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        Some(ConnectionCount(self.clone()))
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }

    pub fn register(self: &Arc<Self>, c: NewClient<'_>) -> ClientEntry {
        let now = now_us();
        if let Some(pool) = &c.pool {
            pool.session_opened();
        }
        let info = Arc::new(ClientInfo {
            id: self.next_id.fetch_add(1, Ordering::Relaxed) + 1,
            database: c.database,
            user: c.user,
            pool: c.pool,
            addr: c.addr,
            local: c.local,
            connect_time: now,
            application_name: c.application_name.into(),
            remote_pid: c.remote_pid,
            tls: c.tls.map(String::into_boxed_str),
            wait_since: AtomicU64::new(0),
            request_time: AtomicU64::new(now),
            activity: Activity::default(),
            waker: Mutex::new(None),
            stop: AtomicU8::new(0),
        });
        self.map.insert(info.id, info.clone());
        // After the insert: either `drain` (which sets the flag before it walks the list) sees
        // this entry, or this load sees the flag (both SeqCst), so no session misses a drain.
        if self.draining.load(Ordering::SeqCst) {
            info.request_stop(STOP_DRAIN);
        }
        ClientEntry {
            info,
            clients: self.clone(),
        }
    }

    /// A snapshot of every registered client, oldest first.
    pub fn snapshot(&self) -> Vec<Arc<ClientInfo>> {
        let mut v: Vec<_> = self.map.iter().map(|e| e.value().clone()).collect();
        v.sort_by_key(|c| c.id);
        v
    }

    /// The client with this id, if still listed.
    pub fn get(&self, id: u64) -> Option<Arc<ClientInfo>> {
        self.map.get(&id).map(|e| e.value().clone())
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Whether the pooler is draining.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Ends every session of `database` (all pooled sessions with `None`); returns how many.
    pub fn kill(&self, database: Option<&str>) -> usize {
        let mut n = 0;
        for c in self.map.iter() {
            if c.pool.is_some() && database.is_none_or(|d| d == &*c.database) {
                c.request_stop(STOP_KILL);
                n += 1;
            }
        }
        n
    }

    /// The pooler is shutting down: wakes every session so it finishes its transaction and leaves.
    /// Sessions that register later get the same stop bit at registration. This is the one drain
    /// signal sessions (pooled and console) read.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
        for c in self.map.iter() {
            c.request_stop(STOP_DRAIN);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_client(list: &Arc<ClientList>) -> ClientEntry {
        list.register(NewClient {
            database: "app".into(),
            user: "app".into(),
            pool: None,
            addr: "127.0.0.1:1".parse().unwrap(),
            local: None,
            application_name: "",
            remote_pid: 1,
            tls: None,
        })
    }

    /// A session listed before the drain and one that logs in after it both get the drain bit
    /// and a wake-up: there is no second drain signal to miss.
    #[tokio::test]
    async fn drain_reaches_sessions_listed_before_and_after() {
        let list = Arc::new(ClientList::default());
        let before = new_client(&list);
        assert_eq!(before.info.stop_requested(), 0);
        list.drain();
        assert!(list.is_draining());
        let after = new_client(&list);
        for entry in [&before, &after] {
            assert_eq!(entry.info.stop_requested() & STOP_DRAIN, STOP_DRAIN);
            // The wake-up is kept for a session that was not waiting yet.
            tokio::time::timeout(std::time::Duration::from_secs(1), entry.info.killed())
                .await
                .expect("woken");
        }
    }
}
