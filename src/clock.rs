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
    fn instants_map_onto_the_epoch_clock() {
        let t = Instant::now();
        let a = instant_us(t);
        let wall = now_us();
        assert!(a.abs_diff(wall) < 1_000_000, "{a} vs {wall}");
        let later = instant_us(t + std::time::Duration::from_millis(5));
        assert!(later.abs_diff(a + 5000) <= 1, "{later} vs {a} + 5000");
    }
}
