//! Wall-clock timestamps for what the admin console shows (connect and request times).

use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch, the unit of every timestamp the console shows (0 = never,
/// so a real reading is at least 1).
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
        .max(1)
}

/// A monotonic reading as microseconds since the Unix epoch, without reading the clock again:
/// sessions keep `Instant`s they read anyway and publish them this way (SHOW CLIENTS' state
/// times). Anchored at the first call; 0 never comes out.
pub fn instant_us(t: Instant) -> u64 {
    static BASE: OnceLock<(Instant, u64)> = OnceLock::new();
    let (base, base_us) = *BASE.get_or_init(|| (Instant::now(), now_us()));
    match t.checked_duration_since(base) {
        Some(d) => base_us + d.as_micros() as u64,
        None => base_us.saturating_sub(base.duration_since(t).as_micros() as u64),
    }
    .max(1)
}

/// An `Option<Instant>` in 8 bytes (nanoseconds from a process-wide base; 0 = none): sessions
/// keep a few of these for their whole life, and every client's task carries them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stamp(u64);

fn stamp_base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(|| {
        let now = Instant::now();
        // A day back, so instants read before the first stamp still fit.
        now.checked_sub(std::time::Duration::from_secs(86_400))
            .unwrap_or(now)
    })
}

impl Stamp {
    pub const NONE: Stamp = Stamp(0);

    pub fn of(t: Instant) -> Stamp {
        Stamp(t.saturating_duration_since(stamp_base()).as_nanos() as u64 + 1)
    }

    pub fn get(self) -> Option<Instant> {
        (self.0 != 0).then(|| stamp_base() + std::time::Duration::from_nanos(self.0 - 1))
    }

    pub fn is_none(self) -> bool {
        self.0 == 0
    }

    pub fn take(&mut self) -> Option<Instant> {
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
    fn stamps_keep_instants() {
        let t = Instant::now();
        let mut s = Stamp::of(t);
        assert_eq!(s.get(), Some(t));
        assert_eq!(s.take(), Some(t));
        assert!(s.is_none() && Stamp::NONE.get().is_none());
    }

    #[test]
    fn instants_map_onto_the_epoch_clock() {
        let t = Instant::now();
        let a = instant_us(t);
        let wall = now_us();
        assert!(a.abs_diff(wall) < 1_000_000, "{a} vs {wall}");
        let later = instant_us(t + std::time::Duration::from_millis(5));
        assert!(later.abs_diff(a + 5000) <= 1, "{later} vs {a} + 5000");
    }
}
