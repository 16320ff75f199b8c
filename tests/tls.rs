//! TLS on both sides: psql and tokio-postgres to sluice under each client mode (require,
//! verify-full, direct TLS, channel binding), sluice to a PostgreSQL with `ssl = on` in
//! verify-full, refusals (plain under require, a wrong CA, a wrong host name), and certificates
//! reloaded without dropping a session. Every CA and certificate is made here (rcgen).

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use sluice::config::PoolMode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_postgres::config::{SslMode, SslNegotiation};
use tokio_rustls::rustls;

/// sluice's client-side files in `dir`, issued by `ca`.
struct ClientSide {
    cert: PathBuf,
    key: PathBuf,
}

fn client_side(dir: &Path, ca: &TestCa) -> ClientSide {
    let pair = ca.localhost();
    ClientSide {
        cert: write_pem(dir, "sluice.crt", &pair.cert),
        key: write_pem(dir, "sluice.key", &pair.key),
    }
}

fn tls_config(pg: &PgCluster, mode: &str, files: &ClientSide) -> String {
    let config = config_for(pg, 2, PoolMode::Transaction);
    let config = set_config(&config, "pooler.client_tls_mode", mode);
    let config = set_config(
        &config,
        "pooler.client_tls_cert_file",
        files.cert.display().to_string(),
    );
    set_config(
        &config,
        "pooler.client_tls_key_file",
        files.key.display().to_string(),
    )
}

/// psql to `host` (resolved as 127.0.0.1) at `port` as `app`, with libpq's TLS variables.
async fn psql_tls(port: u16, host: &str, env: &[(&str, &str)], sql: &str) -> Output {
    let mut cmd = tokio::process::Command::new(pg_bin("psql"));
    cmd.env("PGHOST", host)
        .env("PGHOSTADDR", "127.0.0.1")
        .env("PGPORT", port.to_string())
        .env("PGDATABASE", APP_DB)
        .env("PGUSER", APP_USER)
        .env("PGPASSWORD", APP_PASSWORD)
        .env("PGCONNECT_TIMEOUT", "10")
        // No ~/.postgresql/root.crt of the machine's: each test says what to trust.
        .env("PGSSLROOTCERT", "/nonexistent/root.crt")
        .env_remove("PGSSLMODE")
        .env_remove("PGCHANNELBINDING")
        .env_remove("PGSERVICE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql]);
    run_command(&mut cmd, Duration::from_secs(60)).await
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// A rustls client config trusting `ca_pem`, offering ALPN `postgresql`.
fn rustls_client(ca_pem: &str) -> rustls::ClientConfig {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("CA PEM")).expect("add CA");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    config
}

/// tokio-postgres over TLS to sluice (host name `localhost`, verified against `ca_pem`).
async fn connect_tls(
    pooler: &Sluice,
    ca_pem: &str,
    negotiation: SslNegotiation,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let mut config = pooler.pg_config(APP_DB, APP_USER, APP_PASSWORD);
    config
        .host("localhost")
        .ssl_mode(SslMode::Require)
        .ssl_negotiation(negotiation);
    let tls = tokio_postgres_rustls::MakeRustlsConnect::new(rustls_client(ca_pem));
    let (client, conn) = within(STEP, "TLS connect", config.connect(tls)).await?;
    tokio::spawn(conn);
    Ok(client)
}

#[tokio::test]
async fn psql_require_verify_full_and_channel_binding() {
    let pg = PgCluster::start();
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("sluice test CA");
    let files = client_side(dir.path(), &ca);
    let ca_file = write_pem(dir.path(), "ca.crt", &ca.pem);
    let pooler = Sluice::start(tls_config(&pg, "require", &files));
    let port = pooler.port();

    let out = psql_tls(
        port,
        "localhost",
        &[("PGSSLMODE", "require")],
        "SELECT 'tls ok'",
    )
    .await;
    assert!(out.status.success(), "sslmode=require: {}", stderr(&out));
    assert_eq!(stdout(&out), "tls ok");

    let ca_path = ca_file.to_str().unwrap();
    let verify = [("PGSSLMODE", "verify-full"), ("PGSSLROOTCERT", ca_path)];
    let out = psql_tls(port, "localhost", &verify, "SELECT 'verified'").await;
    assert!(out.status.success(), "verify-full: {}", stderr(&out));
    assert_eq!(stdout(&out), "verified");

    // Channel binding: libpq insists on SCRAM-SHA-256-PLUS and checks sluice's certificate hash.
    let bound = [
        ("PGSSLMODE", "verify-full"),
        ("PGSSLROOTCERT", ca_path),
        ("PGCHANNELBINDING", "require"),
    ];
    let out = psql_tls(port, "localhost", &bound, "SELECT 'bound'").await;
    assert!(
        out.status.success(),
        "channel_binding=require: {}",
        stderr(&out)
    );
    assert_eq!(stdout(&out), "bound");
    // A wrong password with channel binding is still refused.
    let out = psql_tls(
        port,
        "localhost",
        &[bound[0], bound[1], bound[2], ("PGPASSWORD", "wrong")],
        "SELECT 1",
    )
    .await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("password authentication failed"),
        "{}",
        stderr(&out)
    );

    // Another CA: libpq refuses sluice's certificate.
    let other = TestCa::new("someone else's CA");
    let other_file = write_pem(dir.path(), "other-ca.crt", &other.pem);
    let wrong_ca = [
        ("PGSSLMODE", "verify-full"),
        ("PGSSLROOTCERT", other_file.to_str().unwrap()),
    ];
    let out = psql_tls(port, "localhost", &wrong_ca, "SELECT 1").await;
    assert!(!out.status.success(), "a wrong CA was accepted");
    assert!(
        stderr(&out).contains("certificate verify failed"),
        "{}",
        stderr(&out)
    );
    // A host name the certificate does not name.
    let out = psql_tls(port, "db.example.org", &verify, "SELECT 1").await;
    assert!(!out.status.success(), "a wrong host name was accepted");
    assert!(
        stderr(&out).contains("does not match host name \"db.example.org\""),
        "{}",
        stderr(&out)
    );

    // Plain under require: FATAL 28000, PostgreSQL's words for a hostssl-only pg_hba.
    let out = psql_tls(port, "localhost", &[("PGSSLMODE", "disable")], "SELECT 1").await;
    assert!(!out.status.success(), "a plain login was accepted");
    let err = stderr(&out);
    assert!(
        err.contains("no pg_hba.conf entry for host \"127.0.0.1\", user \"app\", database \"app\", no encryption"),
        "{err}"
    );
    let plain = pooler.try_connect(APP_DB, APP_USER, APP_PASSWORD).await;
    match plain {
        Ok(_) => panic!("tokio-postgres without TLS logged in under require"),
        Err(e) => assert_eq!(sqlstate(&e), Some("28000"), "{}", describe_error(&e)),
    }
}

#[tokio::test]
async fn direct_tls_and_gssenc_then_ssl() {
    let pg = PgCluster::start();
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("sluice test CA");
    let files = client_side(dir.path(), &ca);
    let pooler = Sluice::start(tls_config(&pg, "allow", &files));

    // PostgreSQL 17's sslnegotiation=direct: the ClientHello comes first, with ALPN.
    let client = connect_tls(&pooler, &ca.pem, SslNegotiation::Direct)
        .await
        .unwrap_or_else(|e| panic!("direct TLS: {}", describe_error(&e)));
    assert_eq!(
        simple_scalar(&client, "SELECT 'direct'").await.as_deref(),
        Some("direct")
    );
    // The usual SSLRequest way, with tokio-postgres too; and plain is allowed under `allow`.
    let client = connect_tls(&pooler, &ca.pem, SslNegotiation::Postgres)
        .await
        .unwrap_or_else(|e| panic!("SSLRequest: {}", describe_error(&e)));
    assert_eq!(
        simple_scalar(&client, "SELECT 2").await.as_deref(),
        Some("2")
    );
    let plain = pooler.connect_app().await;
    assert_eq!(
        simple_scalar(&plain, "SELECT 3").await.as_deref(),
        Some("3")
    );

    // Direct TLS without ALPN is closed, as PostgreSQL 17 closes it.
    let mut no_alpn = rustls_client(&ca.pem);
    no_alpn.alpn_protocols.clear();
    let tcp = tokio::net::TcpStream::connect(pooler.addr()).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(no_alpn));
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = within(STEP, "handshake", connector.connect(name, tcp))
        .await
        .expect("the handshake itself completes");
    let mut startup = bytes::BytesMut::new();
    sluice_proto::startup::write_startup(&[("user", APP_USER), ("database", APP_DB)], &mut startup);
    let _ = tls.write_all(&startup).await;
    let mut got = Vec::new();
    let _ = within(STEP, "closed", tls.read_to_end(&mut got)).await;
    assert!(got.is_empty(), "got an answer without ALPN: {got:?}");

    // GSSENCRequest: N; then an SSLRequest on the same connection: S.
    let mut tcp = tokio::net::TcpStream::connect(pooler.addr()).await.unwrap();
    let mut request = Vec::new();
    request.extend(8i32.to_be_bytes());
    request.extend(80877104i32.to_be_bytes());
    tcp.write_all(&request).await.unwrap();
    let mut answer = [0u8; 1];
    within(STEP, "GSSENC answer", tcp.read_exact(&mut answer))
        .await
        .unwrap();
    assert_eq!(answer[0], b'N');
    request[4..].copy_from_slice(&80877103i32.to_be_bytes());
    tcp.write_all(&request).await.unwrap();
    within(STEP, "SSL answer", tcp.read_exact(&mut answer))
        .await
        .unwrap();
    assert_eq!(answer[0], b'S');
}

#[tokio::test]
async fn sluice_to_postgres_in_verify_full() {
    let mut pg = PgCluster::start();
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("PostgreSQL test CA");
    // The server's certificate names localhost only: 127.0.0.1 is a wrong host name for it.
    let server = ca.issue("localhost", &["localhost"]);
    pg.enable_ssl(&server.cert, &server.key);
    let ca_file = write_pem(dir.path(), "pg-ca.crt", &ca.pem);

    let base = config_for(&pg, 2, PoolMode::Transaction);
    let base = set_config(&base, "databases.app.host", "localhost");
    let base = set_config(&base, "pooler.server_tls_mode", "verify-full");
    let config = set_config(
        &base,
        "pooler.server_tls_ca_file",
        ca_file.display().to_string(),
    );
    let pooler = Sluice::start(config);
    let client = pooler.connect_app().await;
    let ssl = simple_scalar(
        &client,
        "SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
    )
    .await;
    assert_eq!(ssl.as_deref(), Some("true"), "the server connection is TLS");

    // A cancel goes over TLS as well (it reaches the backend and stops the query).
    let cancel = client.cancel_token();
    let sleeper = tokio::spawn(async move {
        let r = client.simple_query("SELECT pg_sleep(30)").await;
        r.map(|_| ()).map_err(|e| sqlstate(&e).map(str::to_owned))
    });
    let su = pg.superuser(APP_DB).await;
    poll_until(STEP, "the sleep runs", || async {
        su.query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)' AND state = 'active'",
            &[],
        )
        .await
        .unwrap()
        .get::<_, i64>(0)
            == 1
    })
    .await;
    cancel
        .cancel_query(tokio_postgres::NoTls)
        .await
        .expect("cancel through sluice");
    let result = within(STEP, "the cancelled query ends", sleeper)
        .await
        .unwrap();
    assert_eq!(result, Err(Some("57014".to_owned())), "query_canceled");

    // The server's certificate from another CA: refused, and the client is told why.
    let other = TestCa::new("not the server's CA");
    let other_file = write_pem(dir.path(), "other.crt", &other.pem);
    let config = set_config(
        &base,
        "pooler.server_tls_ca_file",
        other_file.display().to_string(),
    );
    let wrong_ca = Sluice::start(config);
    let err = wrong_ca
        .try_connect(APP_DB, APP_USER, APP_PASSWORD)
        .await
        .expect_err("a server certificate from another CA was accepted");
    let text = describe_error(&err);
    assert!(
        text.contains("server_tls_mode = verify-full") && text.contains("UnknownIssuer"),
        "{text}"
    );

    // 127.0.0.1 is not a name the certificate has: verify-full refuses, verify-ca does not.
    let by_ip = set_config(
        &set_config(
            &base,
            "pooler.server_tls_ca_file",
            ca_file.display().to_string(),
        ),
        "databases.app.host",
        "127.0.0.1",
    );
    let wrong_name = Sluice::start(by_ip.clone());
    let err = wrong_name
        .try_connect(APP_DB, APP_USER, APP_PASSWORD)
        .await
        .expect_err("a certificate for another host name was accepted");
    let text = describe_error(&err);
    assert!(text.contains("not valid for name"), "{text}");
    let per_db = set_config(&by_ip, "databases.app.server_tls_mode", "verify-ca");
    let ca_only = Sluice::start(per_db);
    let client = ca_only.connect_app().await;
    assert_eq!(
        simple_scalar(
            &client,
            "SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
        )
        .await
        .as_deref(),
        Some("true")
    );
}

#[tokio::test]
async fn certificates_reload_without_dropping_sessions() {
    let pg = PgCluster::start();
    let dir = tempfile::tempdir().unwrap();
    let first = TestCa::new("first CA");
    let files = client_side(dir.path(), &first);
    let path = dir.path().join("sluice.toml");
    std::fs::write(&path, tls_config(&pg, "require", &files)).unwrap();
    let pooler = Sluice::start_file(&path);

    let session = connect_tls(&pooler, &first.pem, SslNegotiation::Postgres)
        .await
        .unwrap_or_else(|e| panic!("first certificate: {}", describe_error(&e)));
    assert_eq!(
        simple_scalar(&session, "SELECT 1").await.as_deref(),
        Some("1")
    );

    // New certificate and key from another CA, then RELOAD.
    let second = TestCa::new("second CA");
    let pair = second.localhost();
    std::fs::write(&files.cert, &pair.cert).unwrap();
    std::fs::write(&files.key, &pair.key).unwrap();
    let notes = sluice::reload::apply(pooler.shared()).expect("reload");
    assert!(
        notes
            .iter()
            .any(|n| n.contains("TLS certificates and keys read again")),
        "{notes:?}"
    );
    // The open session goes on, over its TLS connection made with the first certificate.
    assert_eq!(
        simple_scalar(&session, "SELECT 2").await.as_deref(),
        Some("2")
    );
    // New connections get the second certificate.
    let err = connect_tls(&pooler, &first.pem, SslNegotiation::Postgres)
        .await
        .expect_err("the first CA still verifies after the reload");
    assert!(
        describe_error(&err).contains("UnknownIssuer"),
        "{}",
        describe_error(&err)
    );
    let fresh = connect_tls(&pooler, &second.pem, SslNegotiation::Postgres)
        .await
        .unwrap_or_else(|e| panic!("second certificate: {}", describe_error(&e)));
    assert_eq!(
        simple_scalar(&fresh, "SELECT 3").await.as_deref(),
        Some("3")
    );

    // A bad key file: the reload is refused naming the key, and the certificate in force stays.
    std::fs::write(&files.key, "not a key\n").unwrap();
    let err = sluice::reload::apply(pooler.shared()).expect_err("a bad key was accepted");
    assert!(err.starts_with("pooler.client_tls_key_file: "), "{err}");
    let again = connect_tls(&pooler, &second.pem, SslNegotiation::Postgres)
        .await
        .unwrap_or_else(|e| panic!("after a refused reload: {}", describe_error(&e)));
    assert_eq!(
        simple_scalar(&again, "SELECT 4").await.as_deref(),
        Some("4")
    );
    assert_eq!(
        simple_scalar(&session, "SELECT 5").await.as_deref(),
        Some("5")
    );
}

#[tokio::test]
async fn client_certificates_under_verify_ca() {
    use std::os::unix::fs::PermissionsExt;
    let pg = PgCluster::start();
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("sluice test CA");
    let files = client_side(dir.path(), &ca);
    let client_ca = TestCa::new("client CA");
    let client_ca_file = write_pem(dir.path(), "client-ca.crt", &client_ca.pem);
    let config = set_config(
        &tls_config(&pg, "verify-ca", &files),
        "pooler.client_tls_ca_file",
        client_ca_file.display().to_string(),
    );
    let pooler = Sluice::start(config);
    let port = pooler.port();
    // libpq wants the key readable by its owner only.
    let pair_files = |name: &str, pair: &CertPair| {
        let cert = write_pem(dir.path(), &format!("{name}.crt"), &pair.cert);
        let key = write_pem(dir.path(), &format!("{name}.key"), &pair.key);
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        (cert.display().to_string(), key.display().to_string())
    };

    let (cert, key) = pair_files("app", &client_ca.issue("app", &[]));
    let with_cert = [
        ("PGSSLMODE", "require"),
        ("PGSSLCERT", cert.as_str()),
        ("PGSSLKEY", key.as_str()),
    ];
    let out = psql_tls(port, "localhost", &with_cert, "SELECT 'certified'").await;
    assert!(
        out.status.success(),
        "a good client certificate: {}",
        stderr(&out)
    );
    assert_eq!(stdout(&out), "certified");

    // No certificate: the handshake fails (rustls's alert names it).
    let out = psql_tls(port, "localhost", &[("PGSSLMODE", "require")], "SELECT 1").await;
    assert!(
        !out.status.success(),
        "logged in without a client certificate"
    );
    assert!(
        stderr(&out).contains("certificate required"),
        "{}",
        stderr(&out)
    );

    // A certificate from another CA.
    let (cert, key) = pair_files("stranger", &ca.issue("app", &[]));
    let stranger = [
        ("PGSSLMODE", "require"),
        ("PGSSLCERT", cert.as_str()),
        ("PGSSLKEY", key.as_str()),
    ];
    let out = psql_tls(port, "localhost", &stranger, "SELECT 1").await;
    assert!(
        !out.status.success(),
        "a certificate from another CA was accepted"
    );
    assert!(stderr(&out).contains("unknown ca"), "{}", stderr(&out));
}

/// A driver's whole check script over TLS (`sslmode=verify-full` against the test CA), through
/// a transaction pool of 5 that refuses plain logins, so every check ran encrypted.
async fn driver_over_tls(driver: Driver) {
    if !driver.available() {
        return;
    }
    let pg = PgCluster::start();
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("sluice test CA");
    let files = client_side(dir.path(), &ca);
    let ca_file = write_pem(dir.path(), "ca.crt", &ca.pem);
    let config = set_config(
        &tls_config(&pg, "require", &files),
        "databases.app.pool_size",
        5,
    );
    let pooler = Sluice::start(set_config(&config, "pooler.default_pool_size", 5));
    let mut target = DriverTarget::new(pooler.port(), APP_DB, APP_USER, APP_PASSWORD);
    target.sslmode = Some("verify-full".into());
    target.sslrootcert = Some(ca_file);
    let passed = driver.check(&target).await;
    for check in [
        "select",
        "prepared",
        "transactions",
        "error recovery",
        "concurrent",
    ] {
        assert!(
            passed.iter().any(|p| p == check),
            "{} over TLS: {check} missing from {passed:?}",
            driver.name()
        );
    }
}

#[tokio::test]
async fn psycopg_over_tls() {
    driver_over_tls(Driver::Psycopg).await;
}

#[tokio::test]
async fn asyncpg_over_tls() {
    driver_over_tls(Driver::Asyncpg).await;
}

#[tokio::test]
async fn node_postgres_over_tls() {
    driver_over_tls(Driver::NodePostgres).await;
}

#[tokio::test]
async fn pgjdbc_over_tls() {
    driver_over_tls(Driver::Jdbc).await;
}
