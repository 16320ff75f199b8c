//! One session's view of its statements for the query statistics: which fingerprint each
//! request runs, what the server answered, and, at each ReadyForQuery, one [`Sample`] per
//! statement into the process-wide [`QueryStats`]. No I/O and no clock: the session passes the
//! durations it already measured (`clients::SessionStats`).
//!
//! # What is one statement
//! A simple Query (its whole text, even with several statements in it), or an Execute of the
//! extended protocol (the fingerprint of the statement its portal was bound to). A request's
//! time runs from when it went to the server (or from the previous ReadyForQuery, when it was
//! pipelined behind another) to its ReadyForQuery; the Executes of one batch share their
//! batch's time evenly. An error counts against the Execute it stopped (a failed Parse or Bind
//! against the Execute that followed); Executes the server skipped after it are not counted.
//! The time a client waited for its server connection goes to the statement that waited; the
//! time a transaction held the server goes to the first statement of the transaction that is not
//! transaction control (`BEGIN` itself says little).
//!
//! # Fingerprints
//! Computed once per prepared statement (at the client's Parse, kept by name) and, for simple
//! queries, looked up in a small per-session cache before anything is lexed, by the text's shape
//! (`fingerprint_id::shape`: the text with its numbers left out, so pgbench's new number in
//! every statement still hits) or, for a text with a quoted identifier, by its whole text. A
//! text not in it gets its identity alone (`fingerprint_id::id`, one pass, no allocation), and
//! the text of the fingerprint is only built when the session meets a new identity.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use sluice_proto::backend::BackendTag;
use sluice_proto::frontend::FrontendTag;
use sluice_proto::{Header, split_cstr, split_sql};

use super::fingerprint::{self, Fingerprint};
use super::fingerprint_id;
use super::pending::Pending;
use super::query_stats::{QueryStats, Sample, Scope};

/// Slots of each per-session cache (text hash, and fingerprint identity).
const CACHE: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Query,
    Execute,
    /// A Sync or a FunctionCall: what a ReadyForQuery ends.
    Boundary,
}

struct Item {
    kind: Kind,
    fp: Option<Arc<Fingerprint>>,
    rows: u64,
    error: Option<[u8; 2]>,
    /// Skipped by the server after an earlier error of its batch.
    skipped: bool,
    /// The Query or Bind message, kept for the slow-statement log with `log_parameters`.
    params: Option<Bytes>,
}

/// What a session's tracker is made from, taken at login (the settings in force then). A session
/// keeps only this until its first statement: a client that logs in and waits costs these few
/// bytes instead of a whole [`QueryTracker`] (every byte of an idle client is multiplied by
/// `max_client_conn`; bench/README.md, "Idle client memory").
pub struct TrackerSeed {
    pub store: Arc<QueryStats>,
    /// Shared by the sessions of a pool.
    pub scope: Arc<Scope>,
    pub settings: TrackerSettings,
}

impl TrackerSeed {
    pub fn tracker(&self) -> QueryTracker {
        QueryTracker::new(self.store.clone(), self.scope.clone(), self.settings)
    }
}

/// A statement over `log_min_duration`, for the session to log.
#[derive(Debug)]
pub struct Slow {
    pub fingerprint: Arc<Fingerprint>,
    pub elapsed_us: u64,
    pub wait_us: u64,
    /// The statement as sent (a Query's text, a Bind's text-format parameters), only with
    /// `log_parameters`.
    pub parameters: Option<String>,
}

/// What the session asks of the tracker (from the config, at session start).
#[derive(Debug, Clone, Copy, Default)]
pub struct TrackerSettings {
    /// Statements at least this long are returned by [`QueryTracker::ready`]; 0: none.
    pub log_min_duration_us: u64,
    pub log_parameters: bool,
}

pub struct QueryTracker {
    store: Arc<QueryStats>,
    scope: Arc<Scope>,
    settings: TrackerSettings,
    by_text: [Option<(u64, Arc<Fingerprint>)>; CACHE],
    by_id: [Option<Arc<Fingerprint>>; CACHE],
    unnamed_statement: Option<Arc<Fingerprint>>,
    statements: HashMap<Box<[u8]>, Arc<Fingerprint>>,
    unnamed_portal: Option<Bound>,
    portals: HashMap<Box<[u8]>, Bound>,
    items: VecDeque<Item>,
    /// The item the server is answering now (index into `items`).
    cursor: usize,
    /// Wait before the next statement (µs).
    wait_us: u64,
    /// The open transaction's statement that is credited with its held time.
    tx_owner: Option<Arc<Fingerprint>>,
    /// The identity [`QueryTracker::sent`] last returned.
    published: u64,
    /// Counts not yet merged into `store` (registered with it at the first statement).
    pending: Option<Arc<Pending>>,
}

type Bound = (Arc<Fingerprint>, Option<Bytes>);

impl QueryTracker {
    pub fn new(
        store: Arc<QueryStats>,
        scope: Arc<Scope>,
        settings: TrackerSettings,
    ) -> QueryTracker {
        QueryTracker {
            store,
            scope,
            settings,
            by_text: Default::default(),
            by_id: Default::default(),
            unnamed_statement: None,
            statements: HashMap::new(),
            unnamed_portal: None,
            portals: HashMap::new(),
            items: VecDeque::new(),
            cursor: 0,
            wait_us: 0,
            tx_owner: None,
            published: 0,
            pending: None,
        }
    }

    /// The fingerprint of `sql`, through the caches.
    pub fn fingerprint(&mut self, sql: &[u8]) -> Arc<Fingerprint> {
        // By shape (numbers do not count) where the text has one, else by the whole text.
        let h = fingerprint_id::shape(sql).unwrap_or_else(|| text_hash(sql) ^ 0x5bd1_e995);
        let slot = h as usize % CACHE;
        if let Some((k, fp)) = &self.by_text[slot] {
            if *k == h {
                return fp.clone();
            }
        }
        let id = fingerprint::id(sql);
        let id_slot = (id >> 7) as usize % CACHE;
        let fp = match &self.by_id[id_slot] {
            Some(fp) if fp.id == id => fp.clone(),
            _ => {
                let fp = Arc::new(Fingerprint::of(sql));
                self.by_id[id_slot] = Some(fp.clone());
                fp
            }
        };
        self.by_text[slot] = Some((h, fp.clone()));
        fp
    }

    /// Every whole client message, before it is answered locally or sent (a message may be seen
    /// twice when the session puts it back to route it again: this is idempotent).
    pub fn client_message(&mut self, tag: FrontendTag, msg: &Bytes) {
        let body = &msg[Header::LEN..];
        match tag {
            FrontendTag::Parse => {
                let Some((name, rest)) = split_cstr(body) else {
                    return;
                };
                let Some((sql, _)) = split_cstr(rest) else {
                    return;
                };
                let fp = self.fingerprint(sql);
                if name.is_empty() {
                    self.unnamed_statement = Some(fp);
                } else {
                    self.statements.insert(name.into(), fp);
                }
            }
            FrontendTag::Bind => {
                let Some((portal, rest)) = split_cstr(body) else {
                    return;
                };
                let Some((name, _)) = split_cstr(rest) else {
                    return;
                };
                let fp = if name.is_empty() {
                    self.unnamed_statement.clone()
                } else {
                    self.statements.get(name).cloned()
                };
                let Some(fp) = fp else {
                    return;
                };
                let params = self.settings.log_parameters.then(|| msg.clone());
                if portal.is_empty() {
                    self.unnamed_portal = Some((fp, params));
                } else {
                    self.portals.insert(portal.into(), (fp, params));
                }
            }
            FrontendTag::Close => {
                let Some((&kind, rest)) = body.split_first() else {
                    return;
                };
                let Some((name, _)) = split_cstr(rest) else {
                    return;
                };
                match (kind, name.is_empty()) {
                    (b'S', true) => self.unnamed_statement = None,
                    (b'S', false) => drop(self.statements.remove(name)),
                    (_, true) => self.unnamed_portal = None,
                    (_, false) => drop(self.portals.remove(name)),
                }
            }
            _ => {}
        }
    }

    /// `DEALLOCATE ALL` / `DISCARD ALL` went through: the names are gone.
    pub fn forget_names(&mut self) {
        self.statements.clear();
        self.portals.clear();
        self.unnamed_statement = None;
        self.unnamed_portal = None;
    }

    /// A message went to the server. Returns the fingerprint of the statement it runs when it
    /// differs from the one returned last (the client's current statement changed).
    pub fn sent(&mut self, tag: FrontendTag, msg: &Bytes) -> Option<Arc<Fingerprint>> {
        let (kind, fp, params) = match tag {
            FrontendTag::Query => {
                let params = self.settings.log_parameters.then(|| msg.clone());
                (Kind::Query, Some(self.fingerprint(query_text(msg))), params)
            }
            FrontendTag::Execute => {
                let portal = split_cstr(&msg[Header::LEN..]).map_or(&[][..], |(s, _)| s);
                let bound = if portal.is_empty() {
                    self.unnamed_portal.as_ref()
                } else {
                    self.portals.get(portal)
                };
                let (fp, params) = bound.cloned().unzip();
                (Kind::Execute, fp, params.flatten())
            }
            FrontendTag::Sync | FrontendTag::FunctionCall => (Kind::Boundary, None, None),
            _ => return None,
        };
        // A client that pipelines without reading is bounded by the relay's backpressure; this
        // queue holds one small entry per request it has in flight.
        self.items.push_back(Item {
            kind,
            fp: fp.clone(),
            rows: 0,
            error: None,
            skipped: false,
            params,
        });
        let fp = fp.filter(|f| f.id != self.published)?;
        self.published = fp.id;
        Some(fp)
    }

    /// The client waited `us` for a server connection before its next statement.
    pub fn waited(&mut self, us: u64) {
        self.wait_us += us;
    }

    /// A reply from the server (not one to sluice's own requests).
    pub fn reply(&mut self, tag: BackendTag, body: &[u8]) {
        let Some(item) = self.items.get_mut(self.cursor) else {
            return;
        };
        match tag {
            BackendTag::CommandComplete | BackendTag::EmptyQueryResponse => {
                item.rows += rows_of(body);
                if item.kind == Kind::Execute {
                    self.cursor += 1;
                }
            }
            BackendTag::PortalSuspended if item.kind == Kind::Execute => self.cursor += 1,
            BackendTag::ErrorResponse => {
                let class = error_class(body);
                match item.kind {
                    Kind::Query => item.error = Some(class),
                    Kind::Execute => {
                        item.error = Some(class);
                        self.cursor += 1;
                        while let Some(next) = self.items.get_mut(self.cursor) {
                            if next.kind == Kind::Boundary {
                                break;
                            }
                            next.skipped = true;
                            self.cursor += 1;
                        }
                    }
                    Kind::Boundary => {}
                }
            }
            _ => {}
        }
    }

    /// ReadyForQuery: the request at the front ended after `elapsed_us`; `xact_us` is set when a
    /// transaction ended with it (how long it held the server). Records the statements and
    /// returns those over `log_min_duration`.
    pub fn ready(&mut self, elapsed_us: u64, xact_us: Option<u64>, slow: &mut Vec<Slow>) {
        let end = self
            .items
            .iter()
            .position(|i| i.kind != Kind::Execute)
            .map_or(self.items.len(), |p| p + 1);
        let calls = self
            .items
            .iter()
            .take(end)
            .filter(|i| i.kind != Kind::Boundary && !i.skipped && i.fp.is_some())
            .count() as u64;
        let each = elapsed_us.checked_div(calls).unwrap_or(0);
        let pending = self
            .pending
            .get_or_insert_with(|| self.store.register(Scope::clone(&self.scope)));
        let mut deltas = pending.lock();
        for item in self.items.drain(..end) {
            let Some(fp) = item.fp.filter(|_| !item.skipped) else {
                continue;
            };
            let wait_us = std::mem::take(&mut self.wait_us);
            let sample = Sample {
                elapsed_us: each,
                rows: item.rows,
                error: item.error,
                wait_us,
            };
            if !deltas.record(&fp, &sample) {
                self.store.merge(&pending.scope, &mut deltas);
                deltas.record(&fp, &sample);
            }
            let min = self.settings.log_min_duration_us;
            if min > 0 && each >= min {
                slow.push(Slow {
                    fingerprint: fp.clone(),
                    elapsed_us: each,
                    wait_us,
                    parameters: item.params.as_ref().map(|m| describe_params(item.kind, m)),
                });
            }
            match &self.tx_owner {
                Some(owner) if !owner.tx_control => {}
                _ => self.tx_owner = Some(fp),
            }
        }
        self.cursor = self.cursor.saturating_sub(end);
        if let Some(us) = xact_us {
            if let Some(owner) = self.tx_owner.take() {
                if !deltas.held(&owner, us) {
                    self.store.merge(&pending.scope, &mut deltas);
                    deltas.held(&owner, us);
                }
            }
        }
    }

    /// The server connection is gone, or the unit runs again elsewhere: nothing is owed.
    pub fn forget(&mut self) {
        self.items.clear();
        self.cursor = 0;
        self.tx_owner = None;
    }
}

impl Drop for QueryTracker {
    /// The session ended: its pending counts go to the store.
    fn drop(&mut self) {
        if let Some(p) = &self.pending {
            self.store.merge(&p.scope, &mut p.lock());
        }
    }
}

/// A Query's text: up to its first NUL (found with memchr, `sluice_proto::split_sql`).
fn query_text(msg: &[u8]) -> &[u8] {
    split_sql(&msg[Header::LEN..]).map_or(&[][..], |(s, _)| s)
}

fn text_hash(b: &[u8]) -> u64 {
    // FNV-1a over 8-byte words: the text of a simple query is hashed on every call.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ b.len() as u64;
    let mut chunks = b.chunks_exact(8);
    for c in chunks.by_ref() {
        let w = u64::from_le_bytes(c.try_into().expect("8 bytes"));
        h = (h ^ w).wrapping_mul(0x0100_0000_01b3).rotate_left(23);
    }
    for &c in chunks.remainder() {
        h = (h ^ c as u64).wrapping_mul(0x0100_0000_01b3);
    }
    h ^ (h >> 29)
}

/// Rows a CommandComplete tag reports (`SELECT 5`, `INSERT 0 3`, `UPDATE 2`…); 0 for others.
fn rows_of(body: &[u8]) -> u64 {
    let tag = body.strip_suffix(&[0]).unwrap_or(body);
    let Some(sp) = tag.iter().rposition(|&b| b == b' ') else {
        return 0;
    };
    let n = &tag[sp + 1..];
    if n.is_empty() || !n.iter().all(u8::is_ascii_digit) || n.len() > 19 {
        return 0;
    }
    n.iter().fold(0u64, |a, &d| a * 10 + (d - b'0') as u64)
}

fn error_class(body: &[u8]) -> [u8; 2] {
    let code = sluice_proto::backend_view::ErrorFields::decode(body)
        .ok()
        .and_then(|f| f.code())
        .unwrap_or("XX000");
    match code.as_bytes() {
        [a, b, ..] => [*a, *b],
        _ => *b"XX",
    }
}

/// The statement as sent, for the slow log with `log_parameters`: a Query's text, a Bind's
/// text-format parameter values (binary ones as their length).
fn describe_params(kind: Kind, msg: &Bytes) -> String {
    const CAP: usize = 1024;
    let body = &msg[Header::LEN..];
    let mut out = String::new();
    if kind == Kind::Query {
        let sql = split_cstr(body).map_or(body, |(s, _)| s);
        out.push_str(&String::from_utf8_lossy(&sql[..sql.len().min(CAP)]));
        return out;
    }
    let _ = (|| -> Option<()> {
        let (_, rest) = split_cstr(body)?;
        let (_, mut rest) = split_cstr(rest)?;
        let u16_at =
            |b: &[u8]| -> Option<u16> { Some(u16::from_be_bytes([*b.first()?, *b.get(1)?])) };
        let nfmt = u16_at(rest)? as usize;
        let fmts: Vec<u16> = (0..nfmt)
            .map(|i| u16_at(&rest[2 + 2 * i..]))
            .collect::<Option<_>>()?;
        rest = rest.get(2 + 2 * nfmt..)?;
        let n = u16_at(rest)? as usize;
        rest = &rest[2..];
        for i in 0..n {
            let len = i32::from_be_bytes(rest.get(..4)?.try_into().ok()?);
            rest = &rest[4..];
            let binary = match fmts.len() {
                0 => false,
                1 => fmts[0] == 1,
                _ => fmts.get(i).copied() == Some(1),
            };
            if i > 0 {
                out.push_str(", ");
            }
            out.push_str(&format!("${} = ", i + 1));
            if len < 0 {
                out.push_str("NULL");
                continue;
            }
            let v = rest.get(..len as usize)?;
            rest = &rest[len as usize..];
            if binary {
                out.push_str(&format!("<{len} bytes binary>"));
            } else {
                let v = String::from_utf8_lossy(&v[..v.len().min(CAP)]);
                out.push('\'');
                out.push_str(&v.replace('\'', "''"));
                out.push('\'');
            }
            if out.len() > CAP {
                break;
            }
        }
        Some(())
    })();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use sluice_proto::backend;

    fn tracker(store: &Arc<QueryStats>) -> QueryTracker {
        QueryTracker::new(
            store.clone(),
            Arc::new(Scope::new("db", "u")),
            TrackerSettings {
                log_min_duration_us: 1000,
                log_parameters: false,
            },
        )
    }

    fn msg(tag: u8, body: &[u8]) -> Bytes {
        let mut b = BytesMut::new();
        b.extend_from_slice(&[tag]);
        b.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        b.extend_from_slice(body);
        b.freeze()
    }

    fn query(sql: &str) -> Bytes {
        msg(b'Q', format!("{sql}\0").as_bytes())
    }

    fn complete(tag: &str) -> Vec<u8> {
        format!("{tag}\0").into_bytes()
    }

    fn error(code: &str) -> Vec<u8> {
        let mut b = BytesMut::new();
        backend::ErrorResponse::error(code, "boom").write(&mut b);
        b[Header::LEN..].to_vec()
    }

    #[test]
    fn simple_queries_share_an_entry_and_count_rows_errors_and_time() {
        let store = Arc::new(QueryStats::new(100));
        let mut t = tracker(&store);
        let mut slow = Vec::new();
        for i in 0..10 {
            t.waited(if i == 0 { 300 } else { 0 });
            t.sent(
                FrontendTag::Query,
                &query(&format!("SELECT * FROM t WHERE id = {i}")),
            );
            if i == 9 {
                t.reply(BackendTag::ErrorResponse, &error("42P01"));
            } else {
                t.reply(BackendTag::CommandComplete, &complete("SELECT 2"));
            }
            t.ready(100 * (i + 1), Some(100 * (i + 1)), &mut slow);
        }
        let snap = store.snapshot();
        assert_eq!(snap.len(), 1);
        let e = &snap[0];
        assert_eq!(&*e.fingerprint.text, "SELECT * FROM t WHERE id = ?");
        assert_eq!(
            (e.calls, e.rows, e.total_us, e.wait_us),
            (10, 18, 5500, 300)
        );
        assert_eq!((e.held_us, e.errors_text().as_str()), (5500, "42:1"));
        assert_eq!(slow.len(), 1, "only the 1000 µs one is slow");
        assert!(slow[0].parameters.is_none());
    }

    #[test]
    fn extended_batches_split_time_and_skip_after_an_error() {
        let store = Arc::new(QueryStats::new(100));
        let mut t = tracker(&store);
        let mut slow = Vec::new();
        let parse = |name: &str, sql: &str| msg(b'P', format!("{name}\0{sql}\0\0\0").as_bytes());
        let bind = |portal: &str, name: &str| {
            msg(b'B', format!("{portal}\0{name}\0\0\0\0\0\0\0").as_bytes())
        };
        let exec = |portal: &str| msg(b'E', format!("{portal}\0\0\0\0\0").as_bytes());
        let sync = msg(b'S', b"");
        // Two statements in one batch.
        for m in [parse("a", "SELECT $1"), parse("b", "UPDATE t SET x = $1")] {
            t.client_message(FrontendTag::Parse, &m);
        }
        for (m, tag) in [
            (bind("", "a"), FrontendTag::Bind),
            (exec(""), FrontendTag::Execute),
            (bind("", "b"), FrontendTag::Bind),
            (exec(""), FrontendTag::Execute),
            (sync.clone(), FrontendTag::Sync),
        ] {
            t.client_message(tag, &m);
            t.sent(tag, &m);
        }
        t.reply(BackendTag::CommandComplete, &complete("SELECT 1"));
        t.reply(BackendTag::CommandComplete, &complete("UPDATE 3"));
        t.ready(800, Some(800), &mut slow);
        // An error in the first Execute: the second is skipped.
        for (m, tag) in [
            (bind("", "b"), FrontendTag::Bind),
            (exec(""), FrontendTag::Execute),
            (bind("", "a"), FrontendTag::Bind),
            (exec(""), FrontendTag::Execute),
            (sync, FrontendTag::Sync),
        ] {
            t.client_message(tag, &m);
            t.sent(tag, &m);
        }
        t.reply(BackendTag::ErrorResponse, &error("23505"));
        t.ready(100, Some(100), &mut slow);
        let snap = store.snapshot();
        let get = |text: &str| snap.iter().find(|e| &*e.fingerprint.text == text).unwrap();
        let sel = get("SELECT ?");
        let upd = get("UPDATE t SET x = ?");
        assert_eq!((sel.calls, sel.rows, sel.total_us), (1, 1, 400));
        assert_eq!((upd.calls, upd.rows, upd.total_us), (2, 3, 500));
        assert_eq!(upd.errors_text(), "23:1");
        // The first transaction's held time goes to its first statement, the second's too.
        assert_eq!((sel.held_us, upd.held_us), (800, 100));
    }

    #[test]
    fn transaction_time_goes_past_begin() {
        let store = Arc::new(QueryStats::new(100));
        let mut t = tracker(&store);
        let mut slow = Vec::new();
        for (sql, end) in [("BEGIN", None), ("SELECT 1", None), ("COMMIT", Some(5000))] {
            t.sent(FrontendTag::Query, &query(sql));
            t.reply(BackendTag::CommandComplete, &complete("X"));
            t.ready(10, end, &mut slow);
        }
        let snap = store.snapshot();
        let sel = snap
            .iter()
            .find(|e| &*e.fingerprint.text == "SELECT ?")
            .unwrap();
        assert_eq!(sel.held_us, 5000);
    }

    #[test]
    fn parameters_only_when_asked() {
        let store = Arc::new(QueryStats::new(100));
        let mut t = QueryTracker::new(
            store,
            Arc::new(Scope::new("db", "u")),
            TrackerSettings {
                log_min_duration_us: 1,
                log_parameters: true,
            },
        );
        let mut slow = Vec::new();
        t.sent(FrontendTag::Query, &query("SELECT 'secret'"));
        t.reply(BackendTag::CommandComplete, &complete("SELECT 1"));
        t.ready(10, Some(10), &mut slow);
        let p = slow[0].parameters.as_deref().unwrap();
        assert_eq!(p, "SELECT 'secret'");
        assert_eq!(&*slow[0].fingerprint.text, "SELECT ?");
        let bind = msg(b'B', b"\0s\0\0\0\0\x02\0\0\0\x02hi\xff\xff\xff\xff\0\0");
        assert_eq!(
            describe_params(Kind::Execute, &bind),
            "$1 = 'hi', $2 = NULL"
        );
    }

    #[test]
    fn query_text_stops_at_the_first_nul() {
        assert_eq!(query_text(&query("SELECT 1")), b"SELECT 1");
        assert_eq!(query_text(&msg(b'Q', b"SELECT 1\0junk\0")), b"SELECT 1");
        assert_eq!(query_text(&msg(b'Q', b"SELECT 1")), b"");
        assert_eq!(query_text(&msg(b'Q', b"")), b"");
    }

    #[test]
    fn rows_from_tags() {
        assert_eq!(rows_of(b"SELECT 5\0"), 5);
        assert_eq!(rows_of(b"INSERT 0 3\0"), 3);
        assert_eq!(rows_of(b"CREATE TABLE\0"), 0);
        assert_eq!(rows_of(b"BEGIN\0"), 0);
    }
}
