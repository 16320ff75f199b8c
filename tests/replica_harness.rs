//! The replica health checker against a real primary and a real streaming replica.
//!
//! Each test starts its own cluster (see `common/replica.rs`). Readings are awaited with deadlines;
//! every assertion is on what the checker published, so a broken checker fails here.

mod common;

use std::time::{Duration, Instant};

use common::*;
use sluice::router::health::{
    HealthPolicy, ReplicaHealth, parse_lsn, ryw_fence_lsn, spawn_checker, wal_insert_lsn,
};
use sluice::router::{Balance, ReadConstraint, ReadYourWrites, ReplicaSet, WriteFence};

/// How long the checker may take to notice a change (many poll intervals).
const NOTICE: Duration = Duration::from_secs(30);

fn policy(max_lag_time: Option<Duration>, max_lag_bytes: Option<u64>) -> HealthPolicy {
    HealthPolicy {
        interval: Duration::from_millis(100),
        max_lag_time,
        max_lag_bytes,
        connect_timeout: Duration::from_secs(5),
    }
}

/// Writes about a megabyte of WAL on the primary (as `app`).
async fn write_some(c: &ReplicaCluster) {
    let app = c.connect_primary_app().await;
    within(
        STEP,
        "write",
        app.batch_execute(
            "CREATE TABLE IF NOT EXISTS filler (id int, pad text);
             INSERT INTO filler SELECT g, repeat('x', 100) FROM generate_series(1, 5000) g;",
        ),
    )
    .await
    .expect("write on the primary");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_in_recovery_is_healthy_and_a_primary_is_not() {
    let c = ReplicaCluster::start().await;
    let mut h = spawn_checker(
        c.primary_target(),
        c.replica_target(),
        policy(Some(Duration::from_secs(2)), Some(1 << 20)),
    );
    let r = wait_health(&mut h, NOTICE, "replica healthy", |h| h.healthy).await;
    assert_eq!(r.in_recovery, Some(true));
    assert!(r.replay_lsn.is_some() && r.primary_lsn.is_some(), "{r:?}");
    assert!(r.checked_at.is_some());
    assert_eq!(r.last_error, None);

    // Once caught up, the byte lag is zero and so is the time lag.
    let r = wait_health(&mut h, NOTICE, "zero lag", |h| h.lag_bytes == Some(0)).await;
    assert!(r.healthy);
    assert_eq!(r.lag_seconds, Some(0.0));

    // The replica reports what the servers say.
    let replica = c.connect_replica().await;
    assert_eq!(
        simple_scalar(&replica, "SELECT pg_is_in_recovery()::text")
            .await
            .as_deref(),
        Some("true")
    );
    let replayed = parse_lsn(
        &simple_scalar(&replica, "SELECT pg_last_wal_replay_lsn()::text")
            .await
            .unwrap(),
    )
    .unwrap();
    let r = h.current();
    assert!(r.replay_lsn.unwrap() <= replayed, "{r:?} vs {replayed:#x}");

    // A checker pointed at the primary as if it were a replica: reachable, not in recovery.
    let mut wrong = spawn_checker(c.primary_target(), c.primary_target(), policy(None, None));
    let r = wait_health(&mut wrong, NOTICE, "a reading of the primary", |h| {
        h.checked_at.is_some()
    })
    .await;
    assert!(!r.healthy, "{r:?}");
    assert_eq!(r.in_recovery, Some(false));
    assert!(
        r.last_error
            .as_deref()
            .is_some_and(|e| e.contains("not in recovery")),
        "{r:?}"
    );
}

/// On an idle primary the replica's last replayed commit keeps ageing, yet the replica is current:
/// it must stay in rotation under a time limit shorter than that age.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_primary_does_not_make_a_current_replica_lag() {
    let c = ReplicaCluster::start().await;
    let limit = Duration::from_secs(1);
    // Give the replica a commit to replay, so its replay timestamp is known.
    let app = c.connect_primary_app().await;
    within(
        STEP,
        "create",
        app.batch_execute("CREATE TABLE idle (a int)"),
    )
    .await
    .unwrap();
    let mut h = spawn_checker(
        c.primary_target(),
        c.replica_target(),
        policy(Some(limit), None),
    );
    wait_health(&mut h, NOTICE, "healthy with a replay timestamp", |h| {
        h.healthy && h.replay_age_seconds.is_some()
    })
    .await;
    let deadline = Instant::now() + NOTICE;
    loop {
        let r = within(NOTICE, "next reading", h.wait_for_change())
            .await
            .expect("checker running");
        assert!(r.healthy, "an idle, current replica left rotation: {r:?}");
        let lag = r.lag_seconds.expect("lag known");
        assert!(lag <= limit.as_secs_f64(), "{r:?}");
        if r.replay_age_seconds.unwrap() > 2.0 * limit.as_secs_f64() {
            break;
        }
        assert!(Instant::now() < deadline, "replay age never grew: {r:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_replay_lags_in_bytes_until_resumed() {
    let c = ReplicaCluster::start().await;
    let max = 64 * 1024;
    let mut h = spawn_checker(
        c.primary_target(),
        c.replica_target(),
        policy(None, Some(max)),
    );
    wait_health(&mut h, NOTICE, "replica healthy", |h| h.healthy).await;

    c.pause_replay().await;
    write_some(&c).await;
    let r = wait_health(&mut h, NOTICE, "byte lag noticed", |h| !h.healthy).await;
    let lag = r.lag_bytes.expect("lag measured");
    assert!(lag > max, "{r:?}");
    assert_eq!(
        r.primary_lsn.unwrap() - r.replay_lsn.unwrap(),
        lag,
        "lag is the primary's position minus the replay position"
    );
    assert_eq!(r.in_recovery, Some(true), "paused, still a standby");
    assert!(
        r.last_error
            .as_deref()
            .is_some_and(|e| e.contains("max_lag_bytes")),
        "{r:?}"
    );
    // It stays out while paused.
    for _ in 0..5 {
        let r = within(NOTICE, "reading", h.wait_for_change())
            .await
            .unwrap();
        assert!(!r.healthy && r.lag_bytes.unwrap() >= lag, "{r:?}");
    }

    c.resume_replay().await;
    let r = wait_health(&mut h, NOTICE, "healthy again", |h| h.healthy).await;
    assert!(r.lag_bytes.unwrap() <= max, "{r:?}");
    assert_eq!(r.last_error, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_replay_lags_in_time_until_resumed() {
    let c = ReplicaCluster::start().await;
    let max = Duration::from_secs(1);
    let mut h = spawn_checker(
        c.primary_target(),
        c.replica_target(),
        policy(Some(max), None),
    );
    let caught_up = wait_health(&mut h, NOTICE, "replica caught up", |h| {
        h.healthy && h.lag_bytes == Some(0)
    })
    .await;

    c.pause_replay().await;
    write_some(&c).await;
    let r = wait_health(&mut h, NOTICE, "time lag noticed", |h| !h.healthy).await;
    // The lag counts from the last poll that saw the replica caught up (a poll takes a moment:
    // allow half a second for the primary's reading to precede `checked_at`), so a byte lag alone
    // must not have made it unhealthy before the time limit could pass.
    let since = r.checked_at.unwrap() - caught_up.checked_at.unwrap();
    assert!(
        since + Duration::from_millis(500) >= max,
        "unhealthy {since:?} after the replica was last seen caught up: {r:?}"
    );
    let lag = r.lag_seconds.expect("lag bounded");
    assert!(
        lag <= since.as_secs_f64() + 0.5,
        "lag {lag} exceeds the time since caught up {since:?}"
    );
    assert!(lag > max.as_secs_f64(), "{r:?}");
    assert!(r.lag_bytes.unwrap() > 0, "{r:?}");
    assert!(
        r.last_error
            .as_deref()
            .is_some_and(|e| e.contains("max_lag_time")),
        "{r:?}"
    );

    c.resume_replay().await;
    let r = wait_health(&mut h, NOTICE, "healthy again", |h| h.healthy).await;
    assert!(r.lag_seconds.unwrap() <= max.as_secs_f64(), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_replica_leaves_rotation_and_returns() {
    let mut c = ReplicaCluster::start().await;
    let mut h = spawn_checker(
        c.primary_target(),
        c.replica_target(),
        policy(None, Some(1 << 20)),
    );
    wait_health(&mut h, NOTICE, "replica healthy", |h| h.healthy).await;

    c.stop_replica().await;
    let r = wait_health(&mut h, NOTICE, "stopped replica unhealthy", |h| !h.healthy).await;
    assert!(
        r.last_error
            .as_deref()
            .is_some_and(|e| e.starts_with("replica:")),
        "{r:?}"
    );
    assert_eq!(r.in_recovery, None);
    assert_eq!(r.replay_lsn, None);
    // Still down on the next readings (reconnects fail).
    for _ in 0..3 {
        let r = within(NOTICE, "reading", h.wait_for_change())
            .await
            .unwrap();
        assert!(!r.healthy, "{r:?}");
    }

    // Writes while it is down are caught up through the slot.
    write_some(&c).await;
    c.start_replica().await;
    let r = wait_health(&mut h, NOTICE, "restarted replica healthy", |h| h.healthy).await;
    assert_eq!(r.in_recovery, Some(true));
    assert_eq!(r.last_error, None);
}

/// Read-your-writes end to end: after a commit, a replica is picked for the client only once its
/// published replay position has reached the commit, and then the row is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_your_writes_waits_for_the_replica() {
    let c = ReplicaCluster::start().await;
    let mut h = spawn_checker(c.primary_target(), c.replica_target(), policy(None, None));
    wait_health(&mut h, NOTICE, "replica healthy", |h| h.healthy).await;
    let set = ReplicaSet::new(Balance::LeastOutstanding, vec![h.clone()]);

    let app = c.connect_primary_app().await;
    within(
        STEP,
        "create",
        app.batch_execute("CREATE TABLE ryw (a int)"),
    )
    .await
    .unwrap();
    let replica_app = c.connect_replica_app().await;
    poll_until(NOTICE, "table replicated", || async {
        replica_app
            .simple_query("SELECT count(*) FROM ryw")
            .await
            .is_ok()
    })
    .await;

    c.pause_replay().await;
    within(
        STEP,
        "insert",
        app.batch_execute("INSERT INTO ryw VALUES (42)"),
    )
    .await
    .unwrap();
    let block: u64 = simple_scalar(&app, "SHOW wal_block_size")
        .await
        .unwrap()
        .parse()
        .unwrap();
    let segment = simple_scalar(
        &app,
        "SELECT setting FROM pg_settings WHERE name = 'wal_segment_size'",
    )
    .await
    .unwrap()
    .parse::<u64>()
    .unwrap();
    let lsn = ryw_fence_lsn(
        within(STEP, "lsn", wal_insert_lsn(&app)).await.unwrap(),
        block,
        segment,
    );
    let mut fence = WriteFence::new(ReadYourWrites::Lsn, Duration::from_secs(5));
    fence.record_write(Some(lsn), Instant::now());
    let ReadConstraint::MinLsn(min) = fence.constraint(Instant::now()) else {
        panic!("an LSN fence");
    };

    // While replay is paused the replica is healthy but behind the write: not eligible.
    let r = wait_health(&mut h, NOTICE, "a reading after the write", |h| {
        h.primary_lsn.is_some_and(|p| p >= min)
    })
    .await;
    assert!(r.healthy, "{r:?}");
    assert!(r.replay_lsn.unwrap() < min, "{r:?}");
    assert_eq!(set.pick(Some(min)), None);
    assert_eq!(
        set.pick(None),
        Some(0),
        "without the fence it would be used"
    );
    assert_eq!(
        simple_scalar(&replica_app, "SELECT count(*) FROM ryw")
            .await
            .as_deref(),
        Some("0"),
        "the replica really lacks the write"
    );

    c.resume_replay().await;
    wait_health(&mut h, NOTICE, "replica past the write", |h| {
        h.replay_lsn.is_some_and(|r| r >= min)
    })
    .await;
    assert_eq!(set.pick(Some(min)), Some(0));
    assert_eq!(
        simple_scalar(&replica_app, "SELECT count(*) FROM ryw")
            .await
            .as_deref(),
        Some("1"),
        "a replica past the fence has the write"
    );
}

#[test]
fn health_reading_default_is_unhealthy() {
    let r = ReplicaHealth::default();
    assert!(!r.healthy && r.checked_at.is_none());
}

/// The classifier against a real hot standby: what it routes to a replica runs there, and the
/// writes it keeps on the primary are refused there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classifier_agrees_with_a_hot_standby() {
    use sluice::router::{Route, classify};

    let c = ReplicaCluster::start().await;
    let app = c.connect_primary_app().await;
    within(
        STEP,
        "schema",
        app.batch_execute(
            "CREATE TABLE t (a int, \"update\" int, s text);
             INSERT INTO t VALUES (1, 2, 'x');
             CREATE SEQUENCE seq;",
        ),
    )
    .await
    .unwrap();
    let replica = c.connect_replica_app().await;
    poll_until(NOTICE, "schema replicated", || async {
        replica
            .simple_query("SELECT last_value FROM seq")
            .await
            .is_ok()
    })
    .await;

    let extra = vec!["my_writer".to_owned()];
    for sql in [
        "SELECT 1",
        "select * from t;",
        "TABLE t",
        "VALUES (1), (2)",
        "SHOW search_path",
        "WITH x AS (SELECT a FROM t) SELECT * FROM x",
        "(SELECT 1) UNION (SELECT 2)",
        "EXPLAIN SELECT * FROM t",
        "EXPLAIN (COSTS off) WITH x AS (SELECT 1) SELECT * FROM x",
        "SELECT 'FOR UPDATE', $$ insert $$, $q$ ; DELETE FROM t $q$",
        "SELECT \"update\" FROM t",
        "SELECT E'\\' FOR UPDATE'",
        "/* a /* b */ c */ SELECT 1 -- trailing",
        "SELECT * FROM t FOR READ ONLY",
        "SELECT substring(s from 1 for 1) FROM t",
        "SELECT pg_sleep(0)",
        "SELECT * FROM t WHERE s = 'a''b'",
        "BEGIN READ ONLY",
        "START TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY",
    ] {
        let cl = classify(sql, &extra);
        assert_eq!(cl.route, Route::Replica, "{sql}: {cl:?}");
        let r = within(STEP, sql, replica.simple_query(sql)).await;
        assert!(r.is_ok(), "{sql} failed on the standby: {r:?}");
        if cl.begins_tx {
            within(STEP, "commit", replica.batch_execute("COMMIT"))
                .await
                .unwrap();
        }
    }

    // 25006: read_only_sql_transaction. 55000: object_not_in_prerequisite_state ("recovery is in
    // progress"). 0A000: feature_not_supported.
    for (sql, codes) in [
        ("SELECT * FROM t FOR UPDATE", &["25006"][..]),
        ("SELECT * FROM t FOR NO KEY UPDATE", &["25006"]),
        ("SELECT * FROM t FOR KEY SHARE", &["25006"]),
        ("SELECT nextval('seq')", &["25006"]),
        ("SELECT setval('seq', 5)", &["25006"]),
        (
            "WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x",
            &["25006"],
        ),
        ("SELECT 1 INTO t2", &["25006"]),
        ("INSERT INTO t VALUES (2)", &["25006"]),
        ("SELECT txid_current()", &["25006", "55000"]),
        ("SELECT pg_current_wal_lsn()", &["55000"]),
        ("SELECT 1; DELETE FROM t", &["25006"]),
    ] {
        let cl = classify(sql, &extra);
        assert_eq!(cl.route, Route::Primary, "{sql}: {cl:?}");
        let e = within(STEP, sql, replica.simple_query(sql))
            .await
            .expect_err(sql);
        let code = e.code().map(|c| c.code().to_owned());
        assert!(
            code.as_deref().is_some_and(|c| codes.contains(&c)),
            "{sql}: {e} ({code:?})"
        );
    }

    // Why a serializable read-only transaction stays on the primary.
    let cl = classify("BEGIN ISOLATION LEVEL SERIALIZABLE, READ ONLY", &extra);
    assert_eq!(cl.route, Route::Primary);
    let e = within(
        STEP,
        "serializable",
        replica.batch_execute("BEGIN ISOLATION LEVEL SERIALIZABLE, READ ONLY; SELECT 1"),
    )
    .await
    .expect_err("serializable on a standby");
    within(STEP, "rollback", replica.batch_execute("ROLLBACK"))
        .await
        .unwrap();
    assert!(
        e.to_string().contains("serializable") || e.code().is_some(),
        "{e}"
    );
}
