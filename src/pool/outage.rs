//! Who may connect while the pool's server is down: a decision without I/O.
//!
//! After a failed connect the pool takes its server to be down. Until the retry time, a checkout
//! that would connect fails at once with the last error (no client waits on a server that is not
//! there, and the server is not hammered). From the retry time on, one checkout at a time, the
//! *probe*, connects; every other one still fails at once. The probe's success ends the outage
//! and everyone connects again; its failure sets the next retry time.
//!
//! Failures that happen together count once: a connect admitted before the last counted failure
//! (it was already under way when the server was found down) neither lengthens the wait nor,
//! failing late after a probe got through, starts a new one. So the pool's connections dying
//! together with their server count as one failure, not `pool_size`.
//!
//! The wait: `server_login_retry` while the server is down or not ready (unreachable, no
//! answer, "the database system is starting up", too many connections); doubling on each further
//! failure, up to 30x, while PostgreSQL refuses the login itself (a wrong password, a database
//! that does not exist), which retrying soon will not cure.

use std::time::{Duration, Instant};

use crate::server::ConnectError;

/// What lets a checkout connect: given by [`Outage::admit`], handed back with the result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Ticket {
    /// This connect is the outage's one probe.
    pub probe: bool,
    /// Failures counted when it was admitted.
    wave: u64,
}

#[derive(Debug)]
struct Down {
    /// What checkouts fail with until the server is reached again.
    error: ConnectError,
    retry_at: Instant,
    /// A probe is under way.
    probing: bool,
    /// Failures counted in this outage.
    failures: u32,
}

/// The pool's view of its server's availability.
#[derive(Debug, Default)]
pub(super) struct Outage {
    down: Option<Down>,
    /// Failures counted since the pool was made.
    counted: u64,
}

impl Outage {
    /// May a checkout connect now? `Err`: the error to fail it with.
    pub fn admit(&mut self, now: Instant) -> Result<Ticket, ConnectError> {
        let wave = self.counted;
        match &mut self.down {
            None => Ok(Ticket { probe: false, wave }),
            Some(d) if d.probing || now < d.retry_at => Err(d.error.clone()),
            Some(d) => {
                d.probing = true;
                Ok(Ticket { probe: true, wave })
            }
        }
    }

    /// A connect admitted with `ticket` failed with `error` at `now`. Returns true when the
    /// failure counted (it started or prolonged the outage), false when it came together with one
    /// already counted.
    pub fn failed(
        &mut self,
        ticket: Ticket,
        error: &ConnectError,
        now: Instant,
        login_retry: Duration,
    ) -> bool {
        if ticket.wave != self.counted {
            // Under way before a failure that was counted: older news than that one (and than
            // the success that may have ended that outage since).
            self.abandoned(ticket);
            return false;
        }
        self.counted += 1;
        let failures = self
            .down
            .as_ref()
            .map_or(0, |d| d.failures)
            .saturating_add(1);
        self.down = Some(Down {
            error: error.clone(),
            retry_at: now + backoff(login_retry, failures, error),
            probing: false,
            failures,
        });
        true
    }

    /// A connect succeeded: the server is up. Returns whether an outage ended.
    pub fn succeeded(&mut self) -> bool {
        self.down.take().is_some()
    }

    /// The probe was given up before it finished (its checkout timed out or its client left):
    /// the next checkout may probe.
    pub fn abandoned(&mut self, ticket: Ticket) {
        if let (true, Some(d)) = (ticket.probe, self.down.as_mut()) {
            d.probing = false;
        }
    }
}

/// The wait after `failures` counted failures in a row, the last with `error`.
fn backoff(login_retry: Duration, failures: u32, error: &ConnectError) -> Duration {
    if !refused_login(error) {
        return login_retry;
    }
    let factor = 1u32 << failures.saturating_sub(1).min(5);
    login_retry
        .saturating_mul(factor)
        .min(login_retry.saturating_mul(30))
}

/// PostgreSQL answered and refused the login for a reason that a retry soon will not cure. Not:
/// a connection exception (08), insufficient resources (53: too many connections), operator
/// intervention (57: starting up, shutting down): those pass when the server is back.
pub(super) fn refused_login(error: &ConnectError) -> bool {
    match error {
        ConnectError::Refused { code, .. } => {
            !(code.starts_with("08") || code.starts_with("53") || code.starts_with("57"))
        }
        ConnectError::Unreachable { .. } | ConnectError::Timeout { .. } => false,
        ConnectError::Protocol(_) => false,
        // A certificate that fails, or a server without TLS, stays so until someone acts.
        ConnectError::Tls(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unreachable() -> ConnectError {
        ConnectError::Unreachable {
            addr: "127.0.0.1:1".into(),
            reason: "Connection refused".into(),
        }
    }

    fn refused(code: &str) -> ConnectError {
        ConnectError::Refused {
            code: code.into(),
            message: "no".into(),
        }
    }

    const RETRY: Duration = Duration::from_millis(250);

    #[test]
    fn refused_logins_back_off_doubling_up_to_thirty_times() {
        let s = Duration::from_secs(1);
        let e = refused("28P01");
        let waits: Vec<u64> = (1..=8).map(|f| backoff(s, f, &e).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(backoff(s, 0, &e), s, "no failure counted yet: one interval");
        assert_eq!(backoff(Duration::ZERO, 9, &e), Duration::ZERO);
        assert_eq!(
            backoff(Duration::MAX, u32::MAX, &e),
            Duration::MAX,
            "no overflow"
        );
    }

    #[test]
    fn a_server_that_is_down_or_starting_is_retried_every_interval() {
        for e in [
            unreachable(),
            ConnectError::Timeout {
                addr: "x".into(),
                timeout: RETRY,
            },
            ConnectError::Protocol("server closed the connection during login".into()),
            refused("57P03"),
            refused("57P01"),
            refused("53300"),
            refused("08006"),
        ] {
            for failures in [1, 2, 7, 100] {
                assert_eq!(backoff(RETRY, failures, &e), RETRY, "{e:?} x{failures}");
            }
        }
        assert!(refused_login(&refused("3D000")));
        assert!(refused_login(&refused("28000")));
    }

    #[test]
    fn failures_that_happen_together_count_once() {
        let mut o = Outage::default();
        let t0 = Instant::now();
        // Sixteen connects under way when the server dies.
        let tickets: Vec<Ticket> = (0..16).map(|_| o.admit(t0).unwrap()).collect();
        assert!(tickets.iter().all(|t| !t.probe));
        let e = refused("28P01");
        let counted: Vec<bool> = tickets
            .iter()
            .map(|t| o.failed(*t, &e, t0, RETRY))
            .collect();
        assert_eq!(counted.iter().filter(|c| **c).count(), 1, "{counted:?}");
        // So the wait is one interval, not 30: refused logins double from the first.
        assert!(o.admit(t0 + RETRY - Duration::from_millis(1)).is_err());
        assert!(o.admit(t0 + RETRY).unwrap().probe);
    }

    #[test]
    fn one_probe_at_a_time_then_everyone_once_it_succeeds() {
        let mut o = Outage::default();
        let t0 = Instant::now();
        let first = o.admit(t0).unwrap();
        assert!(o.failed(first, &unreachable(), t0, RETRY));
        // During the wait: the stored error, at once.
        match o.admit(t0 + RETRY / 2) {
            Err(ConnectError::Unreachable { .. }) => {}
            other => panic!("{other:?}"),
        }
        // After it: one probe; the others still fail at once while it is under way.
        let t1 = t0 + RETRY;
        let probe = o.admit(t1).unwrap();
        assert!(probe.probe);
        for _ in 0..5 {
            assert!(o.admit(t1 + RETRY * 3).is_err());
        }
        // It fails: the next probe one interval later.
        assert!(o.failed(probe, &unreachable(), t1, RETRY));
        assert!(o.admit(t1 + RETRY / 2).is_err());
        let probe = o.admit(t1 + RETRY).unwrap();
        assert!(probe.probe);
        // It succeeds: everyone connects.
        assert!(o.succeeded());
        for _ in 0..5 {
            assert!(!o.admit(t1 + RETRY).unwrap().probe);
        }
        assert!(!o.succeeded(), "no outage to end");
    }

    #[test]
    fn a_probe_given_up_lets_the_next_checkout_probe() {
        let mut o = Outage::default();
        let t0 = Instant::now();
        let first = o.admit(t0).unwrap();
        o.failed(first, &unreachable(), t0, RETRY);
        let probe = o.admit(t0 + RETRY).unwrap();
        assert!(o.admit(t0 + RETRY).is_err());
        o.abandoned(probe);
        assert!(o.admit(t0 + RETRY).unwrap().probe);
    }

    #[test]
    fn a_late_failure_of_an_earlier_connect_does_not_delay_the_probe() {
        let mut o = Outage::default();
        let t0 = Instant::now();
        let early = o.admit(t0).unwrap();
        let slow = o.admit(t0).unwrap();
        o.failed(early, &unreachable(), t0, RETRY);
        // The slow one fails (its connect timed out) just before the retry time.
        let late = t0 + RETRY - Duration::from_millis(1);
        assert!(!o.failed(slow, &unreachable(), late, RETRY));
        assert!(o.admit(t0 + RETRY).unwrap().probe);
    }

    #[test]
    fn a_late_failure_after_the_probe_got_through_does_not_start_an_outage() {
        let mut o = Outage::default();
        let t0 = Instant::now();
        let early = o.admit(t0).unwrap();
        let slow = o.admit(t0).unwrap();
        o.failed(early, &unreachable(), t0, RETRY);
        assert!(o.admit(t0 + RETRY).unwrap().probe);
        assert!(o.succeeded());
        assert!(!o.failed(slow, &unreachable(), t0 + RETRY * 2, RETRY));
        assert!(!o.admit(t0 + RETRY * 2).unwrap().probe, "the server is up");
        // A connect admitted since is news again.
        let fresh = o.admit(t0 + RETRY * 2).unwrap();
        assert!(o.failed(fresh, &unreachable(), t0 + RETRY * 2, RETRY));
        assert!(o.admit(t0 + RETRY * 2).is_err());
    }

    #[test]
    fn refused_logins_keep_doubling_across_probes() {
        let mut o = Outage::default();
        let mut now = Instant::now();
        let e = refused("28P01");
        let t = o.admit(now).unwrap();
        o.failed(t, &e, now, RETRY);
        let mut waits = Vec::new();
        for _ in 0..4 {
            let start = now;
            let probe = loop {
                match o.admit(now) {
                    Ok(t) => break t,
                    Err(_) => now += Duration::from_millis(50),
                }
            };
            assert!(probe.probe);
            waits.push((now - start).as_millis());
            assert!(o.failed(probe, &e, now, RETRY));
        }
        assert_eq!(waits, [250, 500, 1000, 2000]);
    }
}
