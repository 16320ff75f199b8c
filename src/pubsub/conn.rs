//! The dedicated listening connection of one pool: the only I/O of `pubsub`.
//!
//! Started by the first LISTEN of the pool's clients, it opens a server connection of its own
//! (outside the pool's `pool_size`), LISTENs to the union of the channels, follows the union as
//! it changes (one simple query of LISTENs and UNLISTENs per change), and hands every
//! NotificationResponse to the [`Hub`]. When the union is empty it closes the connection and
//! stops. When the connection fails it is opened again (after `server_login_retry` when the
//! connect fails) and every channel is listened to again; notifications sent while it was down
//! are lost, as they would be for a client whose own connection dropped.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::{BufMut, Bytes, BytesMut};
use sluice_proto::backend::BackendTag;
use sluice_proto::backend_view::error_code_and_message;
use sluice_proto::split_cstr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::Hub;
use super::command::quote;
use crate::server::ServerConn;

/// Runs the dedicated connection until nothing is listened to any more.
pub(super) async fn run(hub: Arc<Hub>) {
    let name = hub.settings.name.clone();
    loop {
        // Nothing to listen to (every client left or unlistened): stop. The same lock decides
        // that a later LISTEN starts a new task.
        if hub.diff().is_none() {
            tracing::debug!(pool = %name, "listening connection no longer needed");
            return;
        }
        let mut conn = match (hub.connect)().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(pool = %name, error = %e, "listening connection failed");
                hub.lost(&e.to_string());
                tokio::time::sleep(hub.settings.retry).await;
                continue;
            }
        };
        hub.connected.store(true, Ordering::Relaxed);
        tracing::debug!(pool = %name, pid = conn.pid, "listening connection opened");
        match serve(&hub, &mut conn).await {
            Ok(()) => {
                tracing::debug!(pool = %name, "listening connection no longer needed");
                return;
            }
            Err(why) => {
                tracing::warn!(pool = %name, reason = %why, "listening connection lost; notifications sent until it is back are lost");
                hub.lost(&why);
            }
        }
    }
}

/// Keeps `conn` listening to the union and dispatches what arrives. Ok when the union is empty.
async fn serve(hub: &Hub, conn: &mut ServerConn) -> Result<(), String> {
    let mut buf = BytesMut::with_capacity(8192);
    hub.reopen.store(false, Ordering::Relaxed);
    loop {
        if hub.reopen.swap(false, Ordering::Relaxed) {
            return Err("RECONNECT: opening it again".into());
        }
        let Some((add, remove)) = hub.diff() else {
            return Ok(());
        };
        if !add.is_empty() || !remove.is_empty() {
            let mut sql = String::new();
            for c in &add {
                sql.push_str(&format!("LISTEN {};", quote(c)));
            }
            for c in &remove {
                sql.push_str(&format!("UNLISTEN {};", quote(c)));
            }
            let mut out = BytesMut::new();
            sluice_proto::frontend::write_query(&sql, &mut out);
            conn.stream
                .write_all(&out)
                .await
                .map_err(|e| e.to_string())?;
            match read_until_ready(hub, conn, &mut buf).await? {
                None => hub.listened(&add, &remove),
                Some(why) => {
                    // The whole query rolled back. The LISTENs waiting for it fail; try again
                    // only once the union changes (the failed clients drop their channels).
                    tracing::warn!(pool = %hub.settings.name, error = %why, "LISTEN on the listening connection failed");
                    hub.refused(&add, &why);
                    hub.listened(&[], &[]);
                    wait_for_change(hub, conn, &mut buf).await?;
                }
            }
            continue;
        }
        wait_for_change(hub, conn, &mut buf).await?;
    }
}

/// Dispatches notifications until the union changes.
async fn wait_for_change(
    hub: &Hub,
    conn: &mut ServerConn,
    buf: &mut BytesMut,
) -> Result<(), String> {
    loop {
        tokio::select! {
            _ = hub.changed.notified() => return Ok(()),
            read = conn.stream.read_buf(buf) => {
                match read {
                    Ok(0) => return Err("server closed the connection".into()),
                    Ok(_) => {
                        if let Some(why) = handle(hub, buf)? {
                            return Err(why);
                        }
                    }
                    Err(e) => return Err(e.to_string()),
                }
                if buf.capacity() - buf.len() < 1024 {
                    buf.reserve(8192);
                }
            }
        }
    }
}

/// Reads through the ReadyForQuery of sluice's own query, dispatching notifications on the way.
/// Returns the query's error, if it failed.
async fn read_until_ready(
    hub: &Hub,
    conn: &mut ServerConn,
    buf: &mut BytesMut,
) -> Result<Option<String>, String> {
    let mut error = None;
    loop {
        loop {
            match next_message(hub, buf)? {
                None => break,
                Some((BackendTag::ReadyForQuery, _)) => return Ok(error),
                Some((BackendTag::ErrorResponse, body)) => {
                    let (code, message) = error_code_and_message(&body);
                    if error.is_none() {
                        error = Some(format!("{code}: {message}"));
                    }
                }
                Some(_) => {}
            }
        }
        buf.reserve(8192);
        match conn.stream.read_buf(buf).await {
            Ok(0) => return Err("server closed the connection".into()),
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Dispatches every whole message in `buf`. An ErrorResponse here (nothing asked) means the
/// server is closing the connection: its message is returned.
fn handle(hub: &Hub, buf: &mut BytesMut) -> Result<Option<String>, String> {
    while let Some((tag, body)) = next_message(hub, buf)? {
        if tag == BackendTag::ErrorResponse {
            let (code, message) = error_code_and_message(&body);
            return Ok(Some(format!("{code}: {message}")));
        }
    }
    Ok(None)
}

/// The next whole message other than a notification (which is dispatched on the way).
fn next_message(hub: &Hub, buf: &mut BytesMut) -> Result<Option<(BackendTag, Bytes)>, String> {
    loop {
        let Some(m) = sluice_proto::split_message(buf, hub.settings.max_message_size)
            .map_err(|e| format!("invalid message from server: {e}"))?
        else {
            return Ok(None);
        };
        let Some(tag) = BackendTag::from_u8(m.tag) else {
            continue;
        };
        if tag != BackendTag::NotificationResponse {
            return Ok(Some((tag, m.body)));
        }
        // pid (4 bytes), channel, payload.
        let Some((channel, _)) = m.body.get(4..).and_then(split_cstr) else {
            continue;
        };
        let channel = String::from_utf8_lossy(channel);
        // The message as PostgreSQL sent it, the notifying backend's pid included.
        let mut whole = BytesMut::with_capacity(5 + m.body.len());
        whole.put_u8(m.tag);
        whole.put_u32(4 + m.body.len() as u32);
        whole.extend_from_slice(&m.body);
        hub.dispatch(&channel, &whole.freeze());
    }
}
