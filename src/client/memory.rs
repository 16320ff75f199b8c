//! Large messages and the process-wide budget of `max_message_memory`.
//!
//! A message over [`LARGE`] that must be held whole (a client's Query, Parse, Bind...; a server's
//! ErrorResponse, RowDescription...) takes room in [`Limits::messages`] before its bytes are read:
//! the relay stops reading from that side until the room is there. If it is not there within
//! `query_wait_timeout`, a client's message ends the client with 53200; a server's ends the server
//! connection (the client gets 08006, as on any server loss). A session holds one reservation, as
//! large as its largest message under way, and gives it back once its buffers are small again;
//! it never waits while holding one (no deadlock between sessions). Smaller messages are bounded
//! per session by the relay's backpressure (`HIGH_WATER`) and need no accounting.
//!
//! [`Limits::messages`]: crate::shared::Limits

use sluice_proto::sqlstate;

use super::Fatal;
use super::session::Session;
use crate::metrics::Refusal;

/// Messages over this many bytes (wire length) count against `max_message_memory`; room is
/// taken in units of this size.
pub(super) const LARGE: usize = 64 * 1024;
/// A session's buffers are "small again" when none has more capacity than this: what the relay's
/// backpressure allows for streamed data, plus a read chunk.
const SMALL_AGAIN: usize = 256 * 1024 + 16 * 1024;

/// Units of [`LARGE`] bytes for a message of `len` bytes (a session keeps the count in two bytes:
/// every byte of a session is multiplied by `max_client_conn`).
fn units(len: usize) -> u16 {
    u16::try_from(len.div_ceil(LARGE)).unwrap_or(u16::MAX)
}

impl Session {
    /// Whether a held-whole message of `len` bytes needs more room than this session holds.
    #[inline]
    pub(super) fn needs_room(&self, len: usize) -> bool {
        len > LARGE && units(len) > self.held_units
    }

    /// Takes room for a message of `len` bytes, waiting up to `query_wait_timeout`. False if
    /// there was none in time. Whatever room the session held is given back first: it never
    /// waits while holding some.
    pub(super) async fn take_room(&mut self, len: usize) -> bool {
        self.give_room();
        let units = units(len);
        let wait = self.pool.settings.query_wait_timeout;
        if !self
            .limits
            .messages
            .take(units as usize * LARGE, wait)
            .await
        {
            return false;
        }
        self.held_units = units;
        true
    }

    /// Takes room for a message of `len` bytes if there is some now.
    pub(super) fn try_room(&mut self, len: usize) -> bool {
        self.give_room();
        let units = units(len);
        if !self.limits.messages.try_take(units as usize * LARGE) {
            return false;
        }
        self.held_units = units;
        true
    }

    /// The length of the server message the relay waits to have room for.
    pub(super) fn wanted_room(&self) -> usize {
        sluice_proto::Header::parse(&self.bufs.srv_in, usize::MAX)
            .ok()
            .flatten()
            .map_or(0, |h| h.wire_len())
    }

    /// A client's message of `len` bytes found no room: the error that ends the client.
    pub(super) fn no_room(&self, len: usize) -> Fatal {
        Fatal::new(
            sqlstate::OUT_OF_MEMORY,
            format!(
                "out of memory for messages: a message of {len} bytes found no room under max_message_memory ({} bytes) within query_wait_timeout",
                self.limits.messages.cap()
            ),
        )
    }

    /// A server's message found no room: counted, and the caller gives up the connection.
    pub(super) fn server_no_room(&self, len: usize) {
        let key = &self.pool.key;
        self.limits.incidents.refused(Refusal::MessageMemory, || {
            format!("pool {key}: a server message of {len} bytes found no room")
        });
    }

    /// Gives the room back once the session's buffers are small again.
    #[inline]
    pub(super) fn give_room_if_small(&mut self) {
        if self.held_units > 0 && self.bufs.all().iter().all(|b| b.capacity() <= SMALL_AGAIN) {
            self.give_room();
        }
    }

    pub(super) fn give_room(&mut self) {
        if self.held_units > 0 {
            self.limits.messages.give(self.held_units as usize * LARGE);
            self.held_units = 0;
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.give_room();
    }
}
