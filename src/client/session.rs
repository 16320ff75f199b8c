//! A logged-in client session: what it owns and how its parts fit together.
//!
//! The session owns the client's socket and buffers, its server connection while it holds one,
//! and its parts: the [`Exchange`] (what the client is owed), its [`ClientStatements`] (named
//! prepared statements) and, when the pool has replicas, its [`Routing`]. The I/O loop that
//! drives it is in `relay.rs`; this file decides what each whole message means for the session.
//!
//! # The release rule
//! In transaction mode the server connection goes back to its pool at a clean point, and only
//! there: [`Session::at_clean_point`] states it once. Every request has had its answer, no
//! extended-protocol message was sent since the last Sync, the last ReadyForQuery said idle (`I`),
//! no COPY is under way (the exchange's half), and no bytes of a message are in flight either way
//! (the relay's half).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::buffers::Buffers;
use crate::net::Stream;
use bytes::{Bytes, BytesMut};
use sluice_proto::backend::{self, BackendTag, ErrorResponse};
use sluice_proto::backend_view::{self, ParameterStatus};
use sluice_proto::frontend::FrontendTag;
use sluice_proto::{Header, frontend, split_cstr, sqlstate};
use tokio::io::AsyncWriteExt;

use super::exchange::{Answer, Exchange, Pending, Verdict};
use super::listen::Listening;
use super::login::LoggedIn;
use super::rare::RareBox;
use super::routing::{Plan, Routing};
use super::settings::Settings;
use super::sql_prepare::{OnServer, SqlStep, candidate};
use super::statements::{ClientStatements, LocalParse, PoolPrepared};
use super::timeouts::SessionTimer;
use super::{Fatal, checkout_error};
use crate::cancel::{CancelRegistration, CancelTarget};
use crate::clients::{Arrival, SessionStats};
use crate::config::PoolMode;
use crate::metrics::Incident;
use crate::params::{self, Params};
use crate::pool::{CheckoutError, Pool, ServerGuard};
use crate::shared::{Limits, Shared};

/// What the relay does after a client message.
pub(super) enum Step {
    /// Go on with the next message.
    Next,
    /// Stop walking the client's bytes: this unit waits until the attached server is released.
    Wait,
    /// The client said Terminate.
    Close,
    /// The message needs a server connection: check one out, then call `after_checkout`.
    Checkout(FrontendTag, Bytes),
    /// A LISTEN outside a transaction: await [`Session::subscribe`] (client/listen.rs).
    Subscribe(Box<super::listen::Subscribe>),
}

pub(super) struct Session {
    /// The pool, and in its settings the pool mode (not copied here: a byte more made the
    /// session 8 bytes bigger, and every idle client's task 128).
    pub(super) pool: Arc<Pool>,
    pub(super) client: Stream,
    /// The relay buffers (`cli_in`, `to_client`, `srv_in`, `to_server`), in one box while the
    /// client is busy and nothing while it is idle (`buffers.rs`).
    pub(super) bufs: Buffers,
    pub(super) server: Option<ServerGuard>,
    /// The parameter values this client should see.
    pub(super) wanted: Params,
    /// Its values at login: what RESET returns to.
    pub(super) login: Params,
    /// Its session settings under way (transaction mode), while it has any (`settings.rs`,
    /// followed in `follow.rs`).
    pub(super) settings: Option<Box<Settings>>,
    cancel: CancelRegistration,
    /// What the client is owed by the server.
    pub(super) exchange: Exchange,
    /// Named statements of this client (transaction mode).
    statements: ClientStatements,
    /// Rename statements (transaction mode with max_prepared_statements > 0).
    intercept: bool,
    /// Bytes of a client CopyData still to pass through (or drop, with `cli_skip_discard`).
    pub(super) cli_skip: usize,
    pub(super) cli_skip_discard: bool,
    /// Bytes of a server message still to pass through (or drop, with `srv_skip_discard`).
    pub(super) srv_skip: usize,
    pub(super) srv_skip_discard: bool,
    /// The rarely set parts in one box (8 bytes): a lost server's reason, a held server error,
    /// the unnamed-statement cache (`rare.rs`).
    pub(super) rare: RareBox,
    /// Repeated unnamed statements run as prepared ones (`cache_unnamed_statements`; needs
    /// `intercept`, and no replicas).
    pub(super) cache_unnamed: bool,
    /// Cap on a message held whole.
    pub(super) max: usize,
    /// The pooler is draining: the session ends at its next clean point.
    pub(super) draining: bool,
    /// Counters, timings and this client's registry entry (SHOW CLIENTS, KILL).
    pub(super) stats: SessionStats,
    /// Read/write splitting; None unless the pool has replicas (boxed: most pools have none).
    pub(super) route: Option<Box<Routing>>,
    /// The timer of `query_timeout`, `idle_transaction_timeout` and `client_idle_timeout`; None
    /// unless the pool has one of them set (boxed: most pools have none).
    pub(super) timer: Option<Box<SessionTimer>>,
    /// Memory budgets and the incident log, shared by every session.
    pub(super) limits: Arc<Limits>,
    /// Room in `limits.messages` this session holds for a large message, in 64 KiB units
    /// (`memory.rs`).
    pub(super) held_units: u16,
    /// A large server message waits for room before the relay reads on.
    pub(super) want_room: bool,
    /// LISTEN / NOTIFY in transaction mode; None until the client's first LISTEN or UNLISTEN
    /// (client/listen.rs).
    pub(super) listen: Option<Box<Listening>>,
}

impl Session {
    pub(super) fn new(
        shared: &Arc<Shared>,
        logged_in: LoggedIn,
        client: Stream,
        cli_in: BytesMut,
        peer: std::net::SocketAddr,
    ) -> Session {
        let LoggedIn {
            pool,
            wanted,
            cancel,
            ..
        } = logged_in;
        let mode = pool.settings.mode;
        let stats = SessionStats::new(
            &shared.clients,
            &pool,
            Arrival {
                local: client.local_addr().ok(),
                peer,
                pid: cancel.pid,
                application_name: wanted.get("application_name"),
                tls: client.tls_description(),
            },
            shared.query_tracker(&pool),
        );
        let timer = pool
            .settings
            .timeouts
            .any()
            .then(|| Box::new(SessionTimer::new(std::time::Instant::now())));
        let route = match mode {
            PoolMode::Transaction => pool.router.clone().map(|r| Box::new(Routing::new(r))),
            PoolMode::Session => None,
        };
        let intercept = mode == PoolMode::Transaction && pool.settings.max_prepared_statements > 0;
        Session {
            cache_unnamed: intercept && pool.settings.cache_unnamed && route.is_none(),
            intercept,
            max: shared.config().pooler.max_message_size,
            pool,
            client,
            bufs: Buffers::with_read(cli_in),
            server: None,
            login: wanted.clone(),
            wanted,
            settings: None,
            cancel,
            exchange: Exchange::default(),
            statements: ClientStatements::default(),
            cli_skip: 0,
            cli_skip_discard: false,
            srv_skip: 0,
            srv_skip_discard: false,
            rare: RareBox::default(),
            draining: false,
            stats,
            route,
            timer,
            limits: shared.limits.clone(),
            held_units: 0,
            want_room: false,
            listen: None,
        }
    }

    pub(super) async fn run(&mut self) {
        let end = self.relay().await;
        // Boxed: its timer and the error it writes would otherwise add to the state every
        // client keeps while it relays.
        Box::pin(self.end(end)).await;
    }

    /// Tells the client why its session ended (if it can still hear it) and closes its side,
    /// then lets go of the server connection.
    async fn end(&mut self, end: Result<(), Fatal>) {
        let clean = end.is_ok() && self.bufs.to_client.is_empty();
        if let Err(fatal) = end {
            let reason = fatal.refusal();
            let Fatal(err) = fatal;
            if err.code != sqlstate::CONNECTION_FAILURE {
                self.pool.counters.error_code(&err.code);
            }
            // Cut off by sluice for what it sent (not a lost socket, a drain or a KILL).
            if err.code != sqlstate::CONNECTION_FAILURE && err.code != sqlstate::ADMIN_SHUTDOWN {
                let key = &self.pool.key;
                self.limits.incidents.refused(reason, || {
                    format!("pool {key}: {} {}", err.code, err.message)
                });
            }
            err.write(&mut self.bufs.to_client);
        }
        if !self.bufs.to_client.is_empty() {
            let _ = tokio::time::timeout(
                Duration::from_secs(5),
                self.client.write_all(&self.bufs.to_client),
            )
            .await;
        }
        // The client is done now: it must not wait for the server side's cleanup (a session-mode
        // reset can take seconds on a stalled link). A plain client that left cleanly (Terminate or
        // EOF) with no server to clean up is closed by the drop that follows at once: no
        // shutdown() call (one system call fewer per `pgbench -C` transaction). TLS keeps it for
        // its close_notify.
        let quiet_close = clean && self.server.is_none() && !self.client.is_tls();
        if !quiet_close {
            let _ = self.client.shutdown().await;
        }
        self.finish_server().await;
    }

    pub(super) fn pool_statements(pool: &Pool) -> PoolPrepared<'_> {
        PoolPrepared {
            statements: &pool.statements,
            counters: &pool.counters,
            cap: pool.settings.max_prepared_statements,
        }
    }

    /// One whole client message (not CopyData, which streams): answers it locally or forwards it
    /// to the attached server; without one, asks the relay for a checkout first
    /// ([`Step::Checkout`]; the relay checks one out, then calls [`Session::after_checkout`]).
    pub(super) fn on_client_message(&mut self, msg: Bytes) -> Result<Step, Fatal> {
        let tag = match FrontendTag::from_u8(msg[0]) {
            Some(FrontendTag::Terminate) => return Ok(Step::Close),
            Some(FrontendTag::Password) | Some(FrontendTag::CopyData) | None => {
                return Err(Fatal::new(
                    sqlstate::PROTOCOL_VIOLATION,
                    format!("invalid frontend message type {}", msg[0]),
                ));
            }
            Some(tag) => tag,
        };
        if self.cache_unnamed {
            if let Some(step) = self.unnamed_before(tag, &msg) {
                return Ok(step);
            }
        }
        if !self.exchange.accept_from_client(tag == FrontendTag::Sync) {
            return Ok(Step::Next);
        }
        let mut msg = msg;
        if self.pool.settings.mode == PoolMode::Transaction {
            match self.on_subscription_message(tag, &msg) {
                Ok(None) => {}
                Ok(Some(step)) => {
                    self.touch();
                    return Ok(step);
                }
                Err(replacement) => msg = replacement,
            }
        }
        if matches!(tag, FrontendTag::Parse | FrontendTag::Close) {
            self.follow_names(tag, &msg[Header::LEN..]);
        }
        self.stats.client_message(tag, &msg);
        if self.handle_locally(tag, &msg)? {
            self.exchange.emit_local(&mut self.bufs.to_client);
            self.touch();
            return Ok(Step::Next);
        }
        if self.server.is_none() {
            if let Some(why) = self.rare.take_lost() {
                let err = ErrorResponse::error(
                    sqlstate::CONNECTION_FAILURE,
                    "server connection was lost; the transaction was rolled back",
                )
                .detail(why);
                self.fail_request(tag, err);
                return Ok(Step::Next);
            }
            if self.draining {
                return Err(Fatal::new(
                    sqlstate::ADMIN_SHUTDOWN,
                    "terminating connection due to administrator command",
                ));
            }
            return Ok(Step::Checkout(tag, msg));
        }
        if self.route.is_some()
            && !self.exchange.unsynced()
            && !self.exchange.in_copy_in()
            && starts_unit(tag)
            && !self.may_continue(tag, &msg)
        {
            // This unit must not run on the attached server (a replica): wait until the server
            // is released, then route it afresh.
            self.unread(&msg);
            if let Some(rs) = self.route.as_mut() {
                rs.block();
            }
            return Ok(Step::Wait);
        }
        self.send(tag, msg)
    }

    /// After the checkout a message asked for: sends it, or fails it when there is no server.
    pub(super) fn after_checkout(
        &mut self,
        tag: FrontendTag,
        msg: Bytes,
        attached: Result<(), ErrorResponse>,
    ) -> Result<Step, Fatal> {
        if let Err(err) = attached {
            self.fail_request(tag, err);
            return Ok(Step::Next);
        }
        self.send(tag, msg)
    }

    fn send(&mut self, tag: FrontendTag, msg: Bytes) -> Result<Step, Fatal> {
        if self.settings.as_ref().is_some_and(|s| s.resync) && self.exchange.is_clean() {
            self.resync();
        }
        self.stats.sent(tag, &msg);
        self.forward(tag, msg)?;
        if self.cache_unnamed {
            self.unnamed_sent(tag);
        }
        self.stats.request();
        self.timer_stale();
        self.exchange.emit_local(&mut self.bufs.to_client);
        Ok(Step::Next)
    }

    /// Messages that need no server: returns true when handled.
    fn handle_locally(&mut self, tag: FrontendTag, msg: &Bytes) -> Result<bool, Fatal> {
        let body = &msg[Header::LEN..];
        if self.server.is_some() {
            // With a server attached, local answers go through the exchange for their order
            // (`forward`).
            return Ok(false);
        }
        match tag {
            // Nothing to do without a server: a Flush, the end of a COPY that already failed.
            FrontendTag::Flush | FrontendTag::CopyDone | FrontendTag::CopyFail => Ok(true),
            // A Sync with nothing before it is answered as PostgreSQL would.
            FrontendTag::Sync if !self.exchange.unsynced() => {
                backend::ready_for_query(b'I', &mut self.bufs.to_client);
                Ok(true)
            }
            // A named Parse of SQL a server has accepted before, and the Close of a name, need no
            // server (see ClientStatements::parse_locally).
            FrontendTag::Parse if self.intercept => {
                let (name, tail) = split_cstr(body).ok_or_else(|| malformed("Parse"))?;
                if name.is_empty() {
                    return Ok(false);
                }
                let pool = Self::pool_statements(&self.pool);
                let answer = self.statements.parse_locally(
                    &pool,
                    name,
                    tail,
                    &mut self.exchange,
                    &mut self.bufs.to_client,
                );
                Ok(matches!(answer, LocalParse::Answered))
            }
            FrontendTag::Close if self.intercept && body.first() == Some(&b'S') => {
                let (name, _) = split_cstr(&body[1..]).ok_or_else(|| malformed("Close"))?;
                if name.is_empty() {
                    return Ok(false);
                }
                self.statements
                    .close_locally(name, &mut self.bufs.to_client);
                Ok(true)
            }
            // SQL PREPARE / EXECUTE / DEALLOCATE that need no server (sql_prepare.rs).
            FrontendTag::Query if self.intercept => {
                let pool = Self::pool_statements(&self.pool);
                let bufs = &mut *self.bufs;
                let step = self.statements.sql_command(
                    &pool,
                    None,
                    body,
                    &mut self.exchange,
                    &mut bufs.to_server,
                    &mut bufs.to_client,
                );
                Ok(matches!(step, SqlStep::Done))
            }
            _ => Ok(false),
        }
    }

    /// Sends one client message to the attached server, renaming statements when intercepting,
    /// and books what the server owes for it.
    fn forward(&mut self, tag: FrontendTag, msg: Bytes) -> Result<(), Fatal> {
        let body = &msg[Header::LEN..];
        if self.pool.settings.mode == PoolMode::Transaction {
            self.follow_request(tag, body);
        }
        let pending = match tag {
            FrontendTag::Query if self.intercept => {
                let pool = Self::pool_statements(&self.pool);
                let conn = self.server.as_mut().expect("attached").conn_mut();
                let on_server = OnServer {
                    conn: &mut conn.statements,
                    failed_tx: self.exchange.tx_status() == b'E',
                };
                let bufs = &mut *self.bufs;
                let step = self.statements.sql_command(
                    &pool,
                    Some(on_server),
                    body,
                    &mut self.exchange,
                    &mut bufs.to_server,
                    &mut bufs.to_client,
                );
                if matches!(step, SqlStep::Done) {
                    return Ok(());
                }
                Pending::Query
            }
            FrontendTag::Query => Pending::Query,
            FrontendTag::FunctionCall => Pending::Call,
            FrontendTag::Sync => Pending::Sync,
            FrontendTag::CopyDone | FrontendTag::CopyFail => Pending::CopyEnd,
            FrontendTag::Flush => {
                self.bufs.to_server.extend_from_slice(&msg);
                return Ok(());
            }
            FrontendTag::Execute => Pending::Execute,
            FrontendTag::Parse => {
                let (name, tail) = split_cstr(body).ok_or_else(|| malformed("Parse"))?;
                if self.cache_unnamed && name.is_empty() && self.unnamed_parse(tail) {
                    return Ok(());
                }
                if self.intercept && (!name.is_empty() || candidate(tail)) {
                    let pool = Self::pool_statements(&self.pool);
                    let conn = self.server.as_mut().expect("attached").conn_mut();
                    let parsed = self.statements.parse_any(
                        &pool,
                        &mut conn.statements,
                        name,
                        tail,
                        &mut self.exchange,
                        &mut self.bufs.to_server,
                    );
                    match parsed {
                        Ok(true) => return Ok(()),
                        Ok(false) => {}
                        Err(over) => {
                            let key = &self.pool.key;
                            self.limits.incidents.note(Incident::StatementMemory, || {
                                format!(
                                    "pool {key}: a Parse of {} bytes with {} of {} in use",
                                    over.len, over.used, over.cap
                                )
                            });
                            return Ok(());
                        }
                    }
                }
                Pending::Parse {
                    answer: Answer::Server,
                    undo: Default::default(),
                }
            }
            FrontendTag::Bind => {
                let (portal, rest) = split_cstr(body).ok_or_else(|| malformed("Bind"))?;
                let (name, rest) = split_cstr(rest).ok_or_else(|| malformed("Bind"))?;
                if self.cache_unnamed && name.is_empty() && self.unnamed_bind(portal, rest, &msg) {
                    return Ok(());
                }
                if self.intercept && !name.is_empty() {
                    let pool = Self::pool_statements(&self.pool);
                    let conn = self.server.as_mut().expect("attached").conn_mut();
                    self.statements.bind(
                        &pool,
                        &mut conn.statements,
                        portal,
                        name,
                        rest,
                        &mut self.exchange,
                        &mut self.bufs.to_server,
                    );
                    return Ok(());
                }
                Pending::Bind
            }
            FrontendTag::Describe => {
                let (&kind, rest) = body.split_first().ok_or_else(|| malformed("Describe"))?;
                let (name, _) = split_cstr(rest).ok_or_else(|| malformed("Describe"))?;
                if self.intercept && kind == b'S' && !name.is_empty() {
                    let pool = Self::pool_statements(&self.pool);
                    let conn = self.server.as_mut().expect("attached").conn_mut();
                    self.statements.describe(
                        &pool,
                        &mut conn.statements,
                        name,
                        &mut self.exchange,
                        &mut self.bufs.to_server,
                    );
                    return Ok(());
                }
                if self.cache_unnamed && kind == b'S' && name.is_empty() {
                    self.unnamed_describe();
                }
                Pending::Describe
            }
            FrontendTag::Close => {
                let (&kind, rest) = body.split_first().ok_or_else(|| malformed("Close"))?;
                let (name, _) = split_cstr(rest).ok_or_else(|| malformed("Close"))?;
                if self.intercept && kind == b'S' && !name.is_empty() {
                    self.exchange.sent_extended();
                    self.statements.close(name, &mut self.exchange);
                    return Ok(());
                }
                if self.cache_unnamed && kind == b'S' && name.is_empty() {
                    self.unnamed_closed();
                }
                Pending::Close {
                    answer: Answer::Server,
                    undo: Default::default(),
                }
            }
            FrontendTag::Terminate | FrontendTag::CopyData | FrontendTag::Password => {
                unreachable!("tags are checked in on_client_message")
            }
        };
        self.exchange.sent(pending);
        self.bufs.to_server.extend_from_slice(&msg);
        // A streamed Query's head went out: its rest follows (relay.rs).
        self.cli_skip_discard = false;
        Ok(())
    }

    /// Whether a simple Query over max_message_size may stream to the server instead of being
    /// refused: the session then sees only its head, without the closing NUL (so a SQL
    /// prepared-statement command that long is sent as written). Not with replicas: routing
    /// reads the whole text.
    pub(super) fn query_streams(&self) -> bool {
        self.route.is_none()
    }

    /// Answers a request sluice cannot run (no server) with `err`, as PostgreSQL would.
    fn fail_request(&mut self, tag: FrontendTag, err: ErrorResponse) {
        self.touch();
        self.pool.counters.error_code(&err.code);
        let ends_at_ready = matches!(
            tag,
            FrontendTag::Query | FrontendTag::Sync | FrontendTag::FunctionCall
        );
        self.exchange
            .fail_request(ends_at_ready, &err, &mut self.bufs.to_client);
    }

    /// Whether the unit starting with `msg` may run on the server attached now; when it ends a
    /// transaction on the primary, asks first whether that transaction wrote anything (routing's
    /// xid probe, in the same write).
    fn may_continue(&mut self, tag: FrontendTag, msg: &[u8]) -> bool {
        let Some(rs) = self.route.as_deref_mut() else {
            return true;
        };
        let (unit, len) = rs.classify(&self.statements, msg, &self.bufs.cli_in, self.max);
        if !rs.may_continue(unit, len) {
            return false;
        }
        // Only with nothing else in flight: then the last ReadyForQuery's status is the
        // transaction's status now.
        if tag == FrontendTag::Query
            && !self.exchange.awaiting_reply()
            && rs.wants_xid_probe(unit, self.exchange.tx_status())
        {
            frontend::write_query(super::routing::XID_PROBE_QUERY, &mut self.bufs.to_server);
            self.exchange.sent(Pending::XidProbe);
            rs.xid_probe_sent();
        }
        true
    }

    /// Checks out a server for the unit starting with `msg`: a replica's when the unit is
    /// read-only and a replica may serve this client, else the primary's.
    pub(super) async fn attach_routed(&mut self, msg: &Bytes) -> Result<(), ErrorResponse> {
        let rs = self.route.as_deref_mut().expect("routed");
        let (unit, len) = rs.classify(&self.statements, msg, &self.bufs.cli_in, self.max);
        let reason = match rs.plan(unit, len) {
            Plan::Primary(reason) => reason,
            Plan::Replica(i) => {
                let pool = self.pool.replicas[i].clone();
                let outstanding = rs.router.replicas.acquire(i);
                let checkout = pool.checkout(pool.settings.query_wait_timeout);
                match self.stats.waiting(checkout).await {
                    Ok(guard) => {
                        let len = len.unwrap_or(0);
                        let mut bytes = BytesMut::with_capacity(msg.len() + len);
                        bytes.extend_from_slice(msg);
                        bytes.extend_from_slice(&self.bufs.cli_in[..len]);
                        let hold_from = self.bufs.to_client.len();
                        let rs = self.route.as_deref_mut().expect("routed");
                        rs.on_replica(i, outstanding, unit, bytes.freeze(), hold_from);
                        self.attach_guard(guard);
                        return Ok(());
                    }
                    Err(e) => {
                        tracing::info!(pool = %pool.key, error = %e, "replica unavailable; running on the primary");
                        Some(crate::router::RouteReason::Retried)
                    }
                }
            }
        };
        let rs = self.route.as_deref_mut().expect("routed");
        rs.to_primary(reason, &self.pool.key.database)?;
        self.attach()
            .await
            .map_err(|e| checkout_error(&e, &self.pool, &self.limits.incidents))?;
        let read = unit.read && len.is_some();
        self.route.as_deref_mut().expect("routed").on_primary(read);
        Ok(())
    }

    /// The held replica unit failed before any of its answer reached the client: run it again on
    /// the primary. `lost`: the replica connection failed (else it refused with 25006 and has
    /// sent its ReadyForQuery).
    pub(super) fn retry_on_primary(&mut self, lost: bool) {
        let clean = !lost && self.at_clean_point();
        let Some((bytes, hold_from)) = self.route.as_deref_mut().and_then(|r| r.take_retry())
        else {
            return;
        };
        tracing::debug!(pool = %self.pool.key, lost, "retrying a replica's unit on the primary");
        self.bufs.to_client.truncate(hold_from);
        if let Some(mut guard) = self.server.take() {
            guard.conn_mut().dirty = !clean;
        }
        self.cancel.slot.set(None);
        self.touch();
        self.forget_server_exchange();
        // Names the unit's Parses gave are given again when it runs again.
        if self.intercept {
            let mut b = &bytes[..];
            while let Ok(Some(h)) = Header::parse(b, usize::MAX) {
                let len = h.wire_len().min(b.len());
                if h.tag == FrontendTag::Parse.as_u8() {
                    if let Some((name, _)) = split_cstr(&b[Header::LEN..len]) {
                        if !name.is_empty() {
                            self.statements.remove(name);
                        }
                    }
                }
                b = &b[len..];
            }
        }
        self.unread(&bytes);
    }

    /// Puts client bytes back in front of what is still to be processed.
    pub(super) fn unread(&mut self, bytes: &[u8]) {
        let mut back = BytesMut::with_capacity(bytes.len() + self.bufs.cli_in.len());
        back.extend_from_slice(bytes);
        back.extend_from_slice(&self.bufs.cli_in);
        self.bufs.cli_in = back;
    }

    pub(super) async fn attach(&mut self) -> Result<(), CheckoutError> {
        let checkout = self.pool.checkout(self.pool.settings.query_wait_timeout);
        let guard = self.stats.waiting(checkout).await?;
        self.attach_guard(guard);
        Ok(())
    }

    fn attach_guard(&mut self, mut guard: ServerGuard) {
        // A client gets storage for these three buffers only now (relay.rs gives the read
        // buffer alone): a client waiting in a pool's queue holds one buffer, not four.
        self.bufs.for_server();
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
                frontend::write_query(&sql, &mut self.bufs.to_server);
                conn.params.note_synced(&self.wanted);
                self.exchange.sent(Pending::Internal);
                conn.in_sync = None;
            } else {
                conn.in_sync = Some((conn.params.clone(), self.wanted.clone()));
            }
        }
        self.exchange.attached();
        self.bufs.srv_in.clear();
        self.srv_skip = 0;
        self.rare.clear_held_error();
        self.server = Some(guard);
    }

    /// One whole server message. Returns false when the relay must stop walking the server's
    /// bytes (the server is gone or given up).
    /// `internal`: it answers sluice's own request at the front of the exchange.
    pub(super) fn on_server_message(
        &mut self,
        tag: BackendTag,
        msg: BytesMut,
        internal: bool,
    ) -> bool {
        let body = &msg[Header::LEN..];
        if internal {
            self.on_internal_reply(tag, body);
            // Answers sluice owes that waited behind its own request (a ParseComplete for a
            // statement the server already has) go out now, before the server's next reply.
            self.exchange.emit_local(&mut self.bufs.to_client);
            return true;
        }
        self.stats.reply(tag, body);
        let fatal = tag == BackendTag::ErrorResponse && backend_view::is_fatal(body);
        // A FATAL error ends the connection: a held unit is retried like on any failure.
        if let Some(rs) = self.route.as_deref_mut().filter(|_| !fatal) {
            let refusal = tag == BackendTag::ErrorResponse
                && backend_view::error_code_and_message(body).0
                    == sqlstate::READ_ONLY_SQL_TRANSACTION;
            rs.on_reply(Some(tag), refusal);
        }
        if self.settings.is_some() {
            self.follow_reply(tag, body);
        }
        let (statements, server) = (&mut self.statements, &mut self.server);
        let undo = |u| statements.undo(u, server.as_mut().map(|g| &mut g.conn_mut().statements));
        match self.exchange.on_reply(tag, body, undo) {
            Verdict::Forward => {
                if tag == BackendTag::ErrorResponse {
                    self.pool.counters.error_sent(body);
                }
                self.bufs.to_client.extend_from_slice(&msg);
            }
            Verdict::Drop => {}
            Verdict::Replace(ours) => {
                self.pool.counters.error_sent(body);
                self.bufs.to_client.extend_from_slice(&ours);
            }
            Verdict::Unasked => {
                let message = backend_view::error_code_and_message(body).1;
                self.rare.set_held_error(message);
            }
            // A renamed unnamed statement met a stale plan: the client sees none of it; the
            // batch runs again at its ReadyForQuery (client/unnamed.rs).
            Verdict::Stale(id) => self.unnamed_stale(id),
            Verdict::Replay => {
                // The failed pass's implicit transaction is over (LISTENs it staged are rolled
                // back; the replay stages them again).
                if self.listen.is_some() {
                    self.subscription_reply(tag, body);
                }
                if self.unnamed_replay() {
                    self.exchange.emit_local(&mut self.bufs.to_client);
                    return true;
                }
                // Nothing kept (cannot happen): the client gets its ReadyForQuery.
                self.bufs.to_client.extend_from_slice(&msg);
            }
        }
        if self.listen.is_some() {
            self.subscription_reply(tag, body);
        }
        match tag {
            BackendTag::ReadyForQuery => {
                let more = self.exchange.has_pending();
                if self.cache_unnamed && !more {
                    self.unnamed_answered();
                }
                self.stats
                    .ready(&self.pool, self.exchange.tx_status(), more);
                self.timer_ready();
                if self.route.as_deref().is_some_and(|r| r.refused()) {
                    self.retry_on_primary(false);
                    return false;
                }
            }
            BackendTag::ParameterStatus => {
                if let Ok(ParameterStatus { name, value }) = ParameterStatus::decode(body) {
                    if params::is_tracked(name) || self.wanted.get(name).is_some() {
                        self.wanted.set(name, value);
                    }
                    if let Some(g) = self.server.as_mut() {
                        g.conn_mut().params.set(name, value);
                    }
                }
            }
            BackendTag::CommandComplete
                if body == b"DISCARD ALL\0" || body == b"DEALLOCATE ALL\0" =>
            {
                // The server forgot every prepared statement, sluice's included.
                self.statements.clear();
                self.stats.forget_names();
                if let Some(g) = self.server.as_mut() {
                    g.conn_mut().statements.clear();
                }
            }
            _ => {}
        }
        if fatal {
            // PostgreSQL closes the connection after a FATAL. Waiting to see the socket close
            // would let the client's next request go to a dead server.
            let why = backend_view::error_code_and_message(body).1;
            self.server_lost(&why);
            return false;
        }
        self.exchange.emit_local(&mut self.bufs.to_client);
        true
    }

    /// A reply to sluice's own parameter-sync query or write-position probe.
    fn on_internal_reply(&mut self, tag: BackendTag, body: &[u8]) {
        if self.exchange.front_is_xid_probe() {
            if let Some(rs) = self.route.as_deref_mut() {
                if rs.on_xid_probe_reply(tag, body) {
                    self.exchange.internal_done();
                }
            }
            return;
        }
        if self.exchange.front_is_probe() {
            if let Some(rs) = self.route.as_deref_mut() {
                if rs.on_probe_reply(tag, body) {
                    self.exchange.internal_done();
                }
            }
            return;
        }
        let conn = self
            .server
            .as_mut()
            .expect("reading from a server")
            .conn_mut();
        match tag {
            BackendTag::ParameterStatus => conn.params.apply_status(body),
            BackendTag::ErrorResponse => {
                let (code, message) = backend_view::error_code_and_message(body);
                tracing::warn!(pool = %self.pool.key, %code, %message, "setting client parameters on a server failed");
                // Unknown state: the connection serves no one else.
                conn.settings_unknown = true;
            }
            BackendTag::ReadyForQuery => self.exchange.internal_done(),
            _ => {}
        }
    }

    /// The release rule: the attached server may serve another client now. Nothing is owed in
    /// either direction, the server is idle outside a transaction, and no message is partly
    /// relayed.
    pub(super) fn at_clean_point(&self) -> bool {
        self.server.is_some()
            && self.exchange.is_clean()
            && self.srv_skip == 0
            && self.cli_skip == 0
            && self.bufs.to_server.is_empty()
            && self.bufs.srv_in.is_empty()
    }

    /// In transaction mode, releases the server at a clean point (after the read-your-writes
    /// probe, when routing asks for one).
    pub(super) fn release_if_clean(&mut self) {
        if self.pool.settings.mode != PoolMode::Transaction || !self.at_clean_point() {
            return;
        }
        if let Some(rs) = self.route.as_deref_mut() {
            if rs.at_release(&mut self.bufs.to_server) {
                self.exchange.sent(Pending::LsnProbe);
                return;
            }
            rs.released();
        }
        if let Some(mut guard) = self.server.take() {
            guard.conn_mut().dirty = false;
            self.cancel.slot.set(None);
            self.exchange.released();
            // The next checkout brings the next server to the client's values anyway.
            if let Some(s) = self.settings.as_deref_mut() {
                s.resync = false;
            }
            drop(guard);
        }
    }

    /// The server connection failed. Whatever the client is owed gets an error; a transaction the
    /// client believes open fails its next request.
    pub(super) fn server_lost(&mut self, why: &str) {
        self.abandon_server(why, None);
    }

    /// The server connection failed (`given_up` None) or sluice gave it up (a timeout: the error
    /// each request the client is owed gets instead of 08006). It is closed, never given back.
    pub(super) fn abandon_server(&mut self, why: &str, given_up: Option<ErrorResponse>) {
        if self.server.is_none() {
            return;
        }
        if let Some(rs) = self.route.as_deref_mut() {
            if rs.on_loss(self.exchange.probing()) {
                tracing::info!(pool = %self.pool.key, reason = why, "replica connection lost before answering; retrying on the primary");
                return self.retry_on_primary(true);
            }
        }
        let Some(mut guard) = self.server.take() else {
            return;
        };
        guard.conn_mut().dirty = true;
        match &given_up {
            None => {
                self.stats.server_lost(&self.pool, &guard);
                tracing::info!(pool = %self.pool.key, server = guard.conn().id, reason = why, "server connection lost");
            }
            Some(err) => self.stats.gave_up(&self.pool, &err.code),
        }
        drop(guard);
        self.cancel.slot.set(None);
        self.touch();
        let why = self.rare.take_held_error().unwrap_or_else(|| why.into());
        if self.cli_skip > 0 {
            self.cli_skip_discard = true;
        }
        let err = given_up.unwrap_or_else(|| {
            ErrorResponse::error(
                sqlstate::CONNECTION_FAILURE,
                "server connection lost; the transaction was rolled back",
            )
            .detail(why.clone())
        });
        if let Some(s) = self.settings.as_deref_mut() {
            s.forget();
        }
        // The server is gone: only the client's names are taken back.
        let statements = &mut self.statements;
        if self
            .exchange
            .server_lost(&err, &mut self.bufs.to_client, |u| statements.undo(u, None))
        {
            self.rare.set_lost(why);
        }
        self.forget_relay_state();
    }

    /// Drops what was under way with a server that is gone: bytes either way, the requests it
    /// owed answers to (taking back their effects), and its transaction state.
    fn forget_server_exchange(&mut self) {
        if let Some(s) = self.settings.as_deref_mut() {
            s.forget();
        }
        let (statements, server) = (&mut self.statements, &mut self.server);
        self.exchange
            .forget(|u| statements.undo(u, server.as_mut().map(|g| &mut g.conn_mut().statements)));
        self.forget_relay_state();
    }

    fn forget_relay_state(&mut self) {
        self.stats.forget_requests();
        self.bufs.srv_in.clear();
        self.bufs.to_server.clear();
        self.srv_skip = 0;
        self.rare.clear_held_error();
        if self.cache_unnamed {
            self.unnamed_forget();
        }
    }

    /// The session is over: return the server connection if it is clean (after the reset query
    /// in session mode), close it otherwise.
    async fn finish_server(&mut self) {
        let clean = self.at_clean_point();
        let Some(mut guard) = self.server.take() else {
            return;
        };
        self.cancel.slot.set(None);
        if !clean {
            guard.conn_mut().dirty = true;
            return;
        }
        if self.pool.settings.mode == PoolMode::Session
            && !self.pool.settings.reset_query.is_empty()
        {
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

    /// Counts bytes received from the client.
    pub(super) fn received(&self, n: usize) {
        self.pool
            .counters
            .received
            .fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// A message that starts a unit of work (routing looks at it).
fn starts_unit(tag: FrontendTag) -> bool {
    matches!(
        tag,
        FrontendTag::Query
            | FrontendTag::Parse
            | FrontendTag::Bind
            | FrontendTag::Describe
            | FrontendTag::Execute
            | FrontendTag::Close
            | FrontendTag::FunctionCall
    )
}

fn malformed(what: &str) -> Fatal {
    Fatal::new(
        sqlstate::PROTOCOL_VIOLATION,
        format!("invalid {what} message"),
    )
}
