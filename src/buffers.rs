//! A client's four relay buffers, held in one box while it is busy, and a small per-thread cache
//! of those boxes.
//!
//! A client holds its relay buffers only while it is busy (see `client/relay.rs`): most of a
//! pooler's clients are idle most of the time, and an idle client's [`Buffers`] is one null
//! pointer (8 bytes of its task instead of four empty `BytesMut`, 128). Without a cache every
//! transaction would allocate the buffers and free them again, and promote two of them to
//! `bytes`' shared form at their first `split_to` (one more allocation each): about eight
//! allocations per transaction. A box given back here goes, with its buffers' storage, to the next
//! client on the same worker thread that becomes busy: one take and one give per transaction.
//!
//! Storage is given lazily, so that a client waiting in a pool's queue holds one read buffer, not
//! four (a storm of 5,000 waiting clients, issue 16): a new box has none; the relay gives
//! `cli_in` storage when the client's socket is readable, and [`Buffers::for_server`] the other
//! three when a server is attached. A box from the cache keeps the storage it had: the first
//! `KEEP` waiting clients on a thread may hold four buffers, which the cache held anyway; the
//! rest of a storm holds a new box with one.

use std::cell::RefCell;
use std::ops::{Deref, DerefMut};
use std::sync::LazyLock;

use bytes::BytesMut;

/// The capacity a buffer is given when it has none.
pub const CHUNK: usize = 8 * 1024;
/// Boxes kept per thread: usually 64 x 4 x 8 KiB (2 MiB), at most 64 x 4 x 64 KiB. (16 boxes, the
/// 64 buffers the cache kept when it held them one by one, cost as many instructions per
/// transaction as that at 64 clients on a pool of 20; 64 boxes 7 % fewer: bench/README.)
const KEEP: usize = 64;
/// A buffer that grew past this goes back to the allocator (its box is kept without it).
const KEEP_MAX: usize = 64 * 1024;

/// A client's relay buffers.
#[derive(Default)]
pub struct RelayBuffers {
    /// Bytes read from the client, not processed yet.
    pub cli_in: BytesMut,
    /// Bytes owed to the client.
    pub to_client: BytesMut,
    /// Bytes read from the server, not processed yet.
    pub srv_in: BytesMut,
    /// Bytes owed to the server.
    pub to_server: BytesMut,
}

impl RelayBuffers {
    pub fn all(&self) -> [&BytesMut; 4] {
        [&self.cli_in, &self.to_client, &self.srv_in, &self.to_server]
    }

    fn all_mut(&mut self) -> [&mut BytesMut; 4] {
        [
            &mut self.cli_in,
            &mut self.to_client,
            &mut self.srv_in,
            &mut self.to_server,
        ]
    }
}

/// What an idle client's buffers read as: four empty ones.
static NONE: LazyLock<RelayBuffers> = LazyLock::new(RelayBuffers::default);

thread_local! {
    // Boxes, not the buffers inline: a client takes the box itself (no allocation, no copy).
    #[allow(clippy::vec_box)]
    static FREE: RefCell<Vec<Box<RelayBuffers>>> = const { RefCell::new(Vec::new()) };
}

/// A client's relay buffers: a box while it is busy, nothing while it is idle. Reading them while
/// idle sees four empty buffers; writing to them (`DerefMut`) takes a box from the cache first.
#[derive(Default)]
pub struct Buffers(Option<Box<RelayBuffers>>);

impl Buffers {
    /// Buffers with `cli_in` as the read buffer (what login read past the startup).
    pub fn with_read(cli_in: BytesMut) -> Buffers {
        Buffers(Some(Box::new(RelayBuffers {
            cli_in,
            ..RelayBuffers::default()
        })))
    }

    /// Whether a box is held (the client is not idle).
    pub fn held(&self) -> bool {
        self.0.is_some()
    }

    /// Gives `to_client`, `to_server` and `srv_in` storage if they have none (a server was
    /// attached).
    pub fn for_server(&mut self) {
        let b = &mut **self;
        for buf in [&mut b.to_client, &mut b.to_server, &mut b.srv_in] {
            if buf.capacity() == 0 {
                buf.reserve(CHUNK);
            }
        }
    }

    /// Gives the box back to the cache, leaving nothing (the client is idle). Buffers that still
    /// hold bytes or grew past [`KEEP_MAX`] are dropped; the box is dropped if the cache is full.
    pub fn give(&mut self) {
        let Some(mut b) = self.0.take() else {
            return;
        };
        for buf in b.all_mut() {
            if !buf.is_empty() || buf.capacity() > KEEP_MAX {
                *buf = BytesMut::new();
            }
        }
        let _ = FREE.try_with(|f| {
            let mut f = f.borrow_mut();
            if f.len() < KEEP {
                f.push(b);
            }
        });
    }
}

/// A box from the cache, or a new one without storage.
fn take() -> Box<RelayBuffers> {
    FREE.try_with(|f| f.borrow_mut().pop())
        .ok()
        .flatten()
        .unwrap_or_default()
}

impl Deref for Buffers {
    type Target = RelayBuffers;

    #[inline]
    fn deref(&self) -> &RelayBuffers {
        match &self.0 {
            Some(b) => b,
            None => &NONE,
        }
    }
}

impl DerefMut for Buffers {
    #[inline]
    fn deref_mut(&mut self) -> &mut RelayBuffers {
        self.0.get_or_insert_with(take)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_client_holds_nothing_and_reads_empty() {
        let b = Buffers::default();
        assert!(!b.held());
        assert!(b.all().iter().all(|buf| buf.is_empty()));
        assert_eq!(std::mem::size_of::<Buffers>(), 8);
    }

    #[test]
    fn boxes_are_reused_with_their_storage() {
        let mut a = Buffers::default();
        a.cli_in.reserve(CHUNK);
        a.for_server();
        assert!(a.held());
        assert!(a.all().iter().all(|buf| buf.capacity() >= CHUNK));
        a.to_client.extend_from_slice(b"hello");
        let _ = a.to_client.split_to(2);
        a.to_client.clear();
        a.give();
        assert!(!a.held());
        let mut b = Buffers::default();
        b.for_server();
        assert!(b.all().iter().all(|buf| buf.is_empty()));
        // The same storage, less the two bytes split off.
        assert_eq!(b.to_client.capacity(), CHUNK - 2);
        // Not empty, or too big: that buffer is dropped, the box kept.
        b.srv_in.extend_from_slice(b"x");
        b.to_server.reserve(2 * KEEP_MAX);
        b.give();
        let mut c = Buffers::default();
        let c = &mut *c;
        assert_eq!(c.srv_in.capacity(), 0);
        assert_eq!(c.to_server.capacity(), 0);
        assert_eq!(c.to_client.capacity(), CHUNK - 2);
    }

    #[test]
    fn a_new_box_has_no_storage_until_asked() {
        // Another thread: its cache is empty.
        std::thread::spawn(|| {
            let mut b = Buffers::default();
            b.cli_in.reserve(CHUNK);
            assert!(b.cli_in.capacity() >= CHUNK);
            assert_eq!(b.to_client.capacity(), 0);
            assert_eq!(b.srv_in.capacity(), 0);
            assert_eq!(b.to_server.capacity(), 0);
        })
        .join()
        .unwrap();
    }
}
