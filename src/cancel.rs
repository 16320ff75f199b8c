//! Cancel keys. Each client gets sluice's own BackendKeyData; a CancelRequest carrying it is
//! forwarded to the server connection running that client's query at that moment, and does nothing
//! when the client has no server (nothing is running) or the key is wrong.
//!
//! Race left open (as in PgBouncer): a cancel that arrives just as the client's server connection
//! is returned and lent to another client could cancel that client's query. The window is the time
//! between ReadyForQuery reaching sluice and the cancel being looked up.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use dashmap::DashMap;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::server::ServerTarget;

/// Where a client's current query runs.
#[derive(Clone)]
pub struct CancelTarget {
    pub server: Arc<ServerTarget>,
    pub pid: i32,
    pub key: i32,
}

/// One client's entry: its secret and its current target.
pub struct CancelSlot {
    secret: i32,
    target: Mutex<Option<CancelTarget>>,
}

impl CancelSlot {
    pub fn set(&self, target: Option<CancelTarget>) {
        *self.target.lock().unwrap_or_else(|p| p.into_inner()) = target;
    }
}

#[derive(Default)]
pub struct CancelMap {
    map: DashMap<i32, Arc<CancelSlot>>,
    next_pid: std::sync::atomic::AtomicI32,
}

/// Removes the client's key when its session ends.
pub struct CancelRegistration {
    pub pid: i32,
    pub secret: i32,
    pub slot: Arc<CancelSlot>,
    map: Arc<CancelMap>,
}

impl Drop for CancelRegistration {
    fn drop(&mut self) {
        self.map.map.remove(&self.pid);
    }
}

impl CancelMap {
    /// Gives a new client a (pid, secret) pair. The pid is unique among live clients.
    pub fn register(self: &Arc<Self>) -> CancelRegistration {
        loop {
            let pid = self
                .next_pid
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                & 0x7fff_ffff;
            if pid == 0 {
                continue;
            }
            let secret = rand::random::<i32>();
            let slot = Arc::new(CancelSlot {
                secret,
                target: Mutex::new(None),
            });
            if let dashmap::Entry::Vacant(v) = self.map.entry(pid) {
                v.insert(slot.clone());
                return CancelRegistration {
                    pid,
                    secret,
                    slot,
                    map: self.clone(),
                };
            }
        }
    }

    /// The target for a CancelRequest, if the key is right and a query is running.
    pub fn lookup(&self, pid: i32, secret: i32) -> Option<CancelTarget> {
        let slot = self.map.get(&pid)?.clone();
        if slot.secret != secret {
            return None;
        }
        slot.target
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Sends a CancelRequest for `pid`/`key` to the server at `target`. Best effort, bounded in time.
pub async fn send_cancel(target: &ServerTarget, pid: i32, key: i32, timeout: Duration) {
    let work = async {
        let tcp = TcpStream::connect((target.host.as_str(), target.port)).await?;
        // Over TLS when the pool's logins are (`server_tls_mode`).
        let mut stream = crate::server::tls::start(target, tcp)
            .await
            .map_err(std::io::Error::other)?;
        let mut out = BytesMut::with_capacity(16);
        sluice_proto::startup::write_cancel(pid, key, &mut out);
        stream.send(&out).await?;
        // PostgreSQL closes the connection once it has handled the request.
        let mut sink = [0u8; 16];
        let _ = stream.read(&mut sink).await;
        Ok::<_, std::io::Error>(())
    };
    if let Ok(Err(e)) = tokio::time::timeout(timeout, work).await {
        tracing::debug!(error = %e, "cancel request to {} failed", target.addr());
    }
}
