//! Session settings in transaction mode: a client's `SET`, `RESET`, `DISCARD ALL` and
//! `set_config(…, false)` follow it from server connection to server connection, with
//! PostgreSQL's transaction semantics, and never reach another client (docs/session-state.md).
//! Answers are compared with a direct connection's where the exact text matters.

mod common;

use std::sync::Arc;

use common::*;
use sluice::config::PoolMode;
use tokio_postgres::{Client, SimpleQueryMessage};

const DEFAULT_PATH: &str = "\"$user\", public";

/// Every row's first column of a simple query (several statements allowed).
async fn simple_rows(client: &Client, sql: &str) -> Vec<String> {
    let msgs = within(STEP, sql, client.simple_query(sql))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {}", describe_error(&e)));
    msgs.into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap_or("<null>").to_owned()),
            _ => None,
        })
        .collect()
}

async fn show(client: &Client, name: &str) -> String {
    simple_scalar(client, &format!("SHOW {name}"))
        .await
        .expect("SHOW has a value")
}

/// `current_setting(name)` through the extended protocol.
async fn current(client: &Client, name: &str) -> String {
    within(
        STEP,
        "current_setting",
        client.query_one("SELECT current_setting($1)", &[&name]),
    )
    .await
    .unwrap_or_else(|e| panic!("current_setting({name}): {}", describe_error(&e)))
    .get(0)
}

async fn setup(pool: usize) -> (PgCluster, Sluice) {
    let pg = PgCluster::start();
    let su = pg.superuser(APP_DB).await;
    su.batch_execute(
        "CREATE SCHEMA a_schema AUTHORIZATION app; CREATE SCHEMA \"Other\" AUTHORIZATION app;
         CREATE ROLE r1; GRANT r1 TO app;",
    )
    .await
    .unwrap();
    let sluice = Sluice::start(config_for(&pg, pool, PoolMode::Transaction));
    (pg, sluice)
}

/// A sets search_path and statement_timeout; B, C and D, running alongside on the same pool,
/// never see them; A keeps them across 100 transactions.
async fn no_leak(pool: usize) {
    let (pg, sluice) = setup(pool).await;
    let direct = pg.connect_direct(APP_DB, APP_USER, APP_PASSWORD).await;
    direct
        .batch_execute("SET search_path = a_schema, public; SET statement_timeout = '4321ms'")
        .await
        .unwrap();
    let want_path = show(&direct, "search_path").await;
    let want_timeout = show(&direct, "statement_timeout").await;
    assert_eq!(want_path, "a_schema, public");

    let mut a = sluice.connect(APP_DB, APP_USER, APP_PASSWORD).await;
    a.batch_execute("SET search_path = a_schema, public; SET statement_timeout = '4321ms'")
        .await
        .unwrap();
    let start = Arc::new(tokio::sync::Barrier::new(4));
    let mut others = Vec::new();
    for name in ["B", "C", "D"] {
        let mut client = sluice.connect(APP_DB, APP_USER, APP_PASSWORD).await;
        let start = start.clone();
        others.push(tokio::spawn(async move {
            start.wait().await;
            for i in 0..40 {
                assert_eq!(
                    show(&client, "search_path").await,
                    DEFAULT_PATH,
                    "{name} #{i}"
                );
                assert_eq!(
                    current(&client, "statement_timeout").await,
                    "0",
                    "{name} #{i}"
                );
                let tx = client.transaction().await.unwrap();
                let path: String = tx
                    .query_one("SELECT current_setting('search_path')", &[])
                    .await
                    .unwrap()
                    .get(0);
                assert_eq!(path, DEFAULT_PATH, "{name} #{i} in a transaction");
                tx.commit().await.unwrap();
            }
        }));
    }
    start.wait().await;
    let mut pids = std::collections::HashSet::new();
    for i in 0..100 {
        let tx = a.transaction().await.unwrap();
        let row = tx
            .query_one(
                "SELECT current_setting('search_path'), current_setting('statement_timeout'), pg_backend_pid()",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), want_path, "A's transaction {i}");
        assert_eq!(row.get::<_, String>(1), want_timeout, "A's transaction {i}");
        pids.insert(row.get::<_, i32>(2));
        tx.commit().await.unwrap();
        if i % 10 == 0 {
            assert_eq!(show(&a, "search_path").await, want_path);
        }
    }
    for o in others {
        o.await.expect("other client");
    }
    if pool == 1 {
        assert_eq!(pids.len(), 1, "a pool of 1 has one server connection");
    }
    // A's connection went back to the pool: a newcomer, on any of them, sees the defaults.
    for _ in 0..pool + 1 {
        let e = sluice.connect(APP_DB, APP_USER, APP_PASSWORD).await;
        assert_eq!(show(&e, "search_path").await, DEFAULT_PATH);
        assert_eq!(show(&e, "statement_timeout").await, "0");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_set_never_reaches_others_pool_of_1() {
    no_leak(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_set_never_reaches_others_pool_of_5() {
    no_leak(5).await;
}

/// The same script through sluice (pool of 1, another client using the pool between every
/// step) and directly: every answer equal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_reset_all_and_discard_all_answer_as_postgresql() {
    let (pg, sluice) = setup(1).await;
    let direct = pg.connect_direct(APP_DB, APP_USER, APP_PASSWORD).await;
    let a = sluice.connect(APP_DB, APP_USER, APP_PASSWORD).await;
    let b = sluice.connect(APP_DB, APP_USER, APP_PASSWORD).await;
    let probe = "SELECT current_setting('search_path') || ' | ' || current_setting('statement_timeout') || ' | ' || current_setting('work_mem') || ' | ' || current_user || ' | ' || current_setting('application_name')";
    let steps = [
        "SET search_path = \"Other\", a_schema; SET statement_timeout = 1000; SET work_mem = '8MB'",
        "RESET search_path",
        "SET search_path TO DEFAULT; SET work_mem TO default",
        "SET search_path = a_schema; SET application_name = 'mine'; SET ROLE r1",
        "RESET ALL",
        "SET search_path = a_schema; SET statement_timeout = '1min'",
        "DISCARD ALL",
        "SET SESSION statement_timeout = 2000; SET TIME ZONE 'Europe/Paris'",
        "RESET TIME ZONE",
        "SELECT set_config('search_path', 'a_schema, \"Other\"', false)",
        "SELECT set_config('search_path', NULL, false)",
        "SET SCHEMA 'a_schema'",
        "RESET ROLE",
    ];
    for step in steps {
        let through = simple_rows(&a, step).await;
        let straight = simple_rows(&direct, step).await;
        assert_eq!(through, straight, "answers to {step}");
        // B uses the one server connection in between, and sees none of it.
        assert_eq!(show(&b, "search_path").await, DEFAULT_PATH, "after {step}");
        assert_eq!(show(&b, "statement_timeout").await, "0", "after {step}");
        assert_eq!(
            simple_scalar(&b, "SELECT current_user").await.unwrap(),
            APP_USER
        );
        let through = simple_rows(&a, probe).await;
        let straight = simple_rows(&direct, probe).await;
        assert_eq!(through, straight, "settings after {step}");
        for name in ["TimeZone", "statement_timeout", "search_path"] {
            assert_eq!(
                show(&a, name).await,
                show(&direct, name).await,
                "{name} after {step}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolled_back_sets_are_undone_and_local_ones_do_not_stick() {
    let (_pg, sluice) = setup(1).await;
    let mut a = sluice.connect(APP_DB, APP_USER, APP_PASSWORD).await;
    let b = sluice.connect(APP_DB, APP_USER, APP_PASSWORD).await;
    a.batch_execute("BEGIN; SET search_path = a_schema; ROLLBACK")
        .await
        .unwrap();
    assert_eq!(show(&a, "search_path").await, DEFAULT_PATH, "rolled back");

    a.batch_execute("BEGIN; SET search_path = a_schema")
        .await
        .unwrap();
    assert_eq!(
        show(&a, "search_path").await,
        "a_schema",
        "inside the transaction"
    );
    a.batch_execute("SAVEPOINT s; SET search_path = \"Other\"")
        .await
        .unwrap();
    assert_eq!(show(&a, "search_path").await, "\"Other\"");
    a.batch_execute("ROLLBACK TO SAVEPOINT s; COMMIT")
        .await
        .unwrap();
    assert_eq!(
        show(&a, "search_path").await,
        "a_schema",
        "savepoint rolled back"
    );
    assert_eq!(show(&b, "search_path").await, DEFAULT_PATH);

    // A savepoint taken before the SET undoes it; a failed transaction undoes it too.
    a.batch_execute("BEGIN; SAVEPOINT s; SET search_path = \"Other\"; ROLLBACK TO s; COMMIT")
        .await
        .unwrap();
    assert_eq!(show(&a, "search_path").await, "a_schema");
    let failed = a
        .batch_execute("BEGIN; SET search_path = \"Other\"; SELECT 1/0")
        .await;
    assert!(failed.is_err());
    a.batch_execute("COMMIT").await.unwrap();
    assert_eq!(
        show(&a, "search_path").await,
        "a_schema",
        "failed transaction"
    );
    // An error later in a multi-statement query rolls back its implicit transaction.
    assert!(
        a.batch_execute("SET search_path = \"Other\"; SELECT 1/0")
            .await
            .is_err()
    );
    assert_eq!(
        show(&a, "search_path").await,
        "a_schema",
        "implicit transaction"
    );

    // SET LOCAL and set_config(…, true) end with their transaction.
    a.batch_execute("BEGIN; SET LOCAL statement_timeout = 1234; COMMIT")
        .await
        .unwrap();
    assert_eq!(show(&a, "statement_timeout").await, "0");
    let tx = a.transaction().await.unwrap();
    tx.query_one(
        "SELECT set_config('statement_timeout', $1, true)",
        &[&"777"],
    )
    .await
    .unwrap();
    let inside: String = tx
        .query_one("SELECT current_setting('statement_timeout')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(inside, "777ms");
    tx.commit().await.unwrap();
    assert_eq!(
        show(&a, "statement_timeout").await,
        "0",
        "set_config(…, true)"
    );
    // set_config(…, false) sticks, for A only.
    a.batch_execute("SELECT set_config('statement_timeout', '888', false)")
        .await
        .unwrap();
    for _ in 0..5 {
        assert_eq!(show(&a, "statement_timeout").await, "888ms");
        assert_eq!(show(&b, "statement_timeout").await, "0");
    }
}

/// SET and set_config through the extended protocol (tokio-postgres prepares and executes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_protocol_set_is_followed() {
    let (_pg, sluice) = setup(1).await;
    let mut a = sluice.connect(APP_DB, APP_USER, APP_PASSWORD).await;
    let b = sluice.connect(APP_DB, APP_USER, APP_PASSWORD).await;
    a.execute("SET search_path = a_schema, public", &[])
        .await
        .unwrap();
    assert_eq!(show(&b, "search_path").await, DEFAULT_PATH);
    assert_eq!(current(&a, "search_path").await, "a_schema, public");
    a.execute("SET statement_timeout TO '3s'", &[])
        .await
        .unwrap();
    a.query_one("SELECT set_config('work_mem', '5MB', false)", &[])
        .await
        .unwrap();
    for _ in 0..5 {
        assert_eq!(current(&a, "statement_timeout").await, "3s");
        assert_eq!(current(&a, "work_mem").await, "5MB");
        assert_eq!(current(&b, "statement_timeout").await, "0");
        assert_eq!(current(&b, "work_mem").await, "4MB");
    }
    // A prepared SET executed again later, inside a rolled-back transaction: undone.
    let set = a.prepare("SET search_path = \"Other\"").await.unwrap();
    let tx = a.transaction().await.unwrap();
    tx.execute(&set, &[]).await.unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(current(&a, "search_path").await, "a_schema, public");
    a.execute(&set, &[]).await.unwrap();
    assert_eq!(current(&a, "search_path").await, "\"Other\"");
    a.execute("RESET ALL", &[]).await.unwrap();
    assert_eq!(current(&a, "search_path").await, DEFAULT_PATH);
    assert_eq!(current(&a, "statement_timeout").await, "0");
}

/// What sluice cannot follow (set_config with a parameter, SET in a DO block) never reaches
/// another client: that server connection is closed instead of being given to anyone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untracked_changes_never_reach_another_client() {
    let (_pg, sluice) = setup(1).await;
    let mut a = sluice.connect(APP_DB, APP_USER, APP_PASSWORD).await;
    let b = sluice.connect(APP_DB, APP_USER, APP_PASSWORD).await;
    let before = backend_pid(&b).await;
    a.query_one(
        "SELECT set_config('search_path', $1, false)",
        &[&"a_schema"],
    )
    .await
    .unwrap();
    assert_eq!(show(&b, "search_path").await, DEFAULT_PATH);
    let after = backend_pid(&b).await;
    assert_ne!(before, after, "the changed connection was closed");
    a.batch_execute("DO $$ BEGIN SET search_path = a_schema; END $$")
        .await
        .unwrap();
    assert_eq!(show(&b, "search_path").await, DEFAULT_PATH);
    // A local set_config with parameters (PostgREST's way) is no reason to close anything.
    let pid = backend_pid(&b).await;
    let tx = a.transaction().await.unwrap();
    tx.query_one("SELECT set_config('search_path', $1, true)", &[&"a_schema"])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(backend_pid(&b).await, pid);
}

/// SET ROLE is carried (every client of a pool logs in as the same user, so the server checks
/// the same membership again at each checkout); other clients never get the role.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_role_is_carried_for_its_client_only() {
    let (_pg, sluice) = setup(1).await;
    let a = sluice.connect(APP_DB, APP_USER, APP_PASSWORD).await;
    let b = sluice.connect(APP_DB, APP_USER, APP_PASSWORD).await;
    a.batch_execute("SET ROLE r1").await.unwrap();
    for _ in 0..5 {
        assert_eq!(
            simple_scalar(&a, "SELECT current_user").await.unwrap(),
            "r1"
        );
        assert_eq!(
            simple_scalar(&b, "SELECT current_user").await.unwrap(),
            APP_USER
        );
    }
    // A role the pool's user may not take fails on the server, as directly, and changes nothing.
    let err = a.batch_execute("SET ROLE postgres").await.unwrap_err();
    assert_eq!(sqlstate(&err), Some("42501"));
    assert_eq!(
        simple_scalar(&a, "SELECT current_user").await.unwrap(),
        "r1"
    );
    a.batch_execute("RESET ROLE").await.unwrap();
    assert_eq!(
        simple_scalar(&a, "SELECT current_user").await.unwrap(),
        APP_USER
    );
}

/// psql, one statement per -c, through a pool of 1 that another client keeps using: the same
/// output as directly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_sets_like_postgresql() {
    let (pg, sluice) = setup(1).await;
    let b = sluice.connect(APP_DB, APP_USER, APP_PASSWORD).await;
    let busy = tokio::spawn(async move {
        for _ in 0..200 {
            assert_eq!(show(&b, "search_path").await, DEFAULT_PATH);
        }
    });
    let args = [
        "-At",
        "-c",
        "SET search_path = a_schema, \"Other\"",
        "-c",
        "SET statement_timeout = '90s'",
        "-c",
        "SHOW search_path",
        "-c",
        "BEGIN; SET search_path = public; ROLLBACK",
        "-c",
        "SELECT current_setting('search_path'), current_setting('statement_timeout')",
        "-c",
        "RESET statement_timeout",
        "-c",
        "SHOW statement_timeout",
    ];
    let through = psql_at(sluice.port(), APP_DB, APP_USER, APP_PASSWORD, &args).await;
    let direct = pg.psql_direct(APP_DB, APP_USER, APP_PASSWORD, &args).await;
    assert!(through.status.success(), "{}", describe_output(&through));
    assert_eq!(
        String::from_utf8_lossy(&through.stdout),
        String::from_utf8_lossy(&direct.stdout)
    );
    assert!(String::from_utf8_lossy(&through.stdout).contains("a_schema, \"Other\"|90s"));
    busy.await.unwrap();
}

/// RESET returns to the value the client gave at login (startup `options`), as on PostgreSQL,
/// even though the pooled connections started without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_returns_to_the_login_value() {
    let (pg, sluice) = setup(1).await;
    let mut through_cfg = sluice.pg_config(APP_DB, APP_USER, APP_PASSWORD);
    through_cfg.options("-c search_path=a_schema -c statement_timeout=5s");
    let mut direct_cfg = pg.pg_config(APP_DB, APP_USER, APP_PASSWORD);
    direct_cfg.options("-c search_path=a_schema -c statement_timeout=5s");
    let (a, _) = connect_config(&through_cfg).await.unwrap();
    let (direct, _) = connect_config(&direct_cfg).await.unwrap();
    let b = sluice.connect(APP_DB, APP_USER, APP_PASSWORD).await;
    for step in [
        "SET search_path = \"Other\"; SET statement_timeout = 1000",
        "RESET search_path",
        "RESET ALL",
        "SET search_path = public",
        "DISCARD ALL",
    ] {
        a.batch_execute(step).await.unwrap();
        direct.batch_execute(step).await.unwrap();
        for name in ["search_path", "statement_timeout"] {
            assert_eq!(
                show(&a, name).await,
                show(&direct, name).await,
                "{name} after {step}"
            );
            assert_eq!(current(&a, name).await, current(&direct, name).await);
        }
        assert_eq!(show(&b, "search_path").await, DEFAULT_PATH);
    }
}

/// SET SESSION AUTHORIZATION (a superuser pool) is carried like SET ROLE, and resets the role.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_authorization_is_carried_for_its_client_only() {
    let pg = PgCluster::start();
    let su = pg.superuser(APP_DB).await;
    su.batch_execute("CREATE ROLE r1; GRANT r1 TO app")
        .await
        .unwrap();
    let config = config_for(&pg, 1, PoolMode::Transaction);
    let config = set_config(
        &config,
        &format!("users.{SUPERUSER}.password"),
        SUPERUSER_PASSWORD,
    );
    let sluice = Sluice::start(config);
    let a = sluice.connect(APP_DB, SUPERUSER, SUPERUSER_PASSWORD).await;
    let b = sluice.connect(APP_DB, SUPERUSER, SUPERUSER_PASSWORD).await;
    let who = "SELECT session_user || ' ' || current_user";
    a.batch_execute("SET SESSION AUTHORIZATION app; SET ROLE r1")
        .await
        .unwrap();
    for _ in 0..3 {
        assert_eq!(simple_scalar(&a, who).await.unwrap(), "app r1");
        assert_eq!(simple_scalar(&b, who).await.unwrap(), "postgres postgres");
    }
    a.batch_execute("RESET SESSION AUTHORIZATION")
        .await
        .unwrap();
    assert_eq!(simple_scalar(&a, who).await.unwrap(), "postgres postgres");
    assert_eq!(simple_scalar(&b, who).await.unwrap(), "postgres postgres");
}
