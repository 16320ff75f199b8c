//! Wall-clock timestamps for what the admin console shows (connect and request times), and
//! [`Mono`], the monotonic clock as a plain count of nanoseconds for the relay's per-request
//! timing.

use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch, the unit of every timestamp the console shows (0 = never,
/// so a real reading is at least 1).
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
        .max(1)
}

fn mono_base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(|| {
        let now = Instant::now();
        now.checked_sub(Duration::from_secs(86_400)).unwrap_or(now)
    })
}

/// A reading of the monotonic clock as nanoseconds: a plain integer, so differences and
/// conversions are integer arithmetic. A session times every request three times over
/// (SessionStats: request, ready, waiting); with `Instant`, turning those readings into stamps,
/// durations and console times took about ten of std's `Timespec` subtractions (with their
/// checks) and `Duration` normalisations per transaction, now one per reading: 1-3 % fewer
/// instructions per pgbench -S transaction (callgrind, 2026-12-03).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Mono(u64);

impl Mono {
    /// Read through `Instant` (one subtraction from a process-wide base) rather than with
    /// `clock_gettime` directly: rustix's vDSO lookup crashes under valgrind, which
    /// bench/callgrind.sh needs, and `forbid(unsafe_code)` rules out calling libc.
    #[inline]
    pub fn now() -> Mono {
        Mono::of(Instant::now())
    }

    /// The reading `t` was (nanoseconds from a base a day before the first reading, so any
    /// `Instant` of the last day maps onto the same scale).
    #[inline]
    pub fn of(t: Instant) -> Mono {
        Mono(t.saturating_duration_since(mono_base()).as_nanos() as u64 + 1)
    }

    /// Microseconds from `earlier` to this reading (0 if `earlier` is the later one).
    #[inline]
    pub fn us_since(self, earlier: Mono) -> u64 {
        self.0.saturating_sub(earlier.0) / 1_000
    }

    /// The time from `earlier` to this reading (zero if `earlier` is the later one).
    #[inline]
    pub fn since(self, earlier: Mono) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// This reading as microseconds since the Unix epoch, without reading the clock again:
    /// sessions publish the readings they take anyway this way (SHOW CLIENTS' state times).
    /// Never 0.
    #[inline]
    pub fn epoch_us(self) -> u64 {
        // Epoch time minus monotonic time, in nanoseconds, taken once: the console's times do
        // not jump when the wall clock is set.
        static OFFSET: OnceLock<i128> = OnceLock::new();
        let offset = *OFFSET.get_or_init(|| {
            let mono = Mono::now().0 as i128;
            let wall = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as i128);
            wall - mono
        });
        ((self.0 as i128 + offset).max(0) / 1_000).max(1) as u64
    }

    /// This reading as an `Instant` (for timers and deadlines).
    pub fn instant(self) -> Instant {
        mono_base() + Duration::from_nanos(self.0 - 1)
    }
}

/// An `Option<Mono>` in 8 bytes (0 = none): sessions keep a few of these for their whole life,
/// and every client's task carries them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stamp(u64);

impl Stamp {
    pub const NONE: Stamp = Stamp(0);

    #[inline]
    pub fn at(t: Mono) -> Stamp {
        // A reading is never 0 (`Mono::of` adds 1).
        Stamp(t.0)
    }

    #[inline]
    pub fn get(self) -> Option<Mono> {
        (self.0 != 0).then_some(Mono(self.0))
    }

    #[inline]
    pub fn is_none(self) -> bool {
        self.0 == 0
    }

    #[inline]
    pub fn take(&mut self) -> Option<Mono> {
        std::mem::take(self).get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_zero_and_not_decreasing_much() {
        let a = now_us();
        let b = now_us();
        assert!(a >= 1);
        // 2020-01-01 in µs: the clock is a real epoch clock.
        assert!(a > 1_577_836_800_000_000);
        assert!(b + 1_000_000 >= a);
    }

    #[test]
    fn stamps_keep_readings() {
        let t = Mono::now();
        let mut s = Stamp::at(t);
        assert_eq!(s.get(), Some(t));
        assert_eq!(s.take(), Some(t));
        assert!(s.is_none() && Stamp::NONE.get().is_none());
    }

    #[test]
    fn mono_is_the_clock_instant_reads() {
        let i0 = Instant::now();
        let m = Mono::now();
        let i1 = Instant::now();
        assert!(Mono::of(i0) <= m && m <= Mono::of(i1));
        let (m0, m1) = (Mono::of(i0), Mono::of(i0 + Duration::from_micros(2_500)));
        assert_eq!(m1.since(m0), Duration::from_micros(2_500));
        assert_eq!(m1.us_since(m0), 2_500);
        assert_eq!(m0.us_since(m1), 0);
        assert_eq!(m0.since(m1), Duration::ZERO);
        // Back to an Instant and again: the same reading.
        assert_eq!(m0.instant(), i0);
        assert_eq!(Mono::of(m.instant()), m);
    }

    #[test]
    fn mono_maps_onto_the_epoch_clock() {
        let m = Mono::now();
        let a = m.epoch_us();
        let wall = now_us();
        assert!(a.abs_diff(wall) < 1_000_000, "{a} vs {wall}");
        let later = Mono(m.0 + 5_000_000).epoch_us();
        assert_eq!(later, a + 5_000);
    }
}
