//! The server connections of one pool, for the admin console's SHOW SERVERS and the client
//! links of SHOW CLIENTS.
//!
//! A connection is listed once it has logged in ([`ServerList::register`]); the [`ServerEntry`]
//! it keeps removes it when the connection is dropped. Its state changes are atomics written at
//! checkout and check-in, read only by console snapshots.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};

use dashmap::DashMap;

use crate::clock::now_us;

/// The server connections of one pool.
#[derive(Default, Clone)]
pub struct ServerList {
    map: Arc<DashMap<u64, Arc<ServerInfo>>>,
}

pub const SERVER_IDLE: u8 = 0;
pub const SERVER_ACTIVE: u8 = 1;

/// One server connection.
pub struct ServerInfo {
    pub id: u64,
    pub remote_pid: i32,
    pub local: Option<SocketAddr>,
    pub connect_time: u64,
    /// [`SERVER_IDLE`] or [`SERVER_ACTIVE`] (lent to a client).
    pub state: AtomicU8,
    /// The client it is lent to (its [`crate::clients`] id), 0 if none.
    pub client: AtomicU64,
    /// When it was last lent out or given back.
    pub request_time: AtomicU64,
    /// The relay lost it (I/O error, or the server closed it): its close reason.
    pub lost: AtomicBool,
}

impl ServerInfo {
    pub fn lent(&self) {
        self.state.store(SERVER_ACTIVE, Ordering::Relaxed);
        self.request_time.store(now_us(), Ordering::Relaxed);
    }

    pub fn returned(&self) {
        self.state.store(SERVER_IDLE, Ordering::Relaxed);
        self.client.store(0, Ordering::Relaxed);
        self.request_time.store(now_us(), Ordering::Relaxed);
    }
}

/// Keeps a server connection registered; it lives inside the connection and is dropped with it.
pub struct ServerEntry {
    pub info: Arc<ServerInfo>,
    servers: ServerList,
}

impl Drop for ServerEntry {
    fn drop(&mut self) {
        self.servers.map.remove(&self.info.id);
    }
}

impl ServerList {
    pub fn register(&self, id: u64, remote_pid: i32, local: Option<SocketAddr>) -> ServerEntry {
        let now = now_us();
        let info = Arc::new(ServerInfo {
            id,
            remote_pid,
            local,
            connect_time: now,
            state: AtomicU8::new(SERVER_IDLE),
            client: AtomicU64::new(0),
            request_time: AtomicU64::new(now),
            lost: AtomicBool::new(false),
        });
        self.map.insert(id, info.clone());
        ServerEntry {
            info,
            servers: self.clone(),
        }
    }

    pub fn snapshot(&self) -> Vec<Arc<ServerInfo>> {
        let mut v: Vec<_> = self.map.iter().map(|e| e.value().clone()).collect();
        v.sort_by_key(|s| s.id);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_list_until_dropped_and_track_their_state() {
        let list = ServerList::default();
        let a = list.register(2, 200, None);
        let b = list.register(1, 100, None);
        let ids: Vec<u64> = list.snapshot().iter().map(|s| s.id).collect();
        assert_eq!(ids, [1, 2], "oldest id first");
        a.info.lent();
        a.info.client.store(7, Ordering::Relaxed);
        assert_eq!(a.info.state.load(Ordering::Relaxed), SERVER_ACTIVE);
        a.info.returned();
        assert_eq!(a.info.state.load(Ordering::Relaxed), SERVER_IDLE);
        assert_eq!(a.info.client.load(Ordering::Relaxed), 0);
        drop(b);
        let ids: Vec<u64> = list.snapshot().iter().map(|s| s.id).collect();
        assert_eq!(ids, [2]);
    }
}
