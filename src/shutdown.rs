//! Drain: once the pooler stops accepting, the clients still connected are let go in one of two
//! ways ([`Stop`]):
//!
//! - [`Stop::Drain`] (SIGINT, console SHUTDOWN): idle clients are told the pooler is shutting
//!   down (57P01) and closed, clients inside a transaction may finish it, and whatever is left
//!   after `shutdown_timeout` is closed.
//! - [`Stop::WaitForClients`] (SIGTERM): nobody is disturbed; sessions go on until their clients
//!   disconnect, which is what an online restart needs (the new process takes the new
//!   connections, the old serves its clients until they leave, and no client sees an error).
//!   Clients still connected after `shutdown_timeout` then get the same as `Drain`, with
//!   [`LAST_CALL`] to finish their transaction.
//!
//! Sessions (pooled and console) hear it one way: [`ClientList::drain`] sets each session's
//! stop bits and wakes it, and a session registering afterwards gets the bit at registration.
//! The `drain` watch channel only tells the background tasks (the metrics endpoint, whose
//! `/readyz` says 503 from the start of either way).
//!
//! [`ClientList::drain`]: crate::clients::ClientList::drain

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::notify;
use crate::shared::Shared;

/// How the pooler lets its clients go once it stops accepting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Each session ends at its next clean point (57P01; idle ones at once); after
    /// `shutdown_timeout` the rest are closed.
    Drain,
    /// Sessions run until their clients leave; after `shutdown_timeout` the ones left get
    /// [`Stop::Drain`] with [`LAST_CALL`].
    WaitForClients,
}

/// [`Stop::WaitForClients`]: how long the clients still connected at `shutdown_timeout` may
/// finish their transaction before they are closed. The process exits within
/// `shutdown_timeout` + this.
pub const LAST_CALL: Duration = Duration::from_secs(5);

/// Lets the sessions go as `stop` says (see the module doc), then ends the ones left.
pub async fn drain(
    shared: &Shared,
    mut clients: JoinSet<()>,
    drain: &watch::Sender<bool>,
    stop: Stop,
) {
    let _ = drain.send(true);
    notify::stopping();
    let grace = shared.config().pooler.shutdown_timeout;
    let last = match stop {
        Stop::Drain => grace,
        Stop::WaitForClients => {
            tracing::info!(clients = clients.len(), "waiting for clients to disconnect");
            if all_done(&mut clients, grace).await {
                return;
            }
            tracing::info!(
                remaining = clients.len(),
                "shutdown_timeout reached; asking the clients left to finish"
            );
            LAST_CALL
        }
    };
    shared.clients.drain();
    if !all_done(&mut clients, last).await {
        tracing::warn!(
            remaining = clients.len(),
            "shutdown_timeout reached; closing remaining clients"
        );
        clients.shutdown().await;
    }
}

/// Waits up to `limit` for every client task to end; true if they all did.
async fn all_done(clients: &mut JoinSet<()>, limit: Duration) -> bool {
    tokio::time::timeout(limit, async {
        while clients.join_next().await.is_some() {}
    })
    .await
    .is_ok()
}
