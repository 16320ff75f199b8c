//! [`ByteBudget`]: a process-wide cap on the bytes one kind of thing may hold, counted by the
//! holders themselves. Two budgets exist (see `Limits` in `shared/`): the bytes of large messages
//! held whole by sessions (`max_message_memory`) and the bytes of prepared-statement texts in the
//! registries of all pools (`max_prepared_statement_bytes`).
//!
//! A holder takes bytes before it allocates them and gives them back once freed. Taking never
//! blocks a thread: [`ByteBudget::try_take`] answers at once, [`ByteBudget::take`] waits (as a
//! future) for others to give bytes back, up to a deadline. The cap may change while bytes are
//! held (RELOAD): what is held stays held; new takes see the new cap.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

/// A cap on bytes held across the process, and what is held now.
#[derive(Debug)]
pub struct ByteBudget {
    used: AtomicUsize,
    cap: AtomicUsize,
    /// Woken whenever bytes are given back.
    freed: Notify,
}

impl ByteBudget {
    pub fn new(cap: usize) -> ByteBudget {
        ByteBudget {
            used: AtomicUsize::new(0),
            cap: AtomicUsize::new(cap),
            freed: Notify::new(),
        }
    }

    /// Bytes held now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    pub fn cap(&self) -> usize {
        self.cap.load(Ordering::Relaxed)
    }

    /// A new cap (RELOAD); waiters look again.
    pub fn set_cap(&self, cap: usize) {
        self.cap.store(cap, Ordering::Relaxed);
        self.freed.notify_waiters();
    }

    /// Takes `n` bytes if they fit under the cap now.
    pub fn try_take(&self, n: usize) -> bool {
        let cap = self.cap();
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|&total| total <= cap)
            })
            .is_ok()
    }

    /// Gives back `n` bytes taken before.
    pub fn give(&self, n: usize) {
        if n == 0 {
            return;
        }
        let before = self.used.fetch_sub(n, Ordering::AcqRel);
        debug_assert!(before >= n, "gave back more than was taken");
        self.freed.notify_waiters();
    }

    /// Takes `n` bytes, waiting up to `limit` for others to give bytes back. False if they did
    /// not fit in time (or can never fit: `n` is over the cap).
    pub async fn take(&self, n: usize, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            // Registered before looking, so that bytes given back in between wake this waiter.
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if self.try_take(n) {
                return true;
            }
            if n > self.cap() {
                return false;
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return self.try_take(n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn takes_fit_under_the_cap() {
        let b = ByteBudget::new(100);
        assert!(b.try_take(60));
        assert!(!b.try_take(41), "60 + 41 is over 100");
        assert!(b.try_take(40));
        assert_eq!(b.used(), 100);
        b.give(60);
        assert_eq!(b.used(), 40);
        b.set_cap(30);
        assert!(!b.try_take(1), "over the lowered cap");
        b.give(40);
        assert!(b.try_take(30));
    }

    #[tokio::test]
    async fn a_waiter_gets_bytes_given_back_and_gives_up_at_its_deadline() {
        let b = Arc::new(ByteBudget::new(100));
        assert!(b.try_take(80));
        let waiter = tokio::spawn({
            let b = b.clone();
            async move { b.take(50, Duration::from_secs(30)).await }
        });
        // The waiter cannot have its bytes until 80 are given back.
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        b.give(80);
        assert!(waiter.await.unwrap());
        assert_eq!(b.used(), 50);
        assert!(!b.take(60, Duration::from_millis(20)).await, "times out");
        assert!(!b.take(101, Duration::from_secs(30)).await, "never fits");
        assert_eq!(b.used(), 50);
    }
}
