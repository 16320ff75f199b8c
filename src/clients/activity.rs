//! [`Activity`]: what a client is doing now, for SHOW CLIENTS, SHOW SERVERS, `/metrics`'
//! idle-in-transaction holders and the live page. Written by the session at the moments it
//! reads the clock anyway (a request goes out, a ReadyForQuery comes back, a checkout starts),
//! read by snapshots.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::diag::Fingerprint;

/// Nothing asked, no transaction open (in session mode it may still hold its server).
pub const IDLE: u8 = 0;
/// A request is at the server.
pub const ACTIVE: u8 = 1;
/// Waiting for a server connection.
pub const WAITING: u8 = 2;
/// Holds a server connection inside a transaction with nothing asked.
pub const IDLE_IN_TRANSACTION: u8 = 3;

pub fn state_name(state: u8) -> &'static str {
    match state {
        ACTIVE => "active",
        WAITING => "waiting",
        IDLE_IN_TRANSACTION => "idle in transaction",
        _ => "idle",
    }
}

#[derive(Default)]
pub struct Activity {
    state: AtomicU8,
    /// When the state was entered (µs since the epoch; 0 = at login).
    since: AtomicU64,
    /// Time spent waiting for server connections, in total (µs).
    pub wait_total_us: AtomicU64,
    /// The fingerprint of the statement it ran last (or runs now); None with query_stats off.
    current: Mutex<Option<Arc<Fingerprint>>>,
}

impl Activity {
    pub fn set(&self, state: u8, since_us: u64) {
        self.state.store(state, Ordering::Relaxed);
        self.since.store(since_us, Ordering::Relaxed);
    }

    /// The state and since when (µs since the epoch).
    pub fn state(&self) -> (u8, u64) {
        (
            self.state.load(Ordering::Relaxed),
            self.since.load(Ordering::Relaxed),
        )
    }

    pub fn set_current(&self, fp: Arc<Fingerprint>) {
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(fp);
    }

    pub fn current(&self) -> Option<Arc<Fingerprint>> {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
