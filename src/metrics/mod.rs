//! What the pooler counts and how it is shown: the admin console's SHOW STATS / SHOW POOLS and
//! Prometheus (`/metrics`).
//!
//! * [`counters`]: [`PoolCounters`], every counter of one pool (transactions, queries, bytes,
//!   waits, connections opened and closed by reason, errors by SQLSTATE class, prepared-statement
//!   cache), plain atomics bumped on the hot path. One source for the console and the scrape.
//! * [`period`]: SHOW STATS' totals and per-second averages over the last period.
//! * [`gauges`]: [`PoolGauges`], computed on demand from a reading of a pool's state, never kept.
//! * [`histograms`]: client wait, transaction and query durations in this pooler's own
//!   Prometheus recorder.
//! * [`prometheus`]: the `/metrics` page, written from readings taken at scrape time.
//! * [`http`]: the endpoint serving `/metrics`, `/healthz` and `/readyz`.
//! * [`incidents`]: refusals counted by reason, and the rate-limited incident log
//!   ([`ratelimit`]: one line per kind per interval).
//!
//! Owns: counting and presenting. Must not: know pools, sessions or the shared state (it is
//! handed counters and readings), nor hold anything a decision reads (pause, reconnect and the
//! server list are the pool's).

pub mod counters;
pub mod gauges;
pub mod histograms;
pub mod http;
pub mod incidents;
pub mod period;
pub mod prometheus;
pub mod ratelimit;

pub use counters::{CloseReason, PoolCounters};
pub use gauges::{PoolGauges, PoolState};
pub use histograms::{HistogramRecorder, Histograms};
pub use incidents::{Incident, Incidents, Refusal};
pub use period::{Averages, STATS_PERIOD, Totals};
pub use prometheus::{Globals, PoolSample, PubsubSample};

/// The labels of one pool's series: `database`, `user`, `role` and, for a replica's pool,
/// `replica` (its host:port).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolLabels {
    pub database: String,
    pub user: String,
    /// `primary` or `replica`.
    pub role: &'static str,
    pub replica: Option<String>,
}
