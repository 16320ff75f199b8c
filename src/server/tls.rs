//! TLS to a server, per `server_tls_mode`: an SSLRequest, then the handshake on `S`; on `N`,
//! plain TCP under `prefer` and no connection otherwise. Used for logins and cancel requests
//! alike (PostgreSQL's pg_hba may demand TLS for both).

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::tls::ServerTlsMode;
use crate::net::Stream;

use super::ServerTarget;

/// Why TLS could not be set up; the message names the server and the setting.
pub fn start_error(target: &ServerTarget, why: impl std::fmt::Display) -> String {
    format!(
        "TLS to server {} (server_tls_mode = {}): {why}",
        target.addr(),
        target.tls.mode
    )
}

/// The stream to log in (or cancel) on: `tcp` itself, or TLS over it.
pub async fn start(target: &ServerTarget, mut tcp: TcpStream) -> Result<Stream, String> {
    let Some(config) = target.tls.connector.as_ref() else {
        return Ok(Stream::from(tcp));
    };
    let mut request = bytes::BytesMut::with_capacity(8);
    request.extend_from_slice(&8i32.to_be_bytes());
    request.extend_from_slice(&sluice_proto::startup::SSL_REQUEST_CODE.to_be_bytes());
    tcp.write_all(&request)
        .await
        .map_err(|e| start_error(target, e))?;
    let mut answer = [0u8; 1];
    tcp.read_exact(&mut answer)
        .await
        .map_err(|e| start_error(target, format!("no answer to SSLRequest: {e}")))?;
    match answer[0] {
        b'S' => crate::net::tls::connect(config, &target.host, tcp)
            .await
            .map_err(|e| start_error(target, format!("handshake failed: {e}"))),
        b'N' if target.tls.mode == ServerTlsMode::Prefer => Ok(Stream::from(tcp)),
        b'N' => Err(start_error(target, "the server does not accept TLS")),
        other => Err(start_error(
            target,
            format!("unexpected answer {:?} to SSLRequest", other as char),
        )),
    }
}
