//! One client session: startup, authentication, then the relay loop.
//!
//! # The relay
//! Four buffers per client: bytes read from the client (`cli_in`) and from the server (`srv_in`), and
//! bytes owed to each (`to_server`, `to_client`). Each round polls the four socket operations in
//! turn and acts on the first that can make progress, so a large result and a large COPY can both
//! be in flight without deadlock, and reading stops while more than [`HIGH_WATER`] bytes are owed
//! to the other side (backpressure: a slow reader never makes sluice buffer a whole result).
//!
//! Messages are walked by header. Only the few whose body matters are held whole; all others
//! (DataRow, CopyData, ...) are passed on as their bytes arrive, whatever their size.
//!
//! # What the client is owed
//! `pending` lists, in order, every request whose answer the client still waits for: one entry
//! per Query, Parse, Bind, Describe, Execute, Close, Sync and FunctionCall. Each server message
//! that ends a request pops its entry. Some entries are answered by sluice itself (a ParseComplete
//! for a statement the server connection already has, a CloseComplete), written when they reach
//! the front so they arrive in the order PostgreSQL would send them; answers to messages sluice
//! inserted (a Parse ahead of a Bind) are dropped. After an error in an extended-protocol batch the
//! server skips to Sync, and so do the entries.
//!
//! # When a server connection is released (transaction mode)
//! When `pending` is empty, the client has sent no extended-protocol message since its last Sync,
//! the last ReadyForQuery said idle (`I`), and no COPY is under way. A server answers a Sync sent
//! during extended-protocol COPY FROM STDIN with nothing (it ignores it), which `pending` accounts
//! for at CopyInResponse.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use sluice_proto::auth::{ScramError, ScramServer, ScramVerifier};
use sluice_proto::backend::{self, ErrorResponse};
use sluice_proto::backend_view::{self, ParameterStatus};
use sluice_proto::startup::{StartupPacket, split_startup};
use sluice_proto::{Header, frontend, sqlstate};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_util::io::poll_read_buf;

use crate::cancel::{CancelRegistration, CancelTarget};
use crate::clients::{STOP_DRAIN, STOP_KILL, SessionStats};
use crate::config::{AuthType, PoolMode};
use crate::params::{self, Params};
use crate::pool::{CheckoutError, Pool, ServerGuard};
use crate::prepared::Statement;
use crate::router::{
    Classification, Outstanding, ReadConstraint, Reason, Route, RouteReason, Router, WriteFence,
    classify,
};
use crate::{Shared, UserAuth};

/// Stop reading from one side while this many bytes are owed to the other.
const HIGH_WATER: usize = 256 * 1024;
/// Read at least this much at a time.
const READ_CHUNK: usize = 8 * 1024;
/// A buffer that grew past this while busy is given back when it empties.
const SHRINK_ABOVE: usize = 64 * 1024;
/// Time allowed from connect to the end of authentication (PostgreSQL's authentication_timeout).
const LOGIN_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a session ended early; written to the client as a FATAL error where possible.
struct Fatal(ErrorResponse);

impl Fatal {
    fn new(code: &str, message: impl Into<String>) -> Self {
        Fatal(ErrorResponse::fatal(code, message))
    }
}

impl From<std::io::Error> for Fatal {
    fn from(e: std::io::Error) -> Self {
        Fatal::new(sqlstate::CONNECTION_FAILURE, e.to_string())
    }
}

pub fn serve(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    drain: watch::Receiver<bool>,
) -> impl std::future::Future<Output = ()> + Send {
    // A future is as big as the biggest state it can be in, and a client task keeps its future
    // for as long as the client stays, idle or not. So everything before the relay (login, the
    // admin console, refusals) runs in a boxed future of its own, the arguments travel boxed
    // (an async fn would keep room for them in every state), and the session is relayed where
    // it lies instead of being moved out of an Option (which would keep room for two).
    let counted = shared.clients.connection();
    let args = Box::new((shared, stream, peer, drain));
    async move {
        let _counted = counted;
        // Moved out in a scope of its own, so that the box is freed now, not when the client goes.
        let (shared, stream, peer, drain) = {
            let args = args;
            *args
        };
        let mut session = Box::pin(start(shared, stream, peer, drain)).await;
        if let Some(s) = session.as_mut() {
            s.run().await;
        }
    }
}

/// Logs the client in; the session to relay, or None when it ended there.
async fn start(
    shared: Arc<Shared>,
    mut stream: TcpStream,
    peer: SocketAddr,
    drain: watch::Receiver<bool>,
) -> Option<Session> {
    let _ = stream.set_nodelay(true);
    let mut inbuf = BytesMut::new();
    let mut admin = None;
    // Boxed, like every rarely used big future here, so that what a client task keeps for its
    // whole life (its future is as big as the biggest state it can be in) stays small.
    let login = Box::pin(login(&shared, &mut stream, &mut inbuf, &mut admin));
    let login = tokio::time::timeout(LOGIN_TIMEOUT, login).await;
    let session = match login {
        Ok(Ok(Some(s))) => s,
        Ok(Ok(None)) => {
            if let Some(admin) = admin {
                Box::pin(crate::admin::serve(
                    shared.clone(),
                    crate::net::Stream::from(stream),
                    inbuf,
                    admin,
                    peer,
                    drain,
                ))
                .await;
            }
            return None;
        }
        Ok(Err(Fatal(err))) => {
            tracing::debug!(%peer, code = %err.code, message = %err.message, "login refused");
            let mut out = BytesMut::new();
            err.write(&mut out);
            let _ = stream.write_all(&out).await;
            let _ = stream.shutdown().await;
            return None;
        }
        Err(_) => {
            let mut out = BytesMut::new();
            ErrorResponse::fatal(
                sqlstate::CANNOT_CONNECT_NOW,
                "canceling authentication due to timeout",
            )
            .write(&mut out);
            let _ = stream.write_all(&out).await;
            return None;
        }
    };
    let LoggedIn {
        pool,
        wanted,
        cancel,
        server,
    } = session;
    let mode = pool.settings.mode;
    let max = shared.config().pooler.max_message_size;
    let intercept = mode == PoolMode::Transaction && pool.settings.max_prepared_statements > 0;
    let app = wanted.get("application_name");
    let stats = SessionStats::new(
        &shared.clients,
        &pool,
        stream.local_addr().ok(),
        peer,
        cancel.pid,
        app,
        server.as_ref(),
    );
    let mut s = Session {
        pool,
        mode,
        client: stream,
        cli_in: inbuf,
        to_client: BytesMut::new(),
        srv_in: BytesMut::new(),
        to_server: BytesMut::new(),
        server: None,
        wanted,
        cancel,
        pending: VecDeque::new(),
        statements: HashMap::new(),
        intercept,
        unsynced: false,
        in_copy_in: false,
        cli_skip: 0,
        cli_skip_discard: false,
        srv_skip: 0,
        srv_skip_discard: false,
        discard_until_sync: false,
        lost: None,
        tx_status: b'I',
        batch_error_seen: false,
        held_error: None,
        max,
        draining: false,
        drain,
        stats,
        route: None,
    };
    if mode == PoolMode::Transaction {
        s.route = s.pool.router.clone().map(|router| {
            Box::new(RouteState {
                fence: router.fence(),
                router,
                on_replica: None,
                _outstanding: None,
                ro_tx: false,
                wrote: false,
                retry: None,
                force_primary: false,
                blocked: false,
                probe_lsn: None,
            })
        });
    }
    if let Some(guard) = server {
        s.attach_guard(guard);
    }
    Some(s)
}

struct LoggedIn {
    pool: Arc<Pool>,
    wanted: Params,
    cancel: CancelRegistration,
    /// In session mode, the server connection the session keeps.
    server: Option<ServerGuard>,
}

async fn read_more(stream: &mut TcpStream, buf: &mut BytesMut) -> Result<bool, Fatal> {
    buf.reserve(READ_CHUNK);
    Ok(stream.read_buf(buf).await? > 0)
}

/// Reads one whole tagged message during login.
async fn read_message(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    max: usize,
) -> Result<Option<sluice_proto::RawMessage>, Fatal> {
    loop {
        match sluice_proto::split_message(buf, max) {
            Ok(Some(m)) => return Ok(Some(m)),
            Ok(None) => {}
            Err(e) => {
                return Err(Fatal::new(
                    sqlstate::PROTOCOL_VIOLATION,
                    format!("invalid message: {e}"),
                ));
            }
        }
        if !read_more(stream, buf).await? {
            return Ok(None);
        }
    }
}

/// Startup packet, authentication, pool choice, and the greeting. `Ok(None)`: the connection ended
/// without a session (a cancel request, or the client left).
/// A client of the admin console's virtual database gets `Ok(None)` with `admin` set.
async fn login(
    shared: &Arc<Shared>,
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    admin: &mut Option<crate::admin::AdminLogin>,
) -> Result<Option<LoggedIn>, Fatal> {
    let mut out = BytesMut::with_capacity(512);
    let (minor, startup) = loop {
        let packet = match split_startup(buf) {
            Ok(Some(p)) => p,
            Ok(None) => {
                if !read_more(stream, buf).await? {
                    return Ok(None);
                }
                continue;
            }
            Err(e) => {
                return Err(Fatal::new(
                    sqlstate::PROTOCOL_VIOLATION,
                    format!("invalid startup packet: {e}"),
                ));
            }
        };
        match packet {
            StartupPacket::SslRequest | StartupPacket::GssEncRequest => {
                if !buf.is_empty() {
                    return Err(Fatal::new(
                        sqlstate::PROTOCOL_VIOLATION,
                        "received unencrypted data after SSL request",
                    ));
                }
                stream.write_all(b"N").await?;
            }
            StartupPacket::Cancel { pid, key } => {
                if let Some(t) = shared.cancels.lookup(pid, key) {
                    crate::cancel::send_cancel(&t.server, t.pid, t.key, Duration::from_secs(5))
                        .await;
                }
                return Ok(None);
            }
            StartupPacket::Startup { minor, params, .. } => break (minor, params),
        }
    };

    let get = |name: &str| {
        startup
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let user = match get("user") {
        Some(u) if !u.is_empty() => u.to_owned(),
        _ => {
            return Err(Fatal::new(
                sqlstate::INVALID_AUTHORIZATION_SPECIFICATION,
                "no PostgreSQL user name specified in startup packet",
            ));
        }
    };
    let database = get("database")
        .filter(|d| !d.is_empty())
        .unwrap_or(&user)
        .to_owned();

    let unknown_options: Vec<&str> = startup
        .iter()
        .filter(|(k, _)| k.starts_with("_pq_."))
        .map(|(k, _)| k.as_str())
        .collect();
    if minor > 0 || !unknown_options.is_empty() {
        sluice_proto::startup::write_negotiate_protocol_version(0, &unknown_options, &mut out);
    }

    let user_auth = shared.user(&user);
    let config = shared.config();
    let db_config = config.databases.get(&database);
    let auth_type = user_auth
        .as_ref()
        .and_then(|u| u.auth_type)
        .or_else(|| db_config.and_then(|d| d.auth_type))
        .unwrap_or(config.pooler.auth_type);
    authenticate(
        shared,
        stream,
        buf,
        &mut out,
        &user,
        user_auth.as_deref(),
        auth_type,
    )
    .await?;
    let Some(user_auth) = user_auth else {
        return Err(password_failed(&user));
    };
    backend::authentication_ok(&mut out);

    if crate::admin::is_console(&database) {
        *admin = Some(
            crate::admin::authorize(shared, &user, &database, get("application_name"))
                .map_err(Fatal)?,
        );
        stream.write_all(&out).await?;
        return Ok(None);
    }
    if db_config.is_none() {
        return Err(Fatal::new(
            sqlstate::INVALID_CATALOG_NAME,
            format!("database \"{database}\" does not exist"),
        ));
    }
    if get("replication").is_some_and(|r| r != "false" && r != "0" && r != "off" && r != "no") {
        return Err(Fatal::new(
            sqlstate::FEATURE_NOT_SUPPORTED,
            "replication connections are not supported by sluice",
        ));
    }
    let pool = shared
        .pool_for(&database, &user, &user_auth)
        .map_err(|why| Fatal::new(sqlstate::INVALID_AUTHORIZATION_SPECIFICATION, why))?;
    let wait = config.pooler.query_wait_timeout;

    // Parameters the client asked for at startup.
    let mut requested: Vec<(String, String)> = Vec::new();
    for (k, v) in &startup {
        match k.as_str() {
            "user" | "database" | "replication" => {}
            "options" => {
                let opts = params::parse_options(v).map_err(|why| {
                    Fatal::new(sqlstate::FEATURE_NOT_SUPPORTED, format!("options: {why}"))
                })?;
                requested.extend(opts);
            }
            k if k.starts_with("_pq_.") => {}
            _ => requested.push((k.clone(), v.clone())),
        }
    }

    let checkout_err = |e: CheckoutError| Fatal(checkout_error(&e, &pool).0);
    let mut server = None;
    if pool.startup_params().is_none() || pool.settings.mode == PoolMode::Session {
        server = Some(pool.checkout(wait).await.map_err(checkout_err)?);
    }
    let defaults = pool.startup_params().expect("a login has been made");
    let mut wanted = pool.client_defaults().expect("a login has been made");
    // Values PostgreSQL would normalise (DateStyle=ISO reports "ISO, MDY") or reject are sent to a
    // server once, so the client sees exactly what PostgreSQL would have said.
    let needs_server = requested
        .iter()
        .any(|(k, v)| defaults.get(k) != Some(v.as_str()));
    if needs_server {
        let mut guard = match server.take() {
            Some(g) => g,
            None => pool.checkout(wait).await.map_err(checkout_err)?,
        };
        let mut target = Params::default();
        for (k, v) in &requested {
            if defaults.get(k).is_some() {
                target.set(k, v);
            } else {
                target.set_extra(k, v);
            }
        }
        let conn = guard.conn_mut();
        if let Some(sql) = conn.params.sync_sql(&target) {
            conn.dirty = true;
            match crate::server::run_simple(conn, &sql, pool.settings.max_message_size).await {
                Ok(Ok(())) => {
                    conn.dirty = false;
                    conn.params.note_synced(&target);
                }
                Ok(Err((code, message))) => {
                    conn.dirty = false;
                    // Put the connection back as it was for the next client.
                    return Err(Fatal::new(&code, message));
                }
                Err(e) => {
                    return Err(Fatal::new(
                        sqlstate::CONNECTION_FAILURE,
                        format!("server connection lost: {e}"),
                    ));
                }
            }
        }
        for (k, _) in &requested {
            match conn.params.get(k) {
                Some(v) if defaults.get(k).is_some() => wanted.set(k, v),
                Some(v) => wanted.set_extra(k, v),
                None => {}
            }
        }
        server = Some(guard);
    }
    if pool.settings.mode == PoolMode::Transaction {
        server = None;
    }

    for (k, v) in defaults.iter() {
        backend::parameter_status(k, wanted.get(k).unwrap_or(v), &mut out);
    }
    let wanted = pool.shared_params(wanted);
    let cancel = shared.cancels.register();
    backend::backend_key_data(cancel.pid, cancel.secret, &mut out);
    backend::ready_for_query(b'I', &mut out);
    stream.write_all(&out).await?;
    Ok(Some(LoggedIn {
        pool,
        wanted,
        cancel,
        server,
    }))
}

fn password_failed(user: &str) -> Fatal {
    Fatal::new(
        sqlstate::INVALID_PASSWORD,
        format!("password authentication failed for user \"{user}\""),
    )
}

/// Runs the chosen password exchange. An unknown user gets the same exchange against a mock secret,
/// so the answer does not tell which users exist; it fails after the client's proof.
async fn authenticate(
    shared: &Shared,
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    out: &mut BytesMut,
    user: &str,
    auth: Option<&UserAuth>,
    auth_type: AuthType,
) -> Result<(), Fatal> {
    let max = sluice_proto::MAX_STARTUP_LEN;
    let expect_password = |m: Option<sluice_proto::RawMessage>| -> Result<bytes::Bytes, Fatal> {
        match m {
            Some(m) if m.tag == b'p' => Ok(m.body),
            Some(m) => Err(Fatal::new(
                sqlstate::PROTOCOL_VIOLATION,
                format!(
                    "expected password response, got message type {}",
                    m.tag as char
                ),
            )),
            None => Err(Fatal::new(
                sqlstate::PROTOCOL_VIOLATION,
                "connection closed during authentication",
            )),
        }
    };
    match auth_type {
        AuthType::Trust => Ok(()),
        AuthType::Md5 => {
            let salt: [u8; 4] = rand::random();
            backend::authentication_md5_password(salt, out);
            stream.write_all(out).await?;
            out.clear();
            let body = expect_password(read_message(stream, buf, max).await?)?;
            let msg = frontend::PasswordMessage::decode(&body)
                .map_err(|e| Fatal::new(sqlstate::PROTOCOL_VIOLATION, e.to_string()))?;
            let ok = match auth.and_then(|a| a.secret.as_ref()) {
                Some(secret) => {
                    sluice_proto::auth::md5::verify_md5_response(user, secret, salt, msg.password)
                }
                None => false,
            };
            if ok {
                Ok(())
            } else {
                Err(password_failed(user))
            }
        }
        AuthType::ScramSha256 => {
            let verifier = match auth.and_then(|a| a.scram.clone()) {
                Some(v) => v,
                None => ScramVerifier::mock(user, &shared.mock_secret),
            };
            let mut scram = ScramServer::new(verifier);
            backend::authentication_sasl(scram.mechanisms(), out);
            stream.write_all(out).await?;
            out.clear();
            let scram_err = |e: ScramError| match e {
                ScramError::InvalidProof => password_failed(user),
                ScramError::UnsupportedMechanism(_) | ScramError::ChannelBindingUnsupported => {
                    Fatal::new(sqlstate::FEATURE_NOT_SUPPORTED, e.to_string())
                }
                other => Fatal::new(
                    sqlstate::PROTOCOL_VIOLATION,
                    format!("malformed SCRAM message: {other}"),
                ),
            };
            let body = expect_password(read_message(stream, buf, max).await?)?;
            let first = frontend::SaslInitialResponse::decode(&body)
                .map_err(|e| Fatal::new(sqlstate::PROTOCOL_VIOLATION, e.to_string()))?;
            let server_first = scram
                .client_first(first.mechanism, first.data.unwrap_or(&[]))
                .map_err(scram_err)?;
            backend::authentication_sasl_continue(&server_first, out);
            stream.write_all(out).await?;
            out.clear();
            let body = expect_password(read_message(stream, buf, max).await?)?;
            let fin = frontend::SaslResponse::decode(&body)
                .map_err(|e| Fatal::new(sqlstate::PROTOCOL_VIOLATION, e.to_string()))?;
            let server_final = scram.client_final(fin.data).map_err(scram_err)?;
            if auth.is_none() {
                return Err(password_failed(user));
            }
            backend::authentication_sasl_final(&server_final, out);
            Ok(())
        }
    }
}

/// What a failed checkout tells the client.
fn checkout_error(e: &CheckoutError, pool: &Pool) -> Fatal {
    match e {
        CheckoutError::Timeout(_) => Fatal(
            ErrorResponse::error(sqlstate::QUERY_CANCELED, format!("canceling statement: {e}"))
                .detail(format!("pool {} has {} server connections, all in use", pool.key, pool.size()))
                .hint("raise the pool size or query_wait_timeout, or find what holds the connections (SHOW POOLS)"),
        ),
        CheckoutError::Connect(c) => Fatal(ErrorResponse::error(c.sqlstate(), c.to_string())),
    }
}

/// A request the client is owed an answer for, in the order the answers must arrive.
///
/// Most are answered by the server. Some are answered by sluice itself (`Answer::Local`, the
/// `Local*` entries): those are written when they reach the front, so they always land in the
/// order PostgreSQL would have sent them. Answers to requests sluice inserted (`Answer::Swallow`,
/// `Internal`) never reach the client.
enum Pending {
    /// A simple Query, answered through ReadyForQuery.
    Query,
    /// A Sync, answered by ReadyForQuery.
    Sync,
    /// A FunctionCall, answered through ReadyForQuery.
    Call,
    /// sluice's own simple query (parameter sync), swallowed through its ReadyForQuery.
    Internal,
    /// sluice's read of the primary's WAL position after a client's write (read-your-writes),
    /// swallowed through its ReadyForQuery.
    LsnProbe,
    Parse {
        answer: Answer,
        undo: Undo,
    },
    Bind,
    Describe,
    Execute,
    Close {
        answer: Answer,
        /// A client's Close answered locally: its name and statement, to restore if skipped.
        restore: Option<(Bytes, Arc<Statement>)>,
        /// An eviction sluice sent: if the server skips it, the statement stays there.
        evicted: Option<u64>,
    },
    /// A simple query sluice answers itself (DEALLOCATE of a client's statement).
    LocalCommand(&'static str),
    /// An error sluice raises itself in an extended-protocol batch. The server is sent a request
    /// bound to fail in its place, so it aborts the transaction and skips to Sync exactly as
    /// PostgreSQL would have; its error is replaced by this one.
    FailWith(Bytes),
    /// The client ended a COPY FROM STDIN (CopyDone or CopyFail) before we saw it start.
    CopyEnd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// Forward the server's answer.
    Server,
    /// The server answers a message sluice inserted: drop it.
    Swallow,
    /// sluice answers; the server was not asked.
    Local,
}

/// What to take back if a Parse never happens (the server rejects or skips it).
#[derive(Default)]
struct Undo {
    /// The client name that was mapped to the statement.
    client: Option<Bytes>,
    /// The statement was recorded as prepared on the server connection.
    server: bool,
    stmt: Option<Arc<Statement>>,
}

impl Undo {
    fn stmt_id(&self) -> Option<u64> {
        self.stmt.as_ref().map(|s| s.id)
    }
}

enum Event {
    Drain,
    Kill,
    ClientReadable(std::io::Result<()>),
    ClientRead(std::io::Result<usize>),
    ClientWrote(std::io::Result<usize>),
    ServerRead(std::io::Result<usize>),
    ServerWrote(std::io::Result<usize>),
}

enum Flow {
    Continue,
    /// The client said Terminate, or must be closed.
    Close,
}

struct Session {
    pool: Arc<Pool>,
    mode: PoolMode,
    client: TcpStream,
    cli_in: BytesMut,
    to_client: BytesMut,
    srv_in: BytesMut,
    to_server: BytesMut,
    server: Option<ServerGuard>,
    /// The parameter values this client should see.
    wanted: Params,
    cancel: CancelRegistration,
    pending: VecDeque<Pending>,
    /// Named statements of this client (transaction mode): client name → pool-wide statement.
    statements: HashMap<Bytes, Arc<Statement>>,
    /// Rename statements (transaction mode with max_prepared_statements > 0).
    intercept: bool,
    /// Extended-protocol messages were sent since the last Sync.
    unsynced: bool,
    /// Extended-protocol COPY FROM STDIN under way: the server ignores Sync until CopyDone/CopyFail.
    in_copy_in: bool,
    /// Bytes of a client CopyData still to pass through (or drop, with `cli_skip_discard`).
    cli_skip: usize,
    cli_skip_discard: bool,
    /// Bytes of a server message still to pass through (or drop, with `srv_skip_discard`).
    srv_skip: usize,
    srv_skip_discard: bool,
    /// After an error in an extended-protocol batch: drop the client's messages up to Sync.
    discard_until_sync: bool,
    /// The server died while the client was idle in a transaction: the next request fails.
    lost: Option<String>,
    tx_status: u8,
    batch_error_seen: bool,
    /// An ErrorResponse the server sent while nothing was asked (it is about to close).
    held_error: Option<String>,
    max: usize,
    draining: bool,
    drain: watch::Receiver<bool>,
    /// Counters, timings and this client's registry entry (SHOW CLIENTS, KILL).
    stats: SessionStats,
    /// Read/write splitting; None unless the pool has replicas (boxed: most pools have none).
    route: Option<Box<RouteState>>,
}

/// A client's read/write splitting state.
struct RouteState {
    router: Arc<Router>,
    fence: WriteFence,
    /// The attached server is this replica's (None: the primary's, or no server).
    on_replica: Option<usize>,
    /// Counts this client on the replica for least-outstanding balancing.
    _outstanding: Option<Outstanding>,
    /// A `READ ONLY` transaction is open on the replica: everything goes there until it ends.
    ro_tx: bool,
    /// Work that was not provably read-only ran on the attached primary server: at the end of
    /// the transaction the read-your-writes fence moves.
    wrote: bool,
    /// The first unit sent to a replica, held for a retry on the primary.
    retry: Option<Retry>,
    /// The next unit goes to the primary (it is a retried one).
    force_primary: bool,
    /// `process_client` stopped at a unit that must wait for the attached server to be released.
    blocked: bool,
    /// The answer of an [`Pending::LsnProbe`] so far.
    probe_lsn: Option<u64>,
}

impl RouteState {
    /// The attached server is gone (released, lost, or given up for a retry).
    fn leave_server(&mut self) {
        self.on_replica = None;
        self._outstanding = None;
        self.ro_tx = false;
    }
}

/// A unit of work sent to a replica that can still be run on the primary instead: nothing of its
/// answer has reached the client (the answer is held in `to_client` from `hold_from`).
struct Retry {
    /// The client's messages of the unit, as received.
    bytes: Bytes,
    hold_from: usize,
    /// The replica refused it (25006): retry once its ReadyForQuery arrives.
    refused: bool,
}

/// Where a unit of work (an autocommit statement, an extended-protocol batch up to Sync) may run,
/// from the statements it names.
#[derive(Debug, Clone, Copy)]
struct Unit {
    /// Provably read-only (or inside a `READ ONLY` transaction it opens): a replica may run it.
    read: bool,
    /// Why not, when not.
    reason: Reason,
    hint: bool,
    begins_ro_tx: bool,
    ends_tx: bool,
}

impl Unit {
    fn read() -> Unit {
        Unit {
            read: true,
            reason: Reason::ReadOnly,
            hint: false,
            begins_ro_tx: false,
            ends_tx: false,
        }
    }

    fn primary(reason: Reason) -> Unit {
        Unit {
            read: false,
            reason,
            hint: false,
            begins_ro_tx: false,
            ends_tx: false,
        }
    }

    /// Why a replica may run it (for a unit that is `read`).
    fn replica_reason(&self) -> RouteReason {
        if self.begins_ro_tx {
            RouteReason::ReadOnlyTransaction
        } else if self.hint {
            RouteReason::Hint
        } else {
            RouteReason::ReadOnly
        }
    }

    fn add(&mut self, c: Classification) {
        if !self.read {
            return;
        }
        if c.route == Route::Primary {
            *self = Unit::primary(c.reason);
            return;
        }
        self.hint |= c.reason == Reason::HintReplica;
        self.begins_ro_tx |= c.begins_read_only_tx;
        self.ends_tx |= c.ends_tx && !c.chains_tx;
    }
}

/// Polls `fut` once: its output if it is ready now, `None` if it would wait.
async fn now_or_never<F: std::future::Future>(fut: F) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(|cx| match fut.as_mut().poll(cx) {
        std::task::Poll::Ready(v) => std::task::Poll::Ready(Some(v)),
        std::task::Poll::Pending => std::task::Poll::Ready(None),
    })
    .await
}

fn shrink(buf: &mut BytesMut) {
    if buf.is_empty() && buf.capacity() > SHRINK_ABOVE {
        *buf = BytesMut::new();
    }
}

/// Splits a C string off the front: (the string without its NUL, the rest).
fn cstr(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = b.iter().position(|c| *c == 0)?;
    Some((&b[..end], &b[end + 1..]))
}

/// The first column of a DataRow as text (None when NULL or malformed).
fn data_row_text(body: &[u8]) -> Option<&str> {
    let cols = i16::from_be_bytes(body.get(..2)?.try_into().ok()?);
    if cols < 1 {
        return None;
    }
    let len = i32::from_be_bytes(body.get(2..6)?.try_into().ok()?);
    let len = usize::try_from(len).ok()?;
    std::str::from_utf8(body.get(6..6 + len)?).ok()
}

fn malformed(what: &str) -> Fatal {
    Fatal::new(
        sqlstate::PROTOCOL_VIOLATION,
        format!("invalid {what} message"),
    )
}

/// Writes a message whose body is `parts` (already NUL-terminated where needed) after `tag`.
fn write_parts(tag: u8, parts: &[&[u8]], out: &mut BytesMut) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    out.reserve(len + Header::LEN);
    out.extend_from_slice(&[tag]);
    out.extend_from_slice(&((len + 4) as i32).to_be_bytes());
    for p in parts {
        out.extend_from_slice(p);
    }
}

impl Session {
    async fn run(&mut self) {
        let end = self.relay().await;
        // Boxed: its timer and the error it writes would otherwise add to the state every
        // client keeps while it relays.
        Box::pin(self.end(end)).await;
    }

    /// Tells the client why its session ended (if it can still hear it), then lets go of the
    /// server connection.
    async fn end(&mut self, end: Result<(), Fatal>) {
        if let Err(Fatal(err)) = end {
            if err.code != sqlstate::CONNECTION_FAILURE {
                self.pool.counters.error_code(&err.code);
            }
            err.write(&mut self.to_client);
        }
        if !self.to_client.is_empty() {
            let _ = tokio::time::timeout(
                Duration::from_secs(5),
                self.client.write_all(&self.to_client),
            )
            .await;
        }
        self.finish_server().await;
    }

    async fn relay(&mut self) -> Result<(), Fatal> {
        if *self.drain.borrow() {
            self.draining = true;
        }
        // One stop future (KILL, or the pooler draining) for the whole loop, not one per round.
        let info = self.stats.client.info.clone();
        let stop = info.killed();
        tokio::pin!(stop);
        // Polling `stop` costs a lock; once it has been polled (it then holds this task's waker,
        // which stays the same), a round only needs to look at the stop bits, which are set
        // before the notification. `armed`: polled since (re)made; `handled`: bits acted on.
        let mut armed = false;
        let mut handled = 0u8;
        loop {
            self.write_now()?;
            // A failed write to a replica may have put its unit back for the primary.
            if let Some(rs) = self.route.as_deref_mut().filter(|r| r.blocked) {
                if self.server.is_none() {
                    rs.blocked = false;
                    if let Flow::Close = self.process_client().await? {
                        return Ok(());
                    }
                    continue;
                }
            }
            if self.draining && self.server.is_none() && self.to_client.is_empty() {
                return Err(Fatal::new(
                    sqlstate::ADMIN_SHUTDOWN,
                    "terminating connection due to administrator command",
                ));
            }
            // An idle client (no server, nothing buffered) holds no buffers: it waits for its
            // socket to become readable and only then gets a read buffer. Most of a pooler's
            // clients are idle most of the time.
            let idle = self.server.is_none()
                && self.cli_in.is_empty()
                && self.cli_skip == 0
                && self.to_client.is_empty()
                && self.to_server.is_empty();
            if idle {
                for buf in [
                    &mut self.cli_in,
                    &mut self.srv_in,
                    &mut self.to_client,
                    &mut self.to_server,
                ] {
                    crate::buffers::give(buf);
                }
            } else if self.cli_in.capacity() - self.cli_in.len() < READ_CHUNK / 2 {
                self.cli_in.reserve(READ_CHUNK);
            }
            if self.server.is_some() && self.srv_in.capacity() - self.srv_in.len() < READ_CHUNK / 2
            {
                self.srv_in.reserve(READ_CHUNK);
            }
            let writable = self.writable();
            let blocked = self.route.as_deref().is_some_and(|r| r.blocked);
            // The sockets are polled directly, in this order (the first ready one wins), rather
            // than through a select! over one future per socket: a future per socket is state
            // that every client's task keeps for its whole life, idle or not.
            let has_server = self.server.is_some();
            let write_server = has_server && !self.to_server.is_empty();
            let read_server = has_server && self.to_client.len() < HIGH_WATER;
            let read_client = idle
                || (self.to_server.len() < HIGH_WATER
                    && !(blocked && self.cli_in.len() >= HIGH_WATER));
            let event = std::future::poll_fn(|cx| {
                use std::task::Poll;
                use tokio::io::AsyncWrite;
                if !armed || info.stop_requested() & !handled != 0 {
                    armed = true;
                    if stop.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(if info.stop_requested() & STOP_KILL != 0 {
                            Event::Kill
                        } else {
                            Event::Drain
                        });
                    }
                }
                if let (true, Some(g)) = (write_server, self.server.as_mut()) {
                    let stream = Pin::new(&mut g.conn_mut().stream);
                    if let Poll::Ready(r) = stream.poll_write(cx, &self.to_server) {
                        return Poll::Ready(Event::ServerWrote(r));
                    }
                }
                if writable > 0 {
                    let client = Pin::new(&mut self.client);
                    if let Poll::Ready(r) = client.poll_write(cx, &self.to_client[..writable]) {
                        return Poll::Ready(Event::ClientWrote(r));
                    }
                }
                if let (true, Some(g)) = (read_server, self.server.as_mut()) {
                    let stream = Pin::new(&mut g.conn_mut().stream);
                    if let Poll::Ready(r) = poll_read_buf(stream, cx, &mut self.srv_in) {
                        return Poll::Ready(Event::ServerRead(r));
                    }
                }
                if idle {
                    if let Poll::Ready(r) = self.client.poll_read_ready(cx) {
                        return Poll::Ready(Event::ClientReadable(r));
                    }
                } else if read_client {
                    let client = Pin::new(&mut self.client);
                    if let Poll::Ready(r) = poll_read_buf(client, cx, &mut self.cli_in) {
                        return Poll::Ready(Event::ClientRead(r));
                    }
                }
                Poll::Pending
            })
            .await;
            let from_client = matches!(event, Event::ClientRead(_) | Event::ClientReadable(_));
            match event {
                Event::Drain => {
                    self.draining = true;
                    handled |= STOP_DRAIN;
                    stop.set(info.killed());
                    armed = false;
                }
                Event::Kill => {
                    return Err(Fatal::new(
                        sqlstate::ADMIN_SHUTDOWN,
                        "terminating connection due to administrator command (KILL)",
                    ));
                }
                Event::ClientReadable(r) => {
                    r?;
                    for buf in [
                        &mut self.cli_in,
                        &mut self.srv_in,
                        &mut self.to_client,
                        &mut self.to_server,
                    ] {
                        crate::buffers::take(buf);
                    }
                    self.cli_in.reserve(READ_CHUNK);
                    // Not try_read_buf: read_buf takes a short read as "socket drained", so the
                    // next round does not make a read syscall only to get EAGAIN.
                    match now_or_never(self.client.read_buf(&mut self.cli_in)).await {
                        Some(Ok(0)) => return Ok(()),
                        Some(Ok(n)) => {
                            self.pool
                                .counters
                                .received
                                .fetch_add(n as u64, Ordering::Relaxed);
                            if let Flow::Close = self.process_client().await? {
                                return Ok(());
                            }
                        }
                        None => {}
                        Some(Err(e)) => return Err(e.into()),
                    }
                }
                Event::ClientWrote(r) => self.client_wrote(r?),
                Event::ServerWrote(Ok(n)) => self.server_wrote(n),
                Event::ServerWrote(Err(e)) | Event::ServerRead(Err(e)) => {
                    self.server_lost(&e.to_string())
                }
                Event::ServerRead(Ok(0)) => {
                    self.server_lost("server closed the connection unexpectedly")
                }
                Event::ServerRead(Ok(_)) => {
                    self.process_server();
                    shrink(&mut self.srv_in);
                }
                Event::ClientRead(r) => {
                    let n = r?;
                    if n == 0 {
                        return Ok(());
                    }
                    self.pool
                        .counters
                        .received
                        .fetch_add(n as u64, Ordering::Relaxed);
                    let flow = self.process_client().await?;
                    shrink(&mut self.cli_in);
                    if let Flow::Close = flow {
                        return Ok(());
                    }
                }
            }
            // A unit that waited for the attached server (routing) may be able to go now.
            if !from_client {
                if let Some(rs) = self.route.as_deref_mut().filter(|r| r.blocked) {
                    rs.blocked = false;
                    if let Flow::Close = self.process_client().await? {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Writes what either side is owed right away, as far as its socket takes it, instead of in
    /// the next round of the relay; whatever is left waits for that round as before.
    fn write_now(&mut self) -> Result<(), Fatal> {
        if let (false, Some(g)) = (self.to_server.is_empty(), self.server.as_mut()) {
            match g.conn_mut().stream.try_write(&self.to_server) {
                Ok(n) => self.server_wrote(n),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => self.server_lost(&e.to_string()),
            }
        }
        let writable = self.writable();
        if writable > 0 {
            match self.client.try_write(&self.to_client[..writable]) {
                Ok(n) => self.client_wrote(n),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// `n` bytes of `to_client` went out.
    fn client_wrote(&mut self, n: usize) {
        self.pool
            .counters
            .sent
            .fetch_add(n as u64, Ordering::Relaxed);
        self.to_client.advance(n);
        if let Some(r) = self.route.as_deref_mut().and_then(|r| r.retry.as_mut()) {
            r.hold_from -= n;
        }
        shrink(&mut self.to_client);
    }

    /// `n` bytes of `to_server` went out.
    fn server_wrote(&mut self, n: usize) {
        self.to_server.advance(n);
        shrink(&mut self.to_server);
    }

    /// Walks the client's bytes and forwards them, checking out a server where one is needed.
    async fn process_client(&mut self) -> Result<Flow, Fatal> {
        loop {
            if self.cli_skip > 0 {
                let n = self.cli_skip.min(self.cli_in.len());
                if n == 0 {
                    break;
                }
                if !self.cli_skip_discard {
                    self.to_server.extend_from_slice(&self.cli_in[..n]);
                }
                self.cli_in.advance(n);
                self.cli_skip -= n;
                continue;
            }
            let header = match Header::parse(&self.cli_in, self.max) {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(e) => {
                    return Err(Fatal::new(
                        sqlstate::PROTOCOL_VIOLATION,
                        format!("invalid message: {e}"),
                    ));
                }
            };
            let len = header.wire_len();
            let tag = header.tag;
            if tag == b'd' {
                // CopyData streams through whatever its size; without a server (the COPY failed or
                // the server was lost) it is dropped, as PostgreSQL drops it after a COPY error.
                let n = len.min(self.cli_in.len());
                let discard = self.server.is_none() || self.discard_until_sync;
                if !discard {
                    self.to_server.extend_from_slice(&self.cli_in[..n]);
                }
                self.cli_in.advance(n);
                self.cli_skip = len - n;
                self.cli_skip_discard = discard;
                continue;
            }
            if self.cli_in.len() < len {
                break;
            }
            let msg = self.cli_in.split_to(len).freeze();
            match tag {
                b'X' => return Ok(Flow::Close),
                b'Q' | b'P' | b'B' | b'D' | b'E' | b'C' | b'S' | b'H' | b'F' | b'c' | b'f' => {}
                other => {
                    return Err(Fatal::new(
                        sqlstate::PROTOCOL_VIOLATION,
                        format!("invalid frontend message type {other}"),
                    ));
                }
            }
            if self.discard_until_sync {
                if tag != b'S' {
                    continue;
                }
                self.discard_until_sync = false;
            }
            if self.handle_locally(tag, &msg)? {
                self.emit_local();
                continue;
            }
            if self.server.is_none() {
                if let Some(why) = self.lost.take() {
                    let err = ErrorResponse::error(
                        sqlstate::CONNECTION_FAILURE,
                        "server connection was lost; the transaction was rolled back",
                    )
                    .detail(why);
                    self.fail_request(tag, err);
                    continue;
                }
                if self.draining {
                    return Err(Fatal::new(
                        sqlstate::ADMIN_SHUTDOWN,
                        "terminating connection due to administrator command",
                    ));
                }
                // Boxed: a checkout's future is as big as the rest of the relay put together, and
                // the relay's future lives as long as the client, idle or not. One small
                // allocation per transaction keeps every idle client that much smaller.
                let attached = if self.route.is_some() {
                    Box::pin(self.attach_routed(&msg)).await
                } else {
                    Box::pin(self.attach())
                        .await
                        .map_err(|e| checkout_error(&e, &self.pool).0)
                };
                if let Err(err) = attached {
                    self.fail_request(tag, err);
                    continue;
                }
            } else if self.route.is_some()
                && !self.unsynced
                && !self.in_copy_in
                && matches!(tag, b'Q' | b'P' | b'B' | b'D' | b'E' | b'C' | b'F')
                && !self.may_continue(&msg)
            {
                // This unit must not run on the attached server (a replica): wait until the
                // server is released, then route it afresh.
                self.unread(&msg);
                if let Some(rs) = self.route.as_mut() {
                    rs.blocked = true;
                }
                break;
            }
            self.forward(tag, msg)?;
            self.stats.request();
            self.emit_local();
        }
        Ok(Flow::Continue)
    }

    /// Messages that need no server: returns true when handled.
    fn handle_locally(&mut self, tag: u8, msg: &Bytes) -> Result<bool, Fatal> {
        let body = &msg[Header::LEN..];
        if self.server.is_some() {
            // With a server attached, local answers still go through `pending` for their order.
            if self.intercept && tag == b'Q' {
                if let Some(name) = self.deallocate_target(body) {
                    self.statements.remove(name.as_slice());
                    self.pending.push_back(Pending::LocalCommand("DEALLOCATE"));
                    return Ok(true);
                }
            }
            return Ok(false);
        }
        match tag {
            // Nothing to do without a server: a Flush, the end of a COPY that already failed.
            b'H' | b'c' | b'f' => Ok(true),
            // A Sync with nothing before it is answered as PostgreSQL would.
            b'S' if !self.unsynced => {
                backend::ready_for_query(b'I', &mut self.to_client);
                Ok(true)
            }
            // A named Parse of SQL a server has accepted before, and the Close of a name, need no
            // server: answering them here keeps a driver that prepares synchronously outside a
            // transaction (pgbench -M prepared) from waiting on a pool its own other sessions hold.
            b'P' if self.intercept => {
                let (name, tail) = cstr(body).ok_or_else(|| malformed("Parse"))?;
                if name.is_empty() {
                    return Ok(false);
                }
                if self.statements.contains_key(name) {
                    let msg = format!(
                        "prepared statement \"{}\" already exists",
                        String::from_utf8_lossy(name)
                    );
                    ErrorResponse::error(sqlstate::DUPLICATE_PREPARED_STATEMENT, msg)
                        .write(&mut self.to_client);
                    self.discard_until_sync = true;
                    return Ok(true);
                }
                match self.pool.statements.validated(tail) {
                    Some(stmt) => {
                        self.pool
                            .counters
                            .prepared_hits
                            .fetch_add(1, Ordering::Relaxed);
                        self.statements.insert(Bytes::copy_from_slice(name), stmt);
                        backend::parse_complete(&mut self.to_client);
                        Ok(true)
                    }
                    None => Ok(false),
                }
            }
            b'C' if self.intercept && body.first() == Some(&b'S') => {
                let (name, _) = cstr(&body[1..]).ok_or_else(|| malformed("Close"))?;
                if name.is_empty() {
                    return Ok(false);
                }
                self.statements.remove(name);
                backend::close_complete(&mut self.to_client);
                Ok(true)
            }
            b'Q' if self.intercept => match self.deallocate_target(body) {
                Some(name) => {
                    self.statements.remove(name.as_slice());
                    backend::command_complete("DEALLOCATE", &mut self.to_client);
                    backend::ready_for_query(b'I', &mut self.to_client);
                    Ok(true)
                }
                None => Ok(false),
            },
            _ => Ok(false),
        }
    }

    /// `DEALLOCATE name` for one of this client's statements.
    fn deallocate_target(&self, body: &[u8]) -> Option<Vec<u8>> {
        let sql = std::str::from_utf8(body.strip_suffix(&[0])?).ok()?;
        let name = crate::prepared::deallocate_target(sql)?;
        self.statements
            .contains_key(name.as_bytes())
            .then(|| name.into_bytes())
    }

    /// Sends one client message to the attached server, renaming statements when intercepting,
    /// and records what the server owes for it.
    fn forward(&mut self, tag: u8, msg: Bytes) -> Result<(), Fatal> {
        let body = &msg[Header::LEN..];
        match tag {
            b'Q' => self.pending.push_back(Pending::Query),
            b'F' => self.pending.push_back(Pending::Call),
            b'S' => {
                if !self.in_copy_in {
                    self.pending.push_back(Pending::Sync);
                }
                self.unsynced = false;
            }
            b'c' | b'f' => {
                if self.in_copy_in {
                    self.in_copy_in = false;
                } else {
                    self.pending.push_back(Pending::CopyEnd);
                }
            }
            b'H' => {}
            b'E' => {
                self.unsynced = true;
                self.pending.push_back(Pending::Execute);
            }
            b'P' => {
                self.unsynced = true;
                let (name, tail) = cstr(body).ok_or_else(|| malformed("Parse"))?;
                if self.intercept && !name.is_empty() {
                    self.parse_named(name, tail);
                    return Ok(());
                }
                self.pending.push_back(Pending::Parse {
                    answer: Answer::Server,
                    undo: Undo::default(),
                });
            }
            b'B' => {
                self.unsynced = true;
                let (portal, rest) = cstr(body).ok_or_else(|| malformed("Bind"))?;
                let (name, rest) = cstr(rest).ok_or_else(|| malformed("Bind"))?;
                if self.intercept && !name.is_empty() {
                    let Some(stmt) = self.statement(name) else {
                        return Ok(());
                    };
                    self.ensure_on_server(&stmt);
                    let server_name = crate::prepared::server_name(stmt.id);
                    write_parts(
                        b'B',
                        &[portal, b"\0", server_name.as_bytes(), b"\0", rest],
                        &mut self.to_server,
                    );
                    self.pending.push_back(Pending::Bind);
                    return Ok(());
                }
                self.pending.push_back(Pending::Bind);
            }
            b'D' => {
                self.unsynced = true;
                let (&kind, rest) = body.split_first().ok_or_else(|| malformed("Describe"))?;
                let (name, _) = cstr(rest).ok_or_else(|| malformed("Describe"))?;
                if self.intercept && kind == b'S' && !name.is_empty() {
                    let Some(stmt) = self.statement(name) else {
                        return Ok(());
                    };
                    self.ensure_on_server(&stmt);
                    let server_name = crate::prepared::server_name(stmt.id);
                    write_parts(
                        b'D',
                        &[b"S", server_name.as_bytes(), b"\0"],
                        &mut self.to_server,
                    );
                    self.pending.push_back(Pending::Describe);
                    return Ok(());
                }
                self.pending.push_back(Pending::Describe);
            }
            b'C' => {
                self.unsynced = true;
                let (&kind, rest) = body.split_first().ok_or_else(|| malformed("Close"))?;
                let (name, _) = cstr(rest).ok_or_else(|| malformed("Close"))?;
                if self.intercept && kind == b'S' && !name.is_empty() {
                    // The server-side statement is shared and stays; only this client's name goes.
                    let restore = self.statements.remove_entry(name);
                    self.pending.push_back(Pending::Close {
                        answer: Answer::Local,
                        restore,
                        evicted: None,
                    });
                    return Ok(());
                }
                self.pending.push_back(Pending::Close {
                    answer: Answer::Server,
                    restore: None,
                    evicted: None,
                });
            }
            _ => unreachable!("tags are checked in process_client"),
        }
        self.to_server.extend_from_slice(&msg);
        Ok(())
    }

    /// A named Parse in transaction mode.
    fn parse_named(&mut self, name: &[u8], tail: &[u8]) {
        if self.statements.contains_key(name) {
            let msg = format!(
                "prepared statement \"{}\" already exists",
                String::from_utf8_lossy(name)
            );
            return self.local_error(sqlstate::DUPLICATE_PREPARED_STATEMENT, msg);
        }
        let stmt = self.pool.statements.intern(tail);
        let client = Bytes::copy_from_slice(name);
        self.statements.insert(client.clone(), stmt.clone());
        let conn = self.server.as_mut().expect("attached").conn_mut();
        if conn.statements.touch(stmt.id) {
            self.pool
                .counters
                .prepared_hits
                .fetch_add(1, Ordering::Relaxed);
            let undo = Undo {
                client: Some(client),
                server: false,
                stmt: Some(stmt),
            };
            self.pending.push_back(Pending::Parse {
                answer: Answer::Local,
                undo,
            });
            return;
        }
        self.prepare_on_server(&stmt, Answer::Server, Some(client));
    }

    /// This client's statement by name; if it has none, answers with PostgreSQL's error.
    fn statement(&mut self, name: &[u8]) -> Option<Arc<Statement>> {
        let stmt = self.statements.get(name).cloned();
        if stmt.is_none() {
            let msg = format!(
                "prepared statement \"{}\" does not exist",
                String::from_utf8_lossy(name)
            );
            self.local_error(sqlstate::INVALID_SQL_STATEMENT_NAME, msg);
        }
        stmt
    }

    /// Makes sure the attached server has `stmt` prepared, inserting a Parse ahead of the
    /// message that needs it.
    fn ensure_on_server(&mut self, stmt: &Arc<Statement>) {
        let conn = self.server.as_mut().expect("attached").conn_mut();
        if conn.statements.touch(stmt.id) {
            self.pool
                .counters
                .prepared_hits
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.prepare_on_server(stmt, Answer::Swallow, None);
    }

    /// Sends Parse for `stmt` under its server name, first closing the least recently used
    /// statement when the connection is at `max_prepared_statements`.
    fn prepare_on_server(&mut self, stmt: &Arc<Statement>, answer: Answer, client: Option<Bytes>) {
        let cap = self.pool.settings.max_prepared_statements;
        let stats = &self.pool.counters;
        stats.prepared_misses.fetch_add(1, Ordering::Relaxed);
        let conn = self.server.as_mut().expect("attached").conn_mut();
        if let Some(old) = conn.statements.insert(stmt.id, cap) {
            stats.prepared_evictions.fetch_add(1, Ordering::Relaxed);
            write_parts(
                b'C',
                &[b"S", crate::prepared::server_name(old).as_bytes(), b"\0"],
                &mut self.to_server,
            );
            self.pending.push_back(Pending::Close {
                answer: Answer::Swallow,
                restore: None,
                evicted: Some(old),
            });
        }
        stmt.write_parse(&mut self.to_server);
        let undo = Undo {
            client,
            server: true,
            stmt: Some(stmt.clone()),
        };
        self.pending.push_back(Pending::Parse { answer, undo });
    }

    /// An error sluice raises inside an extended-protocol batch: sent in order, then the rest of
    /// the batch up to Sync is dropped, as PostgreSQL does after an error.
    fn local_error(&mut self, code: &str, message: String) {
        let mut out = BytesMut::new();
        ErrorResponse::error(code, message).write(&mut out);
        // No client statement is ever prepared on a server under this name (they are all
        // `sluice_<id>`), so describing it fails with 26000.
        write_parts(
            b'D',
            &[b"S", b"sluice: failing on purpose\0"],
            &mut self.to_server,
        );
        self.pending.push_back(Pending::FailWith(out.freeze()));
        self.unsynced = true;
        self.discard_until_sync = true;
    }

    /// Writes the answers sluice owes that have reached the front of `pending`.
    fn emit_local(&mut self) {
        loop {
            match self.pending.front() {
                Some(Pending::Parse {
                    answer: Answer::Local,
                    ..
                }) => backend::parse_complete(&mut self.to_client),
                Some(Pending::Close {
                    answer: Answer::Local,
                    ..
                }) => backend::close_complete(&mut self.to_client),
                Some(Pending::LocalCommand(tag)) => {
                    backend::command_complete(tag, &mut self.to_client);
                    backend::ready_for_query(self.tx_status, &mut self.to_client);
                }
                Some(Pending::CopyEnd) => {}
                _ => return,
            }
            self.pending.pop_front();
        }
    }

    /// Answers a request sluice cannot run (no server) with `err`, as PostgreSQL answers a failed
    /// one: a Query gets the error and ReadyForQuery; an extended-protocol batch gets the error,
    /// and the rest of it up to Sync is dropped.
    fn fail_request(&mut self, tag: u8, err: ErrorResponse) {
        self.pool.counters.error_code(&err.code);
        err.write(&mut self.to_client);
        match tag {
            b'Q' | b'S' | b'F' => {
                self.unsynced = false;
                backend::ready_for_query(b'I', &mut self.to_client)
            }
            _ => self.discard_until_sync = true,
        }
    }

    /// Classifies the unit of work that starts with the whole message `first` and continues in
    /// `rest` up to its Sync (a Query is a unit by itself). Returns it with how many bytes of
    /// `rest` belong to it, or None for the length when its end has not arrived yet.
    fn classify_unit(&self, wf: &[String], first: &[u8], rest: &[u8]) -> (Unit, Option<usize>) {
        let text = |b: &[u8]| std::str::from_utf8(b).ok().map(|q| classify(q, wf));
        if first[0] == b'Q' {
            let body = &first[Header::LEN..];
            let c = body.strip_suffix(&[0]).and_then(text);
            let mut u = Unit::read();
            match c {
                Some(c) => u.add(c),
                None => u = Unit::primary(Reason::Malformed),
            }
            return (u, Some(0));
        }
        let mut u = Unit::read();
        let mut statements = 0;
        let mut unnamed: Option<Classification> = None;
        let mut parsed: Vec<(&[u8], Classification)> = Vec::new();
        let mut msg = first;
        let mut used = 0;
        loop {
            let body = &msg[Header::LEN..];
            let named = |name: &[u8], parsed: &[(&[u8], Classification)]| {
                if name.is_empty() {
                    return unnamed;
                }
                parsed
                    .iter()
                    .rev()
                    .find(|(n, _)| *n == name)
                    .map(|(_, c)| *c)
                    .or_else(|| {
                        let stmt = self.statements.get(name)?;
                        Some(*stmt.class.get_or_init(|| {
                            text(stmt.query()).unwrap_or(Classification::primary(Reason::Malformed))
                        }))
                    })
            };
            match msg[0] {
                b'P' => {
                    let c = cstr(body).and_then(|(name, tail)| {
                        let (q, _) = cstr(tail)?;
                        Some((name, text(q)?))
                    });
                    let Some((name, c)) = c else {
                        return (Unit::primary(Reason::Malformed), Some(used));
                    };
                    if name.is_empty() {
                        unnamed = Some(c);
                    } else {
                        parsed.push((name, c));
                    }
                    statements += 1;
                    u.add(c);
                }
                b'B' | b'D' => {
                    let name = if msg[0] == b'B' {
                        cstr(body).and_then(|(_, rest)| cstr(rest)).map(|(n, _)| n)
                    } else {
                        match body.split_first() {
                            Some((b'S', rest)) => cstr(rest).map(|(n, _)| n),
                            _ => None,
                        }
                    };
                    if let Some(name) = name {
                        match named(name, &parsed) {
                            Some(c) => {
                                statements += 1;
                                u.add(c);
                            }
                            None => u = Unit::primary(Reason::Uncertain),
                        }
                    } else if msg[0] == b'B' {
                        u = Unit::primary(Reason::Malformed);
                    }
                }
                b'E' | b'C' | b'H' => {}
                b'S' => {
                    if statements == 0 {
                        u = Unit::primary(Reason::Uncertain);
                    }
                    return (u, Some(used));
                }
                _ => u = Unit::primary(Reason::Uncertain),
            }
            let len = match Header::parse(&rest[used..], self.max) {
                Ok(Some(h)) if rest.len() - used >= h.wire_len() => h.wire_len(),
                _ => return (u, None),
            };
            msg = &rest[used..used + len];
            used += len;
        }
    }

    /// Whether the unit starting with `msg` may run on the server attached now (a unit boundary
    /// on a routed session). Anything may run on the primary; on a replica, only the rest of a
    /// `READ ONLY` transaction, or read-only units the client's fence allows there.
    fn may_continue(&mut self, msg: &[u8]) -> bool {
        let Some(rs) = self.route.as_deref() else {
            return true;
        };
        let router = rs.router.clone();
        let (unit, len) = self.classify_unit(&router.writing_functions, msg, &self.cli_in);
        let rs = self.route.as_deref_mut().expect("routed");
        let Some(i) = rs.on_replica else {
            if !unit.read || len.is_none() {
                rs.wrote = true;
            }
            return true;
        };
        if rs.retry.is_some() {
            // One unit at a time until the first one's answer has begun.
            return false;
        }
        if rs.ro_tx {
            if unit.ends_tx {
                rs.ro_tx = false;
            }
            return true;
        }
        if !unit.read || len.is_none() {
            return false;
        }
        let allowed = match rs.fence.constraint(std::time::Instant::now()) {
            ReadConstraint::Any => router.replicas.health(i).is_eligible(None),
            ReadConstraint::MinLsn(lsn) => router.replicas.health(i).is_eligible(Some(lsn)),
            ReadConstraint::PrimaryOnly => false,
        };
        if allowed {
            rs.ro_tx = unit.begins_ro_tx;
            router.stats.count(unit.replica_reason());
        }
        allowed
    }

    /// Checks out a server for the unit starting with `msg`: a replica's when the unit is
    /// read-only and a replica may serve this client, else the primary's.
    async fn attach_routed(&mut self, msg: &Bytes) -> Result<(), ErrorResponse> {
        let router = self.route.as_ref().expect("routed").router.clone();
        let (unit, len) = self.classify_unit(&router.writing_functions, msg, &self.cli_in);
        let rs = self.route.as_deref_mut().expect("routed");
        let read = unit.read && len.is_some();
        let reason = if std::mem::take(&mut rs.force_primary) {
            // A retried unit: counted when it was retried.
            None
        } else if !read {
            Some(RouteReason::for_primary(unit.reason))
        } else {
            let min_lsn = match rs.fence.constraint(std::time::Instant::now()) {
                ReadConstraint::PrimaryOnly => Err(RouteReason::ReadYourWrites),
                ReadConstraint::Any => Ok(None),
                ReadConstraint::MinLsn(lsn) => Ok(Some(lsn)),
            };
            match min_lsn {
                Err(r) => Some(r),
                Ok(_) if router.replicas.draw_primary_share() => Some(RouteReason::PrimaryShare),
                Ok(min) => match router.replicas.pick(min) {
                    Some(i) => {
                        let reason = unit.replica_reason();
                        let pool = self.pool.replicas[i].clone();
                        let outstanding = router.replicas.acquire(i);
                        let checkout = pool.checkout(pool.settings.query_wait_timeout);
                        match self.stats.waiting(checkout).await {
                            Ok(guard) => {
                                router.stats.count(reason);
                                let mut bytes =
                                    BytesMut::with_capacity(msg.len() + len.unwrap_or(0));
                                bytes.extend_from_slice(msg);
                                bytes.extend_from_slice(&self.cli_in[..len.unwrap_or(0)]);
                                let rs = self.route.as_deref_mut().expect("routed");
                                rs.on_replica = Some(i);
                                rs._outstanding = Some(outstanding);
                                rs.ro_tx = unit.begins_ro_tx;
                                rs.retry = Some(Retry {
                                    bytes: bytes.freeze(),
                                    hold_from: self.to_client.len(),
                                    refused: false,
                                });
                                self.attach_guard(guard);
                                return Ok(());
                            }
                            Err(e) => {
                                tracing::info!(pool = %pool.key, error = %e, "replica unavailable; running on the primary");
                                Some(RouteReason::Retried)
                            }
                        }
                    }
                    None if min.is_some() && router.replicas.pick(None).is_some() => {
                        Some(RouteReason::ReadYourWrites)
                    }
                    None => Some(RouteReason::NoReplica),
                },
            }
        };
        if let Some(reason) = reason {
            router.stats.count(reason);
            // Until every replica has had its first health check (just after start), reads
            // without one go to the primary even with replica_fallback = "error".
            if reason == RouteReason::NoReplica
                && router.fallback == crate::config::ReplicaFallback::Error
                && !router.replicas.any_unchecked()
            {
                return Err(ErrorResponse::error(
                    sqlstate::CANNOT_CONNECT_NOW,
                    format!(
                        "no replica of database \"{}\" is in rotation",
                        self.pool.key.database
                    ),
                )
                .hint(
                    "replica_fallback = \"error\" is set; see SHOW REPLICAS on the admin console",
                ));
            }
        }
        self.attach()
            .await
            .map_err(|e| checkout_error(&e, &self.pool).0)?;
        let rs = self.route.as_deref_mut().expect("routed");
        rs.on_replica = None;
        rs.wrote = !read;
        Ok(())
    }

    /// Bytes of `to_client` that may be written now (the rest is a held replica answer).
    fn writable(&self) -> usize {
        match self.route.as_deref().and_then(|r| r.retry.as_ref()) {
            Some(r) => r.hold_from,
            None => self.to_client.len(),
        }
    }

    /// The held replica unit failed before any of its answer reached the client: run it again on
    /// the primary. `lost`: the replica connection failed (else it refused with 25006 and has
    /// sent its ReadyForQuery).
    fn retry_on_primary(&mut self, lost: bool) {
        let clean = !lost && self.at_clean_point() && self.srv_in.is_empty();
        let Some(rs) = self.route.as_deref_mut() else {
            return;
        };
        let Some(retry) = rs.retry.take() else {
            return;
        };
        rs.router.stats.count(RouteReason::Retried);
        rs.leave_server();
        rs.force_primary = true;
        rs.blocked = true;
        tracing::debug!(pool = %self.pool.key, lost, "retrying a replica's unit on the primary");
        self.to_client.truncate(retry.hold_from);
        if let Some(mut guard) = self.server.take() {
            guard.conn_mut().dirty = !clean;
        }
        self.cancel.slot.set(None);
        self.forget_server_exchange();
        self.discard_until_sync = false;
        // Names the unit's Parses gave are given again when it runs again.
        if self.intercept {
            let mut b = &retry.bytes[..];
            while let Ok(Some(h)) = Header::parse(b, usize::MAX) {
                let len = h.wire_len().min(b.len());
                if h.tag == b'P' {
                    if let Some((name, _)) = cstr(&b[Header::LEN..len]) {
                        if !name.is_empty() {
                            self.statements.remove(name);
                        }
                    }
                }
                b = &b[len..];
            }
        }
        self.unread(&retry.bytes);
    }

    /// Puts client bytes back in front of what is still to be processed.
    fn unread(&mut self, bytes: &[u8]) {
        let mut back = BytesMut::with_capacity(bytes.len() + self.cli_in.len());
        back.extend_from_slice(bytes);
        back.extend_from_slice(&self.cli_in);
        self.cli_in = back;
    }

    async fn attach(&mut self) -> Result<(), CheckoutError> {
        let checkout = self.pool.checkout(self.pool.settings.query_wait_timeout);
        let guard = self.stats.waiting(checkout).await?;
        self.attach_guard(guard);
        Ok(())
    }

    fn attach_guard(&mut self, mut guard: ServerGuard) {
        let conn = guard.conn_mut();
        conn.dirty = true;
        self.cancel.slot.set(Some(CancelTarget {
            server: conn.target.clone(),
            pid: conn.pid,
            key: conn.key,
        }));
        // Most checkouts find the connection as the last client with the same parameter list
        // (shared, see ParamsInterner) left it: two pointer comparisons instead of comparing
        // every parameter.
        let unchanged = conn.in_sync.as_ref().is_some_and(|(server, client)| {
            server.same_list(&conn.params) && client.same_list(&self.wanted)
        });
        if !unchanged {
            if let Some(sql) = conn.params.sync_sql(&self.wanted) {
                frontend::write_query(&sql, &mut self.to_server);
                conn.params.note_synced(&self.wanted);
                self.pending.push_back(Pending::Internal);
                conn.in_sync = None;
            } else {
                conn.in_sync = Some((conn.params.clone(), self.wanted.clone()));
            }
        }
        self.tx_status = b'I';
        self.srv_in.clear();
        self.srv_skip = 0;
        self.batch_error_seen = false;
        self.held_error = None;
        self.server = Some(guard);
    }

    /// Walks the server's bytes and forwards them; releases the server at a clean point.
    fn process_server(&mut self) {
        loop {
            if self.srv_skip > 0 {
                let n = self.srv_skip.min(self.srv_in.len());
                if n == 0 {
                    break;
                }
                if !self.srv_skip_discard {
                    self.to_client.extend_from_slice(&self.srv_in[..n]);
                }
                self.srv_in.advance(n);
                self.srv_skip -= n;
                continue;
            }
            let header = match Header::parse(&self.srv_in, i32::MAX as usize) {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(e) => return self.server_lost(&format!("invalid message from server: {e}")),
            };
            let len = header.wire_len();
            let internal = matches!(
                self.pending.front(),
                Some(Pending::Internal | Pending::LsnProbe)
            );
            // Only messages that end a request or carry state are held whole; DataRow, CopyData,
            // notices and the like stream through as they arrive.
            let whole = matches!(
                header.tag,
                b'Z' | b'S' | b'G' | b'E' | b'1' | b'2' | b'3' | b'n' | b's' | b'I' | b'C' | b'T'
            ) || (internal && header.tag == b'D');
            if !whole {
                if !internal && self.route.is_some() {
                    self.hold_check(header.tag, false);
                }
                let n = len.min(self.srv_in.len());
                if !internal {
                    self.to_client.extend_from_slice(&self.srv_in[..n]);
                }
                self.srv_in.advance(n);
                self.srv_skip = len - n;
                self.srv_skip_discard = internal;
                continue;
            }
            if header.body_len > self.max {
                return self.server_lost("server sent an oversized message");
            }
            if self.srv_in.len() < len {
                break;
            }
            let msg = self.srv_in.split_to(len);
            let body = &msg[Header::LEN..];
            if internal {
                self.on_internal_reply(header.tag, body);
                continue;
            }
            // A FATAL error ends the connection: a held unit is retried like on any failure.
            if self.route.is_some() && !(header.tag == b'E' && backend_view::is_fatal(body)) {
                let refusal = header.tag == b'E'
                    && backend_view::error_code_and_message(body).0
                        == sqlstate::READ_ONLY_SQL_TRANSACTION;
                self.hold_check(header.tag, refusal);
            }
            if self.on_server_message(header.tag, body) {
                self.to_client.extend_from_slice(&msg);
            }
            if header.tag == b'Z'
                && self
                    .route
                    .as_deref()
                    .and_then(|r| r.retry.as_ref())
                    .is_some_and(|r| r.refused)
            {
                self.retry_on_primary(false);
                return;
            }
            if header.tag == b'E' && backend_view::is_fatal(body) {
                // PostgreSQL closes the connection after a FATAL. Waiting to see the socket
                // close would let the client's next request go to a dead server.
                let why = backend_view::error_code_and_message(body).1;
                return self.server_lost(&why);
            }
            self.emit_local();
        }
        if self.mode == PoolMode::Transaction
            && self.at_clean_point()
            && self.srv_in.is_empty()
            && !self.probe_write_position()
        {
            self.release();
        }
    }

    /// On a routed session, the answer of a unit held for a retry: commits to the replica's
    /// answer at the first message that is more than statement bookkeeping, or marks the unit
    /// for a retry when the replica refuses it as a write (25006).
    fn hold_check(&mut self, tag: u8, refusal: bool) {
        let Some(retry) = self.route.as_deref_mut().and_then(|r| r.retry.as_mut()) else {
            return;
        };
        if retry.refused {
            return;
        }
        match tag {
            b'1' | b'2' | b'3' | b'n' | b't' | b'T' => {}
            b'E' if refusal => retry.refused = true,
            _ => {
                self.route.as_deref_mut().expect("routed").retry = None;
            }
        }
    }

    /// At the end of a transaction that may have written on the primary, moves the client's
    /// read-your-writes fence: in `lsn` mode by asking the primary for its WAL position on the
    /// same connection first (returns true: the server is released after that answer).
    fn probe_write_position(&mut self) -> bool {
        let Some(rs) = self.route.as_deref_mut() else {
            return false;
        };
        if rs.on_replica.is_some() || !std::mem::take(&mut rs.wrote) {
            return false;
        }
        match rs.router.read_your_writes {
            crate::router::ReadYourWrites::Off => false,
            crate::router::ReadYourWrites::Window => {
                rs.fence.record_write(None, std::time::Instant::now());
                false
            }
            crate::router::ReadYourWrites::Lsn => {
                rs.probe_lsn = None;
                frontend::write_query(crate::router::health::RYW_LSN_QUERY, &mut self.to_server);
                self.pending.push_back(Pending::LsnProbe);
                true
            }
        }
    }

    /// A reply to sluice's own parameter-sync query or write-position probe.
    fn on_internal_reply(&mut self, tag: u8, body: &[u8]) {
        if matches!(self.pending.front(), Some(Pending::LsnProbe)) {
            let Some(rs) = self.route.as_deref_mut() else {
                return;
            };
            match tag {
                b'D' => rs.probe_lsn = data_row_text(body).and_then(crate::router::parse_lsn),
                b'Z' => {
                    self.pending.pop_front();
                    // Undo the page-header offset the insert position has at a page start
                    // (PostgreSQL's default page and segment sizes; with others the fence is
                    // only stricter than needed).
                    let lsn = rs
                        .probe_lsn
                        .take()
                        .map(|l| crate::router::health::ryw_fence_lsn(l, 8192, 16 * 1024 * 1024));
                    rs.fence.record_write(lsn, std::time::Instant::now());
                }
                _ => {}
            }
            return;
        }
        let conn = self
            .server
            .as_mut()
            .expect("reading from a server")
            .conn_mut();
        match tag {
            b'S' => conn.params.apply_status(body),
            b'E' => {
                let (code, message) = backend_view::error_code_and_message(body);
                tracing::warn!(pool = %self.pool.key, %code, %message, "setting client parameters on a server failed");
                // Unknown state: make the next checkout set everything again.
                conn.params = Params::default();
            }
            b'Z' => {
                self.pending.pop_front();
            }
            _ => {}
        }
    }

    /// Books one whole server message against `pending`. Returns whether to forward it.
    fn on_server_message(&mut self, tag: u8, body: &[u8]) -> bool {
        let front = |p: &VecDeque<Pending>| -> Option<u8> {
            p.front().map(|f| match f {
                Pending::Parse { .. } => b'P',
                Pending::Bind => b'B',
                Pending::Describe => b'D',
                Pending::Execute => b'E',
                Pending::Close { .. } => b'C',
                Pending::Query => b'Q',
                Pending::Sync => b'S',
                Pending::Call => b'F',
                _ => 0,
            })
        };
        match tag {
            b'Z' => {
                self.tx_status = body.first().copied().unwrap_or(b'I');
                while let Some(p) = self.pending.pop_front() {
                    if matches!(p, Pending::Sync | Pending::Query | Pending::Call) {
                        break;
                    }
                }
                self.batch_error_seen = false;
                let more = !self.pending.is_empty();
                self.stats.ready(&self.pool, self.tx_status, more);
            }
            b'S' => {
                if let Ok(ParameterStatus { name, value }) = ParameterStatus::decode(body) {
                    if params::is_tracked(name) || self.wanted.get(name).is_some() {
                        self.wanted.set(name, value);
                    }
                    if let Some(g) = self.server.as_mut() {
                        g.conn_mut().params.set(name, value);
                    }
                }
            }
            b'G' => self.copy_in_started(),
            b'E' => {
                if !self.awaiting_reply() {
                    // Unasked: PostgreSQL is about to close this connection (terminated, shut
                    // down, idle timeout). Not the client's business until it asks.
                    self.held_error = Some(backend_view::error_code_and_message(body).1);
                    return false;
                }
                self.pool.counters.error_sent(body);
                self.batch_error_seen = true;
                if let Some(Pending::FailWith(ours)) = self.pending.front() {
                    let ours = ours.clone();
                    self.to_client.extend_from_slice(&ours);
                    self.skip_to_sync();
                    return false;
                }
                if matches!(front(&self.pending), Some(b'P' | b'B' | b'D' | b'E' | b'C')) {
                    self.skip_to_sync();
                }
            }
            b'1' if front(&self.pending) == Some(b'P') => {
                if let Some(Pending::Parse { answer, undo }) = self.pending.pop_front() {
                    if let Some(stmt) = undo.stmt {
                        stmt.validated.store(true, Ordering::Relaxed);
                    }
                    return answer == Answer::Server;
                }
            }
            b'2' if front(&self.pending) == Some(b'B') => {
                self.pending.pop_front();
            }
            b'3' if front(&self.pending) == Some(b'C') => {
                if let Some(Pending::Close { answer, .. }) = self.pending.pop_front() {
                    return answer == Answer::Server;
                }
            }
            b'n' | b'T' if front(&self.pending) == Some(b'D') => {
                self.pending.pop_front();
            }
            b'C' | b'I' | b's' => {
                if tag == b'C' && (body == b"DISCARD ALL\0" || body == b"DEALLOCATE ALL\0") {
                    // The server forgot every prepared statement, sluice's included.
                    self.statements.clear();
                    if let Some(g) = self.server.as_mut() {
                        g.conn_mut().statements.clear();
                    }
                }
                if front(&self.pending) == Some(b'E') {
                    self.pending.pop_front();
                }
            }
            _ => {}
        }
        true
    }

    /// The server rejected the request at the front of an extended-protocol batch and skips the
    /// rest up to Sync: those requests get no answer, and Parses among them never happened.
    fn skip_to_sync(&mut self) {
        while let Some(p) = self.pending.front() {
            if matches!(p, Pending::Sync) {
                return;
            }
            let p = self.pending.pop_front().expect("front exists");
            self.undo(p);
        }
        // No Sync sent yet: the server drops everything until one comes; so do we.
        self.discard_until_sync = true;
    }

    fn undo(&mut self, p: Pending) {
        match p {
            Pending::Parse { undo, .. } => {
                let id = undo.stmt_id();
                if let Some(name) = undo.client {
                    if self.statements.get(&name).map(|s| s.id) == id {
                        self.statements.remove(&name);
                    }
                }
                if let (true, Some(id), Some(g)) = (undo.server, id, self.server.as_mut()) {
                    g.conn_mut().statements.remove(id);
                }
            }
            Pending::Close {
                restore, evicted, ..
            } => {
                if let Some((name, stmt)) = restore {
                    self.statements.entry(name).or_insert(stmt);
                }
                if let (Some(id), Some(g)) = (evicted, self.server.as_mut()) {
                    g.conn_mut().statements.restore(id);
                }
            }
            _ => {}
        }
    }

    /// A COPY FROM STDIN started. Under the extended protocol the server ignores every Sync until
    /// CopyDone/CopyFail, so those Syncs will get no ReadyForQuery.
    fn copy_in_started(&mut self) {
        if matches!(self.pending.front(), Some(Pending::Query)) {
            return;
        }
        match self
            .pending
            .iter()
            .position(|e| matches!(e, Pending::CopyEnd))
        {
            // The client already ended the COPY: the Syncs before its CopyDone get no reply, and the
            // marker itself is used up.
            Some(end) => {
                let mut index = 0;
                self.pending.retain(|e| {
                    let i = index;
                    index += 1;
                    if i < end {
                        !matches!(e, Pending::Sync)
                    } else {
                        i != end
                    }
                });
            }
            None => {
                self.pending.retain(|e| !matches!(e, Pending::Sync));
                self.in_copy_in = true;
            }
        }
    }

    fn awaiting_reply(&self) -> bool {
        self.unsynced || self.pending.iter().any(|e| !matches!(e, Pending::CopyEnd))
    }

    /// Nothing owed in either direction and the server is idle outside a transaction.
    fn at_clean_point(&self) -> bool {
        self.server.is_some()
            && self.tx_status == b'I'
            && !self.awaiting_reply()
            && !self.in_copy_in
            && self.srv_skip == 0
            && self.cli_skip == 0
            && self.to_server.is_empty()
    }

    fn release(&mut self) {
        if let Some(rs) = self.route.as_deref_mut() {
            rs.leave_server();
            rs.retry = None;
        }
        if let Some(mut guard) = self.server.take() {
            guard.conn_mut().dirty = false;
            self.cancel.slot.set(None);
            self.pending.clear();
            drop(guard);
        }
    }

    /// The server connection failed. Whatever the client is owed gets an error; a transaction the
    /// client believes open fails its next request.
    fn server_lost(&mut self, why: &str) {
        if self.server.is_none() {
            return;
        }
        let probing = self.pending.iter().any(|p| matches!(p, Pending::LsnProbe));
        if let Some(rs) = self.route.as_deref_mut() {
            if rs.retry.is_some() {
                tracing::info!(pool = %self.pool.key, reason = why, "replica connection lost before answering; retrying on the primary");
                return self.retry_on_primary(true);
            }
            if std::mem::take(&mut rs.wrote) || probing {
                // The write may or may not have committed: keep reads on the primary a while.
                rs.fence.record_write(None, std::time::Instant::now());
            }
            rs.leave_server();
        }
        let Some(mut guard) = self.server.take() else {
            return;
        };
        guard.conn_mut().dirty = true;
        self.stats.server_lost(&self.pool, &guard);
        tracing::info!(pool = %self.pool.key, server = guard.conn().id, reason = why, "server connection lost");
        drop(guard);
        self.cancel.slot.set(None);
        let why = self.held_error.take().unwrap_or_else(|| why.to_owned());
        if self.cli_skip > 0 {
            self.cli_skip_discard = true;
        }
        let err = || {
            ErrorResponse::error(
                sqlstate::CONNECTION_FAILURE,
                "server connection lost; the transaction was rolled back",
            )
            .detail(why.clone())
        };
        let owed = self
            .pending
            .iter()
            .filter(|e| matches!(e, Pending::Query | Pending::Sync | Pending::Call))
            .count();
        for i in 0..owed {
            if !(i == 0 && self.batch_error_seen) {
                err().write(&mut self.to_client);
            }
            backend::ready_for_query(b'I', &mut self.to_client);
        }
        if self.unsynced {
            if owed == 0 {
                err().write(&mut self.to_client);
            }
            self.discard_until_sync = true;
        } else if owed == 0 && self.tx_status != b'I' {
            self.lost = Some(why);
        }
        self.forget_server_exchange();
    }

    /// Drops what was under way with a server that is gone: bytes either way, the requests it
    /// owed answers to (taking back their effects), and its transaction state.
    fn forget_server_exchange(&mut self) {
        self.srv_in.clear();
        self.to_server.clear();
        self.srv_skip = 0;
        for p in std::mem::take(&mut self.pending) {
            self.undo(p);
        }
        self.unsynced = false;
        self.in_copy_in = false;
        self.tx_status = b'I';
        self.batch_error_seen = false;
        self.held_error = None;
    }

    /// The session is over: return the server connection if it is clean (after the reset query
    /// in session mode), close it otherwise.
    async fn finish_server(&mut self) {
        let clean = self.at_clean_point() && self.srv_in.is_empty();
        let Some(mut guard) = self.server.take() else {
            return;
        };
        self.cancel.slot.set(None);
        if !clean {
            guard.conn_mut().dirty = true;
            return;
        }
        if self.mode == PoolMode::Session && !self.pool.settings.reset_query.is_empty() {
            let max = self.pool.settings.max_message_size;
            let sql = self.pool.settings.reset_query.clone();
            let conn = guard.conn_mut();
            let reset = tokio::time::timeout(
                Duration::from_secs(10),
                crate::server::run_simple(conn, &sql, max),
            )
            .await;
            conn.dirty = !matches!(reset, Ok(Ok(Ok(()))));
            // DISCARD ALL also drops prepared statements.
            conn.statements.clear();
        } else {
            guard.conn_mut().dirty = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every client, idle or not, keeps its task's future for its whole life: a regression here
    /// multiplies by max_client_conn (bench/README.md, "Idle client connections").
    #[tokio::test]
    async fn client_task_future_stays_small() {
        let shared = Shared::new(crate::Config::from_toml("").expect("empty config"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = TcpStream::connect(addr).await.unwrap();
        let (stream, peer) = listener.accept().await.unwrap();
        let (_tx, drain) = watch::channel(false);
        let task = serve(shared, stream, peer, drain);
        let size = std::mem::size_of_val(&task);
        eprintln!("client task future: {size} bytes");
        assert!(size <= 832, "client task future grew to {size} bytes");
    }
}
