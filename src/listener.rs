//! The accept loop: one task per client, at most `max_client_conn` at once (the rest are told
//! so and closed), until the pooler is told to stop (the `shutdown` future, or SHUTDOWN on the
//! admin console). Draining what is left is `shutdown.rs`'s business.
//!
//! The socket is bound with `SO_REUSEPORT` ([`crate::net::listen`]), so during an online restart
//! the kernel may still queue connections for this process until the moment it closes: closing
//! takes them first.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use sluice_proto::backend::ErrorResponse;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::client;
use crate::shared::Shared;
use crate::shutdown::Stop;

/// Accepts clients on `listener` until `shutdown` completes or an admin runs SHUTDOWN (a
/// [`Stop::Drain`]), then stops listening ([`close`]: what is already queued is served, not
/// reset). Returns the client tasks still running and how to let them go. (Sessions learn of the
/// drain through the client list: [`crate::clients::ClientList::drain`].)
pub async fn accept(
    shared: &Arc<Shared>,
    listener: TcpListener,
    shutdown: impl Future<Output = Stop> + Send,
) -> (JoinSet<()>, Stop) {
    let limit = shared.config().pooler.max_client_conn;
    let mut clients = JoinSet::new();
    tokio::pin!(shutdown);
    // Made once: a new one each turn would enter and leave the Notify's waiter list each time.
    let requested = shared.console.shutdown_requested();
    tokio::pin!(requested);
    // Why a select!: the loop waits for the next client while also watching the two stop
    // signals and reaping finished client tasks (so the set does not grow with every client
    // that came and went). Biased, in this order: the stop signals first, then reaping (ready
    // only while finished tasks wait, so it cannot hold accepting up), then the next client;
    // no random draw per turn.
    let stop = loop {
        tokio::select! {
            biased;
            stop = &mut shutdown => break stop,
            _ = &mut requested => break Stop::Drain,
            Some(_) = clients.join_next(), if !clients.is_empty() => {}
            accepted = listener.accept() => {
                match accepted {
                    Ok((stream, peer)) => admit(shared, limit, &mut clients, stream, peer),
                    Err(e) => {
                        // Out of file descriptors and the like: wait a moment rather than spin.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }
    };
    let queued = close(shared, limit, &mut clients, listener);
    tracing::info!(queued, "stopped accepting clients");
    (clients, stop)
}

/// Stops listening without resetting anyone: the connections the kernel has already completed
/// into the accept queue are taken and served like any other (a session that logs in while the
/// pooler drains is told so by the client list), then the socket closes. Closing with clients
/// still queued would reset them; with `SO_REUSEPORT` (online restart) the kernel keeps sending
/// a share of new connections to this socket until it is closed, so the queue is rarely empty.
/// Returns how many were taken this way.
fn close(
    shared: &Arc<Shared>,
    limit: usize,
    clients: &mut JoinSet<()>,
    listener: TcpListener,
) -> usize {
    let Ok(listener) = listener.into_std() else {
        return 0;
    };
    let mut queued = 0;
    // The std listener is still non-blocking: accept until the queue is empty, then close at
    // once (the window between the last empty accept and the close is a single system call).
    while let Ok((stream, peer)) = listener.accept() {
        let stream = stream
            .set_nonblocking(true)
            .and_then(|()| TcpStream::from_std(stream));
        if let Ok(stream) = stream {
            admit(shared, limit, clients, stream, peer);
            queued += 1;
        }
    }
    drop(listener);
    queued
}

/// Serves an accepted connection, or tells it that `max_client_conn` is reached.
fn admit(
    shared: &Arc<Shared>,
    limit: usize,
    clients: &mut JoinSet<()>,
    mut stream: TcpStream,
    peer: SocketAddr,
) {
    // The client's place is its count in the client list, given back when its task ends. The
    // task is the client's future itself: a wrapping block would keep room for what it moved
    // into it, in every client's task for as long as the client stays.
    match shared.clients.connection(limit) {
        Some(counted) => {
            clients.spawn(client::serve(shared.clone(), stream, peer, counted));
        }
        None => {
            shared
                .limits
                .incidents
                .refused(crate::metrics::Refusal::MaxClientConn, || {
                    format!("{peer}: max_client_conn reached")
                });
            clients.spawn(async move {
                let mut out = BytesMut::new();
                ErrorResponse::fatal(
                    sluice_proto::sqlstate::TOO_MANY_CONNECTIONS,
                    "sorry, too many clients already (max_client_conn)",
                )
                .write(&mut out);
                let _ = stream.write_all(&out).await;
            });
        }
    }
}
