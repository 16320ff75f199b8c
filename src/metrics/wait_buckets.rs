//! [`WaitBuckets`]: a pool's checkout waits counted into fixed buckets, cumulative, one atomic
//! add per checkout. The live page's "wait p99 over the last minutes" is read from the
//! difference of two readings (`crate::diag::live`), so no clock is read when counting.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the buckets; one more bucket holds everything longer.
pub const BOUNDS: [f64; 16] = [
    0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    30.0,
];
pub const N: usize = BOUNDS.len() + 1;

#[derive(Debug, Default)]
pub struct WaitBuckets {
    counts: [AtomicU64; N],
}

impl WaitBuckets {
    pub fn record(&self, waited: Duration) {
        let s = waited.as_secs_f64();
        let i = BOUNDS.iter().position(|&b| s <= b).unwrap_or(BOUNDS.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> [u64; N] {
        std::array::from_fn(|i| self.counts[i].load(Ordering::Relaxed))
    }
}

/// The `q` quantile (seconds, a bucket's upper bound) of the waits counted between two readings;
/// None when there were none. Past the last bound: twice it.
pub fn quantile(before: &[u64; N], after: &[u64; N], q: f64) -> Option<f64> {
    let delta: Vec<u64> = after
        .iter()
        .zip(before)
        .map(|(a, b)| a.saturating_sub(*b))
        .collect();
    let total: u64 = delta.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = (q * total as f64).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, n) in delta.iter().enumerate() {
        seen += n;
        if seen >= rank {
            return Some(
                BOUNDS
                    .get(i)
                    .copied()
                    .unwrap_or(BOUNDS[BOUNDS.len() - 1] * 2.0),
            );
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_of_the_difference() {
        let w = WaitBuckets::default();
        for _ in 0..99 {
            w.record(Duration::ZERO);
        }
        let before = w.snapshot();
        for _ in 0..98 {
            w.record(Duration::from_micros(50));
        }
        w.record(Duration::from_millis(20));
        w.record(Duration::from_millis(40));
        let after = w.snapshot();
        assert_eq!(quantile(&before, &after, 0.5), Some(0.0001));
        assert_eq!(quantile(&before, &after, 0.99), Some(0.025));
        assert_eq!(quantile(&before, &after, 1.0), Some(0.05));
        assert_eq!(quantile(&after, &after, 0.99), None);
        w.record(Duration::from_secs(60));
        assert_eq!(quantile(&after, &w.snapshot(), 0.99), Some(60.0));
    }
}
