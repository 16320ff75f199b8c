//! SQL-level PREPARE / EXECUTE / DEALLOCATE through transaction pooling: prepared in one
//! transaction, executed in later ones on whatever server connection the pool lends, with
//! PostgreSQL's own answers (results, errors with their positions, 42P05, 26000, 25P02),
//! compared with a direct connection. psql scripts and tokio-postgres `simple_query`.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use sluice::config::PoolMode;
use tokio_postgres::{Client, SimpleQueryMessage};

/// Exercises every form; errors are part of the script (ON_ERROR_STOP off).
const SCRIPT: &str = r#"\set ON_ERROR_STOP 0
BEGIN;
PREPARE q (int) AS SELECT $1 * 2 AS doubled;
COMMIT;
EXECUTE q(21);
BEGIN;
EXECUTE q(1);
COMMIT;
PREPARE q AS SELECT 1;
EXECUTE nope(1);
EXECUTE q(1, 2);
EXECUTE q('x');
EXECUTE   q(nosuch_column);
PREPARE bad AS SELECT nosuch FROM (VALUES (1)) v(a);
EXPLAIN (COSTS off) EXECUTE q(3);
BEGIN;
CREATE TABLE ctas_t AS EXECUTE q(5);
SELECT * FROM ctas_t;
ROLLBACK;
PREPARE "Mixed Case" AS SELECT 'mixed' AS m;
EXECUTE "Mixed Case";
execute MIXED;
PREPARE untyped AS SELECT $1::text || '!' AS t;
EXECUTE untyped('hi');
BEGIN;
EXECUTE nope;
EXECUTE q(1);
ROLLBACK;
DEALLOCATE q;
EXECUTE q(1);
DEALLOCATE PREPARE q;
DEALLOCATE ALL;
EXECUTE "Mixed Case";
PREPARE q AS SELECT 'again' AS a;
EXECUTE q;
DEALLOCATE q;
"#;

/// Clients that keep the pool busy with statements of their own under the same names.
fn busy_clients(
    pooler: &Sluice,
    n: usize,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<u64>> {
    (0..n)
        .map(|i| {
            let stop = stop.clone();
            let cfg = pooler.pg_config(APP_DB, APP_USER, APP_PASSWORD);
            tokio::spawn(async move {
                let (c, _) = connect_config(&cfg).await.expect("busy client connects");
                let mut rounds = 0u64;
                c.simple_query(&format!("PREPARE q AS SELECT 'other {i}'"))
                    .await
                    .expect("busy PREPARE");
                while !stop.load(Ordering::Relaxed) {
                    let rows = c.simple_query("EXECUTE q").await.expect("busy EXECUTE");
                    assert_eq!(first_value(&rows).as_deref(), Some(&*format!("other {i}")));
                    c.simple_query("BEGIN; SELECT pg_sleep(0.001); COMMIT")
                        .await
                        .expect("busy transaction");
                    rounds += 1;
                }
                rounds
            })
        })
        .collect()
}

fn first_value(rows: &[SimpleQueryMessage]) -> Option<String> {
    rows.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
        _ => None,
    })
}

async fn script_through(pooler: &Sluice, path: &str) -> (String, String) {
    let out = pooler.psql(&["-a", "-f", path]).await;
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_script_answers_as_postgresql_through_pools_of_1_and_5() {
    let pg = PgCluster::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("prepare.sql");
    std::fs::write(&path, SCRIPT).unwrap();
    let path = path.to_str().unwrap();

    let direct = pg
        .psql_direct(APP_DB, APP_USER, APP_PASSWORD, &["-a", "-f", path])
        .await;
    let direct = (
        String::from_utf8_lossy(&direct.stdout).into_owned(),
        String::from_utf8_lossy(&direct.stderr).into_owned(),
    );
    // The script does what it says directly (a sanity check of the script itself).
    assert!(direct.0.contains("42\n"), "{}", direct.0);
    assert!(
        direct.1.contains("42P05") || direct.1.contains("already exists"),
        "{}",
        direct.1
    );

    for pool_size in [1, 5] {
        let pooler = Sluice::start(config_for(&pg, pool_size, PoolMode::Transaction));
        let stop = Arc::new(AtomicBool::new(false));
        let busy = busy_clients(&pooler, 3, &stop);
        let through = script_through(&pooler, path).await;
        // A second psql: the pool-wide statement is shared, names are per client.
        let again = script_through(&pooler, path).await;
        stop.store(true, Ordering::Relaxed);
        for b in busy {
            assert!(b.await.unwrap() > 0, "the busy clients ran");
        }
        assert_eq!(through.0, direct.0, "stdout, pool of {pool_size}");
        assert_eq!(through.1, direct.1, "stderr, pool of {pool_size}");
        assert_eq!(again, direct, "second run, pool of {pool_size}");
    }
}

/// `psql -c` one command at a time: PREPARE in a transaction, EXECUTE in later ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_commands_prepare_then_execute_in_later_transactions() {
    let pg = PgCluster::start();
    let pooler = Sluice::start(config_for(&pg, 1, PoolMode::Transaction));
    let stop = Arc::new(AtomicBool::new(false));
    let busy = busy_clients(&pooler, 2, &stop);
    let out = pooler
        .psql(&[
            "-At",
            "-c",
            "BEGIN",
            "-c",
            "PREPARE p (int, text) AS SELECT $2 || $1",
            "-c",
            "COMMIT",
            "-c",
            "EXECUTE p(1, 'a')",
            "-c",
            "EXECUTE p(2, 'b')",
            "-c",
            "BEGIN",
            "-c",
            "EXECUTE p(3, 'c')",
            "-c",
            "COMMIT",
        ])
        .await;
    stop.store(true, Ordering::Relaxed);
    for b in busy {
        b.await.unwrap();
    }
    assert!(out.status.success(), "{}", describe_output(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "BEGIN", "PREPARE", "COMMIT", "a1", "b2", "BEGIN", "c3", "COMMIT"
        ]
    );
}

/// Error fields a client sees, for comparison.
fn error_of(e: &tokio_postgres::Error) -> (String, String, Option<String>) {
    let db = e.as_db_error().expect("a server error");
    (
        db.code().code().to_owned(),
        db.message().to_owned(),
        db.position().map(|p| format!("{p:?}")),
    )
}

async fn answers(c: &Client, sql: &str) -> Result<Vec<String>, (String, String, Option<String>)> {
    match c.simple_query(sql).await {
        Ok(rows) => Ok(rows
            .iter()
            .map(|m| match m {
                SimpleQueryMessage::Row(r) => format!("row {:?}", r.get(0)),
                SimpleQueryMessage::CommandComplete(n) => format!("complete {n}"),
                _ => "other".to_owned(),
            })
            .collect()),
        Err(e) => Err(error_of(&e)),
    }
}

/// tokio-postgres `simple_query` through a pool of 2 where the EXECUTE is made to run on the
/// server connection that did not see the PREPARE: sluice prepares it there in the same round
/// trip, and every answer is the direct connection's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simple_query_executes_on_a_connection_that_never_saw_the_prepare() {
    let pg = PgCluster::start();
    let pooler = Sluice::start(config_for(&pg, 2, PoolMode::Transaction));
    let direct = pg.connect_direct(APP_DB, APP_USER, APP_PASSWORD).await;
    let a = pooler.connect_app().await;
    let holder = pooler.connect_app().await;

    // The holder pins one connection; A prepares on the other.
    holder.simple_query("BEGIN").await.unwrap();
    let first_pid = simple_scalar(&holder, "SELECT pg_backend_pid()").await;
    let steps = [
        "PREPARE s (int) AS SELECT $1 + 1 AS n",
        "PREPARE s AS SELECT 2",
        "EXECUTE s(41)",
    ];
    for sql in steps {
        assert_eq!(answers(&a, sql).await, answers(&direct, sql).await, "{sql}");
    }
    holder.simple_query("COMMIT").await.unwrap();
    // Now the holder pins A's connection: A's EXECUTE runs where `s` was never prepared.
    holder.simple_query("BEGIN").await.unwrap();
    let mut second_pid = simple_scalar(&holder, "SELECT pg_backend_pid()").await;
    if second_pid == first_pid {
        // The pool lent the same one again: go round once more.
        holder.simple_query("COMMIT").await.unwrap();
        simple_scalar(&a, "SELECT 1").await;
        holder.simple_query("BEGIN").await.unwrap();
        second_pid = simple_scalar(&holder, "SELECT pg_backend_pid()").await;
    }
    let misses_before = pooler
        .pool(APP_DB, APP_USER)
        .counters
        .prepared_misses
        .load(Ordering::Relaxed);
    let steps = [
        "EXECUTE s(1)",
        "EXECUTE s(1, 2)",
        "EXECUTE  s(no_such_column)",
        "EXPLAIN (COSTS off) EXECUTE s(3)",
        "DEALLOCATE s",
        "EXECUTE s(1)",
        "DEALLOCATE s",
    ];
    for sql in steps {
        assert_eq!(answers(&a, sql).await, answers(&direct, sql).await, "{sql}");
    }
    // SQL EXECUTE through the extended protocol (tokio-postgres prepares it as a named
    // statement): renamed too, with the statement prepared ahead.
    assert_eq!(
        answers(&a, "PREPARE s (int) AS SELECT $1 + 1 AS n").await,
        answers(&direct, "PREPARE s (int) AS SELECT $1 + 1 AS n").await
    );
    let untyped = "PREPARE u AS SELECT 10 AS n";
    assert_eq!(answers(&a, untyped).await, answers(&direct, untyped).await);
    for c in [&a, &direct] {
        let n: i32 = c.query_one("EXECUTE u", &[]).await.unwrap().get(0);
        assert_eq!(n, 10);
        let err = c.query_one("EXECUTE nope", &[]).await.unwrap_err();
        assert_eq!(error_of(&err).0, "26000");
        assert_eq!(
            error_of(&err).1,
            "prepared statement \"nope\" does not exist"
        );
    }
    let misses = pooler
        .pool(APP_DB, APP_USER)
        .counters
        .prepared_misses
        .load(Ordering::Relaxed)
        - misses_before;
    holder.simple_query("COMMIT").await.unwrap();
    assert!(
        misses >= 1 || second_pid == first_pid,
        "the EXECUTE ran where the statement was missing ({first_pid:?} / {second_pid:?})"
    );
}

/// A statement prepared with a protocol-level Parse is reachable by SQL EXECUTE and DEALLOCATE
/// (one namespace, as in PostgreSQL), and a SQL-prepared one by Bind; names and transaction
/// states answer message by message as PostgreSQL's. A pool of 1 with a second client that
/// leaves the server connection lacking nothing: the answers alone are compared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_and_protocol_statements_share_one_namespace() {
    let pg = PgCluster::start();
    let pooler = Sluice::start(config_for(&pg, 1, PoolMode::Transaction));
    let mut direct = RawConn::connect_app(pg.addr()).await;
    let mut pooled = RawConn::connect_app(pooler.addr()).await;
    check_script(
        &mut direct,
        &mut pooled,
        &[
            step(
                "Parse pq, PREPARE by_sql",
                Batch::new()
                    .parse("pq", "SELECT $1::int * 3")
                    .sync()
                    .query("PREPARE by_sql AS SELECT 7::int"),
                &[
                    "ParseComplete",
                    "ReadyForQuery I",
                    "CommandComplete PREPARE",
                    "ReadyForQuery I",
                ],
            ),
            step(
                "EXECUTE of the protocol statement, Bind of the SQL one",
                Batch::new()
                    .query("EXECUTE pq(5)")
                    .run("by_sql", &[])
                    .sync(),
                &[
                    "RowDescription ?column?",
                    "DataRow 15",
                    "CommandComplete SELECT 1",
                    "ReadyForQuery I",
                    "BindComplete",
                    "DataRow 7",
                    "CommandComplete SELECT 1",
                    "ReadyForQuery I",
                ],
            ),
            step(
                "PREPARE of a protocol name, Parse of a SQL name",
                Batch::new()
                    .query("PREPARE pq AS SELECT 1")
                    .parse("by_sql", "SELECT 2")
                    .sync(),
                &[
                    "Error 42P05 prepared statement \"pq\" already exists",
                    "ReadyForQuery I",
                    "Error 42P05 prepared statement \"by_sql\" already exists",
                    "ReadyForQuery I",
                ],
            ),
            step(
                "errors inside a transaction abort it; then 25P02",
                Batch::new()
                    .query("BEGIN")
                    .query("EXECUTE nope")
                    .query("EXECUTE pq(1)")
                    .query("DEALLOCATE pq")
                    .query("ROLLBACK"),
                &[
                    "CommandComplete BEGIN",
                    "ReadyForQuery T",
                    "Error 26000 prepared statement \"nope\" does not exist",
                    "ReadyForQuery E",
                    "Error 25P02 current transaction is aborted, commands ignored until end of transaction block",
                    "ReadyForQuery E",
                    "Error 25P02 current transaction is aborted, commands ignored until end of transaction block",
                    "ReadyForQuery E",
                    "CommandComplete ROLLBACK",
                    "ReadyForQuery I",
                ],
            ),
            step(
                "DEALLOCATE of a protocol name, then Bind of it",
                Batch::new()
                    .query("DEALLOCATE pq")
                    .run("pq", &["1"])
                    .sync()
                    .query("DEALLOCATE ALL")
                    .query("EXECUTE by_sql"),
                &[
                    "CommandComplete DEALLOCATE",
                    "ReadyForQuery I",
                    "Error 26000 prepared statement \"pq\" does not exist",
                    "ReadyForQuery I",
                    "CommandComplete DEALLOCATE ALL",
                    "ReadyForQuery I",
                    "Error 26000 prepared statement \"by_sql\" does not exist",
                    "ReadyForQuery I",
                ],
            ),
        ],
    )
    .await;
}
