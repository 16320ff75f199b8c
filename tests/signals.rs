//! Signals to a sluice process (the built binary), as an operator sends them: SIGHUP reloads the
//! config under load without dropping a client (issue 16: it used to kill the process), SIGUSR1
//! pauses and SIGUSR2 resumes.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use common::*;
use sluice::config::PoolMode;

const POOL: [(&str, &str); 3] = [
    ("database", APP_DB),
    ("user", APP_USER),
    ("role", "primary"),
];

async fn pool_gauge(metrics_port: u16, name: &str, extra: &[(&str, &str)]) -> Option<f64> {
    let page = scrape(metrics_port).await;
    let mut labels = POOL.to_vec();
    labels.extend_from_slice(extra);
    sample(&page, name, &labels)
}

/// 8 clients run transactions in a loop through a sluice process; the config file gets a new
/// pool_size and SIGHUP, four times. Each change is applied (sluice_pool_size), every client
/// keeps every query answered, and the process keeps running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_under_load_applies_the_config_and_drops_no_client() {
    let pg = PgCluster::start();
    let (config, metrics_port) = with_metrics(config_for(&pg, 2, PoolMode::Transaction));
    let mut sluice = SluiceProcess::start(&config);
    assert_eq!(
        pool_gauge(metrics_port, "sluice_pool_size", &[]).await,
        None
    );

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for i in 0..8i64 {
        let cfg = client_config(sluice.port(), APP_DB, APP_USER, APP_PASSWORD);
        let (client, _) = connect_config(&cfg).await.expect("connect through sluice");
        let (stop, done) = (stop.clone(), done.clone());
        clients.push(tokio::spawn(async move {
            let mut n = 0i64;
            while !stop.load(Ordering::Relaxed) {
                let sql = format!("BEGIN; SELECT {i}; SELECT pg_sleep(0.002); COMMIT");
                within(STEP, "a transaction under load", client.batch_execute(&sql))
                    .await
                    .unwrap_or_else(|e| {
                        panic!("client {i}, transaction {n}: {}", describe_error(&e))
                    });
                let got: i64 = client
                    .query_one("SELECT $1::int8", &[&n])
                    .await
                    .unwrap()
                    .get(0);
                assert_eq!(got, n);
                n += 1;
                done.fetch_add(1, Ordering::Relaxed);
            }
            (client, n)
        }));
    }
    let progressed = |from: u64, by: u64| {
        let done = done.clone();
        async move {
            poll_until(STEP, "the clients to make progress", || {
                let d = done.load(Ordering::Relaxed);
                async move { d >= from + by }
            })
            .await;
            done.load(Ordering::Relaxed)
        }
    };
    let mut at = progressed(0, 50).await;
    assert_eq!(
        pool_gauge(metrics_port, "sluice_pool_size", &[]).await,
        Some(2.0)
    );

    for (round, size) in [5i64, 3, 7, 4].into_iter().enumerate() {
        sluice.write_config(&set_config(&config, "databases.app.pool_size", size));
        sluice.signal("HUP");
        sluice
            .wait_for_log("SIGHUP: configuration reloaded", round + 1, STEP)
            .await;
        poll_until(STEP, "the new pool_size in /metrics", || async {
            pool_gauge(metrics_port, "sluice_pool_size", &[]).await == Some(size as f64)
        })
        .await;
        assert_eq!(
            sluice.exited(),
            None,
            "sluice still runs after SIGHUP {round}"
        );
        at = progressed(at, 40).await;
    }
    // A reload that fails (a bad file) changes nothing and ends nothing.
    sluice.write_config("[pooler]\npool_szie = 3\n");
    sluice.signal("HUP");
    let line = sluice.wait_for_log("SIGHUP: reload failed", 1, STEP).await;
    assert!(line.contains("pool_szie"), "{line}");
    progressed(at, 40).await;
    assert_eq!(
        pool_gauge(metrics_port, "sluice_pool_size", &[]).await,
        Some(4.0)
    );

    stop.store(true, Ordering::Relaxed);
    for c in clients {
        let (client, n) = within(STEP, "a client to stop", c)
            .await
            .expect("no client failed");
        assert!(n > 0);
        // Still connected: not one client was dropped.
        assert_eq!(
            simple_scalar(&client, "SELECT 'still here'")
                .await
                .as_deref(),
            Some("still here")
        );
    }
    assert_eq!(sluice.exited(), None, "sluice still runs");
    // Every line it logged is one JSON object.
    for line in sluice.log_lines() {
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string() && v["fields"].is_object(), "{line}");
    }
}

/// SIGUSR1 pauses every database (a query waits for a server connection), SIGUSR2 resumes
/// them (the query is answered).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigusr1_pauses_and_sigusr2_resumes() {
    let pg = PgCluster::start();
    let (config, metrics_port) = with_metrics(config_for(&pg, 1, PoolMode::Transaction));
    let sluice = SluiceProcess::start(&config);
    let cfg = client_config(sluice.port(), APP_DB, APP_USER, APP_PASSWORD);
    let (client, _) = connect_config(&cfg).await.expect("connect");
    assert_eq!(
        simple_scalar(&client, "SELECT 1").await.as_deref(),
        Some("1")
    );

    sluice.signal("USR1");
    sluice
        .wait_for_log("SIGUSR1: every database paused", 1, STEP)
        .await;
    let query = tokio::spawn(async move { simple_scalar(&client, "SELECT 2").await });
    poll_until(STEP, "the query to wait for the paused pool", || async {
        pool_gauge(metrics_port, "sluice_pool_clients", &[("state", "waiting")]).await == Some(1.0)
    })
    .await;
    assert!(!query.is_finished(), "answered while paused");

    sluice.signal("USR2");
    let got = within(STEP, "the query after SIGUSR2", query)
        .await
        .unwrap();
    assert_eq!(got.as_deref(), Some("2"));
    sluice
        .wait_for_log("SIGUSR2: every database resumed", 1, STEP)
        .await;
}
