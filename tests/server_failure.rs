//! Server connections that die: one backend terminated, or the whole server stopped and started.

mod common;

use std::time::{Duration, Instant};

use common::*;
use sluice::config::PoolMode;

#[tokio::test]
async fn terminated_backend_fails_only_the_current_transaction() {
    backend_terminated_mid_transaction(false).await;
}

#[tokio::test]
async fn terminated_backend_fails_only_the_current_transaction_after_it_is_gone() {
    // The same, once the server's FATAL and EOF are sure to be waiting at the pooler before the
    // client's next statement (the test above races them).
    backend_terminated_mid_transaction(true).await;
}

async fn backend_terminated_mid_transaction(wait_for_exit: bool) {
    let pg = PgCluster::start();
    let su = pg.superuser(APP_DB).await;
    let pooler = Sluice::start(config_for(&pg, 2, PoolMode::Transaction));
    let c = pooler.connect_app().await;
    let bystander = pooler.connect_app().await;
    c.batch_execute("CREATE TABLE t(x int)").await.unwrap();

    c.batch_execute("BEGIN; INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    let pid = backend_pid(&c).await;
    terminate_backend(&su, pid).await;
    if wait_for_exit {
        wait_backend_gone(&su, pid).await;
    }

    let started = Instant::now();
    let e = within(
        STEP,
        "query on the killed connection",
        c.batch_execute("INSERT INTO t VALUES (2)"),
    )
    .await
    .expect_err("the transaction's server is gone");
    eprintln!(
        "client saw: {} after {:?}",
        describe_error(&e),
        started.elapsed()
    );

    // The client ends its failed transaction as any client would after an error: ROLLBACK. That
    // must succeed even though the transaction died with its server.
    within(STEP, "ROLLBACK", c.batch_execute("ROLLBACK"))
        .await
        .expect("ROLLBACK after the server died");
    // The same client's next transaction runs on another server connection.
    within(
        STEP,
        "next transaction",
        c.batch_execute("BEGIN; INSERT INTO t VALUES (3); COMMIT"),
    )
    .await
    .expect("the client carries on after its server died");
    assert_ne!(backend_pid(&c).await, pid);
    assert_eq!(
        simple_scalar(&bystander, "SELECT string_agg(x::text, ',') FROM t")
            .await
            .as_deref(),
        Some("3")
    );
}

#[tokio::test]
async fn terminated_idle_server_connection_is_not_handed_out() {
    // A server connection that dies while idle in the pool is noticed before a client gets it.
    let pg = PgCluster::start();
    let su = pg.superuser(APP_DB).await;
    let pooler = Sluice::start(config_for(&pg, 1, PoolMode::Transaction));
    let c = pooler.connect_app().await;
    let pid = backend_pid(&c).await;
    terminate_backend(&su, pid).await;
    wait_backend_gone(&su, pid).await;
    let new_pid: i32 = within(
        STEP,
        "query after the idle server died",
        c.simple_query("SELECT pg_backend_pid()"),
    )
    .await
    .unwrap_or_else(|e| {
        panic!(
            "an idle server's death must not reach the client: {}",
            describe_error(&e)
        )
    })
    .iter()
    .find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(|v| v.parse().unwrap()),
        _ => None,
    })
    .unwrap();
    assert_ne!(new_pid, pid);
}

#[tokio::test]
async fn server_restart_gives_clear_errors_then_service_resumes() {
    let mut pg = PgCluster::start();
    let pooler = Sluice::start(config_for(&pg, 2, PoolMode::Transaction));
    let c = pooler.connect_app().await;
    assert_eq!(simple_scalar(&c, "SELECT 1").await.as_deref(), Some("1"));

    pg.stop();

    // Queries fail promptly (server_connect_timeout is 3s in the test config), never hang.
    let t = Instant::now();
    let e = within(
        Duration::from_secs(20),
        "query while PostgreSQL is down",
        c.simple_query("SELECT 1"),
    )
    .await
    .expect_err("PostgreSQL is down");
    eprintln!(
        "existing client saw: {} after {:?}",
        describe_error(&e),
        t.elapsed()
    );
    let t = Instant::now();
    let fresh = within(
        Duration::from_secs(20),
        "new client while PostgreSQL is down",
        async {
            match pooler.try_connect(APP_DB, APP_USER, APP_PASSWORD).await {
                Ok(client) => client.simple_query("SELECT 1").await.map(|_| ()),
                Err(e) => Err(e),
            }
        },
    )
    .await;
    let e = fresh.expect_err("PostgreSQL is down");
    eprintln!(
        "new client saw: {} after {:?}",
        describe_error(&e),
        t.elapsed()
    );

    pg.start_again();

    // New clients get served again (allowing for server_login_retry), without restarting sluice.
    poll_until(
        Duration::from_secs(30),
        "a new client served after the restart",
        || async {
            match pooler.try_connect(APP_DB, APP_USER, APP_PASSWORD).await {
                Ok(client) => client.simple_query("SELECT 1").await.is_ok(),
                Err(_) => false,
            }
        },
    )
    .await;
    // And the client that saw the outage, if the pooler kept it, works too.
    if !c.is_closed() {
        poll_until(
            Duration::from_secs(30),
            "the old client served after the restart",
            || async { c.simple_query("SELECT 1").await.is_ok() },
        )
        .await;
    }
}
