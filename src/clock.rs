//! Wall-clock timestamps for what the admin console shows (connect and request times).

use std::time::{SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch, the unit of every timestamp the console shows (0 = never,
/// so a real reading is at least 1).
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
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
}
