//! [`LiveHistory`]: the last minutes of each pool for the live page, one reading every
//! [`EVERY`] taken by the statistics upkeep: cumulative checkout waits by bucket and errors by
//! SQLSTATE class. The page's wait p99 and recent errors are differences between readings.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use crate::metrics::wait_buckets::{self, N};

/// How often the upkeep takes a reading.
pub const EVERY: Duration = Duration::from_secs(5);
/// Readings kept per pool: five minutes.
const KEEP: usize = 61;

struct Reading {
    at_us: u64,
    waits: [u64; N],
    errors: Vec<(String, u64)>,
}

#[derive(Default)]
pub struct LiveHistory {
    pools: Mutex<HashMap<String, VecDeque<Reading>>>,
}

impl LiveHistory {
    /// A reading of pool `key` at `at_us` (µs since the epoch).
    pub fn push(&self, key: &str, at_us: u64, waits: [u64; N], errors: Vec<(String, u64)>) {
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        let ring = pools.entry(key.to_owned()).or_default();
        if ring.len() == KEEP {
            ring.pop_front();
        }
        ring.push_back(Reading {
            at_us,
            waits,
            errors,
        });
    }

    /// Forgets pools not in `keep` (a pool that no longer exists).
    pub fn retain(&self, keep: &[String]) {
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        pools.retain(|k, _| keep.contains(k));
    }

    /// (end of interval in µs since the epoch, wait p99 in ms over the interval; None: no
    /// checkout in it), one per interval between readings, oldest first.
    pub fn wait_p99(&self, key: &str) -> Vec<(u64, Option<f64>)> {
        let pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        let Some(ring) = pools.get(key) else {
            return Vec::new();
        };
        ring.iter()
            .zip(ring.iter().skip(1))
            .map(|(a, b)| {
                let q = wait_buckets::quantile(&a.waits, &b.waits, 0.99);
                (b.at_us, q.map(|s| s * 1000.0))
            })
            .collect()
    }

    /// Errors by class between the oldest reading within `window` and the newest.
    pub fn recent_errors(&self, key: &str, window: Duration) -> Vec<(String, u64)> {
        let pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        let Some(ring) = pools.get(key) else {
            return Vec::new();
        };
        let Some(last) = ring.back() else {
            return Vec::new();
        };
        let from = last.at_us.saturating_sub(window.as_micros() as u64);
        let Some(first) = ring.iter().find(|r| r.at_us >= from) else {
            return Vec::new();
        };
        let mut out: Vec<(String, u64)> = last
            .errors
            .iter()
            .map(|(class, n)| {
                let before = first
                    .errors
                    .iter()
                    .find(|(c, _)| c == class)
                    .map_or(0, |e| e.1);
                (class.clone(), n.saturating_sub(before))
            })
            .filter(|(_, n)| *n > 0)
            .collect();
        out.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_between_readings() {
        let h = LiveHistory::default();
        let mut w = [0u64; N];
        h.push("p", 1_000_000, w, vec![("22".into(), 5)]);
        w[0] = 98;
        w[5] = 2;
        h.push("p", 6_000_000, w, vec![("22".into(), 7), ("57".into(), 1)]);
        h.push("p", 11_000_000, w, vec![("22".into(), 7), ("57".into(), 1)]);
        let series = h.wait_p99("p");
        assert_eq!(series.len(), 2);
        assert_eq!(series[0].0, 6_000_000);
        assert!((series[0].1.unwrap() - 10.0).abs() < 1e-9, "{series:?}");
        assert_eq!(series[1].1, None);
        assert_eq!(
            h.recent_errors("p", Duration::from_secs(60)),
            vec![("22".to_owned(), 2), ("57".to_owned(), 1)]
        );
        assert_eq!(h.recent_errors("p", Duration::from_secs(1)), vec![]);
        h.retain(&[]);
        assert!(h.wait_p99("p").is_empty());
    }
}
