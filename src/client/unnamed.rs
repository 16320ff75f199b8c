//! The session's side of `cache_unnamed_statements`: renaming a client's unnamed Parse/Bind to
//! one of sluice's server-side statements, and the replay when a renamed Bind meets a stale plan.
//! What to do is decided in [`crate::unnamed`] (no I/O); the statements are the ones of
//! [`crate::prepared`], prepared on a server connection as for named statements
//! (`statements::prepare_on_server`). See docs/unnamed-statements.md.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use sluice_proto::frontend::{self, FrontendTag};
use sluice_proto::split_cstr;

use super::exchange::{Answer, Pending};
use super::session::{Session, Step};
use super::statements::{Undo, parse_for_client, prepare_on_server};
use crate::prepared::{Statement, server_name};
use crate::unnamed::{Batch, BindPlan, Kept, Sightings};

/// One session's unnamed-statement cache (kept in the session's rare box).
#[derive(Default)]
pub(super) struct UnnamedSession {
    sightings: Sightings<Arc<Statement>>,
    /// The client's unnamed statement is this statement of sluice's (its last Parse("") was
    /// renamed), until its next Parse(""), Close of it, or simple Query.
    current: Option<Arc<Statement>>,
    batch: Batch,
    kept: Kept,
    /// A renamed Bind met a stale plan: the statement to close and prepare again on the
    /// connection before the replay.
    stale: Option<u64>,
    /// The client's next batch waits for the kept batch's answer (`Step::Wait`).
    waiting: bool,
    /// The relay should walk the client's bytes again (a replay was queued, or the wait ended).
    resume: bool,
}

impl Session {
    /// Before a client message is handled (`cache_unnamed_statements` on): keeps the messages of
    /// a batch that may be replayed, holds the client's next batch while one waits for its
    /// answer, and notes where the batch stands. `Some(step)`: the message waits.
    pub(super) fn unnamed_before(&mut self, tag: FrontendTag, msg: &Bytes) -> Option<Step> {
        let exchange = &self.exchange;
        let at_rest = || exchange.tx_status() == b'I' && !exchange.awaiting_reply();
        // Made at the session's first unnamed Parse: a client that only names its statements
        // pays one look into the rare box per message.
        let first_unnamed_parse =
            tag == FrontendTag::Parse && msg.get(sluice_proto::Header::LEN) == Some(&0);
        let u = match self.rare.unnamed() {
            Some(u) => u,
            None if first_unnamed_parse => self.rare.unnamed_or_new(),
            None => return None,
        };
        if u.kept.is_sealed() {
            // Behind a batch that may still be replayed: it must stay in order after it.
            u.waiting = true;
            self.unread(msg);
            return Some(Step::Wait);
        }
        u.kept.record(msg, tag == FrontendTag::Sync);
        match tag {
            FrontendTag::Sync => u.batch.sync(),
            FrontendTag::Parse
            | FrontendTag::Bind
            | FrontendTag::Describe
            | FrontendTag::Execute
            | FrontendTag::Close
            | FrontendTag::Flush => u.batch.begin(at_rest),
            // A simple Query destroys the unnamed statement (PostgreSQL's protocol docs).
            FrontendTag::Query => u.current = None,
            _ => {}
        }
        None
    }

    /// After a client message went to the server: a Bind, Execute, Query or FunctionCall ran
    /// something, so a stale plan later in the batch could no longer be replayed.
    pub(super) fn unnamed_sent(&mut self, tag: FrontendTag) {
        if matches!(
            tag,
            FrontendTag::Bind
                | FrontendTag::Execute
                | FrontendTag::Query
                | FrontendTag::FunctionCall
        ) {
            if let Some(u) = self.rare.unnamed() {
                u.batch.ran();
            }
        }
    }

    /// An unnamed Parse with a server attached: renamed to sluice's statement on its second
    /// sighting, at rest, when plannable. False: send it as it is.
    pub(super) fn unnamed_parse(&mut self, tail: &[u8]) -> bool {
        let Some(u) = self.rare.unnamed() else {
            return false;
        };
        u.current = None;
        let may = u.batch.may_rename_parse();
        let query = split_cstr(tail).map_or(tail, |(q, _)| q);
        let Some(slot) = u.sightings.sight(tail, query, |s| s.tail[..] == *tail) else {
            return false;
        };
        if !may {
            return false;
        }
        if slot.is_none() {
            // Over max_prepared_statement_bytes: the statement simply stays unnamed.
            *slot = self.pool.statements.intern(tail).ok();
            if let Some(stmt) = slot.as_ref() {
                let cap = self.pool.settings.max_prepared_statements;
                self.pool.statements.keep(stmt, cap);
            }
        }
        // A hash collision hands back another text's statement.
        let Some(stmt) = slot.clone().filter(|s| s.tail[..] == *tail) else {
            return false;
        };
        u.current = Some(stmt.clone());
        let pool = Self::pool_statements(&self.pool);
        let conn = &mut self
            .server
            .as_mut()
            .expect("attached")
            .conn_mut()
            .statements;
        parse_for_client(
            &pool,
            conn,
            stmt,
            None,
            &mut self.exchange,
            &mut self.bufs.to_server,
        );
        true
    }

    /// A Bind of the unnamed statement: bound to sluice's statement when the client's unnamed
    /// statement is one (see [`BindPlan`]). False: send it as it is.
    pub(super) fn unnamed_bind(&mut self, portal: &[u8], rest: &[u8], msg: &Bytes) -> bool {
        let Some(u) = self.rare.unnamed() else {
            return false;
        };
        let Some(stmt) = u.current.clone() else {
            return false;
        };
        let plan = u.batch.bind_plan();
        if plan == BindPlan::Fallback {
            self.unnamed_reparse(&stmt);
            return false;
        }
        if plan == BindPlan::Cached {
            u.kept.start(msg);
        }
        let pool = Self::pool_statements(&self.pool);
        let conn = &mut self
            .server
            .as_mut()
            .expect("attached")
            .conn_mut()
            .statements;
        if conn.touch(stmt.id) {
            pool.counters.prepared_hits.fetch_add(1, Ordering::Relaxed);
        } else {
            prepare_on_server(
                &pool,
                conn,
                &stmt,
                Answer::Swallow,
                None,
                &mut self.exchange,
                &mut self.bufs.to_server,
            );
        }
        let name = server_name(stmt.id);
        frontend::Bind::write_raw(portal, name.as_bytes(), rest, &mut self.bufs.to_server);
        self.exchange.sent(match plan {
            BindPlan::Cached => Pending::CachedBind(stmt.id),
            _ => Pending::Bind,
        });
        true
    }

    /// A Describe of the unnamed statement while it is sluice's: its text is parsed again as the
    /// server's unnamed statement first, so that the description is of the tables as they are.
    pub(super) fn unnamed_describe(&mut self) {
        if let Some(stmt) = self.rare.unnamed().and_then(|u| u.current.clone()) {
            self.unnamed_reparse(&stmt);
        }
    }

    /// A Close of the unnamed statement: it is the server's again (nothing to close of sluice's).
    pub(super) fn unnamed_closed(&mut self) {
        if let Some(u) = self.rare.unnamed() {
            u.current = None;
        }
    }

    /// Parses `stmt`'s text as the server's unnamed statement (answer swallowed).
    fn unnamed_reparse(&mut self, stmt: &Statement) {
        frontend::write_parse_tail("", &stmt.tail, &mut self.bufs.to_server);
        self.exchange.sent(Pending::Parse {
            answer: Answer::Swallow,
            undo: Undo::Nothing,
        });
    }

    /// A renamed Bind met a stale plan (0A000): the statement is prepared again before the
    /// replay.
    pub(super) fn unnamed_stale(&mut self, id: u64) {
        if let Some(u) = self.rare.unnamed() {
            u.stale = Some(id);
        }
    }

    /// The ReadyForQuery of the batch that met a stale plan: closes the stale statement on the
    /// connection and puts the kept batch back in front of the client's bytes, to run again (its
    /// Bind prepares the statement afresh). False if there was nothing to replay.
    pub(super) fn unnamed_replay(&mut self) -> bool {
        let Some(u) = self.rare.unnamed() else {
            return false;
        };
        let Some(kept) = u.kept.take() else {
            return false;
        };
        u.batch = Batch::Replay;
        u.resume = true;
        if let Some(id) = u.stale.take() {
            let conn = self.server.as_mut().expect("attached").conn_mut();
            conn.statements.remove(id);
            frontend::Close::write(b'S', &server_name(id), &mut self.bufs.to_server);
            self.exchange.sent(Pending::Close {
                answer: Answer::Swallow,
                undo: Undo::Nothing,
            });
        }
        tracing::debug!(pool = %self.pool.key, "a cached unnamed statement met a changed result type; replaying its batch");
        self.unread(&kept);
        true
    }

    /// Everything the client sent was answered: no batch can be replayed any more.
    pub(super) fn unnamed_answered(&mut self) {
        if let Some(u) = self.rare.unnamed() {
            if !u.kept.is_off() {
                u.kept.clear();
                u.resume |= u.waiting;
            }
        }
    }

    /// The server connection is gone: nothing to replay, nothing waits.
    pub(super) fn unnamed_forget(&mut self) {
        if let Some(u) = self.rare.unnamed() {
            u.kept.clear();
            u.batch = Batch::Between;
            u.stale = None;
            u.resume |= u.waiting;
        }
    }

    /// The client's next batch waits for a batch that may be replayed.
    pub(super) fn unnamed_waiting(&mut self) -> bool {
        self.rare.unnamed().is_some_and(|u| u.waiting)
    }

    /// Whether the relay should walk the client's bytes again now (a replay was queued, or the
    /// wait ended).
    pub(super) fn unnamed_resume(&mut self) -> bool {
        match self.rare.unnamed() {
            Some(u) if u.resume => {
                u.resume = false;
                u.waiting = false;
                true
            }
            _ => false,
        }
    }
}
