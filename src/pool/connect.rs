//! Opening a connection for a checkout that took a slot. Whether it may connect at all while the
//! server is down is `outage.rs`'s decision; this file asks it and tells it how the connect went.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::guard::{ServerGuard, Slot};
use super::outage::refused_login;
use super::{CheckoutError, Pool};
use crate::server;

impl Pool {
    /// Opens a connection with `slot`; a failure starts (or prolongs) the outage. A slot handed
    /// over by another checkout is admitted first: while the server is down it fails at once with
    /// the last error, unless it becomes the one probe.
    pub(super) async fn connect_with(
        self: &Arc<Self>,
        mut slot: Slot,
    ) -> Result<ServerGuard, CheckoutError> {
        let ticket = match slot.ticket {
            Some(t) => t,
            None => {
                // On failure the slot goes back (and on to the next waiter) when dropped here.
                let t = self.state().outage.admit(Instant::now())?;
                slot.ticket = Some(t);
                t
            }
        };
        let s = &self.settings;
        match server::connect(self.target(), s.connect_timeout, s.max_message_size, s.tcp).await {
            Ok(mut conn) => {
                let local = conn.stream.local_addr().ok();
                conn.entry = Some(self.servers.register(conn.id, conn.pid, local));
                self.counters.connects.fetch_add(1, Ordering::Relaxed);
                if self.state().outage.succeeded() {
                    tracing::info!(pool = %self.key, "server reachable again");
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
                slot.ticket = None;
                slot.pool = None;
                Ok(ServerGuard::new(self.clone(), Box::new(conn)))
            }
            Err(err) => {
                self.counters
                    .connect_failures
                    .fetch_add(1, Ordering::Relaxed);
                let counted =
                    self.state()
                        .outage
                        .failed(ticket, &err, Instant::now(), s.login_retry);
                // Said when an outage starts, and at each retry of a refused login (at most every
                // 30 x server_login_retry); not at every probe of a server that is down.
                if counted && (!ticket.probe || refused_login(&err)) {
                    tracing::warn!(pool = %self.key, error = %err, "server connection failed");
                } else {
                    tracing::debug!(pool = %self.key, error = %err, probe = ticket.probe, "server connection failed");
                }
                slot.ticket = None;
                drop(slot);
                Err(err.into())
            }
        }
    }
}
