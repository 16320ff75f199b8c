//! SHOW STATS' numbers: a pool's [`Totals`] at one moment and per-second [`Averages`] over the
//! last completed period of [`STATS_PERIOD`].

use std::time::Duration;

/// How often SHOW STATS' averages are recomputed.
pub const STATS_PERIOD: Duration = Duration::from_secs(15);

/// Per-second averages over the last completed stats period (SHOW STATS' avg_* columns).
#[derive(Debug, Clone, Copy, Default)]
pub struct Averages {
    pub xact_count: u64,
    pub query_count: u64,
    pub recv: u64,
    pub sent: u64,
    pub xact_time: u64,
    pub query_time: u64,
    pub wait_time: u64,
}

/// Totals of one pool at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Totals {
    pub xact_count: u64,
    pub query_count: u64,
    pub received: u64,
    pub sent: u64,
    pub xact_time_us: u64,
    pub query_time_us: u64,
    pub wait_time_us: u64,
    pub waits: u64,
}

impl Totals {
    pub fn add(&mut self, o: &Totals) {
        self.xact_count += o.xact_count;
        self.query_count += o.query_count;
        self.received += o.received;
        self.sent += o.sent;
        self.xact_time_us += o.xact_time_us;
        self.query_time_us += o.query_time_us;
        self.wait_time_us += o.wait_time_us;
        self.waits += o.waits;
    }

    pub fn averages_since(&self, before: &Totals, secs: f64) -> Averages {
        let d = |a: u64, b: u64| a.saturating_sub(b);
        let per_sec = |v: u64| (v as f64 / secs.max(1e-9)).round() as u64;
        let per = |v: u64, n: u64| v.checked_div(n).unwrap_or(0);
        let xacts = d(self.xact_count, before.xact_count);
        let queries = d(self.query_count, before.query_count);
        Averages {
            xact_count: per_sec(xacts),
            query_count: per_sec(queries),
            recv: per_sec(d(self.received, before.received)),
            sent: per_sec(d(self.sent, before.sent)),
            xact_time: per(d(self.xact_time_us, before.xact_time_us), xacts),
            query_time: per(d(self.query_time_us, before.query_time_us), queries),
            wait_time: per(
                d(self.wait_time_us, before.wait_time_us),
                d(self.waits, before.waits),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn averages_are_rates_and_times_per_item() {
        let before = Totals {
            xact_count: 10,
            query_count: 20,
            received: 1000,
            sent: 2000,
            xact_time_us: 500,
            query_time_us: 800,
            wait_time_us: 100,
            waits: 5,
        };
        let mut now = before;
        now.add(&Totals {
            xact_count: 30,
            query_count: 60,
            received: 3000,
            sent: 6000,
            xact_time_us: 3000,
            query_time_us: 1200,
            wait_time_us: 400,
            waits: 4,
        });
        let a = now.averages_since(&before, 15.0);
        assert_eq!(
            (a.xact_count, a.query_count, a.recv, a.sent),
            (2, 4, 200, 400)
        );
        assert_eq!((a.xact_time, a.query_time, a.wait_time), (100, 20, 100));
        // Nothing happened: zeros, no division by zero; a clock that did not move is no panic.
        let idle = before.averages_since(&before, 0.0);
        assert_eq!(
            (idle.query_count, idle.query_time, idle.wait_time),
            (0, 0, 0)
        );
    }
}
