//! One client's session settings as PostgreSQL would keep them, followed through transaction
//! pooling (no I/O, unit-tested).
//!
//! The session tells [`Settings`] what it sends (simple Queries, and Parse, Bind, Execute, Close
//! and Sync of the extended protocol) and every completion, error and ReadyForQuery the server
//! answers. The effects of each statement (`router/setting.rs`) wait for PostgreSQL's word:
//!
//! - a change counts from its CommandComplete (a `SET` that fails changes nothing), first
//!   *provisionally*: it belongs to the transaction under way;
//! - `SAVEPOINT` marks the provisional list, `ROLLBACK TO` drops what came after its mark,
//!   `RELEASE` forgets marks;
//! - `COMMIT` (and `PREPARE TRANSACTION`) applies the list, `ROLLBACK` drops it, and so does an
//!   error outside a transaction block (the implicit transaction of a multi-statement Query or an
//!   extended-protocol batch rolls back); a ReadyForQuery that says idle applies what is left.
//!
//! Applying a change updates two records: the client's (what it should see on any server
//! connection: `Session::wanted`) and the server connection's (what that connection now has), so
//! the next checkout, for this client or another, brings the connection to exactly the values
//! its client should see. Parameters the server reports (TimeZone, DateStyle, …) are followed by
//! their ParameterStatus, not here, except that a reset returns the client to its own login value.
//!
//! Replies are matched to statements by counting: each request that ends with a ReadyForQuery
//! (Query, Sync, FunctionCall) is one *segment*; within it, completions (CommandComplete,
//! EmptyQueryResponse, PortalSuspended) come one per statement (Query) or per Execute (batch).

use std::collections::VecDeque;

use crate::params::Params;
use crate::router::setting::{Change, Effect};

/// The client's settings under way: what its requests in flight will do, and the changes of its
/// transaction that are not committed yet. Made when a client first sends a statement with an
/// effect (most never do) and dropped again when it holds nothing (`is_idle`).
#[derive(Default)]
pub struct Settings {
    /// Effectful segments in flight, each after a run of segments without effects:
    /// `(segments without effects before it, its effects)`.
    queue: VecDeque<(u32, Segment)>,
    /// Segments without effects after the last queued one.
    tail: u32,
    /// The extended-protocol batch not yet closed by a Sync: its Executes so far and the
    /// effects among them.
    batch: Segment,
    batch_len: u32,
    /// Completions received so far in the segment being answered.
    done: u32,
    /// An error was received in the segment being answered.
    failed: bool,
    /// Statements (`S`) and portals (`P`) with an effect, by name; the unnamed ones are `""`.
    named: Vec<(u8, Box<[u8]>, Effect)>,
    /// The transaction's changes not yet committed, with savepoint marks.
    provisional: Vec<Item>,
    /// A commit left the client's values apart from the attached server's: bring the server to
    /// them before the next request.
    pub resync: bool,
}

/// `(index of the statement or Execute within its segment, effect)`.
type Segment = Vec<(u32, Effect)>;

enum Item {
    Change(Change),
    Mark(Box<str>),
}

/// The two records a commit updates.
pub struct Records<'a> {
    /// What the client should see.
    pub client: &'a mut Params,
    /// The client's values at login: what a reset returns it to.
    pub login: &'a Params,
    /// What the attached server connection has.
    pub server: Option<&'a mut Params>,
}

/// Parameters `RESET ALL` leaves alone.
const NOT_RESET_BY_ALL: &[&str] = &["role", "session_authorization"];

impl Settings {
    /// Starts following a client whose requests in flight hold no effects: `owed_ready` requests
    /// that end with a ReadyForQuery, and `open_executes` Executes sent since the last Sync.
    pub fn new(owed_ready: u32, open_executes: u32) -> Settings {
        Settings {
            tail: owed_ready,
            batch_len: open_executes,
            ..Settings::default()
        }
    }

    /// Nothing in flight or pending: the session may drop this.
    pub fn is_idle(&self) -> bool {
        self.queue.is_empty()
            && self.batch.is_empty()
            && self.named.is_empty()
            && self.provisional.is_empty()
            && !self.resync
    }

    /// Changes of the transaction under way are waiting, so savepoint commands matter.
    pub fn has_pending_work(&self) -> bool {
        !self.provisional.is_empty() || !self.queue.is_empty() || !self.batch.is_empty()
    }

    fn push_segment(&mut self, segment: Segment) {
        if segment.is_empty() {
            self.tail += 1;
        } else {
            self.queue.push_back((self.tail, segment));
            self.tail = 0;
        }
    }

    /// A simple Query went to the server with these statement effects.
    pub fn sent_query(&mut self, effects: Segment) {
        self.push_segment(effects);
    }

    /// A FunctionCall went to the server.
    pub fn sent_call(&mut self) {
        self.push_segment(Vec::new());
    }

    /// A Parse of statement `name` with this effect.
    pub fn parsed(&mut self, name: &[u8], effect: Effect) {
        self.name(b'S', name, effect);
    }

    /// A Bind of portal `portal` from statement `statement`.
    pub fn bound(&mut self, portal: &[u8], statement: &[u8]) {
        let effect = self
            .named
            .iter()
            .find(|(k, n, _)| *k == b'S' && &**n == statement)
            .map_or(Effect::Other, |(_, _, e)| e.clone());
        self.name(b'P', portal, effect);
    }

    /// A Close of a statement (`S`) or portal (`P`).
    pub fn closed(&mut self, kind: u8, name: &[u8]) {
        self.named.retain(|(k, n, _)| !(*k == kind && &**n == name));
    }

    fn name(&mut self, kind: u8, name: &[u8], effect: Effect) {
        self.named.retain(|(k, n, _)| !(*k == kind && &**n == name));
        if effect != Effect::Other {
            self.named.push((kind, name.into(), effect));
        }
    }

    /// An Execute of `portal` went to the server. Returns true when what it runs changes
    /// settings in a way sluice cannot follow.
    pub fn executed(&mut self, portal: &[u8]) -> bool {
        let effect = self
            .named
            .iter()
            .find(|(k, n, _)| *k == b'P' && &**n == portal)
            .map(|(_, _, e)| e.clone());
        let index = self.batch_len;
        self.batch_len += 1;
        match effect {
            Some(Effect::Untracked) => true,
            Some(effect) => {
                self.batch.push((index, effect));
                false
            }
            None => false,
        }
    }

    /// A Sync went to the server (not one it ignores during COPY).
    pub fn synced(&mut self) {
        let batch = std::mem::take(&mut self.batch);
        self.batch_len = 0;
        self.push_segment(batch);
    }

    /// The segment being answered: the first queued one unless segments without effects come
    /// first; the open batch when nothing is queued.
    fn current(&mut self) -> Option<&mut Segment> {
        match self.queue.front_mut() {
            Some((0, segment)) => Some(segment),
            Some(_) => None,
            None if self.tail == 0 => Some(&mut self.batch),
            None => None,
        }
    }

    /// A completion (CommandComplete with its tag, EmptyQueryResponse or PortalSuspended with
    /// `None`). Returns true as [`Settings::ready`] does, for a COMMIT.
    pub fn completed(&mut self, tag: Option<&[u8]>, records: Records<'_>) -> bool {
        let index = self.done;
        self.done += 1;
        let effect = self.current().and_then(|segment| {
            let at = segment.iter().position(|(i, _)| *i == index)?;
            Some(segment.remove(at).1)
        });
        let Some(tag) = tag else {
            return false;
        };
        match tag {
            b"COMMIT" | b"PREPARE TRANSACTION" => return self.commit(records),
            b"ROLLBACK" => match effect {
                Some(Effect::RollbackTo(name)) => self.rollback_to(&name),
                _ => self.provisional.clear(),
            },
            b"SAVEPOINT" => {
                // A savepoint taken before any change needs no mark: rolling back to a name
                // that is not marked drops every change.
                if let Some(Effect::Savepoint(name)) = effect {
                    if !self.provisional.is_empty() {
                        self.provisional.push(Item::Mark(name));
                    }
                }
            }
            b"RELEASE" => {
                if let Some(Effect::Release(name)) = effect {
                    self.release(&name);
                }
            }
            b"DISCARD ALL" => self.provisional.push(Item::Change(Change::DiscardAll)),
            _ => {
                if let Some(Effect::Changes(changes)) = effect {
                    self.provisional
                        .extend(changes.into_iter().map(Item::Change));
                }
            }
        }
        false
    }

    /// An ErrorResponse answered a request.
    pub fn failed(&mut self) {
        self.failed = true;
    }

    /// A ReadyForQuery ended the segment being answered. `status`: its transaction status.
    /// Returns true when a commit left the client's values different from the server's for some
    /// parameter it reset (to its login value): the session brings the server to them.
    pub fn ready(&mut self, status: u8, records: Records<'_>) -> bool {
        match self.queue.front_mut() {
            Some((0, _)) => {
                self.queue.pop_front();
            }
            Some((n, _)) => *n -= 1,
            None => self.tail = self.tail.saturating_sub(1),
        }
        self.done = 0;
        let failed = std::mem::take(&mut self.failed);
        if status != b'I' {
            return false;
        }
        if failed {
            self.provisional.clear();
            false
        } else {
            self.commit(records)
        }
    }

    /// The server connection is gone, or what was in flight was taken back: its transaction
    /// rolled back and nothing more will be answered.
    pub fn forget(&mut self) {
        self.queue.clear();
        self.tail = 0;
        self.batch.clear();
        self.batch_len = 0;
        self.done = 0;
        self.failed = false;
        self.provisional.clear();
        // Named statements and portals stay the client's (statements survive on other
        // connections through sluice's own statement handling).
        self.named.retain(|(k, _, _)| *k == b'S');
    }

    fn rollback_to(&mut self, name: &str) {
        match self
            .provisional
            .iter()
            .rposition(|i| matches!(i, Item::Mark(n) if &**n == name))
        {
            Some(at) => self.provisional.truncate(at + 1),
            None => self.provisional.clear(),
        }
    }

    fn release(&mut self, name: &str) {
        let from = self
            .provisional
            .iter()
            .rposition(|i| matches!(i, Item::Mark(n) if &**n == name))
            .unwrap_or(0);
        let mut index = 0;
        self.provisional.retain(|i| {
            let keep = index < from || matches!(i, Item::Change(_));
            index += 1;
            keep
        });
    }

    /// Applies the provisional changes in order. Returns true when a reset left the client's
    /// and the server's values apart.
    fn commit(&mut self, records: Records<'_>) -> bool {
        if self.provisional.is_empty() {
            return false;
        }
        let Records {
            client,
            login,
            mut server,
        } = records;
        let mut apart = false;
        for item in std::mem::take(&mut self.provisional) {
            let Item::Change(change) = item else {
                continue;
            };
            match change {
                Change::Set { name, value } => {
                    // Setting the session user resets the role.
                    if &*name == "session_authorization" {
                        apart |= reset(client, login, server.as_deref_mut(), "role");
                    }
                    // A reported parameter follows its ParameterStatus.
                    if client.is_reported(&name) {
                        continue;
                    }
                    client.set_extra(&name, &value);
                    if let Some(s) = server.as_deref_mut() {
                        s.set_extra(&name, &value);
                    }
                }
                Change::Reset { name } => {
                    apart |= reset(client, login, server.as_deref_mut(), &name);
                    if &*name == "session_authorization" {
                        apart |= reset(client, login, server.as_deref_mut(), "role");
                    }
                }
                Change::ResetAll | Change::DiscardAll => {
                    let all = matches!(change, Change::DiscardAll);
                    let names: Vec<String> = client
                        .iter()
                        .map(|(n, _)| n.to_owned())
                        .chain(login.iter().map(|(n, _)| n.to_owned()))
                        .filter(|n| {
                            all || !NOT_RESET_BY_ALL.iter().any(|k| k.eq_ignore_ascii_case(n))
                        })
                        .collect();
                    for name in names {
                        apart |= reset(client, login, server.as_deref_mut(), &name);
                    }
                    if let Some(s) = server.as_deref_mut() {
                        let extras: Vec<String> = s
                            .extras()
                            .map(str::to_owned)
                            .filter(|n| {
                                all || !NOT_RESET_BY_ALL.iter().any(|k| k.eq_ignore_ascii_case(n))
                            })
                            .collect();
                        for n in extras {
                            s.remove(&n);
                        }
                    }
                }
            }
        }
        apart
    }
}

/// `name` returns to the client's login value; on the server to its own default (no entry, for
/// a parameter not reported). Returns true when the two now differ.
fn reset(client: &mut Params, login: &Params, server: Option<&mut Params>, name: &str) -> bool {
    let reported = client.is_reported(name);
    match login.get(name) {
        Some(v) if reported => client.set(name, v),
        Some(v) => client.set_extra(name, v),
        None if reported => {}
        None => client.remove(name),
    }
    let Some(server) = server else {
        return false;
    };
    if !reported {
        server.remove(name);
    }
    // A reported parameter's server value arrives by ParameterStatus; the client's login value
    // differs from the server's default only when the client gave it at login.
    login.get(name).is_some() && login.get(name) != server.get(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct World {
        s: Settings,
        client: Params,
        login: Params,
        server: Params,
    }

    macro_rules! rec {
        ($w:expr) => {
            Records {
                client: &mut $w.client,
                login: &$w.login,
                server: Some(&mut $w.server),
            }
        };
    }

    impl World {
        fn new() -> World {
            let mut login = Params::default();
            login.set("TimeZone", "UTC");
            login.set_extra("search_path", "app");
            World {
                s: Settings::new(0, 0),
                client: login.clone(),
                server: login.clone(),
                login,
            }
        }

        /// Sends `sql` as a simple Query and answers it as PostgreSQL would: `replies` is one
        /// tag per statement that completes, `error` whether one failed after them, `status`
        /// the ReadyForQuery.
        fn query(&mut self, sql: &str, replies: &[&str], error: bool, status: u8) {
            let effects = crate::router::setting::read_query(sql.as_bytes()).unwrap();
            self.s.sent_query(effects);
            self.answer(replies, error, status);
        }

        fn answer(&mut self, replies: &[&str], error: bool, status: u8) {
            for tag in replies {
                self.s.completed(Some(tag.as_bytes()), rec!(self));
            }
            if error {
                self.s.failed();
            }
            self.s.ready(status, rec!(self));
        }

        fn get(&self, name: &str) -> Option<&str> {
            self.client.get(name)
        }
    }

    #[test]
    fn a_set_counts_from_its_completion_and_commits_when_idle() {
        let mut w = World::new();
        w.query("SET search_path = x", &["SET"], false, b'I');
        assert_eq!(w.get("search_path"), Some("x"));
        assert_eq!(w.server.get("search_path"), Some("x"));
        // A SET that fails changes nothing.
        w.query("SET statement_timeout = 'nonsense'", &[], true, b'I');
        assert_eq!(w.get("statement_timeout"), None);
        // In a multi-statement query, an error rolls back the implicit transaction.
        w.query("SET a.b = 1; SELECT 1/0", &["SET"], true, b'I');
        assert_eq!(w.get("a.b"), None);
        assert!(w.s.is_idle());
    }

    #[test]
    fn transactions_savepoints_and_rollbacks() {
        let mut w = World::new();
        w.query("BEGIN; SET a.x = 1", &["BEGIN", "SET"], false, b'T');
        assert_eq!(w.get("a.x"), None, "provisional until commit");
        w.query("SAVEPOINT s", &["SAVEPOINT"], false, b'T');
        w.query("SET a.y = 2", &["SET"], false, b'T');
        w.query("ROLLBACK TO SAVEPOINT s", &["ROLLBACK"], false, b'T');
        w.query("SET a.z = 3", &["SET"], false, b'T');
        w.query("COMMIT", &["COMMIT"], false, b'I');
        assert_eq!(w.get("a.x"), Some("1"));
        assert_eq!(w.get("a.y"), None);
        assert_eq!(w.get("a.z"), Some("3"));

        // A rolled-back transaction is undone, after an error too.
        w.query(
            "BEGIN; SET a.x = 9; SELECT 1/0",
            &["BEGIN", "SET"],
            true,
            b'E',
        );
        w.query("ROLLBACK", &["ROLLBACK"], false, b'I');
        assert_eq!(w.get("a.x"), Some("1"));
        // COMMIT of a failed transaction answers ROLLBACK.
        w.query("BEGIN; SET a.x = 8", &["BEGIN", "SET"], false, b'T');
        w.query("SELECT 1/0", &[], true, b'E');
        w.query("COMMIT", &["ROLLBACK"], false, b'I');
        assert_eq!(w.get("a.x"), Some("1"));

        // A savepoint taken before any change: rolling back to it drops them all.
        w.query(
            "BEGIN; SAVEPOINT s; SET a.x = 7",
            &["BEGIN", "SAVEPOINT", "SET"],
            false,
            b'T',
        );
        w.query("ROLLBACK TO s", &["ROLLBACK"], false, b'T');
        w.query("COMMIT", &["COMMIT"], false, b'I');
        assert_eq!(w.get("a.x"), Some("1"));

        // RELEASE keeps the changes; ROLLBACK TO an earlier savepoint still drops them.
        w.query(
            "BEGIN; SET a.v = 1; SAVEPOINT s1; SAVEPOINT s2; SET a.w = 2; RELEASE s2",
            &["BEGIN", "SET", "SAVEPOINT", "SAVEPOINT", "SET", "RELEASE"],
            false,
            b'T',
        );
        w.query(
            "ROLLBACK TO s1; COMMIT",
            &["ROLLBACK", "COMMIT"],
            false,
            b'I',
        );
        assert_eq!(w.get("a.v"), Some("1"));
        assert_eq!(w.get("a.w"), None);
        assert!(w.s.is_idle());
    }

    #[test]
    fn local_changes_and_rolled_back_implicit_blocks_leave_nothing() {
        let mut w = World::new();
        w.query(
            "BEGIN; SET LOCAL a.x = 1; COMMIT",
            &["BEGIN", "SET", "COMMIT"],
            false,
            b'I',
        );
        assert_eq!(w.get("a.x"), None);
        w.query(
            "SELECT set_config('a.x', '1', true)",
            &["SELECT 1"],
            false,
            b'I',
        );
        assert_eq!(w.get("a.x"), None);
        w.query(
            "SELECT set_config('a.x', '2', false)",
            &["SELECT 1"],
            false,
            b'I',
        );
        assert_eq!(w.get("a.x"), Some("2"));
    }

    #[test]
    fn resets_return_to_login_values() {
        let mut w = World::new();
        w.query(
            "SET search_path = x; SET a.b = 1",
            &["SET", "SET"],
            false,
            b'I',
        );
        w.query("RESET a.b", &["RESET"], false, b'I');
        assert_eq!(w.get("a.b"), None);
        assert_eq!(w.server.get("a.b"), None);
        // search_path was given at login: RESET returns to it, the server to its own default.
        w.query("RESET search_path", &["RESET"], false, b'I');
        assert_eq!(w.get("search_path"), Some("app"));
        assert_eq!(w.server.get("search_path"), None);

        w.query("SET a.b = 1; SET role = r1", &["SET", "SET"], false, b'I');
        w.query("RESET ALL", &["RESET"], false, b'I');
        assert_eq!(w.get("a.b"), None);
        assert_eq!(w.get("role"), Some("r1"), "RESET ALL leaves role");
        w.query("DISCARD ALL", &["DISCARD ALL"], false, b'I');
        assert_eq!(w.get("role"), None);
        assert_eq!(w.server.get("role"), None);
        assert_eq!(w.get("TimeZone"), Some("UTC"));
    }

    #[test]
    fn reported_parameters_follow_parameter_status() {
        let mut w = World::new();
        w.query("SET TIME ZONE 'Europe/Paris'", &["SET"], false, b'I');
        // The session applies the ParameterStatus; the record leaves it alone.
        assert_eq!(w.get("TimeZone"), Some("UTC"));
    }

    #[test]
    fn extended_protocol_matches_executes_to_their_statements() {
        let mut w = World::new();
        let effect = crate::router::setting::read_statement(b"SET a.b = 5");
        w.s.parsed(b"s1", effect);
        w.s.parsed(b"", crate::router::setting::read_statement(b"SELECT 1"));
        // Bind/Execute the SELECT, then the SET, in one batch.
        w.s.bound(b"", b"");
        w.s.executed(b"");
        w.s.bound(b"", b"s1");
        w.s.executed(b"");
        w.s.synced();
        w.answer(&["SELECT 1", "SET"], false, b'I');
        assert_eq!(w.get("a.b"), Some("5"));
        w.s.closed(b'S', b"s1");
        w.s.closed(b'P', b"");
        assert!(w.s.is_idle());
    }

    #[test]
    fn segments_without_effects_before_an_effectful_one_are_counted() {
        let mut w = World::new();
        // Two queries in flight before sluice started following the client.
        w.s = Settings::new(2, 0);
        w.s.sent_query(crate::router::setting::read_query(b"SET a.b = 1").unwrap());
        w.answer(&["SELECT 1"], false, b'I');
        w.answer(&["SET"], false, b'I');
        assert_eq!(w.get("a.b"), None, "not yet answered");
        w.answer(&["SET"], false, b'I');
        assert_eq!(w.get("a.b"), Some("1"));
    }
}
