//! A small per-thread cache of relay buffers.
//!
//! A client holds its four relay buffers only while it is busy (see `client/relay.rs`):
//! most of a pooler's clients are idle most of the time, and that keeps them small. Without a
//! cache every transaction would allocate those buffers and free them again, and promote two of
//! them to `bytes`' shared form at their first `split_to` (one more allocation each): about
//! eight allocations per transaction. A buffer given back here goes to the next client on the
//! same worker thread that becomes busy.

use std::cell::RefCell;

use bytes::BytesMut;

/// The capacity a buffer from the cache has at least.
pub const CHUNK: usize = 8 * 1024;
/// Buffers kept per thread (at most 64 x 64 KiB, usually 64 x 8 KiB).
const KEEP: usize = 64;
/// A buffer that grew past this goes back to the allocator.
const KEEP_MAX: usize = 64 * 1024;

thread_local! {
    static FREE: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
}

/// Gives `buf`, if it has no storage, a buffer of at least [`CHUNK`] bytes.
pub fn take(buf: &mut BytesMut) {
    if buf.capacity() > 0 {
        return;
    }
    if let Ok(Some(b)) = FREE.try_with(|f| f.borrow_mut().pop()) {
        *buf = b;
    }
    buf.reserve(CHUNK);
}

/// Takes `buf`'s storage back into the cache (if empty and not oversized), leaving it with none.
pub fn give(buf: &mut BytesMut) {
    if buf.capacity() == 0 {
        return;
    }
    let b = std::mem::take(buf);
    if !b.is_empty() || b.capacity() > KEEP_MAX {
        return;
    }
    let _ = FREE.try_with(|f| {
        let mut f = f.borrow_mut();
        if f.len() < KEEP {
            f.push(b);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_empty() {
        let mut a = BytesMut::new();
        take(&mut a);
        assert!(a.capacity() >= CHUNK);
        a.extend_from_slice(b"hello");
        let _ = a.split_to(2);
        a.clear();
        give(&mut a);
        assert_eq!(a.capacity(), 0);
        let mut b = BytesMut::new();
        take(&mut b);
        assert!(b.is_empty());
        assert!(b.capacity() >= CHUNK);
        // Not empty: dropped, not cached.
        b.extend_from_slice(b"x");
        give(&mut b);
        assert_eq!(b.capacity(), 0);
    }
}
