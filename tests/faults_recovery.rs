//! Fault suite, recovery: what a client sees when sluice cannot log in to its server.

mod common;

use common::*;
use sluice::config::PoolMode;

#[tokio::test]
async fn a_server_login_failure_at_client_startup_is_fatal_with_its_sqlstate() {
    let pg = PgCluster::start();
    let mut config = config_for(&pg, 2, PoolMode::Transaction);
    // A database whose server side PostgreSQL does not have: the server login fails with 3D000.
    for (key, value) in [
        ("databases.ghost.host", toml::Value::from("127.0.0.1")),
        (
            "databases.ghost.port",
            toml::Value::from(i64::from(pg.port())),
        ),
        (
            "databases.ghost.dbname",
            toml::Value::from("no_such_database"),
        ),
    ] {
        config = set_config(&config, key, value);
    }
    let pooler = Sluice::start(config);
    match RawConn::connect(pooler.addr(), APP_USER, "ghost", Some(APP_PASSWORD), &[]).await {
        Err(RawError::Server(f)) => {
            assert_eq!(f.0.get(&b'S').map(String::as_str), Some("FATAL"), "{f:?}");
            assert_eq!(f.0.get(&b'V').map(String::as_str), Some("FATAL"), "{f:?}");
            assert_eq!(f.code(), Some("3D000"), "{f:?}");
            assert!(
                f.message().is_some_and(|m| m.contains("no_such_database")),
                "{f:?}"
            );
        }
        other => panic!("login to a database the server lacks: {:?}", other.err()),
    }
    let e = pooler
        .try_connect("ghost", APP_USER, APP_PASSWORD)
        .await
        .expect_err("the login fails");
    let db = e.as_db_error().expect("an error from sluice");
    assert_eq!((db.severity(), db.code().code()), ("FATAL", "3D000"));
    // The pool that works is untouched.
    let c = pooler.connect_app().await;
    assert_eq!(simple_scalar(&c, "SELECT 1").await.as_deref(), Some("1"));
}
