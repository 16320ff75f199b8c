//! The checkout and the hand-off.
//!
//! A checkout takes an idle connection (most recently used first), or, under `size`, takes a
//! *slot* and connects, or else queues as a waiter. Waiters are served first come, first served:
//! a returned connection, or a freed slot, is handed straight to the oldest waiter over a
//! oneshot channel, inside its guard (see `guard.rs` for why that makes a give-up safe).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::guard::{ServerGuard, Slot};
use super::outage::Ticket;
use super::wait_watch::Waiter;
use super::{Pool, ServerCap};
use crate::metrics::CloseReason;
use crate::server::{ConnectError, ServerConn};

/// Why a checkout failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CheckoutError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("no server connection available within {0:?} (query_wait_timeout)")]
    Timeout(Duration),
}

pub(super) enum Take {
    Conn(Box<ServerConn>),
    Slot(Slot),
    /// Queued: the receiver and when it started waiting.
    Wait(oneshot::Receiver<Handoff>, Instant),
    /// Under `size`, but a cap across pools is reached (`caps.rs`).
    Cap(Arc<ServerCap>),
}

pub(super) enum Handoff {
    Conn(ServerGuard),
    Slot(Slot),
    /// `query_wait_timeout` passed (`wait_watch.rs`).
    TimedOut,
}

impl Pool {
    /// Changes the pool's size (RELOAD). Growing hands the new slots to waiting clients at once;
    /// shrinking closes connections as they come back until the pool fits.
    pub fn set_size(self: &Arc<Self>, size: usize) {
        let mut st = self.state();
        self.size.store(size, Ordering::Relaxed);
        while st.open < size {
            if st.waiters.is_empty() || self.acquire_caps().is_err() {
                break;
            }
            let Some(Waiter { tx, .. }) = st.waiters.pop_front() else {
                break;
            };
            st.open += 1;
            if let Err(Handoff::Slot(mut back)) =
                tx.send(Handoff::Slot(Slot::new(self.clone(), None)))
            {
                // That waiter gave up: the slot is not used after all.
                back.pool = None;
                st.open -= 1;
                self.release_caps();
            }
        }
        while st.open > size {
            let Some(conn) = st.idle.pop() else {
                break;
            };
            st.open -= 1;
            self.release_caps();
            self.counters.closed(CloseReason::Admin);
            drop(conn);
        }
    }

    /// Waits up to `wait` for a server connection.
    /// While the pool is PAUSEd (admin console) the checkout waits for RESUME, within `wait`.
    pub async fn checkout(self: &Arc<Self>, wait: Duration) -> Result<ServerGuard, CheckoutError> {
        // Fast path, most checkouts under load: an idle connection is there. No timer is armed and
        // no clock read (arming and cancelling a timeout costs more than the rest of a checkout).
        let mut first = None;
        if !self.pause.is_set() {
            match self.try_take(wait)? {
                Take::Conn(mut conn) => {
                    if !self.must_check(&conn) && conn.is_alive() {
                        self.counters.waited(Duration::ZERO);
                        return Ok(ServerGuard::new(self.clone(), conn));
                    }
                    first = Some(Take::Conn(conn));
                }
                // Queued, the usual wait under load: the pool's watch times it out
                // (`wait_watch.rs`), no timer of its own.
                Take::Wait(rx, since) => {
                    return Box::pin(self.wait_in_queue(rx, since, wait)).await;
                }
                take => first = Some(take),
            }
        }
        // Boxed: the timer and the wait make a big future, and only waiting checkouts need it.
        Box::pin(self.checkout_wait(Instant::now(), wait, wait, first)).await
    }

    /// A checkout queued by the fast path: what the queue hands it. A connection that turns out
    /// dead, or a slot to connect with, goes on within what is left of `wait`, with a timer.
    async fn wait_in_queue(
        self: &Arc<Self>,
        rx: oneshot::Receiver<Handoff>,
        since: Instant,
        wait: Duration,
    ) -> Result<ServerGuard, CheckoutError> {
        let first = match rx.await {
            Ok(Handoff::Conn(mut guard)) => {
                if guard.conn_mut().is_alive() {
                    self.counters.waited(since.elapsed());
                    return Ok(guard);
                }
                drop_dead(guard);
                None
            }
            Ok(Handoff::Slot(slot)) => Some(Take::Slot(slot)),
            Ok(Handoff::TimedOut) => {
                self.counters.wait_timeouts.fetch_add(1, Ordering::Relaxed);
                self.counters.waited(since.elapsed());
                return Err(CheckoutError::Timeout(wait));
            }
            // The pool dropped our sender without an answer: cannot happen while the pool
            // lives, but trying again is always safe.
            Err(_) => None,
        };
        let left = wait.saturating_sub(since.elapsed());
        self.checkout_wait(since, wait, left, first).await
    }

    /// A checkout that may have to wait, within `left` (of `wait`, begun at `started`).
    async fn checkout_wait(
        self: &Arc<Self>,
        started: Instant,
        wait: Duration,
        left: Duration,
        first: Option<Take>,
    ) -> Result<ServerGuard, CheckoutError> {
        let checkout = async {
            if first.is_none() {
                self.pause.wait().await;
            }
            self.checkout_inner(first, wait).await
        };
        let r = match tokio::time::timeout(left, checkout).await {
            Ok(r) => r,
            Err(_) => Err(CheckoutError::Timeout(wait)),
        };
        match &r {
            Ok(_) => self.counters.waited(started.elapsed()),
            Err(CheckoutError::Timeout(_)) => {
                self.counters.wait_timeouts.fetch_add(1, Ordering::Relaxed);
                self.counters.waited(started.elapsed());
            }
            Err(_) => {}
        }
        r
    }

    /// `first`: what the fast path already took, if anything.
    async fn checkout_inner(
        self: &Arc<Self>,
        mut first: Option<Take>,
        wait: Duration,
    ) -> Result<ServerGuard, CheckoutError> {
        loop {
            let take = match first.take() {
                Some(t) => t,
                None => self.try_take(wait)?,
            };
            let slot = match take {
                Take::Conn(mut conn) => {
                    // Its slot, ours to reconnect with if it turns out dead (if the pool's outage
                    // state admits it), and given back if this checkout is dropped during the check.
                    let mut slot = Slot::new(self.clone(), None);
                    let dead = if !conn.is_alive() {
                        "closed by the server".to_owned()
                    } else if !self.must_check(&conn) {
                        slot.pool = None;
                        return Ok(ServerGuard::new(self.clone(), conn));
                    } else {
                        // Boxed: rare, and its future would make every checkout future bigger.
                        let wait = self.settings.connect_timeout;
                        match Box::pin(crate::server::check(&mut conn, wait)).await {
                            Ok(()) => {
                                conn.check_due = false;
                                slot.pool = None;
                                return Ok(ServerGuard::new(self.clone(), conn));
                            }
                            Err(why) => why,
                        }
                    };
                    tracing::debug!(pool = %self.key, server = conn.id, reason = %dead, "idle server connection is dead");
                    self.counters.closed(CloseReason::ServerLost);
                    drop(conn);
                    slot
                }
                Take::Slot(slot) => slot,
                Take::Wait(rx, _) => match rx.await {
                    Ok(Handoff::Conn(mut guard)) => {
                        if guard.conn_mut().is_alive() {
                            return Ok(guard);
                        }
                        drop_dead(guard);
                        continue;
                    }
                    Ok(Handoff::Slot(slot)) => slot,
                    Ok(Handoff::TimedOut) => return Err(CheckoutError::Timeout(wait)),
                    // The pool dropped our sender without an answer: cannot happen while the pool
                    // lives, but retrying is always safe.
                    Err(_) => continue,
                },
                Take::Cap(cap) => {
                    // Wake on a freed place, or on a connection of this pool coming back idle.
                    let freed = cap.freed.notified();
                    tokio::pin!(freed);
                    freed.as_mut().enable();
                    if !cap.is_full() || cap.evict_idle(self) {
                        continue;
                    }
                    freed.await;
                    continue;
                }
            };
            // Boxed: connecting is rare, and its future would otherwise make every checkout
            // future (and so every client task) that much bigger.
            return Box::pin(self.connect_with(slot)).await;
        }
    }

    /// Whether an idle connection must answer a check before it is lent (`server_check_delay`).
    #[inline]
    fn must_check(&self, conn: &ServerConn) -> bool {
        conn.check_due || self.settings.check_delay.is_zero()
    }

    /// The synchronous part of a checkout, under the lock. A waiter queued here gives up after
    /// `wait`.
    fn try_take(self: &Arc<Self>, wait: Duration) -> Result<Take, CheckoutError> {
        let mut st = self.state();
        if let Some(conn) = st.idle.pop() {
            return Ok(Take::Conn(conn));
        }
        if st.open < self.size() {
            if let Err(cap) = self.acquire_caps() {
                return Ok(Take::Cap(cap));
            }
            // While the server is down: the last error at once, or this checkout is the probe.
            let ticket = st
                .outage
                .admit(Instant::now())
                .inspect_err(|_| self.release_caps())?;
            st.open += 1;
            return Ok(Take::Slot(Slot::new(self.clone(), Some(ticket))));
        }
        let (tx, rx) = oneshot::channel();
        let since = Instant::now();
        let deadline = since.checked_add(wait).unwrap_or(since + ONE_YEAR);
        self.queue_waiter(
            &mut st,
            Waiter {
                tx,
                since,
                deadline,
            },
        );
        Ok(Take::Wait(rx, since))
    }

    /// A clean connection comes back: to the oldest waiter, else to the idle list.
    pub(super) fn checkin(self: &Arc<Self>, mut conn: Box<ServerConn>) {
        conn.last_used = Instant::now();
        if conn.settings_unknown {
            tracing::debug!(pool = %self.key, server = conn.id, "server connection's settings unknown");
            return self.discard(conn, CloseReason::Unclean);
        }
        if conn.last_used.duration_since(conn.created) >= self.settings.lifetime {
            tracing::debug!(pool = %self.key, server = conn.id, "server connection reached server_lifetime");
            return self.discard(conn, CloseReason::Lifetime);
        }
        if let Some(e) = &conn.entry {
            if self.must_reconnect(e.info.connect_time) {
                return self.discard(conn, CloseReason::Admin);
            }
        }
        let mut st = self.state();
        if st.open > self.size() {
            // RELOAD made the pool smaller.
            drop(st);
            return self.discard(conn, CloseReason::Admin);
        }
        while let Some(Waiter { tx, .. }) = st.waiters.pop_front() {
            match tx.send(Handoff::Conn(ServerGuard::new(self.clone(), conn))) {
                Ok(()) => return,
                Err(Handoff::Conn(mut back)) => conn = back.take(),
                Err(_) => unreachable!("we sent a connection"),
            }
        }
        if let Some(e) = &conn.entry {
            e.info.returned();
        }
        st.idle.push(conn);
        drop(st);
        // A checkout of this pool waiting on a full cap can take it.
        for c in self.caps() {
            if c.is_full() {
                c.freed.notify_waiters();
            }
        }
    }

    /// A slot is free again: the oldest waiter may connect with it (if the outage state admits it
    /// then); else `open` shrinks. `ticket`: what the slot had been admitted with, if unused.
    pub(super) fn release_slot(self: &Arc<Self>, ticket: Option<Ticket>) {
        let mut st = self.state();
        if let Some(t) = ticket {
            st.outage.abandoned(t);
        }
        if st.open > self.size() {
            st.open -= 1;
            drop(st);
            self.release_caps();
            return;
        }
        while let Some(Waiter { tx, .. }) = st.waiters.pop_front() {
            match tx.send(Handoff::Slot(Slot::new(self.clone(), None))) {
                Ok(()) => return,
                Err(Handoff::Slot(mut back)) => back.pool = None,
                Err(_) => unreachable!("we sent a slot"),
            }
        }
        st.open -= 1;
        drop(st);
        self.release_caps();
    }
}

/// A deadline for a `query_wait_timeout` too large to add to the clock.
const ONE_YEAR: Duration = Duration::from_secs(365 * 86_400);

/// A connection handed over that the server closed meanwhile: closed, nothing to cancel.
fn drop_dead(mut guard: ServerGuard) {
    let conn = guard.conn_mut();
    conn.dirty = true;
    if let Some(e) = &conn.entry {
        e.info.lost.store(true, Ordering::Relaxed);
    }
    drop(guard);
}
