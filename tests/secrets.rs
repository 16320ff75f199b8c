//! Secrets never shown: passwords, md5 and SCRAM secrets (configured, looked up with
//! auth_query, or sent by a client) appear in none of sluice's log lines, admin console answers,
//! `/metrics` or the errors clients get.

mod common;

use common::*;
use sluice::config::PoolMode;
use tokio_postgres::SimpleQueryMessage;

const AUTH_SECRET: &str = "auth-user-secret-4711";
const BAD_AUTH_SECRET: &str = "bad-auth-secret-0815";
const DYN_SECRET: &str = "looked-up-secret-1234";
const GUESS: &str = "client-guess-secret-9876";

async fn show_all(port: u16, out: &mut Vec<String>) {
    let (console, _) = connect_config(&client_config(port, "sluice", APP_USER, APP_PASSWORD))
        .await
        .expect("console");
    for cmd in [
        "SHOW CONFIG",
        "SHOW USERS",
        "SHOW DATABASES",
        "SHOW POOLS",
        "SHOW CLIENTS",
        "SHOW SERVERS",
        "SHOW STATS",
        "SHOW LISTS",
    ] {
        match console.simple_query(cmd).await {
            Ok(msgs) => {
                for m in msgs {
                    if let SimpleQueryMessage::Row(r) = m {
                        for i in 0..r.len() {
                            out.push(format!("{cmd}: {}", r.get(i).unwrap_or("")));
                        }
                    }
                }
            }
            Err(e) => out.push(format!("{cmd}: {}", describe_error(&e))),
        }
    }
}

#[tokio::test]
async fn no_secret_appears_in_logs_console_metrics_or_errors() {
    let pg = PgCluster::start();
    let su = pg.superuser("postgres").await;
    su.batch_execute(&format!(
        "CREATE ROLE sluice_auth LOGIN SUPERUSER PASSWORD '{AUTH_SECRET}';
         CREATE ROLE badauth LOGIN PASSWORD 'not-what-sluice-has';
         CREATE ROLE dyn LOGIN PASSWORD '{DYN_SECRET}';"
    ))
    .await
    .unwrap();
    let dyn_stored: String = su
        .query_one(
            "SELECT rolpassword FROM pg_authid WHERE rolname = 'dyn'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let scram_secret =
        sluice_proto::auth::ScramVerifier::from_password("scram-user-secret").to_secret_string();
    let md5_secret = sluice_proto::auth::md5::md5_secret(MD5_PASSWORD, MD5_USER);

    let config = config_for(&pg, 2, PoolMode::Transaction);
    let config = set_config(&config, "users.sluice_auth.password", AUTH_SECRET);
    let config = set_config(&config, "users.badauth.password", BAD_AUTH_SECRET);
    let config = set_config(&config, "users.scrammy.password", scram_secret.clone());
    let config = set_config(&config, "users.md5user.password", md5_secret.clone());
    let config = set_config(&config, "users.md5user.auth_type", "md5");
    let config = set_config(&config, "pooler.auth_user", "sluice_auth");
    let config = set_config(&config, "pooler.admin_users", vec![APP_USER]);
    let config = set_config(&config, "databases.broken.host", "127.0.0.1");
    let config = set_config(&config, "databases.broken.port", i64::from(pg.port()));
    let config = set_config(&config, "databases.broken.dbname", APP_DB);
    let config = set_config(&config, "databases.broken.auth_user", "badauth");
    let (config, metrics_port) = with_metrics(config);
    let sluice = SluiceProcess::start(&config);
    let port = sluice.port();

    let mut seen: Vec<String> = Vec::new();
    let attempt = |r: Result<tokio_postgres::Client, tokio_postgres::Error>,
                   seen: &mut Vec<String>| match r {
        Ok(c) => Some(c),
        Err(e) => {
            seen.push(format!("client error: {}", describe_error(&e)));
            if let Some(db) = e.as_db_error() {
                seen.push(format!("{:?} {:?}", db.detail(), db.hint()));
            }
            None
        }
    };
    let try_connect = |db: &str, user: &str, pw: &str| {
        let cfg = client_config(port, db, user, pw);
        async move { connect_config(&cfg).await.map(|(c, _)| c) }
    };
    // Good and bad logins of each kind.
    let app = attempt(try_connect(APP_DB, APP_USER, APP_PASSWORD).await, &mut seen).expect("app");
    simple_scalar(&app, "SELECT 1").await;
    attempt(try_connect(APP_DB, APP_USER, GUESS).await, &mut seen);
    let d = attempt(try_connect(APP_DB, "dyn", DYN_SECRET).await, &mut seen).expect("dyn");
    simple_scalar(&d, "SELECT 1").await;
    attempt(try_connect(APP_DB, "dyn", GUESS).await, &mut seen);
    attempt(
        try_connect(APP_DB, "scrammy", "scram-user-secret").await,
        &mut seen,
    );
    attempt(try_connect(APP_DB, MD5_USER, MD5_PASSWORD).await, &mut seen);
    attempt(try_connect(APP_DB, MD5_USER, GUESS).await, &mut seen);
    // auth_query with a wrong auth_user password: the lookup fails and is logged.
    assert!(attempt(try_connect("broken", "dyn", DYN_SECRET).await, &mut seen).is_none());
    // A server error inside a session.
    if let Err(e) = app.simple_query("SELECT no_such_column").await {
        seen.push(describe_error(&e));
    }
    show_all(port, &mut seen).await;
    seen.push(scrape(metrics_port).await);
    sluice.signal("HUP");
    sluice
        .wait_for_log("SIGHUP: configuration reloaded", 1, STEP)
        .await;
    show_all(port, &mut seen).await;
    seen.extend(sluice.log_lines());
    // --print-config of the same file masks them too.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.toml");
    std::fs::write(&path, &config).unwrap();
    let printed = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("--print-config")
        .arg("--config")
        .arg(&path)
        .output()
        .expect("print-config");
    seen.push(String::from_utf8_lossy(&printed.stdout).into_owned());

    let text = seen.join("\n");
    assert!(
        text.contains("auth_query"),
        "the outputs were collected: {text}"
    );
    assert!(
        text.contains("badauth"),
        "the failed lookup was logged: {text}"
    );
    // StoredKey and ServerKey in base64, as the secret strings hold them (the salt is public).
    let keys = |s: &str| -> Vec<String> {
        let parts: Vec<&str> = s.split(['$', ':']).collect();
        vec![parts[3].to_owned(), parts[4].to_owned()]
    };
    for secret in [
        APP_PASSWORD.to_owned(),
        AUTH_SECRET.to_owned(),
        BAD_AUTH_SECRET.to_owned(),
        DYN_SECRET.to_owned(),
        GUESS.to_owned(),
        MD5_PASSWORD.to_owned(),
        "scram-user-secret".to_owned(),
        md5_secret[3..].to_owned(),
        scram_secret.clone(),
        dyn_stored.clone(),
    ]
    .into_iter()
    .chain(keys(&scram_secret))
    .chain(keys(&dyn_stored))
    {
        if let Some(line) = seen.iter().find(|l| l.contains(&secret)) {
            panic!("a secret ({} chars) was shown: {line}", secret.len());
        }
    }
}

/// `sluice hash-password` reads the password from stdin (never argv) and prints a secret that
/// checks that password and only it, in a table the config accepts.
#[test]
fn hash_password_prints_a_scram_secret_for_the_config() {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["hash-password", "--user", "app"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run sluice hash-password");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"correct horse\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.contains("correct horse"), "{text}");
    let config = sluice::Config::from_toml(&text).expect("the output is a valid config");
    let secret = config.users["app"].password.clone().unwrap();
    let v = sluice_proto::auth::ScramVerifier::parse(&secret).expect("a SCRAM secret");
    assert_eq!(v.iterations, 4096);
    assert_eq!(
        sluice_proto::auth::ScramVerifier::from_password_with("correct horse", &v.salt, 4096),
        v
    );
    assert_ne!(
        sluice_proto::auth::ScramVerifier::from_password_with("correct horsE", &v.salt, 4096),
        v
    );
    // An empty password is refused.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("hash-password")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
}
