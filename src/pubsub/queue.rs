//! [`Queue`]: the notifications waiting for one client, with the overflow rule (no I/O).
//!
//! A client gets notifications when it is idle outside a transaction; while it is busy they wait
//! here, at most `listen_queue_size` of them. One more, and the queue has overflowed: what it held
//! is dropped, and so is every later notification, and the client's connection is ended with an
//! error (`client/listen.rs`). Why not drop the oldest and go on: the libraries that live on
//! LISTEN (job queues, cache invalidation) treat a notification as "look again"; one that silently
//! went missing leaves work unseen until their next poll, while a lost connection is what they
//! already recover from (reconnect, LISTEN again, read the table).

use std::collections::VecDeque;

use bytes::Bytes;

/// What became of a notification offered to a [`Queue`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    /// The queue overflowed now: this notification and the `dropped` ones it held are lost.
    Overflowed {
        dropped: usize,
    },
    /// The queue had overflowed before: this one is lost too.
    Dropped,
}

/// A bounded FIFO of NotificationResponse messages.
#[derive(Debug, Default)]
pub struct Queue {
    items: VecDeque<Bytes>,
    overflowed: bool,
}

impl Queue {
    pub fn push(&mut self, message: Bytes, cap: usize) -> Pushed {
        if self.overflowed {
            return Pushed::Dropped;
        }
        if self.items.len() >= cap {
            self.overflowed = true;
            let dropped = self.items.len();
            // The memory goes at once, not when the client's task gets round to it.
            self.items = VecDeque::new();
            return Pushed::Overflowed { dropped };
        }
        self.items.push_back(message);
        Pushed::Queued
    }

    /// Everything queued, oldest first.
    pub fn take(&mut self) -> VecDeque<Bytes> {
        std::mem::take(&mut self.items)
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn overflowed(&self) -> bool {
        self.overflowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_up_to_the_cap_then_overflow_for_good() {
        let mut q = Queue::default();
        for i in 0..3u8 {
            assert_eq!(q.push(Bytes::from(vec![i]), 3), Pushed::Queued);
        }
        let taken: Vec<u8> = q.take().into_iter().map(|b| b[0]).collect();
        assert_eq!(taken, [0, 1, 2], "in order");
        for i in 0..3u8 {
            q.push(Bytes::from(vec![i]), 3);
        }
        assert_eq!(
            q.push(Bytes::from_static(b"x"), 3),
            Pushed::Overflowed { dropped: 3 }
        );
        assert!(q.overflowed() && q.is_empty());
        assert_eq!(q.push(Bytes::from_static(b"y"), 3), Pushed::Dropped);
        assert!(q.is_empty());
    }
}
