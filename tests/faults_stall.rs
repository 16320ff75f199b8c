//! The stalled link (issue 16's fault suite): the link between sluice and PostgreSQL goes silent
//! (the fault proxy stops forwarding, sockets open) and each timeout ends the wait with its
//! SQLSTATE. Nothing hangs (every wait is bounded), no server connection on the dead link is lent
//! again, and none is given back mid-transaction (checked on the PostgreSQL side: the backend is
//! gone once the link passes again, its transaction rolled back).
//!
//! Also here, because they are what a silent peer costs: `client_login_timeout` (silent clients
//! holding `max_client_conn`) and the TCP keepalive settings of server sockets.

mod common;

use std::time::{Duration, Instant};

use common::*;
use sluice::config::PoolMode;
use tokio::io::AsyncReadExt;

/// A pooler config for `pg` reached through `proxy`, with `settings` (dotted key, value) on top.
fn through(
    proxy: &FaultProxy,
    pg: &PgCluster,
    size: usize,
    mode: PoolMode,
    settings: &[(&str, toml::Value)],
) -> String {
    let mut config = set_config(
        &config_for(pg, size, mode),
        "databases.app.port",
        i64::from(proxy.port()),
    );
    for (key, value) in settings {
        config = set_config(&config, key, value.clone());
    }
    config
}

fn s(v: &str) -> toml::Value {
    toml::Value::String(v.into())
}

/// The pool's (idle, open) server connections.
fn idle_open(pooler: &Sluice) -> (usize, usize) {
    let (idle, open, _) = pooler.pool(APP_DB, APP_USER).counts();
    (idle, open)
}

/// Reads the unasked FATAL a raw session gets, then the close.
async fn expect_fatal(conn: &mut RawConn) -> ErrorFields {
    let (tag, body) = conn.recv().await.expect("an error before the close");
    assert_eq!(
        tag, b'E',
        "expected an ErrorResponse, got {:?}",
        tag as char
    );
    let err = ErrorFields::parse(&body);
    assert_eq!(
        err.0.get(&b'S').map(String::as_str),
        Some("FATAL"),
        "{err:?}"
    );
    match conn.recv().await {
        Err(RawError::Unexpected(why)) => assert!(why.contains("EOF"), "{why}"),
        other => panic!("the session should end after its FATAL, got {other:?}"),
    }
    err
}

#[tokio::test]
async fn query_timeout_gives_up_a_query_on_a_stalled_link() {
    let pg = PgCluster::start();
    let su = pg.superuser(APP_DB).await;
    let proxy = FaultProxy::start(pg.addr());
    let config = through(
        &proxy,
        &pg,
        2,
        PoolMode::Transaction,
        &[("pooler.query_timeout", s("1s"))],
    );
    let pooler = Sluice::start(config);
    let c = pooler.connect_app().await;
    let pid = backend_pid(&c).await;

    proxy.set(Fault::Stall);
    let started = Instant::now();
    let e = within(
        STEP,
        "a query on the stalled link",
        c.simple_query("SELECT 1"),
    )
    .await
    .expect_err("the link is stalled");
    let waited = started.elapsed();
    eprintln!("client saw: {} after {waited:?}", describe_error(&e));
    assert_eq!(sqlstate(&e), Some("57014"), "{}", describe_error(&e));
    assert!(
        e.as_db_error()
            .is_some_and(|d| d.message().contains("query timeout")),
        "{}",
        describe_error(&e)
    );
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "query_timeout is 1s, the error came after {waited:?}"
    );
    // The connection on the dead link was closed, not given back: never idle in the pool, and
    // its slot freed once the cancel sent ahead of the close (itself stalled, bounded by
    // server_connect_timeout) gives up.
    assert_eq!(idle_open(&pooler).0, 0);
    poll_until(
        Duration::from_secs(10),
        "the stalled connection's slot freed",
        || async { idle_open(&pooler) == (0, 0) },
    )
    .await;

    // Once the link passes again, PostgreSQL sees the close: its backend is gone.
    proxy.set(Fault::Pass);
    wait_backend_gone(&su, pid).await;
    // The session carries on, on a new server connection.
    let again = within(STEP, "the next query", backend_pid(&c)).await;
    assert_ne!(again, pid);
}

#[tokio::test]
async fn query_timeout_cancels_the_query_on_the_server() {
    // A slow query on a healthy link: the server connection is not only closed (PostgreSQL would
    // not notice that before the query ends) but the query is cancelled.
    let pg = PgCluster::start();
    let su = pg.superuser(APP_DB).await;
    let proxy = FaultProxy::start(pg.addr());
    let config = through(
        &proxy,
        &pg,
        2,
        PoolMode::Transaction,
        &[("pooler.query_timeout", s("1s"))],
    );
    let pooler = Sluice::start(config);
    let c = pooler.connect_app().await;
    let pid = backend_pid(&c).await;
    let e = within(STEP, "a slow query", c.simple_query("SELECT pg_sleep(60)"))
        .await
        .expect_err("query_timeout is 1s");
    assert_eq!(sqlstate(&e), Some("57014"), "{}", describe_error(&e));
    // Cancelled: the backend stops sleeping, then sees the closed connection and exits.
    poll_until(
        Duration::from_secs(10),
        "the slow query to stop",
        || async {
            let running: i64 = su
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = $1",
                    &[&pid],
                )
                .await
                .unwrap()
                .get(0);
            running == 0
        },
    )
    .await;
    assert_eq!(idle_open(&pooler), (0, 0));
    assert_eq!(
        simple_scalar(&c, "SELECT 1").await.as_deref(),
        Some("1"),
        "the session carries on"
    );
}

#[tokio::test]
async fn the_timeouts_count_per_request_and_per_pause_not_per_session() {
    // A transaction longer than every timeout, made of short statements with short pauses:
    // none of them fires.
    let pg = PgCluster::start();
    let mut config = config_for(&pg, 2, PoolMode::Transaction);
    for key in [
        "pooler.query_timeout",
        "pooler.idle_transaction_timeout",
        "pooler.client_idle_timeout",
    ] {
        config = set_config(&config, key, s("1s"));
    }
    let pooler = Sluice::start(config);
    let c = pooler.connect_app().await;
    let started = Instant::now();
    c.batch_execute("BEGIN").await.unwrap();
    while started.elapsed() < Duration::from_millis(2500) {
        within(
            STEP,
            "a short query",
            c.batch_execute("SELECT pg_sleep(0.2)"),
        )
        .await
        .unwrap_or_else(|e| panic!("{}", describe_error(&e)));
        // Pacing, not synchronisation: the client thinks between statements.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    within(STEP, "COMMIT", c.batch_execute("COMMIT"))
        .await
        .unwrap_or_else(|e| panic!("{}", describe_error(&e)));
    assert_eq!(simple_scalar(&c, "SELECT 1").await.as_deref(), Some("1"));
}

#[tokio::test]
async fn idle_transaction_timeout_ends_the_session_and_rolls_back() {
    let pg = PgCluster::start();
    let su = pg.superuser(APP_DB).await;
    let owner = pg.connect_direct(APP_DB, APP_USER, APP_PASSWORD).await;
    owner
        .batch_execute("CREATE TABLE t(x int PRIMARY KEY)")
        .await
        .unwrap();
    let proxy = FaultProxy::start(pg.addr());
    let config = through(
        &proxy,
        &pg,
        2,
        PoolMode::Transaction,
        &[("pooler.idle_transaction_timeout", s("1s"))],
    );
    let pooler = Sluice::start(config);
    let mut c = RawConn::connect_app(pooler.addr()).await;
    c.simple_query("BEGIN").await.unwrap();
    c.simple_query("INSERT INTO t VALUES (1)").await.unwrap();
    let pid: i32 = {
        c.send_query("SELECT pg_backend_pid()").await.unwrap();
        let msgs = c.recv_until_ready(1).await.unwrap();
        let row = msgs.iter().find(|(tag, _)| *tag == b'D').expect("a row");
        // DataRow: column count (2 bytes), length (4), then the text.
        std::str::from_utf8(&row.1[6..]).unwrap().parse().unwrap()
    };

    proxy.set(Fault::Stall);
    let started = Instant::now();
    let err = expect_fatal(&mut c).await;
    let waited = started.elapsed();
    eprintln!("client saw: {:?} after {waited:?}", err.message());
    assert_eq!(err.code(), Some("25P03"), "{err:?}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    // Its server connection was mid-transaction: closed, not given back.
    poll_until(STEP, "the server connection to be closed", || async {
        idle_open(&pooler) == (0, 0)
    })
    .await;

    // PostgreSQL rolls the transaction back once it sees the close.
    proxy.set(Fault::Pass);
    wait_backend_gone(&su, pid).await;
    assert_eq!(
        simple_scalar(&owner, "SELECT count(*) FROM t")
            .await
            .as_deref(),
        Some("0")
    );
    // The key it held is free.
    within(
        STEP,
        "an insert of the same key",
        owner.batch_execute("INSERT INTO t VALUES (1)"),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn client_idle_timeout_ends_idle_sessions_even_on_a_stalled_link() {
    let pg = PgCluster::start();
    let proxy = FaultProxy::start(pg.addr());
    // Session mode: the idle client holds a server connection, here on the stalled link.
    let config = through(
        &proxy,
        &pg,
        2,
        PoolMode::Session,
        &[("pooler.client_idle_timeout", s("1s"))],
    );
    let pooler = Sluice::start(config);
    let mut c = RawConn::connect_app(pooler.addr()).await;
    c.simple_query("SET statement_timeout = '12345s'")
        .await
        .unwrap();

    proxy.set(Fault::Stall);
    let started = Instant::now();
    let err = expect_fatal(&mut c).await;
    let waited = started.elapsed();
    assert_eq!(err.code(), Some("57P05"), "{err:?}");
    assert!(
        waited >= Duration::from_millis(500) && waited < Duration::from_secs(5),
        "{waited:?}"
    );

    // The connection it held is reset before anyone else gets it.
    proxy.set(Fault::Pass);
    let next = pooler.connect_app().await;
    assert_eq!(
        simple_scalar(&next, "SHOW statement_timeout")
            .await
            .as_deref(),
        Some("0")
    );

    // Transaction mode, no server held: an idle client is closed just the same, and a client
    // that keeps asking is not.
    let config = through(
        &proxy,
        &pg,
        2,
        PoolMode::Transaction,
        &[("pooler.client_idle_timeout", s("1s"))],
    );
    let pooler = Sluice::start(config);
    let mut idle = RawConn::connect_app(pooler.addr()).await;
    let busy = pooler.connect_app().await;
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        assert_eq!(simple_scalar(&busy, "SELECT 1").await.as_deref(), Some("1"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(expect_fatal(&mut idle).await.code(), Some("57P05"));
    assert_eq!(simple_scalar(&busy, "SELECT 2").await.as_deref(), Some("2"));
}

#[tokio::test]
async fn server_check_delay_keeps_clients_off_an_idle_connection_on_a_dead_link() {
    let pg = PgCluster::start();
    let su = pg.superuser(APP_DB).await;
    let proxy = FaultProxy::start(pg.addr());
    let config = through(
        &proxy,
        &pg,
        1,
        PoolMode::Transaction,
        &[("pooler.server_check_delay", s("300ms"))],
    );
    let pooler = Sluice::start(config);
    let c = pooler.connect_app().await;
    let pid = backend_pid(&c).await;
    assert_eq!(proxy.accepted(), 1);

    // The link of the idle connection goes silent (a firewall forgot the flow); new connections
    // work.
    proxy.set_existing(Fault::Stall);
    let pool = pooler.pool(APP_DB, APP_USER);
    poll_until(
        STEP,
        "the idle connection to be due for a check",
        || async { pool.checks_due() == 1 },
    )
    .await;
    let started = Instant::now();
    let fresh = within(
        STEP,
        "a query after the idle connection's link died",
        backend_pid(&c),
    )
    .await;
    let waited = started.elapsed();
    eprintln!("served after {waited:?}");
    assert_ne!(fresh, pid, "the connection on the dead link was lent");
    assert_eq!(proxy.accepted(), 2, "one new server connection");
    // The check waits server_connect_timeout (3s in the test config) for its answer.
    assert!(waited < Duration::from_secs(6), "{waited:?}");
    assert_eq!(idle_open(&pooler), (1, 1));

    // The dead one was closed: PostgreSQL sees it once the link passes again.
    proxy.set(Fault::Pass);
    wait_backend_gone(&su, pid).await;
}

#[tokio::test]
async fn a_fully_stalled_link_fails_checkouts_in_bounded_time() {
    // Old and new connections alike hang: the check fails, then the new connection times out.
    let pg = PgCluster::start();
    let proxy = FaultProxy::start(pg.addr());
    let config = through(
        &proxy,
        &pg,
        1,
        PoolMode::Transaction,
        &[
            ("pooler.server_check_delay", s("200ms")),
            ("pooler.server_connect_timeout", s("1s")),
        ],
    );
    let pooler = Sluice::start(config);
    let c = pooler.connect_app().await;
    backend_pid(&c).await;
    proxy.set(Fault::Stall);
    let pool = pooler.pool(APP_DB, APP_USER);
    poll_until(
        STEP,
        "the idle connection to be due for a check",
        || async { pool.checks_due() == 1 },
    )
    .await;
    let started = Instant::now();
    let e = within(
        STEP,
        "a query on the stalled link",
        c.simple_query("SELECT 1"),
    )
    .await
    .expect_err("nothing answers");
    let waited = started.elapsed();
    eprintln!("client saw: {} after {waited:?}", describe_error(&e));
    assert_eq!(sqlstate(&e), Some("08001"), "{}", describe_error(&e));
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    assert_eq!(idle_open(&pooler), (0, 0));
    // Service resumes with the link.
    proxy.set(Fault::Pass);
    poll_until(STEP, "a query to succeed again", || async {
        c.simple_query("SELECT 1").await.is_ok()
    })
    .await;
}

#[tokio::test]
async fn client_login_timeout_frees_the_places_of_silent_clients() {
    let pg = PgCluster::start();
    let mut config = config_for(&pg, 2, PoolMode::Transaction);
    config = set_config(&config, "pooler.max_client_conn", 4);
    config = set_config(&config, "pooler.client_login_timeout", s("1s"));
    let pooler = Sluice::start(config);
    // Four connections that never say a word hold every place.
    let mut silent = Vec::new();
    for _ in 0..4 {
        silent.push(
            tokio::net::TcpStream::connect(pooler.addr())
                .await
                .expect("connect"),
        );
    }
    poll_until(STEP, "the silent clients to be accepted", || async {
        pooler.shared().clients.connections() == 4
    })
    .await;
    let e = pooler
        .try_connect(APP_DB, APP_USER, APP_PASSWORD)
        .await
        .expect_err("every place is taken");
    assert_eq!(sqlstate(&e), Some("53300"), "{}", describe_error(&e));

    // Each is told why and closed after client_login_timeout, and a real client gets in.
    for sock in &mut silent {
        let mut got = Vec::new();
        within(
            STEP,
            "a silent client to be closed",
            sock.read_to_end(&mut got),
        )
        .await
        .expect("read until closed");
        assert_eq!(got.first(), Some(&b'E'), "{got:?}");
        let err = ErrorFields::parse(&got[5..]);
        assert_eq!(err.code(), Some("57P03"), "{err:?}");
        assert_eq!(
            err.message(),
            Some("canceling authentication due to timeout")
        );
    }
    let c = within(
        STEP,
        "a real client",
        pooler.try_connect(APP_DB, APP_USER, APP_PASSWORD),
    )
    .await
    .unwrap_or_else(|e| panic!("{}", describe_error(&e)));
    assert_eq!(simple_scalar(&c, "SELECT 1").await.as_deref(), Some("1"));
}

/// The keepalive timer of the TCP connection from `local`, from /proc/net/tcp: (timer kind,
/// seconds left). Kind 2 is the keepalive timer, 0 none.
fn tcp_timer(local: std::net::SocketAddr) -> Option<(u32, f64)> {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    let want = format!(":{:04X}", local.port());
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        // sl local rem st tx:rx tr:when ...
        if !f[1].ends_with(&want) || f[3] != "01" {
            return None;
        }
        let (kind, when) = f[5].split_once(':')?;
        // In clock ticks (USER_HZ, 100 a second on Linux).
        let ticks = u64::from_str_radix(when, 16).ok()?;
        Some((u32::from_str_radix(kind, 16).ok()?, ticks as f64 / 100.0))
    })
}

#[tokio::test]
async fn server_sockets_get_the_configured_keepalive() {
    let pg = PgCluster::start();
    let proxy = FaultProxy::start(pg.addr());
    let config = through(
        &proxy,
        &pg,
        1,
        PoolMode::Transaction,
        &[
            ("pooler.tcp_keepidle", s("60s")),
            ("pooler.tcp_keepintvl", s("5s")),
            ("pooler.tcp_keepcnt", toml::Value::Integer(3)),
        ],
    );
    let pooler = Sluice::start(config);
    let c = pooler.connect_app().await;
    backend_pid(&c).await;
    let peers = proxy.peers();
    assert_eq!(peers.len(), 1);
    // sluice's end of its server connection, idle in the pool: its keepalive timer runs at
    // tcp_keepidle (the OS's default would be 7200s).
    poll_until(STEP, "the keepalive timer to run", || async {
        matches!(tcp_timer(peers[0]), Some((2, left)) if left > 30.0 && left <= 60.0)
    })
    .await;
    drop(pooler);

    // Keepalive off: no timer on an idle connection.
    let config = through(
        &proxy,
        &pg,
        1,
        PoolMode::Transaction,
        &[("pooler.tcp_keepalive", toml::Value::Boolean(false))],
    );
    let pooler = Sluice::start(config);
    let c = pooler.connect_app().await;
    backend_pid(&c).await;
    let peers = proxy.peers();
    let last = *peers.last().expect("a second link");
    assert!(
        matches!(tcp_timer(last), Some((0, _))),
        "{:?}",
        tcp_timer(last)
    );
}
