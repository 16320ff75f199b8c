//! Read-your-writes: after a client's write commits on the primary, its reads may go to a replica
//! only once the replica has that write.
//!
//! One [`WriteFence`] per client session. The relay calls [`WriteFence::record_write`] when a
//! statement or transaction that ran on the primary and may have written is complete
//! (ReadyForQuery with status idle), passing the primary's WAL insert position read on the same
//! server connection right after it ([`crate::router::health::RYW_LSN_QUERY`]), or None when that
//! could not be read. Before routing a read it asks [`WriteFence::constraint`]:
//!
//! * `lsn` mode: [`ReadConstraint::MinLsn`] — only a replica whose replay LSN has reached the
//!   client's last write (see [`crate::router::ReplicaSet::pick`]); with no known LSN the fence
//!   falls back to the window: [`ReadConstraint::PrimaryOnly`] for `read_your_writes_window`.
//! * `window` mode: [`ReadConstraint::PrimaryOnly`] for `read_your_writes_window` after each
//!   write, then any replica.
//! * `off`: [`ReadConstraint::Any`].

use std::time::{Duration, Instant};

use crate::config::ReadYourWrites;

/// What a client's next read may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadConstraint {
    /// Any healthy replica.
    Any,
    /// A healthy replica that has replayed at least this LSN.
    MinLsn(u64),
    /// The primary.
    PrimaryOnly,
}

/// A client session's last write, as far as its reads care.
#[derive(Debug, Clone)]
pub struct WriteFence {
    mode: ReadYourWrites,
    window: Duration,
    min_lsn: Option<u64>,
    primary_until: Option<Instant>,
}

impl WriteFence {
    pub fn new(mode: ReadYourWrites, window: Duration) -> WriteFence {
        WriteFence {
            mode,
            window,
            min_lsn: None,
            primary_until: None,
        }
    }

    /// A write completed on the primary at `now`; `lsn` is the primary's WAL insert position read
    /// after it, if known.
    pub fn record_write(&mut self, lsn: Option<u64>, now: Instant) {
        match (self.mode, lsn) {
            (ReadYourWrites::Off, _) => {}
            (ReadYourWrites::Lsn, Some(lsn)) => {
                self.min_lsn = Some(self.min_lsn.map_or(lsn, |m| m.max(lsn)));
            }
            (ReadYourWrites::Lsn, None) | (ReadYourWrites::Window, _) => {
                let until = now + self.window;
                self.primary_until = Some(self.primary_until.map_or(until, |u| u.max(until)));
            }
        }
    }

    /// What a read at `now` may use.
    pub fn constraint(&self, now: Instant) -> ReadConstraint {
        if self.primary_until.is_some_and(|u| now < u) {
            return ReadConstraint::PrimaryOnly;
        }
        match self.min_lsn {
            Some(lsn) => ReadConstraint::MinLsn(lsn),
            None => ReadConstraint::Any,
        }
    }

    /// The configured mode (with `Off` or `Window` the relay need not read the primary's LSN).
    pub fn mode(&self) -> ReadYourWrites {
        self.mode
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsn_mode() {
        let t0 = Instant::now();
        let w = Duration::from_secs(5);
        let mut f = WriteFence::new(ReadYourWrites::Lsn, w);
        assert_eq!(f.constraint(t0), ReadConstraint::Any);
        f.record_write(Some(100), t0);
        assert_eq!(f.constraint(t0), ReadConstraint::MinLsn(100));
        f.record_write(Some(50), t0);
        assert_eq!(
            f.constraint(t0),
            ReadConstraint::MinLsn(100),
            "never goes back"
        );
        f.record_write(Some(150), t0);
        assert_eq!(f.constraint(t0 + w * 10), ReadConstraint::MinLsn(150));
        // Unknown LSN: the window applies, then the LSN fence again.
        f.record_write(None, t0);
        assert_eq!(f.constraint(t0), ReadConstraint::PrimaryOnly);
        assert_eq!(f.constraint(t0 + w), ReadConstraint::MinLsn(150));
    }

    #[test]
    fn window_mode() {
        let t0 = Instant::now();
        let w = Duration::from_secs(5);
        let mut f = WriteFence::new(ReadYourWrites::Window, w);
        f.record_write(Some(100), t0);
        assert_eq!(f.constraint(t0), ReadConstraint::PrimaryOnly);
        assert_eq!(
            f.constraint(t0 + w - Duration::from_millis(1)),
            ReadConstraint::PrimaryOnly
        );
        assert_eq!(f.constraint(t0 + w), ReadConstraint::Any);
        f.record_write(None, t0 + w * 2);
        assert_eq!(f.constraint(t0 + w * 2), ReadConstraint::PrimaryOnly);
        // An earlier write does not shorten a later one's window.
        f.record_write(None, t0);
        assert_eq!(f.constraint(t0 + w * 2), ReadConstraint::PrimaryOnly);
    }

    #[test]
    fn off_mode() {
        let t0 = Instant::now();
        let mut f = WriteFence::new(ReadYourWrites::Off, Duration::from_secs(5));
        f.record_write(Some(100), t0);
        f.record_write(None, t0);
        assert_eq!(f.constraint(t0), ReadConstraint::Any);
    }
}
