//! TLS for a client connection, before its startup packet: the SSLRequest answered per
//! `client_tls_mode`, a GSSENCRequest answered `N` (the client may then ask for TLS or start
//! plain), and PostgreSQL 17's direct TLS (the first byte is a TLS handshake record, no
//! SSLRequest; ALPN `postgresql` required, as PostgreSQL requires it).
//!
//! Under `client_tls_mode = disable` nothing happens here: login answers `N` as before.

use std::sync::Arc;

use bytes::{Buf, BytesMut};
use sluice_proto::sqlstate;
use sluice_proto::startup::{GSSENC_REQUEST_CODE, SSL_REQUEST_CODE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Fatal;
use super::login::READ_CHUNK;
use crate::Shared;
use crate::net::Stream;
use crate::net::tls::{ALPN_POSTGRESQL, Acceptor};

/// A TLS client connection's facts, for authentication.
#[derive(Debug, Clone, Default)]
pub struct ClientTls {
    /// The common name of the client's certificate, when it presented one (it was checked
    /// against `client_tls_ca_file`: certificates are only asked for when that is set).
    pub cert_cn: Option<String>,
    /// `tls-server-end-point` hash of sluice's certificate: SCRAM-SHA-256-PLUS is offered
    /// when it is known.
    pub end_point: Option<Arc<[u8]>>,
}

/// How the negotiation ended.
pub(super) enum Negotiated {
    /// Log in on this stream (`tls`: `Some` over TLS).
    Ready(Stream, Option<ClientTls>),
    /// Refused before TLS: write this error on the plain stream.
    Refused(Stream, Fatal),
    /// The client left, or its TLS handshake failed (rustls sent the alert).
    Gone,
}

/// The first byte of a TLS handshake record (a ClientHello).
const TLS_HANDSHAKE: u8 = 0x16;

/// A special 8-byte request at the start of `buf`, if it is one.
fn request_code(buf: &[u8]) -> Option<i32> {
    if buf.len() < 8 || buf[..4] != 8i32.to_be_bytes() {
        return None;
    }
    Some(i32::from_be_bytes(buf[4..8].try_into().expect("4 bytes")))
}

/// Reads what comes before the startup packet and does the TLS handshake if asked for.
/// Whatever is read of the startup packet itself stays in `buf`.
pub(super) async fn negotiate(shared: &Shared, tcp: TcpStream, buf: &mut BytesMut) -> Negotiated {
    let config = shared.config();
    let Some(acceptor) = config.tls.as_deref().and_then(|t| t.client.clone()) else {
        return Negotiated::Ready(Stream::from(tcp), None);
    };
    let mut tcp = tcp;
    let mut first = [0u8; 1];
    match tcp.peek(&mut first).await {
        Ok(0) | Err(_) => return Negotiated::Gone,
        Ok(_) if first[0] == TLS_HANDSHAKE => return handshake(&acceptor, tcp, true).await,
        Ok(_) => {}
    }
    loop {
        while buf.len() < 8 {
            buf.reserve(READ_CHUNK);
            match tcp.read_buf(buf).await {
                Ok(0) | Err(_) => return Negotiated::Gone,
                Ok(_) => {}
            }
        }
        match request_code(buf) {
            Some(SSL_REQUEST_CODE) => {
                if buf.len() > 8 {
                    // As PostgreSQL: bytes sent before the handshake could be an attacker's.
                    return Negotiated::Refused(
                        Stream::from(tcp),
                        Fatal::new(
                            sqlstate::PROTOCOL_VIOLATION,
                            "received unencrypted data after SSL request",
                        ),
                    );
                }
                buf.clear();
                if tcp.write_all(b"S").await.is_err() {
                    return Negotiated::Gone;
                }
                return handshake(&acceptor, tcp, false).await;
            }
            Some(GSSENC_REQUEST_CODE) => {
                buf.advance(8);
                if tcp.write_all(b"N").await.is_err() {
                    return Negotiated::Gone;
                }
            }
            _ => return Negotiated::Ready(Stream::from(tcp), None),
        }
    }
}

async fn handshake(acceptor: &Acceptor, tcp: TcpStream, direct: bool) -> Negotiated {
    let peer = tcp.peer_addr().ok();
    let stream = match acceptor.accept(tcp).await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(?peer, error = %e, direct, "client TLS handshake failed");
            return Negotiated::Gone;
        }
    };
    if direct && stream.alpn_protocol() != Some(ALPN_POSTGRESQL) {
        // PostgreSQL 17 closes such a connection too: without ALPN a direct TLS connection
        // could be another protocol's client confused about the port.
        tracing::debug!(
            ?peer,
            "direct TLS connection without ALPN \"postgresql\": closed"
        );
        return Negotiated::Gone;
    }
    let cert_cn = stream
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|c| crate::net::x509::common_name(c));
    let tls = ClientTls {
        cert_cn,
        end_point: acceptor.end_point.clone(),
    };
    Negotiated::Ready(stream, Some(tls))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_requests_are_recognised() {
        let mut ssl = 8i32.to_be_bytes().to_vec();
        ssl.extend(SSL_REQUEST_CODE.to_be_bytes());
        assert_eq!(request_code(&ssl), Some(SSL_REQUEST_CODE));
        assert_eq!(request_code(&ssl[..7]), None);
        let mut startup = 9i32.to_be_bytes().to_vec();
        startup.extend(196608i32.to_be_bytes());
        startup.push(0);
        assert_eq!(request_code(&startup), None);
    }
}
