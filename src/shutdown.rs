//! Drain: once the pooler stops accepting, idle clients are told it is shutting down (57P01) and
//! closed, clients inside a transaction may finish it, and whatever is left after
//! `shutdown_timeout` is closed.
//!
//! Sessions (pooled and console) hear it one way: [`ClientList::drain`] sets each session's
//! stop bits and wakes it, and a session registering afterwards gets the bit at registration.
//! The `drain` watch channel only tells the background tasks (the metrics endpoint).
//!
//! [`ClientList::drain`]: crate::clients::ClientList::drain

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::shared::Shared;

/// Tells every session to drain and waits for them, up to `shutdown_timeout`; then ends the ones
/// left.
pub async fn drain(shared: &Shared, mut clients: JoinSet<()>, drain: &watch::Sender<bool>) {
    let _ = drain.send(true);
    shared.clients.drain();
    let grace = shared.config().pooler.shutdown_timeout;
    let drained = tokio::time::timeout(grace, async {
        while clients.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            remaining = clients.len(),
            "shutdown_timeout reached; closing remaining clients"
        );
        clients.shutdown().await;
    }
}
