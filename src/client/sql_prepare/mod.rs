//! SQL-level prepared statements (`PREPARE`, `EXECUTE`, `DEALLOCATE`) in transaction mode.
//!
//! PostgreSQL keeps one namespace for statements made by SQL `PREPARE` and by a protocol Parse,
//! so both map onto the same pool-wide statements ([`crate::prepared`]) through the client's
//! [`ClientStatements`]. A simple Query that is one such statement is recognised with the SQL
//! lexer ([`recognise`]) and rewritten: the client's name becomes `sluice_<id>`; a server
//! connection that lacks the statement gets `PREPARE sluice_<id> … ;` ahead of it in the same
//! Query (and, at `max_prepared_statements`, `DEALLOCATE` of its least recently used statement),
//! whose CommandCompletes are dropped. Errors that name the statement or point into the text
//! are given the client's name and position back ([`SqlRewrite`]). Duplicate and unknown names
//! get PostgreSQL's 42P05 and 26000, raised through a query bound to fail so a transaction is
//! aborted as it would be; `DEALLOCATE` is answered by sluice (the server-side statement is
//! shared). `EXPLAIN … EXECUTE name` and `CREATE TABLE … AS EXECUTE name` are rewritten the
//! same way.
//!
//! Not handled, sent as written: a multi-statement Query, text the lexer cannot read with
//! certainty, and anything in a failed transaction (the server answers 25P02 without looking
//! at the names, as it would directly). No I/O.

use std::ops::Range;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use sluice_proto::backend::{self, ErrorResponse, put_cstr, write_message};
use sluice_proto::backend_view::ErrorFields;
use sluice_proto::sqlstate;

mod recognise;

pub use recognise::{SqlCommand, candidate, recognise};

use super::exchange::{Exchange, Pending, Verdict};
use super::statements::{ClientStatements, PoolPrepared, Undo, already_exists, over_budget};
use crate::prepared::{ServerStatements, Statement, server_name};

/// A client's Query sluice rewrote, as booked in the exchange: what its replies mean.
#[derive(Default)]
pub struct SqlRewrite {
    /// One entry per statement sluice put ahead of the client's (its CommandComplete is
    /// dropped), then, for a `PREPARE`, the client's own (forwarded); each with what to take
    /// back if it fails, in the order their CommandCompletes come.
    steps: Vec<(bool, Undo)>,
    next: usize,
    /// How to give the client its own view of an error.
    fix: Fix,
}

#[derive(Default)]
enum Fix {
    #[default]
    Nothing,
    /// sluice's own error replaces the server's (the query was bound to fail).
    Replace(Bytes),
    /// sluice answers the command; a harmless one stood in for it (see [`answer`]).
    Tag(&'static str),
    /// The statement's server name back to the client's, and positions back into its text.
    Rename {
        /// Characters sluice put ahead of the client's text.
        prefix: u32,
        /// Where the name starts in the client's text, in characters.
        name_at: u32,
        client_len: u32,
        server: String,
        client: String,
    },
}

impl SqlRewrite {
    /// A CommandComplete: dropped if it answers a statement sluice put ahead, replaced when
    /// sluice's command stood in for the client's.
    pub fn on_complete(&mut self) -> Verdict {
        let Some((inserted, undo)) = self.steps.get_mut(self.next) else {
            return Verdict::Forward;
        };
        self.next += 1;
        std::mem::take(undo).confirm();
        if *inserted {
            return Verdict::Drop;
        }
        match self.fix {
            Fix::Tag(tag) => {
                let mut out = BytesMut::new();
                backend::command_complete(tag, &mut out);
                Verdict::Replace(out.freeze())
            }
            _ => Verdict::Forward,
        }
    }

    /// An error: what the failed statements had done is handed back; the error the client
    /// sees, if it is not the server's as it is.
    pub fn on_error(&mut self, body: &[u8], undo: &mut impl FnMut(Undo)) -> Option<Bytes> {
        self.hand_back(undo);
        match &self.fix {
            Fix::Nothing | Fix::Tag(_) => None,
            // The query bound to fail failed as meant (else, in a failed transaction, the
            // server's 25P02 is the answer).
            Fix::Replace(ours) => (ErrorFields::decode(body).ok()?.code()
                == Some(sqlstate::INVALID_SQL_STATEMENT_NAME))
            .then(|| ours.clone()),
            Fix::Rename {
                prefix,
                name_at,
                client_len,
                server,
                client,
            } => rename_error(
                body,
                *prefix,
                *name_at,
                *client_len,
                &format!("\"{server}\""),
                &format!("\"{client}\""),
            ),
        }
    }

    /// The statements that did not complete never happened.
    pub fn hand_back(&mut self, undo: &mut impl FnMut(Undo)) {
        for (_, u) in self.steps.drain(self.next..) {
            if !u.is_nothing() {
                undo(u);
            }
        }
    }
}

/// The error with the server's name for the statement replaced by the client's and its
/// position (`P`) moved back into the client's text (dropped if it points into sluice's prefix).
fn rename_error(
    body: &[u8],
    prefix: u32,
    name_at: u32,
    client_len: u32,
    server: &str,
    client: &str,
) -> Option<Bytes> {
    let fields = ErrorFields::decode(body).ok()?;
    let server_len = server.len() as u32 - 2;
    let mut out = BytesMut::new();
    write_message(&mut out, b'E', |b| {
        for (ty, value) in fields.iter() {
            if ty == b'P' {
                let Some(p) = std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.parse::<u32>().ok())
                else {
                    continue;
                };
                if p <= prefix {
                    continue;
                }
                let mut p = p - prefix;
                if p > name_at + server_len {
                    p = p - server_len + client_len;
                } else if p > name_at {
                    p = name_at + 1;
                }
                b.extend_from_slice(b"P");
                put_cstr(b, p.to_string().as_bytes());
                continue;
            }
            b.extend_from_slice(&[ty]);
            match (ty, std::str::from_utf8(value)) {
                (b'M' | b'D' | b'H' | b'W', Ok(v)) if v.contains(server) => {
                    put_cstr(b, v.replace(server, client).as_bytes())
                }
                _ => put_cstr(b, value),
            }
        }
        b.extend_from_slice(&[0]);
    });
    Some(out.freeze())
}

/// Characters in `s` (UTF-8: bytes that do not continue a character).
fn chars(s: &[u8]) -> u32 {
    s.iter().filter(|&&b| (b & 0xC0) != 0x80).count() as u32
}

/// What [`ClientStatements::sql_command`] did.
pub enum SqlStep {
    /// Not a command sluice handles: send the Query as it is.
    AsIs,
    /// Answered, or sent rewritten.
    Done,
    /// No server attached: one is needed (then call again with it).
    NeedsServer,
}

/// A Parse whose text is SQL `EXECUTE` of one of the client's statements.
pub enum ExecuteInParse {
    /// Not one: send it as it is.
    AsIs,
    /// Its text with the statement's server name (the Parse tail to send instead), and the
    /// statement, made sure of on the server connection.
    Rewritten(Vec<u8>, Arc<Statement>),
    /// It cannot run here: the error was raised in the batch.
    Failed,
}

/// A server connection's part: its statements, and whether its transaction has failed.
pub struct OnServer<'a> {
    pub conn: &'a mut ServerStatements,
    pub failed_tx: bool,
}

impl ClientStatements {
    /// A simple Query (`body` with its NUL): answers or rewrites a SQL-level prepared-statement
    /// command. Without a server (`server` None; the client is idle outside a transaction) only
    /// what needs none is answered, into `to_client`; with one, everything goes through the
    /// exchange in order, and what the server must see into `to_server`.
    pub fn sql_command(
        &mut self,
        pool: &PoolPrepared<'_>,
        server: Option<OnServer<'_>>,
        body: &[u8],
        ex: &mut Exchange,
        to_server: &mut BytesMut,
        to_client: &mut BytesMut,
    ) -> SqlStep {
        let Some(sql) = body.strip_suffix(&[0]) else {
            return SqlStep::AsIs;
        };
        if server.as_ref().is_some_and(|s| s.failed_tx) {
            return SqlStep::AsIs;
        }
        let Some(cmd) = recognise(sql) else {
            return SqlStep::AsIs;
        };
        let Some(server) = server else {
            return self.sql_without_server(pool, sql, cmd, ex, to_client);
        };
        let conn = server.conn;
        match cmd {
            SqlCommand::Deallocate { name } => {
                let (tag, undo) = match name {
                    None => ("DEALLOCATE ALL", Undo::Names(self.take_all())),
                    Some(n) => match self.take(&n) {
                        Some((name, stmt)) => ("DEALLOCATE", Undo::Close(name, stmt)),
                        None => {
                            fail(&does_not_exist(&n), ex, to_server);
                            return SqlStep::Done;
                        }
                    },
                };
                answer(tag, undo, ex, to_server);
            }
            SqlCommand::Execute { name, name_at } => {
                let Some(stmt) = self.get(&name).cloned() else {
                    fail(&does_not_exist(&name), ex, to_server);
                    return SqlStep::Done;
                };
                let mut rw = SqlRewrite::default();
                let mut prefix = String::new();
                if !on_server(pool, conn, &stmt, &mut rw, &mut prefix, ex, to_server) {
                    return SqlStep::Done;
                }
                send(sql, &name, name_at, &stmt, prefix, rw, ex, to_server);
            }
            SqlCommand::Prepare {
                name,
                name_at,
                types,
                query,
            } => {
                if self.get(&name).is_some() {
                    fail(&already_exists(&name), ex, to_server);
                    return SqlStep::Done;
                }
                let types = types.map(|t| &sql[t]);
                let stmt = match pool.statements.intern_sql(&sql[query], types) {
                    Ok(stmt) => stmt,
                    Err(over) => {
                        fail(&over_budget(&over), ex, to_server);
                        return SqlStep::Done;
                    }
                };
                let client = Bytes::copy_from_slice(&name);
                self.insert(client.clone(), stmt.clone());
                let validated = stmt.validated.load(std::sync::atomic::Ordering::Relaxed);
                if conn.touch(stmt.id) || validated {
                    // Prepared on servers as it is needed (EXECUTE, Bind).
                    pool.counters
                        .prepared_hits
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let undo = Undo::Parse {
                        client: Some(client),
                        server: false,
                        stmt,
                    };
                    answer("PREPARE", undo, ex, to_server);
                    return SqlStep::Done;
                }
                let mut rw = SqlRewrite::default();
                let mut prefix = String::new();
                super::statements::count_miss(pool);
                if let Some(old) = conn.insert(stmt.id, pool.cap) {
                    evict(pool, old, &mut rw, &mut prefix);
                }
                rw.steps.push((
                    false,
                    Undo::Parse {
                        client: Some(client),
                        server: true,
                        stmt: stmt.clone(),
                    },
                ));
                send(sql, &name, name_at, &stmt, prefix, rw, ex, to_server);
            }
        }
        SqlStep::Done
    }

    /// A Parse with a server attached: a named one is renamed onto its pool-wide statement
    /// ([`ClientStatements::parse`]); one whose text is SQL `EXECUTE` of this client's statement
    /// gets the statement's server name in its text ([`ClientStatements::execute_in_parse`]).
    /// Ok(false): an unnamed Parse to send as it is.
    pub fn parse_any(
        &mut self,
        pool: &PoolPrepared<'_>,
        conn: &mut ServerStatements,
        name: &[u8],
        tail: &[u8],
        ex: &mut Exchange,
        to_server: &mut BytesMut,
    ) -> Result<bool, crate::prepared::OverBudget> {
        let (rewritten, needs);
        let tail = match self.execute_in_parse(pool, conn, tail, ex, to_server) {
            ExecuteInParse::AsIs => {
                needs = None;
                tail
            }
            ExecuteInParse::Failed => return Ok(true),
            ExecuteInParse::Rewritten(t, stmt) => {
                rewritten = t;
                needs = Some(stmt);
                &rewritten[..]
            }
        };
        if name.is_empty() {
            if needs.is_none() {
                return Ok(false);
            }
            sluice_proto::frontend::write_parse_tail("", tail, to_server);
            ex.sent(Pending::Parse {
                answer: super::exchange::Answer::Server,
                undo: Undo::Nothing,
            });
            return Ok(true);
        }
        let parsed = self.parse(pool, conn, name, tail, ex, to_server);
        if let (Some(dep), Some(stmt)) = (needs, self.get(name)) {
            let _ = stmt.needs.set(dep);
        }
        parsed.map(|()| true)
    }

    /// A Parse (`tail`: text, NUL, parameter types) whose text is `EXECUTE name …` of this
    /// client's statement: renamed, with the statement prepared ahead (answer swallowed) where
    /// the connection lacks it. An unknown name is left as it is: the server's 26000 then names
    /// it as the client wrote it, at the moment PostgreSQL would raise it.
    pub fn execute_in_parse(
        &mut self,
        pool: &PoolPrepared<'_>,
        conn: &mut ServerStatements,
        tail: &[u8],
        ex: &mut Exchange,
        to_server: &mut BytesMut,
    ) -> ExecuteInParse {
        if !candidate(tail) {
            return ExecuteInParse::AsIs;
        }
        let Some(end) = tail.iter().position(|&b| b == 0) else {
            return ExecuteInParse::AsIs;
        };
        let Some(SqlCommand::Execute { name, name_at }) = recognise(&tail[..end]) else {
            return ExecuteInParse::AsIs;
        };
        let Some(stmt) = self.get(&name).cloned() else {
            return ExecuteInParse::AsIs;
        };
        if conn.touch(stmt.id) {
            pool.counters
                .prepared_hits
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        } else if stmt.parse_form() {
            super::statements::prepare_on_server(
                pool,
                conn,
                &stmt,
                super::exchange::Answer::Swallow,
                None,
                ex,
                to_server,
            );
        } else {
            let err = ErrorResponse::error(
                sqlstate::FEATURE_NOT_SUPPORTED,
                "sluice cannot prepare a statement made by SQL PREPARE with a type list on another server connection through the extended protocol",
            )
            .hint("run it with EXECUTE in a simple query");
            ex.fail_locally(&err, to_server);
            return ExecuteInParse::Failed;
        }
        let server = server_name(stmt.id);
        let mut out = Vec::with_capacity(tail.len() + server.len());
        out.extend_from_slice(&tail[..name_at.start]);
        out.extend_from_slice(server.as_bytes());
        out.extend_from_slice(&tail[name_at.end..]);
        ExecuteInParse::Rewritten(out, stmt)
    }

    fn sql_without_server(
        &mut self,
        pool: &PoolPrepared<'_>,
        sql: &[u8],
        cmd: SqlCommand,
        ex: &mut Exchange,
        to_client: &mut BytesMut,
    ) -> SqlStep {
        let done = |tag: &str, to_client: &mut BytesMut| {
            backend::command_complete(tag, to_client);
            backend::ready_for_query(b'I', to_client);
            SqlStep::Done
        };
        match cmd {
            SqlCommand::Deallocate { name: None } => {
                self.clear();
                done("DEALLOCATE ALL", to_client)
            }
            SqlCommand::Deallocate { name: Some(n) } if self.get(&n).is_some() => {
                self.remove(&n);
                done("DEALLOCATE", to_client)
            }
            SqlCommand::Deallocate { name: Some(n) } | SqlCommand::Execute { name: n, .. }
                if self.get(&n).is_none() =>
            {
                ex.fail_request(true, &does_not_exist(&n), to_client);
                SqlStep::Done
            }
            SqlCommand::Prepare { name, .. } if self.get(&name).is_some() => {
                ex.fail_request(true, &already_exists(&name), to_client);
                SqlStep::Done
            }
            SqlCommand::Prepare {
                name, types, query, ..
            } => {
                let types = types.map(|t| &sql[t]);
                match pool.statements.validated_sql(&sql[query], types) {
                    Some(stmt) => {
                        pool.counters
                            .prepared_hits
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        self.insert(Bytes::copy_from_slice(&name), stmt);
                        done("PREPARE", to_client)
                    }
                    None => SqlStep::NeedsServer,
                }
            }
            _ => SqlStep::NeedsServer,
        }
    }
}

/// Makes sure of `stmt` on the server connection: if it lacks it, the SQL that prepares it
/// (after the eviction it needs) goes into `prefix` and `rw`. False when it cannot be prepared
/// with SQL (a Parse with a parameter type sluice cannot name): the error was raised.
fn on_server(
    pool: &PoolPrepared<'_>,
    conn: &mut ServerStatements,
    stmt: &Arc<Statement>,
    rw: &mut SqlRewrite,
    prefix: &mut String,
    ex: &mut Exchange,
    to_server: &mut BytesMut,
) -> bool {
    if conn.touch(stmt.id) {
        pool.counters
            .prepared_hits
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return true;
    }
    let Some(sql) = stmt.sql_prepare() else {
        let err = ErrorResponse::error(
            sqlstate::FEATURE_NOT_SUPPORTED,
            "sluice cannot prepare this statement with SQL on another server connection: a parameter type given by OID has no name sluice knows",
        )
        .hint("prepare it with SQL PREPARE and a type list, or run it through the extended protocol");
        fail(&err, ex, to_server);
        return false;
    };
    super::statements::count_miss(pool);
    if let Some(old) = conn.insert(stmt.id, pool.cap) {
        evict(pool, old, rw, prefix);
    }
    prefix.push_str(&sql);
    prefix.push_str(";\n");
    rw.steps.push((
        true,
        Undo::Parse {
            client: None,
            server: true,
            stmt: stmt.clone(),
        },
    ));
    true
}

fn evict(pool: &PoolPrepared<'_>, old: u64, rw: &mut SqlRewrite, prefix: &mut String) {
    pool.counters
        .prepared_evictions
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    prefix.push_str(&format!("DEALLOCATE {};\n", server_name(old)));
    rw.steps.push((true, Undo::evicted(old)));
}

/// Sends the client's text with the statement's server name in place of its own, after
/// `prefix`, booked with what its replies mean.
#[allow(clippy::too_many_arguments)]
fn send(
    sql: &[u8],
    client: &[u8],
    name_at: Range<usize>,
    stmt: &Statement,
    prefix: String,
    mut rw: SqlRewrite,
    ex: &mut Exchange,
    to_server: &mut BytesMut,
) {
    let server = server_name(stmt.id);
    write_message(to_server, b'Q', |b| {
        b.extend_from_slice(prefix.as_bytes());
        b.extend_from_slice(&sql[..name_at.start]);
        b.extend_from_slice(server.as_bytes());
        b.extend_from_slice(&sql[name_at.end..]);
        b.extend_from_slice(&[0]);
    });
    rw.fix = Fix::Rename {
        prefix: chars(prefix.as_bytes()),
        name_at: chars(&sql[..name_at.start]),
        client_len: chars(&sql[name_at]),
        server: server.to_string(),
        client: String::from_utf8_lossy(client).into_owned(),
    };
    ex.sent(Pending::Sql(Box::new(rw)));
}

/// sluice's own answer `tag` to a command whose effect (on the client's names) is done and
/// taken back by `undo` if the command fails. With nothing in flight it is answered in its turn
/// (the last ReadyForQuery's status is the transaction's: not failed, see `sql_command`).
/// Behind requests still in flight, one of them may yet fail the transaction, so a command
/// without visible effect stands in for it on the server (`DISCARD PLANS`: cached plans are
/// made again as needed): its CommandComplete becomes `tag`, or its 25P02 is the answer.
fn answer(tag: &'static str, undo: Undo, ex: &mut Exchange, to_server: &mut BytesMut) {
    if !ex.awaiting_reply() {
        ex.sent(Pending::LocalCommand(tag));
        return;
    }
    sluice_proto::frontend::write_query("DISCARD PLANS", to_server);
    ex.sent(Pending::Sql(Box::new(SqlRewrite {
        steps: vec![(false, undo)],
        next: 0,
        fix: Fix::Tag(tag),
    })));
}

/// Raises `err` in the client's turn through a query bound to fail, so the server aborts a
/// transaction as PostgreSQL would have; its error is replaced by `err`.
fn fail(err: &ErrorResponse, ex: &mut Exchange, to_server: &mut BytesMut) {
    let mut ours = BytesMut::new();
    err.write(&mut ours);
    // No statement is ever prepared on a server under this name (they are `sluice_<id>`).
    sluice_proto::frontend::write_query("EXECUTE \"sluice: failing on purpose\"", to_server);
    ex.sent(Pending::Sql(Box::new(SqlRewrite {
        fix: Fix::Replace(ours.freeze()),
        ..SqlRewrite::default()
    })));
}

/// 26000, PostgreSQL's error for a name the client has not prepared.
pub fn does_not_exist(name: &[u8]) -> ErrorResponse {
    ErrorResponse::error(
        sqlstate::INVALID_SQL_STATEMENT_NAME,
        format!(
            "prepared statement \"{}\" does not exist",
            String::from_utf8_lossy(name)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(fields: &[(u8, &str)]) -> Vec<u8> {
        let mut b = Vec::new();
        for (t, v) in fields {
            b.push(*t);
            b.extend_from_slice(v.as_bytes());
            b.push(0);
        }
        b.push(0);
        b
    }

    #[test]
    fn errors_get_the_clients_name_and_position_back() {
        // Client text: `EXECUTE q(nosuch)`, sent as `PREPARE …;\nEXECUTE sluice_12(nosuch)`.
        let body = error(&[
            (
                b'M',
                "wrong number of parameters for prepared statement \"sluice_12\"",
            ),
            (b'P', "40"),
        ]);
        let prefix = 20;
        let fixed = rename_error(&body, prefix, 8, 1, "\"sluice_12\"", "\"q\"").unwrap();
        let f = ErrorFields::decode(&fixed[5..]).unwrap();
        assert_eq!(
            f.message(),
            Some("wrong number of parameters for prepared statement \"q\"")
        );
        // 40 - 20 = 20 in `EXECUTE sluice_12(nosuch)`; the name is 8 characters longer.
        assert_eq!(f.get_str(b'P'), Some("12"));
        let in_prefix = rename_error(
            &error(&[(b'M', "x"), (b'P', "3")]),
            prefix,
            8,
            1,
            "\"sluice_12\"",
            "\"q\"",
        )
        .unwrap();
        assert_eq!(
            ErrorFields::decode(&in_prefix[5..]).unwrap().get(b'P'),
            None
        );
    }
}

#[cfg(test)]
mod flow_tests {
    use super::*;
    use crate::metrics::PoolCounters;
    use crate::prepared::PoolStatements;
    use sluice_proto::backend::BackendTag;
    use sluice_proto::split_message;

    fn on(conn: &mut ServerStatements) -> OnServer<'_> {
        OnServer {
            conn,
            failed_tx: false,
        }
    }

    fn queries(buf: &BytesMut) -> Vec<String> {
        let mut b = buf.clone();
        let mut out = Vec::new();
        while let Ok(Some(m)) = split_message(&mut b, usize::MAX) {
            out.push(String::from_utf8_lossy(&m.body[..m.body.len() - 1]).into_owned());
        }
        out
    }

    /// EXECUTE on a connection at `max_prepared_statements` that lacks the statement: the least
    /// recently used one is deallocated and the statement prepared ahead, in the same Query;
    /// only the client's own answers get through.
    #[test]
    fn execute_prepares_ahead_and_evicts_in_the_same_query() {
        let statements = PoolStatements::new(Arc::new(crate::memory::ByteBudget::new(1 << 20)));
        let counters = PoolCounters::default();
        let pool = PoolPrepared {
            statements: &statements,
            counters: &counters,
            cap: 1,
        };
        let mut c = ClientStatements::default();
        let mut first = ServerStatements::default();
        let mut ex = Exchange::default();
        let (mut to_server, mut to_client) = (BytesMut::new(), BytesMut::new());

        for (sql, evicts) in [
            (&b"PREPARE a AS SELECT 1\0"[..], false),
            (b"PREPARE b (int) AS SELECT $1\0", true),
        ] {
            c.sql_command(
                &pool,
                Some(on(&mut first)),
                sql,
                &mut ex,
                &mut to_server,
                &mut to_client,
            );
            if evicts {
                assert_eq!(
                    ex.on_reply(BackendTag::CommandComplete, b"DEALLOCATE\0", drop),
                    Verdict::Drop
                );
            }
            assert_eq!(
                ex.on_reply(BackendTag::CommandComplete, b"PREPARE\0", drop),
                Verdict::Forward
            );
            ex.on_reply(BackendTag::ReadyForQuery, b"I", drop);
        }
        assert_eq!(
            queries(&to_server),
            [
                "PREPARE sluice_1 AS SELECT 1",
                "DEALLOCATE sluice_1;\nPREPARE sluice_2 (int) AS SELECT $1"
            ]
        );
        // `a` on a connection that holds `b`: `b` goes, `a` is prepared ahead.
        let mut second = ServerStatements::default();
        second.insert(2, 1);
        to_server.clear();
        c.sql_command(
            &pool,
            Some(on(&mut second)),
            b"EXECUTE a\0",
            &mut ex,
            &mut to_server,
            &mut to_client,
        );
        assert_eq!(
            queries(&to_server),
            ["DEALLOCATE sluice_2;\nPREPARE sluice_1 AS SELECT 1\n;\nEXECUTE sluice_1"]
        );
        let complete =
            |ex: &mut Exchange, tag: &[u8]| ex.on_reply(BackendTag::CommandComplete, tag, drop);
        assert_eq!(complete(&mut ex, b"DEALLOCATE\0"), Verdict::Drop);
        assert_eq!(complete(&mut ex, b"PREPARE\0"), Verdict::Drop);
        assert_eq!(complete(&mut ex, b"SELECT 1\0"), Verdict::Forward);
        assert!(second.touch(1) && !second.touch(2));
        // The PREPARE ahead fails: the connection does not have it after all.
        let mut third = ServerStatements::default();
        let mut ex = Exchange::default();
        c.sql_command(
            &pool,
            Some(on(&mut third)),
            b"EXECUTE a\0",
            &mut ex,
            &mut to_server,
            &mut to_client,
        );
        let err = b"SERROR\0C42P01\0Mrelation does not exist\0\0";
        let v = ex.on_reply(BackendTag::ErrorResponse, err, |u| {
            c.undo(u, Some(&mut third))
        });
        assert!(matches!(v, Verdict::Replace(_)));
        assert!(!third.touch(1));
        assert!(c.get(b"a").is_some(), "the client's name stays");
    }
}
