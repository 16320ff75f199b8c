//! [`Console`]: the admin console's pooler-wide state: which databases are paused (a pool made
//! later for a paused database starts paused) and whether SHUTDOWN was asked for.
//!
//! Owns: those two facts. Must not: touch pools (the console sets each pool's own pause).

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

/// Console state shared by every session.
#[derive(Default)]
pub struct Console {
    paused_all: AtomicBool,
    paused: Mutex<HashSet<String>>,
    shutdown: Notify,
}

impl Console {
    pub fn is_paused(&self, database: &str) -> bool {
        self.paused_all.load(Ordering::SeqCst) || self.paused_set().contains(database)
    }

    fn paused_set(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.paused.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// PAUSE (or KILL) of `database`, of every database with `None`.
    pub fn pause(&self, database: Option<&str>) {
        match database {
            Some(db) => {
                self.paused_set().insert(db.to_owned());
            }
            None => self.paused_all.store(true, Ordering::SeqCst),
        }
    }

    /// RESUME of `database`, of every database with `None`. Resuming one database while every
    /// database is paused is refused (returns false): the pause of all is undone as a whole.
    pub fn resume(&self, database: Option<&str>) -> bool {
        match database {
            Some(db) => {
                if self.paused_all.load(Ordering::SeqCst) {
                    return false;
                }
                self.paused_set().remove(db);
            }
            None => {
                self.paused_all.store(false, Ordering::SeqCst);
                self.paused_set().clear();
            }
        }
        true
    }

    /// SHUTDOWN: wakes [`Self::shutdown_requested`].
    pub fn request_shutdown(&self) {
        self.shutdown.notify_one();
    }

    /// Completes when an admin has run SHUTDOWN.
    pub async fn shutdown_requested(&self) {
        self.shutdown.notified().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pause_and_resume_by_database_and_all() {
        let c = Console::default();
        c.pause(Some("a"));
        assert!(c.is_paused("a") && !c.is_paused("b"));
        assert!(c.resume(Some("a")));
        assert!(!c.is_paused("a"));
        c.pause(Some("a"));
        c.pause(None);
        assert!(c.is_paused("b"));
        assert!(
            !c.resume(Some("b")),
            "one database cannot leave a pause of all"
        );
        assert!(c.is_paused("b"));
        assert!(c.resume(None));
        assert!(
            !c.is_paused("a") && !c.is_paused("b"),
            "RESUME of all clears both"
        );
    }

    #[tokio::test]
    async fn a_shutdown_request_is_kept_until_awaited() {
        let c = Console::default();
        c.request_shutdown();
        tokio::time::timeout(std::time::Duration::from_secs(10), c.shutdown_requested())
            .await
            .expect("a request made before waiting is seen");
    }
}
