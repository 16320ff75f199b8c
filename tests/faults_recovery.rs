//! Fault suite, recovery: the server killed under write load and started again, and a server
//! that stays down (one probe at a time, clients told at once).

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use sluice::config::PoolMode;
use tokio::io::AsyncReadExt;

/// A config at sluice's defaults for everything that decides how fast it comes back:
/// server_login_retry, server_connect_timeout and query_wait_timeout.
fn default_recovery_config(pg: &PgCluster, pool_size: usize) -> String {
    let mut config = config_for(pg, pool_size, PoolMode::Transaction);
    for key in [
        "pooler.server_login_retry",
        "pooler.server_connect_timeout",
        "pooler.query_wait_timeout",
    ] {
        config = unset_config(&config, key);
    }
    config
}

/// sluice's default server_login_retry, in milliseconds.
const LOGIN_RETRY_MS: u128 = 500;

/// A write that neither succeeded nor failed within this long is a hang.
const HANG: Duration = Duration::from_secs(20);

/// What one writer saw.
#[derive(Default)]
struct Log {
    /// Row numbers whose INSERT was acknowledged (autocommit: the COMMIT was).
    acked: Vec<i64>,
    /// Row numbers whose INSERT got an error: in flight when the server died, or refused.
    failed: Vec<i64>,
    /// When each error came, and its SQLSTATE.
    errors: Vec<(Instant, Option<String>)>,
    /// When each acknowledgement came.
    ack_times: Vec<Instant>,
    /// Writes that got no answer within [`HANG`].
    hangs: usize,
}

/// Inserts rows (writer, n) for n = 1, 2, ... through the pooler until `stop`, reconnecting when
/// its connection is closed, and records the outcome of each.
async fn writer(id: i32, cfg: tokio_postgres::Config, stop: Arc<AtomicBool>, log: Arc<Mutex<Log>>) {
    let mut client: Option<tokio_postgres::Client> = None;
    let mut n: i64 = 0;
    while !stop.load(Ordering::Relaxed) {
        let c = match client.take().filter(|c| !c.is_closed()) {
            Some(c) => c,
            None => match connect_config(&cfg).await {
                Ok((c, _)) => c,
                Err(e) => {
                    log.lock()
                        .unwrap()
                        .errors
                        .push((Instant::now(), sqlstate(&e).map(str::to_owned)));
                    // Pacing, not synchronisation: a client that retries without pause would
                    // only burn the CPU the pooler and PostgreSQL share with it.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        n += 1;
        let sql = format!("INSERT INTO w(writer, n) VALUES ({id}, {n})");
        let outcome = tokio::time::timeout(HANG, c.simple_query(&sql)).await;
        let failed = !matches!(outcome, Ok(Ok(_)));
        {
            let mut l = log.lock().unwrap();
            match outcome {
                Ok(Ok(_)) => {
                    l.acked.push(n);
                    l.ack_times.push(Instant::now());
                }
                Ok(Err(e)) => {
                    l.failed.push(n);
                    l.errors
                        .push((Instant::now(), sqlstate(&e).map(str::to_owned)));
                }
                Err(_) => {
                    l.failed.push(n);
                    l.hangs += 1;
                }
            }
        }
        client = Some(c);
        if failed {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// The first moment `SELECT 1` succeeds on a connection made with `cfg` (a fresh one for each
/// try until one is made, then that one), polling every 5 ms.
async fn first_served(cfg: tokio_postgres::Config) -> Instant {
    let mut client: Option<tokio_postgres::Client> = None;
    loop {
        if client.as_ref().is_none_or(|c| c.is_closed()) {
            client = match cfg.connect(tokio_postgres::NoTls).await {
                Ok((c, conn)) => {
                    spawn_connection(conn);
                    Some(c)
                }
                Err(_) => None,
            };
        }
        if let Some(c) = &client {
            if c.simple_query("SELECT 1").await.is_ok() {
                return Instant::now();
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn primary_killed_under_write_load_and_restarted() {
    const WRITERS: i32 = 16;
    const POOL: usize = 8;
    let mut pg = PgCluster::start();
    let su = pg.superuser(APP_DB).await;
    // The test cluster commits asynchronously (faster tests); an acknowledged commit must
    // survive a crash here, so this database waits for its WAL to be written.
    su.batch_execute("ALTER DATABASE app SET synchronous_commit = on")
        .await
        .unwrap();
    drop(su);
    let app = pg.connect_direct(APP_DB, APP_USER, APP_PASSWORD).await;
    app.batch_execute("CREATE TABLE w(writer int NOT NULL, n bigint NOT NULL)")
        .await
        .unwrap();
    drop(app);
    let pooler = Sluice::start(default_recovery_config(&pg, POOL));
    let cfg = pooler.pg_config(APP_DB, APP_USER, APP_PASSWORD);

    let stop = Arc::new(AtomicBool::new(false));
    let logs: Vec<Arc<Mutex<Log>>> = (0..WRITERS).map(|_| Arc::default()).collect();
    let tasks: Vec<_> = (0..WRITERS)
        .map(|id| {
            tokio::spawn(writer(
                id,
                cfg.clone(),
                stop.clone(),
                logs[id as usize].clone(),
            ))
        })
        .collect();
    poll_until(STEP, "every writer to commit 5 rows", || async {
        logs.iter().all(|l| l.lock().unwrap().acked.len() >= 5)
    })
    .await;

    let killed_at = Instant::now();
    let mut pg = tokio::task::spawn_blocking(move || {
        pg.kill();
        pg
    })
    .await
    .unwrap();
    // Every writer hears of it: an error, not a hang.
    poll_until(HANG, "every writer to get an error", || async {
        logs.iter()
            .all(|l| l.lock().unwrap().errors.iter().any(|(t, _)| *t > killed_at))
    })
    .await;
    // The outage: the server stays down for 2 s, as in the report (this sleep is the
    // fault's length, not a wait for something to happen).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let failures_before = pooler
        .pool(APP_DB, APP_USER)
        .counters
        .connect_failures
        .load(Ordering::Relaxed);

    // From now on: when PostgreSQL accepts a connection again, and when sluice serves a fresh
    // query again.
    let direct = tokio::spawn(first_served(
        pg.pg_config(APP_DB, APP_USER, APP_PASSWORD)
            .connect_timeout(Duration::from_secs(1))
            .clone(),
    ));
    let pooled = tokio::spawn(first_served(
        cfg.clone().connect_timeout(Duration::from_secs(1)).clone(),
    ));
    let restart = Instant::now();
    let pg = tokio::task::spawn_blocking(move || {
        pg.start_again();
        pg
    })
    .await
    .unwrap();
    let accepting = within(STEP, "PostgreSQL to accept connections", direct)
        .await
        .unwrap();
    let served = within(Duration::from_secs(60), "sluice to serve again", pooled)
        .await
        .unwrap();
    let recovery = served.saturating_duration_since(accepting);
    eprintln!(
        "killed, down {:?}, PostgreSQL accepting {:?} after its start; sluice served a fresh query {:?} after that",
        restart - killed_at,
        accepting - restart,
        recovery
    );

    // The writers resume.
    poll_until(STEP, "every writer to commit again", || async {
        logs.iter()
            .all(|l| l.lock().unwrap().ack_times.iter().any(|t| *t > accepting))
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        within(HANG + STEP, "a writer to stop", t).await.unwrap();
    }
    let pool = pooler.pool(APP_DB, APP_USER);
    let failures = pool.counters.connect_failures.load(Ordering::Relaxed);

    // Every acknowledged commit is there exactly once; nothing is there that was never sent.
    let check = pg.connect_direct(APP_DB, APP_USER, APP_PASSWORD).await;
    let rows = check.query("SELECT writer, n FROM w", &[]).await.unwrap();
    let mut seen: HashMap<(i32, i64), usize> = HashMap::new();
    for r in &rows {
        *seen.entry((r.get(0), r.get(1))).or_default() += 1;
    }
    let dups: Vec<_> = seen.iter().filter(|(_, c)| **c > 1).collect();
    assert!(dups.is_empty(), "rows stored twice: {dups:?}");
    let (mut acked, mut errors, mut in_flight_lost) = (0, 0, 0);
    for (id, log) in logs.iter().enumerate() {
        let l = log.lock().unwrap();
        assert_eq!(l.hangs, 0, "writer {id}: writes that got no answer");
        let id = id as i32;
        for n in &l.acked {
            assert_eq!(
                seen.get(&(id, *n)),
                Some(&1),
                "writer {id}: acknowledged row {n} is not there"
            );
        }
        let sent: HashSet<i64> = l.acked.iter().chain(&l.failed).copied().collect();
        for (w, n) in seen.keys() {
            assert!(
                *w != id || sent.contains(n),
                "writer {id}: row {n} is there but was never sent"
            );
        }
        in_flight_lost += l
            .failed
            .iter()
            .filter(|n| !seen.contains_key(&(id, **n)))
            .count();
        acked += l.acked.len();
        errors += l.errors.len();
    }
    let mut codes: HashMap<String, usize> = HashMap::new();
    for l in &logs {
        for (_, c) in &l.lock().unwrap().errors {
            *codes
                .entry(c.clone().unwrap_or_else(|| "(no SQLSTATE)".into()))
                .or_default() += 1;
        }
    }
    eprintln!(
        "{acked} commits acknowledged, all present once; {errors} errors {codes:?}; \
         {in_flight_lost} failed writes not stored; {failures} failed server connects \
         ({} of them once the restart began)",
        failures - failures_before
    );

    // No connect storm: while the server was down, one probe per server_login_retry.
    let down = accepting - killed_at;
    let allowed = POOL as u64 + 2 + (down.as_millis() / LOGIN_RETRY_MS) as u64 + 1;
    assert!(
        failures <= allowed,
        "{failures} failed server connects in {down:?} of outage (at most {allowed} expected)"
    );
    // Serving again within 1 s of PostgreSQL accepting connections (the bound leaves room for a
    // loaded CI machine; the figure is printed above).
    assert!(
        recovery < Duration::from_secs(2),
        "sluice served its first fresh query {recovery:?} after PostgreSQL accepted connections"
    );
}

/// A server that accepts TCP connections and closes each 100 ms later, without a word (a
/// PostgreSQL that is not there yet). Counts connections, and how many of those made after the
/// first close were open at once.
struct Silent {
    port: u16,
    accepted: Arc<AtomicUsize>,
    max_late_at_once: Arc<AtomicUsize>,
}

impl Silent {
    async fn start() -> Silent {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let max_late_at_once = Arc::new(AtomicUsize::new(0));
        let closed_one = Arc::new(AtomicBool::new(false));
        let late_open = Arc::new(AtomicUsize::new(0));
        let (a, m) = (accepted.clone(), max_late_at_once.clone());
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                a.fetch_add(1, Ordering::SeqCst);
                let late = closed_one.load(Ordering::SeqCst);
                if late {
                    let now = late_open.fetch_add(1, Ordering::SeqCst) + 1;
                    m.fetch_max(now, Ordering::SeqCst);
                }
                let (closed_one, late_open) = (closed_one.clone(), late_open.clone());
                tokio::spawn(async move {
                    let mut sink = [0u8; 1024];
                    // Held open 100 ms (reading whatever comes), then closed.
                    let _ = tokio::time::timeout(Duration::from_millis(100), async {
                        while matches!(sock.read(&mut sink).await, Ok(n) if n > 0) {}
                    })
                    .await;
                    drop(sock);
                    if late {
                        late_open.fetch_sub(1, Ordering::SeqCst);
                    }
                    closed_one.store(true, Ordering::SeqCst);
                });
            }
        });
        Silent {
            port,
            accepted,
            max_late_at_once,
        }
    }
}

#[tokio::test]
async fn a_server_that_is_down_gets_one_probe_at_a_time() {
    const CLIENTS: usize = 16;
    const POOL: usize = 8;
    let pg = PgCluster::start();
    let silent = Silent::start().await;
    let config = set_config(
        &default_recovery_config(&pg, POOL),
        "databases.app.port",
        i64::from(silent.port),
    );
    let pooler = Sluice::start(config);
    let cfg = pooler.pg_config(APP_DB, APP_USER, APP_PASSWORD);

    // Sixteen clients log in over and over for 1.5 s; each login needs a server connection.
    let started = Instant::now();
    let window = Duration::from_millis(1500);
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let cfg = cfg.clone();
            tokio::spawn(async move {
                let mut errors: Vec<(String, String, Duration)> = Vec::new();
                while started.elapsed() < window {
                    let t = Instant::now();
                    match within(
                        HANG,
                        "a login while the server is down",
                        cfg.connect(tokio_postgres::NoTls),
                    )
                    .await
                    {
                        Ok(_) => panic!("logged in to a server that is not there"),
                        Err(e) => {
                            let db = e.as_db_error().expect("an error from sluice");
                            errors.push((
                                db.severity().to_owned(),
                                db.code().code().to_owned(),
                                t.elapsed(),
                            ));
                        }
                    }
                    // Pacing, not synchronisation (see `writer`).
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                errors
            })
        })
        .collect();
    let mut errors = Vec::new();
    for t in tasks {
        errors.extend(within(HANG, "a client", t).await.unwrap());
    }
    let accepted = silent.accepted.load(Ordering::SeqCst);
    let at_once = silent.max_late_at_once.load(Ordering::SeqCst);
    let slow = errors
        .iter()
        .filter(|(_, _, d)| *d > Duration::from_millis(500))
        .count();
    eprintln!(
        "{} failed logins, {slow} slower than 500 ms; the server saw {accepted} connections, \
         at most {at_once} at once after the first failed",
        errors.len()
    );
    for (severity, code, _) in &errors {
        assert_eq!(severity, "FATAL", "a login that fails ends the connection");
        assert_eq!(code, "08001");
    }
    // The first wave (one per slot) counts once; then one probe at a time, one per
    // server_login_retry.
    assert!(
        at_once <= 1,
        "{at_once} connects at once while the server was down"
    );
    let allowed = POOL + (window.as_millis() / LOGIN_RETRY_MS) as usize + 2;
    assert!(
        accepted <= allowed,
        "{accepted} connections to a server that is down in {window:?} (at most {allowed})"
    );
    // Clients are told at once rather than each waiting for a connect of its own: most failed
    // logins tried no connect.
    assert!(
        errors.len() >= 2 * accepted,
        "{} failed logins for {accepted} connects: clients waited for connects of their own",
        errors.len()
    );
}

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
