//! What a client is owed by the server connection it holds: the request/reply bookkeeping of one
//! session, as a state machine without I/O.
//!
//! The session tells the [`Exchange`] about every request it sends to the server
//! ([`Exchange::sent`]) and every whole reply that ends or changes a request
//! ([`Exchange::on_reply`]); the exchange answers what to do with the reply ([`Verdict`]) and
//! whether the protocol is at a point where the server connection could serve another client
//! ([`Exchange::is_clean`]).
//!
//! `pending` lists, in order, every request whose answer the client still waits for: one entry
//! per Query, Parse, Bind, Describe, Execute, Close, Sync and FunctionCall. Each server message
//! that ends a request pops its entry. Some entries are answered by sluice itself (a ParseComplete
//! for a statement the server connection already has, a CloseComplete): they are written when they
//! reach the front ([`Exchange::emit_local`]), so they arrive in the order PostgreSQL would send
//! them. Answers to requests sluice inserted (a Parse ahead of a Bind) are dropped. After an error
//! in an extended-protocol batch the server skips to Sync, and so do the entries; what the skipped
//! entries had done (a statement name recorded, a statement evicted) is handed back as [`Undo`]s.
//!
//! A server answers a Sync sent during extended-protocol COPY FROM STDIN with nothing (it ignores
//! it), which is accounted for at CopyInResponse.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use sluice_proto::backend::{self, BackendTag, ErrorResponse};

use super::sql_prepare::SqlRewrite;
use super::statements::Undo;

/// A request the client is owed an answer for, in the order the answers must arrive.
pub enum Pending {
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
    /// sluice's question, just before a client's COMMIT, whether the transaction wrote anything
    /// (read-your-writes), swallowed through its ReadyForQuery.
    XidProbe,
    Parse {
        answer: Answer,
        undo: Undo,
    },
    Bind,
    /// A Bind renamed to sluice's statement for the client's unnamed one, at rest
    /// (`cache_unnamed_statements`): a stale plan (0A000) there is replayed, not forwarded. The
    /// statement's id.
    CachedBind(u64),
    /// The Sync of a batch that met a stale plan: its ReadyForQuery is swallowed and the batch
    /// replayed ([`Verdict::Replay`]).
    ReplaySync,
    Describe,
    Execute,
    Close {
        answer: Answer,
        undo: Undo,
    },
    /// A simple query sluice answers itself (DEALLOCATE of a client's statement).
    LocalCommand(&'static str),
    /// A client's simple Query that sluice rewrote (SQL PREPARE, EXECUTE): answered through
    /// ReadyForQuery; what its replies mean is in the rewrite. Boxed: it is rare.
    Sql(Box<SqlRewrite>),
    /// An error sluice raises itself in an extended-protocol batch. The server is sent a request
    /// bound to fail in its place, so it aborts the transaction and skips to Sync exactly as
    /// PostgreSQL would have; its error is replaced by this one.
    FailWith(Bytes),
    /// The client ended a COPY FROM STDIN (CopyDone or CopyFail) before we saw it start.
    CopyEnd,
}

impl Pending {
    /// An extended-protocol request: the server skips it after an error earlier in its batch.
    fn is_extended(&self) -> bool {
        matches!(
            self,
            Pending::Parse { .. }
                | Pending::Bind
                | Pending::CachedBind(_)
                | Pending::Describe
                | Pending::Execute
                | Pending::Close { .. }
        )
    }

    /// Ends at a ReadyForQuery.
    fn ends_at_ready(&self) -> bool {
        matches!(
            self,
            Pending::Sync | Pending::ReplaySync | Pending::Query | Pending::Call | Pending::Sql(_)
        )
    }
}

/// Who answers a Parse or Close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Forward the server's answer.
    Server,
    /// The server answers a message sluice inserted: drop it.
    Swallow,
    /// sluice answers; the server was not asked.
    Local,
}

/// What to do with a reply the server sent.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Pass it to the client.
    Forward,
    /// Drop it (the answer to something sluice sent on its own account).
    Drop,
    /// Send the client this error instead (an error sluice raised in the batch).
    Replace(Bytes),
    /// An error nobody asked for: PostgreSQL is about to close the connection. Not the client's
    /// business until it asks.
    Unasked,
    /// A renamed Bind met a stale plan (0A000): the error is dropped, the statement with this id
    /// must be prepared again on the connection, and the batch is replayed at its Sync's
    /// ReadyForQuery.
    Stale(u64),
    /// The ReadyForQuery of a batch to replay: dropped; replay the kept batch now.
    Replay,
}

/// The request/reply state of one session's exchange with its server connection.
pub struct Exchange {
    pending: VecDeque<Pending>,
    /// Extended-protocol messages were sent since the last Sync.
    unsynced: bool,
    /// Extended-protocol COPY FROM STDIN under way: the server ignores Sync until CopyDone/CopyFail.
    in_copy_in: bool,
    /// The transaction status of the last ReadyForQuery.
    tx_status: u8,
    /// An error was forwarded in the current batch (a lost server must not send a second one).
    batch_error_seen: bool,
    /// After an error in an extended-protocol batch: drop the client's messages up to Sync.
    discard_until_sync: bool,
    /// A renamed Bind met a stale plan before its batch's Sync was sent: that Sync is the one
    /// whose ReadyForQuery starts the replay.
    replay_at_sync: bool,
}

impl Default for Exchange {
    fn default() -> Self {
        Exchange {
            pending: VecDeque::new(),
            unsynced: false,
            in_copy_in: false,
            tx_status: b'I',
            batch_error_seen: false,
            discard_until_sync: false,
            replay_at_sync: false,
        }
    }
}

impl Exchange {
    /// A request went (or, for local answers, was queued) to the server.
    #[inline(always)]
    pub fn sent(&mut self, p: Pending) {
        match p {
            Pending::Sync => {
                if std::mem::take(&mut self.replay_at_sync) {
                    self.pending.push_back(Pending::ReplaySync);
                } else if !self.in_copy_in {
                    self.pending.push_back(Pending::Sync);
                }
                self.unsynced = false;
            }
            Pending::CopyEnd => {
                if self.in_copy_in {
                    self.in_copy_in = false;
                } else {
                    self.pending.push_back(Pending::CopyEnd);
                }
            }
            Pending::FailWith(_) => {
                self.pending.push_back(p);
                self.unsynced = true;
                self.discard_until_sync = true;
            }
            p => {
                if p.is_extended() {
                    self.unsynced = true;
                }
                self.pending.push_back(p);
            }
        }
    }

    /// An extended-protocol message that needs no answer (Flush) or whose answer is raised
    /// locally was sent: the batch is open until Sync.
    pub fn sent_extended(&mut self) {
        self.unsynced = true;
    }

    /// A client message arrives. Returns false when it must be dropped: after an error in an
    /// extended-protocol batch everything up to Sync is, as PostgreSQL does.
    pub fn accept_from_client(&mut self, is_sync: bool) -> bool {
        if self.discard_until_sync {
            if !is_sync {
                return false;
            }
            self.discard_until_sync = false;
        }
        true
    }

    /// Whether client messages are being dropped up to the next Sync.
    pub fn discarding(&self) -> bool {
        self.discard_until_sync
    }

    /// The request at the front is sluice's own (parameter sync or LSN probe): its replies are
    /// swallowed, not booked with [`Exchange::on_reply`].
    pub fn front_is_internal(&self) -> bool {
        matches!(
            self.pending.front(),
            Some(Pending::Internal | Pending::LsnProbe | Pending::XidProbe)
        )
    }

    pub fn front_is_xid_probe(&self) -> bool {
        matches!(self.pending.front(), Some(Pending::XidProbe))
    }

    pub fn front_is_probe(&self) -> bool {
        matches!(self.pending.front(), Some(Pending::LsnProbe))
    }

    /// An LSN probe is among the requests.
    pub fn probing(&self) -> bool {
        self.pending.iter().any(|p| matches!(p, Pending::LsnProbe))
    }

    /// sluice's own request at the front got its ReadyForQuery.
    pub fn internal_done(&mut self) {
        debug_assert!(self.front_is_internal());
        self.pending.pop_front();
    }

    /// Books one whole server reply (not one to sluice's own request) against the requests.
    /// What requests skipped after an error had done is handed to `undo`.
    #[inline]
    pub fn on_reply(
        &mut self,
        tag: BackendTag,
        body: &[u8],
        mut undo: impl FnMut(Undo),
    ) -> Verdict {
        match tag {
            BackendTag::ReadyForQuery => {
                self.tx_status = body.first().copied().unwrap_or(b'I');
                self.batch_error_seen = false;
                while let Some(p) = self.pending.pop_front() {
                    if matches!(p, Pending::ReplaySync) {
                        return Verdict::Replay;
                    }
                    if p.ends_at_ready() {
                        break;
                    }
                }
            }
            BackendTag::CopyInResponse => self.copy_in_started(),
            BackendTag::ErrorResponse => {
                if !self.awaiting_reply() {
                    return Verdict::Unasked;
                }
                self.batch_error_seen = true;
                if let Some(Pending::Sql(rw)) = self.pending.front_mut() {
                    return match rw.on_error(body, &mut undo) {
                        Some(ours) => Verdict::Replace(ours),
                        None => Verdict::Forward,
                    };
                }
                if let Some(&Pending::CachedBind(id)) = self.pending.front() {
                    let code = sluice_proto::backend_view::error_code_and_message(body).0;
                    if crate::unnamed::is_stale_plan(&code) {
                        self.batch_error_seen = false;
                        self.replay_from_sync(undo);
                        return Verdict::Stale(id);
                    }
                }
                if let Some(Pending::FailWith(ours)) = self.pending.front() {
                    let ours = ours.clone();
                    self.skip_to_sync(undo);
                    return Verdict::Replace(ours);
                }
                if self.pending.front().is_some_and(Pending::is_extended) {
                    self.skip_to_sync(undo);
                }
            }
            BackendTag::ParseComplete
                if matches!(self.pending.front(), Some(Pending::Parse { .. })) =>
            {
                if let Some(Pending::Parse { answer, undo }) = self.pending.pop_front() {
                    undo.confirm();
                    return forwarded(answer);
                }
            }
            BackendTag::BindComplete
                if matches!(
                    self.pending.front(),
                    Some(Pending::Bind | Pending::CachedBind(_))
                ) =>
            {
                self.pending.pop_front();
            }
            BackendTag::CloseComplete
                if matches!(self.pending.front(), Some(Pending::Close { .. })) =>
            {
                if let Some(Pending::Close { answer, .. }) = self.pending.pop_front() {
                    return forwarded(answer);
                }
            }
            BackendTag::NoData | BackendTag::RowDescription
                if matches!(self.pending.front(), Some(Pending::Describe)) =>
            {
                self.pending.pop_front();
            }
            BackendTag::CommandComplete
                if matches!(self.pending.front(), Some(Pending::Sql(_))) =>
            {
                if let Some(Pending::Sql(rw)) = self.pending.front_mut() {
                    return rw.on_complete();
                }
            }
            BackendTag::CommandComplete
            | BackendTag::EmptyQueryResponse
            | BackendTag::PortalSuspended
                if matches!(self.pending.front(), Some(Pending::Execute)) =>
            {
                self.pending.pop_front();
            }
            _ => {}
        }
        Verdict::Forward
    }

    /// The server rejected the request at the front of an extended-protocol batch and skips the
    /// rest up to Sync: those requests get no answer, and Parses among them never happened.
    fn skip_to_sync(&mut self, mut undo: impl FnMut(Undo)) {
        while let Some(p) = self.pending.front() {
            if matches!(p, Pending::Sync) {
                return;
            }
            let p = self.pending.pop_front().expect("front exists");
            hand_back(p, &mut undo);
        }
        // No Sync sent yet: the server drops everything until one comes; so do we.
        self.discard_until_sync = true;
    }

    /// A renamed Bind met a stale plan: the server skips to Sync, and so do the requests (what
    /// they did is handed back: the replay sends them again); that Sync's ReadyForQuery starts
    /// the replay.
    fn replay_from_sync(&mut self, mut undo: impl FnMut(Undo)) {
        while let Some(p) = self.pending.pop_front() {
            if matches!(p, Pending::Sync) {
                self.pending.push_front(Pending::ReplaySync);
                return;
            }
            hand_back(p, &mut undo);
        }
        self.discard_until_sync = true;
        self.replay_at_sync = true;
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
            // The client already ended the COPY: the Syncs before its CopyDone get no reply, and
            // the marker itself is used up.
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

    /// The client still waits for an answer to something it sent.
    pub fn awaiting_reply(&self) -> bool {
        self.unsynced || self.pending.iter().any(|e| !matches!(e, Pending::CopyEnd))
    }

    /// The protocol half of the release rule: nothing owed, no COPY under way, and the last
    /// ReadyForQuery said idle outside a transaction. (The session adds the bytes half, see
    /// `Session::at_clean_point`.)
    pub fn is_clean(&self) -> bool {
        self.tx_status == b'I' && !self.awaiting_reply() && !self.in_copy_in
    }

    /// Requests are still queued (more answers will come before the client is idle).
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    pub fn tx_status(&self) -> u8 {
        self.tx_status
    }

    /// Extended-protocol messages were sent since the last Sync.
    pub fn unsynced(&self) -> bool {
        self.unsynced
    }

    pub fn in_copy_in(&self) -> bool {
        self.in_copy_in
    }

    /// Whether `out`, what the client is owed so far, should wait for the server's next reply
    /// instead of going out on its own: it is only ParseComplete and CloseComplete messages (a
    /// statement the server connection already had, answered by sluice), and the server owes the
    /// rest of a batch that ended in Sync. PostgreSQL writes a batch's answers together when it
    /// reaches the Sync; answering the Parse at once cost a second write to the client and a
    /// second wake-up of the client per transaction (pgbench -M extended with
    /// cache_unnamed_statements: 3.0 sendto per transaction instead of 2.0, strace, 2026-12-03).
    /// After a Flush (no Sync yet) they go out at once: the client may be waiting for them.
    #[inline]
    pub fn holds_back(&self, out: &[u8]) -> bool {
        const COMPLETE: usize = 5;
        !out.is_empty()
            && out.len() <= 8 * COMPLETE
            && out.len() % COMPLETE == 0
            && !self.unsynced
            && self.pending.iter().any(|e| matches!(e, Pending::Sync))
            && out
                .chunks_exact(COMPLETE)
                .all(|m| matches!(m, [b'1' | b'3', 0, 0, 0, 4]))
    }

    /// Writes the answers sluice owes that have reached the front. Called after every message
    /// either way, so the common case (none owed) is an inlined look at the front.
    #[inline]
    pub fn emit_local(&mut self, out: &mut BytesMut) {
        if matches!(
            self.pending.front(),
            Some(
                Pending::Parse {
                    answer: Answer::Local,
                    ..
                } | Pending::Close {
                    answer: Answer::Local,
                    ..
                } | Pending::LocalCommand(_)
                    | Pending::CopyEnd
            )
        ) {
            self.emit_local_owed(out);
        }
    }

    fn emit_local_owed(&mut self, out: &mut BytesMut) {
        loop {
            match self.pending.front() {
                Some(Pending::Parse {
                    answer: Answer::Local,
                    ..
                }) => backend::parse_complete(out),
                Some(Pending::Close {
                    answer: Answer::Local,
                    ..
                }) => backend::close_complete(out),
                Some(Pending::LocalCommand(tag)) => {
                    backend::command_complete(tag, out);
                    backend::ready_for_query(self.tx_status, out);
                }
                Some(Pending::CopyEnd) => {}
                _ => return,
            }
            self.pending.pop_front();
        }
    }

    /// Answers a request sluice cannot run (no server) with `err`, as PostgreSQL answers a failed
    /// one: a Query, Sync or FunctionCall gets the error and ReadyForQuery; an extended-protocol
    /// message gets the error, and the rest of its batch up to Sync is dropped.
    pub fn fail_request(&mut self, ends_at_ready: bool, err: &ErrorResponse, out: &mut BytesMut) {
        err.write(out);
        if ends_at_ready {
            self.unsynced = false;
            backend::ready_for_query(b'I', out);
        } else {
            self.discard_until_sync = true;
        }
    }

    /// An error sluice raises itself inside an extended-protocol batch, answered in order: the
    /// server is sent a Describe bound to fail (`to_server`), whose error is replaced by `err`;
    /// then the rest of the batch up to Sync is dropped, as PostgreSQL does after an error.
    pub fn fail_locally(&mut self, err: &ErrorResponse, to_server: &mut BytesMut) {
        let mut ours = BytesMut::new();
        err.write(&mut ours);
        // No client statement is ever prepared on a server under this name (they are all
        // `sluice_<id>`), so describing it fails with 26000.
        sluice_proto::frontend::Describe::write(b'S', "sluice: failing on purpose", to_server);
        self.sent(Pending::FailWith(ours.freeze()));
    }

    /// The server connection failed. Every request that ends at a ReadyForQuery gets `err` (or
    /// just its ReadyForQuery when the batch already had an error) and ReadyForQuery, as after
    /// a failed request; an open extended batch gets `err` and is dropped up to Sync. Returns
    /// true when nothing was owed but the client is in a transaction: its next request must fail.
    /// Everything else is forgotten as by [`Exchange::forget`].
    pub fn server_lost(
        &mut self,
        err: &ErrorResponse,
        out: &mut BytesMut,
        undo: impl FnMut(Undo),
    ) -> bool {
        let owed = self.pending.iter().filter(|e| e.ends_at_ready()).count();
        for i in 0..owed {
            if !(i == 0 && self.batch_error_seen) {
                err.write(out);
            }
            backend::ready_for_query(b'I', out);
        }
        let mut idle_in_tx = false;
        let discard = if self.unsynced {
            if owed == 0 {
                err.write(out);
            }
            true
        } else {
            idle_in_tx = owed == 0 && self.tx_status != b'I';
            false
        };
        self.forget(undo);
        self.discard_until_sync = discard;
        idle_in_tx
    }

    /// Drops what was under way with a server that is gone (or given up): the requests it owed
    /// answers to (their effects handed back as undos) and its transaction state.
    pub fn forget(&mut self, mut undo: impl FnMut(Undo)) {
        for p in std::mem::take(&mut self.pending) {
            hand_back(p, &mut undo);
        }
        self.unsynced = false;
        self.in_copy_in = false;
        self.tx_status = b'I';
        self.batch_error_seen = false;
        self.discard_until_sync = false;
        self.replay_at_sync = false;
    }

    /// Requests sent that end with a ReadyForQuery from the server and have not had it.
    pub fn owed_ready(&self) -> u32 {
        self.pending.iter().filter(|p| p.ends_at_ready()).count() as u32
    }

    /// Executes sent since the last request that ends with a ReadyForQuery, not answered yet.
    pub fn open_executes(&self) -> u32 {
        self.pending
            .iter()
            .rev()
            .take_while(|p| !p.ends_at_ready())
            .filter(|p| matches!(p, Pending::Execute))
            .count() as u32
    }

    /// A server connection was attached: it is idle outside a transaction.
    pub fn attached(&mut self) {
        self.tx_status = b'I';
        self.batch_error_seen = false;
    }

    /// The server connection went back to its pool at a clean point.
    pub fn released(&mut self) {
        self.pending.clear();
    }
}

/// Hands what a request that never happened had done to `undo`.
fn hand_back(p: Pending, undo: &mut impl FnMut(Undo)) {
    if let Pending::Sql(mut rw) = p {
        rw.hand_back(undo);
        return;
    }
    if let Pending::Parse { undo: u, .. } | Pending::Close { undo: u, .. } = p {
        if !u.is_nothing() {
            undo(u);
        }
    }
}

fn forwarded(answer: Answer) -> Verdict {
    if answer == Answer::Server {
        Verdict::Forward
    } else {
        Verdict::Drop
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_proto::sqlstate;

    fn ex() -> Exchange {
        Exchange::default()
    }

    fn parse(answer: Answer) -> Pending {
        Pending::Parse {
            answer,
            undo: Undo::default(),
        }
    }

    /// Client sends Parse/Bind/Execute/Sync; the server answers each: clean at the end.
    #[test]
    fn extended_batch_is_clean_after_ready() {
        let mut e = ex();
        for p in [parse(Answer::Server), Pending::Bind, Pending::Execute] {
            e.sent(p);
        }
        assert!(e.unsynced() && !e.is_clean());
        e.sent(Pending::Sync);
        assert!(!e.unsynced() && e.awaiting_reply());
        assert_eq!(
            e.on_reply(BackendTag::ParseComplete, b"", drop),
            Verdict::Forward
        );
        assert_eq!(
            e.on_reply(BackendTag::BindComplete, b"", drop),
            Verdict::Forward
        );
        assert_eq!(e.on_reply(BackendTag::DataRow, b"", drop), Verdict::Forward);
        assert_eq!(
            e.on_reply(BackendTag::CommandComplete, b"SELECT 1\0", drop),
            Verdict::Forward
        );
        assert!(!e.is_clean());
        assert_eq!(
            e.on_reply(BackendTag::ReadyForQuery, b"I", drop),
            Verdict::Forward
        );
        assert!(e.is_clean());
    }

    /// A batch answered before its Sync (the client sent Flush) is still open: no clean point
    /// until the Sync's ReadyForQuery.
    #[test]
    fn batch_is_open_until_sync() {
        let mut e = ex();
        e.sent(parse(Answer::Server));
        assert_eq!(
            e.on_reply(BackendTag::ParseComplete, b"", drop),
            Verdict::Forward
        );
        assert!(!e.is_clean(), "no Sync yet");
        e.sent(Pending::Sync);
        e.on_reply(BackendTag::ReadyForQuery, b"I", drop);
        assert!(e.is_clean());
    }

    /// An error in the middle of a pipeline: the server skips to Sync, and so does the exchange;
    /// what the skipped requests had done comes back as undos.
    #[test]
    fn error_mid_pipeline_skips_to_sync() {
        let mut e = ex();
        e.sent(Pending::Bind);
        e.sent(Pending::Execute);
        e.sent(Pending::Close {
            answer: Answer::Server,
            undo: Undo::evicted(7),
        });
        e.sent(Pending::Sync);
        e.sent(Pending::Query);
        let mut undone = 0;
        let verdict = e.on_reply(BackendTag::ErrorResponse, b"SERROR\0\0", |_| undone += 1);
        assert_eq!(verdict, Verdict::Forward);
        assert_eq!(undone, 1, "the skipped Close's eviction comes back");
        // Sync's ReadyForQuery, then the Query is still owed.
        e.on_reply(BackendTag::ReadyForQuery, b"I", drop);
        assert!(!e.is_clean());
        e.on_reply(BackendTag::CommandComplete, b"SELECT 1\0", drop);
        e.on_reply(BackendTag::ReadyForQuery, b"I", drop);
        assert!(e.is_clean());
        assert!(!e.discarding());
    }

    /// An error before the client sent its Sync: its messages up to Sync are dropped.
    #[test]
    fn error_before_sync_discards_client_messages() {
        let mut e = ex();
        e.sent(Pending::Bind);
        e.on_reply(BackendTag::ErrorResponse, b"SERROR\0\0", drop);
        assert!(e.discarding());
        assert!(!e.accept_from_client(false), "Execute is dropped");
        assert!(e.accept_from_client(true), "Sync goes through");
        e.sent(Pending::Sync);
        e.on_reply(BackendTag::ReadyForQuery, b"E", drop);
        assert!(!e.is_clean(), "failed transaction");
    }

    /// Replies to statements sluice inserted are dropped; local answers are written in order.
    #[test]
    fn inserted_and_local_answers() {
        let mut e = ex();
        e.sent(parse(Answer::Swallow));
        e.sent(Pending::Bind);
        e.sent(parse(Answer::Local));
        e.sent(Pending::Sync);
        assert_eq!(
            e.on_reply(BackendTag::ParseComplete, b"", drop),
            Verdict::Drop
        );
        assert_eq!(
            e.on_reply(BackendTag::BindComplete, b"", drop),
            Verdict::Forward
        );
        let mut out = BytesMut::new();
        e.emit_local(&mut out);
        assert_eq!(&out[..], b"1\0\0\0\x04", "ParseComplete written locally");
        e.on_reply(BackendTag::ReadyForQuery, b"I", drop);
        assert!(e.is_clean());
    }

    /// A locally answered Parse waits for the rest of its batch's answers when the batch ended
    /// in Sync (one write, as PostgreSQL's), and goes at once after a Flush or with nothing owed.
    #[test]
    fn local_completions_wait_for_the_batch() {
        let mut e = ex();
        let mut out = BytesMut::new();
        e.sent(parse(Answer::Local));
        e.emit_local(&mut out);
        assert_eq!(&out[..], b"1\0\0\0\x04");
        assert!(!e.holds_back(&out), "nothing owed yet: the Parse alone");
        e.sent(Pending::Bind);
        assert!(
            !e.holds_back(&out),
            "the batch is open (no Sync): the client may Flush"
        );
        e.sent_extended();
        assert!(!e.holds_back(&out), "after a Flush it goes out");
        e.sent(Pending::Sync);
        assert!(
            e.holds_back(&out),
            "the server owes the batch: wait for its answer"
        );
        backend::close_complete(&mut out);
        assert!(e.holds_back(&out), "CloseComplete too");
        out.extend_from_slice(b"2\0\0\0\x04");
        assert!(
            !e.holds_back(&out),
            "the server's BindComplete is there: all go out"
        );
        assert!(!e.holds_back(b""));
        e.on_reply(BackendTag::BindComplete, b"", drop);
        e.on_reply(BackendTag::ReadyForQuery, b"I", drop);
        assert!(!e.holds_back(b"1\0\0\0\x04"), "nothing owed any more");
    }

    /// sluice's error in a batch replaces the server's error for the failing Describe.
    #[test]
    fn local_error_replaces_the_servers() {
        let mut e = ex();
        let mut to_server = BytesMut::new();
        let err = ErrorResponse::error(sqlstate::INVALID_SQL_STATEMENT_NAME, "nope");
        e.fail_locally(&err, &mut to_server);
        assert_eq!(to_server[0], b'D');
        assert!(e.discarding() && e.unsynced());
        assert!(e.accept_from_client(true));
        e.sent(Pending::Sync);
        match e.on_reply(BackendTag::ErrorResponse, b"SERROR\0C26000\0\0", drop) {
            Verdict::Replace(b) => {
                let mut mine = BytesMut::new();
                err.write(&mut mine);
                assert_eq!(b, mine.freeze());
            }
            v => panic!("expected Replace, got {v:?}"),
        }
        e.on_reply(BackendTag::ReadyForQuery, b"I", drop);
        assert!(e.is_clean());
    }

    /// Extended COPY FROM STDIN: Syncs sent during it get no ReadyForQuery.
    #[test]
    fn extended_copy_in_with_syncs() {
        let mut e = ex();
        e.sent(Pending::Bind);
        e.sent(Pending::Execute);
        e.sent(Pending::Sync);
        e.on_reply(BackendTag::BindComplete, b"", drop);
        e.on_reply(BackendTag::CopyInResponse, b"", drop);
        assert!(e.in_copy_in());
        // A Sync during COPY: the server ignores it.
        e.sent(Pending::Sync);
        e.sent(Pending::CopyEnd);
        assert!(!e.in_copy_in());
        e.sent(Pending::Sync);
        e.on_reply(BackendTag::CommandComplete, b"COPY 3\0", drop);
        assert!(!e.is_clean());
        e.on_reply(BackendTag::ReadyForQuery, b"I", drop);
        assert!(e.is_clean(), "one ReadyForQuery ends it");
    }

    /// The client ended the COPY before the server said it began.
    #[test]
    fn copy_end_before_copy_in_response() {
        let mut e = ex();
        e.sent(Pending::Bind);
        e.sent(Pending::Execute);
        e.sent(Pending::Sync);
        e.sent(Pending::CopyEnd);
        e.sent(Pending::Sync);
        e.on_reply(BackendTag::BindComplete, b"", drop);
        e.on_reply(BackendTag::CopyInResponse, b"", drop);
        assert!(!e.in_copy_in());
        e.on_reply(BackendTag::CommandComplete, b"COPY 0\0", drop);
        e.on_reply(BackendTag::ReadyForQuery, b"I", drop);
        assert!(e.is_clean());
    }

    /// Simple COPY FROM STDIN: the Query ends at its ReadyForQuery.
    #[test]
    fn simple_copy_in() {
        let mut e = ex();
        e.sent(Pending::Query);
        e.on_reply(BackendTag::CopyInResponse, b"", drop);
        assert!(!e.in_copy_in(), "simple protocol has no Syncs to ignore");
        e.sent(Pending::CopyEnd);
        e.on_reply(BackendTag::CommandComplete, b"COPY 1\0", drop);
        e.on_reply(BackendTag::ReadyForQuery, b"I", drop);
        assert!(e.is_clean());
    }

    /// A FunctionCall ends at ReadyForQuery like a Query.
    #[test]
    fn function_call() {
        let mut e = ex();
        e.sent(Pending::Call);
        assert!(!e.is_clean());
        e.on_reply(BackendTag::FunctionCallResponse, b"", drop);
        e.on_reply(BackendTag::ReadyForQuery, b"I", drop);
        assert!(e.is_clean());
    }

    /// A transaction left open is not a clean point.
    #[test]
    fn open_transaction_is_not_clean() {
        let mut e = ex();
        e.sent(Pending::Query);
        e.on_reply(BackendTag::CommandComplete, b"BEGIN\0", drop);
        e.on_reply(BackendTag::ReadyForQuery, b"T", drop);
        assert!(!e.is_clean());
        e.sent(Pending::Query);
        e.on_reply(BackendTag::ReadyForQuery, b"I", drop);
        assert!(e.is_clean());
    }

    /// An error nobody asked for is held, not forwarded.
    #[test]
    fn unasked_error() {
        let mut e = ex();
        assert_eq!(
            e.on_reply(BackendTag::ErrorResponse, b"SFATAL\0\0", drop),
            Verdict::Unasked
        );
    }

    /// A DEALLOCATE answered locally with a server attached waits its turn.
    #[test]
    fn local_command_in_order() {
        let mut e = ex();
        e.sent(Pending::Query);
        e.sent(Pending::LocalCommand("DEALLOCATE"));
        let mut out = BytesMut::new();
        e.emit_local(&mut out);
        assert!(out.is_empty(), "the Query's answer comes first");
        e.on_reply(BackendTag::ReadyForQuery, b"I", drop);
        e.emit_local(&mut out);
        assert_eq!(out[0], b'C');
        assert!(e.is_clean());
    }

    /// The server is lost mid-batch: each owed ReadyForQuery is answered with the error, and an
    /// open batch is dropped up to Sync.
    #[test]
    fn server_lost_mid_batch() {
        let err = ErrorResponse::error(sqlstate::CONNECTION_FAILURE, "lost");
        let mut e = ex();
        e.sent(Pending::Query);
        e.sent(Pending::Query);
        let mut out = BytesMut::new();
        assert!(!e.server_lost(&err, &mut out, drop));
        let zs = out.windows(6).filter(|w| w == b"Z\0\0\0\x05I").count();
        assert_eq!(zs, 2);
        assert!(e.is_clean() && !e.discarding());

        let mut e = ex();
        e.sent(parse(Answer::Server));
        let mut out = BytesMut::new();
        e.server_lost(&err, &mut out, drop);
        assert_eq!(out[0], b'E');
        assert!(e.discarding(), "the rest of the batch is dropped");
    }

    /// Lost while idle in a transaction: the next request must fail.
    #[test]
    fn server_lost_idle_in_transaction() {
        let err = ErrorResponse::error(sqlstate::CONNECTION_FAILURE, "lost");
        let mut e = ex();
        e.sent(Pending::Query);
        e.on_reply(BackendTag::ReadyForQuery, b"T", drop);
        let mut out = BytesMut::new();
        assert!(e.server_lost(&err, &mut out, drop));
        assert!(out.is_empty());
    }

    /// A failed request without a server is answered as PostgreSQL answers one.
    #[test]
    fn fail_request_without_server() {
        let err = ErrorResponse::error(sqlstate::QUERY_CANCELED, "timeout");
        let mut e = ex();
        let mut out = BytesMut::new();
        e.fail_request(true, &err, &mut out);
        assert_eq!(&out[out.len() - 6..], b"Z\0\0\0\x05I");
        let mut e = ex();
        e.sent_extended();
        e.fail_request(false, &err, &mut BytesMut::new());
        assert!(e.discarding());
    }

    /// An error body with SQLSTATE `code`.
    fn error_body(code: &str) -> Vec<u8> {
        format!("SERROR\0C{code}\0Mcached plan must not change result type\0\0").into_bytes()
    }

    /// A stale plan (0A000) at a renamed Bind whose Sync was already sent: the error is dropped,
    /// the requests skipped to Sync are handed back, and that Sync's ReadyForQuery starts the
    /// replay instead of reaching the client.
    #[test]
    fn stale_plan_at_a_cached_bind_replays_at_the_sync() {
        let mut e = ex();
        e.sent(Pending::CachedBind(7));
        e.sent(Pending::Execute);
        e.sent(Pending::Sync);
        let mut undone = 0;
        let v = e.on_reply(BackendTag::ErrorResponse, &error_body("0A000"), |_| {
            undone += 1
        });
        assert_eq!(v, Verdict::Stale(7));
        assert_eq!(undone, 0, "nothing to take back from a Bind and an Execute");
        assert!(!e.discarding(), "the Sync is in: nothing to drop");
        assert_eq!(
            e.on_reply(BackendTag::ReadyForQuery, b"I", drop),
            Verdict::Replay
        );
        assert!(!e.has_pending());
    }

    /// The same before the client's Sync arrived: the batch's rest is dropped up to that Sync,
    /// whose ReadyForQuery then starts the replay.
    #[test]
    fn stale_plan_before_the_sync() {
        let mut e = ex();
        e.sent(Pending::CachedBind(3));
        assert_eq!(
            e.on_reply(BackendTag::ErrorResponse, &error_body("0A000"), drop),
            Verdict::Stale(3)
        );
        assert!(!e.accept_from_client(false), "Execute dropped");
        assert!(e.accept_from_client(true));
        e.sent(Pending::Sync);
        assert_eq!(
            e.on_reply(BackendTag::ReadyForQuery, b"I", drop),
            Verdict::Replay
        );
        // The next batch is ordinary again.
        e.sent(Pending::Sync);
        assert_eq!(
            e.on_reply(BackendTag::ReadyForQuery, b"I", drop),
            Verdict::Forward
        );
    }

    /// Any other error at a renamed Bind is the client's, as at any Bind.
    #[test]
    fn other_errors_at_a_cached_bind_are_forwarded() {
        let mut e = ex();
        e.sent(Pending::CachedBind(1));
        e.sent(Pending::Sync);
        assert_eq!(
            e.on_reply(BackendTag::ErrorResponse, &error_body("22P02"), drop),
            Verdict::Forward
        );
        assert_eq!(
            e.on_reply(BackendTag::ReadyForQuery, b"I", drop),
            Verdict::Forward
        );
        // And a BindComplete ends it like a Bind's.
        e.sent(Pending::CachedBind(1));
        e.on_reply(BackendTag::BindComplete, b"", drop);
        assert!(!e.has_pending());
    }
}
