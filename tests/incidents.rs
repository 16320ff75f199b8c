//! What an operator sees when clients are refused (issue 16, item 7): each refusal counted by
//! reason in /metrics (`sluice_client_refusals_total{reason}`), and logged at warn as JSON
//! (`log_format = "json"`), one line per kind per `error_log_interval` with the count it stands
//! for. Runs the built binary, whose stderr the test reads.

mod common;

use std::time::{Duration, Instant};

use common::*;
use sluice::config::PoolMode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn refusals(metrics_port: u16, reason: &str) -> f64 {
    let page = scrape(metrics_port).await;
    sample(&page, "sluice_client_refusals_total", &[("reason", reason)])
        .unwrap_or_else(|| panic!("no refusals series for {reason}"))
}

/// Bytes in, everything sluice answers until it closes.
async fn exchange(port: u16, bytes: &[u8]) -> Vec<u8> {
    exchange_until_closed(([127, 0, 0, 1], port).into(), bytes).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_counted_by_reason_and_logged_once_per_interval() {
    const BAD_LOGINS: usize = 30;
    let pg = PgCluster::start();
    let config = config_for(&pg, 2, PoolMode::Transaction);
    let config = set_config(&config, "pooler.max_client_conn", 3);
    let config = set_config(&config, "pooler.max_message_size", 4096);
    let config = set_config(&config, "pooler.error_log_interval", "2s");
    let (config, metrics_port) = with_metrics(config);
    let sluice = SluiceProcess::start(&config);
    let port = sluice.port();

    // Wrong passwords, as fast as they come.
    let started = Instant::now();
    for _ in 0..BAD_LOGINS {
        let cfg = client_config(port, APP_DB, MD5_USER, "wrong");
        let e = connect_config(&cfg).await.expect_err("wrong password");
        assert_eq!(sqlstate(&e), Some("28P01"), "{}", describe_error(&e));
    }
    let flood = started.elapsed();
    // A database sluice does not know, twice.
    for _ in 0..2 {
        let cfg = client_config(port, "nosuchdb", APP_USER, APP_PASSWORD);
        let e = connect_config(&cfg).await.expect_err("unknown database");
        assert_eq!(sqlstate(&e), Some("3D000"), "{}", describe_error(&e));
    }
    // Garbage instead of a startup packet.
    let answer = exchange(port, b"\0\0\0\x08garbage!").await;
    assert!(String::from_utf8_lossy(&answer).contains("08P01"));
    // A logged-in client sends a message over max_message_size that sluice must hold whole (a
    // Parse: a simple Query that long would stream to the server).
    let mut s = RawConn::connect(
        ([127, 0, 0, 1], port).into(),
        APP_USER,
        APP_DB,
        Some(APP_PASSWORD),
        &[],
    )
    .await
    .expect("login")
    .into_stream();
    let mut big = vec![b'P'];
    big.extend_from_slice(&100_000i32.to_be_bytes());
    s.write_all(&big).await.unwrap();
    let mut answer = Vec::new();
    within(STEP, "the oversized refusal", s.read_to_end(&mut answer))
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.contains("08P01") && text.contains("max_message_size"),
        "{text}"
    );
    // Over max_client_conn (3): the fourth connection is refused.
    let held: Vec<_> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            let cfg = client_config(port, APP_DB, APP_USER, APP_PASSWORD);
            v.push(connect_config(&cfg).await.expect("under max_client_conn").0);
        }
        v
    };
    let cfg = client_config(port, APP_DB, APP_USER, APP_PASSWORD);
    let e = connect_config(&cfg)
        .await
        .expect_err("over max_client_conn");
    assert_eq!(sqlstate(&e), Some("53300"), "{}", describe_error(&e));
    drop(held);

    for (reason, n) in [
        ("bad_password", BAD_LOGINS as f64),
        ("unknown_database", 2.0),
        ("protocol_violation", 1.0),
        ("oversized_message", 1.0),
        ("max_client_conn", 1.0),
        ("login_timeout", 0.0),
        ("message_memory", 0.0),
    ] {
        assert_eq!(refusals(metrics_port, reason).await, n, "{reason}");
    }

    // The log: every bad password is accounted for, in at most one line per 2 s interval.
    let counted = |lines: &[serde_json::Value]| -> u64 {
        lines
            .iter()
            .map(|l| l["fields"]["count"].as_u64().unwrap())
            .sum()
    };
    let bad_password_lines = || -> Vec<serde_json::Value> {
        sluice
            .log_lines()
            .iter()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a JSON line"))
            .filter(|v| v["fields"]["reason"] == "bad_password")
            .collect()
    };
    poll_until(STEP, "the flood's count to be logged", || {
        let lines = bad_password_lines();
        async move { counted(&lines) == BAD_LOGINS as u64 }
    })
    .await;
    let lines = bad_password_lines();
    let intervals = (flood.as_secs_f64() / 2.0).ceil() as usize;
    assert!(
        lines.len() <= 2 + intervals,
        "{} lines for {BAD_LOGINS} refusals in {flood:?}: {lines:#?}",
        lines.len()
    );
    assert_eq!(
        lines[0]["fields"]["count"], 1,
        "the first is logged at once"
    );
    assert_eq!(lines[0]["level"], "WARN");
    let last = lines[0]["fields"]["last"].as_str().unwrap();
    assert!(last.contains("28P01") && last.contains(MD5_USER), "{last}");
    // Other kinds have lines of their own.
    for reason in ["unknown_database", "oversized_message", "max_client_conn"] {
        sluice
            .wait_for_log(
                &format!("\"reason\":\"{reason}\""),
                1,
                Duration::from_secs(5),
            )
            .await;
    }
}
