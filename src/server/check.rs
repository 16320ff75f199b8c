//! The check of a connection that sat idle in the pool longer than `server_check_delay`, before
//! it is lent again: one round trip, bounded in time.
//!
//! What goes out is a lone Sync; PostgreSQL answers it with a ReadyForQuery and nothing else.
//! Chosen over PgBouncer's way (a query, `server_check_query = "select 1"`) because it is the
//! smallest round trip the protocol has (5 bytes out, 6 back) and costs the server nothing to
//! speak of: nothing is parsed, planned, logged or counted as a statement, and no transaction or
//! snapshot is opened. Chosen over a zero-byte probe (a non-blocking read, see
//! [`ServerConn::is_alive`], which every checkout does anyway) because that only notices a
//! connection the server closed: a link that went silent (a stalled network, a dead host, a
//! firewall that forgot the flow) reads exactly like a healthy idle one until something is asked.

use std::time::Duration;

use tokio::io::AsyncReadExt;

use super::ServerConn;

const SYNC: [u8; 5] = [b'S', 0, 0, 0, 4];
/// ReadyForQuery, idle.
const READY_IDLE: [u8; 6] = [b'Z', 0, 0, 0, 5, b'I'];

/// Sends a Sync and expects exactly ReadyForQuery (idle) back within `timeout`. On `Err` the
/// connection must be closed: its state is unknown.
pub async fn check(conn: &mut ServerConn, timeout: Duration) -> Result<(), String> {
    let round_trip = async {
        conn.stream.send(&SYNC).await?;
        let mut answer = [0u8; READY_IDLE.len()];
        conn.stream.read_exact(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    match tokio::time::timeout(timeout, round_trip).await {
        Err(_) => Err(format!("no answer to a check within {timeout:?}")),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(answer)) if answer != READY_IDLE => {
            Err(format!("unexpected answer to a check: {answer:?}"))
        }
        // Anything after the answer was not asked for: the server is about to close.
        Ok(Ok(_)) if !conn.is_alive() => Err("the server sent more than asked".into()),
        Ok(Ok(_)) => Ok(()),
    }
}
