//! Read/write splitting: the groundwork the relay builds on.
//!
//! * [`classify`] decides per query string whether it may run on a replica.
//! * [`health`] polls each replica in the background ([`spawn_checker`]) and publishes whether it
//!   is in rotation and how far it has replayed.
//! * [`ryw`] keeps a client's reads behind its own writes ([`WriteFence`]).
//! * [`ReplicaSet`] (here) picks a replica for a read among the healthy ones, by the configured
//!   [`Balance`], honouring a read-your-writes LSN and a `primary_reads` share.
//!
//! How the relay is meant to use them, for a read outside a transaction:
//!
//! ```text
//! let c = classify(sql, &db.writing_functions);
//! let target = match (c.route, fence.constraint(now)) {
//!     (Route::Primary, _) | (_, ReadConstraint::PrimaryOnly) => ReadTarget::Primary,
//!     (Route::Replica, ReadConstraint::Any) => replicas.route_read(None),
//!     (Route::Replica, ReadConstraint::MinLsn(lsn)) => replicas.route_read(Some(lsn)),
//! };
//! // Replica(i): let _busy = replicas.acquire(i); ... run it on a server of replica i's pool.
//! ```

pub mod classify;
pub mod health;
pub mod ryw;
pub mod unit;

pub use classify::{Classification, Reason, Route, classify};
pub use health::{
    HealthHandle, HealthPolicy, HealthReporter, ReplicaHealth, ReplicaTarget, parse_lsn,
    spawn_checker,
};
pub use ryw::{ReadConstraint, ReadYourWrites, WriteFence};

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use serde::Deserialize;

use crate::config::ReplicaFallback;
use crate::pool::Pool;

/// Read/write splitting for one primary pool: its replicas' pools and health, and the rules.
pub struct Router {
    pub replicas: Arc<ReplicaSet>,
    /// One pool per replica, in the order of the database's `replicas` list.
    pub pools: Vec<Arc<Pool>>,
    /// `host:port` of each replica (the `replica` metrics label).
    pub addrs: Vec<String>,
    pub read_your_writes: ReadYourWrites,
    pub read_your_writes_window: Duration,
    pub writing_functions: Vec<String>,
    pub fallback: ReplicaFallback,
    pub stats: RouteStats,
}

impl Router {
    /// A fresh read-your-writes fence for a client session.
    pub fn fence(&self) -> WriteFence {
        WriteFence::new(self.read_your_writes, self.read_your_writes_window)
    }
}

/// Why a unit of work (an autocommit statement, a batch up to Sync, or a transaction) went where
/// it went. Counted once per routing decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteReason {
    /// Provably read-only, outside a transaction (replica).
    ReadOnly,
    /// A transaction opened `READ ONLY` (replica).
    ReadOnlyTransaction,
    /// A `sluice:replica` hint on a statement the classifier could not prove (replica).
    Hint,
    /// A write: DML, DDL, locking clause, writing function, writable CTE, a transaction that is
    /// not read-only, session state (primary).
    Write,
    /// The classifier could not prove it read-only (primary).
    Uncertain,
    /// Read-only, but no replica has replayed the client's last write yet (primary).
    ReadYourWrites,
    /// Read-only, but no replica is in rotation (primary).
    NoReplica,
    /// Read-only, but drawn for the primary's `primary_reads` share (primary).
    PrimaryShare,
    /// A replica refused it (25006) or failed before answering: run again on the primary.
    Retried,
}

impl RouteReason {
    pub const ALL: [RouteReason; 9] = [
        RouteReason::ReadOnly,
        RouteReason::ReadOnlyTransaction,
        RouteReason::Hint,
        RouteReason::Write,
        RouteReason::Uncertain,
        RouteReason::ReadYourWrites,
        RouteReason::NoReplica,
        RouteReason::PrimaryShare,
        RouteReason::Retried,
    ];

    pub fn label(self) -> &'static str {
        match self {
            RouteReason::ReadOnly => "read_only",
            RouteReason::ReadOnlyTransaction => "read_only_transaction",
            RouteReason::Hint => "hint",
            RouteReason::Write => "write",
            RouteReason::Uncertain => "uncertain",
            RouteReason::ReadYourWrites => "read_your_writes",
            RouteReason::NoReplica => "no_replica",
            RouteReason::PrimaryShare => "primary_share",
            RouteReason::Retried => "retried",
        }
    }

    /// The column of SHOW REPLICAS on the admin console.
    pub fn column(self) -> &'static str {
        match self {
            RouteReason::ReadOnly => "routed_read_only",
            RouteReason::ReadOnlyTransaction => "routed_read_only_transaction",
            RouteReason::Hint => "routed_hint",
            RouteReason::Write => "routed_write",
            RouteReason::Uncertain => "routed_uncertain",
            RouteReason::ReadYourWrites => "routed_read_your_writes",
            RouteReason::NoReplica => "routed_no_replica",
            RouteReason::PrimaryShare => "routed_primary_share",
            RouteReason::Retried => "routed_retried",
        }
    }

    /// `replica` or `primary`.
    pub fn target(self) -> &'static str {
        match self {
            RouteReason::ReadOnly | RouteReason::ReadOnlyTransaction | RouteReason::Hint => {
                "replica"
            }
            _ => "primary",
        }
    }

    /// The primary-side reason for a classifier answer that is not provably read-only.
    pub fn for_primary(reason: Reason) -> RouteReason {
        match reason {
            Reason::Uncertain
            | Reason::Empty
            | Reason::Malformed
            | Reason::Ambiguous
            | Reason::MultiStatement => RouteReason::Uncertain,
            _ => RouteReason::Write,
        }
    }
}

/// Routing decisions of one primary pool, by [`RouteReason`].
#[derive(Debug, Default)]
pub struct RouteStats {
    counts: [AtomicU64; RouteReason::ALL.len()],
}

impl RouteStats {
    pub fn count(&self, reason: RouteReason) {
        self.counts[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self, reason: RouteReason) -> u64 {
        self.counts[reason as usize].load(Ordering::Relaxed)
    }
}

/// How reads are spread over the eligible replicas (`load_balance` setting).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// The replica with the fewest reads in flight (ties go round robin).
    #[default]
    LeastOutstanding,
    RoundRobin,
    Random,
}

/// Where a read goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadTarget {
    Primary,
    /// The index of a replica in its [`ReplicaSet`].
    Replica(usize),
}

/// The replicas of one database, with their health and reads in flight.
#[derive(Debug)]
pub struct ReplicaSet {
    members: Vec<Member>,
    balance: Balance,
    /// The share of reads (0.0 to 1.0) kept on the primary even when a replica could take them.
    primary_reads: f64,
    /// Where round robin (and the tie-break of least outstanding) starts next.
    next: AtomicUsize,
}

#[derive(Debug)]
struct Member {
    health: HealthHandle,
    outstanding: AtomicUsize,
}

impl ReplicaSet {
    /// One member per handle, in order: [`ReplicaSet::pick`] answers with these indexes.
    pub fn new(balance: Balance, health: Vec<HealthHandle>) -> ReplicaSet {
        ReplicaSet {
            members: health
                .into_iter()
                .map(|health| Member {
                    health,
                    outstanding: AtomicUsize::new(0),
                })
                .collect(),
            balance,
            primary_reads: 0.0,
            next: AtomicUsize::new(0),
        }
    }

    /// Keeps `share` (clamped to 0.0..=1.0; NaN counts as 0) of the reads on the primary.
    pub fn with_primary_reads(mut self, share: f64) -> ReplicaSet {
        self.primary_reads = if share.is_nan() {
            0.0
        } else {
            share.clamp(0.0, 1.0)
        };
        self
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn balance(&self) -> Balance {
        self.balance
    }

    pub fn health(&self, i: usize) -> &HealthHandle {
        &self.members[i].health
    }

    /// Reads in flight on replica `i` (as counted by [`ReplicaSet::acquire`]).
    pub fn outstanding(&self, i: usize) -> usize {
        self.members[i].outstanding.load(Ordering::Relaxed)
    }

    /// A replica for a read: healthy, and replayed at least to `min_lsn` when given. None when no
    /// replica qualifies (the read goes to the primary).
    pub fn pick(&self, min_lsn: Option<u64>) -> Option<usize> {
        let n = self.members.len();
        if n == 0 {
            return None;
        }
        let eligible = |i: usize| self.members[i].health.is_eligible(min_lsn);
        match self.balance {
            Balance::RoundRobin => {
                let start = self.next.fetch_add(1, Ordering::Relaxed);
                (0..n).map(|k| (start + k) % n).find(|&i| eligible(i))
            }
            Balance::LeastOutstanding => {
                let start = self.next.fetch_add(1, Ordering::Relaxed);
                let mut best: Option<(usize, usize)> = None;
                for i in (0..n).map(|k| (start + k) % n) {
                    if !eligible(i) {
                        continue;
                    }
                    let load = self.outstanding(i);
                    if best.is_none_or(|(_, b)| load < b) {
                        best = Some((i, load));
                    }
                }
                best.map(|(i, _)| i)
            }
            Balance::Random => {
                // Reservoir sampling: one pass, each eligible replica equally likely.
                let mut seen = 0usize;
                let mut chosen = None;
                for i in 0..n {
                    if eligible(i) {
                        seen += 1;
                        if rand::random_range(0..seen) == 0 {
                            chosen = Some(i);
                        }
                    }
                }
                chosen
            }
        }
    }

    /// True while some replica has not had its first health check (just after start).
    pub fn any_unchecked(&self) -> bool {
        self.members.iter().any(|m| m.health.checked_at().is_none())
    }

    /// True when this read is drawn for the primary's `primary_reads` share.
    pub fn draw_primary_share(&self) -> bool {
        self.primary_reads > 0.0 && rand::random::<f64>() < self.primary_reads
    }

    /// [`ReplicaSet::pick`] after the `primary_reads` share: the primary when the draw says so or
    /// when no replica qualifies.
    pub fn route_read(&self, min_lsn: Option<u64>) -> ReadTarget {
        if self.primary_reads > 0.0 && rand::random::<f64>() < self.primary_reads {
            return ReadTarget::Primary;
        }
        match self.pick(min_lsn) {
            Some(i) => ReadTarget::Replica(i),
            None => ReadTarget::Primary,
        }
    }

    /// Counts a read in flight on replica `i` until the guard drops.
    pub fn acquire(self: &Arc<Self>, i: usize) -> Outstanding {
        self.members[i].outstanding.fetch_add(1, Ordering::Relaxed);
        Outstanding {
            set: self.clone(),
            index: i,
        }
    }
}

/// One read in flight on a replica; dropping it ends the count.
#[derive(Debug)]
pub struct Outstanding {
    set: Arc<ReplicaSet>,
    index: usize,
}

impl Outstanding {
    pub fn index(&self) -> usize {
        self.index
    }
}

impl Drop for Outstanding {
    fn drop(&mut self) {
        self.set.members[self.index]
            .outstanding
            .fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healthy(lsn: u64) -> ReplicaHealth {
        ReplicaHealth {
            healthy: true,
            in_recovery: Some(true),
            replay_lsn: Some(lsn),
            ..ReplicaHealth::default()
        }
    }

    fn unhealthy() -> ReplicaHealth {
        ReplicaHealth::default()
    }

    fn set(balance: Balance, states: Vec<ReplicaHealth>) -> (Arc<ReplicaSet>, Vec<HealthReporter>) {
        let (handles, reporters): (Vec<_>, Vec<_>) =
            states.into_iter().map(HealthHandle::manual).unzip();
        (Arc::new(ReplicaSet::new(balance, handles)), reporters)
    }

    #[test]
    fn empty_set_picks_nothing() {
        for b in [
            Balance::LeastOutstanding,
            Balance::RoundRobin,
            Balance::Random,
        ] {
            let (s, _) = set(b, vec![]);
            assert_eq!(s.pick(None), None);
            assert_eq!(s.route_read(None), ReadTarget::Primary);
        }
    }

    #[test]
    fn only_healthy_replicas_past_min_lsn_qualify() {
        for b in [
            Balance::LeastOutstanding,
            Balance::RoundRobin,
            Balance::Random,
        ] {
            let (s, r) = set(b, vec![unhealthy(), healthy(100), healthy(200)]);
            for _ in 0..50 {
                let i = s.pick(None).unwrap();
                assert!(i == 1 || i == 2, "{b:?} picked {i}");
                assert_eq!(s.pick(Some(150)), Some(2), "{b:?}");
                assert_eq!(s.pick(Some(200)), Some(2), "{b:?}");
                assert_eq!(s.pick(Some(201)), None, "{b:?}");
            }
            // Health changes are seen at once.
            r[2].set(unhealthy());
            assert_eq!(s.pick(Some(150)), None);
            assert_eq!(s.route_read(Some(150)), ReadTarget::Primary);
            r[0].set(healthy(300));
            assert_eq!(s.pick(Some(150)), Some(0));
            // A healthy replica with no known replay position cannot satisfy a min LSN.
            r[0].update(|h| h.replay_lsn = None);
            assert_eq!(s.pick(Some(101)), None);
            assert_eq!(s.pick(Some(0)), Some(1));
        }
    }

    #[test]
    fn round_robin_rotates() {
        let (s, r) = set(
            Balance::RoundRobin,
            vec![healthy(1), healthy(1), healthy(1)],
        );
        let picks: Vec<_> = (0..6).map(|_| s.pick(None).unwrap()).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
        r[1].set(unhealthy());
        let mut counts = [0; 3];
        for _ in 0..30 {
            counts[s.pick(None).unwrap()] += 1;
        }
        assert_eq!(counts[1], 0);
        assert!(counts[0] > 0 && counts[2] > 0, "{counts:?}");
    }

    #[test]
    fn least_outstanding_prefers_the_idlest() {
        let (s, _) = set(
            Balance::LeastOutstanding,
            vec![healthy(1), healthy(1), healthy(1)],
        );
        let _a = s.acquire(0);
        let _b = s.acquire(0);
        let c = s.acquire(1);
        assert_eq!(
            (s.outstanding(0), s.outstanding(1), s.outstanding(2)),
            (2, 1, 0)
        );
        for _ in 0..10 {
            assert_eq!(s.pick(None), Some(2));
        }
        let _d = s.acquire(2);
        let _e = s.acquire(2);
        for _ in 0..10 {
            assert_eq!(s.pick(None), Some(1));
        }
        drop(c);
        assert_eq!(s.outstanding(1), 0);
        assert_eq!(s.pick(None), Some(1));
    }

    #[test]
    fn least_outstanding_spreads_ties() {
        let (s, _) = set(
            Balance::LeastOutstanding,
            vec![healthy(1), healthy(1), healthy(1)],
        );
        let mut counts = [0; 3];
        for _ in 0..30 {
            counts[s.pick(None).unwrap()] += 1;
        }
        assert_eq!(counts, [10, 10, 10]);
    }

    #[test]
    fn random_reaches_every_eligible_replica() {
        let (s, _) = set(
            Balance::Random,
            vec![healthy(1), unhealthy(), healthy(1), healthy(1)],
        );
        let mut counts = [0; 4];
        for _ in 0..3000 {
            counts[s.pick(None).unwrap()] += 1;
        }
        assert_eq!(counts[1], 0);
        for i in [0, 2, 3] {
            // Expected 1000 each; 700 is over 10 standard deviations away.
            assert!(counts[i] > 700, "{counts:?}");
        }
    }

    #[test]
    fn primary_reads_share() {
        let (handles, _r): (Vec<_>, Vec<_>) =
            [healthy(1)].into_iter().map(HealthHandle::manual).unzip();
        let all = ReplicaSet::new(Balance::RoundRobin, handles.clone()).with_primary_reads(1.0);
        let none =
            ReplicaSet::new(Balance::RoundRobin, handles.clone()).with_primary_reads(f64::NAN);
        let half = ReplicaSet::new(Balance::RoundRobin, handles).with_primary_reads(0.5);
        let mut on_primary = 0;
        for _ in 0..2000 {
            assert_eq!(all.route_read(None), ReadTarget::Primary);
            assert_eq!(none.route_read(None), ReadTarget::Replica(0));
            if half.route_read(None) == ReadTarget::Primary {
                on_primary += 1;
            }
        }
        assert!((800..1200).contains(&on_primary), "{on_primary}");
    }

    #[test]
    fn balance_deserializes() {
        #[derive(Deserialize)]
        struct C {
            b: Balance,
        }
        for (text, b) in [
            ("least_outstanding", Balance::LeastOutstanding),
            ("round_robin", Balance::RoundRobin),
            ("random", Balance::Random),
        ] {
            let c: C = toml::from_str(&format!("b = \"{text}\"")).unwrap();
            assert_eq!(c.b, b);
        }
        assert!(toml::from_str::<C>("b = \"fastest\"").is_err());
    }
}
