//! The wire protocol through a transaction pooler: simple and extended queries, multi-statement
//! strings, empty queries, notices, errors inside transactions, pipelining, large results, and
//! per-client session parameters.

mod common;

use std::time::Duration;

use common::*;
use futures_util::{StreamExt, TryStreamExt, future};
use sluice::config::PoolMode;
use tokio_postgres::SimpleQueryMessage;
use tokio_postgres::types::Type;

fn rows(msgs: &[SimpleQueryMessage]) -> Vec<Vec<Option<String>>> {
    msgs.iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect())
            }
            _ => None,
        })
        .collect()
}

fn command_tags(msgs: &[SimpleQueryMessage]) -> Vec<u64> {
    msgs.iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::CommandComplete(n) => Some(*n),
            _ => None,
        })
        .collect()
}

fn pooler_for(pg: &PgCluster, pool_size: usize) -> Sluice {
    Sluice::start(config_for(pg, pool_size, PoolMode::Transaction))
}

#[tokio::test]
async fn simple_and_multi_statement_queries() {
    let pg = PgCluster::start();
    let pooler = pooler_for(&pg, 2);
    let c = pooler.connect_app().await;
    let msgs = within(
        STEP,
        "multi-statement",
        c.simple_query(
            "CREATE TABLE t(x int, y text); INSERT INTO t VALUES (1, 'a'), (2, NULL), (3, 'c'); \
             SELECT x, y FROM t ORDER BY x; SELECT sum(x) FROM t",
        ),
    )
    .await
    .unwrap();
    assert_eq!(
        rows(&msgs),
        vec![
            vec![Some("1".into()), Some("a".into())],
            vec![Some("2".into()), None],
            vec![Some("3".into()), Some("c".into())],
            vec![Some("6".into())],
        ]
    );
    assert_eq!(command_tags(&msgs), vec![0, 3, 3, 1]);

    // An error in the middle stops the string and rolls back its implicit transaction.
    let e = within(
        STEP,
        "failing string",
        c.simple_query("INSERT INTO t VALUES (4, 'd'); SELECT 1/0; INSERT INTO t VALUES (5, 'e')"),
    )
    .await
    .expect_err("division by zero");
    assert_eq!(sqlstate(&e), Some("22012"), "{}", describe_error(&e));
    assert_eq!(
        simple_scalar(&c, "SELECT count(*) FROM t").await.as_deref(),
        Some("3")
    );
}

#[tokio::test]
async fn extended_queries_with_parameters_and_types() {
    let pg = PgCluster::start();
    let pooler = pooler_for(&pg, 2);
    let mut c = pooler.connect_app().await;
    // Unnamed statements: each query is Parse/Bind/Describe/Execute/Sync in one go.
    let row = within(
        STEP,
        "query_typed",
        c.query_typed_one(
            "SELECT $1::int4 + $2::int4, upper($3::text), $4::bytea, $5::float8 * 2",
            &[
                (&40i32, Type::INT4),
                (&2i32, Type::INT4),
                (&"sluice", Type::TEXT),
                (&vec![0u8, 255, 7], Type::BYTEA),
                (&1.25f64, Type::FLOAT8),
            ],
        ),
    )
    .await
    .unwrap();
    assert_eq!(row.get::<_, i32>(0), 42);
    assert_eq!(row.get::<_, String>(1), "SLUICE");
    assert_eq!(row.get::<_, Vec<u8>>(2), vec![0u8, 255, 7]);
    assert_eq!(row.get::<_, f64>(3), 2.5);
    let none = c
        .query_typed_opt("SELECT 1 WHERE false", &[])
        .await
        .unwrap();
    assert!(none.is_none());

    // Named statements and a portal fetched in pieces, inside a transaction.
    let tx = c.transaction().await.unwrap();
    let stmt = tx
        .prepare("SELECT g FROM generate_series(1, $1::int) g")
        .await
        .unwrap();
    let portal = tx.bind(&stmt, &[&1000i32]).await.unwrap();
    let mut total = 0i64;
    let mut batches = 0;
    loop {
        let batch = within(STEP, "portal batch", tx.query_portal(&portal, 300))
            .await
            .unwrap();
        if batch.is_empty() {
            break;
        }
        batches += 1;
        total += batch
            .iter()
            .map(|r| i64::from(r.get::<_, i32>(0)))
            .sum::<i64>();
    }
    assert_eq!(total, 500_500);
    assert_eq!(batches, 4);
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn empty_queries() {
    let pg = PgCluster::start();
    let pooler = pooler_for(&pg, 1);
    let c = pooler.connect_app().await;
    let msgs = within(STEP, "empty simple query", c.simple_query(""))
        .await
        .unwrap();
    assert!(rows(&msgs).is_empty());
    within(STEP, "blank simple query", c.batch_execute("  ;  "))
        .await
        .unwrap();
    let n = within(STEP, "empty extended query", c.execute_typed("", &[]))
        .await
        .unwrap();
    assert_eq!(n, 0);
    assert_eq!(
        simple_scalar(&c, "SELECT 'after empty'").await.as_deref(),
        Some("after empty")
    );
}

#[tokio::test]
async fn notices_reach_the_client() {
    let pg = PgCluster::start();
    let pooler = pooler_for(&pg, 1);
    let (c, mut notices) = pooler
        .connect_with_notices(&pooler.pg_config(APP_DB, APP_USER, APP_PASSWORD))
        .await;
    within(
        STEP,
        "DO block",
        c.batch_execute(
            "DO $$BEGIN RAISE NOTICE 'hello from %', 'sluice'; RAISE WARNING 'careful'; END$$",
        ),
    )
    .await
    .unwrap();
    // The connection task forwards notices as it reads them, before the query's ReadyForQuery.
    let first = within(STEP, "first notice", notices.recv())
        .await
        .expect("a notice");
    assert_eq!(first.message(), "hello from sluice");
    assert_eq!(first.severity(), "NOTICE");
    let second = within(STEP, "second notice", notices.recv())
        .await
        .expect("a warning");
    assert_eq!(second.message(), "careful");
    assert_eq!(second.severity(), "WARNING");

    let out = pooler
        .psql(&["-c", "DO $$BEGIN RAISE NOTICE 'psql hears %', 42; END$$"])
        .await;
    assert!(out.status.success(), "{}", describe_output(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("NOTICE:  psql hears 42"),
        "{}",
        describe_output(&out)
    );
}

#[tokio::test]
async fn error_inside_a_transaction_then_rollback_then_a_new_transaction() {
    let pg = PgCluster::start();
    let pooler = pooler_for(&pg, 1);
    let c = pooler.connect_app().await;
    let other = pooler.connect_app().await;
    c.batch_execute("CREATE TABLE t(x int)").await.unwrap();

    c.batch_execute("BEGIN; INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    // `other` needs the only server connection, which c holds until its transaction ends.
    let waiting = tokio::spawn(async move {
        let seen = simple_scalar(&other, "SELECT count(*) FROM t").await;
        (other, seen)
    });
    let e = within(STEP, "error in tx", c.batch_execute("SELECT 1/0"))
        .await
        .expect_err("division by zero");
    assert_eq!(sqlstate(&e), Some("22012"), "{}", describe_error(&e));
    let e = within(STEP, "statement in failed tx", c.batch_execute("SELECT 1"))
        .await
        .expect_err("aborted transaction");
    assert_eq!(sqlstate(&e), Some("25P02"), "{}", describe_error(&e));
    within(STEP, "ROLLBACK", c.batch_execute("ROLLBACK"))
        .await
        .unwrap();

    // Only now does `other` get the server: outside c's transaction, which left nothing.
    let (other, seen) = within(STEP, "the other client's query", waiting)
        .await
        .unwrap();
    assert_eq!(
        seen.as_deref(),
        Some("0"),
        "the other client ran inside c's transaction"
    );
    c.batch_execute("BEGIN; INSERT INTO t VALUES (2); COMMIT")
        .await
        .unwrap();
    assert_eq!(
        simple_scalar(&other, "SELECT string_agg(x::text, ',') FROM t")
            .await
            .as_deref(),
        Some("2")
    );

    // An extended-protocol error inside a transaction: same story.
    let mut c = c;
    let tx = c.transaction().await.unwrap();
    let e = tx
        .query_typed("SELECT 1/$1::int", &[(&0i32, Type::INT4)])
        .await
        .expect_err("division by zero");
    assert_eq!(sqlstate(&e), Some("22012"), "{}", describe_error(&e));
    let e = tx
        .query_typed("SELECT 1", &[])
        .await
        .expect_err("aborted transaction");
    assert_eq!(sqlstate(&e), Some("25P02"), "{}", describe_error(&e));
    within(STEP, "rollback", tx.rollback()).await.unwrap();
    assert_eq!(
        simple_scalar(&c, "SELECT 'fine'").await.as_deref(),
        Some("fine")
    );
}

#[tokio::test]
async fn pipelined_queries_get_their_own_answers() {
    let pg = PgCluster::start();
    let pooler = pooler_for(&pg, 2);
    let c = pooler.connect_app().await;
    let other = pooler.connect_app().await;

    // tokio-postgres writes all of these before reading any answer: one Sync each.
    let queries = (0..200i32).map(|i| {
        let c = &c;
        async move {
            if i == 57 {
                c.query_typed("SELECT 1/0", &[]).await.map(|_| -1)
            } else {
                c.query_typed_one("SELECT $1::int4 * 3", &[(&i, Type::INT4)])
                    .await
                    .map(|r| r.get::<_, i32>(0))
            }
        }
    });
    // Another client's traffic goes on at the same time through the same small pool.
    let background = async {
        for i in 0..50i32 {
            let v: i32 = other
                .query_typed_one("SELECT $1::int4 + 1", &[(&i, Type::INT4)])
                .await
                .unwrap()
                .get(0);
            assert_eq!(v, i + 1);
        }
    };
    let (results, ()) = within(
        STEP * 2,
        "pipelined queries",
        future::join(future::join_all(queries), background),
    )
    .await;
    for (i, r) in results.into_iter().enumerate() {
        if i == 57 {
            let e = r.expect_err("query 57 divides by zero");
            assert_eq!(sqlstate(&e), Some("22012"), "{}", describe_error(&e));
        } else {
            assert_eq!(
                r.unwrap_or_else(|e| panic!("query {i}: {}", describe_error(&e))),
                i as i32 * 3,
                "query {i}"
            );
        }
    }

    // Pipelined inside a transaction, with named statements.
    let mut c = c;
    let tx = c.transaction().await.unwrap();
    tx.batch_execute("CREATE TEMP TABLE p(x int) ON COMMIT DROP")
        .await
        .unwrap();
    let insert = tx.prepare("INSERT INTO p VALUES ($1)").await.unwrap();
    let inserts = (0..100i32).map(|i| {
        let (tx, insert) = (&tx, &insert);
        async move { tx.execute(insert, &[&i]).await }
    });
    for r in within(STEP, "pipelined inserts", future::join_all(inserts)).await {
        assert_eq!(r.unwrap(), 1);
    }
    let sum: i64 = tx
        .query_one("SELECT sum(x) FROM p", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(sum, (0..100).sum::<i64>());
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn large_results_stream_through() {
    let pg = PgCluster::start();
    let pooler = pooler_for(&pg, 1);
    let c = pooler.connect_app().await;
    const N: i64 = 200_000;

    let stream = within(
        STEP,
        "large result",
        c.query_typed_raw(
            "SELECT g::int8, repeat('x', 100) FROM generate_series(1, 200000) g",
            Vec::<(i32, Type)>::new(),
        ),
    )
    .await
    .unwrap();
    let (count, sum, width) = within(
        Duration::from_secs(120),
        "200k rows",
        stream.try_fold((0i64, 0i64, 0usize), |(n, s, w), row| async move {
            Ok((
                n + 1,
                s + row.get::<_, i64>(0),
                w.max(row.get::<_, &str>(1).len()),
            ))
        }),
    )
    .await
    .unwrap();
    assert_eq!((count, sum, width), (N, N * (N + 1) / 2, 100));

    // The same through the simple protocol, read as it arrives.
    let stream = c
        .simple_query_raw("SELECT g, md5(g::text) FROM generate_series(1, 200000) g")
        .await
        .unwrap();
    let n = within(
        Duration::from_secs(120),
        "200k simple rows",
        stream
            .filter(|m| future::ready(matches!(m, Ok(SimpleQueryMessage::Row(_)))))
            .count(),
    )
    .await;
    assert_eq!(n as i64, N);
    assert_eq!(
        simple_scalar(&c, "SELECT 'after'").await.as_deref(),
        Some("after")
    );
}

#[tokio::test]
async fn session_parameters_follow_their_client() {
    // One server connection for two clients: the pooler must carry each client's settings.
    let pg = PgCluster::start();
    let direct = pg.connect_direct(APP_DB, APP_USER, APP_PASSWORD).await;
    let default_tz = simple_scalar(&direct, "SHOW TimeZone").await.unwrap();
    assert_ne!(default_tz, "Asia/Tokyo");
    drop(direct);
    let pooler = pooler_for(&pg, 1);
    let (a, _) = pooler
        .connect_with_notices(
            pooler
                .pg_config(APP_DB, APP_USER, APP_PASSWORD)
                .application_name("client-a"),
        )
        .await;
    let (b, _) = pooler
        .connect_with_notices(
            pooler
                .pg_config(APP_DB, APP_USER, APP_PASSWORD)
                .application_name("client-b"),
        )
        .await;

    assert_eq!(
        simple_scalar(&a, "SHOW application_name").await.as_deref(),
        Some("client-a")
    );
    assert_eq!(
        simple_scalar(&b, "SHOW application_name").await.as_deref(),
        Some("client-b")
    );
    within(
        STEP,
        "SET TimeZone",
        a.batch_execute("SET TimeZone = 'Asia/Tokyo'"),
    )
    .await
    .unwrap();
    for _ in 0..3 {
        assert_eq!(
            simple_scalar(&b, "SHOW TimeZone").await.as_deref(),
            Some(default_tz.as_str()),
            "B sees A's TimeZone"
        );
        assert_eq!(
            simple_scalar(&a, "SHOW TimeZone").await.as_deref(),
            Some("Asia/Tokyo"),
            "A lost its TimeZone"
        );
        assert_eq!(
            simple_scalar(&b, "SHOW application_name").await.as_deref(),
            Some("client-b")
        );
        assert_eq!(
            simple_scalar(&a, "SHOW application_name").await.as_deref(),
            Some("client-a")
        );
    }
    // Through the extended protocol too, and visible in what the query computes.
    let row = a
        .query_typed_one(
            "SELECT to_char(timestamptz '2020-01-01 00:00:00+00', 'HH24')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "09");
    let row = b
        .query_typed_one("SELECT current_setting('TimeZone')", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), default_tz);

    // SET LOCAL ends with its transaction.
    b.batch_execute("BEGIN; SET LOCAL TimeZone = 'America/New_York'")
        .await
        .unwrap();
    assert_eq!(
        simple_scalar(&b, "SHOW TimeZone").await.as_deref(),
        Some("America/New_York")
    );
    b.batch_execute("COMMIT").await.unwrap();
    assert_eq!(
        simple_scalar(&b, "SHOW TimeZone").await.as_deref(),
        Some(default_tz.as_str())
    );
    assert_eq!(
        simple_scalar(&a, "SHOW TimeZone").await.as_deref(),
        Some("Asia/Tokyo")
    );
}
