//! One connection to PostgreSQL: connect, authenticate, and the state the pooler tracks on it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use postgres_protocol::authentication::sasl::{self, ChannelBinding, ScramSha256};
use postgres_protocol::message::frontend;
use sluice_proto::backend::BackendTag;
use sluice_proto::backend_view::{
    Authentication, BackendKeyData, ParameterStatus, error_code_and_message,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::net::Stream;
use crate::params::Params;
use crate::prepared::ServerStatements;

/// Where and as whom a pool's server connections log in.
#[derive(Debug, Clone)]
pub struct ServerTarget {
    pub host: String,
    pub port: u16,
    pub dbname: String,
    pub user: String,
    pub password: Option<String>,
}

impl ServerTarget {
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// Why a server connection could not be made. The message is what a client is shown.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConnectError {
    #[error("could not connect to server {addr}: {reason}")]
    Unreachable { addr: String, reason: String },
    #[error("server {addr} did not answer within {timeout:?}")]
    Timeout { addr: String, timeout: Duration },
    /// PostgreSQL refused the login; its own SQLSTATE and message are passed on.
    #[error("server login failed: {message}")]
    Refused { code: String, message: String },
    #[error("server login failed: {0}")]
    Protocol(String),
}

impl ConnectError {
    pub fn sqlstate(&self) -> &str {
        match self {
            ConnectError::Refused { code, .. } => code,
            _ => sluice_proto::sqlstate::SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION,
        }
    }
}

/// A logged-in server connection.
pub struct ServerConn {
    pub id: u64,
    pub stream: Stream,
    /// The server's BackendKeyData, for forwarding cancel requests.
    pub pid: i32,
    pub key: i32,
    /// Values the server reported (ParameterStatus) or that sluice set on it.
    pub params: Params,
    /// (`params`, a client's list) as they were when they last matched: while both are still
    /// those very lists (nothing changed either since, see [`Params::same_list`]), the next
    /// checkout for that list has nothing to compare.
    pub in_sync: Option<(Params, Params)>,
    pub target: Arc<ServerTarget>,
    pub created: Instant,
    pub last_used: Instant,
    /// Set while a client holds it and may have left it mid-transaction. A guard dropped with
    /// `dirty` set closes the connection instead of returning it to the pool.
    pub dirty: bool,
    /// sluice's statements prepared on this connection (transaction mode).
    pub statements: ServerStatements,
    /// Its entry in the pool's server registry (SHOW SERVERS), removed when it is dropped.
    pub entry: Option<crate::registry::ServerEntry>,
}

impl ServerConn {
    /// True when the connection has neither closed nor sent anything unasked while idle (PostgreSQL
    /// sends an ErrorResponse before it closes a terminated backend). Does not block.
    pub fn is_alive(&self) -> bool {
        let mut probe = [0u8; 1];
        match self.stream.try_read(&mut probe) {
            Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
            Ok(_) => false,
        }
    }
}

static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Connects and logs in, within `timeout` for the whole exchange.
pub async fn connect(
    target: Arc<ServerTarget>,
    timeout: Duration,
    max_message: usize,
) -> Result<ServerConn, ConnectError> {
    let addr = target.addr();
    match tokio::time::timeout(timeout, connect_inner(target, max_message)).await {
        Ok(r) => r,
        Err(_) => Err(ConnectError::Timeout { addr, timeout }),
    }
}

async fn connect_inner(
    target: Arc<ServerTarget>,
    max_message: usize,
) -> Result<ServerConn, ConnectError> {
    let addr = target.addr();
    let unreachable = |e: std::io::Error| ConnectError::Unreachable {
        addr: addr.clone(),
        reason: e.to_string(),
    };
    let mut stream = Stream::from(
        TcpStream::connect((target.host.as_str(), target.port))
            .await
            .map_err(unreachable)?,
    );
    stream.set_nodelay(true).map_err(unreachable)?;

    let mut out = BytesMut::with_capacity(256);
    sluice_proto::startup::write_startup(
        &[("user", &target.user), ("database", &target.dbname)],
        &mut out,
    );
    stream.write_all(&out).await.map_err(unreachable)?;
    out.clear();

    let mut buf = BytesMut::with_capacity(1024);
    let mut params = Params::default();
    let mut key = (0, 0);
    let mut scram: Option<ScramSha256> = None;
    let lost = || ConnectError::Protocol("server closed the connection during login".into());
    let protocol = |e: sluice_proto::ProtocolError| ConnectError::Protocol(e.to_string());
    loop {
        let message = loop {
            if let Some(m) = sluice_proto::split_message(&mut buf, max_message).map_err(protocol)? {
                break m;
            }
            buf.reserve(1024);
            if stream.read_buf(&mut buf).await.map_err(unreachable)? == 0 {
                return Err(lost());
            }
        };
        let password = || {
            target.password.as_deref().ok_or_else(|| {
                ConnectError::Protocol(format!(
                    "server asks user \"{}\" for a password and none is configured",
                    target.user
                ))
            })
        };
        let body = &message.body[..];
        match BackendTag::from_u8(message.tag) {
            Some(BackendTag::Authentication) => match Authentication::decode(body)
                .map_err(protocol)?
            {
                Authentication::Ok => {}
                Authentication::CleartextPassword => {
                    frontend::password_message(password()?.as_bytes(), &mut out)
                        .map_err(|e| ConnectError::Protocol(e.to_string()))?;
                }
                Authentication::Md5Password(salt) => {
                    let hash = postgres_protocol::authentication::md5_hash(
                        target.user.as_bytes(),
                        password()?.as_bytes(),
                        salt,
                    );
                    frontend::password_message(hash.as_bytes(), &mut out)
                        .map_err(|e| ConnectError::Protocol(e.to_string()))?;
                }
                Authentication::Sasl(mechanisms) => {
                    if !mechanisms.contains(sasl::SCRAM_SHA_256) {
                        return Err(ConnectError::Protocol(
                            "server offers no SASL mechanism sluice supports".into(),
                        ));
                    }
                    let s = ScramSha256::new(password()?.as_bytes(), ChannelBinding::unsupported());
                    frontend::sasl_initial_response(sasl::SCRAM_SHA_256, s.message(), &mut out)
                        .map_err(|e| ConnectError::Protocol(e.to_string()))?;
                    scram = Some(s);
                }
                Authentication::SaslContinue(data) => {
                    let mut s = scram
                        .take()
                        .ok_or_else(|| ConnectError::Protocol("unexpected SASL continue".into()))?;
                    // This step derives the password's key (PBKDF2, 4096 rounds by default: about a
                    // millisecond or more of CPU). On the blocking pool, not on the event loop that
                    // relays every client's traffic (one thread by default).
                    let data = data.to_vec();
                    let s = tokio::task::spawn_blocking(move || s.update(&data).map(|()| s))
                        .await
                        .map_err(|e| ConnectError::Protocol(format!("SCRAM: {e}")))?
                        .map_err(|e| ConnectError::Protocol(format!("SCRAM: {e}")))?;
                    frontend::sasl_response(s.message(), &mut out)
                        .map_err(|e| ConnectError::Protocol(e.to_string()))?;
                    scram = Some(s);
                }
                Authentication::SaslFinal(data) => {
                    let s = scram
                        .as_mut()
                        .ok_or_else(|| ConnectError::Protocol("unexpected SASL final".into()))?;
                    s.finish(data)
                        .map_err(|e| ConnectError::Protocol(format!("SCRAM: {e}")))?;
                }
                Authentication::Other(_) => {
                    return Err(ConnectError::Protocol(
                        "unexpected message during login".into(),
                    ));
                }
            },
            Some(BackendTag::ParameterStatus) => {
                let p = ParameterStatus::decode(body).map_err(protocol)?;
                params.set(p.name, p.value);
            }
            Some(BackendTag::BackendKeyData) => {
                let k = BackendKeyData::decode(body).map_err(protocol)?;
                key = (k.pid, k.key);
            }
            Some(BackendTag::NoticeResponse) => {}
            Some(BackendTag::ErrorResponse) => {
                let (code, message) = error_code_and_message(body);
                return Err(ConnectError::Refused { code, message });
            }
            Some(BackendTag::ReadyForQuery) => {
                let now = Instant::now();
                return Ok(ServerConn {
                    id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                    stream,
                    pid: key.0,
                    key: key.1,
                    params,
                    in_sync: None,
                    target,
                    created: now,
                    last_used: now,
                    dirty: false,
                    statements: ServerStatements::default(),
                    entry: None,
                });
            }
            _ => {
                return Err(ConnectError::Protocol(
                    "unexpected message during login".into(),
                ));
            }
        }
        if !out.is_empty() {
            stream.write_all(&out).await.map_err(unreachable)?;
            out.clear();
        }
    }
}

/// Sends a CancelRequest for `pid`/`key` to the server at `target`. Best effort, bounded in time.
pub async fn send_cancel(target: &ServerTarget, pid: i32, key: i32, timeout: Duration) {
    let work = async {
        let mut stream = TcpStream::connect((target.host.as_str(), target.port)).await?;
        let mut out = BytesMut::with_capacity(16);
        sluice_proto::startup::write_cancel(pid, key, &mut out);
        stream.write_all(&out).await?;
        // PostgreSQL closes the connection once it has handled the request.
        let mut sink = [0u8; 16];
        let _ = stream.read(&mut sink).await;
        Ok::<_, std::io::Error>(())
    };
    if let Ok(Err(e)) = tokio::time::timeout(timeout, work).await {
        tracing::debug!(error = %e, "cancel request to {} failed", target.addr());
    }
}

/// Runs `sql` (a simple Query) on an idle server and reads through ReadyForQuery, applying any
/// ParameterStatus to the connection's params. Returns the first error's SQLSTATE and message.
pub async fn run_simple(
    conn: &mut ServerConn,
    sql: &str,
    max_message: usize,
) -> std::io::Result<Result<(), (String, String)>> {
    let mut out = BytesMut::with_capacity(sql.len() + 8);
    sluice_proto::frontend::write_query(sql, &mut out);
    conn.stream.write_all(&out).await?;
    let mut buf = BytesMut::with_capacity(1024);
    let mut error = None;
    loop {
        let message = loop {
            if let Some(m) =
                sluice_proto::split_message(&mut buf, max_message).map_err(std::io::Error::other)?
            {
                break m;
            }
            buf.reserve(1024);
            if conn.stream.read_buf(&mut buf).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        };
        match BackendTag::from_u8(message.tag) {
            Some(BackendTag::ParameterStatus) => conn.params.apply_status(&message.body),
            Some(BackendTag::ErrorResponse) if error.is_none() => {
                error = Some(error_code_and_message(&message.body))
            }
            Some(BackendTag::ReadyForQuery) => {
                if !buf.is_empty() {
                    return Err(std::io::Error::other(
                        "server sent data after ReadyForQuery",
                    ));
                }
                return Ok(match error {
                    Some(e) => Err(e),
                    None => Ok(()),
                });
            }
            _ => {}
        }
    }
}
