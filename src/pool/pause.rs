//! [`Pause`]: a pool's PAUSE state (admin console PAUSE and KILL). While it is set, checkouts
//! wait (within their `query_wait_timeout`) for RESUME; the ones held are counted for SHOW POOLS'
//! waiting clients and longest wait.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use tokio::sync::watch;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_only_while_set_and_counts_who_is_held() {
        let pause = std::sync::Arc::new(Pause::default());
        pause.wait().await;
        assert_eq!(pause.held(), (0, None), "not paused: no wait, nothing held");
        pause.set(true);
        assert!(pause.is_set());
        let held = tokio::spawn({
            let pause = pause.clone();
            async move { pause.wait().await }
        });
        // The waiter registers as held before it waits; wait for that, bounded.
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        while pause.held().0 == 0 {
            assert!(Instant::now() < deadline, "the waiter never registered");
            tokio::task::yield_now().await;
        }
        assert!(pause.held().1.is_some());
        pause.set(false);
        held.await.unwrap();
        assert_eq!(
            pause.held(),
            (0, None),
            "a resumed waiter is no longer held"
        );
    }
}
