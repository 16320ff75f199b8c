//! Named prepared statements that survive transaction pooling: real drivers (tokio-postgres,
//! pgbench `-M prepared`) on small pools, and the raw wire protocol for what drivers never send
//! (chosen statement names, Close and re-Parse, errors inside pipelines), compared message by
//! message with what PostgreSQL itself answers to the same bytes.

mod common;

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use common::*;
use futures_util::future;
use sluice::config::PoolMode;
use tokio_postgres::Client;

fn pooler_with(pg: &PgCluster, pool_size: usize) -> Sluice {
    Sluice::start(config_for(pg, pool_size, PoolMode::Transaction))
}

// ---------------------------------------------------------------------------------------------
// Helpers for tokio-postgres and the server side.

/// Pids of app's backends in database app.
async fn app_backend_pids(su: &Client) -> Vec<i32> {
    su.query(
        "SELECT pid FROM pg_stat_activity WHERE usename = 'app' AND datname = 'app' AND backend_type = 'client backend' ORDER BY pid",
        &[],
    )
    .await
    .expect("list app backends")
    .iter()
    .map(|r| r.get(0))
    .collect()
}

// ---------------------------------------------------------------------------------------------
// 1. Many tokio-postgres clients, few server connections.

const CLIENTS: i32 = 100;
const ROUNDS: i32 = 100;

/// One client: prepares three statements and runs each `ROUNDS` times (the three of a round
/// pipelined in one write), checking every answer.
async fn prepared_client(c: Client, id: i32) {
    let double = c.prepare("SELECT $1::int * 2").await.unwrap();
    let suffix = c.prepare("SELECT $1::text || 'x'").await.unwrap();
    let insert = c
        .prepare(
            "INSERT INTO items(client, n, label) VALUES ($1, $2, $3) RETURNING client, n, label",
        )
        .await
        .unwrap_or_else(|e| panic!("client {id} prepare INSERT: {}", describe_error(&e)));
    for n in 0..ROUNDS {
        let value = id * 1000 + n;
        let label = format!("c{id}-r{n}");
        let (d, s, i) = future::try_join3(
            c.query_one(&double, &[&value]),
            c.query_one(&suffix, &[&label]),
            c.query_one(&insert, &[&id, &n, &label]),
        )
        .await
        .unwrap_or_else(|e| panic!("client {id} round {n}: {}", describe_error(&e)));
        assert_eq!(d.get::<_, i32>(0), value * 2, "client {id} round {n}");
        assert_eq!(s.get::<_, String>(0), format!("{label}x"), "client {id}");
        assert_eq!(
            (
                i.get::<_, i32>(0),
                i.get::<_, i32>(1),
                i.get::<_, String>(2)
            ),
            (id, n, label),
            "client {id}: INSERT ... RETURNING returned another row"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_tokio_postgres_clients_share_prepared_statements_on_a_pool_of_4() {
    let pg = PgCluster::start();
    let su = pg.superuser(APP_DB).await;
    su.batch_execute(
        "CREATE TABLE items(id serial PRIMARY KEY, client int NOT NULL, n int NOT NULL, label text NOT NULL, UNIQUE (client, n));
         ALTER TABLE items OWNER TO app;",
    )
    .await
    .unwrap();
    let pooler = pooler_with(&pg, 4);
    let clients = within(
        Duration::from_secs(60),
        "100 clients to connect",
        future::join_all((0..CLIENTS).map(|_| pooler.connect_app())),
    )
    .await;

    let done = AtomicBool::new(false);
    let max_backends = AtomicI64::new(0);
    let work = async {
        future::join_all(
            clients
                .into_iter()
                .zip(0..)
                .map(|(c, id)| prepared_client(c, id)),
        )
        .await;
        done.store(true, Ordering::Relaxed);
    };
    // PostgreSQL's view all along: app's backends (the pooler's server connections).
    let watch = async {
        while !done.load(Ordering::Relaxed) {
            max_backends.fetch_max(pg.backends_of(&su, APP_USER).await, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    within(
        Duration::from_secs(120),
        "100 clients x 100 rounds",
        future::join(work, watch),
    )
    .await;

    let row = su
        .query_one(
            "SELECT count(*), count(DISTINCT (client, n)), sum(n)::int8, count(DISTINCT client) FROM items",
            &[],
        )
        .await
        .unwrap();
    let total = i64::from(CLIENTS * ROUNDS);
    assert_eq!(
        (
            row.get::<_, i64>(0),
            row.get::<_, i64>(1),
            row.get::<_, i64>(2),
            row.get::<_, i64>(3)
        ),
        (
            total,
            total,
            i64::from(CLIENTS) * i64::from(ROUNDS * (ROUNDS - 1) / 2),
            i64::from(CLIENTS)
        ),
        "rows in items: count, distinct (client, n), sum(n), distinct clients"
    );
    let max = max_backends.load(Ordering::Relaxed);
    assert!(
        (1..=4).contains(&max),
        "PostgreSQL saw {max} backends of app at once with a pool of 4"
    );
    assert!(pg.backends_of(&su, APP_USER).await <= 4);
}

// ---------------------------------------------------------------------------------------------
// 2. pgbench -M prepared.

#[tokio::test]
async fn pgbench_prepared_64_clients_through_a_pool_of_8() {
    let pg = PgCluster::start();
    pg.pgbench_init().await;
    let su = pg.superuser(APP_DB).await;
    let pooler = pooler_with(&pg, 8);

    // TPC-B-like: BEGIN, three UPDATEs, a SELECT, an INSERT, END; every one a named statement.
    let out = pooler
        .pgbench(&["-n", "-M", "prepared", "-c", "64", "-j", "2", "-t", "40"])
        .await;
    assert_pgbench_ok("pgbench -M prepared (TPC-B-like)", &out, 64 * 40);
    let row = su
        .query_one(
            "SELECT (SELECT count(*) FROM pgbench_history), (SELECT sum(abalance) FROM pgbench_accounts)::int8,
                    (SELECT sum(bbalance) FROM pgbench_branches)::int8, (SELECT sum(tbalance) FROM pgbench_tellers)::int8,
                    (SELECT coalesce(sum(delta), 0) FROM pgbench_history)::int8",
            &[],
        )
        .await
        .unwrap();
    let (n, a, b, t, h): (i64, i64, i64, i64, i64) =
        (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
    assert_eq!(n, 64 * 40, "history rows");
    assert!(
        a == h && b == h && t == h,
        "balances disagree: accounts {a}, branches {b}, tellers {t}, history {h}"
    );

    // Select-only.
    let out = pooler
        .pgbench(&[
            "-n", "-S", "-M", "prepared", "-c", "64", "-j", "2", "-t", "150",
        ])
        .await;
    assert_pgbench_ok("pgbench -S -M prepared", &out, 64 * 150);
    assert!(pg.backends_of(&su, APP_USER).await <= 8);
}

// ---------------------------------------------------------------------------------------------
// 3. One name, different SQL, different clients.

/// Two raw clients both call their statement "s0", with different SQL (and parameter types), and
/// run it in turns as fast as they can on `pool_size` server connections.
async fn same_name_two_clients(pooler: &Sluice, rounds: i32) {
    let mut a = RawConn::connect_app(pooler.addr()).await;
    let mut b = RawConn::connect_app(pooler.addr()).await;
    let prep_a = Batch::new()
        .parse("s0", "SELECT 1::int + $1")
        .describe_statement("s0")
        .sync();
    let prep_b = Batch::new()
        .parse("s0", "SELECT 'b' || $1::text")
        .describe_statement("s0")
        .sync();
    let (got_a, got_b) = future::join(exchange(&mut a, &prep_a), exchange(&mut b, &prep_b)).await;
    assert_eq!(
        got_a,
        [
            "ParseComplete",
            "ParameterDescription [23]",
            "RowDescription ?column?",
            "ReadyForQuery I"
        ]
    );
    assert_eq!(
        got_b,
        [
            "ParseComplete",
            "ParameterDescription [25]",
            "RowDescription ?column?",
            "ReadyForQuery I"
        ]
    );
    let run_a = async {
        for i in 0..rounds {
            let arg = i.to_string();
            let got = exchange(&mut a, &Batch::new().run("s0", &[&arg]).sync()).await;
            let row = format!("DataRow {}", i + 1);
            assert_eq!(
                got,
                [
                    "BindComplete",
                    &row,
                    "CommandComplete SELECT 1",
                    "ReadyForQuery I"
                ],
                "client A round {i}"
            );
        }
    };
    let run_b = async {
        for i in 0..rounds {
            let arg = format!("x{i}");
            let got = exchange(&mut b, &Batch::new().run("s0", &[&arg]).sync()).await;
            let row = format!("DataRow bx{i}");
            assert_eq!(
                got,
                [
                    "BindComplete",
                    &row,
                    "CommandComplete SELECT 1",
                    "ReadyForQuery I"
                ],
                "client B round {i}"
            );
        }
    };
    future::join(run_a, run_b).await;
    // Each still describes its own statement.
    let d = Batch::new().describe_statement("s0").sync();
    assert_eq!(exchange(&mut a, &d).await[0], "ParameterDescription [23]");
    assert_eq!(exchange(&mut b, &d).await[0], "ParameterDescription [25]");
}

#[tokio::test]
async fn one_statement_name_with_different_sql_in_two_clients_at_once() {
    let pg = PgCluster::start();
    for pool_size in [1, 2] {
        let pooler = pooler_with(&pg, pool_size);
        within(
            Duration::from_secs(60),
            "two clients taking turns",
            same_name_two_clients(&pooler, 300),
        )
        .await;
    }
}

/// pgbench names its statements after script and command number ("P0_1" here), so two pgbench
/// processes running different one-statement scripts use one name for different SQL.
#[tokio::test]
async fn two_pgbench_processes_use_one_statement_name_for_different_sql() {
    let pg = PgCluster::start();
    let su = pg.superuser(APP_DB).await;
    su.batch_execute(
        "CREATE TABLE seen_a(v int NOT NULL); ALTER TABLE seen_a OWNER TO app;
         CREATE TABLE seen_b(v int NOT NULL, w int NOT NULL); ALTER TABLE seen_b OWNER TO app;",
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let script_a = dir.path().join("a.sql");
    let script_b = dir.path().join("b.sql");
    // Different parameter counts: A's Bind on B's statement (or the reverse) is an error.
    std::fs::write(
        &script_a,
        "\\set x random(1, 1000000)\nINSERT INTO seen_a(v) VALUES (:x);\n",
    )
    .unwrap();
    std::fs::write(
        &script_b,
        "\\set x random(1, 1000000)\nINSERT INTO seen_b(v, w) VALUES (:x, :client_id);\n",
    )
    .unwrap();
    let pooler = pooler_with(&pg, 2);
    let common = [
        "-n", "-M", "prepared", "-c", "16", "-j", "2", "-t", "100", "-f",
    ];
    let args_a: Vec<&str> = common
        .iter()
        .copied()
        .chain([script_a.to_str().unwrap()])
        .collect();
    let args_b: Vec<&str> = common
        .iter()
        .copied()
        .chain([script_b.to_str().unwrap()])
        .collect();
    let (out_a, out_b) = future::join(pooler.pgbench(&args_a), pooler.pgbench(&args_b)).await;
    assert_pgbench_ok("pgbench script A", &out_a, 1600);
    assert_pgbench_ok("pgbench script B", &out_b, 1600);
    let row = su
        .query_one(
            "SELECT (SELECT count(*) FROM seen_a), (SELECT count(*) FROM seen_b), (SELECT count(DISTINCT w) FROM seen_b)",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            row.get::<_, i64>(0),
            row.get::<_, i64>(1),
            row.get::<_, i64>(2)
        ),
        (1600, 1600, 16),
        "rows of A, rows of B, B's distinct client ids"
    );
}

// ---------------------------------------------------------------------------------------------
// 4. Close and re-Parse; duplicate and unknown names.

#[tokio::test]
async fn close_and_reparse_one_name_and_the_errors_postgresql_gives() {
    let pg = PgCluster::start();
    let pooler = pooler_with(&pg, 1);
    let mut direct = RawConn::connect_app(pg.addr()).await;
    let mut pooled = RawConn::connect_app(pooler.addr()).await;
    // A second client uses the same (only) server connection between this client's steps, with a
    // statement of its own that must keep working whatever this client closes and re-parses.
    let other = pooler.connect_app().await;
    let other_stmt = other.prepare("SELECT $1::int - 1").await.unwrap();

    let steps = [
        step(
            "Parse st = SELECT 1, run",
            Batch::new().parse("st", "SELECT 1").run("st", &[]).sync(),
            &[
                "ParseComplete",
                "BindComplete",
                "DataRow 1",
                "CommandComplete SELECT 1",
                "ReadyForQuery I",
            ],
        ),
        step(
            "Close st",
            Batch::new().close_statement("st").sync(),
            &["CloseComplete", "ReadyForQuery I"],
        ),
        step(
            "Parse st = SELECT 2, run",
            Batch::new().parse("st", "SELECT 2").run("st", &[]).sync(),
            &[
                "ParseComplete",
                "BindComplete",
                "DataRow 2",
                "CommandComplete SELECT 1",
                "ReadyForQuery I",
            ],
        ),
        step(
            "Close, Parse st = SELECT 3 and run, one pipeline",
            Batch::new()
                .close_statement("st")
                .parse("st", "SELECT 3")
                .run("st", &[])
                .sync(),
            &[
                "CloseComplete",
                "ParseComplete",
                "BindComplete",
                "DataRow 3",
                "CommandComplete SELECT 1",
                "ReadyForQuery I",
            ],
        ),
        step(
            "Parse st again without Close",
            Batch::new().parse("st", "SELECT 4").run("st", &[]).sync(),
            &[
                "Error 42P05 prepared statement \"st\" already exists",
                "ReadyForQuery I",
            ],
        ),
        step(
            "Bind an unknown name",
            Batch::new().run("nope", &[]).sync(),
            &[
                "Error 26000 prepared statement \"nope\" does not exist",
                "ReadyForQuery I",
            ],
        ),
        step(
            "st is still SELECT 3",
            Batch::new().run("st", &[]).sync(),
            &[
                "BindComplete",
                "DataRow 3",
                "CommandComplete SELECT 1",
                "ReadyForQuery I",
            ],
        ),
        step(
            "a simple query afterwards",
            Batch::new().query("SELECT 42 AS answer"),
            &[
                "RowDescription answer",
                "DataRow 42",
                "CommandComplete SELECT 1",
                "ReadyForQuery I",
            ],
        ),
        step(
            "Close of a name that does not exist is no error",
            Batch::new().close_statement("never").sync(),
            &["CloseComplete", "ReadyForQuery I"],
        ),
        step(
            "st once more",
            Batch::new().run("st", &[]).sync(),
            &[
                "BindComplete",
                "DataRow 3",
                "CommandComplete SELECT 1",
                "ReadyForQuery I",
            ],
        ),
    ];
    for (i, s) in steps.iter().enumerate() {
        check_script(&mut direct, &mut pooled, std::slice::from_ref(s)).await;
        let v: i32 = other
            .query_one(&other_stmt, &[&(i as i32)])
            .await
            .unwrap()
            .get(0);
        assert_eq!(v, i as i32 - 1, "the other client's statement");
    }
}

/// PostgreSQL aborts the transaction on a duplicate or unknown statement name like on any error:
/// ReadyForQuery says E, and COMMIT rolls back.
#[tokio::test]
async fn statement_name_errors_inside_a_transaction_abort_it() {
    let pg = PgCluster::start();
    let su = pg.superuser(APP_DB).await;
    su.batch_execute("CREATE TABLE t(pid int NOT NULL); ALTER TABLE t OWNER TO app;")
        .await
        .unwrap();
    // A pool of 1 and no other client: this client's transactions all run on one backend, so
    // "rows this backend wrote" means "rows this client wrote", as on the direct session.
    let pooler = pooler_with(&pg, 1);
    let mut direct = RawConn::connect_app(pg.addr()).await;
    let mut pooled = RawConn::connect_app(pooler.addr()).await;
    check_script(
        &mut direct,
        &mut pooled,
        &[
            step(
                "Parse st",
                Batch::new().parse("st", "SELECT 1").sync(),
                &["ParseComplete", "ReadyForQuery I"],
            ),
            step(
                "duplicate Parse inside a transaction, then COMMIT",
                Batch::new()
                    .query("BEGIN")
                    .query("INSERT INTO t VALUES (pg_backend_pid())")
                    .parse("st", "SELECT 2")
                    .sync()
                    .query("COMMIT"),
                &[
                    "CommandComplete BEGIN",
                    "ReadyForQuery T",
                    "CommandComplete INSERT 0 1",
                    "ReadyForQuery T",
                    "Error 42P05 prepared statement \"st\" already exists",
                    "ReadyForQuery E",
                    "CommandComplete ROLLBACK",
                    "ReadyForQuery I",
                ],
            ),
            step(
                "unknown name inside a transaction, then COMMIT",
                Batch::new()
                    .query("BEGIN")
                    .query("INSERT INTO t VALUES (pg_backend_pid())")
                    .run("nope", &[])
                    .sync()
                    .query("COMMIT"),
                &[
                    "CommandComplete BEGIN",
                    "ReadyForQuery T",
                    "CommandComplete INSERT 0 1",
                    "ReadyForQuery T",
                    "Error 26000 prepared statement \"nope\" does not exist",
                    "ReadyForQuery E",
                    "CommandComplete ROLLBACK",
                    "ReadyForQuery I",
                ],
            ),
            step(
                "nothing was committed",
                Batch::new().query("SELECT count(*) FROM t WHERE pid = pg_backend_pid()"),
                &[
                    "RowDescription count",
                    "DataRow 0",
                    "CommandComplete SELECT 1",
                    "ReadyForQuery I",
                ],
            ),
        ],
    )
    .await;
}

/// Without BEGIN, the messages up to Sync are one implicit transaction: an error anywhere in them
/// rolls back a write earlier in the same pipeline.
#[tokio::test]
async fn statement_name_errors_roll_back_the_pipelines_implicit_transaction() {
    let pg = PgCluster::start();
    let su = pg.superuser(APP_DB).await;
    su.batch_execute("CREATE TABLE t(pid int NOT NULL); ALTER TABLE t OWNER TO app;")
        .await
        .unwrap();
    // As above: pool of 1, one client, so pg_backend_pid() stands for this client.
    let pooler = pooler_with(&pg, 1);
    let mut direct = RawConn::connect_app(pg.addr()).await;
    let mut pooled = RawConn::connect_app(pooler.addr()).await;
    let count = || {
        step(
            "nothing was committed",
            Batch::new().query("SELECT count(*) FROM t WHERE pid = pg_backend_pid()"),
            &[
                "RowDescription count",
                "DataRow 0",
                "CommandComplete SELECT 1",
                "ReadyForQuery I",
            ],
        )
    };
    check_script(
        &mut direct,
        &mut pooled,
        &[
            step(
                "Parse ins and st",
                Batch::new()
                    .parse("ins", "INSERT INTO t VALUES (pg_backend_pid())")
                    .parse("st", "SELECT 1")
                    .sync(),
                &["ParseComplete", "ParseComplete", "ReadyForQuery I"],
            ),
            step(
                "INSERT, then Bind of an unknown name",
                Batch::new().run("ins", &[]).run("nope", &[]).sync(),
                &[
                    "BindComplete",
                    "CommandComplete INSERT 0 1",
                    "Error 26000 prepared statement \"nope\" does not exist",
                    "ReadyForQuery I",
                ],
            ),
            count(),
            step(
                "INSERT, then a duplicate Parse",
                Batch::new().run("ins", &[]).parse("st", "SELECT 2").sync(),
                &[
                    "BindComplete",
                    "CommandComplete INSERT 0 1",
                    "Error 42P05 prepared statement \"st\" already exists",
                    "ReadyForQuery I",
                ],
            ),
            count(),
        ],
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// 5. A Parse error inside a pipeline.

#[tokio::test]
async fn parse_error_inside_a_pipeline() {
    let pg = PgCluster::start();
    let su = pg.superuser(APP_DB).await;
    let pooler = pooler_with(&pg, 2);
    let mut direct = RawConn::connect_app(pg.addr()).await;
    let mut pooled = RawConn::connect_app(pooler.addr()).await;

    check_script(
        &mut direct,
        &mut pooled,
        &[
            step(
                "good statement, then bad SQL, in one write",
                Batch::new()
                    .parse("good", "SELECT $1::int + 1")
                    .run("good", &["41"])
                    .parse("bad", "SELEC 1")
                    .run("bad", &[])
                    .sync(),
                &[
                    "ParseComplete",
                    "BindComplete",
                    "DataRow 42",
                    "CommandComplete SELECT 1",
                    "Error 42601 syntax error at or near \"SELEC\"",
                    "ReadyForQuery I",
                ],
            ),
            step(
                "the bad name was not recorded",
                Batch::new().run("bad", &[]).sync(),
                &[
                    "Error 26000 prepared statement \"bad\" does not exist",
                    "ReadyForQuery I",
                ],
            ),
            step(
                "bad SQL first: what follows it is skipped, its Parse included",
                Batch::new()
                    .parse("worse", "SELECT FROM WHERE")
                    .parse("skipped", "SELECT 'skipped'")
                    .run("skipped", &[])
                    .run("good", &["0"])
                    .sync(),
                &[
                    "Error 42601 syntax error at or near \"WHERE\"",
                    "ReadyForQuery I",
                ],
            ),
            step(
                "the skipped Parse never happened",
                Batch::new().run("skipped", &[]).sync(),
                &[
                    "Error 26000 prepared statement \"skipped\" does not exist",
                    "ReadyForQuery I",
                ],
            ),
            step(
                "the names are free: Parse them with valid SQL",
                Batch::new()
                    .parse("bad", "SELECT 'now valid'")
                    .parse("skipped", "SELECT 'not skipped'")
                    .run("bad", &[])
                    .run("skipped", &[])
                    .sync(),
                &[
                    "ParseComplete",
                    "ParseComplete",
                    "BindComplete",
                    "DataRow now valid",
                    "CommandComplete SELECT 1",
                    "BindComplete",
                    "DataRow not skipped",
                    "CommandComplete SELECT 1",
                    "ReadyForQuery I",
                ],
            ),
            step(
                "good still works in a later transaction",
                Batch::new().run("good", &["9"]).sync(),
                &[
                    "BindComplete",
                    "DataRow 10",
                    "CommandComplete SELECT 1",
                    "ReadyForQuery I",
                ],
            ),
        ],
    )
    .await;

    // So far one client, one transaction at a time: one server connection. Another client now
    // holds it inside a transaction, so this client's next transaction runs on a new one, which
    // has never seen "good".
    let direct_pid = direct.backend_key.expect("BackendKeyData").0;
    let pooled_pids = || async {
        let mut pids = app_backend_pids(&su).await;
        pids.retain(|p| *p != direct_pid);
        pids
    };
    let before = pooled_pids().await;
    assert_eq!(before.len(), 1, "sluice's server connections: {before:?}");
    let holder = pooler.connect_app().await;
    holder.batch_execute("BEGIN").await.unwrap();
    let held_pid = backend_pid(&holder).await;
    let got = exchange(
        &mut pooled,
        &Batch::new()
            .parse("", "SELECT pg_backend_pid()")
            .run("", &[])
            .run("good", &["99"])
            .sync(),
    )
    .await;
    assert_eq!(got.len(), 8, "{got:?}");
    let pid = got[2]
        .strip_prefix("DataRow ")
        .unwrap_or_else(|| panic!("{got:?}"));
    assert_ne!(
        pid,
        held_pid.to_string(),
        "expected another server connection"
    );
    assert_eq!(
        got,
        [
            "ParseComplete",
            "BindComplete",
            &format!("DataRow {pid}"),
            "CommandComplete SELECT 1",
            "BindComplete",
            "DataRow 100",
            "CommandComplete SELECT 1",
            "ReadyForQuery I"
        ]
    );
    let after = pooled_pids().await;
    assert_eq!(after.len(), 2, "sluice's server connections: {after:?}");
    assert!(after.contains(&held_pid) && after.contains(&pid.parse().unwrap()));
    holder.batch_execute("COMMIT").await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// 6. The server connection dies between prepare and execute.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statement_survives_its_server_connection_being_terminated() {
    let pg = PgCluster::start();
    let su = pg.superuser(APP_DB).await;

    // Pool of 1: the client's pid is the pool's only server connection.
    {
        let pooler = pooler_with(&pg, 1);
        let c = pooler.connect_app().await;
        let stmt = c.prepare("SELECT $1::int * 3").await.unwrap();
        assert_eq!(
            c.query_one(&stmt, &[&5i32]).await.unwrap().get::<_, i32>(0),
            15
        );
        let pid = backend_pid(&c).await;
        terminate_backend(&su, pid).await;
        wait_backend_gone(&su, pid).await;
        let row = within(STEP, "execute after the kill", c.query_one(&stmt, &[&7i32]))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "the prepared statement failed after its server connection was terminated: {}",
                    describe_error(&e)
                )
            });
        assert_eq!(row.get::<_, i32>(0), 21);
        assert_ne!(backend_pid(&c).await, pid, "a new server connection");
    }

    // Pool of 2, two clients: both server connections have statements, both are terminated,
    // then many executions.
    let pooler = pooler_with(&pg, 2);
    let c1 = pooler.connect_app().await;
    let c2 = pooler.connect_app().await;
    let (m1, t1) = (
        c1.prepare("SELECT $1::int * 3").await.unwrap(),
        c1.prepare("SELECT $1::text || '!'").await.unwrap(),
    );
    let (m2, t2) = (
        c2.prepare("SELECT $1::int * 3").await.unwrap(),
        c2.prepare("SELECT $1::text || '?'").await.unwrap(),
    );
    // c1 holds one connection in a transaction while c2 uses (and so opens) the other.
    c1.batch_execute("BEGIN").await.unwrap();
    assert_eq!(
        c1.query_one(&m1, &[&1i32]).await.unwrap().get::<_, i32>(0),
        3
    );
    assert_eq!(
        c1.query_one(&t1, &[&"a"])
            .await
            .unwrap()
            .get::<_, String>(0),
        "a!"
    );
    assert_eq!(
        c2.query_one(&m2, &[&2i32]).await.unwrap().get::<_, i32>(0),
        6
    );
    assert_eq!(
        c2.query_one(&t2, &[&"b"])
            .await
            .unwrap()
            .get::<_, String>(0),
        "b?"
    );
    c1.batch_execute("COMMIT").await.unwrap();
    let pids = app_backend_pids(&su).await;
    assert_eq!(
        pids.len(),
        2,
        "two server connections before the kill: {pids:?}"
    );
    for pid in &pids {
        terminate_backend(&su, *pid).await;
        wait_backend_gone(&su, *pid).await;
    }
    let run = |c: Client,
               m: tokio_postgres::Statement,
               t: tokio_postgres::Statement,
               mark: &'static str| async move {
        for i in 0..200i32 {
            let label = format!("v{i}");
            let (a, b) = future::try_join(c.query_one(&m, &[&i]), c.query_one(&t, &[&label]))
                .await
                .unwrap_or_else(|e| panic!("round {i} after the kill: {}", describe_error(&e)));
            assert_eq!(a.get::<_, i32>(0), i * 3);
            assert_eq!(b.get::<_, String>(0), format!("{label}{mark}"));
        }
    };
    within(
        Duration::from_secs(60),
        "executions after the kill",
        future::join(run(c1, m1, t1, "!"), run(c2, m2, t2, "?")),
    )
    .await;
    let after = app_backend_pids(&su).await;
    assert!(
        (1..=2).contains(&after.len()) && after.iter().all(|p| !pids.contains(p)),
        "new server connections only: before {pids:?}, after {after:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 7. Cache counters, read from the pool through the harness's handle on sluice's state.

/// The prepared-statement counters of app's pool: (hits, misses, evictions).
fn counters(pooler: &Sluice) -> (u64, u64, u64) {
    let pool = pooler.pool(APP_DB, APP_USER);
    let c = &pool.counters;
    (
        c.prepared_hits.load(Ordering::Relaxed),
        c.prepared_misses.load(Ordering::Relaxed),
        c.prepared_evictions.load(Ordering::Relaxed),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_counters_in_the_pool_stats() {
    let pg = PgCluster::start();
    let config = set_config(
        &config_for(&pg, 1, PoolMode::Transaction),
        "pooler.max_prepared_statements",
        2,
    );
    let pooler = Sluice::start(config);

    // One statement, prepared once on the pool's one server connection, then found there.
    let c1 = pooler.connect_app().await;
    let double = c1.prepare("SELECT $1::int * 2").await.unwrap();
    for i in 0..10i32 {
        assert_eq!(
            c1.query_one(&double, &[&i]).await.unwrap().get::<_, i32>(0),
            i * 2
        );
    }
    let (hits, misses, evictions) = counters(&pooler);
    assert_eq!((misses, evictions), (1, 0), "hits {hits}");
    assert!(hits >= 10, "10 executions found the statement: hits {hits}");
    assert_eq!(pooler.pool(APP_DB, APP_USER).statements.len(), 1);

    // Another client preparing the same SQL shares the statement: no new miss.
    let c2 = pooler.connect_app().await;
    let double2 = c2.prepare("SELECT $1::int * 2").await.unwrap();
    for i in 0..5i32 {
        assert_eq!(
            c2.query_one(&double2, &[&i])
                .await
                .unwrap()
                .get::<_, i32>(0),
            i * 2
        );
    }
    let (hits2, misses2, evictions2) = counters(&pooler);
    assert_eq!((misses2, evictions2), (1, 0));
    assert!(hits2 >= hits + 6, "hits {hits} -> {hits2}");
    assert_eq!(pooler.pool(APP_DB, APP_USER).statements.len(), 1);

    // Three statements round-robin on a connection that keeps two: every execution evicts.
    let triple = c1.prepare("SELECT $1::int * 3").await.unwrap();
    let quad = c1.prepare("SELECT $1::int * 4").await.unwrap();
    for i in 0..10i32 {
        for (stmt, k) in [(&double, 2), (&triple, 3), (&quad, 4)] {
            assert_eq!(
                c1.query_one(stmt, &[&i]).await.unwrap().get::<_, i32>(0),
                i * k
            );
        }
    }
    let (_, misses3, evictions3) = counters(&pooler);
    assert!(evictions3 >= 20, "evictions {evictions3}");
    assert_eq!(
        misses3 - evictions3,
        2,
        "prepared minus closed on the one connection = the two it keeps (misses {misses3}, evictions {evictions3})"
    );
    assert_eq!(pooler.pool(APP_DB, APP_USER).statements.len(), 3);
}

// ---------------------------------------------------------------------------------------------
// 8. DISCARD ALL and DEALLOCATE.

#[tokio::test]
async fn discard_all_and_deallocate_clear_a_clients_names() {
    let pg = PgCluster::start();
    let pooler = pooler_with(&pg, 1);
    let mut direct = RawConn::connect_app(pg.addr()).await;
    let mut pooled = RawConn::connect_app(pooler.addr()).await;
    // Another client on the same (only) server connection: whatever this client discards, its
    // statement must keep working.
    let other = pooler.connect_app().await;
    let other_stmt = other.prepare("SELECT $1::int + 100").await.unwrap();
    let check_other = |n: i32| {
        let (other, other_stmt) = (&other, &other_stmt);
        async move {
            let v: i32 = other
                .query_one(other_stmt, &[&n])
                .await
                .unwrap_or_else(|e| {
                    panic!("the other client after step {n}: {}", describe_error(&e))
                })
                .get(0);
            assert_eq!(v, n + 100);
        }
    };
    let steps = [
        step(
            "Parse a and b",
            Batch::new()
                .parse("a", "SELECT 'a'")
                .parse("b", "SELECT 'b'")
                .sync(),
            &["ParseComplete", "ParseComplete", "ReadyForQuery I"],
        ),
        step(
            "DISCARD ALL",
            Batch::new().query("DISCARD ALL"),
            &["CommandComplete DISCARD ALL", "ReadyForQuery I"],
        ),
        step(
            "a is gone",
            Batch::new().run("a", &[]).sync(),
            &[
                "Error 26000 prepared statement \"a\" does not exist",
                "ReadyForQuery I",
            ],
        ),
        step(
            "b is gone",
            Batch::new().run("b", &[]).sync(),
            &[
                "Error 26000 prepared statement \"b\" does not exist",
                "ReadyForQuery I",
            ],
        ),
        step(
            "Parse a (other SQL) and c",
            Batch::new()
                .parse("a", "SELECT 'a2'")
                .parse("c", "SELECT 'c'")
                .run("a", &[])
                .sync(),
            &[
                "ParseComplete",
                "ParseComplete",
                "BindComplete",
                "DataRow a2",
                "CommandComplete SELECT 1",
                "ReadyForQuery I",
            ],
        ),
        step(
            "DEALLOCATE a",
            Batch::new().query("DEALLOCATE a"),
            &["CommandComplete DEALLOCATE", "ReadyForQuery I"],
        ),
        step(
            "a is gone",
            Batch::new().run("a", &[]).sync(),
            &[
                "Error 26000 prepared statement \"a\" does not exist",
                "ReadyForQuery I",
            ],
        ),
        step(
            "c is still there",
            Batch::new().run("c", &[]).sync(),
            &[
                "BindComplete",
                "DataRow c",
                "CommandComplete SELECT 1",
                "ReadyForQuery I",
            ],
        ),
        step(
            "DEALLOCATE a again",
            Batch::new().query("DEALLOCATE a"),
            &[
                "Error 26000 prepared statement \"a\" does not exist",
                "ReadyForQuery I",
            ],
        ),
        step(
            "deallocate prepare c",
            Batch::new().query("deallocate prepare c"),
            &["CommandComplete DEALLOCATE", "ReadyForQuery I"],
        ),
        step(
            "Parse c and d",
            Batch::new()
                .parse("c", "SELECT 'c2'")
                .parse("d", "SELECT 'd'")
                .sync(),
            &["ParseComplete", "ParseComplete", "ReadyForQuery I"],
        ),
        step(
            "DEALLOCATE ALL",
            Batch::new().query("DEALLOCATE ALL"),
            &["CommandComplete DEALLOCATE ALL", "ReadyForQuery I"],
        ),
        step(
            "c and d are gone",
            Batch::new().run("c", &[]).sync().run("d", &[]).sync(),
            &[
                "Error 26000 prepared statement \"c\" does not exist",
                "ReadyForQuery I",
                "Error 26000 prepared statement \"d\" does not exist",
                "ReadyForQuery I",
            ],
        ),
        step(
            "names can be used again",
            Batch::new().parse("d", "SELECT 'd2'").run("d", &[]).sync(),
            &[
                "ParseComplete",
                "BindComplete",
                "DataRow d2",
                "CommandComplete SELECT 1",
                "ReadyForQuery I",
            ],
        ),
    ];
    for (i, s) in steps.iter().enumerate() {
        check_script(&mut direct, &mut pooled, std::slice::from_ref(s)).await;
        check_other(i as i32).await;
    }
}

// ---------------------------------------------------------------------------------------------
// 9. SQL-level PREPARE / EXECUTE.

#[tokio::test]
async fn sql_prepare_and_execute_inside_one_transaction() {
    let pg = PgCluster::start();
    let pooler = pooler_with(&pg, 2);
    let mut c = pooler.connect_app().await;
    let other = pooler.connect_app().await;
    for round in 0..5i32 {
        let tx = c.transaction().await.unwrap();
        tx.batch_execute("PREPARE p(int) AS SELECT $1 * 5")
            .await
            .unwrap();
        let v: i32 = tx
            .query_one(&format!("EXECUTE p({round})"), &[])
            .await
            .unwrap_or_else(|e| panic!("round {round}: EXECUTE: {}", describe_error(&e)))
            .get(0);
        assert_eq!(v, round * 5);
        let msgs = tx.simple_query("EXECUTE p(7)").await.unwrap();
        let row = msgs.iter().find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        });
        assert_eq!(row.as_deref(), Some("35"));
        tx.batch_execute("DEALLOCATE p").await.unwrap();
        tx.commit().await.unwrap();
        // Between rounds another client runs, so transactions move between connections.
        assert_eq!(
            simple_scalar(&other, "SELECT 1").await.as_deref(),
            Some("1")
        );
    }
    // One simple-query string is one implicit transaction.
    let msgs = c
        .simple_query("PREPARE q AS SELECT 7 * 6; EXECUTE q; DEALLOCATE q")
        .await
        .unwrap();
    let rows: Vec<String> = msgs
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .collect();
    assert_eq!(rows, ["42"]);

    // In session mode the statement lives as long as the session.
    let session = Sluice::start(config_for(&pg, 1, PoolMode::Session));
    let s = session.connect_app().await;
    s.batch_execute("PREPARE r(text) AS SELECT upper($1)")
        .await
        .unwrap();
    for word in ["one", "two", "three"] {
        let got = simple_scalar(&s, &format!("EXECUTE r('{word}')")).await;
        assert_eq!(got, Some(word.to_uppercase()));
    }
}

// ---------------------------------------------------------------------------------------------
// 10. Eviction.

#[tokio::test]
async fn five_statements_on_a_connection_that_keeps_two() {
    let pg = PgCluster::start();
    let config = set_config(
        &config_for(&pg, 1, PoolMode::Transaction),
        "pooler.max_prepared_statements",
        2,
    );
    let pooler = Sluice::start(config);
    let sql = |k: i32| format!("SELECT ($1::int * {k})::text || '/{k}'");
    let expect = |i: i32, k: i32| format!("{}/{k}", i * k);

    // One client, one execution at a time.
    let c = pooler.connect_app().await;
    let mut stmts = Vec::new();
    for k in 1..=5 {
        stmts.push((c.prepare(&sql(k)).await.unwrap(), k));
    }
    for i in 0..20i32 {
        for (stmt, k) in &stmts {
            let got: String = c
                .query_one(stmt, &[&i])
                .await
                .unwrap_or_else(|e| panic!("round {i}, statement {k}: {}", describe_error(&e)))
                .get(0);
            assert_eq!(got, expect(i, *k), "round {i}, statement {k}");
        }
    }

    // Two clients at once, one of them pipelining all five per round: sluice closes and
    // re-prepares statements in the middle of pipelines.
    let d = pooler.connect_app().await;
    let mut d_stmts = Vec::new();
    for k in (1..=5).rev() {
        d_stmts.push((d.prepare(&sql(k)).await.unwrap(), k));
    }
    let sequential = async {
        for i in 0..20i32 {
            for (stmt, k) in &stmts {
                let got: String = c.query_one(stmt, &[&i]).await.unwrap().get(0);
                assert_eq!(got, expect(i, *k));
            }
        }
    };
    let pipelined = async {
        for i in 0..20i32 {
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&i];
            let rows = future::try_join_all(d_stmts.iter().map(|(s, _)| d.query_one(s, &params)))
                .await
                .unwrap_or_else(|e| panic!("pipelined round {i}: {}", describe_error(&e)));
            let got: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
            let want: Vec<String> = d_stmts.iter().map(|(_, k)| expect(i, *k)).collect();
            assert_eq!(got, want, "pipelined round {i}");
        }
    };
    within(
        Duration::from_secs(60),
        "two clients",
        future::join(sequential, pipelined),
    )
    .await;
}

/// An error early in a batch makes the server skip the rest up to Sync, including a Close sluice
/// put there to evict a statement: the statement is then still on the server. (`10 / $1` with 0
/// fails at Bind: PostgreSQL folds the constant when it plans with the parameter's value.)
#[tokio::test]
async fn eviction_inside_a_batch_that_fails_before_it() {
    let pg = PgCluster::start();
    let config = set_config(
        &config_for(&pg, 1, PoolMode::Transaction),
        "pooler.max_prepared_statements",
        2,
    );
    let pooler = Sluice::start(config);
    let mut direct = RawConn::connect_app(pg.addr()).await;
    let mut pooled = RawConn::connect_app(pooler.addr()).await;
    check_script(
        &mut direct,
        &mut pooled,
        &[
            step(
                "Parse a, b, c",
                Batch::new()
                    .parse("a", "SELECT 10 / $1::int")
                    .parse("b", "SELECT 'b'")
                    .parse("c", "SELECT 'c'")
                    .sync(),
                &[
                    "ParseComplete",
                    "ParseComplete",
                    "ParseComplete",
                    "ReadyForQuery I",
                ],
            ),
            step(
                "run a",
                Batch::new().run("a", &["5"]).sync(),
                &[
                    "BindComplete",
                    "DataRow 2",
                    "CommandComplete SELECT 1",
                    "ReadyForQuery I",
                ],
            ),
            step(
                "a fails, then b (which needs an eviction) is skipped",
                Batch::new().run("a", &["0"]).run("b", &[]).sync(),
                &["Error 22012 division by zero", "ReadyForQuery I"],
            ),
            step(
                "c",
                Batch::new().run("c", &[]).sync(),
                &[
                    "BindComplete",
                    "DataRow c",
                    "CommandComplete SELECT 1",
                    "ReadyForQuery I",
                ],
            ),
            step(
                "b, a, c",
                Batch::new()
                    .run("b", &[])
                    .run("a", &["2"])
                    .run("c", &[])
                    .sync(),
                &[
                    "BindComplete",
                    "DataRow b",
                    "CommandComplete SELECT 1",
                    "BindComplete",
                    "DataRow 5",
                    "CommandComplete SELECT 1",
                    "BindComplete",
                    "DataRow c",
                    "CommandComplete SELECT 1",
                    "ReadyForQuery I",
                ],
            ),
            step(
                "a fails, then a Parse (which needs an eviction) is skipped",
                Batch::new()
                    .run("a", &["0"])
                    .parse("d", "SELECT 'd'")
                    .sync(),
                &["Error 22012 division by zero", "ReadyForQuery I"],
            ),
            step(
                "b, c, then d for real",
                Batch::new()
                    .run("b", &[])
                    .run("c", &[])
                    .parse("d", "SELECT 'd'")
                    .run("d", &[])
                    .sync(),
                &[
                    "BindComplete",
                    "DataRow b",
                    "CommandComplete SELECT 1",
                    "BindComplete",
                    "DataRow c",
                    "CommandComplete SELECT 1",
                    "ParseComplete",
                    "BindComplete",
                    "DataRow d",
                    "CommandComplete SELECT 1",
                    "ReadyForQuery I",
                ],
            ),
        ],
    )
    .await;
}
