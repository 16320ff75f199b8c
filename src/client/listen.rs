//! A session's LISTEN / UNLISTEN in transaction mode (docs/listen-notify.md).
//!
//! A LISTEN must not reach a pooled server connection: that connection would go on listening
//! for whichever client it serves next. So the session answers LISTEN, UNLISTEN and UNLISTEN *
//! itself, as PostgreSQL would (the same CommandComplete tags, ParseComplete, BindComplete,
//! NoData...), and records them in the pool's hub (`pubsub`), whose dedicated connection listens
//! on behalf of every client. Notifications wait in the client's inbox and are written when the
//! client is idle outside a transaction (the relay polls the inbox; `relay.rs`).
//!
//! The rules, where PostgreSQL's behaviour depends on the moment:
//! * an answer is written at once only when nothing is owed to the client before it; a simple
//!   Query behind pipelined requests waits for them ([`Step::Wait`], picked up again by the
//!   relay), an extended-protocol LISTEN in a batch the server is still working on is refused
//!   with 0A000 in its turn;
//! * outside a transaction a LISTEN takes effect at once, after the dedicated connection confirmed
//!   the channel (so a NOTIFY sent after the LISTEN's answer is delivered);
//! * inside a transaction it takes effect at COMMIT and is dropped by a rollback (the channel is
//!   listened to from the LISTEN on, so nothing committed after the COMMIT is missed); in a failed
//!   transaction the statement goes to the server, which refuses it (25P02) without effect;
//! * LISTEN mixed with other statements in one simple Query is refused (0A000) by the server
//!   itself, with the transaction effects of any error (the Query is replaced by one that raises
//!   it); so is a Parse of one in an open batch;
//! * DISCARD ALL unlistens everything, as on PostgreSQL.

use std::collections::HashMap;
use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use sluice_proto::backend::{self, ErrorResponse};
use sluice_proto::frontend::{self, FrontendTag};
use sluice_proto::{Header, split_cstr, sqlstate};

use super::Fatal;
use super::exchange::Pending;
use super::session::{Session, Step};
use crate::pubsub::{Command, Parsed, Subscriber, command};

/// A client's subscription state; made at its first LISTEN or UNLISTEN (boxed in the session:
/// most clients never listen).
pub(super) struct Listening {
    pub(super) sub: Subscriber,
    /// Commands of the open transaction, in order: they take effect at its COMMIT.
    staged: Vec<Command>,
    /// A simple Query LISTEN waits for the answers owed before it.
    waiting: bool,
    /// Prepared statements (by client name) that are a LISTEN / UNLISTEN, answered locally.
    statements: HashMap<Box<[u8]>, Command>,
    /// Portals bound to one of them.
    portals: HashMap<Box<[u8]>, Command>,
}

/// What the relay awaits for a LISTEN outside a transaction (see [`Session::subscribe`]).
pub(super) struct Subscribe {
    commands: Vec<Command>,
    /// A simple Query (CommandCompletes and ReadyForQuery) rather than an Execute.
    simple: bool,
    /// Inside a transaction: the commands take effect at its COMMIT.
    in_transaction: bool,
}

enum Turn {
    Now,
    Wait,
    Refuse,
}

const MIXED: &str =
    "LISTEN and UNLISTEN must be sent as queries of their own through sluice in transaction mode";
const IN_BATCH: &str = "LISTEN and UNLISTEN cannot be pipelined behind other statements through sluice in transaction mode";

/// A statement that makes the server raise `message` (SQLSTATE `code`) in its turn, with the
/// effects any error has on the transaction.
fn raising(code: &str, message: &str) -> String {
    format!(
        "DO $sluice$BEGIN RAISE EXCEPTION USING ERRCODE = '{code}', MESSAGE = '{}'; END$sluice$",
        message.replace('\'', "''")
    )
}

/// Whether `sql` may be a subscription command: cheap, called for every Query and Parse in
/// transaction mode. It starts with LISTEN or UNLISTEN, or has a `;` inside and the word anywhere.
fn may_subscribe(sql: &[u8]) -> bool {
    let start = sql
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(sql.len());
    let head = &sql[start..];
    let starts = |w: &[u8]| head.len() >= w.len() && head[..w.len()].eq_ignore_ascii_case(w);
    if starts(b"listen")
        || starts(b"unlisten")
        || head.starts_with(b"/*")
        || head.starts_with(b"--")
    {
        return true;
    }
    // A `;` before the last byte means several statements (slice `contains` on bytes is memchr).
    let trimmed = sql.trim_ascii_end();
    let inner_semi = trimmed[..trimmed.len().saturating_sub(1)].contains(&b';');
    inner_semi && sql.windows(6).any(|w| w.eq_ignore_ascii_case(b"listen"))
}

impl Listening {
    /// The statement (`S`) or portal named by a Describe or Close body, when it is one of this
    /// session's LISTEN statements: its kind byte and name.
    fn target<'b>(&self, body: &'b [u8]) -> Option<(u8, &'b [u8])> {
        let (&kind, rest) = body.split_first()?;
        let (name, _) = split_cstr(rest)?;
        let ours = match kind {
            b'S' => self.statements.contains_key(name),
            _ => self.portals.contains_key(name),
        };
        ours.then_some((kind, name))
    }

    fn new(sub: Subscriber) -> Self {
        Listening {
            sub,
            staged: Vec::new(),
            waiting: false,
            statements: HashMap::new(),
            portals: HashMap::new(),
        }
    }
}

impl Session {
    fn listening(&mut self) -> &mut Listening {
        let pool = &self.pool;
        self.listen
            .get_or_insert_with(|| Box::new(Listening::new(pool.pubsub().subscriber())))
    }

    /// A client message in transaction mode, before anything else looks at it: `Ok(None)` when it
    /// is not about a subscription (or goes to the server as it is); `Ok(Some(step))` when it was
    /// handled here; `Err(replacement)` when the server must get `replacement` instead.
    pub(super) fn on_subscription_message(
        &mut self,
        tag: FrontendTag,
        msg: &Bytes,
    ) -> Result<Option<Step>, Bytes> {
        let body = &msg[Header::LEN..];
        match tag {
            FrontendTag::Query => {
                let sql = body.strip_suffix(b"\0").unwrap_or(body);
                if !may_subscribe(sql) {
                    return Ok(None);
                }
                match command::parse(sql) {
                    Parsed::None => Ok(None),
                    Parsed::Mixed => Err(query_message(&raising(
                        sqlstate::FEATURE_NOT_SUPPORTED,
                        MIXED,
                    ))),
                    Parsed::Only(commands) => self.subscription_query(commands, msg),
                }
            }
            FrontendTag::Parse => {
                let Some((name, rest)) = split_cstr(body) else {
                    return Ok(None);
                };
                let Some((sql, _)) = split_cstr(rest) else {
                    return Ok(None);
                };
                if let Some(l) = self.listen.as_deref_mut() {
                    l.statements.remove(name);
                }
                if !may_subscribe(sql) {
                    return Ok(None);
                }
                let Parsed::Only(mut commands) = command::parse(sql) else {
                    // Several statements: the server refuses them in a prepared statement.
                    return Ok(None);
                };
                if commands.len() != 1 {
                    return Ok(None);
                }
                match self.turn(msg) {
                    Turn::Now => {}
                    Turn::Wait => return Ok(Some(Step::Wait)),
                    Turn::Refuse => {
                        let mut out = BytesMut::new();
                        frontend::write_parse(
                            &String::from_utf8_lossy(name),
                            &raising(sqlstate::FEATURE_NOT_SUPPORTED, IN_BATCH),
                            [],
                            &mut out,
                        );
                        return Err(out.freeze());
                    }
                }
                if self.server.is_some() && self.exchange.tx_status() == b'E' {
                    // In a failed transaction the server refuses it (25P02), as it should.
                    return Ok(None);
                }
                let c = commands.pop().expect("one");
                self.listening().statements.insert(name.into(), c);
                backend::parse_complete(&mut self.bufs.to_client);
                Ok(Some(Step::Next))
            }
            FrontendTag::Bind => {
                let Some(l) = self.listen.as_deref_mut() else {
                    return Ok(None);
                };
                let Some((portal, rest)) = split_cstr(body) else {
                    return Ok(None);
                };
                let Some((name, _)) = split_cstr(rest) else {
                    return Ok(None);
                };
                l.portals.remove(portal);
                let Some(c) = l.statements.get(name).cloned() else {
                    return Ok(None);
                };
                if let Some(step) = self.not_now(msg) {
                    return Ok(Some(step));
                }
                self.listening().portals.insert(portal.into(), c);
                backend::bind_complete(&mut self.bufs.to_client);
                Ok(Some(Step::Next))
            }
            FrontendTag::Describe => {
                let Some((kind, _)) = self.listen.as_deref().and_then(|l| l.target(body)) else {
                    return Ok(None);
                };
                if let Some(step) = self.not_now(msg) {
                    return Ok(Some(step));
                }
                if kind == b'S' {
                    backend::parameter_description(&[], &mut self.bufs.to_client);
                }
                backend::no_data(&mut self.bufs.to_client);
                Ok(Some(Step::Next))
            }
            FrontendTag::Close => {
                let Some((kind, name)) = self.listen.as_deref().and_then(|l| l.target(body)) else {
                    return Ok(None);
                };
                if let Some(step) = self.not_now(msg) {
                    return Ok(Some(step));
                }
                let l = self.listening();
                match kind {
                    b'S' => l.statements.remove(name),
                    _ => l.portals.remove(name),
                };
                backend::close_complete(&mut self.bufs.to_client);
                Ok(Some(Step::Next))
            }
            FrontendTag::Execute => {
                let Some(l) = self.listen.as_deref() else {
                    return Ok(None);
                };
                let Some((portal, _)) = split_cstr(body) else {
                    return Ok(None);
                };
                let Some(c) = l.portals.get(portal).cloned() else {
                    return Ok(None);
                };
                if let Some(step) = self.not_now(msg) {
                    return Ok(Some(step));
                }
                match (self.server.is_some(), self.exchange.tx_status()) {
                    (true, b'E') => {
                        let err = ErrorResponse::error(
                            sqlstate::IN_FAILED_SQL_TRANSACTION,
                            "current transaction is aborted, commands ignored until end of transaction block",
                        );
                        let to_server = &mut self.bufs.to_server;
                        self.exchange.fail_locally(&err, to_server);
                        Ok(Some(Step::Next))
                    }
                    (server, _) => Ok(Some(Step::Subscribe(Box::new(Subscribe {
                        commands: vec![c],
                        simple: false,
                        in_transaction: server,
                    })))),
                }
            }
            _ => Ok(None),
        }
    }

    /// Whether sluice may answer `msg` now: nothing is owed before it ([`Turn::Now`]); answers are
    /// owed for requests that need nothing more from the client, so it waits for them
    /// ([`Turn::Wait`]: the message is put back and the relay comes back to it); or it is part of
    /// a batch the server is working on, where an answer from sluice would come out of turn
    /// ([`Turn::Refuse`]).
    fn turn(&mut self, msg: &Bytes) -> Turn {
        if self.server.is_none() || !self.exchange.has_pending() {
            return Turn::Now;
        }
        if self.exchange.unsynced() {
            return Turn::Refuse;
        }
        self.unread(msg);
        self.listening().waiting = true;
        Turn::Wait
    }

    /// For an extended-protocol message about a LISTEN statement: `None` when it may be answered
    /// now, else what to do (wait, or refuse it with 0A000 in its turn).
    fn not_now(&mut self, msg: &Bytes) -> Option<Step> {
        match self.turn(msg) {
            Turn::Now => None,
            Turn::Wait => Some(Step::Wait),
            Turn::Refuse => {
                let err = ErrorResponse::error(sqlstate::FEATURE_NOT_SUPPORTED, IN_BATCH);
                let to_server = &mut self.bufs.to_server;
                self.exchange.fail_locally(&err, to_server);
                Some(Step::Next)
            }
        }
    }

    /// A simple Query made only of LISTEN / UNLISTEN.
    fn subscription_query(
        &mut self,
        commands: Vec<Command>,
        msg: &Bytes,
    ) -> Result<Option<Step>, Bytes> {
        match self.turn(msg) {
            Turn::Now => {}
            Turn::Wait => return Ok(Some(Step::Wait)),
            // Not while a batch is open (the client sent a Query in the middle of one).
            Turn::Refuse => {
                return Err(query_message(&raising(
                    sqlstate::FEATURE_NOT_SUPPORTED,
                    IN_BATCH,
                )));
            }
        }
        let server = self.server.is_some();
        if server && self.exchange.tx_status() == b'E' {
            // A failed transaction: the server refuses it (25P02) without effect.
            return Ok(None);
        }
        Ok(Some(Step::Subscribe(Box::new(Subscribe {
            commands,
            simple: true,
            in_transaction: server,
        }))))
    }

    /// LISTEN / UNLISTEN: answered once the dedicated connection listens to the channels (so that
    /// nothing sent after the answer, or after the COMMIT, is missed). Outside a transaction they
    /// take effect now, inside one at its COMMIT. Answers the client (CommandCompletes, and for a
    /// simple Query its ReadyForQuery), or an error when a channel could not be listened to.
    pub(super) async fn subscribe(&mut self, s: Box<Subscribe>) -> Result<Step, Fatal> {
        let status = if s.in_transaction {
            self.exchange.tx_status()
        } else {
            b'I'
        };
        let limit = self.pool.settings.query_wait_timeout;
        let l = self.listening();
        let (hub, id) = (l.sub.hub.clone(), l.sub.id);
        let mut out = BytesMut::new();
        let mut failed = None;
        for (i, c) in s.commands.iter().enumerate() {
            if let Command::Listen(ch) = c {
                let waiter = hub.reserve(id, ch);
                if let Err(why) = hub.confirm(id, ch, waiter, limit).await {
                    failed = Some((i, why));
                    break;
                }
            }
            backend::command_complete(c.tag(), &mut out);
        }
        match failed {
            None if s.in_transaction => self.listening().staged.extend(s.commands),
            None => hub.commit(id, &s.commands),
            Some((i, why)) => {
                // As in PostgreSQL's implicit transaction: nothing of the Query takes effect.
                hub.rollback(id, &s.commands[..i]);
                let err = ErrorResponse::error(
                    sqlstate::SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION,
                    "could not listen: the pool's listening connection is not available",
                )
                .detail(why.clone());
                if s.simple && s.in_transaction {
                    // The server raises it, so that the transaction fails as on PostgreSQL.
                    self.bufs.to_client.extend_from_slice(&out);
                    let sql = raising(&err.code, &format!("{}: {why}", err.message));
                    frontend::write_query(&sql, &mut self.bufs.to_server);
                    self.exchange.sent(Pending::Query);
                    return Ok(Step::Next);
                } else if s.simple {
                    err.write(&mut out);
                } else if s.in_transaction {
                    // In its turn, and the transaction fails as it would on PostgreSQL.
                    self.bufs.to_client.extend_from_slice(&out);
                    let to_server = &mut self.bufs.to_server;
                    self.exchange.fail_locally(&err, to_server);
                    return Ok(Step::Next);
                } else {
                    self.bufs.to_client.extend_from_slice(&out);
                    self.exchange
                        .fail_request(false, &err, &mut self.bufs.to_client);
                    return Ok(Step::Next);
                }
            }
        }
        if s.simple {
            backend::ready_for_query(status, &mut out);
        }
        self.bufs.to_client.extend_from_slice(&out);
        Ok(Step::Next)
    }

    /// A pipelined LISTEN waited for the answers before it: true when it may go now (the relay
    /// walks the client's bytes again).
    pub(super) fn subscription_unblocked(&mut self) -> bool {
        match self.listen.as_deref_mut() {
            Some(l) if l.waiting && !self.exchange.has_pending() => {
                l.waiting = false;
                true
            }
            _ => false,
        }
    }

    /// A pipelined LISTEN is waiting.
    pub(super) fn subscription_waiting(&self) -> bool {
        self.listen.as_deref().is_some_and(|l| l.waiting)
    }

    /// A server message that may end the client's transaction: COMMIT makes staged commands take
    /// effect; a ReadyForQuery outside a transaction with commands still staged means they were
    /// rolled back; DISCARD ALL unlistens everything.
    pub(super) fn subscription_reply(
        &mut self,
        tag: sluice_proto::backend::BackendTag,
        body: &[u8],
    ) {
        use sluice_proto::backend::BackendTag;
        let Some(l) = self.listen.as_deref_mut() else {
            return;
        };
        match tag {
            BackendTag::CommandComplete if body == b"COMMIT\0" && !l.staged.is_empty() => {
                let staged = std::mem::take(&mut l.staged);
                l.sub.hub.commit(l.sub.id, &staged);
            }
            BackendTag::CommandComplete if body == b"DISCARD ALL\0" => {
                l.sub.hub.commit(l.sub.id, &[Command::UnlistenAll]);
                l.statements.clear();
                l.portals.clear();
            }
            BackendTag::ReadyForQuery if body.first() == Some(&b'I') => {
                if !l.staged.is_empty() {
                    let staged = std::mem::take(&mut l.staged);
                    l.sub.hub.rollback(l.sub.id, &staged);
                }
                // Portals end with their transaction.
                if !l.portals.is_empty() {
                    l.portals.clear();
                }
            }
            _ => {}
        }
    }

    /// Writes `notifications` for the client.
    pub(super) fn deliver(&mut self, notifications: VecDeque<Bytes>) {
        // An idle client's buffers are taken from the cache here (`DerefMut`).
        for n in notifications {
            self.bufs.to_client.extend_from_slice(&n);
        }
    }
}

/// The FATAL error that ends a client whose notification queue overflowed.
pub(super) fn overflow_error(size: usize) -> Fatal {
    Fatal(
        ErrorResponse::fatal(
            sqlstate::PROGRAM_LIMIT_EXCEEDED,
            "terminating connection: too many notifications waiting for this client",
        )
        .detail(format!(
            "more than listen_queue_size ({size}) notifications arrived while the client was busy; they were dropped"
        ))
        .hint("reconnect, LISTEN again and look for work you may have missed"),
    )
}

fn query_message(sql: &str) -> Bytes {
    let mut out = BytesMut::new();
    frontend::write_query(sql, &mut out);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cheap_test_lets_subscriptions_through_and_most_queries_not() {
        for sql in [
            "LISTEN a",
            "  unlisten *",
            "/* c */ LISTEN a",
            "BEGIN; LISTEN a; COMMIT",
        ] {
            assert!(may_subscribe(sql.as_bytes()), "{sql}");
        }
        for sql in [
            "SELECT 1",
            "SELECT 1;",
            "SELECT * FROM listeners",
            "NOTIFY a",
        ] {
            assert!(!may_subscribe(sql.as_bytes()), "{sql}");
        }
    }
}
