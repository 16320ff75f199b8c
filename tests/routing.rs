//! Read/write splitting end to end: a real primary, a real streaming replica (`pg_basebackup -R`,
//! see `common/replica.rs`), sluice in process, and tokio-postgres, psql and pgbench as clients.
//!
//! Where a statement ran is read from the statement itself: `pg_is_in_recovery()` is true only on
//! the replica. Waits are deadlines on observable conditions, never fixed sleeps.

mod common;

use std::time::Duration;

use common::{
    APP_DB, APP_PASSWORD, APP_USER, ReplicaCluster, STEP, Sluice, assert_pgbench_ok,
    describe_output, poll_until, sample, scrape, simple_scalar, with_metrics, within,
};
use tokio_postgres::{Client, SimpleQueryMessage};

/// How long sluice's health checker may take to notice a change (many check intervals).
const NOTICE: Duration = Duration::from_secs(30);

/// sluice in front of `c`'s primary with its replica; `extra` goes into `[databases.app]`.
fn config(c: &ReplicaCluster, extra: &str) -> String {
    format!(
        r#"[users.{APP_USER}]
password = "{APP_PASSWORD}"

[databases.{APP_DB}]
host = "127.0.0.1"
port = {primary}
pool_size = 4
replica_check_interval = "100ms"
writing_functions = ["app_audit"]
{extra}

[[databases.{APP_DB}.replicas]]
host = "127.0.0.1"
port = {replica}

[pooler]
listen = "127.0.0.1:6432"
pool_mode = "transaction"
query_wait_timeout = "10s"
server_connect_timeout = "3s"
server_login_retry = "100ms"
shutdown_timeout = "1s"
admin_users = ["{APP_USER}"]
"#,
        primary = c.primary_port(),
        replica = c.replica_port(),
    )
}

fn routed(text: &str, reason: &str) -> f64 {
    sample(
        text,
        "sluice_routed_total",
        &[("database", "app"), ("reason", reason)],
    )
    .unwrap_or_else(|| panic!("no sluice_routed_total for {reason} in\n{text}"))
}

async fn through(s: &Sluice) -> Client {
    s.connect_app().await
}

/// Where `sql` (which must return `pg_is_in_recovery()` as its only value) ran: true = replica.
async fn on_replica(c: &Client, sql: &str) -> bool {
    match simple_scalar(c, sql).await.as_deref() {
        Some("t") => true,
        Some("f") => false,
        other => panic!("{sql}: unexpected {other:?}"),
    }
}

/// Waits until sluice has the replica in rotation (its first health poll, or a recovery).
async fn wait_routed_to_replica(c: &Client) {
    poll_until(NOTICE, "reads reach the replica", || async {
        on_replica(c, "SELECT pg_is_in_recovery()").await
    })
    .await;
}

/// Sets up a table, a sequence and two functions on the primary and waits until the replica has
/// them.
async fn schema(c: &ReplicaCluster) {
    let app = c.connect_primary_app().await;
    within(
        STEP,
        "schema",
        app.batch_execute(
            "CREATE TABLE items (id int PRIMARY KEY, note text);
             CREATE SEQUENCE ids;
             CREATE FUNCTION app_audit() RETURNS int LANGUAGE sql AS 'SELECT 1';
             CREATE TABLE audit (id serial PRIMARY KEY, note text);
             CREATE FUNCTION sneaky() RETURNS int LANGUAGE sql
                 AS 'INSERT INTO audit (note) VALUES (''sneaky'') RETURNING 1';",
        ),
    )
    .await
    .expect("schema on the primary");
    let replica = c.connect_replica_app().await;
    poll_until(NOTICE, "schema replayed", || async {
        simple_scalar(
            &replica,
            "SELECT count(*) FROM pg_proc WHERE proname = 'sneaky'",
        )
        .await
        .as_deref()
            == Some("1")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_go_to_the_replica_and_writes_to_the_primary() {
    let c = ReplicaCluster::start().await;
    schema(&c).await;
    let s = Sluice::start(config(&c, ""));
    let mut client = through(&s).await;
    wait_routed_to_replica(&client).await;

    // Provably read-only autocommit statements: the replica.
    for sql in [
        "SELECT pg_is_in_recovery()",
        "SELECT pg_is_in_recovery() UNION ALL SELECT pg_is_in_recovery() LIMIT 1",
        "WITH r AS (SELECT pg_is_in_recovery() AS x) SELECT x FROM r",
        "VALUES (pg_is_in_recovery())",
        "/* sluice:replica */ SELECT pg_is_in_recovery()",
        "SHOW transaction_read_only",
    ] {
        if sql.starts_with("SHOW") {
            assert_eq!(
                simple_scalar(&client, sql).await.as_deref(),
                Some("on"),
                "{sql}"
            );
            continue;
        }
        assert!(
            on_replica(&client, sql).await,
            "{sql} should run on the replica"
        );
    }
    // Extended protocol (tokio-postgres prepares a named statement, then binds it).
    let row = client
        .query_one("SELECT pg_is_in_recovery(), $1::int + 1", &[&41i32])
        .await
        .expect("extended read");
    assert!(
        row.get::<_, bool>(0),
        "extended-protocol read on the replica"
    );
    assert_eq!(row.get::<_, i32>(1), 42);
    let stmt = client
        .prepare("SELECT pg_is_in_recovery()")
        .await
        .expect("prepare");
    for _ in 0..5 {
        let row = client.query_one(&stmt, &[]).await.expect("bind");
        assert!(row.get::<_, bool>(0), "prepared read on the replica");
    }

    // Writes and anything that writes, locks or could: the primary.
    for sql in [
        "INSERT INTO items VALUES (1, 'a') RETURNING pg_is_in_recovery()",
        "UPDATE items SET note = 'b' WHERE id = 1 RETURNING pg_is_in_recovery()",
        "SELECT pg_is_in_recovery() FROM (SELECT nextval('ids')) s",
        "SELECT pg_is_in_recovery() FROM items WHERE id = 1 FOR UPDATE",
        "SELECT pg_is_in_recovery() FROM items WHERE id = 1 FOR SHARE",
        "WITH w AS (INSERT INTO items VALUES (2, 'c') RETURNING id) SELECT pg_is_in_recovery() FROM w",
        "SELECT pg_is_in_recovery() FROM (SELECT app_audit()) a",
        "SELECT pg_is_in_recovery() FROM (SELECT pg_advisory_xact_lock(7)) l",
        "/* sluice:primary */ SELECT pg_is_in_recovery()",
    ] {
        assert!(
            !on_replica(&client, sql).await,
            "{sql} must run on the primary"
        );
    }
    let row = client
        .query_one(
            "INSERT INTO items VALUES ($1, 'p') RETURNING pg_is_in_recovery()",
            &[&3i32],
        )
        .await
        .expect("extended write");
    assert!(
        !row.get::<_, bool>(0),
        "extended-protocol write on the primary"
    );

    // A READ ONLY transaction runs on the replica from BEGIN to COMMIT (once the replica has
    // replayed this client's writes above: until then its reads stay on the primary).
    wait_routed_to_replica(&client).await;
    for begin in [
        "BEGIN READ ONLY",
        "START TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY",
    ] {
        let msgs = client
            .simple_query(begin)
            .await
            .unwrap_or_else(|e| panic!("{begin}: {e}"));
        assert!(matches!(
            msgs.last(),
            Some(SimpleQueryMessage::CommandComplete(_))
        ));
        assert!(on_replica(&client, "SELECT pg_is_in_recovery()").await);
        assert!(
            on_replica(&client, "SELECT pg_is_in_recovery() FROM items LIMIT 1").await
                || on_replica(&client, "SELECT pg_is_in_recovery()").await
        );
        let err = client
            .simple_query("INSERT INTO items VALUES (100, 'x')")
            .await
            .expect_err("a write in a READ ONLY transaction fails, as on PostgreSQL");
        assert_eq!(err.code().map(|c| c.code()), Some("25006"));
        client.simple_query("ROLLBACK").await.expect("rollback");
    }
    // Any other transaction stays on the primary, its reads included.
    client.simple_query("BEGIN").await.expect("begin");
    assert!(!on_replica(&client, "SELECT pg_is_in_recovery()").await);
    assert!(!on_replica(&client, "SELECT pg_is_in_recovery()").await);
    client.simple_query("COMMIT").await.expect("commit");
    let tx = client
        .transaction()
        .await
        .expect("tokio-postgres transaction");
    let row = tx
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .expect("read in tx");
    assert!(
        !row.get::<_, bool>(0),
        "a read inside a read-write transaction"
    );
    tx.commit().await.expect("commit");
    // And reads still go to the replica afterwards.
    wait_routed_to_replica(&client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_reads_its_own_writes_while_replay_is_paused() {
    let c = ReplicaCluster::start().await;
    schema(&c).await;
    let s = Sluice::start(config(&c, "max_replica_lag = \"10m\""));
    let writer = through(&s).await;
    let bystander = through(&s).await;
    wait_routed_to_replica(&writer).await;
    c.pause_replay().await;

    let insert = writer
        .prepare("INSERT INTO items VALUES ($1, 'mine')")
        .await
        .expect("prepare insert");
    let select = writer
        .prepare("SELECT note, pg_is_in_recovery() FROM items WHERE id = $1")
        .await
        .expect("prepare select");
    let mut seen = 0;
    for i in 1000..2000i32 {
        writer.execute(&insert, &[&i]).await.expect("insert");
        let rows = writer.query(&select, &[&i]).await.expect("select");
        if rows.len() == 1 && rows[0].get::<_, &str>(0) == "mine" {
            seen += 1;
        }
    }
    assert_eq!(
        seen, 1000,
        "the writer saw its own row {seen} times out of 1000"
    );

    // A client that wrote nothing is still served by the (lagging, but within limits) replica,
    // which does not have the rows.
    assert!(on_replica(&bystander, "SELECT pg_is_in_recovery()").await);
    assert_eq!(
        simple_scalar(&bystander, "SELECT count(*) FROM items WHERE id >= 1000")
            .await
            .as_deref(),
        Some("0"),
        "the bystander's read went to the paused replica"
    );
    // Once the replica replays past the writes, the writer's reads go back to it.
    c.resume_replay().await;
    wait_routed_to_replica(&writer).await;
    assert_eq!(
        simple_scalar(&writer, "SELECT count(*) FROM items WHERE id >= 1000")
            .await
            .as_deref(),
        Some("1000")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_read_your_writes_the_paused_replica_is_stale() {
    // The control for the test above: the same sequence with read_your_writes = "off" misses
    // the row, so the guarantee there is sluice's doing.
    let c = ReplicaCluster::start().await;
    schema(&c).await;
    let s = Sluice::start(config(
        &c,
        "max_replica_lag = \"10m\"\nread_your_writes = \"off\"",
    ));
    let writer = through(&s).await;
    wait_routed_to_replica(&writer).await;
    c.pause_replay().await;
    writer
        .simple_query("INSERT INTO items VALUES (5000, 'mine')")
        .await
        .expect("insert");
    assert_eq!(
        simple_scalar(&writer, "SELECT count(*) FROM items WHERE id = 5000")
            .await
            .as_deref(),
        Some("0")
    );
    c.resume_replay().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_the_classifier_cannot_see_is_retried_on_the_primary() {
    let c = ReplicaCluster::start().await;
    schema(&c).await;
    let (cfg, metrics) = with_metrics(config(&c, ""));
    let s = Sluice::start(cfg);
    let client = through(&s).await;
    wait_routed_to_replica(&client).await;
    // sneaky() writes, but is not listed in writing_functions: the replica refuses it with
    // 25006 and sluice runs it on the primary, unseen by the client.
    assert_eq!(
        simple_scalar(&client, "SELECT sneaky()").await.as_deref(),
        Some("1")
    );
    let row = client
        .query_one("SELECT sneaky()", &[])
        .await
        .expect("extended protocol");
    assert_eq!(row.get::<_, i32>(0), 1);
    let primary = c.connect_primary_app().await;
    assert_eq!(
        simple_scalar(&primary, "SELECT count(*) FROM audit")
            .await
            .as_deref(),
        Some("2")
    );
    let text = scrape(metrics).await;
    assert!(routed(&text, "retried") >= 2.0, "{text}");
    assert!(routed(&text, "read_only") >= 1.0, "{text}");
    // The replica's pool has its own saturation numbers, labelled with its address.
    let replica = format!("127.0.0.1:{}", c.replica_port());
    let labels = [("role", "replica"), ("replica", replica.as_str())];
    assert!(
        sample(&text, "sluice_pool_size", &labels) == Some(4.0),
        "no replica pool in\n{text}"
    );
    assert_eq!(
        sample(
            &text,
            "sluice_replica_healthy",
            &[("replica", replica.as_str())]
        ),
        Some(1.0)
    );
    assert!(
        sample(
            &text,
            "sluice_replica_lag_bytes",
            &[("replica", replica.as_str())]
        )
        .is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_replica_costs_no_read_and_rejoins() {
    let mut c = ReplicaCluster::start().await;
    let s = Sluice::start(config(&c, ""));
    let probe = through(&s).await;
    wait_routed_to_replica(&probe).await;

    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    let stop = Arc::new(AtomicBool::new(false));
    let replica_reads = Arc::new(AtomicU32::new(0));
    let mut readers = Vec::new();
    for _ in 0..6 {
        let client = through(&s).await;
        let stop = stop.clone();
        let replica_reads = replica_reads.clone();
        readers.push(tokio::spawn(async move {
            let (mut ok, mut errors) = (0u32, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                let simple = client.simple_query("SELECT pg_is_in_recovery()");
                match tokio::time::timeout(STEP, simple).await {
                    Ok(Ok(msgs)) => {
                        ok += 1;
                        if msgs.iter().any(
                            |m| matches!(m, SimpleQueryMessage::Row(r) if r.get(0) == Some("t")),
                        ) {
                            replica_reads.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Ok(Err(e)) => errors.push(e.to_string()),
                    Err(_) => errors.push("no answer within 15s".into()),
                }
                match client.query_one("SELECT 1::int", &[]).await {
                    Ok(_) => ok += 1,
                    Err(e) => errors.push(e.to_string()),
                }
            }
            (ok, errors)
        }));
    }
    let reads_reach_replica = |what: &'static str| {
        let replica_reads = replica_reads.clone();
        async move {
            let before = replica_reads.load(Ordering::Relaxed);
            poll_until(NOTICE, what, || async {
                replica_reads.load(Ordering::Relaxed) >= before + 20
            })
            .await;
        }
    };
    reads_reach_replica("the readers reach the replica").await;
    // Stop the replica under the load; reads move to the primary.
    c.stop_replica().await;
    poll_until(NOTICE, "reads on the primary", || async {
        !on_replica(&probe, "SELECT pg_is_in_recovery()").await
    })
    .await;
    // Start it again: it rejoins.
    c.start_replica().await;
    wait_routed_to_replica(&probe).await;
    reads_reach_replica("the readers reach the replica again").await;
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for r in readers {
        let (ok, errors) = r.await.expect("reader");
        assert!(errors.is_empty(), "client errors: {errors:?}");
        total += ok;
    }
    assert!(total > 100, "only {total} reads ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_replica_leaves_rotation_and_returns() {
    let c = ReplicaCluster::start().await;
    schema(&c).await;
    let (cfg, metrics) = with_metrics(config(&c, "max_replica_lag = \"1s\""));
    let s = Sluice::start(cfg);
    let reader = through(&s).await;
    wait_routed_to_replica(&reader).await;
    c.pause_replay().await;
    // Writes on the primary (not through sluice: the reader has no write of its own to wait
    // for) that the paused replica does not replay.
    let primary = c.connect_primary_app().await;
    poll_until(NOTICE, "the lagging replica leaves rotation", || async {
        primary
            .simple_query("INSERT INTO audit (note) VALUES ('tick')")
            .await
            .expect("write on the primary");
        !on_replica(&reader, "SELECT pg_is_in_recovery()").await
    })
    .await;
    let replica = format!("127.0.0.1:{}", c.replica_port());
    let text = scrape(metrics).await;
    assert_eq!(
        sample(
            &text,
            "sluice_replica_healthy",
            &[("replica", replica.as_str())]
        ),
        Some(0.0),
        "{text}"
    );
    assert!(routed(&text, "no_replica") >= 1.0, "{text}");
    // The admin console says the same.
    let console = s.connect("sluice", APP_USER, APP_PASSWORD).await;
    let rows: Vec<_> = console
        .simple_query("SHOW REPLICAS")
        .await
        .expect("SHOW REPLICAS")
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get("replica"), Some(replica.as_str()));
    assert_eq!(rows[0].get("healthy"), Some("no"));
    assert_eq!(rows[0].get("in_recovery"), Some("yes"));
    assert!(
        rows[0]
            .get("routed_no_replica")
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|v| v >= 1)
    );
    c.resume_replay().await;
    wait_routed_to_replica(&reader).await;
    let text = scrape(metrics).await;
    assert_eq!(
        sample(
            &text,
            "sluice_replica_healthy",
            &[("replica", replica.as_str())]
        ),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_and_psql_through_a_routed_pool() {
    let c = ReplicaCluster::start().await;
    c.primary.pgbench_init().await;
    let (cfg, metrics) = with_metrics(config(&c, ""));
    let s = Sluice::start(cfg);
    let probe = through(&s).await;
    wait_routed_to_replica(&probe).await;
    for mode in ["simple", "extended", "prepared"] {
        let out = s
            .pgbench(&["-S", "-n", "-c", "8", "-t", "200", "-M", mode])
            .await;
        assert_pgbench_ok(mode, &out, 1600);
    }
    let text = scrape(metrics).await;
    assert!(routed(&text, "read_only") >= 3.0 * 1600.0, "{text}");
    // TPC-B writes (and their reads) through the same pool: all on the primary, none failing.
    let out = s
        .pgbench(&["-n", "-c", "4", "-t", "50", "-M", "prepared"])
        .await;
    assert_pgbench_ok("TPC-B", &out, 200);
    let psql = s
        .psql(&[
            "-At",
            "-c",
            "SELECT pg_is_in_recovery()",
            "-c",
            "BEGIN READ ONLY",
            "-c",
            "SELECT pg_is_in_recovery()",
            "-c",
            "COMMIT",
            "-c",
            "UPDATE pgbench_branches SET bbalance = bbalance WHERE bid = 1 RETURNING pg_is_in_recovery()",
        ])
        .await;
    assert!(psql.status.success(), "{}", describe_output(&psql));
    let lines: Vec<String> = String::from_utf8_lossy(&psql.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        lines,
        ["t", "BEGIN", "t", "COMMIT", "f", "UPDATE 1"],
        "{lines:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_fallback_error_a_read_without_a_replica_fails_and_writes_go_on() {
    let mut c = ReplicaCluster::start().await;
    schema(&c).await;
    let s = Sluice::start(config(&c, "replica_fallback = \"error\""));
    let client = through(&s).await;
    wait_routed_to_replica(&client).await;
    c.stop_replica().await;
    poll_until(NOTICE, "reads fail with 57P03", || async {
        match client.simple_query("SELECT pg_is_in_recovery()").await {
            Err(e) => {
                assert_eq!(e.code().map(|c| c.code()), Some("57P03"), "{e}");
                true
            }
            Ok(_) => false,
        }
    })
    .await;
    // The session is still usable, and writes still run.
    let msgs = client
        .simple_query("INSERT INTO audit (note) VALUES ('still writing')")
        .await
        .expect("a write with the replica down");
    assert!(matches!(
        msgs.last(),
        Some(SimpleQueryMessage::CommandComplete(1))
    ));
    let e = client
        .query_one("SELECT 1::int", &[])
        .await
        .expect_err("an extended-protocol read fails too");
    assert_eq!(e.code().map(|c| c.code()), Some("57P03"));
    c.start_replica().await;
    poll_until(NOTICE, "reads succeed on the replica again", || async {
        match client.simple_query("SELECT pg_is_in_recovery()").await {
            Ok(msgs) => msgs
                .iter()
                .any(|m| matches!(m, SimpleQueryMessage::Row(r) if r.get(0) == Some("t"))),
            Err(e) => {
                assert_eq!(e.code().map(|c| c.code()), Some("57P03"), "{e}");
                false
            }
        }
    })
    .await;
}

/// Runs `BEGIN READ ONLY; SELECT pg_is_in_recovery(); COMMIT` as three queries; true when the
/// transaction ran on the replica.
async fn read_only_transaction_on_replica(c: &Client) -> bool {
    c.batch_execute("BEGIN READ ONLY").await.expect("begin");
    let on = on_replica(c, "SELECT pg_is_in_recovery()").await;
    c.batch_execute("COMMIT").await.expect("commit");
    on
}

/// A transaction that wrote nothing does not fence the client's reads to the primary: with the
/// replica's replay paused behind the primary, a client that ran `BEGIN; SET TRANSACTION READ
/// ONLY; COMMIT` (or a transaction of reads) still gets all ten of its `BEGIN READ ONLY`
/// transactions on the replica, while a transaction that wrote keeps its reads on the primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_that_wrote_nothing_does_not_fence_reads() {
    let c = ReplicaCluster::start().await;
    schema(&c).await;
    let s = Sluice::start(config(&c, "max_replica_lag = \"10m\""));
    let client = through(&s).await;
    wait_routed_to_replica(&client).await;
    c.pause_replay().await;
    // Another client's write moves the primary past what the paused replica has replayed.
    c.connect_primary_app()
        .await
        .batch_execute("INSERT INTO items VALUES (5000, 'elsewhere')")
        .await
        .expect("direct insert");

    for tx in [
        &["BEGIN", "SET TRANSACTION READ ONLY", "COMMIT"][..],
        &["BEGIN", "SELECT count(*) FROM items", "COMMIT"][..],
        &["BEGIN", "SELECT 1", "ROLLBACK"][..],
    ] {
        for sql in tx {
            client.batch_execute(sql).await.expect(sql);
        }
        let mut on = 0;
        for _ in 0..10 {
            on += read_only_transaction_on_replica(&client).await as usize;
        }
        assert_eq!(
            on, 10,
            "after {tx:?}: {on} of 10 read-only transactions on the replica"
        );
    }

    // A transaction that wrote: its reads stay on the primary while the replica lacks the write.
    for sql in ["BEGIN", "INSERT INTO items VALUES (5001, 'mine')", "COMMIT"] {
        client.batch_execute(sql).await.expect(sql);
    }
    assert!(
        !read_only_transaction_on_replica(&client).await,
        "a read after the client's own write went to the paused replica"
    );
    assert_eq!(
        simple_scalar(&client, "SELECT note FROM items WHERE id = 5001")
            .await
            .as_deref(),
        Some("mine")
    );
    c.resume_replay().await;
}

/// A client fenced by its write returns to the replica soon after the replica replays it, not
/// at the health checker's next regular poll (here 10 s away).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fenced_reads_return_to_the_replica_soon_after_replay() {
    let c = ReplicaCluster::start().await;
    schema(&c).await;
    let toml = config(&c, "").replace(
        "replica_check_interval = \"100ms\"",
        "replica_check_interval = \"10s\"",
    );
    let s = Sluice::start(toml);
    let client = through(&s).await;
    wait_routed_to_replica(&client).await;
    client
        .batch_execute("INSERT INTO items VALUES (6000, 'fenced')")
        .await
        .expect("insert");
    let started = std::time::Instant::now();
    // The write is replayed within milliseconds here; the fenced poll (every 10 ms while a
    // client waits) must notice well before the regular 10 s one.
    poll_until(
        Duration::from_secs(3),
        "reads back on the replica",
        || async { on_replica(&client, "SELECT pg_is_in_recovery()").await },
    )
    .await;
    let took = started.elapsed();
    eprintln!("fenced reads back on the replica after {took:?}");
    assert_eq!(
        simple_scalar(&client, "SELECT note FROM items WHERE id = 6000")
            .await
            .as_deref(),
        Some("fenced"),
        "the replica read sees the write"
    );
}
