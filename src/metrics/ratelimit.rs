//! [`LogLimiter`]: at most one log line per kind of event per interval, each line saying how
//! many events it stands for. A pure type (the caller passes the time and writes the lines), so
//! that what an operator reads during a flood of refused logins is unit-tested here.
//!
//! The first event of a kind is logged at once. Events within `interval` of the last line are
//! counted, and the last one's detail is kept. They are reported by the next event after the
//! interval, or by [`LogLimiter::flush`] (the background task calls it every second), whichever
//! comes first, so a burst always ends with a line counting it.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// A line to log: `count` events of `kind` since the previous line of that kind (this one
/// included), `detail` of the latest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line<K> {
    pub kind: K,
    pub count: u64,
    pub detail: String,
}

struct Window {
    /// When the last line of this kind was logged.
    last_line: Instant,
    /// Events counted since then, and the latest one's detail.
    pending: u64,
    detail: String,
}

/// One line per kind per interval.
pub struct LogLimiter<K> {
    interval: Duration,
    kinds: HashMap<K, Window>,
}

impl<K: Copy + Eq + Hash> LogLimiter<K> {
    pub fn new(interval: Duration) -> Self {
        LogLimiter {
            interval,
            kinds: HashMap::new(),
        }
    }

    pub fn set_interval(&mut self, interval: Duration) {
        self.interval = interval;
    }

    /// An event of `kind` at `now`: the line to log now, or None when it is counted for a later
    /// line.
    pub fn note(
        &mut self,
        kind: K,
        now: Instant,
        detail: impl FnOnce() -> String,
    ) -> Option<Line<K>> {
        match self.kinds.get_mut(&kind) {
            Some(w) if now.saturating_duration_since(w.last_line) < self.interval => {
                w.pending += 1;
                // Only the latest detail is kept; it is made only when it may be shown.
                w.detail = detail();
                None
            }
            Some(w) => {
                let count = w.pending + 1;
                w.pending = 0;
                w.last_line = now;
                Some(Line {
                    kind,
                    count,
                    detail: detail(),
                })
            }
            None => {
                self.kinds.insert(
                    kind,
                    Window {
                        last_line: now,
                        pending: 0,
                        detail: String::new(),
                    },
                );
                Some(Line {
                    kind,
                    count: 1,
                    detail: detail(),
                })
            }
        }
    }

    /// Lines for kinds whose counted events have waited a whole interval since their last line.
    pub fn flush(&mut self, now: Instant) -> Vec<Line<K>> {
        let mut lines = Vec::new();
        for (&kind, w) in &mut self.kinds {
            if w.pending > 0 && now.saturating_duration_since(w.last_line) >= self.interval {
                lines.push(Line {
                    kind,
                    count: w.pending,
                    detail: std::mem::take(&mut w.detail),
                });
                w.pending = 0;
                w.last_line = now;
            }
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    /// 30,000 refusals in 25 s with a 10 s interval: one line at the first, then one per
    /// interval, and the counts add up to every event.
    #[test]
    fn a_flood_gives_one_line_per_kind_per_interval_with_counts() {
        let t0 = Instant::now();
        let mut l = LogLimiter::new(10 * SEC);
        let mut lines = Vec::new();
        for i in 0..30_000u64 {
            let now = t0 + Duration::from_micros(i * 833);
            lines.extend(l.note("bad_password", now, || format!("try {i}")));
            if i % 1000 == 0 {
                lines.extend(l.flush(now));
            }
        }
        lines.extend(l.flush(t0 + 40 * SEC));
        assert_eq!(
            lines.len(),
            4,
            "first event, at 10 s, at 20 s, the rest: {lines:?}"
        );
        assert_eq!(lines[0].count, 1);
        assert_eq!(lines[0].detail, "try 0");
        assert_eq!(lines.iter().map(|x| x.count).sum::<u64>(), 30_000);
        assert_eq!(
            lines[3].detail, "try 29999",
            "the last line shows the latest event"
        );
        assert!(l.flush(t0 + 100 * SEC).is_empty(), "nothing left to report");
    }

    #[test]
    fn kinds_are_limited_separately() {
        let t0 = Instant::now();
        let mut l = LogLimiter::new(10 * SEC);
        assert!(l.note("a", t0, String::new).is_some());
        assert!(
            l.note("b", t0, String::new).is_some(),
            "another kind logs at once"
        );
        assert!(l.note("a", t0 + SEC, String::new).is_none());
        assert!(l.note("a", t0 + 2 * SEC, String::new).is_none());
        assert!(l.flush(t0 + 9 * SEC).is_empty(), "interval not over");
        let lines = l.flush(t0 + 10 * SEC);
        assert_eq!(
            lines,
            [Line {
                kind: "a",
                count: 2,
                detail: String::new()
            }]
        );
        // The flush counts as a line: the next event waits for the following interval.
        assert!(l.note("a", t0 + 11 * SEC, String::new).is_none());
        let line = l
            .note("a", t0 + 20 * SEC, String::new)
            .expect("a new interval");
        assert_eq!(line.count, 2);
    }
}
