//! A session's statement counts not yet merged into the process-wide [`QueryStats`]: recording a
//! statement adds to the session's own few entries under the session's own (uncontended) lock;
//! the shared store is locked once per [`BATCH`] statements of an entry, when a session meets a
//! fifth fingerprint, when it ends, and whenever SHOW QUERIES, `/debug/queries` or RESET QUERIES
//! reads the store (it merges every session's counts first, so what it shows is exact).
//!
//! [`QueryStats`]: super::QueryStats

use std::sync::{Arc, Mutex, MutexGuard};

use super::fingerprint::Fingerprint;
use super::histogram::bucket_of;
use super::query_stats::{Entry, Sample, Scope};

/// Statements of one entry kept before they are merged (their latency as a histogram bucket, one
/// byte each).
pub const BATCH: usize = 32;
/// Entries a session keeps before it merges them all.
pub const ENTRIES: usize = 4;

/// Counts of one fingerprint since the last merge.
pub struct Delta {
    pub fingerprint: Arc<Fingerprint>,
    calls: u64,
    rows: u64,
    total_us: u64,
    max_us: u64,
    wait_us: u64,
    held_us: u64,
    errors: Vec<([u8; 2], u64)>,
    buckets: [u8; BATCH],
}

impl Delta {
    fn new(fingerprint: Arc<Fingerprint>) -> Delta {
        Delta {
            fingerprint,
            calls: 0,
            rows: 0,
            total_us: 0,
            max_us: 0,
            wait_us: 0,
            held_us: 0,
            errors: Vec::new(),
            buckets: [0; BATCH],
        }
    }

    /// Full: merge before the next statement.
    pub fn full(&self) -> bool {
        self.calls as usize >= BATCH
    }

    fn record(&mut self, s: &Sample) {
        self.buckets[self.calls as usize] = bucket_of(s.elapsed_us);
        self.calls += 1;
        self.rows += s.rows;
        self.total_us += s.elapsed_us;
        self.max_us = self.max_us.max(s.elapsed_us);
        self.wait_us += s.wait_us;
        if let Some(class) = s.error {
            add_error(&mut self.errors, class, 1);
        }
    }

    /// Adds these counts to `e` (an entry of the same fingerprint).
    pub fn merge_into(&self, e: &mut Entry) {
        e.calls += self.calls;
        e.rows += self.rows;
        e.total_us += self.total_us;
        e.max_us = e.max_us.max(self.max_us);
        e.wait_us += self.wait_us;
        e.held_us += self.held_us;
        for &b in &self.buckets[..self.calls as usize] {
            e.hist.record_bucket(b);
        }
        for &(class, n) in &self.errors {
            add_error(&mut e.errors, class, n);
        }
    }
}

fn add_error(errors: &mut Vec<([u8; 2], u64)>, class: [u8; 2], n: u64) {
    match errors.iter_mut().find(|(c, _)| *c == class) {
        Some(slot) => slot.1 += n,
        None => errors.push((class, n)),
    }
}

/// One session's unmerged counts, shared with the store so that a reader can merge them.
pub struct Pending {
    pub scope: Scope,
    deltas: Mutex<Vec<Delta>>,
}

impl Pending {
    pub fn new(scope: Scope) -> Pending {
        Pending {
            scope,
            deltas: Mutex::new(Vec::new()),
        }
    }

    pub fn lock(&self) -> Deltas<'_> {
        Deltas(self.deltas.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// The locked counts of a session.
pub struct Deltas<'a>(MutexGuard<'a, Vec<Delta>>);

impl Deltas<'_> {
    /// The entry of `fp`, created if there is room; None when the caller must merge first.
    fn slot(&mut self, fp: &Arc<Fingerprint>) -> Option<&mut Delta> {
        let v = &mut *self.0;
        let at = match v
            .iter()
            .position(|d| Arc::ptr_eq(&d.fingerprint, fp) || d.fingerprint.id == fp.id)
        {
            Some(at) => at,
            None if v.len() >= ENTRIES => return None,
            None => {
                v.push(Delta::new(fp.clone()));
                v.len() - 1
            }
        };
        Some(&mut v[at])
    }

    /// Counts one statement; false (nothing counted) when the caller must merge first.
    pub fn record(&mut self, fp: &Arc<Fingerprint>, s: &Sample) -> bool {
        match self.slot(fp) {
            Some(d) if !d.full() => {
                d.record(s);
                true
            }
            _ => false,
        }
    }

    /// Adds a transaction's held time; false when the caller must merge first.
    pub fn held(&mut self, fp: &Arc<Fingerprint>, us: u64) -> bool {
        match self.slot(fp) {
            Some(d) => {
                d.held_us += us;
                true
            }
            None => false,
        }
    }

    /// Takes every entry out (to merge them).
    pub fn take(&mut self) -> std::vec::Drain<'_, Delta> {
        self.0.drain(..)
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::super::QueryStats;
    use super::*;

    fn fp(sql: &str) -> Arc<Fingerprint> {
        Arc::new(Fingerprint::of(sql.as_bytes()))
    }

    fn sample(us: u64) -> Sample {
        Sample {
            elapsed_us: us,
            rows: 1,
            error: (us == 7).then_some(*b"22"),
            wait_us: 2,
        }
    }

    /// Counts one statement as the tracker does: merging first when the session's entries are
    /// full.
    fn record(store: &QueryStats, p: &Pending, fp: &Arc<Fingerprint>, us: u64) {
        let mut d = p.lock();
        if !d.record(fp, &sample(us)) {
            store.merge(&p.scope, &mut d);
            assert!(d.record(fp, &sample(us)));
        }
    }

    #[test]
    fn readers_see_every_statement_of_a_live_session() {
        let store = QueryStats::new(100);
        let p = store.register(Scope::new("db", "u"));
        let queries: Vec<_> = (0..6).map(|i| fp(&format!("SELECT c{i}"))).collect();
        // 100 of one (over three batches), and one each of six: more than a session keeps.
        for i in 0..100 {
            record(&store, &p, &queries[0], i % 10);
        }
        for q in &queries {
            record(&store, &p, q, 1000);
        }
        assert!(p.lock().held(&queries[5], 500));
        let snap = store.snapshot();
        assert_eq!(snap.len(), 6);
        let first = snap
            .iter()
            .find(|e| e.fingerprint.id == queries[0].id)
            .unwrap();
        assert_eq!((first.calls, first.rows), (101, 101));
        assert_eq!(first.total_us, (0..100).map(|i| i % 10).sum::<u64>() + 1000);
        assert_eq!((first.max_us, first.wait_us), (1000, 202));
        assert_eq!(first.errors_text(), "22:10");
        assert_eq!(first.hist.count(), 101);
        let last = snap
            .iter()
            .find(|e| e.fingerprint.id == queries[5].id)
            .unwrap();
        assert_eq!((last.calls, last.held_us), (1, 500));
        // Nothing is counted twice: the merged counts left the session.
        assert_eq!(store.snapshot()[0].calls, 101);
    }

    #[test]
    fn reset_forgets_pending_counts_and_an_ended_session_is_merged() {
        let store = Arc::new(QueryStats::new(100));
        let q = fp("SELECT 1");
        let p = store.register(Scope::new("db", "u"));
        record(&store, &p, &q, 5);
        store.reset();
        assert!(store.snapshot().is_empty());
        record(&store, &p, &q, 5);
        // A session that ends merges its counts (the tracker's Drop); its registration goes.
        store.merge(&p.scope, &mut p.lock());
        drop(p);
        assert_eq!(store.snapshot()[0].calls, 1);
        for _ in 0..200 {
            let p = store.register(Scope::new("db", "u"));
            record(&store, &p, &q, 5);
            store.merge(&p.scope, &mut p.lock());
        }
        assert!(store.sessions().is_empty());
        assert!(store.registrations() <= 128);
        assert_eq!(store.snapshot()[0].calls, 201);
    }
}
