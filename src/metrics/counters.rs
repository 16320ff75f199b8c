//! [`PoolCounters`]: everything counted about one pool, in one struct.
//!
//! Plain atomics bumped with relaxed adds on the hot path and read by both the admin console
//! (SHOW STATS) and the scrape (`/metrics`): one source, so the two always agree, whether or not
//! `metrics_listen` is set. Histograms are recorded here too, through handles registered once
//! per pool ([`Histograms`]).
//!
//! Owns: monotonic totals and the SHOW STATS period. Must not: hold state anything decides on
//! (pause, reconnect, the server list are the pool's; gauges are computed from the pool's state).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::histograms::Histograms;
use super::period::{Averages, Totals};

/// Why a server connection was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Unused for `server_idle_timeout`.
    IdleTimeout,
    /// Older than `server_lifetime`.
    Lifetime,
    /// Given back in an unknown state: its client left mid-transaction, or a reset failed.
    Unclean,
    /// It died: an I/O error or the server closed it, while in use or while idle.
    ServerLost,
    /// PAUSE, KILL or RECONNECT on the admin console.
    Admin,
}

impl CloseReason {
    pub const ALL: [CloseReason; 5] = [
        CloseReason::IdleTimeout,
        CloseReason::Lifetime,
        CloseReason::Unclean,
        CloseReason::ServerLost,
        CloseReason::Admin,
    ];

    pub fn label(self) -> &'static str {
        match self {
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::Lifetime => "lifetime",
            CloseReason::Unclean => "unclean",
            CloseReason::ServerLost => "server_lost",
            CloseReason::Admin => "admin",
        }
    }
}

/// The counters of one pool.
#[derive(Default)]
pub struct PoolCounters {
    /// Transactions and requests completed (a ReadyForQuery), with their total time.
    pub transactions: AtomicU64,
    pub queries: AtomicU64,
    pub xact_time_us: AtomicU64,
    pub query_time_us: AtomicU64,
    /// Total time clients waited for a server connection, and how many waits (checkouts that
    /// got a connection or timed out).
    pub wait_time_us: AtomicU64,
    pub waits: AtomicU64,
    /// Checkouts that found no server connection within `query_wait_timeout`.
    pub wait_timeouts: AtomicU64,
    /// Bytes read from and written to this pool's clients.
    pub received: AtomicU64,
    pub sent: AtomicU64,
    /// Server connections opened (logged in), and attempts that failed.
    pub connects: AtomicU64,
    pub connect_failures: AtomicU64,
    /// A Bind/Describe/Parse found its statement already prepared on the server connection.
    pub prepared_hits: AtomicU64,
    /// The statement had to be prepared on the server connection.
    pub prepared_misses: AtomicU64,
    /// A statement was closed on a server connection to stay within max_prepared_statements.
    pub prepared_evictions: AtomicU64,
    /// Server connections closed, by [`CloseReason`].
    closed: [AtomicU64; CloseReason::ALL.len()],
    /// ErrorResponses sent to clients, by SQLSTATE class.
    errors: Mutex<BTreeMap<[u8; 2], u64>>,
    histograms: OnceLock<Histograms>,
    /// Waits by bucket, for the live page (`metrics/wait_buckets.rs`).
    pub wait_buckets: super::wait_buckets::WaitBuckets,
    /// (totals at the start of the last completed period, its start, averages over it).
    period: Mutex<Option<(Totals, Instant, Averages)>>,
}

impl PoolCounters {
    /// Gives the pool its histogram handles (once, when it is made).
    pub fn set_histograms(&self, h: Histograms) {
        let _ = self.histograms.set(h);
    }

    /// A checkout ended after `waited`, with a connection or a timeout.
    pub fn waited(&self, waited: Duration) {
        self.wait_time_us
            .fetch_add(waited.as_micros() as u64, Ordering::Relaxed);
        self.waits.fetch_add(1, Ordering::Relaxed);
        self.wait_buckets.record(waited);
        if let Some(h) = self.histograms.get() {
            h.wait.record(waited.as_secs_f64());
        }
    }

    /// A request (a Query, or a batch up to Sync) ended after `d`.
    pub fn record_query(&self, d: Duration) {
        self.queries.fetch_add(1, Ordering::Relaxed);
        self.query_time_us
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
        if let Some(h) = self.histograms.get() {
            h.query.record(d.as_secs_f64());
        }
    }

    /// A transaction ended after `d`.
    pub fn record_transaction(&self, d: Duration) {
        self.transactions.fetch_add(1, Ordering::Relaxed);
        self.xact_time_us
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
        if let Some(h) = self.histograms.get() {
            h.transaction.record(d.as_secs_f64());
        }
    }

    pub fn closed(&self, reason: CloseReason) {
        self.closed[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn closed_count(&self, reason: CloseReason) -> u64 {
        self.closed[reason as usize].load(Ordering::Relaxed)
    }

    /// An error (its SQLSTATE) went to a client.
    pub fn error_code(&self, code: &str) {
        let b = code.as_bytes();
        let class = match b {
            [a, b, ..] if a.is_ascii_alphanumeric() && b.is_ascii_alphanumeric() => {
                [a.to_ascii_uppercase(), b.to_ascii_uppercase()]
            }
            _ => *b"XX",
        };
        let mut map = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        *map.entry(class).or_insert(0) += 1;
    }

    /// An ErrorResponse body from the server went to a client.
    pub fn error_sent(&self, body: &[u8]) {
        let fields = sluice_proto::backend_view::ErrorFields::decode(body);
        self.error_code(fields.ok().and_then(|f| f.code()).unwrap_or("XX000"));
    }

    /// Errors sent to clients, by SQLSTATE class.
    pub fn errors(&self) -> Vec<(String, u64)> {
        let map = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        map.iter()
            .map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), *v))
            .collect()
    }

    pub fn totals(&self) -> Totals {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Totals {
            xact_count: l(&self.transactions),
            query_count: l(&self.queries),
            received: l(&self.received),
            sent: l(&self.sent),
            xact_time_us: l(&self.xact_time_us),
            query_time_us: l(&self.query_time_us),
            wait_time_us: l(&self.wait_time_us),
            waits: l(&self.waits),
        }
    }

    /// Closes the stats period: averages are taken over the time since the last call.
    pub fn roll_period(&self, now: Instant) {
        let totals = self.totals();
        let mut p = self.period.lock().unwrap_or_else(|p| p.into_inner());
        let avg = match &*p {
            Some((before, start, _)) => {
                totals.averages_since(before, now.duration_since(*start).as_secs_f64())
            }
            None => Averages::default(),
        };
        *p = Some((totals, now, avg));
    }

    /// Per-second averages over the last completed period (zero before the first one ends).
    pub fn averages(&self) -> Averages {
        let p = self.period.lock().unwrap_or_else(|p| p.into_inner());
        p.as_ref().map(|(_, _, a)| *a).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_proto::backend::ErrorResponse;

    #[test]
    fn errors_count_by_sqlstate_class() {
        let c = PoolCounters::default();
        c.error_code("57014");
        c.error_code("57P01");
        c.error_code("08006");
        c.error_code("x");
        c.error_code("4-000");
        let mut body = bytes::BytesMut::new();
        ErrorResponse::error("42p01", "no such table").write(&mut body);
        c.error_sent(&body[5..]);
        c.error_sent(b"not an error body");
        assert_eq!(
            c.errors(),
            [
                ("08".to_owned(), 1),
                ("42".to_owned(), 1),
                ("57".to_owned(), 2),
                ("XX".to_owned(), 3)
            ]
        );
    }

    #[test]
    fn closes_by_reason_and_totals() {
        let c = PoolCounters::default();
        c.closed(CloseReason::Admin);
        c.closed(CloseReason::Admin);
        c.closed(CloseReason::Lifetime);
        assert_eq!(c.closed_count(CloseReason::Admin), 2);
        assert_eq!(c.closed_count(CloseReason::Lifetime), 1);
        assert_eq!(c.closed_count(CloseReason::Unclean), 0);
        c.record_query(Duration::from_micros(300));
        c.record_query(Duration::from_micros(100));
        c.record_transaction(Duration::from_micros(400));
        c.waited(Duration::from_micros(50));
        c.received.fetch_add(10, Ordering::Relaxed);
        let t = c.totals();
        assert_eq!(
            (t.query_count, t.query_time_us, t.xact_count, t.xact_time_us),
            (2, 400, 1, 400)
        );
        assert_eq!(
            (t.waits, t.wait_time_us, t.received, t.sent),
            (1, 50, 10, 0)
        );
    }

    #[test]
    fn averages_cover_the_last_completed_period() {
        let c = PoolCounters::default();
        let t0 = Instant::now();
        c.roll_period(t0);
        assert_eq!(c.averages().query_count, 0);
        for _ in 0..20 {
            c.record_query(Duration::from_micros(150));
        }
        c.roll_period(t0 + Duration::from_secs(10));
        let a = c.averages();
        assert_eq!((a.query_count, a.query_time), (2, 150));
        // A quiet period averages to zero again.
        c.roll_period(t0 + Duration::from_secs(20));
        assert_eq!(c.averages().query_count, 0);
    }
}
