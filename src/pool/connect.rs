//! Opening a connection for a checkout that took a slot, and the backoff after a failure: until
//! it ends, checkouts that would connect fail at once with the same error instead of hammering a
//! server that is down.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::guard::{ServerGuard, Slot};
use super::{CheckoutError, Pool};
use crate::server;

/// How long new connects wait after `failures` failed ones in a row: 1x, 2x, 4x ... the
/// configured `server_login_retry`, at most 30x.
fn backoff(login_retry: Duration, failures: u32) -> Duration {
    let factor = 1u32 << failures.saturating_sub(1).min(5);
    login_retry
        .saturating_mul(factor)
        .min(login_retry.saturating_mul(30))
}

impl Pool {
    /// Opens a connection with `slot`; a failure starts (or lengthens) the backoff.
    pub(super) async fn connect_with(
        self: &Arc<Self>,
        mut slot: Slot,
    ) -> Result<ServerGuard, CheckoutError> {
        let s = &self.settings;
        match server::connect(self.target(), s.connect_timeout, s.max_message_size, s.tcp).await {
            Ok(mut conn) => {
                let local = conn.stream.local_addr().ok();
                conn.entry = Some(self.servers.register(conn.id, conn.pid, local));
                self.counters.connects.fetch_add(1, Ordering::Relaxed);
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
                self.counters
                    .connect_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(pool = %self.key, error = %err, "server connection failed");
                let mut st = self.state();
                st.failures = st.failures.saturating_add(1);
                let wait = backoff(s.login_retry, st.failures);
                st.backoff = Some((Instant::now() + wait, err.clone()));
                drop(st);
                drop(slot);
                Err(err.into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_thirty_times() {
        let s = Duration::from_secs(1);
        let waits: Vec<u64> = (1..=8).map(|f| backoff(s, f).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(backoff(s, 0), s, "no failure counted yet: one interval");
        assert_eq!(backoff(Duration::ZERO, 9), Duration::ZERO);
        assert_eq!(
            backoff(Duration::MAX, u32::MAX),
            Duration::MAX,
            "no overflow"
        );
    }
}
