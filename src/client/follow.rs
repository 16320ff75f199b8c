//! The session's side of following a client's settings (transaction mode): what each request
//! will do (`router/setting.rs`) goes to the client's [`Settings`] record, and each reply that
//! completes, fails or ends a request is matched against it; a commit updates the client's
//! values and the attached server connection's record. See docs/session-state.md.

use sluice_proto::backend::BackendTag;
use sluice_proto::frontend::FrontendTag;
use sluice_proto::{frontend, split_cstr, split_sql};

use super::exchange::Pending;
use super::session::Session;
use super::settings::{Records, Settings};
use crate::config::PoolMode;
use crate::router::setting::{self, Effect};

impl Session {
    /// Parse and Close name statements and portals, whether or not a server sees them.
    pub(super) fn follow_names(&mut self, tag: FrontendTag, body: &[u8]) {
        if self.pool.settings.mode != PoolMode::Transaction {
            return;
        }
        match tag {
            FrontendTag::Parse => {
                let Some((name, tail)) = split_cstr(body) else {
                    return;
                };
                let sql = split_cstr(tail).map_or(&b""[..], |(sql, _)| sql);
                let effect = if setting::might_matter(sql, true) {
                    setting::read_statement(sql)
                } else {
                    Effect::Other
                };
                if effect != Effect::Other {
                    self.settings_mut().parsed(name, effect);
                } else if let Some(s) = self.settings.as_deref_mut() {
                    s.parsed(name, effect);
                }
            }
            FrontendTag::Close => {
                if let (Some(s), Some((&kind, rest))) =
                    (self.settings.as_deref_mut(), body.split_first())
                {
                    if let Some((name, _)) = split_cstr(rest) {
                        s.closed(kind, name);
                    }
                }
            }
            _ => {}
        }
    }

    /// The settings record, made on first use with what is already in flight.
    fn settings_mut(&mut self) -> &mut Settings {
        let (owed, open) = (self.exchange.owed_ready(), self.exchange.open_executes());
        self.settings
            .get_or_insert_with(|| Box::new(Settings::new(owed, open)))
    }

    /// A request that goes to the server: what it will do to the session's settings.
    pub(super) fn follow_request(&mut self, tag: FrontendTag, body: &[u8]) {
        let untracked = match tag {
            // A Query past max_message_size streams (relay.rs): sluice sees only its head,
            // without the closing NUL, and what the rest does to the settings is unknown.
            FrontendTag::Query => match split_sql(body) {
                None => true,
                Some((sql, _)) => {
                    let busy = self.settings.as_ref().is_some_and(|s| s.has_pending_work());
                    let mut effects = if setting::might_matter(sql, busy) {
                        setting::read_query(sql).unwrap_or_else(|| vec![(0, Effect::Untracked)])
                    } else {
                        Vec::new()
                    };
                    let before = effects.len();
                    effects.retain(|(_, e)| *e != Effect::Untracked);
                    let untracked = effects.len() != before;
                    if !effects.is_empty() || self.settings.is_some() {
                        self.settings_mut().sent_query(effects);
                    }
                    untracked
                }
            },
            FrontendTag::Bind => {
                if let Some(s) = self.settings.as_deref_mut() {
                    if let Some((portal, rest)) = split_cstr(body) {
                        if let Some((statement, _)) = split_cstr(rest) {
                            s.bound(portal, statement);
                        }
                    }
                }
                false
            }
            FrontendTag::Execute => match (self.settings.as_deref_mut(), split_cstr(body)) {
                (Some(s), Some((portal, _))) => s.executed(portal),
                _ => false,
            },
            FrontendTag::Sync => {
                if !self.exchange.in_copy_in() {
                    if let Some(s) = self.settings.as_deref_mut() {
                        s.synced();
                    }
                }
                false
            }
            FrontendTag::FunctionCall => {
                if let Some(s) = self.settings.as_deref_mut() {
                    s.sent_call();
                }
                false
            }
            _ => false,
        };
        if untracked {
            if let Some(g) = self.server.as_mut() {
                tracing::debug!(pool = %self.pool.key, "a client changed settings sluice cannot follow; its server connection will be closed");
                g.conn_mut().settings_unknown = true;
            }
        }
    }

    /// A reply that may complete, fail or end a request (the settings record is there).
    pub(super) fn follow_reply(&mut self, tag: BackendTag, body: &[u8]) {
        let Some(s) = self.settings.as_deref_mut() else {
            return;
        };
        let records = Records {
            client: &mut self.wanted,
            login: &self.login,
            server: self.server.as_mut().map(|g| &mut g.conn_mut().params),
        };
        let apart = match tag {
            BackendTag::CommandComplete => {
                let tag = body.strip_suffix(b"\0").unwrap_or(body);
                s.completed(Some(tag), records)
            }
            BackendTag::EmptyQueryResponse | BackendTag::PortalSuspended => {
                s.completed(None, records)
            }
            BackendTag::ErrorResponse => {
                s.failed();
                false
            }
            BackendTag::ReadyForQuery => s.ready(body.first().copied().unwrap_or(b'I'), records),
            _ => false,
        };
        s.resync |= apart;
        if s.is_idle() {
            self.settings = None;
        }
    }

    /// Brings the attached server to the client's values again (after a reset to a login value).
    pub(super) fn resync(&mut self) {
        if let Some(s) = self.settings.as_deref_mut() {
            s.resync = false;
        }
        let Some(guard) = self.server.as_mut() else {
            return;
        };
        let conn = guard.conn_mut();
        if let Some(sql) = conn.params.sync_sql(&self.wanted) {
            frontend::write_query(&sql, &mut self.bufs.to_server);
            conn.params.note_synced(&self.wanted);
            self.exchange.sent(Pending::Internal);
            conn.in_sync = None;
        }
    }
}
