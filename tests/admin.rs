//! The admin console: SHOW commands through psql and tokio-postgres, who may use it, PAUSE/RESUME,
//! KILL, RECONNECT, and the PgBouncer exporter as a third-party consumer.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use sluice::config::PoolMode;
use tokio_postgres::{Client, SimpleQueryMessage};

/// trustuser is an admin, md5user a stats user, app neither.
fn console_config(pg: &PgCluster, pool_size: usize, mode: PoolMode) -> String {
    let config = config_for(pg, pool_size, mode);
    let config = set_config(&config, "pooler.admin_users", vec![TRUST_USER.to_owned()]);
    set_config(&config, "pooler.stats_users", vec![MD5_USER.to_owned()])
}

async fn admin(pooler: &Sluice) -> Client {
    pooler.connect("sluice", TRUST_USER, TRUST_PASSWORD).await
}

/// The rows of a console command as column name → value maps, and the column names in order.
async fn show(client: &Client, sql: &str) -> (Vec<String>, Vec<HashMap<String, String>>) {
    let msgs = within(STEP, sql, client.simple_query(sql))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let mut columns = Vec::new();
    let mut rows = Vec::new();
    for m in msgs {
        if let SimpleQueryMessage::Row(r) = m {
            columns = r.columns().iter().map(|c| c.name().to_owned()).collect();
            let mut row = HashMap::new();
            for (i, c) in r.columns().iter().enumerate() {
                row.insert(c.name().to_owned(), r.get(i).unwrap_or("").to_owned());
            }
            rows.push(row);
        }
    }
    (columns, rows)
}

fn num(row: &HashMap<String, String>, col: &str) -> i64 {
    row.get(col)
        .unwrap_or_else(|| panic!("no column {col} in {row:?}"))
        .parse()
        .unwrap_or_else(|e| panic!("{col} = {:?}: {e}", row[col]))
}

fn app_row(rows: &[HashMap<String, String>], key: &str) -> HashMap<String, String> {
    rows.iter()
        .find(|r| r.get(key).map(String::as_str) == Some(APP_DB))
        .cloned()
        .unwrap_or_else(|| panic!("no row for {APP_DB} in {rows:?}"))
}

const POOLS_COLUMNS: [&str; 16] = [
    "database",
    "user",
    "cl_active",
    "cl_waiting",
    "cl_active_cancel_req",
    "cl_waiting_cancel_req",
    "sv_active",
    "sv_active_cancel",
    "sv_being_canceled",
    "sv_idle",
    "sv_used",
    "sv_tested",
    "sv_login",
    "maxwait",
    "maxwait_us",
    "pool_mode",
];

const STATS_COLUMNS: [&str; 15] = [
    "database",
    "total_xact_count",
    "total_query_count",
    "total_received",
    "total_sent",
    "total_xact_time",
    "total_query_time",
    "total_wait_time",
    "avg_xact_count",
    "avg_query_count",
    "avg_recv",
    "avg_sent",
    "avg_xact_time",
    "avg_query_time",
    "avg_wait_time",
];

#[tokio::test]
async fn show_pools_and_stats_match_the_load() {
    let pg = PgCluster::start();
    let pooler = Sluice::start(console_config(&pg, 3, PoolMode::Transaction));
    const CLIENTS: usize = 8;
    const TXS: usize = 25;
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(pooler.connect_app().await);
    }
    let mut tasks = Vec::new();
    for c in clients {
        tasks.push(tokio::spawn(async move {
            for i in 0..TXS {
                if i % 5 == 0 {
                    // A two-statement transaction: one transaction, three requests.
                    c.batch_execute("BEGIN").await.unwrap();
                    c.simple_query("SELECT 1").await.unwrap();
                    c.batch_execute("COMMIT").await.unwrap();
                } else {
                    c.simple_query("SELECT 1").await.unwrap();
                }
            }
            c
        }));
    }
    let mut clients = Vec::new();
    for t in tasks {
        clients.push(within(Duration::from_secs(60), "load", t).await.unwrap());
    }

    let console = admin(&pooler).await;
    let (columns, rows) = show(&console, "SHOW POOLS").await;
    assert_eq!(
        &columns[..POOLS_COLUMNS.len()],
        POOLS_COLUMNS,
        "PgBouncer's columns first"
    );
    let pool = app_row(&rows, "database");
    assert_eq!(pool["user"], APP_USER);
    assert_eq!(num(&pool, "cl_active"), CLIENTS as i64, "{pool:?}");
    assert_eq!(num(&pool, "cl_waiting"), 0, "{pool:?}");
    assert_eq!(num(&pool, "sv_active"), 0, "{pool:?}");
    assert!(num(&pool, "sv_idle") <= 3, "{pool:?}");
    assert!(num(&pool, "sv_idle") >= 1, "{pool:?}");
    assert_eq!(num(&pool, "maxwait"), 0);
    assert_eq!(pool["pool_mode"], "transaction");
    assert_eq!(num(&pool, "pool_size"), 3);

    let (columns, rows) = show(&console, "SHOW STATS").await;
    assert_eq!(
        &columns[..STATS_COLUMNS.len()],
        STATS_COLUMNS,
        "PgBouncer's columns first"
    );
    let stats = app_row(&rows, "database");
    let xacts = (CLIENTS * TXS) as i64;
    let queries = (CLIENTS * (TXS + 2 * TXS / 5)) as i64;
    assert!(num(&stats, "total_xact_count") >= xacts, "{stats:?}");
    assert!(num(&stats, "total_query_count") >= queries, "{stats:?}");
    // Only what was run, plus the login's parameter checks at most.
    assert!(num(&stats, "total_xact_count") < xacts + 50, "{stats:?}");
    assert!(num(&stats, "total_received") > 0 && num(&stats, "total_sent") > 0);
    assert!(num(&stats, "total_xact_time") > 0 && num(&stats, "total_query_time") > 0);
    assert_eq!(
        num(&stats, "total_requests"),
        num(&stats, "total_query_count")
    );

    // The same through psql.
    let out = psql_at(
        pooler.port(),
        "pgbouncer",
        TRUST_USER,
        TRUST_PASSWORD,
        &["--csv", "-c", "SHOW STATS"],
    )
    .await;
    assert!(out.status.success(), "{}", describe_output(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("a header").split(',').collect();
    assert_eq!(&header[..STATS_COLUMNS.len()], STATS_COLUMNS);
    let app: Vec<&str> = lines
        .find(|l| l.starts_with("app,"))
        .unwrap_or_else(|| panic!("no app row: {text}"))
        .split(',')
        .collect();
    // Nothing ran in between: psql reads the same numbers as tokio-postgres did.
    let psql_xacts: i64 = app[1].parse().unwrap();
    assert_eq!(psql_xacts, num(&stats, "total_xact_count"), "{text}");
    let psql_queries: i64 = app[2].parse().unwrap();
    assert_eq!(psql_queries, num(&stats, "total_query_count"), "{text}");
    let out = psql_at(
        pooler.port(),
        "sluice",
        TRUST_USER,
        TRUST_PASSWORD,
        &["--csv", "-c", "SHOW POOLS"],
    )
    .await;
    assert!(out.status.success(), "{}", describe_output(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with(&POOLS_COLUMNS.join(",")), "{text}");
    assert!(text.contains(&format!("\napp,app,{CLIENTS},0,")), "{text}");

    // Every other SHOW parses and says something sensible.
    let (_, rows) = show(&console, "SHOW CLIENTS").await;
    let app_clients = rows.iter().filter(|r| r["database"] == APP_DB).count();
    assert_eq!(app_clients, CLIENTS, "{rows:?}");
    assert!(
        rows.iter()
            .any(|r| r["database"] == "sluice" && r["user"] == TRUST_USER)
    );
    let (_, rows) = show(&console, "SHOW SERVERS").await;
    assert!(!rows.is_empty() && rows.len() <= 3, "{rows:?}");
    assert!(
        rows.iter()
            .all(|r| r["state"] == "idle" && num(r, "remote_pid") > 0),
        "{rows:?}"
    );
    let (_, rows) = show(&console, "SHOW DATABASES").await;
    let db = app_row(&rows, "name");
    assert_eq!(num(&db, "pool_size"), 3);
    assert_eq!(num(&db, "port"), i64::from(pg.port()));
    let (_, rows) = show(&console, "SHOW LISTS").await;
    let lists: HashMap<_, _> = rows
        .iter()
        .map(|r| (r["list"].clone(), num(r, "items")))
        .collect();
    assert_eq!(lists["databases"], 1);
    assert_eq!(lists["pools"], 1);
    assert_eq!(lists["used_clients"], CLIENTS as i64 + 1);
    let (_, rows) = show(&console, "SHOW CONFIG").await;
    assert!(
        rows.iter()
            .any(|r| r["key"] == "default_pool_size" && r["value"] == "3" && r["default"] == "20")
    );
    let (_, rows) = show(&console, "show version;").await;
    assert!(rows[0]["version"].starts_with("sluice "), "{rows:?}");
    let (_, rows) = show(&console, "SHOW STATS_TOTALS; SHOW USERS").await;
    assert!(
        rows.iter()
            .any(|r| r.get("name").map(String::as_str) == Some(APP_USER))
    );
    drop(clients);
}

/// The `app` row of `SHOW POOLS` through psql (`--csv`), as column name → value.
async fn psql_pools_row(pooler: &Sluice) -> HashMap<String, String> {
    let out = psql_at(
        pooler.port(),
        "pgbouncer",
        MD5_USER,
        MD5_PASSWORD,
        &["--csv", "-c", "SHOW POOLS"],
    )
    .await;
    assert!(out.status.success(), "{}", describe_output(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .next()
        .expect("a header")
        .split(',')
        .map(str::to_owned)
        .collect();
    let row: Vec<&str> = lines
        .find(|l| l.starts_with("app,"))
        .unwrap_or_else(|| panic!("no app row: {text}"))
        .split(',')
        .collect();
    header
        .into_iter()
        .zip(row.iter().map(|v| (*v).to_owned()))
        .collect()
}

#[tokio::test]
async fn show_pools_under_saturation_through_psql_and_tokio_postgres() {
    let pg = PgCluster::start();
    let pooler = Sluice::start(console_config(&pg, 3, PoolMode::Transaction));
    const HOLDERS: usize = 3;
    const WAITERS: usize = 4;
    const IDLE: usize = 2;
    // Three clients hold the three server connections in open transactions...
    let mut holders = Vec::new();
    for _ in 0..HOLDERS {
        let c = pooler.connect_app().await;
        c.batch_execute("BEGIN; SELECT 1").await.unwrap();
        holders.push(c);
    }
    let mut idle = Vec::new();
    for _ in 0..IDLE {
        idle.push(pooler.connect_app().await);
    }
    // ...so four more queue for one.
    let mut waiters = Vec::new();
    for _ in 0..WAITERS {
        let c = pooler.connect_app().await;
        waiters.push(tokio::spawn(async move {
            let r = c.simple_query("SELECT 1").await;
            (c, r)
        }));
    }
    let console = pooler.connect("sluice", MD5_USER, MD5_PASSWORD).await;
    poll_until(STEP, "the waiters queue", || {
        let console = &console;
        async move {
            let (_, rows) = show(console, "SHOW POOLS").await;
            num(&app_row(&rows, "database"), "cl_waiting") == WAITERS as i64
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    let (_, rows) = show(&console, "SHOW POOLS").await;
    let via_psql = psql_pools_row(&pooler).await;
    for pool in [app_row(&rows, "database"), via_psql] {
        // cl_active, as PgBouncer counts it: logged in and not waiting.
        assert_eq!(num(&pool, "cl_active"), (HOLDERS + IDLE) as i64, "{pool:?}");
        assert_eq!(num(&pool, "cl_waiting"), WAITERS as i64, "{pool:?}");
        assert_eq!(num(&pool, "sv_active"), HOLDERS as i64, "{pool:?}");
        assert_eq!(num(&pool, "sv_idle"), 0, "{pool:?}");
        assert_eq!(num(&pool, "sv_login"), 0, "{pool:?}");
        assert_eq!(num(&pool, "cl_idle"), IDLE as i64, "{pool:?}");
        assert!(
            num(&pool, "maxwait") * 1_000_000 + num(&pool, "maxwait_us") >= 100_000,
            "the oldest waiter has waited 100 ms at least: {pool:?}"
        );
    }

    // The holders commit: the waiters get through and the pool is quiet again.
    for c in &holders {
        c.batch_execute("COMMIT").await.unwrap();
    }
    for w in waiters {
        let (_c, r) = within(STEP, "a waiter", w).await.unwrap();
        r.unwrap();
    }
    let (_, rows) = show(&console, "SHOW POOLS").await;
    let via_psql = psql_pools_row(&pooler).await;
    for pool in [app_row(&rows, "database"), via_psql] {
        assert_eq!(num(&pool, "cl_waiting"), 0, "{pool:?}");
        assert_eq!(num(&pool, "sv_active"), 0, "{pool:?}");
        assert_eq!(num(&pool, "sv_idle"), HOLDERS as i64, "{pool:?}");
        assert_eq!(num(&pool, "maxwait"), 0, "{pool:?}");
        assert_eq!(num(&pool, "maxwait_us"), 0, "{pool:?}");
    }
    let (_, rows) = show(&console, "SHOW STATS").await;
    let stats = app_row(&rows, "database");
    // 3 holders' transactions (two requests each) and 4 single-query ones.
    assert_eq!(
        num(&stats, "total_xact_count"),
        (HOLDERS + WAITERS) as i64,
        "{stats:?}"
    );
    assert_eq!(
        num(&stats, "total_query_count"),
        (2 * HOLDERS + WAITERS) as i64,
        "{stats:?}"
    );
    assert!(
        num(&stats, "total_wait_time") >= 100_000 * WAITERS as i64,
        "{stats:?}"
    );
}

#[tokio::test]
async fn only_console_users_get_in_and_stats_users_only_show() {
    let pg = PgCluster::start();
    let pooler = Sluice::start(console_config(&pg, 2, PoolMode::Transaction));

    let e = pooler
        .try_connect("sluice", APP_USER, APP_PASSWORD)
        .await
        .expect_err("app is not a console user");
    assert_eq!(sqlstate(&e), Some("28000"), "{e:?}");
    let e = pooler
        .try_connect("pgbouncer", TRUST_USER, "wrong")
        .await
        .expect_err("wrong password");
    assert_eq!(sqlstate(&e), Some("28P01"), "{e:?}");

    let stats = pooler.connect("sluice", MD5_USER, MD5_PASSWORD).await;
    show(&stats, "SHOW POOLS").await;
    for cmd in [
        "PAUSE",
        "RESUME app",
        "KILL app",
        "RECONNECT",
        "SHUTDOWN",
        "RELOAD",
    ] {
        let e = stats.simple_query(cmd).await.expect_err(cmd);
        assert_eq!(sqlstate(&e), Some("42501"), "{cmd}: {e:?}");
    }
    // Still usable after errors.
    show(&stats, "SHOW STATS").await;

    let console = admin(&pooler).await;
    for (cmd, code) in [
        ("SELECT 1", "42601"),
        ("SHOW nonsense", "42601"),
        ("PAUSE nosuchdb", "3D000"),
        // Started from a string, not a file: nothing to read again.
        ("RELOAD", "F0000"),
        ("SET default_pool_size = 3", "0A000"),
    ] {
        let e = console.simple_query(cmd).await.expect_err(cmd);
        assert_eq!(sqlstate(&e), Some(code), "{cmd}: {e:?}");
    }
    // The extended protocol is refused, and the session goes on.
    let e = console
        .query("SHOW POOLS", &[])
        .await
        .expect_err("extended protocol");
    assert_eq!(sqlstate(&e), Some("0A000"), "{e:?}");
    show(&console, "SHOW POOLS").await;
}

#[tokio::test]
async fn pause_holds_new_transactions_until_resume() {
    let pg = PgCluster::start();
    let pooler = Sluice::start(console_config(&pg, 2, PoolMode::Transaction));
    let client = pooler.connect_app().await;
    client.simple_query("SELECT 1").await.unwrap();
    let console = admin(&pooler).await;

    // A transaction under way when PAUSE comes may finish; PAUSE returns once it has.
    let busy = pooler.connect_app().await;
    busy.batch_execute("BEGIN; SELECT 1").await.unwrap();
    let pause = tokio::spawn({
        let console = admin(&pooler).await;
        async move { console.simple_query("PAUSE app").await.map(|_| console) }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !pause.is_finished(),
        "PAUSE returned while a transaction was open"
    );
    busy.batch_execute("COMMIT").await.unwrap();
    let _paused_console = within(STEP, "PAUSE", pause).await.unwrap().unwrap();

    // A query started after PAUSE does not complete...
    let query = tokio::spawn(async move {
        let r = client.simple_query("SELECT 42").await;
        (client, r)
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!query.is_finished(), "a query completed while paused");
    let (_, rows) = show(&console, "SHOW POOLS").await;
    let pool = app_row(&rows, "database");
    assert_eq!(num(&pool, "cl_waiting"), 1, "{pool:?}");
    assert_eq!(num(&pool, "paused"), 1, "{pool:?}");
    assert_eq!(
        num(&pool, "sv_idle") + num(&pool, "sv_active"),
        0,
        "PAUSE closes the servers"
    );
    assert!(
        num(&pool, "maxwait_us") > 0 || num(&pool, "maxwait") > 0,
        "{pool:?}"
    );
    let (_, rows) = show(&console, "SHOW DATABASES").await;
    assert_eq!(num(&app_row(&rows, "name"), "paused"), 1);

    // ...until RESUME.
    show(&console, "RESUME app").await;
    let (client, r) = within(STEP, "the held query after RESUME", query)
        .await
        .unwrap();
    r.expect("the held query succeeds after RESUME");
    client.simple_query("SELECT 1").await.unwrap();
    let (_, rows) = show(&console, "SHOW POOLS").await;
    let pool = app_row(&rows, "database");
    assert_eq!(num(&pool, "paused"), 0);
    assert_eq!(num(&pool, "cl_waiting"), 0);

    // PAUSE without a database pauses pools made later too.
    show(&console, "PAUSE").await;
    let cfg = pooler.pg_config(APP_DB, MD5_USER, MD5_PASSWORD);
    let other = tokio::spawn(async move {
        let (c, _) = connect_config(&cfg)
            .await
            .expect("md5user logs in after RESUME");
        let r = c.simple_query("SELECT 1").await;
        (c, r)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !other.is_finished(),
        "a new pool's login went through while paused"
    );
    let e = console
        .simple_query("RESUME app")
        .await
        .expect_err("everything is paused");
    assert_eq!(sqlstate(&e), Some("55000"));
    show(&console, "RESUME").await;
    let (_c, r) = within(STEP, "new pool after RESUME", other).await.unwrap();
    r.unwrap();
}

#[tokio::test]
async fn kill_ends_the_databases_clients_and_reconnect_replaces_servers() {
    let pg = PgCluster::start();
    let pooler = Sluice::start(console_config(&pg, 1, PoolMode::Transaction));
    let console = admin(&pooler).await;

    let client = pooler.connect_app().await;
    let pid1 = simple_scalar(&client, "SELECT pg_backend_pid()")
        .await
        .unwrap();
    show(&console, "RECONNECT app").await;
    let pid2 = simple_scalar(&client, "SELECT pg_backend_pid()")
        .await
        .unwrap();
    assert_ne!(pid1, pid2, "RECONNECT closes the idle server connection");

    // RECONNECT while lent out: closed when given back.
    client.batch_execute("BEGIN").await.unwrap();
    show(&console, "RECONNECT").await;
    client.batch_execute("COMMIT").await.unwrap();
    let pid3 = simple_scalar(&client, "SELECT pg_backend_pid()")
        .await
        .unwrap();
    assert_ne!(pid2, pid3);

    show(&console, "KILL app").await;
    poll_until(STEP, "the killed client's connection closes", || {
        let closed = client.is_closed();
        async move { closed }
    })
    .await;
    // The console itself survives a KILL of every database.
    show(&console, "KILL").await;
    show(&console, "RESUME").await;
    let again = pooler.connect_app().await;
    simple_scalar(&again, "SELECT 1").await;
    let (_, rows) = show(&console, "SHOW POOLS").await;
    assert_eq!(num(&app_row(&rows, "database"), "cl_active"), 1);
}

#[tokio::test]
async fn shutdown_from_the_console_stops_the_pooler() {
    let pg = PgCluster::start();
    let pooler = Sluice::start(console_config(&pg, 1, PoolMode::Transaction));
    let console = admin(&pooler).await;
    let _ = console.simple_query("SHUTDOWN").await;
    poll_until(STEP, "sluice stops accepting", || {
        let port = pooler.port();
        async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_err()
        }
    })
    .await;
}

/// prometheus-pgbouncer-exporter (Debian's package), pointed at the console, scrapes cleanly.
#[tokio::test]
async fn pgbouncer_exporter_scrapes_the_console() {
    let exporter = std::path::Path::new("/usr/bin/prometheus-pgbouncer-exporter");
    if !exporter.exists() {
        eprintln!(
            "SKIP: prometheus-pgbouncer-exporter is not installed (apt-get install prometheus-pgbouncer-exporter)"
        );
        return;
    }
    let pg = PgCluster::start();
    let pooler = Sluice::start(console_config(&pg, 2, PoolMode::Transaction));
    let app = pooler.connect_app().await;
    for _ in 0..10 {
        app.simple_query("SELECT 1").await.unwrap();
    }
    let port = free_port();
    let mut child = tokio::process::Command::new(exporter)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--pgbouncer-host", "127.0.0.1"])
        .args(["--pgbouncer-port", &pooler.port().to_string()])
        .args(["--pgbouncer-user", TRUST_USER])
        .env("PGPASSWORD", TRUST_PASSWORD)
        .env("PGSSLMODE", "disable")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the exporter");
    let mut body = String::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        if let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").await.unwrap();
            let mut resp = Vec::new();
            let _ = within(STEP, "exporter scrape", s.read_to_end(&mut resp)).await;
            body = String::from_utf8_lossy(&resp).into_owned();
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "the exporter exited");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.start_kill();
    let out = within(STEP, "exporter exit", child.wait_with_output())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        body.starts_with("HTTP/1.0 200"),
        "{body}\n--- exporter stderr\n{stderr}"
    );
    assert!(!stderr.contains("Traceback"), "{stderr}");
    for metric in [
        "pgbouncer_requests_total{database=\"app\"}",
        "pgbouncer_active_clients{database=\"app\",user=\"app\"} 1.0",
        "pgbouncer_waiting_clients{database=\"app\",user=\"app\"} 0.0",
        "pgbouncer_pool_size{database=\"app\"} 2.0",
        "pgbouncer_pools ",
        "pgbouncer_used_clients ",
    ] {
        assert!(body.contains(metric), "{metric} missing:\n{body}");
    }
}

/// RELOAD reads the config file again: a bigger pool lets a waiting client in at once, a new user
/// can log in, a smaller pool is kept to, and a file with a mistake changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_applies_the_file_again() {
    let pg = PgCluster::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("sluice.toml");
    let base = console_config(&pg, 2, PoolMode::Transaction);
    std::fs::write(&path, &base).expect("write config");
    let pooler = Sluice::start_file(&path);
    let console = admin(&pooler).await;

    // Both server connections held in open transactions; a third client waits.
    let mut holders = Vec::new();
    for _ in 0..2 {
        let c = pooler.connect_app().await;
        c.simple_query("BEGIN; SELECT 1").await.expect("begin");
        holders.push(c);
    }
    let waiter = pooler.connect_app().await;
    let waiting = tokio::spawn(async move {
        let r = waiter.simple_query("SELECT 42").await;
        (r.map(|m| m.len()), waiter)
    });
    poll_until(STEP, "a client waits", || async {
        num(
            &app_row(&show(&console, "SHOW POOLS").await.1, "database"),
            "cl_waiting",
        ) == 1
    })
    .await;

    // A role sluice does not know yet.
    let su = pg.superuser(APP_DB).await;
    su.batch_execute("CREATE ROLE newcomer LOGIN PASSWORD 'newcomer-secret'; GRANT ALL ON DATABASE app TO newcomer")
        .await
        .expect("create role");
    let e = pooler
        .try_connect(APP_DB, "newcomer", "newcomer-secret")
        .await
        .expect_err("unknown to sluice before RELOAD");
    assert_eq!(sqlstate(&e), Some("28P01"));

    // pool_size 2 -> 3, and the new user.
    let grown = set_config(&base, "databases.app.pool_size", 3);
    let grown = set_config(&grown, "users.newcomer.password", "newcomer-secret");
    std::fs::write(&path, &grown).expect("rewrite config");
    console.simple_query("RELOAD").await.expect("RELOAD");
    let (n, _waiter) = within(STEP, "the waiter gets a server", waiting)
        .await
        .expect("join");
    assert!(n.expect("SELECT 42 after RELOAD") >= 1);
    let pools = show(&console, "SHOW POOLS").await.1;
    assert_eq!(num(&app_row(&pools, "database"), "pool_size"), 3);
    let newcomer = pooler.connect(APP_DB, "newcomer", "newcomer-secret").await;
    assert_eq!(
        simple_scalar(&newcomer, "SELECT current_user")
            .await
            .as_deref(),
        Some("newcomer")
    );

    // A mistake in the file: an error naming the key, and the old config stays.
    std::fs::write(&path, grown.replace("pool_size = 3", "pool_szie = 1")).expect("typo");
    let e = console.simple_query("RELOAD").await.expect_err("bad file");
    assert_eq!(sqlstate(&e), Some("F0000"));
    assert!(
        describe_error(&e).contains("pool_szie"),
        "{}",
        describe_error(&e)
    );
    let pools = show(&console, "SHOW POOLS").await.1;
    assert_eq!(num(&app_row(&pools, "database"), "pool_size"), 3);

    // Shrink to 1: once the holders finish, at most one server connection stays.
    std::fs::write(&path, set_config(&base, "databases.app.pool_size", 1)).expect("shrink");
    console.simple_query("RELOAD").await.expect("RELOAD");
    for c in &holders {
        c.simple_query("COMMIT").await.expect("commit");
    }
    for c in &holders {
        c.simple_query("SELECT 1").await.expect("select");
    }
    let pools = show(&console, "SHOW POOLS").await.1;
    let row = app_row(&pools, "database");
    assert_eq!(num(&row, "pool_size"), 1);
    assert!(
        num(&row, "sv_active") + num(&row, "sv_idle") <= 1,
        "{row:?}"
    );
}
