//! CancelRequest through the pooler: it stops the right query and nothing else.

mod common;

use std::time::{Duration, Instant};

use common::*;
use sluice::config::PoolMode;
use tokio_postgres::NoTls;

/// Waits until PostgreSQL shows `query` running.
async fn wait_running(su: &tokio_postgres::Client, query: &str) {
    poll_until(STEP, &format!("{query} to be running"), || async {
        let n: i64 = su
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE query = $1 AND state = 'active'",
                &[&query],
            )
            .await
            .unwrap()
            .get(0);
        n > 0
    })
    .await;
}

#[tokio::test]
async fn cancel_stops_a_running_query_within_a_second() {
    let pg = PgCluster::start();
    let su = pg.superuser(APP_DB).await;
    let pooler = Sluice::start(config_for(&pg, 2, PoolMode::Transaction));
    let client = pooler.connect_app().await;
    let token = client.cancel_token();

    let sleeping = tokio::spawn(async move {
        let r = client.simple_query("SELECT pg_sleep(30)").await.map(|_| ());
        (client, r)
    });
    wait_running(&su, "SELECT pg_sleep(30)").await;
    let sent = Instant::now();
    within(STEP, "cancel_query", token.cancel_query(NoTls))
        .await
        .expect("cancel request accepted");
    let (client, r) = within(
        Duration::from_secs(5),
        "the cancelled query to end",
        sleeping,
    )
    .await
    .unwrap();
    let took = sent.elapsed();
    let e = r.expect_err("the query must fail once cancelled");
    assert_eq!(sqlstate(&e), Some("57014"), "{}", describe_error(&e));
    assert!(took < Duration::from_secs(1), "cancel took {took:?}");

    // The client carries on.
    assert_eq!(
        simple_scalar(&client, "SELECT 'next'").await.as_deref(),
        Some("next")
    );
}

#[tokio::test]
async fn cancel_reaches_only_the_query_of_the_cancelling_client() {
    let pg = PgCluster::start();
    let su = pg.superuser(APP_DB).await;
    let pooler = Sluice::start(config_for(&pg, 2, PoolMode::Transaction));
    let victim = pooler.connect_app().await;
    let bystander = pooler.connect_app().await;
    let token = victim.cancel_token();

    let v =
        tokio::spawn(async move { victim.simple_query("SELECT pg_sleep(30)").await.map(|_| ()) });
    let b = tokio::spawn(async move {
        bystander
            .simple_query("SELECT pg_sleep(2), 'bystander'")
            .await
            .map(|_| ())
    });
    wait_running(&su, "SELECT pg_sleep(30)").await;
    wait_running(&su, "SELECT pg_sleep(2), 'bystander'").await;
    token.cancel_query(NoTls).await.unwrap();
    let e = within(Duration::from_secs(5), "victim", v)
        .await
        .unwrap()
        .expect_err("victim cancelled");
    assert_eq!(sqlstate(&e), Some("57014"), "{}", describe_error(&e));
    within(Duration::from_secs(10), "bystander", b)
        .await
        .unwrap()
        .expect("the bystander's query must not be cancelled");
}

#[tokio::test]
async fn cancel_from_an_idle_client_does_not_hit_the_server_it_used_before() {
    // Pool of 1: the idle client's last server now serves someone else.
    let pg = PgCluster::start();
    let su = pg.superuser(APP_DB).await;
    let pooler = Sluice::start(config_for(&pg, 1, PoolMode::Transaction));
    let idle = pooler.connect_app().await;
    assert_eq!(simple_scalar(&idle, "SELECT 1").await.as_deref(), Some("1"));
    let busy = pooler.connect_app().await;
    let b = tokio::spawn(async move {
        busy.simple_query("SELECT pg_sleep(1.5), 'busy'")
            .await
            .map(|_| ())
    });
    wait_running(&su, "SELECT pg_sleep(1.5), 'busy'").await;
    within(
        STEP,
        "cancel_query",
        idle.cancel_token().cancel_query(NoTls),
    )
    .await
    .unwrap();
    within(Duration::from_secs(10), "busy", b)
        .await
        .unwrap()
        .expect("another client's cancel must not stop this query");
    assert_eq!(simple_scalar(&idle, "SELECT 2").await.as_deref(), Some("2"));
}

#[tokio::test]
async fn cancel_with_a_wrong_key_does_nothing() {
    // A raw session, to know the BackendKeyData the pooler handed out.
    let pg = PgCluster::start();
    let su = pg.superuser(APP_DB).await;
    let pooler = Sluice::start(config_for(&pg, 2, PoolMode::Transaction));
    let mut raw = RawConn::connect_app(pooler.addr()).await;
    let (pid, key) = raw.backend_key.expect("the pooler sends BackendKeyData");

    let query = "SELECT pg_sleep(1.5), 'wrong key'";
    raw.send_query(query).await.unwrap();
    wait_running(&su, query).await;
    send_cancel_request(pooler.addr(), pid, key.wrapping_add(1)).await;
    send_cancel_request(pooler.addr(), pid.wrapping_add(1), key).await;
    let tags = within(Duration::from_secs(10), "the query", raw.finish_query())
        .await
        .expect("wrong keys must not cancel");
    assert_eq!(tags, vec!["SELECT 1".to_owned()]);

    // The right key does cancel: the wrong-key result above was not luck.
    let query = "SELECT pg_sleep(30), 'right key'";
    raw.send_query(query).await.unwrap();
    wait_running(&su, query).await;
    send_cancel_request(pooler.addr(), pid, key).await;
    match within(
        Duration::from_secs(5),
        "the cancelled query",
        raw.finish_query(),
    )
    .await
    {
        Err(RawError::Server(f)) => assert_eq!(f.code(), Some("57014"), "{f:?}"),
        other => panic!("expected 57014, got {other:?}"),
    }
    raw.terminate().await;
}
