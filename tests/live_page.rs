//! The live page (`GET /` on the metrics listener) in a real browser: headless Chromium loads it
//! from a sluice under load, runs its script, and the DOM shows the pool, a query fingerprint
//! and the client idle in a transaction. Also `/debug/queries` and `metrics_token`.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;
use sluice::config::PoolMode;

const CHROMIUM: &str = "/usr/bin/chromium";

/// Chromium's DOM of `url` after its scripts ran; None (with the reason printed) when Chromium
/// is missing and `CI` is unset.
async fn dump_dom(url: &str) -> Option<String> {
    if !std::path::Path::new(CHROMIUM).exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{CHROMIUM} is missing and CI is set"
        );
        eprintln!("skipped: {CHROMIUM} is not installed (apt-get install chromium)");
        return None;
    }
    let profile = tempfile::tempdir().unwrap();
    let mut cmd = tokio::process::Command::new(CHROMIUM);
    cmd.args([
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        "--virtual-time-budget=5000",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .arg("--dump-dom")
    .arg(url)
    .stdin(Stdio::null())
    .kill_on_drop(true);
    let out = run_command(&mut cmd, Duration::from_secs(60)).await;
    assert!(out.status.success(), "chromium: {}", describe_output(&out));
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_page_shows_pools_queries_and_holders_in_a_browser() {
    let pg = PgCluster::start();
    let (config, port) = with_metrics(config_for(&pg, 4, PoolMode::Transaction));
    let pooler = Sluice::start(config);

    // Load: four clients looping over one statement with changing literals, for the whole test.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..4 {
        let c = pooler.connect_app().await;
        let stop = stop.clone();
        load.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let sql =
                    format!("SELECT relname FROM pg_class WHERE oid = {i} AND 'secret-{i}' <> ''");
                c.simple_query(&sql).await.unwrap();
                i += 1;
            }
            i
        }));
    }
    // And one client idle in a transaction.
    let mut cfg = pooler.pg_config(APP_DB, APP_USER, APP_PASSWORD);
    cfg.application_name("page-holder");
    let (holder, _) = connect_config(&cfg).await.unwrap();
    holder.simple_query("BEGIN").await.unwrap();
    holder.simple_query("SELECT 'held-secret'").await.unwrap();

    let (status, json) = get(port, "/api/live").await;
    assert_eq!(status, 200, "{json}");
    let live: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(live["pools"][0]["name"], "app/app", "{live}");
    assert!(!json.contains("secret"), "no literal values: {json}");

    let Some(dom) = dump_dom(&format!("http://127.0.0.1:{port}/")).await else {
        return;
    };
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for l in load {
        assert!(l.await.unwrap() > 0);
    }
    // The script ran and filled the tables from /api/live.
    assert!(
        dom.contains("updated "),
        "the status line says it refreshed: {dom}"
    );
    assert!(
        dom.contains(r#"<tr data-pool="app/app"><td class="pool">app/app</td>"#),
        "{dom}"
    );
    assert!(
        dom.contains(
            r#"<td class="fp">SELECT relname FROM pg_class WHERE oid = ? AND ? &lt;&gt; ?</td>"#
        ),
        "the fingerprint is in the top list: {dom}"
    );
    assert!(dom.contains("page-holder"), "the holder is listed: {dom}");
    assert!(
        dom.contains(r#"<td class="fp">SELECT ?</td>"#),
        "with its last statement: {dom}"
    );
    assert!(dom.contains("<canvas"), "the wait chart: {dom}");
    assert!(!dom.contains("secret"), "no literal values: {dom}");
    assert!(dom.contains("no replicas configured"), "{dom}");

    // /debug/queries: every entry as JSON, fingerprints only.
    let (status, json) = get(port, "/debug/queries").await;
    assert_eq!(status, 200);
    let q: serde_json::Value = serde_json::from_str(&json).unwrap();
    let first = &q["queries"][0];
    assert_eq!(
        first["fingerprint"], "SELECT relname FROM pg_class WHERE oid = ? AND ? <> ?",
        "{q}"
    );
    assert!(first["calls"].as_u64().unwrap() > 0);
    assert!(!json.contains("secret"), "{json}");
    holder.simple_query("COMMIT").await.unwrap();
}

/// `/healthz` answers byte for byte as the hand-written responder did; with `metrics_token`,
/// the page and its JSON need the token, the probes do not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_are_unchanged_and_the_token_guards_the_rest() {
    let pg = PgCluster::start();
    let (config, port) = with_metrics(config_for(&pg, 2, PoolMode::Transaction));
    let config = set_config(&config, "pooler.metrics_token", "s3cret-token");
    let _pooler = Sluice::start(config);
    let raw = within(STEP, "raw /healthz", async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tries = 0;
        let mut s = loop {
            match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                Ok(s) => break s,
                Err(_) if tries < 100 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("{e}"),
            }
        };
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        out
    })
    .await;
    assert_eq!(
        String::from_utf8(raw).unwrap(),
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n"
    );
    assert_eq!(get(port, "/readyz").await.0, 200);
    for path in ["/", "/api/live", "/debug/queries", "/metrics"] {
        assert_eq!(get(port, path).await.0, 401, "{path}");
        assert_eq!(
            get(port, &format!("{path}?token=wrong")).await.0,
            401,
            "{path}"
        );
        assert_eq!(
            get(port, &format!("{path}?token=s3cret-token")).await.0,
            200,
            "{path}"
        );
    }
    let (status, _) = http(
        port,
        "GET /api/live HTTP/1.1\r\nAuthorization: Bearer s3cret-token\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200);
}
