//! Self-test of the harness, against PostgreSQL directly (no pooler involved except the
//! start/shutdown plumbing of `Sluice`): the cluster starts whether we are root or not, each role
//! authenticates the way the pooler tests rely on, a replica streams from its primary, and the
//! clusters clean up after themselves.

mod common;

use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use common::*;
use sluice::config::PoolMode;

fn postmaster_pid(pg: &PgCluster) -> u32 {
    let text =
        std::fs::read_to_string(pg.data_dir().join("postmaster.pid")).expect("read postmaster.pid");
    text.lines()
        .next()
        .expect("pid line")
        .trim()
        .parse()
        .expect("pid")
}

/// The effective uid of a process, from /proc.
fn euid_of(pid: u32) -> u32 {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .expect("Uid line");
    line.split_whitespace()
        .nth(2)
        .expect("euid")
        .parse()
        .expect("uid")
}

#[tokio::test]
async fn cluster_runs_as_an_unprivileged_user_and_cleans_up() {
    let pg = PgCluster::start();
    eprintln!(
        "template build in this process: {:?}; cluster start: {:?}; root: {}",
        TEMPLATE_BUILD_TIME.get(),
        pg.start_time,
        running_as_root()
    );
    let pid = postmaster_pid(&pg);
    let euid = euid_of(pid);
    assert_ne!(euid, 0, "the postmaster must never run as root");
    assert_eq!(euid, postgres_uid());
    assert_eq!(
        std::fs::metadata(pg.data_dir()).unwrap().uid(),
        postgres_uid()
    );

    let su = pg.superuser("postgres").await;
    let row = su
        .query_one(
            "SELECT current_setting('port')::int, current_setting('fsync')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), i32::from(pg.port()));
    assert_eq!(row.get::<_, String>(1), "off");
    drop(su);

    let data = pg.data_dir();
    let port = pg.port();
    drop(pg);
    assert!(
        !data.exists(),
        "data directory {} left behind",
        data.display()
    );
    // Gone, or a zombie nobody has reaped yet (PID 1 here need not reap orphans).
    let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok();
    let state = state
        .as_deref()
        .and_then(|s| s.rsplit(") ").next())
        .and_then(|s| s.chars().next());
    assert!(
        matches!(state, None | Some('Z')),
        "postmaster {pid} still running (state {state:?})"
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "port {port} still open"
    );
}

#[tokio::test]
async fn roles_authenticate_as_configured() {
    let pg = PgCluster::start();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], pg.port()));

    // app: SCRAM-SHA-256, owns database app.
    let raw = RawConn::connect(addr, APP_USER, APP_DB, Some(APP_PASSWORD), &[])
        .await
        .expect("app logs in");
    assert_eq!(raw.auth, AuthRequest::Sasl(vec!["SCRAM-SHA-256".into()]));
    assert!(raw.backend_key.is_some());
    assert_eq!(
        raw.params
            .get("server_version")
            .map(|v| v.starts_with("15")),
        Some(true)
    );
    raw.terminate().await;
    let app = pg.connect_direct(APP_DB, APP_USER, APP_PASSWORD).await;
    app.batch_execute("CREATE TABLE owned_by_app(x int); INSERT INTO owned_by_app VALUES (1)")
        .await
        .unwrap();
    let owner: String = app
        .query_one(
            "SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = 'app'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(owner, APP_USER);

    // md5user: the server asks for md5, and the role reaches app's tables.
    let raw = RawConn::connect(addr, MD5_USER, APP_DB, Some(MD5_PASSWORD), &[])
        .await
        .expect("md5user logs in");
    assert_eq!(raw.auth, AuthRequest::Md5);
    raw.terminate().await;
    let md5 = pg.connect_direct(APP_DB, MD5_USER, MD5_PASSWORD).await;
    let n: i64 = md5
        .query_one("SELECT count(*) FROM owned_by_app", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);

    // trustuser: no password asked.
    let raw = RawConn::connect(addr, TRUST_USER, APP_DB, None, &[])
        .await
        .expect("trustuser logs in");
    assert_eq!(raw.auth, AuthRequest::Ok);
    raw.terminate().await;

    // What the pooler tests expect PostgreSQL itself to say.
    let e = pg
        .pg_config(APP_DB, APP_USER, "wrong")
        .connect(tokio_postgres::NoTls)
        .await
        .err()
        .expect("wrong password fails");
    assert_eq!(sqlstate(&e), Some("28P01"), "{}", describe_error(&e));
    let e = pg
        .pg_config("nope", APP_USER, APP_PASSWORD)
        .connect(tokio_postgres::NoTls)
        .await
        .err()
        .expect("unknown db fails");
    assert_eq!(sqlstate(&e), Some("3D000"), "{}", describe_error(&e));
    match RawConn::connect(addr, MD5_USER, APP_DB, Some("wrong"), &[]).await {
        Err(RawError::Server(f)) => assert_eq!(f.code(), Some("28P01")),
        other => panic!("md5 with a wrong password: {:?}", other.err()),
    }
}

#[tokio::test]
async fn psql_stop_and_start_again() {
    let mut pg = PgCluster::start();
    let out = pg
        .psql_direct(
            APP_DB,
            APP_USER,
            APP_PASSWORD,
            &["-At", "-c", "SELECT 6 * 7"],
        )
        .await;
    assert!(out.status.success(), "{}", describe_output(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "42");

    let port = pg.port();
    pg.stop();
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "port {port} open after stop"
    );
    let t = Instant::now();
    pg.start_again();
    eprintln!("restart: {:?}", t.elapsed());
    assert_eq!(pg.port(), port);
    let app = pg.connect_direct(APP_DB, APP_USER, APP_PASSWORD).await;
    assert_eq!(simple_scalar(&app, "SELECT 1").await.as_deref(), Some("1"));
    assert!(
        pg.log_tail(200)
            .contains("database system is ready to accept connections")
    );
}

#[tokio::test]
async fn clusters_in_parallel_get_their_own_ports() {
    let t = Instant::now();
    let (a, b) = tokio::join!(
        tokio::task::spawn_blocking(PgCluster::start),
        tokio::task::spawn_blocking(PgCluster::start)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    eprintln!("two clusters in parallel: {:?}", t.elapsed());
    assert_ne!(a.port(), b.port());
    assert_ne!(a.data_dir(), b.data_dir());
    let ca = a.connect_direct(APP_DB, APP_USER, APP_PASSWORD).await;
    let cb = b.connect_direct(APP_DB, APP_USER, APP_PASSWORD).await;
    ca.batch_execute("CREATE TABLE only_in_a()").await.unwrap();
    let e = cb
        .batch_execute("SELECT * FROM only_in_a")
        .await
        .unwrap_err();
    assert_eq!(
        sqlstate(&e),
        Some("42P01"),
        "the clusters share state: {}",
        describe_error(&e)
    );
    drop((ca, cb));
    tokio::task::spawn_blocking(move || drop((a, b)))
        .await
        .unwrap();
}

#[test]
fn sluice_starts_and_shuts_down_on_request() {
    let pg = PgCluster::start();
    let config = config_for(&pg, 3, PoolMode::Transaction);
    let config = set_config(&config, "pooler.query_wait_timeout", "750ms");
    let parsed = sluice::Config::from_toml(&config).expect("config_for output is valid");
    assert_eq!(parsed.pooler.query_wait_timeout, Duration::from_millis(750));
    assert_eq!(parsed.databases["app"].port, pg.port());
    assert_eq!(parsed.databases["app"].pool_size, Some(3));

    let pooler = Sluice::start(config);
    assert_ne!(pooler.port(), 0);
    let addr = pooler.addr();
    let t = Instant::now();
    pooler
        .shutdown()
        .expect("sluice::run returns Ok after shutdown");
    assert!(t.elapsed() < Duration::from_secs(20));
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "the listener outlived sluice::run"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_streams_from_its_primary_and_both_clean_up() {
    let c = ReplicaCluster::start().await;
    for pg in [&c.primary, &c.replica] {
        let euid = euid_of(postmaster_pid(pg));
        assert_ne!(euid, 0, "a postmaster must never run as root");
        assert_eq!(euid, postgres_uid());
    }
    assert_ne!(c.primary_port(), c.replica_port());
    let primary = c.connect_primary_app().await;
    let replica = c.connect_replica_app().await;
    assert_eq!(
        simple_scalar(&primary, "SELECT pg_is_in_recovery()::text")
            .await
            .as_deref(),
        Some("false")
    );
    assert_eq!(
        simple_scalar(&replica, "SELECT pg_is_in_recovery()::text")
            .await
            .as_deref(),
        Some("true")
    );
    // The replica listens on its own port (not the primary's, which its copied files name).
    assert_eq!(
        simple_scalar(&replica, "SHOW port").await,
        Some(c.replica_port().to_string())
    );
    primary
        .batch_execute("CREATE TABLE streamed AS SELECT 7 AS x")
        .await
        .unwrap();
    poll_until(STEP, "the table on the replica", || async {
        replica.simple_query("SELECT x FROM streamed").await.is_ok()
    })
    .await;
    assert_eq!(
        simple_scalar(&replica, "SELECT x FROM streamed")
            .await
            .as_deref(),
        Some("7")
    );

    let dirs = [c.primary.data_dir(), c.replica.data_dir()];
    let ports = [c.primary_port(), c.replica_port()];
    drop((primary, replica));
    drop(c);
    for (dir, port) in dirs.iter().zip(ports) {
        assert!(!dir.exists(), "{} left behind", dir.display());
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "port {port} still open"
        );
    }
}

/// An echo server on loopback; each connection's received bytes are reported when it closes.
async fn echo_server() -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    seen.extend_from_slice(&buf[..n]);
                }
                let _ = tx.send(seen);
            });
        }
    });
    (addr, rx)
}

#[tokio::test]
async fn fault_proxy_passes_stalls_delays_cuts_and_drops() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    async fn echo(s: &mut TcpStream, bytes: &[u8]) -> Vec<u8> {
        s.write_all(bytes).await.unwrap();
        let mut got = vec![0u8; bytes.len()];
        within(STEP, "the echo", s.read_exact(&mut got))
            .await
            .unwrap();
        got
    }
    async fn read_to_end(s: &mut TcpStream) -> Vec<u8> {
        let mut got = Vec::new();
        let _ = within(STEP, "the link to close", s.read_to_end(&mut got)).await;
        got
    }
    let quiet = Duration::from_millis(300);
    let (upstream, mut closed) = echo_server().await;
    let proxy = FaultProxy::start(upstream);

    // Pass.
    let mut a = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(echo(&mut a, b"ping").await, b"ping");
    assert_eq!(proxy.accepted(), 1);
    assert_eq!(proxy.peers(), vec![a.local_addr().unwrap()]);
    poll_until(STEP, "the link to be open", || async { proxy.open() == 1 }).await;

    // Stall: nothing forwarded; what was sent goes on once the stall ends.
    proxy.set(Fault::Stall);
    a.write_all(b"held").await.unwrap();
    let mut buf = [0u8; 16];
    assert!(
        tokio::time::timeout(quiet, a.read(&mut buf)).await.is_err(),
        "a stalled link forwards nothing"
    );
    proxy.set(Fault::Pass);
    let mut held = [0u8; 4];
    within(STEP, "the held bytes", a.read_exact(&mut held))
        .await
        .unwrap();
    assert_eq!(&held, b"held");

    // Latency, both ways.
    proxy.set(Fault::Latency(Duration::from_millis(150)));
    let t = Instant::now();
    assert_eq!(echo(&mut a, b"slow").await, b"slow");
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );
    proxy.set(Fault::Pass);

    // Cut down: three more bytes towards the client, then the link closes.
    proxy.set(Fault::CutDown(3));
    a.write_all(b"abcdef").await.unwrap();
    assert_eq!(read_to_end(&mut a).await, b"abc");
    let seen = within(STEP, "the upstream side to close", closed.recv()).await;
    assert_eq!(seen.as_deref(), Some(&b"pingheldslowabcdef"[..]));
    poll_until(STEP, "the cut link to be closed", || async {
        proxy.open() == 0
    })
    .await;

    // Cut up: two more bytes towards the server, then the link closes.
    proxy.set(Fault::Pass);
    let mut b = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(echo(&mut b, b"ok").await, b"ok");
    proxy.set(Fault::CutUp(2));
    b.write_all(b"xyz").await.unwrap();
    read_to_end(&mut b).await;
    let seen = within(STEP, "the upstream side to close", closed.recv()).await;
    assert_eq!(seen.as_deref(), Some(&b"okxy"[..]));

    // Only the links open now: an old link stalls, a new one passes.
    proxy.set(Fault::Pass);
    let mut old = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(echo(&mut old, b"1").await, b"1");
    proxy.set_existing(Fault::Stall);
    let mut new = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(echo(&mut new, b"2").await, b"2");
    old.write_all(b"3").await.unwrap();
    assert!(
        tokio::time::timeout(quiet, old.read(&mut buf))
            .await
            .is_err(),
        "the old link is stalled"
    );

    // Drop: open links close, and so does every new one.
    proxy.set(Fault::Drop);
    read_to_end(&mut old).await;
    read_to_end(&mut new).await;
    let mut late = TcpStream::connect(proxy.addr()).await.unwrap();
    assert!(read_to_end(&mut late).await.is_empty());
    poll_until(STEP, "every link to be closed", || async {
        proxy.open() == 0
    })
    .await;
    assert_eq!(proxy.accepted(), 5);
}
