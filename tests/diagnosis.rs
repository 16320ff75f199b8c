//! Diagnosis (docs/diagnosis.md): SHOW QUERIES under a known load, RESET QUERIES, the off
//! switch, and who holds the pool in SHOW CLIENTS / SHOW SERVERS.

mod common;

use std::collections::HashMap;

use common::*;
use sluice::config::PoolMode;
use tokio_postgres::{Client, SimpleQueryMessage};

fn console_config(pg: &PgCluster, pool_size: usize) -> String {
    let config = config_for(pg, pool_size, PoolMode::Transaction);
    let config = set_config(&config, "pooler.admin_users", vec![TRUST_USER.to_owned()]);
    set_config(&config, "pooler.stats_users", vec![MD5_USER.to_owned()])
}

async fn rows(client: &Client, sql: &str) -> Vec<HashMap<String, String>> {
    let msgs = within(STEP, sql, client.simple_query(sql))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {}", describe_error(&e)));
    let mut rows = Vec::new();
    for m in msgs {
        if let SimpleQueryMessage::Row(r) = m {
            let mut row = HashMap::new();
            for (i, c) in r.columns().iter().enumerate() {
                row.insert(c.name().to_owned(), r.get(i).unwrap_or("").to_owned());
            }
            rows.push(row);
        }
    }
    rows
}

fn num(row: &HashMap<String, String>, col: &str) -> u64 {
    row.get(col)
        .unwrap_or_else(|| panic!("no column {col} in {row:?}"))
        .parse()
        .unwrap_or_else(|e| panic!("{col} = {:?}: {e}", row[col]))
}

fn entry<'a>(rows: &'a [HashMap<String, String>], fp: &str) -> &'a HashMap<String, String> {
    rows.iter()
        .find(|r| r["fingerprint"] == fp)
        .unwrap_or_else(|| panic!("no entry {fp:?} in {rows:#?}"))
}

/// 100 calls of `pg_sleep(0.01)` with different literals are one entry with 100 calls and about
/// one second in total; errors count by class; other structures are other entries; prepared
/// statements count by the statement they execute; RESET QUERIES empties it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_queries_counts_a_known_load() {
    let pg = PgCluster::start();
    let pooler = Sluice::start(console_config(&pg, 2));
    let app = pooler.connect_app().await;
    for i in 0..100 {
        let sql = format!("SELECT pg_sleep(0.01), {i}");
        within(STEP, &sql, app.simple_query(&sql)).await.unwrap();
    }
    // Errors: division by zero (22012) three times, an unknown column (42703) once.
    for i in 0..3 {
        let sql = format!("SELECT 1 / 0 + {i}");
        let e = app.simple_query(&sql).await.unwrap_err();
        assert_eq!(sqlstate(&e), Some("22012"));
    }
    let e = app.simple_query("SELECT 1 / 0 + nope").await.unwrap_err();
    assert_eq!(sqlstate(&e), Some("42703"));
    // Extended protocol: a prepared statement executed ten times, three rows each.
    let stmt = app
        .prepare("SELECT g FROM generate_series(1, $1::int) g")
        .await
        .unwrap();
    for _ in 0..10 {
        let r = app.query(&stmt, &[&3i32]).await.unwrap();
        assert_eq!(r.len(), 3);
    }

    let console = pooler.connect("sluice", TRUST_USER, TRUST_PASSWORD).await;
    let q = rows(&console, "SHOW QUERIES").await;
    let sleep = entry(&q, "SELECT pg_sleep(?), ?");
    assert_eq!(sleep["database"], APP_DB);
    assert_eq!(sleep["user"], APP_USER);
    assert_eq!(num(sleep, "calls"), 100, "{sleep:?}");
    assert_eq!(num(sleep, "rows"), 100);
    assert_eq!(num(sleep, "errors"), 0);
    let total = num(sleep, "total_us");
    assert!(
        (1_000_000..3_000_000).contains(&total),
        "100 × 10 ms took {total} µs"
    );
    let (p50, p99, max, mean) = (
        num(sleep, "p50_us"),
        num(sleep, "p99_us"),
        num(sleep, "max_us"),
        num(sleep, "mean_us"),
    );
    assert!((8_000..40_000).contains(&p50), "p50 {p50}");
    assert!(p50 <= p99 && p99 <= max && mean <= max, "{sleep:?}");
    // The heaviest entry comes first.
    assert_eq!(q[0]["fingerprint"], "SELECT pg_sleep(?), ?", "{q:#?}");

    let div = entry(&q, "SELECT ? / ? + ?");
    assert_eq!((num(div, "calls"), num(div, "errors")), (3, 3));
    assert_eq!(div["errors_by_class"], "22:3");
    let col = entry(&q, "SELECT ? / ? + nope");
    assert_eq!(col["errors_by_class"], "42:1");

    let series = entry(&q, "SELECT g FROM generate_series(?, ?::int) g");
    assert_eq!((num(series, "calls"), num(series, "rows")), (10, 30));

    // A stats user may look but not reset.
    let stats_user = pooler.connect("pgbouncer", MD5_USER, MD5_PASSWORD).await;
    assert!(!rows(&stats_user, "SHOW QUERIES").await.is_empty());
    let e = stats_user.simple_query("RESET QUERIES").await.unwrap_err();
    assert_eq!(sqlstate(&e), Some("42501"));
    console.simple_query("RESET QUERIES").await.unwrap();
    assert!(rows(&console, "SHOW QUERIES").await.is_empty());
    app.simple_query("SELECT 42").await.unwrap();
    let q = rows(&console, "SHOW QUERIES").await;
    assert_eq!(q.len(), 1, "{q:#?}");
    assert_eq!(num(entry(&q, "SELECT ?"), "calls"), 1);
}

/// `query_stats = false`: nothing is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_off_switch_counts_nothing() {
    let pg = PgCluster::start();
    let config = set_config(&console_config(&pg, 2), "pooler.query_stats", false);
    let pooler = Sluice::start(config);
    let app = pooler.connect_app().await;
    for i in 0..5 {
        app.simple_query(&format!("SELECT {i}")).await.unwrap();
    }
    let console = pooler.connect("sluice", TRUST_USER, TRUST_PASSWORD).await;
    assert!(rows(&console, "SHOW QUERIES").await.is_empty());
    let clients = rows(&console, "SHOW CLIENTS").await;
    let c = clients.iter().find(|r| r["database"] == APP_DB).unwrap();
    assert_eq!(c["fingerprint"], "", "{c:?}");
}

/// Who holds the pool: a client idle in a transaction holds the only server connection, a
/// second one waits; SHOW CLIENTS and SHOW SERVERS say so, with the fingerprint, the
/// application_name and the backend pid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_clients_and_servers_say_who_holds_the_pool() {
    let pg = PgCluster::start();
    let (config, metrics_port) = with_metrics(console_config(&pg, 1));
    let pooler = Sluice::start(config);
    let mut cfg = pooler.pg_config(APP_DB, APP_USER, APP_PASSWORD);
    cfg.application_name("holder-app");
    let (holder, _) = connect_config(&cfg).await.unwrap();
    // (Logged in first: a new list of startup parameters is checked on a server at login.)
    let mut cfg = pooler.pg_config(APP_DB, APP_USER, APP_PASSWORD);
    cfg.application_name("waiter-app");
    let (waiter, _) = connect_config(&cfg).await.unwrap();
    holder.simple_query("BEGIN").await.unwrap();
    let pid = backend_pid(&holder).await;
    let console = pooler.connect("sluice", TRUST_USER, TRUST_PASSWORD).await;

    // A second client waits for the only connection.
    let waiting =
        tokio::spawn(async move { waiter.simple_query("SELECT 7").await.map(|_| waiter) });
    poll_until(STEP, "the second client waits", || async {
        rows(&console, "SHOW CLIENTS")
            .await
            .iter()
            .any(|r| r["application_name"] == "waiter-app" && r["activity"] == "waiting")
    })
    .await;

    let clients = rows(&console, "SHOW CLIENTS").await;
    let h = clients
        .iter()
        .find(|r| r["application_name"] == "holder-app")
        .unwrap_or_else(|| panic!("{clients:#?}"));
    assert_eq!(h["activity"], "idle in transaction", "{h:?}");
    assert_eq!(h["fingerprint"], "SELECT pg_backend_pid()", "{h:?}");
    assert!(num(h, "activity_us") < 60_000_000, "{h:?}");
    let w = clients
        .iter()
        .find(|r| r["application_name"] == "waiter-app")
        .unwrap();
    assert_eq!(
        w["state"], "waiting",
        "PgBouncer's column still says it: {w:?}"
    );

    let servers = rows(&console, "SHOW SERVERS").await;
    assert_eq!(servers.len(), 1, "{servers:#?}");
    let s = &servers[0];
    assert_eq!(num(s, "remote_pid"), pid as u64, "{s:?}");
    assert_eq!(s["application_name"], "holder-app");
    assert_eq!(s["activity"], "idle in transaction");
    assert_eq!(s["fingerprint"], "SELECT pg_backend_pid()");

    // /metrics counts the holder, and its age.
    let page = scrape(metrics_port).await;
    let labels = [
        ("database", APP_DB),
        ("user", APP_USER),
        ("role", "primary"),
    ];
    assert_eq!(
        sample(&page, "sluice_idle_in_transaction_clients", &labels),
        Some(1.0),
        "{page}"
    );
    let age = sample(&page, "sluice_idle_in_transaction_max_seconds", &labels).unwrap();
    assert!(age > 0.0 && age < 60.0, "{age}");

    holder.simple_query("COMMIT").await.unwrap();
    let page = scrape(metrics_port).await;
    assert_eq!(
        sample(&page, "sluice_idle_in_transaction_clients", &labels),
        Some(0.0)
    );
    let _waiter = within(STEP, "the waiter runs", waiting)
        .await
        .unwrap()
        .unwrap();
    poll_until(STEP, "the waiter is idle with its wait counted", || async {
        rows(&console, "SHOW CLIENTS").await.iter().any(|r| {
            r["application_name"] == "waiter-app"
                && r["activity"] == "idle"
                && num(r, "wait_total_us") > 0
                && r["fingerprint"] == "SELECT ?"
        })
    })
    .await;
    // The waiter's wait is on its statement's entry; the holder's transaction time on its
    // first statement that was not BEGIN.
    let q = rows(&console, "SHOW QUERIES").await;
    assert!(num(entry(&q, "SELECT ?"), "wait_us") > 0, "{q:#?}");
    let held = num(entry(&q, "SELECT pg_backend_pid()"), "held_us");
    assert!(held > 0, "{q:#?}");
    assert_eq!(num(entry(&q, "BEGIN"), "held_us"), 0, "{q:#?}");
}

/// The slow-statement log: a statement over `log_min_duration` is logged once with its
/// fingerprint, pool, client, application_name and times, and never its values unless
/// `log_parameters = true`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_statements_are_logged_without_their_values() {
    let pg = PgCluster::start();
    for log_parameters in [false, true] {
        let config = config_for(&pg, 2, PoolMode::Transaction);
        let config = set_config(&config, "pooler.log_min_duration", "50ms");
        let config = set_config(&config, "pooler.log_parameters", log_parameters);
        let sluice = SluiceProcess::start(&config);
        let mut cfg = client_config(sluice.port(), APP_DB, APP_USER, APP_PASSWORD);
        cfg.application_name("slow-app");
        let (app, _) = connect_config(&cfg).await.unwrap();
        app.simple_query("SELECT 'fast-secret'").await.unwrap();
        app.simple_query("SELECT pg_sleep(0.1), 'slow-secret'")
            .await
            .unwrap();
        // Extended protocol: the parameter value is as private as a literal.
        app.query(
            "SELECT pg_sleep($1::float8), $2::text",
            &[&0.1f64, &"bound-secret"],
        )
        .await
        .unwrap();
        let line = sluice.wait_for_log("slow statement", 2, STEP).await;
        let lines: Vec<String> = sluice
            .log_lines()
            .into_iter()
            .filter(|l| l.contains("slow statement"))
            .collect();
        assert_eq!(lines.len(), 2, "the fast one is not logged: {lines:#?}");
        let first: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        let f = &first["fields"];
        assert_eq!(f["fingerprint"], "SELECT pg_sleep(?), ?", "{first}");
        assert_eq!(f["application_name"], "slow-app");
        assert_eq!(f["pool"], "app/app", "{first}");
        assert!(f["client"].as_str().unwrap().starts_with("127.0.0.1:"));
        let ms = f["elapsed_ms"].as_f64().unwrap();
        assert!((90.0..5000.0).contains(&ms), "{first}");
        assert!(f["wait_ms"].as_f64().is_some());
        let second: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            second["fields"]["fingerprint"],
            "SELECT pg_sleep(?::float8), ?::text"
        );
        let all = lines.join("\n");
        if log_parameters {
            // tokio-postgres binds in binary: their sizes are shown, not decoded.
            assert!(all.contains("slow-secret"), "{all}");
            assert!(all.contains("$2 = <12 bytes binary>"), "{all}");
        } else {
            assert!(!all.contains("secret"), "values leaked: {all}");
        }
    }
}
