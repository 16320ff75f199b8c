//! Prepared statements that survive transaction pooling.
//!
//! A client's named statement maps to a pool-wide [`Statement`]: one per distinct Parse (query text
//! plus parameter types, byte for byte). On a server connection it lives under sluice's name for
//! it, `sluice_<id>`, prepared the first time that connection needs it: the Parse goes out in the
//! same write as the Bind or Describe that needs it. Each server connection keeps at most
//! `max_prepared_statements` of them; the least recently used is closed to make room.
//!
//! Two clients preparing the same SQL under any names share one server-side statement; two clients
//! using one name for different SQL get different statements.
//!
//! Texts are bounded: a statement leaves its pool's registry as soon as no client holds it (the
//! server connections keep only its id and name), and the texts of all registries together stay
//! under `max_prepared_statement_bytes` (a Parse past it fails with 53200).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

use bytes::{Bytes, BytesMut};
use sluice_proto::frontend::write_parse_tail;
use sluice_proto::split_cstr;

use crate::memory::ByteBudget;

/// One distinct statement, shared by every client of a pool that prepares it. Server
/// connections know it only by id: the text lives as long as some client's name (or a request
/// under way) holds it, and leaves the registry the moment the last one lets go.
#[derive(Debug)]
pub struct Statement {
    pub id: u64,
    /// The Parse body after the statement name: query text, NUL, parameter type count and OIDs.
    pub tail: Bytes,
    /// A server accepted this Parse once: later Parses of it can be answered without a server.
    pub validated: AtomicBool,
    /// Where it may run (read/write splitting), worked out on first use.
    pub class: OnceLock<crate::router::Classification>,
    /// A SQL `PREPARE name (types) AS …`: where its type list starts in `tail` (after the Parse
    /// part and a 0xFF marker). Such a statement is prepared on servers with SQL only: a Parse
    /// cannot name types.
    types_at: Option<usize>,
    /// For a Parse of SQL `EXECUTE` (its text names `sluice_<id>`): the statement it runs,
    /// prepared ahead of it on a server connection that lacks it.
    pub needs: OnceLock<Arc<Statement>>,
    registry: Arc<Registry>,
}

impl Statement {
    /// The query text (without its NUL).
    pub fn query(&self) -> &[u8] {
        split_cstr(&self.tail).map_or(&self.tail[..], |(query, _)| query)
    }

    /// Writes `Parse` for this statement under its server-side name. Not for a statement made
    /// by SQL `PREPARE` with a type list ([`Statement::parse_form`] is false).
    pub fn write_parse(&self, out: &mut BytesMut) {
        write_parse_tail(&server_name(self.id), &self.tail, out);
    }

    /// The statement can be prepared with a Parse (it was made by one, or by SQL `PREPARE`
    /// without a type list).
    pub fn parse_form(&self) -> bool {
        self.types_at.is_none()
    }

    /// The SQL that prepares this statement under its server-side name, ending in a newline (the
    /// text may end in a `--` comment). None for a Parse with a parameter type sluice cannot
    /// name in SQL (see [`sql_type_name`]).
    pub fn sql_prepare(&self) -> Option<String> {
        let query = String::from_utf8_lossy(self.query());
        let types = match self.types_at {
            Some(at) => Some(String::from_utf8_lossy(&self.tail[at..]).into_owned()),
            None => {
                let oids = &self.tail[self.query().len() + 1..];
                let n = u16::from_be_bytes([*oids.first()?, *oids.get(1)?]) as usize;
                let mut names = Vec::with_capacity(n);
                for i in 0..n {
                    let o = oids.get(2 + 4 * i..6 + 4 * i)?;
                    names.push(sql_type_name(u32::from_be_bytes([o[0], o[1], o[2], o[3]]))?);
                }
                (n > 0).then(|| names.join(", "))
            }
        };
        let name = server_name(self.id);
        Some(match types {
            Some(t) => format!("PREPARE {name} ({t}) AS {query}\n"),
            None => format!("PREPARE {name} AS {query}\n"),
        })
    }
}

/// The SQL name of a built-in type by OID, for a Parse's parameter types in SQL `PREPARE`;
/// `unknown` (OID 0 too) lets the server infer the type, as a Parse with OID 0 does.
pub fn sql_type_name(oid: u32) -> Option<&'static str> {
    Some(match oid {
        0 | 705 => "unknown",
        16 => "pg_catalog.bool",
        17 => "pg_catalog.bytea",
        19 => "pg_catalog.name",
        20 => "pg_catalog.int8",
        21 => "pg_catalog.int2",
        23 => "pg_catalog.int4",
        25 => "pg_catalog.text",
        26 => "pg_catalog.oid",
        114 => "pg_catalog.json",
        142 => "pg_catalog.xml",
        700 => "pg_catalog.float4",
        701 => "pg_catalog.float8",
        1042 => "pg_catalog.bpchar",
        1043 => "pg_catalog.varchar",
        1082 => "pg_catalog.date",
        1083 => "pg_catalog.time",
        1114 => "pg_catalog.timestamp",
        1184 => "pg_catalog.timestamptz",
        1186 => "pg_catalog.interval",
        1266 => "pg_catalog.timetz",
        1700 => "pg_catalog.numeric",
        2950 => "pg_catalog.uuid",
        3802 => "pg_catalog.jsonb",
        869 => "pg_catalog.inet",
        650 => "pg_catalog.cidr",
        1000 => "pg_catalog.bool[]",
        1001 => "pg_catalog.bytea[]",
        1005 => "pg_catalog.int2[]",
        1007 => "pg_catalog.int4[]",
        1009 => "pg_catalog.text[]",
        1015 => "pg_catalog.varchar[]",
        1016 => "pg_catalog.int8[]",
        1021 => "pg_catalog.float4[]",
        1022 => "pg_catalog.float8[]",
        1115 => "pg_catalog.timestamp[]",
        1182 => "pg_catalog.date[]",
        1185 => "pg_catalog.timestamptz[]",
        1231 => "pg_catalog.numeric[]",
        2951 => "pg_catalog.uuid[]",
        3807 => "pg_catalog.jsonb[]",
        _ => return None,
    })
}

impl Drop for Statement {
    /// The last holder let go: the text leaves the registry and its bytes the budget.
    fn drop(&mut self) {
        self.registry.forget(&self.tail);
        self.registry.budget.give(self.tail.len());
    }
}

/// The name a statement has on server connections, `sluice_<id>`.
pub fn server_name(id: u64) -> ServerSideName {
    ServerSideName::new(id)
}

/// `sluice_<id>` on the stack: every Bind of a named statement writes one, and formatting it
/// into a `String` cost more than the rest of the Bind's rewrite.
#[derive(Clone, Copy)]
pub struct ServerSideName {
    buf: [u8; ServerSideName::CAP],
    len: u8,
}

impl ServerSideName {
    const PREFIX: &'static [u8] = b"sluice_";
    /// The prefix and the 20 digits of `u64::MAX`.
    const CAP: usize = 7 + 20;

    fn new(mut id: u64) -> Self {
        let mut digits = [0u8; 20];
        let mut n = 0;
        loop {
            digits[19 - n] = b'0' + (id % 10) as u8;
            n += 1;
            id /= 10;
            if id == 0 {
                break;
            }
        }
        let mut buf = [0u8; Self::CAP];
        buf[..Self::PREFIX.len()].copy_from_slice(Self::PREFIX);
        buf[Self::PREFIX.len()..Self::PREFIX.len() + n].copy_from_slice(&digits[20 - n..]);
        ServerSideName {
            buf,
            len: (Self::PREFIX.len() + n) as u8,
        }
    }

    /// The name's bytes, without the UTF-8 check `Deref` to `str` makes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }
}

impl std::ops::Deref for ServerSideName {
    type Target = str;
    fn deref(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).expect("ASCII")
    }
}

impl std::fmt::Display for ServerSideName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self)
    }
}

impl std::fmt::Debug for ServerSideName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self, f)
    }
}

/// Hashes the statement ids a server connection keys its statements by. They are sluice's own
/// counters, never chosen by a client, so a multiply spreads them well enough and costs a
/// fraction of the default SipHash on every Bind.
#[derive(Default, Clone, Copy)]
pub struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type IdMap<V> = HashMap<u64, V, std::hash::BuildHasherDefault<IdHasher>>;

/// Parse tail → statement. The key shares the statement's bytes.
#[derive(Debug)]
struct Registry {
    map: Mutex<HashMap<Bytes, Weak<Statement>>>,
    /// Every pool's statement texts count against this (`max_prepared_statement_bytes`).
    budget: Arc<ByteBudget>,
}

impl Registry {
    fn map(&self) -> MutexGuard<'_, HashMap<Bytes, Weak<Statement>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Drops the entry for `tail` unless a newer statement with the same text took its place.
    /// (An `Arc<Statement>` must never be dropped while the map is locked: its drop comes here.)
    fn forget(&self, tail: &[u8]) {
        let mut map = self.map();
        if map.get(tail).is_some_and(|w| w.strong_count() == 0) {
            map.remove(tail);
        }
    }
}

/// The statements of a pool (shared with its database's replica pools).
#[derive(Debug)]
pub struct PoolStatements {
    registry: Arc<Registry>,
    next_id: AtomicU64,
    /// Statements made from cached unnamed statements (`cache_unnamed_statements`), kept alive
    /// beyond the sessions that made them, most recent last: a client that connects per request
    /// then finds its statement (and its `sluice_<id>` on the connections) again, instead of
    /// making a new one each time. Bounded by the caller (`max_prepared_statements`).
    kept: Mutex<std::collections::VecDeque<Arc<Statement>>>,
}

/// A Parse that would take the statement registries past `max_prepared_statement_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverBudget {
    pub len: usize,
    pub used: usize,
    pub cap: usize,
}

impl PoolStatements {
    /// An empty registry whose texts count against `budget`.
    pub fn new(budget: Arc<ByteBudget>) -> PoolStatements {
        PoolStatements {
            registry: Arc::new(Registry {
                map: Mutex::new(HashMap::new()),
                budget,
            }),
            next_id: AtomicU64::new(0),
            kept: Mutex::new(std::collections::VecDeque::new()),
        }
    }

    /// The statement for this Parse tail, made on first use if its bytes fit in the budget.
    pub fn intern(&self, tail: &[u8]) -> Result<Arc<Statement>, OverBudget> {
        self.intern_key(tail, None)
    }

    /// The statement of SQL `PREPARE … (types) AS query` (`types` as written, between the
    /// parentheses), or, without a type list, the same statement as a Parse of `query`.
    pub fn intern_sql(
        &self,
        query: &[u8],
        types: Option<&[u8]>,
    ) -> Result<Arc<Statement>, OverBudget> {
        let (key, types_at) = sql_key(query, types);
        self.intern_key(&key, types_at)
    }

    /// Like [`PoolStatements::validated`], for SQL `PREPARE`.
    pub fn validated_sql(&self, query: &[u8], types: Option<&[u8]>) -> Option<Arc<Statement>> {
        self.validated(&sql_key(query, types).0)
    }

    fn intern_key(
        &self,
        tail: &[u8],
        types_at: Option<usize>,
    ) -> Result<Arc<Statement>, OverBudget> {
        let mut map = self.registry.map();
        if let Some(stmt) = map.get(tail).and_then(Weak::upgrade) {
            return Ok(stmt);
        }
        let budget = &self.registry.budget;
        if !budget.try_take(tail.len()) {
            return Err(OverBudget {
                len: tail.len(),
                used: budget.used(),
                cap: budget.cap(),
            });
        }
        let stmt = Arc::new(Statement {
            id: self.next_id.fetch_add(1, Ordering::Relaxed) + 1,
            tail: Bytes::copy_from_slice(tail),
            validated: AtomicBool::new(false),
            class: OnceLock::new(),
            types_at,
            needs: OnceLock::new(),
            registry: self.registry.clone(),
        });
        map.insert(stmt.tail.clone(), Arc::downgrade(&stmt));
        Ok(stmt)
    }

    /// Keeps `stmt` alive in the pool (most recent), at most `cap` such; the oldest goes.
    pub fn keep(&self, stmt: &Arc<Statement>, cap: usize) {
        let evicted = {
            let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(i) = kept.iter().position(|s| s.id == stmt.id) {
                let s = kept.remove(i).expect("found");
                kept.push_back(s);
                None
            } else {
                kept.push_back(stmt.clone());
                (kept.len() > cap).then(|| kept.pop_front()).flatten()
            }
        };
        // Dropped after the lock: a statement's drop locks its registry.
        drop(evicted);
    }

    /// The statement for this Parse tail if a server has accepted it before.
    pub fn validated(&self, tail: &[u8]) -> Option<Arc<Statement>> {
        // Upgraded under the lock, looked at (and maybe dropped) after it.
        let stmt = self.registry.map().get(tail).and_then(Weak::upgrade);
        stmt.filter(|s| s.validated.load(Ordering::Relaxed))
    }

    /// Statements held now.
    pub fn len(&self) -> usize {
        self.registry.map().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of statement text held now by this registry.
    pub fn bytes(&self) -> usize {
        self.registry.map().keys().map(Bytes::len).sum()
    }
}

/// The registry key of SQL `PREPARE`: a Parse tail without parameter types, then, with a type
/// list, a 0xFF marker (no Parse tail goes on past its types) and the list; and where it starts.
fn sql_key(query: &[u8], types: Option<&[u8]>) -> (Vec<u8>, Option<usize>) {
    let mut key = Vec::with_capacity(query.len() + 4 + types.map_or(0, <[u8]>::len));
    key.extend_from_slice(query);
    key.extend_from_slice(&[0, 0, 0]);
    let at = types.map(|t| {
        key.push(0xFF);
        key.extend_from_slice(t);
        query.len() + 4
    });
    (key, at)
}

/// The statements one server connection has prepared, with least-recently-used eviction.
#[derive(Debug, Default)]
pub struct ServerStatements {
    /// id → last use (a per-connection counter).
    used: IdMap<u64>,
    clock: u64,
}

impl ServerStatements {
    /// True if prepared here; marks it used.
    pub fn touch(&mut self, id: u64) -> bool {
        self.clock += 1;
        match self.used.get_mut(&id) {
            Some(t) => {
                *t = self.clock;
                true
            }
            None => false,
        }
    }

    /// Records `id` as prepared. If that makes more than `cap`, returns the least recently used
    /// statement, which the caller must Close on the server.
    pub fn insert(&mut self, id: u64, cap: usize) -> Option<u64> {
        self.clock += 1;
        self.used.insert(id, self.clock);
        if self.used.len() <= cap {
            return None;
        }
        let (&oldest, _) = self
            .used
            .iter()
            .filter(|(k, _)| **k != id)
            .min_by_key(|(_, t)| **t)?;
        self.used.remove(&oldest);
        Some(oldest)
    }

    /// Puts back a statement whose eviction the server skipped, as the least recently used.
    pub fn restore(&mut self, id: u64) {
        self.used.entry(id).or_insert(0);
    }

    pub fn remove(&mut self, id: u64) {
        self.used.remove(&id);
    }

    pub fn clear(&mut self) {
        self.used.clear();
    }

    pub fn len(&self) -> usize {
        self.used.len()
    }

    pub fn is_empty(&self) -> bool {
        self.used.is_empty()
    }
}

/// If `sql` is exactly `DEALLOCATE [PREPARE] name` (any case, optional `;`), the name.
/// Quoted names are unquoted; `ALL` is not a name (it is left to the server).
pub fn deallocate_target(sql: &str) -> Option<String> {
    let s = sql.trim().trim_end_matches(';').trim_end();
    let rest = strip_keyword(s, "DEALLOCATE")?.trim_start();
    let rest = strip_keyword(rest, "PREPARE").unwrap_or(rest);
    let name = rest.trim();
    if name.is_empty() {
        return None;
    }
    if let Some(quoted) = name.strip_prefix('"') {
        let inner = quoted.strip_suffix('"')?;
        if inner.replace("\"\"", "").contains('"') {
            return None;
        }
        return Some(inner.replace("\"\"", "\""));
    }
    if name.eq_ignore_ascii_case("all")
        || !name
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '$')
    {
        return None;
    }
    Some(name.to_lowercase())
}

fn strip_keyword<'a>(s: &'a str, kw: &str) -> Option<&'a str> {
    let head = s.get(..kw.len())?;
    if !head.eq_ignore_ascii_case(kw) {
        return None;
    }
    let rest = &s[kw.len()..];
    if rest.is_empty() || rest.starts_with(|c: char| c.is_whitespace()) {
        Some(rest)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kept statements outlive their holders, at most `cap` of them, the least recently kept
    /// going first; keeping one again makes it the most recent.
    #[test]
    fn kept_statements_stay_in_the_registry_up_to_the_cap() {
        let pool = PoolStatements::new(Arc::new(ByteBudget::new(1 << 20)));
        let ids: Vec<u64> = (0..3)
            .map(|i| {
                let s = pool.intern(format!("select {i}\0\0\0").as_bytes()).unwrap();
                pool.keep(&s, 2);
                s.id
            })
            .collect();
        assert_eq!(pool.len(), 2, "the first went at the cap");
        assert!(pool.registry.map().get(&b"select 0\0\0\0"[..]).is_none());
        let again = pool.intern(b"select 1\0\0\0").unwrap();
        assert_eq!(again.id, ids[1], "still the same statement");
        pool.keep(&again, 2);
        drop(again);
        let s3 = pool.intern(b"select 3\0\0\0").unwrap();
        pool.keep(&s3, 2);
        drop(s3);
        assert!(pool.validated(b"select 2\0\0\0").is_none());
        assert!(
            pool.registry.map().get(&b"select 2\0\0\0"[..]).is_none(),
            "oldest gone"
        );
        assert!(
            pool.registry.map().get(&b"select 1\0\0\0"[..]).is_some(),
            "kept again"
        );
    }

    #[test]
    fn server_side_names_are_sluice_and_the_id() {
        for id in [0, 1, 9, 10, 99, 12_345, 1 << 40, u64::MAX] {
            let name = server_name(id);
            assert_eq!(&*name, format!("sluice_{id}"));
            assert_eq!(name.as_bytes(), format!("sluice_{id}").as_bytes());
            assert_eq!(name.to_string(), format!("sluice_{id}"));
        }
    }

    #[test]
    fn server_statements_find_many_ids() {
        let mut s = ServerStatements::default();
        for id in 0..1000 {
            assert_eq!(s.insert(id * 7, 2000), None);
        }
        assert!((0..1000).all(|id| s.touch(id * 7)));
        assert!(!s.touch(3));
    }

    fn registry(cap: usize) -> (PoolStatements, Arc<ByteBudget>) {
        let budget = Arc::new(ByteBudget::new(cap));
        (PoolStatements::new(budget.clone()), budget)
    }

    #[test]
    fn same_sql_same_statement_until_unused() {
        let (r, _) = registry(1 << 20);
        let a = r.intern(b"select 1\0\0\0").unwrap();
        let b = r.intern(b"select 1\0\0\0").unwrap();
        let c = r.intern(b"select 2\0\0\0").unwrap();
        assert_eq!(a.id, b.id);
        assert_ne!(a.id, c.id);
        drop((a, b));
        let d = r.intern(b"select 1\0\0\0").unwrap();
        assert_ne!(d.id, c.id);
    }

    /// The text goes the moment its last holder does (issue 16: five 60 MB statements stayed
    /// until 1,024 more were made), and the budget gets its bytes back.
    #[test]
    fn a_statement_nobody_holds_is_freed_at_once() {
        let (r, budget) = registry(1 << 20);
        let big = vec![b'x'; 100_000];
        let a = r.intern(&big).unwrap();
        let b = r.intern(&big).unwrap();
        assert_eq!((r.len(), r.bytes(), budget.used()), (1, 100_000, 100_000));
        drop(a);
        assert_eq!(r.len(), 1, "still held by b");
        drop(b);
        assert_eq!((r.len(), r.bytes(), budget.used()), (0, 0, 0));
    }

    #[test]
    fn the_budget_caps_the_texts_of_every_registry() {
        let budget = Arc::new(ByteBudget::new(1000));
        let (r1, r2) = (
            PoolStatements::new(budget.clone()),
            PoolStatements::new(budget.clone()),
        );
        let a = r1.intern(&[b'a'; 600]).unwrap();
        let over = r2.intern(&[b'b'; 600]).unwrap_err();
        assert_eq!((over.len, over.used, over.cap), (600, 600, 1000));
        let again = r1.intern(&[b'a'; 600]).unwrap();
        assert_eq!(again.id, a.id, "a held statement costs nothing more");
        drop((a, again));
        assert!(r2.intern(&[b'b'; 600]).is_ok(), "room again");
    }

    #[test]
    fn lru_evicts_the_least_recently_used() {
        let mut s = ServerStatements::default();
        assert_eq!(s.insert(1, 2), None);
        assert_eq!(s.insert(2, 2), None);
        assert!(s.touch(1));
        assert_eq!(s.insert(3, 2), Some(2));
        assert!(s.touch(1) && s.touch(3) && !s.touch(2));
    }

    #[test]
    fn deallocate_parsing() {
        assert_eq!(deallocate_target("DEALLOCATE foo"), Some("foo".into()));
        assert_eq!(
            deallocate_target("deallocate prepare _pg3_1;"),
            Some("_pg3_1".into())
        );
        assert_eq!(
            deallocate_target("DEALLOCATE \"My\"\"Stmt\""),
            Some("My\"Stmt".into())
        );
        assert_eq!(deallocate_target("DEALLOCATE Foo"), Some("foo".into()));
        assert_eq!(deallocate_target("DEALLOCATE ALL"), None);
        assert_eq!(deallocate_target("DEALLOCATE a; DROP TABLE t"), None);
        assert_eq!(deallocate_target("DEALLOCATEfoo"), None);
    }
}
