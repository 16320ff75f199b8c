//! Diagnosis: which queries and clients eat the pool, seen from sluice alone.
//!
//! * `fingerprint.rs`: a statement's fingerprint (literals to `?`), pure;
//! * `fingerprint_id.rs`: its identity alone in one pass over the bytes (the hot path);
//! * `histogram.rs`: the small latency histogram of one query entry;
//! * `live.rs`: the last minutes of each pool (waits, errors) for the live page;
//! * `query_stats.rs`: the process-wide, bounded statistics per (database, user, fingerprint);
//! * `pending.rs`: a session's counts not yet merged into them (merged in batches, and by readers);
//! * `tracker.rs`: one session's statements and the server's answers, recorded at each
//!   ReadyForQuery (no I/O, no clock).

pub mod fingerprint;
mod fingerprint_id;
pub mod histogram;
pub mod live;
pub mod pending;
pub mod query_stats;
pub mod tracker;

pub use fingerprint::Fingerprint;
pub use query_stats::{Entry, QueryStats, Sample, Scope};
pub use tracker::{QueryTracker, Slow, TrackerSeed, TrackerSettings};
