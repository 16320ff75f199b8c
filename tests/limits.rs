//! Client caps: max_user_client_connections and max_db_client_connections (PgBouncer 1.24's
//! meaning: client connections to sluice), refused with 53300 and PostgreSQL's wording.

mod common;

use common::*;
use sluice::config::PoolMode;

fn refused(r: Result<tokio_postgres::Client, tokio_postgres::Error>) -> String {
    match r {
        Ok(_) => panic!("logged in over the cap"),
        Err(e) => {
            assert_eq!(sqlstate(&e), Some("53300"), "{}", describe_error(&e));
            let db = e.as_db_error().expect("a server error");
            format!("{} / {}", db.message(), db.detail().unwrap_or_default())
        }
    }
}

#[tokio::test]
async fn a_user_over_its_cap_is_refused_until_one_of_its_clients_leaves() {
    let pg = PgCluster::start();
    let config = set_config(
        &config_for(&pg, 2, PoolMode::Transaction),
        "pooler.max_user_client_connections",
        2,
    );
    // Per user override: trustuser may have one.
    let config = set_config(&config, "users.trustuser.max_user_client_connections", 1);
    let pooler = Sluice::start(config);
    let a = pooler.connect_app().await;
    let _b = pooler.connect_app().await;
    let e = refused(pooler.try_connect(APP_DB, APP_USER, APP_PASSWORD).await);
    assert!(e.contains("too many connections for role \"app\""), "{e}");
    assert!(e.contains("max_user_client_connections"), "{e}");
    // Other users are counted apart.
    let _t = pooler.connect(APP_DB, TRUST_USER, TRUST_PASSWORD).await;
    let e = refused(pooler.try_connect(APP_DB, TRUST_USER, TRUST_PASSWORD).await);
    assert!(e.contains("\"trustuser\""), "{e}");
    // psql sees the same refusal.
    let out = pooler.psql(&["-c", "SELECT 1"]).await;
    assert!(String::from_utf8_lossy(&out.stderr).contains("too many connections for role"));
    drop(a);
    poll_until(STEP, "a place for app again", || async {
        pooler
            .try_connect(APP_DB, APP_USER, APP_PASSWORD)
            .await
            .is_ok()
    })
    .await;
}

#[tokio::test]
async fn a_database_over_its_cap_is_refused_whatever_the_user() {
    let pg = PgCluster::start();
    let config = set_config(
        &config_for(&pg, 2, PoolMode::Transaction),
        "databases.app.max_db_client_connections",
        2,
    );
    let pooler = Sluice::start(config);
    let _a = pooler.connect_app().await;
    let t = pooler.connect(APP_DB, TRUST_USER, TRUST_PASSWORD).await;
    let e = refused(pooler.try_connect(APP_DB, MD5_USER, MD5_PASSWORD).await);
    assert!(
        e.contains("too many connections for database \"app\""),
        "{e}"
    );
    assert!(e.contains("max_db_client_connections"), "{e}");
    // Refused logins are not counted; a client that leaves frees its place.
    assert_eq!(pooler.shared().client_caps.database_count(APP_DB), 2);
    drop(t);
    poll_until(STEP, "a place in app again", || async {
        pooler
            .try_connect(APP_DB, MD5_USER, MD5_PASSWORD)
            .await
            .is_ok()
    })
    .await;
}

async fn backends(su: &tokio_postgres::Client, users: &[&str]) -> i64 {
    let users: Vec<String> = users.iter().map(|u| u.to_string()).collect();
    su.query_one(
        "SELECT count(*) FROM pg_stat_activity WHERE usename = ANY($1) AND backend_type = 'client backend'",
        &[&users],
    )
    .await
    .unwrap()
    .get(0)
}

/// max_db_connections: every user's pool of a database shares the cap; a checkout past it
/// waits, an idle connection of another pool is closed to make room, and a wait that times out
/// fails with 53300 naming the cap.
#[tokio::test]
async fn a_database_server_cap_is_shared_by_its_pools() {
    let pg = PgCluster::start();
    let su = pg.superuser("postgres").await;
    let config = set_config(
        &config_for(&pg, 2, PoolMode::Transaction),
        "pooler.max_db_connections",
        1,
    );
    let config = set_config(&config, "pooler.query_wait_timeout", "1s");
    let pooler = Sluice::start(config);
    let t = pooler.connect(APP_DB, TRUST_USER, TRUST_PASSWORD).await;
    assert_eq!(simple_scalar(&t, "SELECT 1").await.as_deref(), Some("1"));
    // trustuser's server connection is idle: app's login closes it to make room.
    let a = pooler.connect_app().await;
    a.batch_execute("BEGIN; SELECT 1").await.unwrap();
    assert_eq!(backends(&su, &[APP_USER, TRUST_USER]).await, 1);
    let err = t.simple_query("SELECT 1").await.expect_err("over the cap");
    assert_eq!(sqlstate(&err), Some("53300"), "{}", describe_error(&err));
    let db = err.as_db_error().unwrap();
    assert_eq!(
        db.message(),
        "too many server connections for database \"app\""
    );
    assert!(
        db.detail()
            .unwrap_or_default()
            .contains("max_db_connections = 1"),
        "{db:?}"
    );
    // A waiting checkout gets the place when app's transaction ends.
    let waiting = {
        let t = t;
        tokio::spawn(async move { simple_scalar(&t, "SELECT 'after'").await })
    };
    a.batch_execute("COMMIT").await.unwrap();
    assert_eq!(
        within(STEP, "the waiting query", waiting)
            .await
            .unwrap()
            .as_deref(),
        Some("after")
    );
    assert!(backends(&su, &[APP_USER, TRUST_USER]).await <= 1);
}

/// max_user_connections: a user's pools of every database share the cap.
#[tokio::test]
async fn a_user_server_cap_is_shared_across_databases() {
    let pg = PgCluster::start();
    let config = config_for(&pg, 2, PoolMode::Transaction);
    let config = set_config(&config, "databases.app2.host", "127.0.0.1");
    let config = set_config(&config, "databases.app2.port", i64::from(pg.port()));
    let config = set_config(&config, "databases.app2.dbname", APP_DB);
    let config = set_config(&config, "users.app.max_user_connections", 1);
    let config = set_config(&config, "pooler.query_wait_timeout", "1s");
    let pooler = Sluice::start(config);
    let a = pooler.connect_app().await;
    a.batch_execute("BEGIN; SELECT 1").await.unwrap();
    // The first login of app2's pool needs a server connection: refused at login.
    let Err(e) = pooler.try_connect("app2", APP_USER, APP_PASSWORD).await else {
        panic!("logged in over the cap");
    };
    assert_eq!(sqlstate(&e), Some("53300"), "{}", describe_error(&e));
    assert_eq!(
        e.as_db_error().unwrap().message(),
        "too many server connections for user \"app\""
    );
    // Other users are not limited by app's cap.
    let t = pooler.connect("app2", TRUST_USER, TRUST_PASSWORD).await;
    assert_eq!(simple_scalar(&t, "SELECT 1").await.as_deref(), Some("1"));
    a.batch_execute("COMMIT").await.unwrap();
    let b = pooler.connect("app2", APP_USER, APP_PASSWORD).await;
    assert_eq!(simple_scalar(&b, "SELECT 2").await.as_deref(), Some("2"));
}
