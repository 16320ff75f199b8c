//! Fault suite, clients that vanish: in a transaction holding a row lock, in the middle of
//! COPY FROM STDIN, in the middle of a long query's result. Each time the server connection is
//! cancelled and closed, never returned: the lock is released, the query is gone from
//! `pg_stat_activity` at once (not when it would have finished), the pool's next client gets a
//! clean connection, and PostgreSQL never holds more of the pool's backends than its size.

mod common;

use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::*;
use postgres_protocol::message::frontend;
use sluice::config::PoolMode;
use tokio_postgres::Client;

const POOL: usize = 2;

/// How soon a vanished client's backend must be gone: its cancel and close take milliseconds;
/// the queries below would run for minutes.
const PROMPTLY: Duration = Duration::from_secs(5);

/// The backends of `app`, as (pid, state, query), except `su`'s own.
async fn app_backends(su: &Client) -> Vec<(i32, String, String)> {
    su.query(
        "SELECT pid, coalesce(state, ''), query FROM pg_stat_activity \
         WHERE usename = 'app' AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
        &[],
    )
    .await
    .expect("read pg_stat_activity")
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect()
}

/// Waits until backend `pid` has left PostgreSQL, within [`PROMPTLY`]; returns how long it took.
async fn gone_promptly(su: &Client, pid: i32, what: &str) -> Duration {
    let t = Instant::now();
    poll_until(PROMPTLY, what, || async {
        !app_backends(su).await.iter().any(|(p, _, _)| *p == pid)
    })
    .await;
    t.elapsed()
}

/// After a vanishing: the pool serves a new client on a clean connection (outside any
/// transaction, nothing left of the vanished client), and PostgreSQL holds at most `POOL` of its
/// backends, none of them busy or inside a transaction once the client is done.
async fn pool_is_clean(pooler: &Sluice, su: &Client) {
    let c = pooler.connect_app().await;
    for _ in 0..2 * POOL {
        let rows = within(
            STEP,
            "a query after the vanishing",
            c.simple_query("SELECT now() = statement_timestamp()"),
        )
        .await
        .expect("the pool serves after a client vanished");
        let outside_tx = rows.iter().find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        });
        // now() is the transaction's start: equal to the statement's only outside a transaction.
        assert_eq!(
            outside_tx.as_deref(),
            Some("t"),
            "a connection came back inside a transaction"
        );
    }
    drop(c);
    poll_until(STEP, "the pool's backends to settle", || async {
        let b = app_backends(su).await;
        b.len() <= POOL && b.iter().all(|(_, state, _)| state == "idle")
    })
    .await;
}

fn pooler_for(pg: &PgCluster) -> Sluice {
    Sluice::start(config_for(pg, POOL, PoolMode::Transaction))
}

/// The first backend of `app` that `which` picks, polling every 20 ms up to [`STEP`].
async fn find_backend(su: &Client, what: &str, which: impl Fn(&str, &str) -> bool) -> i32 {
    let deadline = Instant::now() + STEP;
    loop {
        let found = app_backends(su)
            .await
            .into_iter()
            .find(|(_, state, q)| which(state, q));
        if let Some((pid, _, _)) = found {
            return pid;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not found within {STEP:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The backend running the query of `app` whose text contains `marker`.
async fn backend_running(su: &Client, marker: &str) -> i32 {
    find_backend(su, marker, |state, q| {
        state == "active" && q.contains(marker)
    })
    .await
}

#[tokio::test]
async fn client_vanishing_in_a_transaction_releases_its_row_lock() {
    let pg = PgCluster::start();
    let su = pg.superuser(APP_DB).await;
    let pooler = pooler_for(&pg);
    let setup = pooler.connect_app().await;
    setup
        .batch_execute(
            "CREATE TABLE acct(id int PRIMARY KEY, v int); INSERT INTO acct VALUES (1, 0)",
        )
        .await
        .unwrap();

    let mut raw = RawConn::connect_app(pooler.addr()).await;
    raw.simple_query("BEGIN").await.unwrap();
    raw.simple_query("UPDATE acct SET v = 1 WHERE id = 1 /* vanishing */")
        .await
        .unwrap();
    let pid = poll_pid_in_transaction(&su).await;
    drop(raw);

    let took = gone_promptly(&su, pid, "the vanished client's backend to go").await;
    // The row is free: another client updates it without waiting, and the vanished one's
    // update never happened.
    let t = Instant::now();
    within(
        PROMPTLY,
        "an update of the row the vanished client had locked",
        setup.batch_execute(
            "SET lock_timeout = '3s'; UPDATE acct SET v = v + 10 WHERE id = 1; RESET lock_timeout",
        ),
    )
    .await
    .expect("the row lock was released");
    assert_eq!(
        simple_scalar(&setup, "SELECT v FROM acct WHERE id = 1")
            .await
            .as_deref(),
        Some("10"),
        "the vanished client's transaction was rolled back"
    );
    eprintln!(
        "backend gone {took:?} after the client vanished; row updated in {:?}",
        t.elapsed()
    );
    drop(setup);
    pool_is_clean(&pooler, &su).await;
}

/// The backend of `app` that is idle in a transaction.
async fn poll_pid_in_transaction(su: &Client) -> i32 {
    find_backend(su, "a backend idle in transaction", |state, _| {
        state == "idle in transaction"
    })
    .await
}

#[tokio::test]
async fn client_vanishing_in_copy_from_stdin_aborts_the_copy() {
    let pg = PgCluster::start();
    let su = pg.superuser(APP_DB).await;
    let pooler = pooler_for(&pg);
    let setup = pooler.connect_app().await;
    setup
        .batch_execute("CREATE TABLE sink(id int, note text)")
        .await
        .unwrap();

    let mut raw = RawConn::connect_app(pooler.addr()).await;
    raw.send_query("COPY sink FROM STDIN /* vanishing copy */")
        .await
        .unwrap();
    let (tag, _) = raw.recv().await.unwrap();
    assert_eq!(tag, b'G', "CopyInResponse");
    let mut out = BytesMut::new();
    for i in 0..1000 {
        frontend::CopyData::new(format!("{i}\trow {i}\n").as_bytes())
            .unwrap()
            .write(&mut out);
    }
    raw.send(&out).await.unwrap();
    let pid = backend_running(&su, "vanishing copy").await;
    drop(raw);

    let took = gone_promptly(&su, pid, "the COPY's backend to go").await;
    assert_eq!(
        simple_scalar(&setup, "SELECT count(*) FROM sink")
            .await
            .as_deref(),
        Some("0"),
        "rows of an unfinished COPY were stored"
    );
    // Nothing holds a lock on the table any more.
    within(
        PROMPTLY,
        "an exclusive lock on the table",
        setup.batch_execute(
            "BEGIN; SET LOCAL lock_timeout = '3s'; LOCK TABLE sink IN ACCESS EXCLUSIVE MODE; COMMIT",
        ),
    )
    .await
    .expect("the COPY's lock was released");
    eprintln!("COPY backend gone {took:?} after the client vanished");
    drop(setup);
    pool_is_clean(&pooler, &su).await;
}

#[tokio::test]
async fn client_vanishing_mid_result_gets_its_query_cancelled() {
    let pg = PgCluster::start();
    let su = pg.superuser(APP_DB).await;
    let pooler = pooler_for(&pg);

    // Rows come at once until row 3000, where the query sleeps five minutes: the client has had
    // part of the result when it goes.
    let mut raw = RawConn::connect_app(pooler.addr()).await;
    raw.send_query(
        "SELECT g, CASE WHEN g = 3000 THEN pg_sleep(300) END /* vanishing result */ \
         FROM generate_series(1, 4000) g",
    )
    .await
    .unwrap();
    let mut rows = 0;
    while rows < 100 {
        let (tag, _) = raw.recv().await.unwrap();
        assert_ne!(tag, b'E', "the query failed");
        if tag == b'D' {
            rows += 1;
        }
    }
    let pid = backend_running(&su, "vanishing result").await;
    // While the client is there, its server connection is the only busy one.
    assert!(app_backends(&su).await.len() <= POOL);
    drop(raw);

    let took = gone_promptly(&su, pid, "the vanished client's query to be cancelled").await;
    eprintln!("query backend gone {took:?} after the client vanished (it would have run 300 s)");
    assert!(
        pg.log_tail(200)
            .contains("canceling statement due to user request"),
        "PostgreSQL did not log a cancel:\n{}",
        pg.log_tail(30)
    );
    pool_is_clean(&pooler, &su).await;
}
