//! Replica health: one background task per replica polls it (and the primary, for the lag) and
//! publishes a [`ReplicaHealth`] that the relay reads without waiting.
//!
//! Each poll asks the primary for its WAL write position (`pg_current_wal_lsn()`) and then the
//! replica for `pg_is_in_recovery()`, `pg_last_wal_replay_lsn()` and the age of
//! `pg_last_xact_replay_timestamp()`, in that order, so a replica that has caught up reports a
//! replay position at or past the primary's. Connections stay open between polls and are remade
//! after any failure; a replica that fails a poll is unhealthy at once.
//!
//! # Lag
//!
//! * `lag_bytes` is the primary's write position minus the replica's replay position.
//! * `lag_seconds` bounds how old the newest commit the replica is missing can be. A replica whose
//!   replay position has reached the primary's lags by zero, whatever its replay timestamp says
//!   (on an idle primary that timestamp keeps ageing while the replica is perfectly current).
//!   Otherwise it is the smaller of two upper bounds: the age of the replica's last replayed
//!   commit, and the time since an earlier poll saw the primary at a position the replica has
//!   now replayed (the checker remembers recent primary positions). The second keeps an
//!   otherwise idle primary's background WAL (checkpoints, snapshots) from making a current
//!   replica look as old as its last replayed commit.
//!
//! A replica leaves rotation when it cannot be queried, is not in recovery (promoted, or not a
//! standby at all), or lags past a configured limit. A limit that cannot be checked counts as
//! exceeded: while the primary cannot be reached `lag_bytes` is unknown, so with
//! `max_lag_bytes` set the replica is unhealthy; `lag_seconds` stays known from the primary
//! positions seen before and grows with time, so with `max_lag_time` set the replica leaves once
//! that much time has passed. With no lag limits, only reachability and recovery count.
//!
//! # Read-your-writes
//!
//! [`ReplicaHealth::replay_lsn`] is what [`crate::router::ReplicaSet::pick`] compares with the
//! `min_lsn` of a client that wrote (see [`crate::router::ryw`]). The relay learns that LSN from
//! the primary right after the client's commit, with [`RYW_LSN_QUERY`] on the same server
//! connection, parsed by [`parse_lsn`] (or [`wal_insert_lsn`] on a tokio-postgres client) and
//! passed through [`ryw_fence_lsn`] (which undoes the page-header offset the insert position has
//! at a page start). The insert position is at or past the end of the commit record even with
//! `synchronous_commit = off` (the write position might not be), so "replay LSN ≥ that" proves
//! the replica has the commit. The
//! health snapshot is up to one poll interval old; a stale `replay_lsn` can only understate the
//! replica's progress, which sends a read to the primary, never to a replica that lacks the
//! write.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};
use tokio::task::AbortHandle;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

/// Asked of the primary each poll: its WAL write position.
pub const PRIMARY_LSN_QUERY: &str = "SELECT pg_current_wal_lsn()::text";

/// Asked of each replica each poll.
pub const REPLICA_QUERY: &str = "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text, \
     EXTRACT(EPOCH FROM (now() - pg_last_xact_replay_timestamp()))::float8";

/// What the relay asks the primary after a client's write commits, for read-your-writes.
pub const RYW_LSN_QUERY: &str = "SELECT pg_current_wal_insert_lsn()::text";

/// Where and as whom to connect (the primary or one replica).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaTarget {
    pub host: String,
    pub port: u16,
    pub dbname: String,
    pub user: String,
    pub password: Option<String>,
}

impl ReplicaTarget {
    fn config(&self, connect_timeout: Duration) -> tokio_postgres::Config {
        let mut cfg = tokio_postgres::Config::new();
        cfg.host(&self.host)
            .port(self.port)
            .dbname(&self.dbname)
            .user(&self.user)
            .application_name("sluice-health")
            .connect_timeout(connect_timeout);
        if let Some(p) = &self.password {
            cfg.password(p);
        }
        cfg
    }
}

/// The last reading of one replica.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReplicaHealth {
    /// In rotation: reachable, in recovery, and within the lag limits.
    pub healthy: bool,
    pub in_recovery: Option<bool>,
    /// `pg_last_wal_replay_lsn()`.
    pub replay_lsn: Option<u64>,
    /// The primary's `pg_current_wal_lsn()`, read just before the replica.
    pub primary_lsn: Option<u64>,
    /// See the module docs: zero when caught up; None when it cannot be bounded.
    pub lag_seconds: Option<f64>,
    /// `now() - pg_last_xact_replay_timestamp()` on the replica, as reported (None before the
    /// replica has replayed a commit since it started).
    pub replay_age_seconds: Option<f64>,
    /// `primary_lsn - replay_lsn` (0 when the replica is at or past it).
    pub lag_bytes: Option<u64>,
    /// Why the replica is unhealthy, or a problem reaching the primary (prefixed `primary:`).
    pub last_error: Option<String>,
    /// When this reading was taken; None until the first poll finishes.
    pub checked_at: Option<Instant>,
}

/// How often to poll and what counts as too far behind.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthPolicy {
    pub interval: Duration,
    pub max_lag_time: Option<Duration>,
    pub max_lag_bytes: Option<u64>,
    /// Bounds connecting, and also each poll's query, on each server.
    pub connect_timeout: Duration,
}

impl Default for HealthPolicy {
    fn default() -> Self {
        HealthPolicy {
            interval: Duration::from_secs(1),
            max_lag_time: None,
            max_lag_bytes: None,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// A cheap, cloneable view of one replica's health. The checker behind it stops once every
/// handle is dropped.
#[derive(Debug, Clone)]
pub struct HealthHandle {
    rx: watch::Receiver<ReplicaHealth>,
    wanted: Arc<Wanted>,
}

/// How often the checker polls while a client waits for this replica to replay its write.
pub const FENCED_POLL: Duration = Duration::from_millis(10);

/// The highest replay position a fenced client has waited for, and the wake-up that makes the
/// checker poll at once and then every [`FENCED_POLL`] until the replica has replayed it.
#[derive(Debug, Default)]
struct Wanted {
    lsn: AtomicU64,
    wake: Notify,
}

/// Publishes readings to [`HealthHandle`]s made with [`HealthHandle::manual`].
#[derive(Debug)]
pub struct HealthReporter {
    tx: watch::Sender<ReplicaHealth>,
}

impl HealthReporter {
    pub fn set(&self, health: ReplicaHealth) {
        self.tx.send_replace(health);
    }

    /// Changes the current reading in place.
    pub fn update(&self, f: impl FnOnce(&mut ReplicaHealth)) {
        self.tx.send_modify(f);
    }
}

impl HealthHandle {
    /// A handle fed by hand rather than by a checker (tests, and a relay that wants a fixed
    /// replica).
    pub fn manual(initial: ReplicaHealth) -> (HealthHandle, HealthReporter) {
        let (tx, rx) = watch::channel(initial);
        let wanted = Arc::default();
        (HealthHandle { rx, wanted }, HealthReporter { tx })
    }

    /// A client's reads wait for this replica to replay `lsn` (its read-your-writes fence): the
    /// checker polls at once and then every [`FENCED_POLL`] until the replica has, instead of
    /// leaving the client on the primary for up to a whole `replica_check_interval`. Cheap when
    /// called again for the same or a lower position (one atomic).
    pub fn want(&self, lsn: u64) {
        if self.wanted.lsn.fetch_max(lsn, Ordering::Relaxed) < lsn {
            self.wanted.wake.notify_one();
        }
    }

    /// A copy of the latest reading.
    pub fn current(&self) -> ReplicaHealth {
        self.rx.borrow().clone()
    }

    /// When the latest reading was taken (None before the first poll finished).
    pub fn checked_at(&self) -> Option<Instant> {
        self.rx.borrow().checked_at
    }

    pub fn is_healthy(&self) -> bool {
        self.rx.borrow().healthy
    }

    /// Healthy, and (when given) replayed at least to `min_lsn`. Copies nothing.
    pub fn is_eligible(&self, min_lsn: Option<u64>) -> bool {
        let h = self.rx.borrow();
        h.healthy
            && match min_lsn {
                None => true,
                Some(min) => h.replay_lsn.is_some_and(|r| r >= min),
            }
    }

    /// Waits for the next reading (the checker publishes one per poll) and returns it; None when
    /// the checker has stopped.
    pub async fn wait_for_change(&mut self) -> Option<ReplicaHealth> {
        self.rx.changed().await.ok()?;
        Some(self.rx.borrow_and_update().clone())
    }

    /// Waits until a reading satisfies `pred` (the current one included); None when the checker
    /// stopped first.
    pub async fn wait_until(
        &mut self,
        mut pred: impl FnMut(&ReplicaHealth) -> bool,
    ) -> Option<ReplicaHealth> {
        let h = self.rx.wait_for(|h| pred(h)).await.ok()?;
        Some(h.clone())
    }
}

/// Starts polling `replica` (and `primary`, for the lag) every `policy.interval`, on a tokio task
/// of the current runtime. The first poll starts at once; until it finishes the replica reads as
/// unhealthy with `checked_at == None`.
pub fn spawn_checker(
    primary: ReplicaTarget,
    replica: ReplicaTarget,
    policy: HealthPolicy,
) -> HealthHandle {
    let (tx, rx) = watch::channel(ReplicaHealth::default());
    let wanted: Arc<Wanted> = Arc::default();
    let checker = Checker {
        primary: Endpoint::new(primary),
        replica: Endpoint::new(replica),
        policy,
        history: VecDeque::new(),
        wanted: wanted.clone(),
    };
    tokio::spawn(checker.run(tx));
    HealthHandle { rx, wanted }
}

/// Parses an LSN as PostgreSQL prints it, `X/Y` in hex (each half up to 32 bits).
pub fn parse_lsn(s: &str) -> Option<u64> {
    let (hi, lo) = s.trim().split_once('/')?;
    let half = |h: &str| {
        if h.is_empty() || h.len() > 8 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u32::from_str_radix(h, 16).ok()
    };
    Some((u64::from(half(hi)?) << 32) | u64::from(half(lo)?))
}

/// Formats an LSN the way PostgreSQL does (`16/B374D848`).
pub fn format_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

/// The LSN a replica must have replayed to hold everything inserted before `insert_lsn` (a
/// `pg_current_wal_insert_lsn()` value).
///
/// At the start of a WAL page the insert position points past the page header, while a replica
/// that has replayed every record so far reports the end of the last record: the page start.
/// Without this correction a client whose write happened to end a page would wait for the next
/// WAL record before reading from a replica. `wal_block_size` and `wal_segment_size` are the
/// server's settings (`SHOW wal_block_size`, `SHOW wal_segment_size`; 8192 and 16 MiB unless
/// changed when the server was built or initialised).
pub fn ryw_fence_lsn(insert_lsn: u64, wal_block_size: u64, wal_segment_size: u64) -> u64 {
    // XLogLongPageHeaderData starts each segment, XLogPageHeaderData every other page.
    const LONG_HEADER: u64 = 40;
    const SHORT_HEADER: u64 = 24;
    if wal_segment_size > 0 && insert_lsn % wal_segment_size == LONG_HEADER {
        return insert_lsn - LONG_HEADER;
    }
    if wal_block_size > 0
        && insert_lsn % wal_block_size == SHORT_HEADER
        && (wal_segment_size == 0 || (insert_lsn - SHORT_HEADER) % wal_segment_size != 0)
    {
        return insert_lsn - SHORT_HEADER;
    }
    insert_lsn
}

/// The primary's WAL insert position ([`RYW_LSN_QUERY`]) through a tokio-postgres client.
pub async fn wal_insert_lsn(client: &Client) -> Result<u64, String> {
    let row = query_row(client, RYW_LSN_QUERY).await?;
    row.first()
        .and_then(|v| v.as_deref())
        .and_then(parse_lsn)
        .ok_or_else(|| format!("unexpected answer to {RYW_LSN_QUERY}: {row:?}"))
}

/// The single row of a simple query, as text values.
async fn query_row(client: &Client, sql: &str) -> Result<Vec<Option<String>>, String> {
    let msgs = client.simple_query(sql).await.map_err(|e| e.to_string())?;
    for m in msgs {
        if let SimpleQueryMessage::Row(row) = m {
            return Ok((0..row.len())
                .map(|i| row.get(i).map(str::to_owned))
                .collect());
        }
    }
    Err(format!("no row from {sql}"))
}

/// How many primary positions the checker remembers (one per poll at most, fewer when the
/// primary is idle since equal positions share an entry).
const HISTORY: usize = 512;

struct Checker {
    primary: Endpoint,
    replica: Endpoint,
    policy: HealthPolicy,
    /// (primary LSN, the last time a poll saw the primary at it), ascending in both.
    history: VecDeque<(u64, Instant)>,
    /// What fenced clients wait for (see [`HealthHandle::want`]).
    wanted: Arc<Wanted>,
}

impl Checker {
    async fn run(mut self, tx: watch::Sender<ReplicaHealth>) {
        let mut tick = tokio::time::interval(self.policy.interval.max(Duration::from_millis(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut replayed = None;
        loop {
            // While a fenced client waits for a position this replica has not replayed (as far
            // as the last poll knows), poll every FENCED_POLL; otherwise at the interval, or at
            // once when a client starts waiting.
            let wanted = self.wanted.lsn.load(Ordering::Relaxed);
            if wanted > 0 && replayed.is_some_and(|r| r < wanted) {
                tokio::select! {
                    _ = tx.closed() => break,
                    _ = tokio::time::sleep(FENCED_POLL) => {}
                }
            } else {
                tokio::select! {
                    _ = tx.closed() => break,
                    _ = tick.tick() => {}
                    _ = self.wanted.wake.notified() => {}
                }
            }
            let health = tokio::select! {
                _ = tx.closed() => break,
                h = self.poll() => h,
            };
            replayed = health.replay_lsn.filter(|_| health.healthy);
            tx.send_replace(health);
        }
        self.primary.reset();
        self.replica.reset();
    }

    async fn poll(&mut self) -> ReplicaHealth {
        let limit = self.policy.connect_timeout;
        let primary = self
            .primary
            .query(PRIMARY_LSN_QUERY, limit)
            .await
            .and_then(|row| {
                row.first()
                    .and_then(|v| v.as_deref())
                    .and_then(parse_lsn)
                    .ok_or_else(|| format!("unexpected answer: {row:?}"))
            });
        if let Ok(lsn) = primary {
            self.remember(lsn, Instant::now());
        }
        let replica = self.replica.query(REPLICA_QUERY, limit).await;
        let now = Instant::now();
        let mut h = ReplicaHealth {
            checked_at: Some(now),
            ..ReplicaHealth::default()
        };
        let row = match replica {
            Ok(row) => row,
            Err(e) => {
                h.last_error = Some(format!("replica: {e}"));
                return h;
            }
        };
        let text = |i: usize| row.get(i).and_then(|v| v.as_deref());
        h.in_recovery = text(0).map(|v| v == "t");
        h.replay_lsn = text(1).and_then(parse_lsn);
        h.replay_age_seconds = text(2).and_then(|v| v.parse::<f64>().ok());
        h.primary_lsn = primary.as_ref().ok().copied();
        h.lag_bytes = match (h.primary_lsn, h.replay_lsn) {
            (Some(p), Some(r)) => Some(p.saturating_sub(r)),
            _ => None,
        };
        h.lag_seconds = if h.lag_bytes == Some(0) {
            Some(0.0)
        } else {
            let since_seen = h
                .replay_lsn
                .and_then(|r| self.seen_at_or_before(r))
                .map(|t| now.saturating_duration_since(t).as_secs_f64());
            let age = h.replay_age_seconds.map(|a| a.max(0.0));
            match (since_seen, age) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        };
        let problem = self.judge(&h, primary.as_ref().err());
        h.healthy = problem.is_none();
        h.last_error = match (problem, primary) {
            (Some(p), _) => Some(p),
            (None, Err(e)) => Some(format!("primary: {e}")),
            (None, Ok(_)) => None,
        };
        h
    }

    /// Why the reading is not healthy, if it is not.
    fn judge(&self, h: &ReplicaHealth, primary_error: Option<&String>) -> Option<String> {
        if h.in_recovery != Some(true) {
            return Some("replica: not in recovery (not a standby, or promoted)".to_owned());
        }
        if let Some(max) = self.policy.max_lag_bytes {
            match h.lag_bytes {
                Some(b) if b > max => {
                    return Some(format!("replica: lags {b} bytes (max_lag_bytes {max})"));
                }
                Some(_) => {}
                None => {
                    let why = primary_error
                        .map_or("no replay position".to_owned(), |e| format!("primary: {e}"));
                    return Some(format!("cannot measure lag in bytes: {why}"));
                }
            }
        }
        if let Some(max) = self.policy.max_lag_time {
            match h.lag_seconds {
                Some(s) if s > max.as_secs_f64() => {
                    return Some(format!("replica: lags {s:.3}s (max_lag_time {max:?})"));
                }
                Some(_) => {}
                None => return Some("cannot measure lag in time".to_owned()),
            }
        }
        None
    }

    fn remember(&mut self, lsn: u64, at: Instant) {
        match self.history.back_mut() {
            // A primary that went backwards is another primary: forget the old one.
            Some(&mut (last, _)) if lsn < last => self.history.clear(),
            Some(last) if last.0 == lsn => {
                last.1 = at;
                return;
            }
            _ => {}
        }
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back((lsn, at));
    }

    /// The last time a poll saw the primary at a position no later than `replay`.
    fn seen_at_or_before(&self, replay: u64) -> Option<Instant> {
        let n = self.history.partition_point(|&(lsn, _)| lsn <= replay);
        n.checked_sub(1).map(|i| self.history[i].1)
    }
}

/// A kept-open connection to one server.
struct Endpoint {
    target: ReplicaTarget,
    conn: Option<(Client, AbortHandle)>,
}

impl Endpoint {
    fn new(target: ReplicaTarget) -> Endpoint {
        Endpoint { target, conn: None }
    }

    fn reset(&mut self) {
        if let Some((_, task)) = self.conn.take() {
            task.abort();
        }
    }

    /// Runs `sql`, connecting first if need be; any failure drops the connection.
    async fn query(&mut self, sql: &str, limit: Duration) -> Result<Vec<Option<String>>, String> {
        if self.conn.as_ref().is_some_and(|(c, _)| c.is_closed()) {
            self.reset();
        }
        if self.conn.is_none() {
            let cfg = self.target.config(limit);
            let (client, connection) = bounded(limit, "connect", cfg.connect(NoTls)).await?;
            let task = tokio::spawn(async move {
                let _ = connection.await;
            });
            self.conn = Some((client, task.abort_handle()));
        }
        let (client, _) = self.conn.as_ref().expect("connected above");
        let result = match tokio::time::timeout(limit, query_row(client, sql)).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {limit:?}")),
        };
        if result.is_err() {
            self.reset();
        }
        result
    }
}

async fn bounded<T>(
    limit: Duration,
    what: &str,
    fut: impl Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, String> {
    match tokio::time::timeout(limit, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!("{what}: no answer within {limit:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsns() {
        assert_eq!(parse_lsn("0/0"), Some(0));
        assert_eq!(parse_lsn("0/3000148"), Some(0x0300_0148));
        assert_eq!(parse_lsn("16/B374D848"), Some((0x16 << 32) | 0xB374_D848));
        assert_eq!(parse_lsn(" 1/a "), Some((1 << 32) | 0xa));
        assert_eq!(
            parse_lsn("FFFFFFFF/FFFFFFFF"),
            Some(u64::MAX),
            "the largest LSN"
        );
        for bad in [
            "",
            "/",
            "0/",
            "/0",
            "1",
            "1/2/3",
            "g/0",
            "0/-1",
            "+1/0",
            "100000000/0",
            "0/ 1",
        ] {
            assert_eq!(parse_lsn(bad), None, "{bad:?}");
        }
        for lsn in [0, 1, 0x0300_0148, (0x16 << 32) | 0xB374_D848, u64::MAX] {
            assert_eq!(parse_lsn(&format_lsn(lsn)), Some(lsn));
        }
        assert_eq!(format_lsn((0x16 << 32) | 0xB374_D848), "16/B374D848");
    }

    #[test]
    fn fence_lsns() {
        const B: u64 = 8192;
        const S: u64 = 16 << 20;
        // Mid-page positions are kept.
        for lsn in [
            0x0300_0148,
            S + 8,
            S + B + 23,
            S + B + 25,
            5 * S + 3 * B + 4000,
        ] {
            assert_eq!(ryw_fence_lsn(lsn, B, S), lsn, "{lsn:#x}");
        }
        // Just past a page header: back to the page start.
        assert_eq!(ryw_fence_lsn(S + B + 24, B, S), S + B);
        assert_eq!(ryw_fence_lsn(3 * S + 40, B, S), 3 * S);
        // Offset 24 of a segment's first page is mid-page (its header is 40 bytes long).
        assert_eq!(ryw_fence_lsn(3 * S + 24, B, S), 3 * S + 24);
        // Unknown sizes change nothing.
        assert_eq!(ryw_fence_lsn(S + B + 24, 0, 0), S + B + 24);
    }

    fn checker(policy: HealthPolicy) -> Checker {
        let t = ReplicaTarget {
            host: "127.0.0.1".into(),
            port: 1,
            dbname: "x".into(),
            user: "x".into(),
            password: None,
        };
        Checker {
            primary: Endpoint::new(t.clone()),
            replica: Endpoint::new(t),
            policy,
            history: VecDeque::new(),
            wanted: Arc::default(),
        }
    }

    #[test]
    fn history_finds_the_last_sighting_at_or_before_a_position() {
        let mut c = checker(HealthPolicy::default());
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        c.remember(100, at(0));
        c.remember(100, at(10));
        c.remember(200, at(20));
        c.remember(300, at(30));
        assert_eq!(c.history.len(), 3, "equal positions share an entry");
        assert_eq!(c.seen_at_or_before(50), None);
        assert_eq!(c.seen_at_or_before(100), Some(at(10)));
        assert_eq!(c.seen_at_or_before(250), Some(at(20)));
        assert_eq!(c.seen_at_or_before(u64::MAX), Some(at(30)));
        c.remember(50, at(40));
        assert_eq!(c.history.len(), 1, "a primary going backwards resets");
        for i in 0..(HISTORY as u64 + 10) {
            c.remember(1000 + i, at(50 + i));
        }
        assert_eq!(c.history.len(), HISTORY);
    }

    #[test]
    fn judging() {
        let base = ReplicaHealth {
            in_recovery: Some(true),
            replay_lsn: Some(100),
            primary_lsn: Some(100),
            lag_bytes: Some(0),
            lag_seconds: Some(0.0),
            ..ReplicaHealth::default()
        };
        let strict = checker(HealthPolicy {
            max_lag_bytes: Some(10),
            max_lag_time: Some(Duration::from_secs(1)),
            ..HealthPolicy::default()
        });
        let lax = checker(HealthPolicy::default());
        assert_eq!(strict.judge(&base, None), None);

        let not_standby = ReplicaHealth {
            in_recovery: Some(false),
            ..base.clone()
        };
        assert!(strict.judge(&not_standby, None).is_some());
        assert!(lax.judge(&not_standby, None).is_some());

        let behind = ReplicaHealth {
            lag_bytes: Some(11),
            ..base.clone()
        };
        assert!(strict.judge(&behind, None).unwrap().contains("11 bytes"));
        assert_eq!(lax.judge(&behind, None), None);

        let old = ReplicaHealth {
            lag_seconds: Some(1.5),
            ..base.clone()
        };
        assert!(strict.judge(&old, None).unwrap().contains("lags 1.500s"));
        assert_eq!(lax.judge(&old, None), None);

        let no_primary = ReplicaHealth {
            primary_lsn: None,
            lag_bytes: None,
            ..base.clone()
        };
        let e = "connection refused".to_owned();
        assert!(
            strict
                .judge(&no_primary, Some(&e))
                .unwrap()
                .contains("connection refused")
        );
        assert_eq!(lax.judge(&no_primary, Some(&e)), None);

        let unknown_time = ReplicaHealth {
            lag_seconds: None,
            ..base
        };
        assert!(strict.judge(&unknown_time, None).is_some());
        assert_eq!(lax.judge(&unknown_time, None), None);
    }

    #[tokio::test]
    async fn unreachable_replica_is_unhealthy_with_an_error() {
        // Port 1 on loopback: nothing listens there, so connecting fails at once.
        let t = ReplicaTarget {
            host: "127.0.0.1".into(),
            port: 1,
            dbname: "x".into(),
            user: "x".into(),
            password: None,
        };
        let policy = HealthPolicy {
            interval: Duration::from_millis(20),
            connect_timeout: Duration::from_secs(2),
            ..HealthPolicy::default()
        };
        let mut h = spawn_checker(t.clone(), t, policy);
        let reading = tokio::time::timeout(
            Duration::from_secs(10),
            h.wait_until(|h| h.checked_at.is_some()),
        )
        .await
        .expect("a reading within 10s")
        .expect("checker running");
        assert!(!reading.healthy);
        let err = reading.last_error.expect("an error");
        assert!(err.starts_with("replica: connect"), "{err}");
        assert_eq!(reading.in_recovery, None);
        assert_eq!(reading.replay_lsn, None);
    }

    #[tokio::test]
    async fn manual_handles() {
        let (mut h, r) = HealthHandle::manual(ReplicaHealth::default());
        assert!(!h.is_healthy());
        assert!(!h.is_eligible(None));
        r.set(ReplicaHealth {
            healthy: true,
            replay_lsn: Some(50),
            ..ReplicaHealth::default()
        });
        assert_eq!(h.wait_for_change().await.map(|h| h.healthy), Some(true));
        assert!(h.is_eligible(None));
        assert!(h.is_eligible(Some(50)));
        assert!(!h.is_eligible(Some(51)));
        r.update(|h| h.replay_lsn = None);
        assert!(!h.is_eligible(Some(1)));
        assert!(h.is_eligible(None));
        assert_eq!(h.wait_for_change().await.map(|h| h.replay_lsn), Some(None));
        drop(r);
        assert_eq!(h.wait_for_change().await, None);
    }
}
