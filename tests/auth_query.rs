//! auth_query and SCRAM pass-through against a real PostgreSQL (scram-sha-256 in its pg_hba):
//! users looked up in PostgreSQL, expired passwords refused (CVE-2025-2291), a password rotated
//! in PostgreSQL alone, and a SCRAM secret in the config logging in without any plain password.

mod common;

use common::*;
use sluice::config::PoolMode;

const AUTH_USER: &str = "sluice_auth";
const AUTH_PASSWORD: &str = "auth-secret";

/// A superuser for the default auth_query (pg_shadow), and a config that looks users up with it.
async fn setup(pg: &PgCluster) -> String {
    let su = pg.superuser("postgres").await;
    su.batch_execute(&format!(
        "CREATE ROLE {AUTH_USER} LOGIN SUPERUSER PASSWORD '{AUTH_PASSWORD}';
         CREATE ROLE dyn LOGIN PASSWORD 'dyn-secret';
         CREATE ROLE expired LOGIN PASSWORD 'old-secret' VALID UNTIL '2001-01-01';
         CREATE ROLE rotating LOGIN PASSWORD 'first-secret';
         GRANT CONNECT ON DATABASE app TO dyn, expired, rotating;"
    ))
    .await
    .expect("roles");
    let config = config_for(pg, 2, PoolMode::Transaction);
    let config = set_config(
        &config,
        &format!("users.{AUTH_USER}.password"),
        AUTH_PASSWORD,
    );
    set_config(&config, "pooler.auth_user", AUTH_USER)
}

fn expect_refused(
    r: Result<tokio_postgres::Client, tokio_postgres::Error>,
    code: &str,
    what: &str,
) -> String {
    match r {
        Ok(_) => panic!("{what}: logged in"),
        Err(e) => {
            assert_eq!(sqlstate(&e), Some(code), "{what}: {}", describe_error(&e));
            describe_error(&e)
        }
    }
}

#[tokio::test]
async fn a_user_not_in_the_config_is_looked_up_and_logs_in_without_a_plain_password() {
    let pg = PgCluster::start();
    let pooler = Sluice::start(setup(&pg).await);
    let c = pooler.connect(APP_DB, "dyn", "dyn-secret").await;
    assert_eq!(
        simple_scalar(&c, "SELECT current_user").await.as_deref(),
        Some("dyn")
    );
    // The pool holds no password: its server login was SCRAM pass-through.
    let target = pooler.pool(APP_DB, "dyn").target();
    assert!(target.password.is_none());
    assert!(target.pass.scram.is_some(), "{:?}", target.pass);
    // psql too, and a second server connection (both clients in a transaction at once).
    let out = psql_at(
        pooler.port(),
        APP_DB,
        "dyn",
        "dyn-secret",
        &["-At", "-c", "SELECT current_user"],
    )
    .await;
    assert!(
        out.status.success(),
        "psql: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "dyn");
    let d = pooler.connect(APP_DB, "dyn", "dyn-secret").await;
    c.batch_execute("BEGIN").await.unwrap();
    d.batch_execute("BEGIN").await.unwrap();
    let (p1, p2) = (backend_pid(&c).await, backend_pid(&d).await);
    assert_ne!(p1, p2, "two server connections");
    // Wrong password, unknown role: 28P01, as PostgreSQL says.
    expect_refused(
        pooler.try_connect(APP_DB, "dyn", "wrong").await,
        "28P01",
        "wrong password",
    );
    expect_refused(
        pooler.try_connect(APP_DB, "nobody", "x").await,
        "28P01",
        "unknown role",
    );
    expect_refused(
        pg_direct(&pg, "nobody", "x").await,
        "28P01",
        "unknown role, direct",
    );
}

async fn pg_direct(
    pg: &PgCluster,
    user: &str,
    password: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    connect_config(&pg.pg_config(APP_DB, user, password))
        .await
        .map(|(c, _)| c)
}

#[tokio::test]
async fn an_expired_password_is_refused_as_postgresql_refuses_it() {
    let pg = PgCluster::start();
    let pooler = Sluice::start(setup(&pg).await);
    let direct = expect_refused(
        pg_direct(&pg, "expired", "old-secret").await,
        "28P01",
        "direct",
    );
    let through = expect_refused(
        pooler.try_connect(APP_DB, "expired", "old-secret").await,
        "28P01",
        "through sluice",
    );
    assert!(
        through.contains("password authentication failed for user \"expired\""),
        "{through} / {direct}"
    );
}

#[tokio::test]
async fn a_password_rotated_in_postgresql_alone_is_picked_up_after_one_failed_login() {
    let pg = PgCluster::start();
    let pooler = Sluice::start(setup(&pg).await);
    let su = pg.superuser("postgres").await;
    let c = pooler.connect(APP_DB, "rotating", "first-secret").await;
    assert_eq!(simple_scalar(&c, "SELECT 1").await.as_deref(), Some("1"));
    drop(c);

    su.batch_execute("ALTER ROLE rotating PASSWORD 'second-secret'")
        .await
        .unwrap();
    // sluice still holds the old secret (auth_cache_ttl is a minute): the new password fails
    // once, and that failure makes sluice ask PostgreSQL again.
    expect_refused(
        pooler
            .try_connect(APP_DB, "rotating", "second-secret")
            .await,
        "28P01",
        "new password against the cached secret",
    );
    let c = pooler.connect(APP_DB, "rotating", "second-secret").await;
    // New server connections log in with the new key (the old ones are gone).
    terminate_all(&su, "rotating").await;
    poll_until(STEP, "a query on a fresh server connection", || async {
        simple_scalar_ok(&c, "SELECT current_user").await.as_deref() == Some("rotating")
    })
    .await;
    expect_refused(
        pooler.try_connect(APP_DB, "rotating", "first-secret").await,
        "28P01",
        "the old password",
    );
}

/// The old password, while sluice still holds the old secret and PostgreSQL the new one: sluice
/// lets the client in, and the server login is refused with 28P01 naming the cause.
#[tokio::test]
async fn a_stale_secret_fails_the_server_login_with_28p01_naming_the_cause() {
    let pg = PgCluster::start();
    let pooler = Sluice::start(setup(&pg).await);
    let su = pg.superuser("postgres").await;
    // Looked up and cached, but no server connection made yet for another database user.
    su.batch_execute("ALTER ROLE rotating PASSWORD 'first-secret'")
        .await
        .unwrap();
    let c = pooler.connect(APP_DB, "rotating", "first-secret").await;
    drop(c);
    terminate_all(&su, "rotating").await;
    pooler.pool(APP_DB, "rotating").reconnect();
    su.batch_execute("ALTER ROLE rotating PASSWORD 'second-secret'")
        .await
        .unwrap();
    let c = pooler.connect(APP_DB, "rotating", "first-secret").await;
    let err = c
        .simple_query("SELECT 1")
        .await
        .expect_err("server login refused");
    assert_eq!(sqlstate(&err), Some("28P01"), "{}", describe_error(&err));
    assert!(
        describe_error(&err).contains("SCRAM pass-through"),
        "{}",
        describe_error(&err)
    );
}

async fn terminate_all(su: &tokio_postgres::Client, user: &str) {
    su.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1",
        &[&user],
    )
    .await
    .unwrap();
    poll_until(STEP, "backends gone", || async {
        let n: i64 = su
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE usename = $1",
                &[&user],
            )
            .await
            .unwrap()
            .get(0);
        n == 0
    })
    .await;
}

async fn simple_scalar_ok(c: &tokio_postgres::Client, sql: &str) -> Option<String> {
    let rows = c
        .simple_query(sql)
        .await
        .inspect_err(|e| eprintln!("{sql}: {}", describe_error(e)))
        .ok()?;
    match rows
        .into_iter()
        .find(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_)))?
    {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
        _ => None,
    }
}

/// The secret PostgreSQL stores for `app`, in the config instead of the password: clients are
/// checked against it and server logins use the key each client proves.
#[tokio::test]
async fn a_scram_secret_in_the_config_logs_in_to_postgresql_by_pass_through() {
    let pg = PgCluster::start();
    let su = pg.superuser("postgres").await;
    let secret: String = su
        .query_one(
            "SELECT rolpassword FROM pg_authid WHERE rolname = 'app'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(secret.starts_with("SCRAM-SHA-256$"));
    let config = set_config(
        &config_for(&pg, 2, PoolMode::Transaction),
        "users.app.password",
        secret,
    );
    let pooler = Sluice::start(config);
    let c = pooler.connect_app().await;
    assert_eq!(
        simple_scalar(&c, "SELECT current_user").await.as_deref(),
        Some("app")
    );
    expect_refused(
        pooler.try_connect(APP_DB, APP_USER, "wrong").await,
        "28P01",
        "wrong",
    );

    // The same password with another salt (what hash-password prints): the client gets in, the
    // server login cannot work and says why.
    let other = sluice_proto::auth::ScramVerifier::from_password(APP_PASSWORD).to_secret_string();
    let config = set_config(
        &config_for(&pg, 2, PoolMode::Transaction),
        "users.app.password",
        other,
    );
    let pooler = Sluice::start(config);
    let e = expect_refused(
        pooler.try_connect(APP_DB, APP_USER, APP_PASSWORD).await,
        "28P01",
        "other salt",
    );
    assert!(
        e.contains("SCRAM pass-through") && e.contains("same secret"),
        "{e}"
    );
}

/// Per database auth_query: a SECURITY DEFINER function instead of pg_shadow, for an auth_user
/// that is not a superuser.
#[tokio::test]
async fn a_database_can_use_its_own_auth_user_and_security_definer_function() {
    let pg = PgCluster::start();
    let su = pg.superuser(APP_DB).await;
    su.batch_execute(
        "CREATE ROLE lookup LOGIN PASSWORD 'lookup-secret';
         CREATE ROLE fnuser LOGIN PASSWORD 'fn-secret';
         CREATE FUNCTION public.user_secret(u name) RETURNS TABLE (usename name, passwd text)
           LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog AS
           $$ SELECT rolname, rolpassword FROM pg_authid WHERE rolname = u AND rolcanlogin
              AND (rolvaliduntil IS NULL OR rolvaliduntil > now()) $$;
         REVOKE ALL ON FUNCTION public.user_secret(name) FROM public;
         GRANT EXECUTE ON FUNCTION public.user_secret(name) TO lookup;",
    )
    .await
    .expect("function");
    let config = config_for(&pg, 2, PoolMode::Transaction);
    let config = set_config(&config, "users.lookup.password", "lookup-secret");
    let config = set_config(&config, "databases.app.auth_user", "lookup");
    let config = set_config(
        &config,
        "databases.app.auth_query",
        "SELECT * FROM public.user_secret($1)",
    );
    let pooler = Sluice::start(config);
    let c = pooler.connect(APP_DB, "fnuser", "fn-secret").await;
    assert_eq!(
        simple_scalar(&c, "SELECT current_user").await.as_deref(),
        Some("fnuser")
    );
    expect_refused(
        pooler.try_connect(APP_DB, "fnuser", "nope").await,
        "28P01",
        "wrong",
    );
}
