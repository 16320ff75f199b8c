//! The rarely set parts of a session, in one box: a client task keeps its session for its whole
//! life, idle or not, so what most sessions never use costs them one pointer (8 bytes), not a
//! field each (bench/README.md, "Idle client memory").
//!
//! Owns only the storage; what each part means is decided where it is used (`session.rs` for the
//! lost server, `unnamed.rs` for the unnamed-statement cache).

use super::unnamed::UnnamedSession;

#[derive(Default)]
pub(super) struct Rare {
    /// The server died while the client was idle in a transaction: the next request fails.
    pub lost: Option<String>,
    /// An ErrorResponse the server sent while nothing was asked (it is about to close).
    pub held_error: Option<String>,
    /// The unnamed-statement cache of a session that sent an unnamed Parse with
    /// `cache_unnamed_statements` on.
    pub unnamed: Option<UnnamedSession>,
}

/// `Option<Box<Rare>>` with the accessors the session uses.
#[derive(Default)]
pub(super) struct RareBox(Option<Box<Rare>>);

impl RareBox {
    fn get_mut(&mut self) -> &mut Rare {
        self.0.get_or_insert_default()
    }

    pub fn lost(&self) -> bool {
        self.0.as_deref().is_some_and(|r| r.lost.is_some())
    }

    pub fn take_lost(&mut self) -> Option<String> {
        self.0.as_deref_mut()?.lost.take()
    }

    pub fn set_lost(&mut self, why: String) {
        self.get_mut().lost = Some(why);
    }

    pub fn take_held_error(&mut self) -> Option<String> {
        self.0.as_deref_mut()?.held_error.take()
    }

    pub fn set_held_error(&mut self, message: String) {
        self.get_mut().held_error = Some(message);
    }

    /// Drops a held error, without allocating the box when there is none.
    pub fn clear_held_error(&mut self) {
        if let Some(r) = self.0.as_deref_mut() {
            r.held_error = None;
        }
    }

    /// The unnamed-statement cache, if the session has one.
    pub fn unnamed(&mut self) -> Option<&mut UnnamedSession> {
        self.0.as_deref_mut()?.unnamed.as_mut()
    }

    /// The unnamed-statement cache, made on first use.
    pub fn unnamed_or_new(&mut self) -> &mut UnnamedSession {
        self.get_mut().unnamed.get_or_insert_default()
    }
}
