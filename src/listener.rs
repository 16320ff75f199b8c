//! The accept loop: one task per client, at most `max_client_conn` at once (the rest are told
//! so and closed), until the pooler is told to stop (the `shutdown` future, or SHUTDOWN on the
//! admin console). Draining what is left is `shutdown.rs`'s business.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use sluice_proto::backend::ErrorResponse;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::client;
use crate::shared::Shared;

/// Accepts clients on `listener` until `shutdown` completes or an admin runs SHUTDOWN, then
/// stops listening. Returns the client tasks still running. (Sessions learn of the drain through
/// the client list: [`crate::clients::ClientList::drain`].)
pub async fn accept(
    shared: &Arc<Shared>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> JoinSet<()> {
    let limit = Arc::new(Semaphore::new(shared.config().pooler.max_client_conn));
    let mut clients = JoinSet::new();
    tokio::pin!(shutdown);
    // Why a select!: the loop waits for the next client while also watching the two stop
    // signals and reaping finished client tasks (so the set does not grow with every client
    // that came and went).
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = shared.console.shutdown_requested() => break,
            accepted = listener.accept() => {
                let (mut stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: wait a moment rather than spin.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                match limit.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let shared = shared.clone();
                        clients.spawn(async move {
                            client::serve(shared, stream, peer).await;
                            drop(permit);
                        });
                    }
                    Err(_) => {
                        shared.limits.incidents.refused(crate::metrics::Refusal::MaxClientConn, || format!("{peer}: max_client_conn reached"));
                        clients.spawn(async move {
                            let mut out = BytesMut::new();
                            ErrorResponse::fatal(sluice_proto::sqlstate::TOO_MANY_CONNECTIONS, "sorry, too many clients already (max_client_conn)").write(&mut out);
                            let _ = stream.write_all(&out).await;
                        });
                    }
                }
            }
            Some(_) = clients.join_next(), if !clients.is_empty() => {}
        }
    }
    drop(listener);
    clients
}
