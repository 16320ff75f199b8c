//! Client authentication at the pooler, server login as other users and methods, and start-up
//! packets that are not what they should be.

mod common;

use common::*;
use sluice::config::PoolMode;

/// The client still gets served after whatever the test did.
async fn normal_client_works(pooler: &Sluice) {
    let c = pooler.connect_app().await;
    assert_eq!(
        simple_scalar(&c, "SELECT 'ok'").await.as_deref(),
        Some("ok")
    );
}

fn expect_sqlstate(
    r: Result<tokio_postgres::Client, tokio_postgres::Error>,
    code: &str,
    what: &str,
) {
    match r {
        Ok(_) => panic!("{what}: logged in"),
        Err(e) => assert_eq!(sqlstate(&e), Some(code), "{what}: {}", describe_error(&e)),
    }
}

#[tokio::test]
async fn bad_credentials_and_unknown_names_are_refused_with_their_sqlstate() {
    let pg = PgCluster::start();
    let pooler = Sluice::start(config_for(&pg, 2, PoolMode::Transaction));
    expect_sqlstate(
        pooler.try_connect(APP_DB, APP_USER, "wrong").await,
        "28P01",
        "wrong password",
    );
    expect_sqlstate(
        pooler.try_connect(APP_DB, APP_USER, "").await,
        "28P01",
        "empty password",
    );
    expect_sqlstate(
        pooler.try_connect(APP_DB, "nosuchuser", "whatever").await,
        "28P01",
        "unknown user",
    );
    expect_sqlstate(
        pooler.try_connect("nosuchdb", APP_USER, APP_PASSWORD).await,
        "3D000",
        "unknown database",
    );
    normal_client_works(&pooler).await;
}

#[tokio::test]
async fn scram_is_the_default_client_method() {
    let pg = PgCluster::start();
    let pooler = Sluice::start(config_for(&pg, 2, PoolMode::Transaction));
    let raw = RawConn::connect(pooler.addr(), APP_USER, APP_DB, Some(APP_PASSWORD), &[])
        .await
        .expect("SCRAM login");
    assert_eq!(raw.auth, AuthRequest::Sasl(vec!["SCRAM-SHA-256".into()]));
    assert!(raw.backend_key.is_some(), "no BackendKeyData");
    for p in [
        "server_version",
        "client_encoding",
        "standard_conforming_strings",
        "DateStyle",
        "TimeZone",
    ] {
        assert!(
            raw.params.contains_key(p),
            "no ParameterStatus {p}: {:?}",
            raw.params
        );
    }
    raw.terminate().await;
    match RawConn::connect(pooler.addr(), APP_USER, APP_DB, Some("wrong"), &[]).await {
        Err(RawError::Server(f)) => assert_eq!(f.code(), Some("28P01"), "{f:?}"),
        other => panic!("SCRAM with a wrong password: {:?}", other.err()),
    }
}

#[tokio::test]
async fn md5_client_auth() {
    let pg = PgCluster::start();
    let config = set_config(
        &config_for(&pg, 2, PoolMode::Transaction),
        "users.app.auth_type",
        "md5",
    );
    let pooler = Sluice::start(config);
    let raw = RawConn::connect(pooler.addr(), APP_USER, APP_DB, Some(APP_PASSWORD), &[])
        .await
        .expect("md5 login");
    assert_eq!(raw.auth, AuthRequest::Md5);
    raw.terminate().await;
    match RawConn::connect(pooler.addr(), APP_USER, APP_DB, Some("wrong"), &[]).await {
        Err(RawError::Server(f)) => assert_eq!(f.code(), Some("28P01"), "{f:?}"),
        other => panic!("md5 with a wrong password: {:?}", other.err()),
    }
    // tokio-postgres speaks md5 too.
    let c = pooler.connect_app().await;
    assert_eq!(
        simple_scalar(&c, "SELECT current_user").await.as_deref(),
        Some(APP_USER)
    );
    expect_sqlstate(
        pooler.try_connect(APP_DB, APP_USER, "wrong").await,
        "28P01",
        "md5, wrong password",
    );
}

#[tokio::test]
async fn stored_md5_and_scram_secrets_with_a_server_user() {
    // The pooler cannot log in to PostgreSQL with a hash, so these users go in as server_user.
    let pg = PgCluster::start();
    let mut config = config_for(&pg, 2, PoolMode::Transaction);
    config = set_config(
        &config,
        "users.alice.password",
        postgres_protocol::password::md5(b"alice-pw", "alice"),
    );
    config = set_config(&config, "users.alice.auth_type", "md5");
    config = set_config(
        &config,
        "users.bob.password",
        postgres_protocol::password::scram_sha_256(b"bob-pw"),
    );
    config = set_config(&config, "databases.app.server_user", APP_USER);
    config = set_config(&config, "databases.app.server_password", APP_PASSWORD);
    let pooler = Sluice::start(config);

    let raw = RawConn::connect(pooler.addr(), "alice", APP_DB, Some("alice-pw"), &[])
        .await
        .expect("alice, md5 hash");
    assert_eq!(raw.auth, AuthRequest::Md5);
    raw.terminate().await;
    let alice = pooler.connect(APP_DB, "alice", "alice-pw").await;
    assert_eq!(
        simple_scalar(&alice, "SELECT current_user")
            .await
            .as_deref(),
        Some(APP_USER)
    );
    expect_sqlstate(
        pooler.try_connect(APP_DB, "alice", "wrong").await,
        "28P01",
        "alice, wrong password",
    );

    let bob = pooler.connect(APP_DB, "bob", "bob-pw").await;
    assert_eq!(
        simple_scalar(&bob, "SELECT current_user").await.as_deref(),
        Some(APP_USER)
    );
    expect_sqlstate(
        pooler.try_connect(APP_DB, "bob", "wrong").await,
        "28P01",
        "bob, wrong password",
    );
}

#[tokio::test]
async fn trust_client_auth() {
    let pg = PgCluster::start();
    let config = set_config(
        &config_for(&pg, 2, PoolMode::Transaction),
        "users.app.auth_type",
        "trust",
    );
    let pooler = Sluice::start(config);
    let raw = RawConn::connect(pooler.addr(), APP_USER, APP_DB, None, &[])
        .await
        .expect("trust login");
    assert_eq!(raw.auth, AuthRequest::Ok);
    raw.terminate().await;
    // Any password (or none) will do; the server login still uses app's configured password.
    let c = pooler.connect(APP_DB, APP_USER, "ignored").await;
    assert_eq!(
        simple_scalar(&c, "SELECT current_user").await.as_deref(),
        Some(APP_USER)
    );
    // Trust is per user: md5user still needs its password.
    expect_sqlstate(
        pooler.try_connect(APP_DB, MD5_USER, "wrong").await,
        "28P01",
        "md5user, wrong password",
    );
}

#[tokio::test]
async fn server_login_with_md5_and_trust() {
    // PostgreSQL asks md5user for md5 and trustuser for nothing (see the harness's pg_hba).
    let pg = PgCluster::start();
    let pooler = Sluice::start(config_for(&pg, 2, PoolMode::Transaction));
    let m = pooler.connect(APP_DB, MD5_USER, MD5_PASSWORD).await;
    assert_eq!(
        simple_scalar(&m, "SELECT current_user").await.as_deref(),
        Some(MD5_USER)
    );
    let t = pooler.connect(APP_DB, TRUST_USER, TRUST_PASSWORD).await;
    assert_eq!(
        simple_scalar(&t, "SELECT current_user").await.as_deref(),
        Some(TRUST_USER)
    );
    // Client auth at the pooler is still enforced for them.
    expect_sqlstate(
        pooler.try_connect(APP_DB, TRUST_USER, "wrong").await,
        "28P01",
        "trustuser, wrong password",
    );
}

#[tokio::test]
async fn malformed_startup_packets_get_an_error_and_a_close() {
    let pg = PgCluster::start();
    let pooler = Sluice::start(config_for(&pg, 2, PoolMode::Transaction));

    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        // Length 3: shorter than the length field itself.
        ("length 3", vec![0, 0, 0, 3, 0, 3, 0, 0]),
        // Length 2^31-1: a pooler that believes it would wait for 2 GB.
        (
            "huge length",
            [
                &[0x7f, 0xff, 0xff, 0xff][..],
                &[0, 3, 0, 0],
                b"user\0app\0\0",
            ]
            .concat(),
        ),
        // A negative length.
        ("negative length", vec![0xff, 0xff, 0xff, 0xf0, 0, 3, 0, 0]),
        // A well-framed packet with protocol version 9.9.
        (
            "unknown protocol",
            [&[0, 0, 0, 22][..], &[0, 9, 0, 9], b"user\0app\0\0\0\0\0\0"].concat(),
        ),
        // Protocol 3.0 without the terminating NUL of the parameter list.
        (
            "unterminated parameters",
            [&[0, 0, 0, 16][..], &[0, 3, 0, 0], b"user\0app"].concat(),
        ),
        // Protocol 3.0 without a user.
        (
            "no user",
            [&[0, 0, 0, 22][..], &[0, 3, 0, 0], b"database\0app\0\0"].concat(),
        ),
        // An HTTP request sent to the wrong port.
        (
            "http",
            b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
        ),
    ];
    // A deterministic stream of "random" bytes (xorshift), its first byte non-zero so its length
    // field is far too large.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let random: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    assert_ne!(random[0], 0);
    cases.push(("random bytes", random));

    for (what, bytes) in cases {
        let reply = exchange_until_closed(pooler.addr(), &bytes).await;
        assert_eq!(
            reply.first(),
            Some(&b'E'),
            "{what}: expected an ErrorResponse, got {reply:?}"
        );
        normal_client_works(&pooler).await;
    }
}

#[tokio::test]
async fn ssl_and_gssenc_requests_are_declined_and_startup_goes_on() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let pg = PgCluster::start();
    let pooler = Sluice::start(config_for(&pg, 2, PoolMode::Transaction));
    for (what, code) in [("SSLRequest", 80877103u32), ("GSSENCRequest", 80877104u32)] {
        let mut s = tokio::net::TcpStream::connect(pooler.addr()).await.unwrap();
        let mut req = 8u32.to_be_bytes().to_vec();
        req.extend_from_slice(&code.to_be_bytes());
        s.write_all(&req).await.unwrap();
        let mut answer = [0u8; 1];
        within(STEP, what, s.read_exact(&mut answer)).await.unwrap();
        assert_eq!(answer[0], b'N', "{what}");
        // Then an ordinary startup on the same connection.
        let mut startup = bytes::BytesMut::new();
        postgres_protocol::message::frontend::startup_message(
            [("user", APP_USER), ("database", APP_DB)],
            &mut startup,
        )
        .unwrap();
        s.write_all(&startup).await.unwrap();
        let mut buf = bytes::BytesMut::new();
        let (tag, body) = within(STEP, "auth request", read_message(&mut s, &mut buf))
            .await
            .unwrap()
            .expect("a reply");
        assert_eq!(tag, b'R', "{what}: expected an authentication request");
        assert_eq!(
            i32::from_be_bytes(body[..4].try_into().unwrap()),
            10,
            "{what}: expected SASL"
        );
    }
    // psql tries SSL first by default (sslmode=prefer).
    let out = pooler.psql(&["-At", "-c", "SELECT 'via psql'"]).await;
    assert!(out.status.success(), "{}", describe_output(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "via psql");
}
