//! The replicas of one database: which may take a read now ([`ReplicaSet::pick`]) and how many
//! reads each has in flight ([`Outstanding`]).
//!
//! Owns: the choice among replicas by health, a minimum replayed LSN, the `load_balance` rule and
//! the `primary_reads` share. Must not: know pools or connections; an index here is an index
//! into the primary pool's replica pools.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::health::HealthHandle;
use crate::config::Balance;

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

    pub fn health(&self, i: usize) -> &HealthHandle {
        &self.members[i].health
    }

    /// A client's reads wait for a replica to replay `lsn`: every replica's checker polls fast
    /// until it has (see [`HealthHandle::want`]).
    pub fn want(&self, lsn: u64) {
        for m in &self.members {
            m.health.want(lsn);
        }
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
    use crate::router::health::{HealthReporter, ReplicaHealth};

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
            assert!(!s.draw_primary_share());
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
            assert!(all.draw_primary_share());
            assert!(!none.draw_primary_share());
            assert_eq!(none.pick(None), Some(0));
            if half.draw_primary_share() {
                on_primary += 1;
            }
        }
        assert!((800..1200).contains(&on_primary), "{on_primary}");
    }
}
