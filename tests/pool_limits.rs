//! Waiting for a server connection is bounded by query_wait_timeout, and max_client_conn caps
//! the clients.

mod common;

use std::time::{Duration, Instant};

use common::*;
use sluice::config::PoolMode;

/// SQLSTATEs a pooler may use for "no server connection in time".
const WAIT_TIMEOUT_CODES: [&str; 2] = ["57014", "53300"];

#[tokio::test]
async fn query_wait_timeout_fails_the_waiter_and_the_waiter_recovers() {
    let pg = PgCluster::start();
    let config = set_config(
        &config_for(&pg, 1, PoolMode::Transaction),
        "pooler.query_wait_timeout",
        "500ms",
    );
    let pooler = Sluice::start(config);
    let holder = pooler.connect_app().await;
    let waiter = pooler.connect_app().await;
    holder
        .batch_execute("CREATE TABLE t(who text)")
        .await
        .unwrap();

    // The holder keeps the only server connection inside an open transaction.
    holder
        .batch_execute("BEGIN; INSERT INTO t VALUES ('holder')")
        .await
        .unwrap();
    let t = Instant::now();
    let e = within(
        Duration::from_secs(10),
        "the waiter's query",
        waiter.batch_execute("INSERT INTO t VALUES ('waiter')"),
    )
    .await
    .expect_err("no server connection within query_wait_timeout");
    let waited = t.elapsed();
    let code =
        sqlstate(&e).unwrap_or_else(|| panic!("the wait timeout error carries no SQLSTATE: {e:?}"));
    eprintln!(
        "waiter got SQLSTATE {code} after {waited:?}: {}",
        describe_error(&e)
    );
    assert!(
        WAIT_TIMEOUT_CODES.contains(&code),
        "SQLSTATE {code}: {}",
        describe_error(&e)
    );
    assert!(
        waited >= Duration::from_millis(400),
        "failed after {waited:?}, before query_wait_timeout (500ms)"
    );
    assert!(
        waited < Duration::from_secs(5),
        "failed only after {waited:?}"
    );

    holder.batch_execute("COMMIT").await.unwrap();
    // The timed-out query never ran later on, and the waiter's next query works.
    within(
        STEP,
        "the waiter's next query",
        waiter.batch_execute("INSERT INTO t VALUES ('waiter again')"),
    )
    .await
    .expect("the waiter's next query after the holder committed");
    let direct = pg.connect_direct(APP_DB, APP_USER, APP_PASSWORD).await;
    let rows: Vec<String> = direct
        .query("SELECT who FROM t ORDER BY who", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(rows, vec!["holder".to_owned(), "waiter again".to_owned()]);
}

#[tokio::test]
async fn waiters_are_served_in_turn_within_the_timeout() {
    // 20 clients, pool of 1, each transaction short: nobody times out (10s), all get through.
    let pg = PgCluster::start();
    let pooler = Sluice::start(config_for(&pg, 1, PoolMode::Transaction));
    let setup = pooler.connect_app().await;
    setup
        .batch_execute("CREATE TABLE hits(client int, n int)")
        .await
        .unwrap();
    let mut clients = Vec::new();
    for _ in 0..20 {
        clients.push(pooler.connect_app().await);
    }
    let work = clients.iter().enumerate().map(|(i, c)| async move {
        for n in 0..10 {
            c.batch_execute(&format!(
                "BEGIN; INSERT INTO hits VALUES ({i}, {n}); SELECT pg_sleep(0.001); COMMIT"
            ))
            .await
            .unwrap_or_else(|e| panic!("client {i}: {}", describe_error(&e)));
        }
    });
    within(
        Duration::from_secs(60),
        "20 clients through a pool of 1",
        futures_util::future::join_all(work),
    )
    .await;
    assert_eq!(
        simple_scalar(&setup, "SELECT count(*) FROM hits")
            .await
            .as_deref(),
        Some("200")
    );
}

#[tokio::test]
async fn max_client_conn_refuses_the_client_over_the_limit() {
    let pg = PgCluster::start();
    let config = set_config(
        &config_for(&pg, 2, PoolMode::Transaction),
        "pooler.max_client_conn",
        3,
    );
    let pooler = Sluice::start(config);
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(pooler.connect_app().await);
    }
    let e = pooler
        .try_connect(APP_DB, APP_USER, APP_PASSWORD)
        .await
        .expect_err("a fourth client is over max_client_conn");
    assert_eq!(sqlstate(&e), Some("53300"), "{}", describe_error(&e));
    for c in &held {
        assert_eq!(simple_scalar(c, "SELECT 1").await.as_deref(), Some("1"));
    }
    // A client leaves; a new one gets its place.
    drop(held.pop());
    poll_until(STEP, "a new client after one left", || async {
        match pooler.try_connect(APP_DB, APP_USER, APP_PASSWORD).await {
            Ok(c) => c.simple_query("SELECT 1").await.is_ok(),
            Err(_) => false,
        }
    })
    .await;
}
