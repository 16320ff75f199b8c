//! Transaction pooling under load, and session-mode basics.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use common::*;
use sluice::config::PoolMode;
use tokio_postgres::types::Type;

const CLIENTS: usize = 500;
const TX_PER_CLIENT: usize = 3;
const POOL: usize = 5;

/// (step, pid, txid) of a row in `log`.
type StepRow = (i32, i32, i64);

/// What one client transaction saw from the inside.
#[derive(Debug)]
struct SeenTx {
    client: i32,
    tx: i32,
    committed: bool,
    pid: i32,
    txid: i64,
}

/// One client's transactions. Every statement inside a transaction reports the backend pid and
/// `txid_current()` it ran with; the rows it writes record them too.
async fn run_client(
    client: tokio_postgres::Client,
    id: i32,
    start: Arc<tokio::sync::Barrier>,
) -> Vec<SeenTx> {
    let mut client = client;
    start.wait().await;
    let mut seen = Vec::new();
    for tx_no in 0..TX_PER_CLIENT as i32 {
        // Every third client rolls its second transaction back.
        let commit = !(id % 3 == 0 && tx_no == 1);
        let tx = client
            .transaction()
            .await
            .unwrap_or_else(|e| panic!("client {id} BEGIN: {}", describe_error(&e)));
        let first = tx
            .query_one("SELECT pg_backend_pid(), txid_current()", &[])
            .await
            .unwrap_or_else(|e| panic!("client {id}: {}", describe_error(&e)));
        let (pid, txid): (i32, i64) = (first.get(0), first.get(1));
        for step in 1..=2i32 {
            tx.execute(
                "INSERT INTO log(client, tx, step, pid, txid) VALUES ($1, $2, $3, pg_backend_pid(), txid_current())",
                &[&id, &tx_no, &step],
            )
            .await
            .unwrap_or_else(|e| panic!("client {id} insert: {}", describe_error(&e)));
            if step == 1 {
                // Hold the server connection a moment so that transactions overlap in time.
                tx.batch_execute("SELECT pg_sleep(0.002)").await.unwrap();
            }
        }
        // A computed answer: the client gets its own result back, not a neighbour's.
        let echoed: i64 = tx
            .query_one(
                "SELECT $1::int8 * 1000 + $2::int8",
                &[&i64::from(id), &i64::from(tx_no)],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(
            echoed,
            i64::from(id) * 1000 + i64::from(tx_no),
            "client {id} got someone else's answer"
        );
        let own_rows: i64 = tx
            .query_one(
                "SELECT count(*) FROM log WHERE client = $1 AND tx = $2",
                &[&id, &tx_no],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(
            own_rows, 2,
            "client {id} tx {tx_no} does not see its own rows"
        );
        let last = tx
            .query_one("SELECT pg_backend_pid(), txid_current()", &[])
            .await
            .unwrap();
        assert_eq!(
            (last.get::<_, i32>(0), last.get::<_, i64>(1)),
            (pid, txid),
            "client {id} tx {tx_no}: the transaction moved to another backend or transaction"
        );
        if commit {
            tx.commit()
                .await
                .unwrap_or_else(|e| panic!("client {id} COMMIT: {}", describe_error(&e)));
        } else {
            tx.rollback()
                .await
                .unwrap_or_else(|e| panic!("client {id} ROLLBACK: {}", describe_error(&e)));
        }
        seen.push(SeenTx {
            client: id,
            tx: tx_no,
            committed: commit,
            pid,
            txid,
        });
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_of_500_clients_share_5_server_connections_without_interleaving() {
    let pg = PgCluster::start();
    let su = pg.superuser(APP_DB).await;
    su.batch_execute(
        "CREATE TABLE log(client int NOT NULL, tx int NOT NULL, step int NOT NULL, pid int NOT NULL, txid bigint NOT NULL);
         ALTER TABLE log OWNER TO app;",
    )
    .await
    .unwrap();
    // The pooler logs in as app; trust on the client side keeps 500 SCRAM handshakes (slow in a
    // debug build) out of this test, which is about pooling. Two worker threads: the other
    // tests run the default single-threaded pooler, this one the multi-threaded one, whose
    // clients and server connections move between threads.
    let config = set_config(
        &config_for(&pg, POOL, PoolMode::Transaction),
        "users.app.auth_type",
        "trust",
    );
    let config = set_config(&config, "pooler.workers", 2);
    let pooler = Sluice::start(config);

    // Watch the server side all along: app's backends, as PostgreSQL counts them.
    let max_backends = Arc::new(AtomicI64::new(0));
    let watching = Arc::new(AtomicBool::new(true));
    let watcher = {
        let (max_backends, watching) = (max_backends.clone(), watching.clone());
        let su = pg.superuser(APP_DB).await;
        tokio::spawn(async move {
            while watching.load(Ordering::Relaxed) {
                let n: i64 = su
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity WHERE usename = 'app' AND backend_type = 'client backend'",
                        &[],
                    )
                    .await
                    .unwrap()
                    .get(0);
                max_backends.fetch_max(n, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };

    // Connect all 500 first (at most 50 handshakes at a time), then start them together.
    let start = Arc::new(tokio::sync::Barrier::new(CLIENTS));
    let gate = Arc::new(tokio::sync::Semaphore::new(50));
    let mut tasks = tokio::task::JoinSet::new();
    for id in 0..CLIENTS as i32 {
        let (start, gate) = (start.clone(), gate.clone());
        let mut cfg = pooler.pg_config(APP_DB, APP_USER, "");
        cfg.application_name(format!("client-{id}"));
        tasks.spawn(async move {
            let permit = gate.acquire_owned().await.unwrap();
            let (client, _notices) = connect_config(&cfg)
                .await
                .unwrap_or_else(|e| panic!("client {id} cannot connect: {}", describe_error(&e)));
            drop(permit);
            run_client(client, id, start).await
        });
    }
    let mut seen = Vec::new();
    within(
        Duration::from_secs(240),
        "500 clients' transactions",
        async {
            while let Some(r) = tasks.join_next().await {
                seen.extend(r.expect("client task"));
            }
        },
    )
    .await;
    watching.store(false, Ordering::Relaxed);
    watcher.await.unwrap();
    assert_eq!(seen.len(), CLIENTS * TX_PER_CLIENT);

    // No two client transactions ever ran inside the same server transaction.
    let mut by_txid: HashMap<i64, (i32, i32)> = HashMap::new();
    for s in &seen {
        if let Some(other) = by_txid.insert(s.txid, (s.client, s.tx)) {
            panic!(
                "server transaction {} served client/tx {:?} and {:?}",
                s.txid,
                other,
                (s.client, s.tx)
            );
        }
    }

    // The rows: committed transactions have both, written by the backend and server transaction
    // the client saw; rolled-back ones left nothing.
    let rows = su
        .query("SELECT client, tx, step, pid, txid FROM log", &[])
        .await
        .unwrap();
    let mut in_db: HashMap<(i32, i32), Vec<StepRow>> = HashMap::new();
    for r in &rows {
        in_db
            .entry((r.get(0), r.get(1)))
            .or_default()
            .push((r.get(2), r.get(3), r.get(4)));
    }
    let committed = seen.iter().filter(|s| s.committed).count();
    assert!(
        committed < seen.len(),
        "the test must roll some transactions back"
    );
    assert_eq!(rows.len(), committed * 2, "rows in log");
    for s in &seen {
        let got = in_db.remove(&(s.client, s.tx)).unwrap_or_default();
        if s.committed {
            let mut steps: Vec<i32> = got.iter().map(|g| g.0).collect();
            steps.sort();
            assert_eq!(steps, vec![1, 2], "client {} tx {}", s.client, s.tx);
            for (step, pid, txid) in got {
                assert_eq!(
                    (pid, txid),
                    (s.pid, s.txid),
                    "client {} tx {} step {step} ran elsewhere",
                    s.client,
                    s.tx
                );
            }
        } else {
            assert!(
                got.is_empty(),
                "rolled-back client {} tx {} left {got:?}",
                s.client,
                s.tx
            );
        }
    }

    let peak = max_backends.load(Ordering::Relaxed);
    let pids: HashSet<i32> = seen.iter().map(|s| s.pid).collect();
    eprintln!(
        "peak server backends of app: {peak}; distinct backends used: {}",
        pids.len()
    );
    assert!(peak >= 1, "the watcher never saw the pool's connections");
    assert!(
        peak <= POOL as i64,
        "PostgreSQL saw {peak} backends of app; pool_size is {POOL}"
    );
    assert!(
        pids.len() <= POOL,
        "{} distinct server backends served a pool of {POOL}",
        pids.len()
    );
    let now = pg.backends_of(&su, APP_USER).await;
    assert!(now <= POOL as i64, "after the load: {now} backends of app");
}

#[tokio::test]
async fn unnamed_extended_queries_and_autocommit_statements_are_pooled() {
    // Outside transactions, each statement may land on any server connection of the pool.
    let pg = PgCluster::start();
    let pooler = Sluice::start(config_for(&pg, 2, PoolMode::Transaction));
    let a = pooler.connect_app().await;
    let b = pooler.connect_app().await;
    a.batch_execute("CREATE TABLE t(x int)").await.unwrap();
    for i in 0..20i32 {
        let c = if i % 2 == 0 { &a } else { &b };
        let n = within(
            STEP,
            "insert",
            c.execute_typed("INSERT INTO t VALUES ($1)", &[(&i, Type::INT4)]),
        )
        .await
        .unwrap();
        assert_eq!(n, 1);
    }
    let sum: i64 = a
        .query_typed_one("SELECT sum(x)::int8 FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(sum, (0..20).sum::<i64>());
    let su = pg.superuser(APP_DB).await;
    assert!(pg.backends_of(&su, APP_USER).await <= 2);
}

#[tokio::test]
async fn session_mode_keeps_settings_and_named_prepared_statements() {
    let pg = PgCluster::start();
    let config = config_for(&pg, 2, PoolMode::Session);
    let pooler = Sluice::start(config);
    let a = pooler.connect_app().await;
    let b = pooler.connect_app().await;

    // A setting no pooler could replay (not reported by ParameterStatus) and a temp table.
    a.batch_execute(
        "SET myapp.tag = 'A'; CREATE TEMP TABLE mine(x int); INSERT INTO mine VALUES (1)",
    )
    .await
    .unwrap();
    b.batch_execute(
        "SET myapp.tag = 'B'; CREATE TEMP TABLE mine(x int); INSERT INTO mine VALUES (2)",
    )
    .await
    .unwrap();
    // tokio-postgres prepares statements by name ("s0", "s1", ...).
    let stmt_a = a.prepare("SELECT current_setting('myapp.tag') || ':' || (SELECT x FROM mine)::text || ':' || $1::text").await.unwrap();
    let stmt_b = b.prepare("SELECT current_setting('myapp.tag') || ':' || (SELECT x FROM mine)::text || ':' || $1::text").await.unwrap();
    let pid_a: i32 = a
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let pid_b: i32 = b
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    assert_ne!(pid_a, pid_b);
    for i in 0..10i32 {
        let ra: String = within(
            STEP,
            "A's statement",
            a.query_one(&stmt_a, &[&i.to_string()]),
        )
        .await
        .unwrap()
        .get(0);
        let rb: String = within(
            STEP,
            "B's statement",
            b.query_one(&stmt_b, &[&i.to_string()]),
        )
        .await
        .unwrap()
        .get(0);
        assert_eq!(ra, format!("A:1:{i}"));
        assert_eq!(rb, format!("B:2:{i}"));
    }
    assert_eq!(
        a.query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        pid_a
    );

    // The pool (2) is taken by A and B for their whole sessions: C waits until one leaves.
    // (A session pooler may bind the server at login or at the first query: C does both here.)
    let c_cfg = pooler.pg_config(APP_DB, APP_USER, APP_PASSWORD);
    let c_query = tokio::spawn(async move {
        let (c, _) = connect_config(&c_cfg).await.expect("C connects");
        let r = c
            .query_one("SELECT current_setting('myapp.tag', true)", &[])
            .await;
        (c, r)
    });
    // C has had ample time to be served if it did not have to wait for a session to end.
    let early = tokio::time::timeout(Duration::from_millis(500), async {
        while !c_query.is_finished() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(
        early.is_err(),
        "C was served while both sessions still held the pool's 2 connections"
    );
    drop(a);
    let (c, r) = within(STEP, "C after A left", c_query).await.unwrap();
    let row = r.expect("C's query");
    let tag: Option<String> = row.get(0);
    assert_ne!(
        tag.as_deref(),
        Some("A"),
        "A's session state leaked to C (no server_reset_query?)"
    );
    // B's session is untouched by all this.
    let rb: String = b.query_one(&stmt_b, &[&"end"]).await.unwrap().get(0);
    assert_eq!(rb, "B:2:end");
    drop(c);
}
