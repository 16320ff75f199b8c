//! The ready-made monitoring in config/: the alert rules pass promtool (syntax and their unit
//! tests), every series the rules and the Grafana dashboard use is one sluice exports, and a real
//! Prometheus scraping a real sluice sees the `sluice_` series and fires the saturation alert when
//! the pool is saturated.
//!
//! Prometheus and promtool come from Debian's `prometheus` package; without them these tests
//! print why and pass, except under CI (env `CI`), where `.ci/run` installs them.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use sluice::config::PoolMode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// True when `program` runs here; otherwise prints why (or panics under CI).
fn have(program: &str) -> bool {
    let ok = Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        if std::env::var_os("CI").is_some() {
            panic!("{program} is missing; .ci/run installs Debian's prometheus package");
        }
        eprintln!("skipping: {program} is not installed (apt install prometheus)");
    }
    ok
}

#[test]
fn promtool_accepts_the_rules_and_their_unit_tests_pass() {
    if !have("promtool") {
        return;
    }
    for args in [
        ["check", "rules", "config/prometheus/alerts.yml"],
        ["test", "rules", "config/prometheus/alerts_test.yml"],
    ] {
        let out = Command::new("promtool")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("run promtool");
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The `sluice_…` metric family names in `text` (histogram series named by their family).
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("sluice_") {
        let start = i + at;
        let boundary =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        if boundary {
            let name = &text[start..end];
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name);
            names.insert(family.to_string());
        }
        i = end.max(start + 1);
    }
    names
}

/// A config whose pool also has a replica (a port nothing listens on: sluice's health check keeps
/// it out of rotation), so the replica series are exported too.
fn config_with_replica(pg: &PgCluster, pool_size: usize) -> (String, u16) {
    let config = config_for(pg, pool_size, PoolMode::Transaction);
    let config = config.replacen(
        "[pooler]",
        &format!(
            "[[databases.{APP_DB}.replicas]]\nhost = \"127.0.0.1\"\nport = {}\n\n[pooler]",
            free_port()
        ),
        1,
    );
    let config = set_config(&config, "pooler.query_wait_timeout", "60s");
    with_metrics(config)
}

#[tokio::test]
async fn the_rules_and_the_dashboard_use_only_series_sluice_exports() {
    let pg = PgCluster::start();
    let (config, metrics_port) = config_with_replica(&pg, 2);
    let sluice = Sluice::start(config);
    // Some traffic, so the histograms have series.
    let client = sluice.connect_app().await;
    for _ in 0..3 {
        client.simple_query("SELECT 1").await.expect("select");
    }
    let page = scrape(metrics_port).await;
    let exported = metric_names(&page);
    for required in [
        "sluice_pool_utilization",
        "sluice_client_wait_seconds",
        "sluice_replica_healthy",
        "sluice_replica_lag_seconds",
    ] {
        assert!(
            exported.contains(required),
            "{required} is not on the page:\n{page}"
        );
    }
    for file in ["config/prometheus/alerts.yml", "config/grafana/sluice.json"] {
        let text = std::fs::read_to_string(repo_file(file)).expect(file);
        let used = metric_names(&text);
        assert!(used.len() >= 8, "{file} uses only {used:?}");
        let unknown: Vec<_> = used.difference(&exported).collect();
        assert!(
            unknown.is_empty(),
            "{file} uses series sluice does not export: {unknown:?}\nexported: {exported:?}"
        );
    }
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo_file("config/grafana/sluice.json")).unwrap(),
    )
    .expect("the dashboard is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 10, "{} panels", panels.len());
    for p in panels {
        assert!(
            p["targets"].as_array().is_some_and(|t| !t.is_empty()),
            "panel without a query: {p}"
        );
    }
}

/// GET `path` from Prometheus's HTTP API (HTTP/1.0: no chunked body, the server closes); `None`
/// while it is not up or not ready (503).
async fn try_prom_get(port: u16, path: &str) -> Option<serde_json::Value> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).await.unwrap();
    let text = String::from_utf8_lossy(&resp);
    let (head, body) = text.split_once("\r\n\r\n")?;
    if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
        return None;
    }
    Some(serde_json::from_str(body).unwrap_or_else(|e| panic!("{path}: {e}: {body}")))
}

async fn prom_get(port: u16, path: &str) -> serde_json::Value {
    try_prom_get(port, path)
        .await
        .unwrap_or_else(|| panic!("prometheus did not answer {path}"))
}

struct Prometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Prometheus on loopback scraping `target_port` every second with the rules of alerts.yml,
/// their `for:` durations cut to 1s so a test need not hold a pool saturated for minutes.
fn start_prometheus(target_port: u16) -> Prometheus {
    let dir = tempfile::tempdir().expect("temp dir");
    let rules = std::fs::read_to_string(repo_file("config/prometheus/alerts.yml")).unwrap();
    let rules: String = rules
        .lines()
        .map(|l| match l.trim_start().strip_prefix("for: ") {
            Some(_) => format!("{}for: 1s", &l[..l.len() - l.trim_start().len()]),
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(dir.path().join("alerts.yml"), rules).unwrap();
    std::fs::write(
        dir.path().join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - alerts.yml\nscrape_configs:\n  - job_name: sluice\n    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let child = Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.path().join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start prometheus");
    Prometheus {
        child,
        port,
        _dir: dir,
    }
}

#[tokio::test]
async fn a_real_prometheus_scrapes_sluice_and_fires_the_saturation_alert() {
    if !have("prometheus") {
        return;
    }
    let pg = PgCluster::start();
    let (config, metrics_port) = with_metrics(set_config(
        &config_for(&pg, 1, PoolMode::Transaction),
        "pooler.query_wait_timeout",
        "120s",
    ));
    let sluice = Sluice::start(config);
    let prom = start_prometheus(metrics_port);
    let limit = Duration::from_secs(60);
    // Pools are made at their first client's login.
    let holder = sluice.connect_app().await;

    // Prometheus up and scraping: sluice's series arrive with their pool labels.
    poll_until(limit, "prometheus has sluice_pool_size", || async {
        let Some(v) = try_prom_get(prom.port, "/api/v1/query?query=sluice_pool_size").await else {
            return false;
        };
        v["data"]["result"].as_array().is_some_and(|r| {
            r.iter().any(|s| {
                s["metric"]["database"] == APP_DB
                    && s["metric"]["user"] == APP_USER
                    && s["value"][1] == "1"
            })
        })
    })
    .await;
    let up = prom_get(prom.port, "/api/v1/query?query=up%7Bjob%3D%22sluice%22%7D").await;
    assert_eq!(up["data"]["result"][0]["value"][1], "1", "{up}");

    // Not saturated yet: the alert is not firing.
    let alerts = prom_get(prom.port, "/api/v1/alerts").await;
    assert!(
        !alerts.to_string().contains("SluicePoolSaturated"),
        "{alerts}"
    );

    // Saturate the pool of 1: one client holds the server connection in a transaction, another
    // waits for it.
    holder.simple_query("BEGIN; SELECT 1").await.expect("begin");
    let waiter = sluice.connect_app().await;
    let waiting = tokio::spawn(async move { waiter.simple_query("SELECT 2").await.map(|_| ()) });

    poll_until(limit, "SluicePoolSaturated fires", || async {
        let alerts = prom_get(prom.port, "/api/v1/alerts").await;
        alerts["data"]["alerts"].as_array().is_some_and(|a| {
            a.iter().any(|x| {
                x["labels"]["alertname"] == "SluicePoolSaturated"
                    && x["labels"]["database"] == APP_DB
                    && x["state"] == "firing"
            })
        })
    })
    .await;

    holder.simple_query("COMMIT").await.expect("commit");
    waiting
        .await
        .expect("waiter task")
        .expect("the waiting client gets its answer once the holder commits");
}
