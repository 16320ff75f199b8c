//! A session's timeouts (PgBouncer's names): `query_timeout`, `idle_transaction_timeout` and
//! `client_idle_timeout`, all served by one timer per session.
//!
//! Which one is in force follows from what the session is doing ([`Activity`]): a request the
//! server has not finished answering (query), nothing asked inside a transaction (idle in
//! transaction), nothing asked outside one (idle). Each counts from a time the session reads
//! anyway: the request's start (the session's statistics take it) or the last ReadyForQuery.
//!
//! The cost on the relay's path. The deadline in force is worked out again only after something
//! it depends on changed (a request went out, a ReadyForQuery came, the server was lost or given
//! up, the client was answered locally: the session marks the timer `stale` there), and only when
//! the relay is about to wait. Even then, a timeout no shorter than the one the timer is set for
//! needs no arithmetic: every `since` is the time of the latest change, so its deadline cannot be
//! earlier. The timer itself is only touched when the new deadline is *earlier* than the one it is
//! set for; it may go off early (the session was busy again since), and is then set again, once,
//! for the deadline then in force. So a session that runs one transaction after another resets
//! its timer about once per timeout period, not once per transaction, and reads no clock it would
//! not read anyway. Between its wake-ups the relay looks at it with one atomic load
//! (`Sleep::is_elapsed`), because a future it polls keeps this task's waker (as the relay's stop
//! future does). A session whose pool has none of the three set has no timer at all. Measured
//! with callgrind (pgbench -S, one client): +28 instructions per transaction with the timeouts off
//! (0.3 %), +200 with all three on (2 %). Not guaranteed: a relay that never has to wait (a
//! result streaming without a pause since before the timer was last set) is not set again until
//! it waits; a stalled link always makes it wait.
//!
//! What each does when it fires:
//! * query: a CancelRequest goes to PostgreSQL, the server connection is closed (never given
//!   back), and every request the client is owed gets ERROR 57014; the session carries on (an
//!   open transaction is gone, as after a lost server connection);
//! * idle in transaction: FATAL 25P03, as PostgreSQL's `idle_in_transaction_session_timeout`;
//!   the session ends and its server connection (mid-transaction) is closed, so PostgreSQL rolls
//!   the transaction back;
//! * idle: FATAL 57P05, as PostgreSQL's `idle_session_timeout`; the session ends as if the
//!   client had left (in session mode, its clean server connection is reset and reused).

use std::pin::Pin;
use std::task::Context;
use std::time::{Duration, Instant};

use sluice_proto::backend::ErrorResponse;
use sluice_proto::sqlstate;
use tokio::time::Sleep;

use super::Fatal;
use super::session::Session;
use crate::pool::SessionTimeouts;

/// Which timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Timeout {
    Query,
    IdleTransaction,
    ClientIdle,
}

/// What a session is doing, as far as its timeouts are concerned, and since when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Activity {
    /// The server owes an answer to a request sent then.
    Busy(Instant),
    /// Nothing asked, inside a transaction, since then.
    IdleInTransaction(Instant),
    /// Nothing asked, outside a transaction, since then.
    Idle(Instant),
}

impl Activity {
    /// Since when. Always the time of the session's latest change, so never earlier than the
    /// `since` of an activity before it.
    fn since(self) -> Instant {
        match self {
            Activity::Busy(s) | Activity::IdleInTransaction(s) | Activity::Idle(s) => s,
        }
    }

    /// The timeout in force and its length; None when that one is off.
    fn limit(self, t: &SessionTimeouts) -> Option<(Duration, Timeout)> {
        match self {
            Activity::Busy(_) => Some((t.query?, Timeout::Query)),
            Activity::IdleInTransaction(_) => Some((t.idle_transaction?, Timeout::IdleTransaction)),
            Activity::Idle(_) => Some((t.client_idle?, Timeout::ClientIdle)),
        }
    }
}

/// The timeout in force for `activity` and when it expires; None when that one is off.
pub(super) fn deadline(activity: Activity, t: &SessionTimeouts) -> Option<(Instant, Timeout)> {
    let (limit, which) = activity.limit(t)?;
    Some((activity.since().checked_add(limit)?, which))
}

/// The session's one timer, made when its pool has a timeout set.
pub(super) struct SessionTimer {
    /// Made at the first deadline.
    sleep: Option<Pin<Box<Sleep>>>,
    /// Set for a deadline whose expiry has not been handled yet.
    live: bool,
    /// Polled since it was set: it holds this task's waker, and [`Sleep::is_elapsed`] says enough.
    polled: bool,
    /// What the deadline depends on changed since it was last worked out.
    stale: bool,
    /// The length of the timeout the timer is set for.
    armed_limit: Duration,
    /// The last ReadyForQuery, the login, or the last message sluice answered itself: when the
    /// client last had nothing outstanding.
    pub(super) idle_since: Instant,
}

impl SessionTimer {
    pub(super) fn new(now: Instant) -> Self {
        SessionTimer {
            sleep: None,
            live: false,
            polled: false,
            stale: true,
            armed_limit: Duration::ZERO,
            idle_since: now,
        }
    }

    /// Whether the timer must be set again to go off by `at`: it is not set, or set for later.
    fn needs_reset(&self, at: Instant) -> bool {
        match (&self.sleep, self.live) {
            (Some(s), true) => s.deadline().into_std() > at,
            _ => true,
        }
    }

    /// Makes sure the timer goes off by the deadline of `activity` (perhaps earlier).
    fn arm(&mut self, activity: Activity, t: &SessionTimeouts) {
        let Some((limit, _)) = activity.limit(t) else {
            return;
        };
        // A `since` is never earlier than the one the timer was set from, so a timeout no
        // shorter cannot expire sooner: nothing to work out (the common case, every transaction).
        if self.live && limit >= self.armed_limit {
            return;
        }
        if let Some(at) = activity.since().checked_add(limit) {
            if self.set(at) {
                self.armed_limit = limit;
            }
        }
    }

    /// Makes sure the timer goes off by `at` (perhaps earlier). True when it was set again.
    fn set(&mut self, at: Instant) -> bool {
        if !self.needs_reset(at) {
            return false;
        }
        let at = tokio::time::Instant::from_std(at);
        match self.sleep.as_mut() {
            Some(s) => s.as_mut().reset(at),
            None => self.sleep = Some(Box::pin(tokio::time::sleep_until(at))),
        }
        self.live = true;
        self.polled = false;
        true
    }

    /// In the relay's poll: true once the deadline it is set for has passed.
    #[inline]
    pub(super) fn poll_expired(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.live {
            return false;
        }
        let Some(sleep) = self.sleep.as_mut() else {
            return false;
        };
        if self.polled {
            return sleep.is_elapsed();
        }
        self.polled = true;
        sleep.as_mut().poll(cx).is_ready()
    }
}

impl Session {
    /// What the session is doing now, for its timeouts.
    fn activity(&self, idle_since: Instant) -> Activity {
        if let (Some(since), true) = (self.stats.busy_since(), self.server.is_some()) {
            return Activity::Busy(since);
        }
        if self.exchange.tx_status() != b'I' || self.rare.lost() {
            Activity::IdleInTransaction(idle_since)
        } else {
            Activity::Idle(idle_since)
        }
    }

    /// When the relay is about to wait: if what the deadline depends on changed, makes sure the
    /// timer goes off no later than the deadline now in force; then polls it. True: it went off.
    #[inline]
    pub(super) fn timer_before_wait(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(t) = self.timer.as_deref() else {
            return false;
        };
        if t.stale {
            let activity = self.activity(t.idle_since);
            let t = self.timer.as_deref_mut().expect("checked");
            t.stale = false;
            t.arm(activity, &self.pool.settings.timeouts);
        }
        self.timer
            .as_deref_mut()
            .is_some_and(|t| !t.polled && t.poll_expired(cx))
    }

    /// Something the deadline depends on changed (see the module comment).
    #[inline]
    pub(super) fn timer_stale(&mut self) {
        if let Some(t) = self.timer.as_deref_mut() {
            t.stale = true;
        }
    }

    /// A ReadyForQuery came: the client has nothing outstanding from now on.
    #[inline]
    pub(super) fn timer_ready(&mut self) {
        if let Some(t) = self.timer.as_deref_mut() {
            t.idle_since = Instant::now();
            t.stale = true;
        }
    }

    /// Notes that the client was answered without a server, or that its server was lost or given
    /// up (its idle time starts again).
    #[inline]
    pub(super) fn touch(&mut self) {
        if let Some(t) = self.timer.as_deref_mut() {
            t.idle_since = Instant::now();
            t.stale = true;
        }
    }

    /// The timer went off: acts on the timeout in force if it has expired; otherwise the relay
    /// sets it again before it next waits.
    pub(super) fn on_timer(&mut self) -> Result<(), Fatal> {
        let Some(t) = self.timer.as_deref_mut() else {
            return Ok(());
        };
        t.live = false;
        t.stale = true;
        let idle_since = t.idle_since;
        let timeouts = self.pool.settings.timeouts;
        match deadline(self.activity(idle_since), &timeouts) {
            Some((at, which)) if at <= Instant::now() => self.timed_out(which, &timeouts),
            _ => Ok(()),
        }
    }

    fn timed_out(&mut self, which: Timeout, t: &SessionTimeouts) -> Result<(), Fatal> {
        let limit = |d: Option<Duration>| humantime::format_duration(d.unwrap_or_default());
        match which {
            Timeout::Query => {
                let detail = format!(
                    "no complete answer from the server within query_timeout ({}); sluice cancelled the query and closed the server connection",
                    limit(t.query)
                );
                tracing::info!(pool = %self.pool.key, "query_timeout: giving up the server connection");
                self.cancel_on_server();
                let err = ErrorResponse::error(
                    sqlstate::QUERY_CANCELED,
                    "canceling statement due to query timeout",
                )
                .detail(detail);
                self.abandon_server("query_timeout", Some(err));
                Ok(())
            }
            Timeout::IdleTransaction => Err(Fatal(
                ErrorResponse::fatal(
                    sqlstate::IDLE_IN_TRANSACTION_SESSION_TIMEOUT,
                    "terminating connection due to idle-in-transaction timeout",
                )
                .detail(format!(
                    "idle inside a transaction longer than idle_transaction_timeout ({}); the transaction is rolled back",
                    limit(t.idle_transaction)
                )),
            )),
            Timeout::ClientIdle => Err(Fatal(
                ErrorResponse::fatal(
                    sqlstate::IDLE_SESSION_TIMEOUT,
                    "terminating connection due to idle-session timeout",
                )
                .detail(format!(
                    "idle longer than client_idle_timeout ({})",
                    limit(t.client_idle)
                )),
            )),
        }
    }

    /// Asks PostgreSQL to cancel what runs on the attached server connection (best effort, in
    /// the background, bounded by `server_connect_timeout`): closing the socket alone would leave
    /// a running query running until it next writes.
    fn cancel_on_server(&self) {
        let Some(g) = self.server.as_ref() else {
            return;
        };
        let conn = g.conn();
        let (target, pid, key) = (conn.target.clone(), conn.pid, conn.key);
        let wait = self.pool.settings.connect_timeout;
        tokio::spawn(async move { crate::cancel::send_cancel(&target, pid, key, wait).await });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(q: u64, it: u64, ci: u64) -> SessionTimeouts {
        SessionTimeouts::new(
            Duration::from_secs(q),
            Duration::from_secs(it),
            Duration::from_secs(ci),
        )
    }

    #[test]
    fn each_activity_has_its_own_timeout() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let t = all(10, 20, 30);
        assert_eq!(
            deadline(Activity::Busy(t0), &t),
            Some((t0 + s(10), Timeout::Query))
        );
        assert_eq!(
            deadline(Activity::IdleInTransaction(t0), &t),
            Some((t0 + s(20), Timeout::IdleTransaction))
        );
        assert_eq!(
            deadline(Activity::Idle(t0), &t),
            Some((t0 + s(30), Timeout::ClientIdle))
        );
        // Off ("0s") means no deadline, whatever the others say.
        let t = all(0, 20, 0);
        assert_eq!(deadline(Activity::Busy(t0), &t), None);
        assert_eq!(deadline(Activity::Idle(t0), &t), None);
        assert!(deadline(Activity::IdleInTransaction(t0), &t).is_some());
        assert!(!all(0, 0, 0).any());
        assert!(all(0, 0, 1).any());
    }

    #[tokio::test]
    async fn the_timer_is_set_again_only_for_an_earlier_deadline() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut timer = SessionTimer::new(t0);
        assert!(timer.needs_reset(t0 + s(60)), "never set");
        timer.set(t0 + s(60));
        // A later deadline (the next transaction's): left alone; it goes off early and is set
        // again then.
        assert!(!timer.needs_reset(t0 + s(61)));
        assert!(!timer.needs_reset(t0 + s(60)));
        // An earlier one (a shorter timeout took over): set again.
        assert!(timer.needs_reset(t0 + s(5)));
        timer.set(t0 + s(5));
        let deadline = timer.sleep.as_ref().map(|s| s.deadline().into_std());
        assert_eq!(deadline, Some(t0 + s(5)));
        // Handled (not live): any deadline sets it again.
        timer.live = false;
        assert!(timer.needs_reset(t0 + s(3600)));
    }

    #[tokio::test]
    async fn a_timeout_no_shorter_than_the_one_set_is_not_even_worked_out() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let t = all(10, 5, 30);
        let at = |timer: &SessionTimer| timer.sleep.as_ref().map(|s| s.deadline().into_std());
        let mut timer = SessionTimer::new(t0);
        timer.arm(Activity::Busy(t0), &t);
        assert_eq!(at(&timer), Some(t0 + s(10)));
        // Idle (30s) and busy again (10s), later: the timer stays set for t0 + 10s; it goes off
        // early and is worked out again then.
        timer.arm(Activity::Idle(t0 + s(1)), &t);
        timer.arm(Activity::Busy(t0 + s(2)), &t);
        assert_eq!(at(&timer), Some(t0 + s(10)));
        // Idle in a transaction (5s) is shorter: t0 + 3s + 5s is earlier, the timer moves.
        timer.arm(Activity::IdleInTransaction(t0 + s(3)), &t);
        assert_eq!(at(&timer), Some(t0 + s(8)));
        // A shorter timeout whose deadline is still later leaves it alone.
        timer.arm(Activity::IdleInTransaction(t0 + s(4)), &t);
        assert_eq!(at(&timer), Some(t0 + s(8)));
        // Off for this activity: nothing changes.
        timer.arm(Activity::Busy(t0 + s(5)), &all(0, 5, 30));
        assert_eq!(at(&timer), Some(t0 + s(8)));
    }

    #[tokio::test]
    async fn the_timer_reports_its_expiry_once_set_and_polled() {
        let mut timer = SessionTimer::new(Instant::now());
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert!(!timer.poll_expired(&mut cx), "not set");
        timer.set(Instant::now() + Duration::from_millis(20));
        assert!(!timer.poll_expired(&mut cx), "first poll registers");
        assert!(timer.polled);
        let deadline = Instant::now() + Duration::from_secs(5);
        std::future::poll_fn(|cx| {
            if timer.poll_expired(cx) {
                std::task::Poll::Ready(())
            } else {
                assert!(Instant::now() < deadline, "the timer never went off");
                // Let the runtime drive its clock, then look again.
                cx.waker().wake_by_ref();
                std::task::Poll::Pending
            }
        })
        .await;
    }
}
