//! One client's named prepared statements in transaction mode, and the rewrite that makes them
//! survive transaction pooling.
//!
//! A client's statement name maps to a pool-wide [`Statement`] (see [`crate::prepared`]); on a
//! server connection it lives as `sluice_<id>`. This type renames the client's Parse, Bind,
//! Describe and Close into that name, inserts a Parse (and, at `max_prepared_statements`, a Close
//! of the least recently used statement) where the server connection lacks one, answers what it
//! can without the server, and books every request with the [`Exchange`] so answers reach the
//! client in PostgreSQL's order. No I/O: it writes into the session's outgoing buffers.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::{Bytes, BytesMut};
use sluice_proto::backend::{self, ErrorResponse};
use sluice_proto::frontend;
use sluice_proto::sqlstate;

use super::exchange::{Answer, Exchange, Pending};
use crate::metrics::PoolCounters;
use crate::prepared::{OverBudget, PoolStatements, ServerStatements, Statement, server_name};

/// What to take back if a Parse or Close never happens (the server rejects or skips it, or the
/// server connection is lost before it answers). An enum, not a struct of options: it travels in
/// every Parse and Close the exchange queues, and a smaller queue entry is cheaper to move.
#[derive(Default)]
pub enum Undo {
    #[default]
    Nothing,
    /// A Parse: the client name that was mapped to the statement (if any), and whether the
    /// statement was recorded as prepared on the server connection.
    Parse {
        client: Option<Bytes>,
        server: bool,
        stmt: Arc<Statement>,
    },
    /// A client's Close answered locally: its name and statement, to restore.
    Close(Bytes, Arc<Statement>),
    /// A `DEALLOCATE ALL` answered by sluice: the names, to restore.
    Names(Vec<(Bytes, Arc<Statement>)>),
    /// An eviction sluice sent: if the server skips it, the statement stays there.
    Evicted(u64),
}

impl Undo {
    /// The eviction of statement `id` from a server connection.
    pub fn evicted(id: u64) -> Undo {
        Undo::Evicted(id)
    }

    /// Nothing to take back.
    #[inline]
    pub fn is_nothing(&self) -> bool {
        matches!(self, Undo::Nothing)
    }

    /// The Parse happened: a server accepted this statement, so later Parses of the same SQL can
    /// be answered without one.
    #[inline]
    pub fn confirm(self) {
        if let Undo::Parse { stmt, .. } = self {
            stmt.validated.store(true, Ordering::Relaxed);
        }
    }
}

/// What the pool contributes to the rewrite: its statements, counters and per-connection cap.
pub struct PoolPrepared<'a> {
    pub statements: &'a PoolStatements,
    pub counters: &'a PoolCounters,
    pub cap: usize,
}

/// A client's Parse answered without a server.
pub enum LocalParse {
    /// Answered (ParseComplete or PostgreSQL's error) into the client's buffer.
    Answered,
    /// A server must see it.
    NeedsServer,
}

/// One client's statement names (transaction mode with `max_prepared_statements > 0`).
#[derive(Default)]
pub struct ClientStatements {
    names: Names,
}

/// The names, in a map made at the client's first named statement: a client that names none
/// (every idle one that prepared nothing) keeps 8 bytes in its task instead of an empty map's 48
/// (bench/README.md, "Idle client memory").
#[derive(Default)]
#[allow(clippy::box_collection)] // the box is what keeps the field at 8 bytes
struct Names(Option<Box<HashMap<Bytes, Arc<Statement>>>>);

impl Names {
    fn get(&self, name: &[u8]) -> Option<&Arc<Statement>> {
        self.0.as_deref()?.get(name)
    }

    fn contains_key(&self, name: &[u8]) -> bool {
        self.get(name).is_some()
    }

    fn map(&mut self) -> &mut HashMap<Bytes, Arc<Statement>> {
        self.0.get_or_insert_default()
    }

    fn insert(&mut self, name: Bytes, stmt: Arc<Statement>) {
        self.map().insert(name, stmt);
    }

    fn remove(&mut self, name: &[u8]) {
        if let Some(m) = self.0.as_deref_mut() {
            m.remove(name);
        }
    }

    fn remove_entry(&mut self, name: &[u8]) -> Option<(Bytes, Arc<Statement>)> {
        self.0.as_deref_mut()?.remove_entry(name)
    }

    fn drain(&mut self) -> Vec<(Bytes, Arc<Statement>)> {
        self.0
            .as_deref_mut()
            .map(|m| m.drain().collect())
            .unwrap_or_default()
    }

    fn clear(&mut self) {
        if let Some(m) = self.0.as_deref_mut() {
            m.clear();
        }
    }

    fn keep(&mut self, name: Bytes, stmt: Arc<Statement>) {
        self.map().entry(name).or_insert(stmt);
    }
}

impl ClientStatements {
    /// The statement this client calls `name`.
    pub fn get(&self, name: &[u8]) -> Option<&Arc<Statement>> {
        self.names.get(name)
    }

    /// Gives the client's name `name` to `stmt` (SQL PREPARE).
    pub(super) fn insert(&mut self, name: Bytes, stmt: Arc<Statement>) {
        self.names.insert(name, stmt);
    }

    /// Forgets a name (the unit that gave it will run again, DEALLOCATE).
    pub fn remove(&mut self, name: &[u8]) {
        self.names.remove(name);
    }

    /// Takes a name away (DEALLOCATE), with its statement.
    pub(super) fn take(&mut self, name: &[u8]) -> Option<(Bytes, Arc<Statement>)> {
        self.names.remove_entry(name)
    }

    /// Takes every name away (DEALLOCATE ALL).
    pub(super) fn take_all(&mut self) -> Vec<(Bytes, Arc<Statement>)> {
        self.names.drain()
    }

    /// `DISCARD ALL` / `DEALLOCATE ALL`: every name goes.
    pub fn clear(&mut self) {
        self.names.clear();
    }

    /// `DEALLOCATE name` for one of this client's statements: the name.
    pub fn deallocate_target(&self, query_body: &[u8]) -> Option<Vec<u8>> {
        let sql = std::str::from_utf8(query_body.strip_suffix(&[0])?).ok()?;
        let name = crate::prepared::deallocate_target(sql)?;
        self.names
            .contains_key(name.as_bytes())
            .then(|| name.into_bytes())
    }

    /// A named Parse without a server: answered at once when a server has accepted the same SQL
    /// before (or when the name is taken). Answering here keeps a driver that prepares
    /// synchronously outside a transaction (pgbench -M prepared) from waiting on a pool its own
    /// other sessions hold.
    pub fn parse_locally(
        &mut self,
        pool: &PoolPrepared<'_>,
        name: &[u8],
        tail: &[u8],
        ex: &mut Exchange,
        to_client: &mut BytesMut,
    ) -> LocalParse {
        if self.names.contains_key(name) {
            ex.fail_request(false, &already_exists(name), to_client);
            return LocalParse::Answered;
        }
        // SQL EXECUTE of a statement of the client's is renamed with a server attached.
        if super::sql_prepare::candidate(tail) {
            let query = tail.split(|&b| b == 0).next().unwrap_or_default();
            if let Some(super::sql_prepare::SqlCommand::Execute { name, .. }) =
                super::sql_prepare::recognise(query)
            {
                if self.names.contains_key(&name[..]) {
                    return LocalParse::NeedsServer;
                }
            }
        }
        match pool.statements.validated(tail) {
            Some(stmt) => {
                pool.counters.prepared_hits.fetch_add(1, Ordering::Relaxed);
                self.names.insert(Bytes::copy_from_slice(name), stmt);
                backend::parse_complete(to_client);
                LocalParse::Answered
            }
            None => LocalParse::NeedsServer,
        }
    }

    /// The Close of a named statement without a server: only the client's name goes.
    pub fn close_locally(&mut self, name: &[u8], to_client: &mut BytesMut) {
        self.names.remove(name);
        backend::close_complete(to_client);
    }

    /// A named Parse with a server attached. A Parse whose text would take the statement
    /// registries past `max_prepared_statement_bytes` fails with 53200 in its turn (the session
    /// goes on); the caller gets the figures to log.
    pub fn parse(
        &mut self,
        pool: &PoolPrepared<'_>,
        conn: &mut ServerStatements,
        name: &[u8],
        tail: &[u8],
        ex: &mut Exchange,
        to_server: &mut BytesMut,
    ) -> Result<(), OverBudget> {
        if self.names.contains_key(name) {
            ex.fail_locally(&already_exists(name), to_server);
            return Ok(());
        }
        let stmt = match pool.statements.intern(tail) {
            Ok(stmt) => stmt,
            Err(over) => {
                ex.fail_locally(&over_budget(&over), to_server);
                return Err(over);
            }
        };
        let client = Bytes::copy_from_slice(name);
        self.names.insert(client.clone(), stmt.clone());
        parse_for_client(pool, conn, stmt, Some(client), ex, to_server);
        Ok(())
    }

    /// A Bind of a named statement: renamed, after a Parse if the connection lacks it.
    #[allow(clippy::too_many_arguments)]
    pub fn bind(
        &mut self,
        pool: &PoolPrepared<'_>,
        conn: &mut ServerStatements,
        portal: &[u8],
        name: &[u8],
        rest: &[u8],
        ex: &mut Exchange,
        to_server: &mut BytesMut,
    ) {
        let Some(stmt) = self.on_server(pool, conn, name, ex, to_server) else {
            return;
        };
        frontend::Bind::write_raw(portal, server_name(stmt.id).as_bytes(), rest, to_server);
        ex.sent(Pending::Bind);
    }

    /// A Describe of a named statement: renamed, after a Parse if the connection lacks it.
    pub fn describe(
        &mut self,
        pool: &PoolPrepared<'_>,
        conn: &mut ServerStatements,
        name: &[u8],
        ex: &mut Exchange,
        to_server: &mut BytesMut,
    ) {
        let Some(stmt) = self.on_server(pool, conn, name, ex, to_server) else {
            return;
        };
        frontend::Describe::write(b'S', &server_name(stmt.id), to_server);
        ex.sent(Pending::Describe);
    }

    /// The Close of a named statement with a server attached: the server-side statement is shared
    /// and stays; only this client's name goes, answered in its turn.
    pub fn close(&mut self, name: &[u8], ex: &mut Exchange) {
        let undo = match self.names.remove_entry(name) {
            Some((name, stmt)) => Undo::Close(name, stmt),
            None => Undo::Nothing,
        };
        ex.sent(Pending::Close {
            answer: Answer::Local,
            undo,
        });
    }

    /// Takes back what a Parse or Close that never happened did. `conn`: the server connection,
    /// if it is still attached.
    pub fn undo(&mut self, undo: Undo, conn: Option<&mut ServerStatements>) {
        match undo {
            Undo::Nothing => {}
            Undo::Parse {
                client,
                server,
                stmt,
            } => {
                if let Some(name) = client {
                    if self.names.get(&name).map(|s| s.id) == Some(stmt.id) {
                        self.names.remove(&name);
                    }
                }
                if let (true, Some(conn)) = (server, conn) {
                    conn.remove(stmt.id);
                }
            }
            Undo::Close(name, stmt) => {
                self.names.keep(name, stmt);
            }
            Undo::Names(names) => {
                for (name, stmt) in names {
                    self.names.keep(name, stmt);
                }
            }
            Undo::Evicted(id) => {
                if let Some(conn) = conn {
                    conn.restore(id);
                }
            }
        }
    }

    /// This client's statement `name`, made sure of on the server connection; if the client has
    /// no such statement, PostgreSQL's error is raised in the batch instead.
    fn on_server(
        &mut self,
        pool: &PoolPrepared<'_>,
        conn: &mut ServerStatements,
        name: &[u8],
        ex: &mut Exchange,
        to_server: &mut BytesMut,
    ) -> Option<Arc<Statement>> {
        let Some(stmt) = self.names.get(name).cloned() else {
            let msg = format!(
                "prepared statement \"{}\" does not exist",
                String::from_utf8_lossy(name)
            );
            let err = ErrorResponse::error(sqlstate::INVALID_SQL_STATEMENT_NAME, msg);
            ex.fail_locally(&err, to_server);
            return None;
        };
        if conn.touch(stmt.id) {
            pool.counters.prepared_hits.fetch_add(1, Ordering::Relaxed);
        } else if stmt.parse_form() {
            prepare_on_server(pool, conn, &stmt, Answer::Swallow, None, ex, to_server);
        } else {
            let err = ErrorResponse::error(
                sqlstate::FEATURE_NOT_SUPPORTED,
                "sluice cannot prepare a statement made by SQL PREPARE with a type list on another server connection through the extended protocol",
            )
            .hint("run it with EXECUTE, or prepare it with a protocol-level Parse");
            ex.fail_locally(&err, to_server);
            return None;
        }
        Some(stmt)
    }
}

/// A client's Parse that became `stmt`: answered by sluice (ParseComplete in its turn) when this
/// server connection already has the statement, sent to the server under its server name
/// otherwise. `client` is the client's name for it, if it has one.
pub(super) fn parse_for_client(
    pool: &PoolPrepared<'_>,
    conn: &mut ServerStatements,
    stmt: Arc<Statement>,
    client: Option<Bytes>,
    ex: &mut Exchange,
    to_server: &mut BytesMut,
) {
    if conn.touch(stmt.id) {
        pool.counters.prepared_hits.fetch_add(1, Ordering::Relaxed);
        let undo = Undo::Parse {
            client,
            server: false,
            stmt,
        };
        ex.sent(Pending::Parse {
            answer: Answer::Local,
            undo,
        });
    } else {
        prepare_on_server(pool, conn, &stmt, Answer::Server, client, ex, to_server);
    }
}

/// Sends Parse for `stmt` under its server name, first closing the least recently used statement
/// when the connection is at `max_prepared_statements`.
pub(super) fn prepare_on_server(
    pool: &PoolPrepared<'_>,
    conn: &mut ServerStatements,
    stmt: &Arc<Statement>,
    answer: Answer,
    client: Option<Bytes>,
    ex: &mut Exchange,
    to_server: &mut BytesMut,
) {
    if let Some(dep) = stmt.needs.get() {
        if dep.parse_form() && !conn.touch(dep.id) {
            prepare_on_server(pool, conn, dep, Answer::Swallow, None, ex, to_server);
        }
    }
    count_miss(pool);
    if let Some(old) = conn.insert(stmt.id, pool.cap) {
        pool.counters
            .prepared_evictions
            .fetch_add(1, Ordering::Relaxed);
        frontend::Close::write(b'S', &server_name(old), to_server);
        ex.sent(Pending::Close {
            answer: Answer::Swallow,
            undo: Undo::evicted(old),
        });
    }
    stmt.write_parse(to_server);
    let undo = Undo::Parse {
        client,
        server: true,
        stmt: stmt.clone(),
    };
    ex.sent(Pending::Parse { answer, undo });
}

/// A statement a server connection had to be given.
pub(super) fn count_miss(pool: &PoolPrepared<'_>) {
    pool.counters
        .prepared_misses
        .fetch_add(1, Ordering::Relaxed);
}

/// 53200: the statement registries are full (`max_prepared_statement_bytes`).
pub(super) fn over_budget(over: &OverBudget) -> ErrorResponse {
    ErrorResponse::error(
        sqlstate::OUT_OF_MEMORY,
        format!(
            "out of memory for prepared statements: this statement's {} bytes do not fit ({} of max_prepared_statement_bytes = {} in use)",
            over.len, over.used, over.cap
        ),
    )
    .hint("close prepared statements that are no longer needed, or raise max_prepared_statement_bytes")
}

pub(super) fn already_exists(name: &[u8]) -> ErrorResponse {
    let msg = format!(
        "prepared statement \"{}\" already exists",
        String::from_utf8_lossy(name)
    );
    ErrorResponse::error(sqlstate::DUPLICATE_PREPARED_STATEMENT, msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::exchange::Verdict;
    use sluice_proto::backend::BackendTag;
    use sluice_proto::split_message;

    struct Fixture {
        statements: PoolStatements,
        counters: PoolCounters,
        cap: usize,
    }

    impl Fixture {
        fn new(cap: usize) -> Fixture {
            Fixture {
                statements: PoolStatements::new(std::sync::Arc::new(
                    crate::memory::ByteBudget::new(1 << 20),
                )),
                counters: PoolCounters::default(),
                cap,
            }
        }
        fn pool(&self) -> PoolPrepared<'_> {
            PoolPrepared {
                statements: &self.statements,
                counters: &self.counters,
                cap: self.cap,
            }
        }
    }

    /// The messages written, as (tag, body).
    fn messages(buf: &BytesMut) -> Vec<(u8, Vec<u8>)> {
        let mut b = buf.clone();
        let mut out = Vec::new();
        while let Ok(Some(m)) = split_message(&mut b, usize::MAX) {
            out.push((m.tag, m.body.to_vec()));
        }
        out
    }

    const TAIL: &[u8] = b"select $1\0\0\0";

    /// Parse then Bind of a client name: the server sees sluice's name for it, once.
    #[test]
    fn parse_and_bind_are_renamed() {
        let f = Fixture::new(10);
        let mut c = ClientStatements::default();
        let mut conn = ServerStatements::default();
        let mut ex = Exchange::default();
        let mut out = BytesMut::new();
        c.parse(&f.pool(), &mut conn, b"q1", TAIL, &mut ex, &mut out)
            .unwrap();
        c.bind(
            &f.pool(),
            &mut conn,
            b"",
            b"q1",
            b"\0\0\0\0\0\0",
            &mut ex,
            &mut out,
        );
        let m = messages(&out);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].0, b'P');
        assert!(m[0].1.starts_with(b"sluice_1\0select $1\0"));
        assert_eq!(m[1].0, b'B');
        assert!(m[1].1.starts_with(b"\0sluice_1\0"));
        assert_eq!(f.counters.prepared_misses.load(Ordering::Relaxed), 1);
        // The client's ParseComplete is forwarded; the BindComplete too.
        assert_eq!(
            ex.on_reply(BackendTag::ParseComplete, b"", drop),
            Verdict::Forward
        );
        assert_eq!(
            ex.on_reply(BackendTag::BindComplete, b"", drop),
            Verdict::Forward
        );
        assert!(c.get(b"q1").unwrap().validated.load(Ordering::Relaxed));
    }

    /// A Bind on a connection that never saw the statement gets a Parse inserted; its answer is
    /// swallowed.
    #[test]
    fn bind_on_a_new_connection_inserts_a_parse() {
        let f = Fixture::new(10);
        let mut c = ClientStatements::default();
        let mut ex = Exchange::default();
        let mut first = ServerStatements::default();
        c.parse(
            &f.pool(),
            &mut first,
            b"q",
            TAIL,
            &mut ex,
            &mut BytesMut::new(),
        )
        .unwrap();
        let mut ex = Exchange::default();
        let mut second = ServerStatements::default();
        let mut out = BytesMut::new();
        c.bind(
            &f.pool(),
            &mut second,
            b"",
            b"q",
            b"\0\0\0\0\0\0",
            &mut ex,
            &mut out,
        );
        let tags: Vec<u8> = messages(&out).iter().map(|m| m.0).collect();
        assert_eq!(tags, b"PB");
        assert_eq!(
            ex.on_reply(BackendTag::ParseComplete, b"", drop),
            Verdict::Drop,
            "inserted Parse"
        );
        assert_eq!(
            ex.on_reply(BackendTag::BindComplete, b"", drop),
            Verdict::Forward
        );
        // Again on the same connection: a hit, no Parse.
        let mut out = BytesMut::new();
        c.bind(
            &f.pool(),
            &mut second,
            b"",
            b"q",
            b"\0\0\0\0\0\0",
            &mut ex,
            &mut out,
        );
        assert_eq!(messages(&out).len(), 1);
        assert_eq!(f.counters.prepared_hits.load(Ordering::Relaxed), 1);
    }

    /// At the cap, the least recently used statement is closed first; if the server skips that
    /// Close (an error earlier in the batch), the statement is still there.
    #[test]
    fn eviction_and_its_undo() {
        let f = Fixture::new(1);
        let mut c = ClientStatements::default();
        let mut conn = ServerStatements::default();
        let mut ex = Exchange::default();
        let mut out = BytesMut::new();
        c.parse(
            &f.pool(),
            &mut conn,
            b"a",
            b"select 1\0\0\0",
            &mut ex,
            &mut out,
        )
        .unwrap();
        ex.on_reply(BackendTag::ParseComplete, b"", drop);
        out.clear();
        c.parse(
            &f.pool(),
            &mut conn,
            b"b",
            b"select 2\0\0\0",
            &mut ex,
            &mut out,
        )
        .unwrap();
        let tags: Vec<u8> = messages(&out).iter().map(|m| m.0).collect();
        assert_eq!(tags, b"CP", "Close of the old one, then Parse");
        assert_eq!(f.counters.prepared_evictions.load(Ordering::Relaxed), 1);
        // The server fails the Close: both it and the Parse are skipped.
        ex.on_reply(BackendTag::ErrorResponse, b"SERROR\0\0", |u| {
            c.undo(u, Some(&mut conn))
        });
        assert!(c.get(b"b").is_none(), "the Parse never happened");
        assert!(c.get(b"a").is_some());
        let a = c.get(b"a").unwrap().id;
        assert!(
            conn.touch(a),
            "the evicted statement is still on the server"
        );
    }

    /// PostgreSQL's errors for a name that exists or does not, raised in order in the batch.
    #[test]
    fn duplicate_and_missing_names() {
        let f = Fixture::new(10);
        let mut c = ClientStatements::default();
        let mut conn = ServerStatements::default();
        let mut ex = Exchange::default();
        let mut out = BytesMut::new();
        c.parse(&f.pool(), &mut conn, b"x", TAIL, &mut ex, &mut out)
            .unwrap();
        c.parse(&f.pool(), &mut conn, b"x", TAIL, &mut ex, &mut out)
            .unwrap();
        assert!(ex.discarding());
        ex.on_reply(BackendTag::ParseComplete, b"", drop);
        match ex.on_reply(BackendTag::ErrorResponse, b"SERROR\0C26000\0\0", drop) {
            Verdict::Replace(e) => assert!(
                e.windows(5).any(|w| w == b"42P05"),
                "duplicate_prepared_statement"
            ),
            v => panic!("{v:?}"),
        }

        let mut ex = Exchange::default();
        let mut out = BytesMut::new();
        c.describe(&f.pool(), &mut conn, b"nope", &mut ex, &mut out);
        assert_eq!(messages(&out)[0].1, b"Ssluice: failing on purpose\0");
        match ex.on_reply(BackendTag::ErrorResponse, b"", drop) {
            Verdict::Replace(e) => assert!(e.windows(5).any(|w| w == b"26000")),
            v => panic!("{v:?}"),
        }
    }

    /// A Parse of SQL a server accepted before is answered locally; Close only drops the name.
    #[test]
    fn local_parse_and_close() {
        let f = Fixture::new(10);
        let mut c = ClientStatements::default();
        let mut ex = Exchange::default();
        let mut out = BytesMut::new();
        assert!(matches!(
            c.parse_locally(&f.pool(), b"a", TAIL, &mut ex, &mut out),
            LocalParse::NeedsServer
        ));
        let held = f.statements.intern(TAIL).unwrap();
        held.validated.store(true, Ordering::Relaxed);
        assert!(matches!(
            c.parse_locally(&f.pool(), b"a", TAIL, &mut ex, &mut out),
            LocalParse::Answered
        ));
        assert_eq!(&out[..], b"1\0\0\0\x04");
        out.clear();
        assert!(matches!(
            c.parse_locally(&f.pool(), b"a", TAIL, &mut ex, &mut out),
            LocalParse::Answered
        ));
        assert_eq!(out[0], b'E');
        assert!(ex.discarding());
        out.clear();
        c.close_locally(b"a", &mut out);
        assert_eq!(&out[..], b"3\0\0\0\x04");
        assert!(c.get(b"a").is_none());
    }

    /// A Close with a server attached is answered locally, in order, and taken back if skipped.
    #[test]
    fn close_with_server_is_local_and_undoable() {
        let f = Fixture::new(10);
        let mut c = ClientStatements::default();
        let mut conn = ServerStatements::default();
        let mut ex = Exchange::default();
        c.parse(
            &f.pool(),
            &mut conn,
            b"a",
            TAIL,
            &mut ex,
            &mut BytesMut::new(),
        )
        .unwrap();
        ex.on_reply(BackendTag::ParseComplete, b"", drop);
        ex.sent(Pending::Bind);
        c.close(b"a", &mut ex);
        assert!(c.get(b"a").is_none());
        ex.on_reply(BackendTag::ErrorResponse, b"SERROR\0\0", |u| {
            c.undo(u, Some(&mut conn))
        });
        assert!(c.get(b"a").is_some(), "the skipped Close is taken back");
    }

    /// A Parse past max_prepared_statement_bytes fails with 53200 in its turn; the name is not
    /// taken and the next Parse that fits works.
    #[test]
    fn parse_over_the_statement_budget_fails_in_its_turn() {
        let f = Fixture {
            statements: PoolStatements::new(std::sync::Arc::new(crate::memory::ByteBudget::new(
                64,
            ))),
            counters: PoolCounters::default(),
            cap: 10,
        };
        let mut c = ClientStatements::default();
        let mut conn = ServerStatements::default();
        let mut ex = Exchange::default();
        let mut out = BytesMut::new();
        let mut big = vec![b'x'; 100];
        big.extend_from_slice(b"\0\0\0");
        let over = c
            .parse(&f.pool(), &mut conn, b"big", &big, &mut ex, &mut out)
            .unwrap_err();
        assert_eq!((over.len, over.cap), (103, 64));
        assert!(c.get(b"big").is_none());
        assert!(
            ex.discarding(),
            "the rest of the batch is skipped, as after a server error"
        );
        match ex.on_reply(BackendTag::ErrorResponse, b"", drop) {
            Verdict::Replace(e) => assert!(e.windows(5).any(|w| w == b"53200")),
            v => panic!("{v:?}"),
        }
        let mut ex = Exchange::default();
        c.parse(&f.pool(), &mut conn, b"small", TAIL, &mut ex, &mut out)
            .unwrap();
        assert!(c.get(b"small").is_some());
    }

    #[test]
    fn deallocate_of_own_statement() {
        let f = Fixture::new(10);
        let mut c = ClientStatements::default();
        let mut conn = ServerStatements::default();
        let mut ex = Exchange::default();
        c.parse(
            &f.pool(),
            &mut conn,
            b"s1",
            TAIL,
            &mut ex,
            &mut BytesMut::new(),
        )
        .unwrap();
        assert_eq!(
            c.deallocate_target(b"DEALLOCATE s1\0"),
            Some(b"s1".to_vec())
        );
        assert_eq!(c.deallocate_target(b"DEALLOCATE s2\0"), None);
    }
}
