//! Query statistics per (database, user, fingerprint): what SHOW QUERIES and `/debug/queries`
//! show.
//!
//! One process-wide [`QueryStats`], sharded by key over 16 mutexes. Sessions do not lock it per
//! statement: each counts into its own few [`Pending`] entries (`pending.rs`) and merges them in
//! batches; every reader (SHOW QUERIES, `/debug/queries`, RESET QUERIES) merges all sessions'
//! pending counts first, so it sees every statement that has finished. Not in Prometheus: a
//! label per query would be unbounded.
//!
//! # Bound
//! At most `query_stats_max_entries` entries. When a new entry would pass the bound, the
//! lightest tenth by total execution time is dropped first (one pass over all shards, so the
//! cost is paid once per max/10 new fingerprints) and counted in `evicted`. Heavy statements
//! stay; a fingerprint seen once in a flood of unique ones may come and go, and its counts
//! restart when it comes back. The pending counts of a session (at most
//! [`super::pending::ENTRIES`] fingerprints) are outside the bound until they are merged.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use super::fingerprint::Fingerprint;
use super::histogram::Histogram;
use super::pending::{Deltas, Pending};

const SHARDS: usize = 16;

/// Which database and user a session's statements are counted under.
#[derive(Debug, Clone)]
pub struct Scope {
    pub id: u64,
    pub database: Arc<str>,
    pub user: Arc<str>,
}

impl Scope {
    pub fn new(database: &str, user: &str) -> Scope {
        let mut id: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in database
            .as_bytes()
            .iter()
            .chain(&[0])
            .chain(user.as_bytes())
        {
            id = (id ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
        Scope {
            id,
            database: database.into(),
            user: user.into(),
        }
    }
}

/// One finished statement.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    pub elapsed_us: u64,
    pub rows: u64,
    /// SQLSTATE class (first two characters) of the error it ended with.
    pub error: Option<[u8; 2]>,
    /// Time the client waited for a server connection before it.
    pub wait_us: u64,
}

/// The counts of one (database, user, fingerprint).
#[derive(Debug, Clone)]
pub struct Entry {
    pub database: Arc<str>,
    pub user: Arc<str>,
    pub fingerprint: Arc<Fingerprint>,
    pub calls: u64,
    pub rows: u64,
    pub total_us: u64,
    pub max_us: u64,
    pub wait_us: u64,
    /// Time server connections were held by transactions this statement started.
    pub held_us: u64,
    /// Errors by SQLSTATE class, most frequent first when read through [`QueryStats::snapshot`].
    pub errors: Vec<([u8; 2], u64)>,
    pub hist: Histogram,
}

impl Entry {
    pub fn mean_us(&self) -> u64 {
        self.total_us.checked_div(self.calls).unwrap_or(0)
    }

    pub fn error_count(&self) -> u64 {
        self.errors.iter().map(|e| e.1).sum()
    }

    /// `"42:3 57:1"`: errors by SQLSTATE class.
    pub fn errors_text(&self) -> String {
        let mut s = String::new();
        for (class, n) in &self.errors {
            if !s.is_empty() {
                s.push(' ');
            }
            s.push_str(&String::from_utf8_lossy(class));
            s.push(':');
            s.push_str(&n.to_string());
        }
        s
    }
}

#[derive(Default)]
struct Shard {
    map: HashMap<(u64, u64), Entry>,
}

/// Every entry, bounded; see the module docs.
pub struct QueryStats {
    max_entries: usize,
    shards: Box<[Mutex<Shard>]>,
    len: AtomicUsize,
    evicted: AtomicU64,
    /// When counting started (µs since the epoch): start-up or the last RESET QUERIES.
    since: AtomicU64,
    /// Every session's pending counts (see `pending.rs`).
    sessions: Mutex<Sessions>,
}

#[derive(Default)]
struct Sessions {
    list: Vec<Weak<Pending>>,
    /// Ended sessions are swept from `list` when it reaches this length.
    sweep_at: usize,
}

impl QueryStats {
    pub fn new(max_entries: usize) -> QueryStats {
        QueryStats {
            max_entries: max_entries.max(1),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            len: AtomicUsize::new(0),
            evicted: AtomicU64::new(0),
            since: AtomicU64::new(crate::clock::now_us()),
            sessions: Mutex::default(),
        }
    }

    /// A session's pending counts, known to the readers from now on.
    pub fn register(&self, scope: Scope) -> Arc<Pending> {
        let p = Arc::new(Pending::new(scope));
        let mut s = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        if s.list.len() >= s.sweep_at {
            s.list.retain(|w| w.strong_count() > 0);
            s.sweep_at = (s.list.len() * 2).max(64);
        }
        s.list.push(Arc::downgrade(&p));
        p
    }

    /// Merges a session's pending counts (and empties them).
    pub fn merge(&self, scope: &Scope, deltas: &mut Deltas<'_>) {
        for d in deltas.take() {
            self.update(scope, &d.fingerprint, |e| d.merge_into(e));
        }
    }

    /// Registrations kept (live sessions and ended ones not yet swept).
    #[cfg(test)]
    pub(super) fn registrations(&self) -> usize {
        self.sessions.lock().unwrap().list.len()
    }

    /// Every live session's pending counts.
    pub(super) fn sessions(&self) -> Vec<Arc<Pending>> {
        let s = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        s.list.iter().filter_map(Weak::upgrade).collect()
    }

    fn merge_all(&self) {
        for p in self.sessions() {
            self.merge(&p.scope, &mut p.lock());
        }
    }

    fn shard(&self, key: (u64, u64)) -> MutexGuard<'_, Shard> {
        let i = (key.0 ^ key.1.rotate_left(17)) as usize % SHARDS;
        self.shards[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts one statement of `fp` under `scope`.
    pub fn record(&self, scope: &Scope, fp: &Arc<Fingerprint>, s: &Sample) {
        self.update(scope, fp, |e| {
            e.calls += 1;
            e.rows += s.rows;
            e.total_us += s.elapsed_us;
            e.max_us = e.max_us.max(s.elapsed_us);
            e.wait_us += s.wait_us;
            e.hist.record(s.elapsed_us);
            if let Some(class) = s.error {
                match e.errors.iter_mut().find(|(c, _)| *c == class) {
                    Some(slot) => slot.1 += 1,
                    None => e.errors.push((class, 1)),
                }
            }
        });
    }

    /// Adds the time a transaction started by `fp` held its server connection.
    pub fn held(&self, scope: &Scope, fp: &Arc<Fingerprint>, us: u64) {
        self.update(scope, fp, |e| e.held_us += us);
    }

    fn update(&self, scope: &Scope, fp: &Arc<Fingerprint>, f: impl FnOnce(&mut Entry)) {
        let key = (scope.id, fp.id);
        {
            let mut shard = self.shard(key);
            if let Some(e) = shard.map.get_mut(&key) {
                f(e);
                return;
            }
        }
        if self.len.load(Ordering::Relaxed) >= self.max_entries {
            self.evict();
        }
        let mut shard = self.shard(key);
        let e = shard.map.entry(key).or_insert_with(|| {
            self.len.fetch_add(1, Ordering::Relaxed);
            Entry {
                database: scope.database.clone(),
                user: scope.user.clone(),
                fingerprint: fp.clone(),
                calls: 0,
                rows: 0,
                total_us: 0,
                max_us: 0,
                wait_us: 0,
                held_us: 0,
                errors: Vec::new(),
                hist: Histogram::default(),
            }
        });
        f(e);
    }

    /// Drops the lightest tenth of the entries (by total time).
    fn evict(&self) {
        let mut shards: Vec<_> = self
            .shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()))
            .collect();
        let len: usize = shards.iter().map(|s| s.map.len()).sum();
        if len < self.max_entries {
            return;
        }
        let mut totals: Vec<u64> = shards
            .iter()
            .flat_map(|s| s.map.values().map(|e| e.total_us))
            .collect();
        let drop_n = (len / 10).max(len + 1 - self.max_entries);
        let (_, &mut cut, _) = totals.select_nth_unstable(drop_n.min(len) - 1);
        let mut dropped = 0;
        for s in shards.iter_mut() {
            s.map.retain(|_, e| {
                let keep = e.total_us > cut || dropped >= drop_n;
                if !keep {
                    dropped += 1;
                }
                keep
            });
        }
        self.len.fetch_sub(dropped, Ordering::Relaxed);
        self.evicted.fetch_add(dropped as u64, Ordering::Relaxed);
    }

    /// Every entry, heaviest (total time) first (every session's pending counts merged).
    pub fn snapshot(&self) -> Vec<Entry> {
        self.merge_all();
        let mut all: Vec<Entry> = Vec::new();
        for s in self.shards.iter() {
            let s = s.lock().unwrap_or_else(|p| p.into_inner());
            all.extend(s.map.values().cloned());
        }
        for e in &mut all {
            e.errors.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        }
        all.sort_by(|a, b| {
            b.total_us
                .cmp(&a.total_us)
                .then_with(|| a.fingerprint.text.cmp(&b.fingerprint.text))
        });
        all
    }

    /// RESET QUERIES: forget everything.
    pub fn reset(&self) {
        for p in self.sessions() {
            p.lock().clear();
        }
        for s in self.shards.iter() {
            let mut s = s.lock().unwrap_or_else(|p| p.into_inner());
            self.len.fetch_sub(s.map.len(), Ordering::Relaxed);
            s.map.clear();
        }
        self.evicted.store(0, Ordering::Relaxed);
        self.since.store(crate::clock::now_us(), Ordering::Relaxed);
    }

    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn max_entries(&self) -> usize {
        self.max_entries
    }

    /// Entries dropped to stay within the bound since the last reset.
    pub fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    /// When counting started (µs since the epoch).
    pub fn since_us(&self) -> u64 {
        self.since.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(sql: &str) -> Arc<Fingerprint> {
        Arc::new(Fingerprint::of(sql.as_bytes()))
    }

    #[test]
    fn counts_per_scope_and_fingerprint() {
        let st = QueryStats::new(100);
        let (a, b) = (Scope::new("db", "alice"), Scope::new("db", "bob"));
        let q = fp("SELECT 1");
        for i in 0..10 {
            st.record(
                &a,
                &q,
                &Sample {
                    elapsed_us: 100 * (i + 1),
                    rows: 1,
                    error: (i == 3).then_some(*b"42"),
                    wait_us: 5,
                },
            );
        }
        st.record(&b, &q, &Sample::default());
        st.held(&a, &q, 7000);
        let snap = st.snapshot();
        assert_eq!(snap.len(), 2);
        let e = &snap[0];
        assert_eq!(&*e.user, "alice");
        assert_eq!(
            (e.calls, e.rows, e.total_us, e.max_us),
            (10, 10, 5500, 1000)
        );
        assert_eq!((e.wait_us, e.held_us, e.mean_us()), (50, 7000, 550));
        assert_eq!(e.errors_text(), "42:1");
        let p50 = e.hist.quantile(0.5);
        assert!((400..=700).contains(&p50), "{p50}");
        st.reset();
        assert!(st.snapshot().is_empty());
        assert_eq!(st.len(), 0);
    }

    #[test]
    fn keeps_the_heaviest_within_the_bound() {
        let st = QueryStats::new(50);
        let s = Scope::new("db", "u");
        let heavy = fp("SELECT heavy FROM t");
        st.record(
            &s,
            &heavy,
            &Sample {
                elapsed_us: 1_000_000,
                ..Sample::default()
            },
        );
        for i in 0..500 {
            let q = fp(&format!("SELECT c{i} FROM t"));
            st.record(
                &s,
                &q,
                &Sample {
                    elapsed_us: 10,
                    ..Sample::default()
                },
            );
            assert!(st.len() <= 50, "{} entries", st.len());
        }
        let snap = st.snapshot();
        assert_eq!(snap.len(), st.len());
        assert_eq!(snap[0].fingerprint.text.as_ref(), "SELECT heavy FROM t");
        assert!(st.evicted() >= 450);
    }
}
