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
        pooler.try_connect(APP_DB, APP_USER, APP_PASSWORD).await.is_ok()
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
    assert!(e.contains("too many connections for database \"app\""), "{e}");
    assert!(e.contains("max_db_client_connections"), "{e}");
    // Refused logins are not counted; a client that leaves frees its place.
    assert_eq!(pooler.shared().client_caps.database_count(APP_DB), 2);
    drop(t);
    poll_until(STEP, "a place in app again", || async {
        pooler.try_connect(APP_DB, MD5_USER, MD5_PASSWORD).await.is_ok()
    })
    .await;
}
