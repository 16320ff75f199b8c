//! One client connection: login, then a session relayed to server connections.
//!
//! The rooms, in the order a client goes through them (docs/architecture.md walks one query
//! through them):
//! - [`login`] (with [`auth`], and [`access`] choosing the method): startup packet,
//!   authentication, pool choice, client caps, greeting;
//! - [`session`]: the logged-in client; owns its buffers, its server connection when it has one,
//!   and composes the parts below; holds the release rule (`Session::at_clean_point`);
//! - [`relay`]: the I/O loop: polls the two sockets, walks messages by header, backpressure;
//! - `memory`: large messages against the process-wide `max_message_memory`;
//! - [`exchange`]: what the client is owed by the server (a state machine without I/O);
//! - [`statements`]: the client's named prepared statements and their renaming;
//! - `unnamed`: repeated unnamed statements run as prepared ones (`cache_unnamed_statements`),
//!   and the replay of a batch that met a stale plan;
//! - `rare`: the session's rarely set parts, in one box;
//! - [`routing`]: read/write splitting for one client (only when the pool has replicas);
//! - [`timeouts`]: query, idle-in-transaction and idle timeouts, on one timer per session;
//! - `listen`: LISTEN / UNLISTEN answered by sluice in transaction mode, notifications delivered.

mod access;
mod auth;
pub mod exchange;
mod follow;
mod listen;
mod login;
mod memory;
mod rare;
mod relay;
pub mod routing;
mod session;
pub mod settings;
pub mod sql_prepare;
pub mod statements;
mod timeouts;
mod tls;
mod unnamed;

pub use tls::ClientTls;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use sluice_proto::backend::ErrorResponse;
use sluice_proto::{ProtocolError, sqlstate};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::Shared;
use crate::clients::ConnectionCount;
use crate::metrics::{Incident, Incidents, Refusal};
use crate::net::Stream;
use crate::pool::{CheckoutError, Pool};

use session::Session;

/// Why a session ended early; written to the client as a FATAL error where possible.
struct Fatal(ErrorResponse);

impl Fatal {
    fn new(code: &str, message: impl Into<String>) -> Self {
        Fatal(ErrorResponse::fatal(code, message))
    }

    /// 08P01 for a message that cannot be framed; one over `max_message_size` says so.
    fn invalid_message(e: ProtocolError) -> Self {
        let err = ErrorResponse::fatal(
            sqlstate::PROTOCOL_VIOLATION,
            format!("invalid message: {e}"),
        );
        Fatal(match e {
            ProtocolError::TooLarge { .. } => err.hint(OVERSIZED_HINT),
            _ => err,
        })
    }

    /// The refusal reason it is counted under.
    fn refusal(&self) -> Refusal {
        let oversized = self.0.hint.as_deref() == Some(OVERSIZED_HINT);
        Refusal::of(&self.0.code, oversized)
    }

    /// `err`, which ends the connection: FATAL, whatever severity it was made with (a client
    /// that sees ERROR expects its connection to stay usable).
    fn ending(mut err: ErrorResponse) -> Self {
        err.severity = sluice_proto::backend::Severity::Fatal;
        Fatal(err)
    }
}

const OVERSIZED_HINT: &str = "messages held whole are capped by sluice's max_message_size";

impl From<std::io::Error> for Fatal {
    fn from(e: std::io::Error) -> Self {
        Fatal::new(sqlstate::CONNECTION_FAILURE, e.to_string())
    }
}

/// Serves one accepted client connection until it ends; `counted` is its place under
/// `max_client_conn`, given back when it ends.
pub fn serve(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    counted: ConnectionCount,
) -> impl std::future::Future<Output = ()> + Send {
    // A future is as big as the biggest state it can be in, and a client task keeps its future
    // for as long as the client stays, idle or not. So everything before the relay (login, the
    // admin console, refusals) runs in a boxed future of its own, the arguments travel boxed
    // (an async fn would keep room for them in every state), and the session is relayed where
    // it lies instead of being moved out of an Option (which would keep room for two).
    let args = Box::new((shared, stream, peer, counted));
    async move {
        // Moved out in a scope of its own, so that the box is freed now, not when the client goes.
        let (shared, stream, peer, _counted) = {
            let args = args;
            *args
        };
        let mut session = Box::pin(start(shared, stream, peer)).await;
        if let Some(s) = session.as_mut() {
            s.run().await;
        }
    }
}

/// Logs the client in; the session to relay, or None when it ended there.
async fn start(shared: Arc<Shared>, tcp: TcpStream, peer: SocketAddr) -> Option<Session> {
    let _ = tcp.set_nodelay(true);
    let mut inbuf = BytesMut::new();
    let mut admin = None;
    // From connect to the end of login (`client_login_timeout`, PostgreSQL's
    // authentication_timeout), TLS handshake included; zero: no limit.
    let limit = match shared.config().pooler.client_login_timeout {
        d if d.is_zero() => std::time::Duration::MAX,
        d => d,
    };
    let started = std::time::Instant::now();
    let timed_out = |shared: &Shared| {
        shared.limits.incidents.refused(Refusal::LoginTimeout, || {
            format!("{peer}: no login within {limit:?}")
        });
    };
    // SSLRequest / GSSENCRequest / direct TLS, per client_tls_mode (tls.rs).
    let negotiated =
        tokio::time::timeout(limit, Box::pin(tls::negotiate(&shared, tcp, &mut inbuf))).await;
    let (mut stream, client_tls) = match negotiated {
        Ok(tls::Negotiated::Ready(stream, client_tls)) => (stream, client_tls),
        Ok(tls::Negotiated::Refused(mut stream, fatal)) => {
            refuse(&shared, &mut stream, peer, fatal).await;
            return None;
        }
        Ok(tls::Negotiated::Gone) => return None,
        Err(_) => {
            timed_out(&shared);
            return None;
        }
    };
    // Boxed, like every rarely used big future here, so that what a client task keeps for its
    // whole life (its future is as big as the biggest state it can be in) stays small.
    let login = Box::pin(login::login(
        &shared,
        &mut stream,
        &mut inbuf,
        &mut admin,
        client_tls.as_ref(),
        peer,
    ));
    let login = tokio::time::timeout(limit.saturating_sub(started.elapsed()), login).await;
    match login {
        Ok(Ok(Some(mut logged_in))) => {
            let caps = logged_in.caps.take();
            let session = Session::new(&shared, logged_in, stream, inbuf, peer);
            // Registered with its pool now, which gives the client's places back at its end.
            if let Some(caps) = caps {
                caps.keep();
            }
            Some(session)
        }
        Ok(Ok(None)) => {
            if let Some(admin) = admin {
                Box::pin(crate::admin::serve(
                    shared.clone(),
                    stream,
                    inbuf,
                    admin,
                    peer,
                ))
                .await;
            }
            None
        }
        Ok(Err(fatal)) => {
            refuse(&shared, &mut stream, peer, fatal).await;
            None
        }
        Err(_) => {
            timed_out(&shared);
            let mut out = BytesMut::new();
            ErrorResponse::fatal(
                sqlstate::CANNOT_CONNECT_NOW,
                "canceling authentication due to timeout",
            )
            .write(&mut out);
            let _ = stream.send(&out).await;
            None
        }
    }
}

/// A login refused: counted, logged (rate-limited), and told to the client.
async fn refuse(shared: &Shared, stream: &mut Stream, peer: SocketAddr, fatal: Fatal) {
    let reason = fatal.refusal();
    let Fatal(err) = fatal;
    tracing::debug!(%peer, code = %err.code, message = %err.message, "login refused");
    shared
        .limits
        .incidents
        .refused(reason, || format!("{peer}: {} {}", err.code, err.message));
    let mut out = BytesMut::new();
    err.write(&mut out);
    let _ = stream.send(&out).await;
    let _ = stream.shutdown().await;
}

/// What a failed checkout tells the client; logged (rate-limited) for the operator.
fn checkout_error(e: &CheckoutError, pool: &Pool, incidents: &Incidents) -> ErrorResponse {
    let kind = match e {
        CheckoutError::Timeout(_) => Incident::WaitTimeout,
        CheckoutError::Connect(_) => Incident::ConnectFailed,
    };
    incidents.note(kind, || format!("pool {}: {e}", pool.key));
    match e {
        // The wait was for a place under a cap across pools, not for this pool's own size.
        CheckoutError::Timeout(wait) if pool.full_cap().is_some() => {
            let cap = pool.full_cap().expect("checked");
            let what = if cap.setting == "max_db_connections" { "database" } else { "user" };
            ErrorResponse::error(
                sqlstate::TOO_MANY_CONNECTIONS,
                format!("too many server connections for {what} \"{}\"", cap.name),
            )
            .detail(format!(
                "{} = {} server connections are open, and none came free within {wait:?} (query_wait_timeout)",
                cap.setting,
                cap.max()
            ))
        }
        CheckoutError::Timeout(_) => {
            ErrorResponse::error(sqlstate::QUERY_CANCELED, format!("canceling statement: {e}"))
                .detail(format!("pool {} has {} server connections, all in use", pool.key, pool.size()))
                .hint("raise the pool size or query_wait_timeout, or find what holds the connections (SHOW POOLS)")
        }
        CheckoutError::Connect(c) => ErrorResponse::error(c.sqlstate(), c.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every client, idle or not, keeps its task's future for its whole life: a regression here
    /// multiplies by max_client_conn (bench/README.md, "Idle client memory"). tokio allocates a
    /// task as 104 bytes of its own plus this future, rounded up to a multiple of 128: up to 536
    /// bytes of future make a 640-byte task, 537-664 a 768-byte one.
    #[tokio::test]
    async fn client_task_future_stays_small() {
        let shared = Shared::new(crate::Config::from_toml("").expect("empty config"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = TcpStream::connect(addr).await.unwrap();
        let (stream, peer) = listener.accept().await.unwrap();
        let counted = shared.clients.connection(1).expect("the first connection");
        let task = serve(shared, stream, peer, counted);
        let size = std::mem::size_of_val(&task);
        eprintln!("client task future: {size} bytes");
        assert!(size <= 536, "client task future grew to {size} bytes");
    }
}
