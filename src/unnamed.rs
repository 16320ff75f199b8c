//! The decisions behind caching unnamed statements (`cache_unnamed_statements`), without I/O.
//!
//! Drivers that send parameterised queries as an unnamed Parse/Bind/Execute make PostgreSQL plan
//! them every time. With the key on, a session that sends the same unnamed statement (query text
//! and parameter types, byte for byte) a second time gets it run as one of sluice's pool-wide
//! server-side statements (`crate::prepared`): its Parse("") and Bind("") are renamed, exactly as
//! for a named statement. This file decides *whether* and *how*; `client/unnamed.rs` does it.
//!
//! - [`cacheable`]: only plannable statements (SELECT, INSERT, UPDATE, DELETE, MERGE, VALUES,
//!   WITH, TABLE) are ever renamed; utility statements (SET, BEGIN, DDL, LISTEN, ...) never.
//! - [`Sightings`]: the second sighting in a session; one-off statements are never prepared. A
//!   bounded set of the texts a session sent lately, holding the statements made of them (a
//!   pool-wide statement lives while some session holds it).
//! - [`Batch`]: renaming only at rest. A Parse is renamed, and a Bind is bound to sluice's
//!   statement, only in a batch that began with the client outside a transaction block and with
//!   nothing outstanding, and before anything in that batch ran (a Bind, Execute, Query). If the
//!   server then says `cached plan must not change result type` (0A000: another session's DDL
//!   changed the statement's result columns), the implicit transaction holds nothing else: sluice
//!   closes its stale statement and replays the kept batch ([`Kept`]). Elsewhere (inside a
//!   transaction block, later in a batch) a Bind of the client's unnamed statement re-Parses its
//!   text as the server's unnamed statement first ([`BindPlan::Fallback`]): no stale plan can
//!   reach it, so no 0A000 PostgreSQL would not have sent.
//! - [`Kept`]: the client's messages from the renamed Bind to its Sync, held until that Sync's
//!   ReadyForQuery, for the replay.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use crate::router::classify::{Token, Tokens};

/// PostgreSQL's `cached plan must not change result type` (SQLSTATE 0A000).
pub const STALE_PLAN: &str = "0A000";

/// Whether an error at a renamed Bind calls for a replay. By code alone: the message is
/// translated under a non-English `lc_messages`, and another 0A000 at that Bind only costs one
/// replay, which then gets (and forwards) the same error.
pub fn is_stale_plan(code: &str) -> bool {
    code == STALE_PLAN
}

/// The first words of the statements sluice may run as prepared statements.
const PLANNABLE: &[&[u8]] = &[
    b"select", b"insert", b"update", b"delete", b"merge", b"values", b"with", b"table",
];

/// Whether the query text of an unnamed Parse may become a server-side prepared statement: one
/// plannable statement the lexer reads to the end. `SELECT … INTO` (a table creation) is not.
pub fn cacheable(query: &[u8]) -> bool {
    let mut tokens = Tokens::new(query);
    let mut first = None;
    let mut selects = false;
    let mut ended = false;
    for t in tokens.by_ref() {
        if ended {
            // Text after the statement's `;`: more than one statement.
            return false;
        }
        match t {
            Token::Punct(b'(') if first.is_none() => {}
            Token::Punct(b';') => ended = true,
            Token::Word(w) if first.is_none() => {
                if !PLANNABLE.iter().any(|k| w.eq_ignore_ascii_case(k)) {
                    return false;
                }
                selects = !w.eq_ignore_ascii_case(b"insert")
                    && !w.eq_ignore_ascii_case(b"update")
                    && !w.eq_ignore_ascii_case(b"delete")
                    && !w.eq_ignore_ascii_case(b"merge");
                first = Some(());
            }
            Token::Word(w) if selects && w.eq_ignore_ascii_case(b"into") => return false,
            _ if first.is_none() => return false,
            _ => {}
        }
    }
    first.is_some() && !tokens.failed()
}

/// How many distinct statements a session remembers having seen.
pub const SIGHTINGS: usize = 64;

/// What a session knows of one statement it sent.
#[derive(Debug, Clone)]
enum Seen<T> {
    /// Once: not prepared.
    Once,
    /// Again, and its text is [`cacheable`] (read once, on the second sighting): the statement
    /// once made (the session holds it while it remembers the text).
    Cacheable(Option<T>),
    /// Again, and its text is not.
    Never,
}

/// The statements (Parse tails: text and parameter types) a session sent lately, as hashes, at
/// most [`SIGHTINGS`], the least recently sent forgotten first; for those seen again and
/// cacheable, the statement (`T`) the session made of them. A hash collision makes a statement
/// count as seen one sighting early (harmless) and hands back another text's statement, which the
/// caller must check against the tail.
pub struct Sightings<T> {
    seen: VecDeque<(u64, Seen<T>)>,
}

impl<T> Default for Sightings<T> {
    fn default() -> Self {
        Sightings {
            seen: VecDeque::new(),
        }
    }
}

impl<T> Sightings<T> {
    /// Records a sighting of `tail` (whose query text is `query`). For the second sighting or a
    /// later one of a [`cacheable`] text: its slot for the statement, to fill or use. `is_tail`
    /// says whether a statement made earlier is the one for `tail`: the most recent text is
    /// checked with it first, without hashing (a client repeating one statement).
    pub fn sight(
        &mut self,
        tail: &[u8],
        query: &[u8],
        is_tail: impl Fn(&T) -> bool,
    ) -> Option<&mut Option<T>> {
        if let Some((_, Seen::Cacheable(Some(t)))) = self.seen.back() {
            if is_tail(t) {
                return match self.seen.back_mut() {
                    Some((_, Seen::Cacheable(slot))) => Some(slot),
                    _ => None,
                };
            }
        }
        let h = hash(tail);
        if let Some(i) = self.seen.iter().position(|(s, _)| *s == h) {
            let (_, mut verdict) = self.seen.remove(i).expect("found");
            if matches!(verdict, Seen::Once) {
                verdict = if cacheable(query) {
                    Seen::Cacheable(None)
                } else {
                    Seen::Never
                };
            }
            // Most recent last: a statement in use is never the one forgotten.
            self.seen.push_back((h, verdict));
            return match self.seen.back_mut() {
                Some((_, Seen::Cacheable(slot))) => Some(slot),
                _ => None,
            };
        }
        if self.seen.len() == SIGHTINGS {
            self.seen.pop_front();
        }
        self.seen.push_back((h, Seen::Once));
        None
    }
}

/// A multiply-rotate hash, eight bytes at a time: the texts are compared by hash only within one
/// session's short list (no hash table to flood), and a collision is caught by the caller.
fn hash(bytes: &[u8]) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut h = bytes.len() as u64;
    let mut chunks = bytes.chunks_exact(8);
    for c in chunks.by_ref() {
        let w = u64::from_le_bytes(c.try_into().expect("8 bytes"));
        h = (h.rotate_left(5) ^ w).wrapping_mul(K);
    }
    for &b in chunks.remainder() {
        h = (h.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
    }
    h
}

/// Where a session is in its current extended-protocol batch, as far as renaming goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Batch {
    /// No batch open (the last one ended with Sync).
    #[default]
    Between,
    /// The batch began at rest and nothing in it ran yet: a 0A000 can be replayed.
    Fresh,
    /// The batch began inside a transaction block or with answers outstanding, or something in
    /// it ran: no renaming that could meet a stale plan.
    Spent,
    /// sluice replays a kept batch.
    Replay,
}

/// What to do with a Bind of the client's unnamed statement while it is sluice's statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindPlan {
    /// Bind sluice's statement and keep the batch for a replay on 0A000.
    Cached,
    /// Bind sluice's statement (replaying: it was prepared again just before).
    Renamed,
    /// Parse the text as the server's unnamed statement first, then Bind it as sent.
    Fallback,
}

impl Batch {
    /// An extended-protocol message (Parse, Bind, Describe, Execute, Close, Flush) arrives;
    /// `at_rest` says whether the client is outside a transaction block with nothing outstanding
    /// (asked only when it opens a batch).
    pub fn begin(&mut self, at_rest: impl FnOnce() -> bool) {
        if *self == Batch::Between {
            *self = if at_rest() {
                Batch::Fresh
            } else {
                Batch::Spent
            };
        }
    }

    /// Something ran (a Bind, Execute, Query or FunctionCall went to the server).
    pub fn ran(&mut self) {
        if *self == Batch::Fresh {
            *self = Batch::Spent;
        }
    }

    /// A Sync: the batch ends.
    pub fn sync(&mut self) {
        *self = Batch::Between;
    }

    /// Whether an unnamed Parse in this batch may be renamed.
    pub fn may_rename_parse(&self) -> bool {
        *self == Batch::Fresh
    }

    /// How a Bind of the client's unnamed statement, while it is sluice's, goes out.
    pub fn bind_plan(&self) -> BindPlan {
        match self {
            Batch::Fresh => BindPlan::Cached,
            Batch::Replay => BindPlan::Renamed,
            Batch::Between | Batch::Spent => BindPlan::Fallback,
        }
    }
}

/// The client's messages of a batch with a renamed Bind, from that Bind to the Sync, until the
/// Sync's ReadyForQuery: what a replay sends again. The buffer is kept between batches (cleared,
/// not freed): a session that keeps one batch per transaction allocates once, not per batch.
#[derive(Debug, Default)]
pub struct Kept {
    buf: BytesMut,
    state: KeptState,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum KeptState {
    #[default]
    Off,
    /// Recording up to the Sync.
    Open,
    /// The Sync is in: waiting for its ReadyForQuery. The client's next batch waits too, so
    /// that a replay stays in order before it.
    Sealed,
}

/// A kept buffer that grew past this (a large Bind) is freed rather than kept for the next batch.
const KEEP_CAPACITY: usize = 4096;

impl Kept {
    /// Starts keeping, with the renamed Bind.
    pub fn start(&mut self, bind: &[u8]) {
        self.buf.clear();
        self.buf.extend_from_slice(bind);
        self.state = KeptState::Open;
    }

    /// A client message of the batch; the Sync seals it.
    pub fn record(&mut self, msg: &[u8], is_sync: bool) {
        if self.state == KeptState::Open {
            self.buf.extend_from_slice(msg);
            if is_sync {
                self.state = KeptState::Sealed;
            }
        }
    }

    /// Nothing is kept.
    pub fn is_off(&self) -> bool {
        self.state == KeptState::Off
    }

    /// Messages are being recorded (the batch's Sync is not in yet).
    pub fn is_open(&self) -> bool {
        self.state == KeptState::Open
    }

    /// The batch is complete and waits for its answer: the client's next messages wait.
    pub fn is_sealed(&self) -> bool {
        self.state == KeptState::Sealed
    }

    /// Takes the batch for a replay.
    pub fn take(&mut self) -> Option<Bytes> {
        if self.is_off() {
            return None;
        }
        self.state = KeptState::Off;
        Some(std::mem::take(&mut self.buf).freeze())
    }

    pub fn clear(&mut self) {
        self.state = KeptState::Off;
        if self.buf.capacity() > KEEP_CAPACITY {
            self.buf = BytesMut::new();
        } else {
            self.buf.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plannable_statements_are_cacheable() {
        for q in [
            "SELECT * FROM t WHERE id = $1",
            "  select 1",
            "(SELECT 1) UNION (SELECT 2)",
            "INSERT INTO t VALUES ($1) RETURNING *",
            "update t set a = $1",
            "DELETE FROM t WHERE id = $1;",
            "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE",
            "VALUES (1), (2)",
            "WITH x AS (SELECT 1) SELECT * FROM x",
            "TABLE t",
            "/* c */ -- line\n SELECT $1::int",
        ] {
            assert!(cacheable(q.as_bytes()), "{q}");
        }
    }

    #[test]
    fn utility_and_odd_statements_are_not() {
        for q in [
            "SET search_path = x",
            "BEGIN",
            "COMMIT",
            "CREATE TABLE t (a int)",
            "ALTER TABLE t ADD COLUMN b int",
            "LISTEN ch",
            "EXPLAIN SELECT 1",
            "SELECT * INTO t2 FROM t",
            "SELECT 1; SELECT 2",
            "SELECT 'unterminated",
            "",
            "  ;",
            "DO $$ BEGIN END $$",
            "COPY t FROM STDIN",
        ] {
            assert!(!cacheable(q.as_bytes()), "{q}");
        }
    }

    #[test]
    fn second_sighting_and_bound() {
        let mut s = Sightings::<u32>::default();
        let q = b"select 1";
        let no = |_: &u32| false;
        assert!(
            s.sight(b"select 1\0\0\0", q, no).is_none(),
            "first sighting"
        );
        let slot = s.sight(b"select 1\0\0\0", q, no).expect("second");
        assert_eq!(*slot, None);
        *slot = Some(7);
        assert_eq!(
            s.sight(b"select 1\0\0\0", q, no),
            Some(&mut Some(7)),
            "third, by hash"
        );
        assert_eq!(
            s.sight(b"select 1\0\0\0", q, |t| *t == 7),
            Some(&mut Some(7)),
            "fourth, by the fast path"
        );
        assert!(
            s.sight(b"select 1\0\0\x01\0\0\0\x17", q, no).is_none(),
            "other parameter types"
        );
        assert!(s.sight(b"SET x = 1\0\0\0", b"SET x = 1", no).is_none());
        assert!(
            s.sight(b"SET x = 1\0\0\0", b"SET x = 1", no).is_none(),
            "never cacheable"
        );
        for i in 0..SIGHTINGS {
            s.sight(format!("other {i}\0\0\0").as_bytes(), b"select 2", no);
        }
        assert!(
            s.sight(b"select 1\0\0\0", q, no).is_none(),
            "forgotten (and its statement let go) after SIGHTINGS others"
        );
        assert!(s.seen.len() <= SIGHTINGS);
    }

    #[test]
    fn batches_at_rest_and_not() {
        let mut b = Batch::default();
        assert!(!b.may_rename_parse(), "no batch open");
        b.begin(|| true);
        assert_eq!(b, Batch::Fresh);
        assert!(b.may_rename_parse());
        assert_eq!(b.bind_plan(), BindPlan::Cached);
        b.begin(|| unreachable!("asked only when a batch opens"));
        b.ran();
        assert_eq!(b, Batch::Spent);
        assert!(!b.may_rename_parse());
        assert_eq!(b.bind_plan(), BindPlan::Fallback, "after an Execute");
        b.sync();
        assert_eq!(b, Batch::Between);
        // A batch that opens inside a transaction block.
        b.begin(|| false);
        assert_eq!(b, Batch::Spent);
        assert!(!b.may_rename_parse());
        assert_eq!(b.bind_plan(), BindPlan::Fallback);
        b.sync();
        b = Batch::Replay;
        b.begin(|| unreachable!());
        assert_eq!(b.bind_plan(), BindPlan::Renamed);
        b.ran();
        assert_eq!(b, Batch::Replay);
        b.sync();
        assert_eq!(b, Batch::Between);
    }

    #[test]
    fn kept_batch() {
        let mut k = Kept::default();
        k.record(b"x", false);
        assert!(k.take().is_none(), "nothing kept before a renamed Bind");
        k.start(b"B");
        k.record(b"E", false);
        assert!(k.is_open());
        k.record(b"S", true);
        assert!(k.is_sealed());
        k.record(b"P", false);
        assert_eq!(&k.take().unwrap()[..], b"BES");
        assert!(k.is_off());
        // Cleared, then kept again: only the new batch.
        k.start(b"B2");
        k.clear();
        assert!(k.is_off() && k.take().is_none());
        k.start(b"B3");
        k.record(b"S", true);
        assert_eq!(&k.take().unwrap()[..], b"B3S");
    }

    #[test]
    fn stale_plan_is_0a000() {
        assert!(is_stale_plan("0A000"));
        assert!(!is_stale_plan("42P01"));
    }
}
