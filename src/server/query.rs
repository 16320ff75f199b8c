//! sluice's own simple queries on an idle server connection (the parameter sync at login, the
//! session-mode reset query).

use bytes::BytesMut;
use sluice_proto::backend::BackendTag;
use sluice_proto::backend_view::error_code_and_message;
use tokio::io::AsyncReadExt;

use super::ServerConn;

/// Runs `sql` (a simple Query) on an idle server and reads through ReadyForQuery, applying any
/// ParameterStatus to the connection's params. Returns the first error's SQLSTATE and message.
pub async fn run_simple(
    conn: &mut ServerConn,
    sql: &str,
    max_message: usize,
) -> std::io::Result<Result<(), (String, String)>> {
    let mut out = BytesMut::with_capacity(sql.len() + 8);
    sluice_proto::frontend::write_query(sql, &mut out);
    conn.stream.send(&out).await?;
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
