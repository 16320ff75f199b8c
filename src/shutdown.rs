//! Drain: once the pooler stops accepting, idle clients are told it is shutting down (57P01) and
//! closed, clients inside a transaction may finish it, and whatever is left after
//! `shutdown_timeout` is closed.
//!
//! The signal reaches sessions two ways (to be unified): the `drain` watch channel, read by a
//! session when its relay starts and by the admin console, and [`ClientList::drain`], which sets
//! each logged-in session's stop bits and wakes it.
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
