//! [`ServerCap`]: server connections counted across pools, for `max_db_connections` (every pool
//! of a database) and `max_user_connections` (every pool of a user), with PgBouncer 1.24's
//! meaning: a checkout that would open a connection past a cap waits (within
//! `query_wait_timeout`) instead of failing, and an idle connection of another pool under the
//! same cap is closed to make room, as PgBouncer evicts one. A wait that times out on a full
//! cap fails with 53300 naming it (`client/mod.rs`).
//!
//! The count follows each pool's `open` (every connection a pool is responsible for, idle, lent
//! or being opened): a pool takes a place when `open` grows and gives it back when it shrinks.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::Notify;

use super::Pool;

/// One cap shared by the pools it covers.
pub struct ServerCap {
    /// `max_db_connections` or `max_user_connections`.
    pub setting: &'static str,
    /// The database or user it counts.
    pub name: String,
    max: AtomicUsize,
    open: AtomicUsize,
    /// Woken when a place frees (or a pool under it has an idle connection to lend).
    pub(super) freed: Notify,
    pools: Mutex<Vec<Weak<Pool>>>,
}

impl ServerCap {
    pub fn new(setting: &'static str, name: &str, max: usize) -> Arc<ServerCap> {
        Arc::new(ServerCap {
            setting,
            name: name.to_owned(),
            max: AtomicUsize::new(max),
            open: AtomicUsize::new(0),
            freed: Notify::new(),
            pools: Mutex::new(Vec::new()),
        })
    }

    /// The limit (0: none); RELOAD may change it.
    pub fn max(&self) -> usize {
        self.max.load(Ordering::Relaxed)
    }

    pub fn set_max(&self, max: usize) {
        self.max.store(max, Ordering::Relaxed);
        self.freed.notify_waiters();
    }

    /// Server connections counted now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    pub fn is_full(&self) -> bool {
        let max = self.max();
        max > 0 && self.open() >= max
    }

    /// Takes a place unless the cap is reached.
    pub(super) fn try_acquire(&self) -> bool {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                let max = self.max();
                (max == 0 || n < max).then_some(n + 1)
            })
            .is_ok()
    }

    pub(super) fn release(&self) {
        let _ = self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| n.checked_sub(1));
        self.freed.notify_waiters();
    }

    /// Counts `pool` under this cap (for eviction).
    pub(super) fn register(&self, pool: &Arc<Pool>) {
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        pools.retain(|p| p.strong_count() > 0);
        pools.push(Arc::downgrade(pool));
    }

    /// Closes one idle connection of a pool under this cap other than `except`; whether one was.
    pub(super) fn evict_idle(&self, except: &Pool) -> bool {
        let pools: Vec<Arc<Pool>> = self
            .pools
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        pools
            .iter()
            .filter(|p| !std::ptr::eq(p.as_ref(), except))
            .any(|p| p.close_one_idle())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_taken_up_to_the_max_and_given_back() {
        let cap = ServerCap::new("max_db_connections", "db", 2);
        assert!(cap.try_acquire() && cap.try_acquire());
        assert!(!cap.try_acquire());
        assert!(cap.is_full());
        cap.release();
        assert!(!cap.is_full() && cap.try_acquire());
        cap.set_max(0);
        assert!(cap.try_acquire(), "0 is no limit");
        assert_eq!(cap.open(), 3);
    }
}
