//! Access rules (pg_hba.conf form) end to end: each method through real clients, reject and no
//! matching rule refused with PostgreSQL's 28000 wording, the rules from a file, and no rules
//! keeping auth_type as it was.

mod common;

use common::*;
use sluice::config::PoolMode;

fn with_rules(pg: &PgCluster, rules: &[&str]) -> String {
    let config = config_for(pg, 2, PoolMode::Transaction);
    set_config(
        &config,
        "pooler.auth_hba",
        toml::Value::Array(rules.iter().map(|r| toml::Value::from(*r)).collect()),
    )
}

async fn auth_request(pooler: &Sluice, user: &str, password: &str) -> AuthRequest {
    RawConn::connect(pooler.addr(), user, APP_DB, Some(password), &[])
        .await
        .unwrap_or_else(|e| panic!("{user}: {e:?}"))
        .auth
}

fn refused(r: Result<tokio_postgres::Client, tokio_postgres::Error>, code: &str) -> String {
    match r {
        Ok(_) => panic!("logged in"),
        Err(e) => {
            assert_eq!(sqlstate(&e), Some(code), "{}", describe_error(&e));
            describe_error(&e)
        }
    }
}

#[tokio::test]
async fn each_method_is_the_exchange_the_rule_names() {
    let pg = PgCluster::start();
    let pooler = Sluice::start(with_rules(
        &pg,
        &[
            "host all trustuser 127.0.0.1/32 trust",
            "host all md5user 127.0.0.0/8 md5",
            "host app app 127.0.0.1 255.255.255.255 password",
            "hostssl all all all cert",
            "host all all 127.0.0.1/32 scram-sha-256",
        ],
    ));
    // trust: no password asked, a wrong one does not matter.
    assert_eq!(
        auth_request(&pooler, TRUST_USER, "whatever").await,
        AuthRequest::Ok
    );
    let c = pooler.connect(APP_DB, TRUST_USER, "wrong").await;
    assert_eq!(
        simple_scalar(&c, "SELECT current_user").await.as_deref(),
        Some(TRUST_USER)
    );
    // md5.
    assert_eq!(
        auth_request(&pooler, MD5_USER, MD5_PASSWORD).await,
        AuthRequest::Md5
    );
    pooler.connect(APP_DB, MD5_USER, MD5_PASSWORD).await;
    refused(pooler.try_connect(APP_DB, MD5_USER, "wrong").await, "28P01");
    // password (clear text), through tokio-postgres and psql.
    assert_eq!(
        auth_request(&pooler, APP_USER, APP_PASSWORD).await,
        AuthRequest::Cleartext
    );
    pooler.connect_app().await;
    refused(pooler.try_connect(APP_DB, APP_USER, "wrong").await, "28P01");
    let out = pooler.psql(&["-At", "-c", "SELECT 'via psql'"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // scram-sha-256 for the others (the hostssl cert rule never matches a plain connection).
    let su_config = set_config(
        &with_rules(
            &pg,
            &[
                "hostssl all all all cert",
                "host all all 127.0.0.1/32 scram-sha-256",
            ],
        ),
        "users.other.password",
        "other-secret",
    );
    let pooler2 = Sluice::start(su_config);
    assert_eq!(
        auth_request(&pooler2, APP_USER, APP_PASSWORD).await,
        AuthRequest::Sasl(vec!["SCRAM-SHA-256".into()])
    );
    pooler2.connect_app().await;
}

#[tokio::test]
async fn reject_and_no_matching_rule_are_refused_with_28000() {
    let pg = PgCluster::start();
    let pooler = Sluice::start(with_rules(
        &pg,
        &[
            "host app md5user all reject",
            "host sameuser all all trust",
            "host app app,trustuser 10.0.0.0/8 trust",
            "host app app 127.0.0.1/32 scram-sha-256",
        ],
    ));
    let e = refused(
        pooler.try_connect(APP_DB, MD5_USER, MD5_PASSWORD).await,
        "28000",
    );
    assert!(
        e.contains("pg_hba.conf rejects connection for host \"127.0.0.1\", user \"md5user\", database \"app\", no encryption"),
        "{e}"
    );
    let e = refused(
        pooler.try_connect(APP_DB, TRUST_USER, TRUST_PASSWORD).await,
        "28000",
    );
    assert!(
        e.contains("no pg_hba.conf entry for host \"127.0.0.1\", user \"trustuser\", database \"app\", no encryption"),
        "{e}"
    );
    // psql shows the same.
    let out = psql_at(
        pooler.port(),
        APP_DB,
        TRUST_USER,
        TRUST_PASSWORD,
        &["-c", "SELECT 1"],
    )
    .await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no pg_hba.conf entry for host \"127.0.0.1\""),
        "{stderr}"
    );
    // The rule for app still lets app in.
    pooler.connect_app().await;
}

#[tokio::test]
async fn rules_from_a_file_and_a_bad_file_names_the_key_and_line() {
    let pg = PgCluster::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hba.conf");
    std::fs::write(
        &path,
        "# from a PgBouncer auth_hba_file\nhost all trustuser 127.0.0.1/32 trust\nhost all all 0.0.0.0/0 reject\n",
    )
    .unwrap();
    let config = set_config(
        &config_for(&pg, 2, PoolMode::Transaction),
        "pooler.auth_hba_file",
        path.to_str().unwrap(),
    );
    let pooler = Sluice::start(config.clone());
    pooler.connect(APP_DB, TRUST_USER, "anything").await;
    refused(
        pooler.try_connect(APP_DB, APP_USER, APP_PASSWORD).await,
        "28000",
    );

    std::fs::write(&path, "host all all all trust\nhost all +admins all md5\n").unwrap();
    let e = sluice::Config::from_toml(&config).unwrap_err().to_string();
    assert!(
        e.starts_with("pooler.auth_hba_file:") && e.contains(":2: group membership"),
        "{e}"
    );
    let e = sluice::Config::from_toml(&set_config(
        &config,
        "pooler.auth_hba",
        vec!["host all all all trust"],
    ))
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("pooler.auth_hba:"), "{e}");
}
