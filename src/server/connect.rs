//! Opening a server connection: TCP, the startup packet, authentication (cleartext, md5,
//! SCRAM-SHA-256 through postgres-protocol's client side), then the server's parameters and
//! cancel key up to its first ReadyForQuery.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use postgres_protocol::authentication::sasl::{self, ChannelBinding, ScramSha256};
use postgres_protocol::message::frontend;
use sluice_proto::backend::BackendTag;
use sluice_proto::backend_view::{
    Authentication, BackendKeyData, ParameterStatus, error_code_and_message,
};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use super::{ConnectError, ServerConn, ServerTarget, TcpOptions};
use crate::params::Params;
use crate::prepared::ServerStatements;
use sluice_proto::auth::{KeyClient, KeyClientError};

static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Connects and logs in, within `timeout` for the whole exchange; `tcp`: the socket's options.
pub async fn connect(
    target: Arc<ServerTarget>,
    timeout: Duration,
    max_message: usize,
    tcp: TcpOptions,
) -> Result<ServerConn, ConnectError> {
    let addr = target.addr();
    match tokio::time::timeout(timeout, connect_inner(target, max_message, tcp)).await {
        Ok(r) => r,
        Err(_) => Err(ConnectError::Timeout { addr, timeout }),
    }
}

async fn connect_inner(
    target: Arc<ServerTarget>,
    max_message: usize,
    tcp: TcpOptions,
) -> Result<ServerConn, ConnectError> {
    let addr = target.addr();
    let unreachable = |e: std::io::Error| ConnectError::Unreachable {
        addr: addr.clone(),
        reason: e.to_string(),
    };
    let socket = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(unreachable)?;
    if let Err(e) = tcp.apply(&socket) {
        // Validated settings on a TCP socket: only a platform without these options gets here.
        tracing::warn!(server = %addr, error = %e, "cannot set TCP keepalive / user timeout");
    }
    socket.set_nodelay(true).map_err(unreachable)?;
    let mut stream = super::tls::start(&target, socket)
        .await
        .map_err(ConnectError::Tls)?;

    let mut out = BytesMut::with_capacity(256);
    sluice_proto::startup::write_startup(
        &[("user", &target.user), ("database", &target.dbname)],
        &mut out,
    );
    stream.send(&out).await.map_err(unreachable)?;
    out.clear();

    let mut buf = BytesMut::with_capacity(1024);
    let mut params = Params::default();
    let mut key = (0, 0);
    let mut scram: Option<ScramSha256> = None;
    // SCRAM pass-through: the keys a client proved, when no password is configured.
    let mut key_client: Option<KeyClient> = None;
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
                    let hash = match (&target.password, &target.pass.md5) {
                        (None, Some(secret)) => sluice_proto::auth::md5::response_from_secret(
                            secret, salt,
                        )
                        .ok_or_else(|| ConnectError::Protocol("malformed md5 secret".into()))?,
                        _ => postgres_protocol::authentication::md5_hash(
                            target.user.as_bytes(),
                            password()?.as_bytes(),
                            salt,
                        ),
                    };
                    frontend::password_message(hash.as_bytes(), &mut out)
                        .map_err(|e| ConnectError::Protocol(e.to_string()))?;
                }
                Authentication::Sasl(mechanisms) => {
                    if !mechanisms.contains(sasl::SCRAM_SHA_256) {
                        return Err(ConnectError::Protocol(
                            "server offers no SASL mechanism sluice supports".into(),
                        ));
                    }
                    if let (None, Some(keys)) = (&target.password, &target.pass.scram) {
                        let kc = KeyClient::new(keys.clone());
                        frontend::sasl_initial_response(
                            sasl::SCRAM_SHA_256,
                            &kc.client_first(),
                            &mut out,
                        )
                        .map_err(|e| ConnectError::Protocol(e.to_string()))?;
                        key_client = Some(kc);
                        stream.send(&out).await.map_err(unreachable)?;
                        out.clear();
                        continue;
                    }
                    let s = ScramSha256::new(password()?.as_bytes(), ChannelBinding::unsupported());
                    frontend::sasl_initial_response(sasl::SCRAM_SHA_256, s.message(), &mut out)
                        .map_err(|e| ConnectError::Protocol(e.to_string()))?;
                    scram = Some(s);
                }
                Authentication::SaslContinue(data) if key_client.is_some() => {
                    let kc = key_client.as_mut().expect("checked");
                    let msg = kc.server_first(data).map_err(pass_through_error)?;
                    frontend::sasl_response(&msg, &mut out)
                        .map_err(|e| ConnectError::Protocol(e.to_string()))?;
                }
                Authentication::SaslFinal(data) if key_client.is_some() => {
                    let kc = key_client.as_ref().expect("checked");
                    kc.server_final(data).map_err(pass_through_error)?;
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
                    check_due: false,
                    settings_unknown: false,
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
            stream.send(&out).await.map_err(unreachable)?;
            out.clear();
        }
    }
}

/// A pass-through login that cannot work: PostgreSQL refuses it the way it refuses a wrong
/// password (28P01), with why.
fn pass_through_error(e: KeyClientError) -> ConnectError {
    match e {
        KeyClientError::OtherSecret => ConnectError::Refused {
            code: sluice_proto::sqlstate::INVALID_PASSWORD.to_owned(),
            message: format!("SCRAM pass-through: {e}"),
        },
        other => ConnectError::Protocol(format!("SCRAM: {other}")),
    }
}
