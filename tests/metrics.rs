//! The HTTP endpoint: /metrics under a saturating load, /healthz, /readyz.

mod common;

use std::time::Duration;

use common::*;
use sluice::config::PoolMode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A config with `metrics_listen` on a free loopback port; returns it and the port.
fn with_metrics(config: String) -> (String, u16) {
    let port = free_port();
    let config = set_config(
        &config,
        "pooler.metrics_listen",
        format!("127.0.0.1:{port}"),
    );
    (config, port)
}

/// One HTTP request (`request` is the whole head); returns (status, body).
async fn http(port: u16, request: &str) -> (u16, String) {
    within(STEP, request, async {
        // sluice binds the endpoint as it starts, a moment after its client port.
        let mut tries = 0;
        let mut s = loop {
            match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                Ok(s) => break s,
                Err(e) if tries < 100 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("connect to the metrics endpoint: {e}"),
            }
        };
        s.write_all(request.as_bytes()).await.unwrap();
        let mut resp = Vec::new();
        s.read_to_end(&mut resp).await.unwrap();
        let text = String::from_utf8(resp).expect("UTF-8 response");
        let (head, body) = text.split_once("\r\n\r\n").expect("a header/body split");
        let status: u16 = head
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("no status in {head:?}"));
        assert!(head.contains("Connection: close"), "{head}");
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no Content-Length in {head:?}"));
        if !request.starts_with("HEAD") {
            assert_eq!(len, body.len(), "Content-Length");
        }
        (status, body.to_owned())
    })
    .await
}

async fn get(port: u16, path: &str) -> (u16, String) {
    http(
        port,
        &format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n"),
    )
    .await
}

async fn scrape(port: u16) -> String {
    let (status, body) = get(port, "/metrics").await;
    assert_eq!(status, 200, "{body}");
    body
}

/// The value of the sample `name{...}` whose labels include every `k="v"` of `labels`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let (label_part, value) = match rest.strip_prefix('{') {
            Some(r) => {
                let (l, v) = r.split_once("} ")?;
                (l, v)
            }
            None => ("", rest.strip_prefix(' ')?),
        };
        let all = labels
            .iter()
            .all(|(k, v)| label_part.split(',').any(|p| p == format!("{k}=\"{v}\"")));
        if all { value.trim().parse().ok() } else { None }
    })
}

const APP_POOL: [(&str, &str); 3] = [("database", "app"), ("user", "app"), ("role", "primary")];

fn pool_sample(text: &str, name: &str, extra: &[(&str, &str)]) -> f64 {
    let mut labels = APP_POOL.to_vec();
    labels.extend_from_slice(extra);
    sample(text, name, &labels).unwrap_or_else(|| panic!("no {name} {labels:?} in\n{text}"))
}

#[tokio::test]
async fn saturated_pool_shows_waiting_clients_and_wait_histogram_then_returns_to_zero() {
    let pg = PgCluster::start();
    let (config, port) = with_metrics(config_for(&pg, 2, PoolMode::Transaction));
    let pooler = Sluice::start(config);

    // Before any client: the families are there, the pool is not (it is made at first login).
    let text = scrape(port).await;
    for family in [
        "sluice_pool_clients",
        "sluice_pool_servers",
        "sluice_pool_utilization",
        "sluice_pool_longest_wait_seconds",
        "sluice_transactions_total",
        "sluice_server_connections_closed_total",
    ] {
        assert!(
            text.contains(&format!("# HELP {family} ")),
            "{family}: {text}"
        );
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "{family}: {text}"
        );
    }

    const CLIENTS: usize = 20;
    const ROUNDS: usize = 6;
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(pooler.connect_app().await);
    }
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(CLIENTS + 1));
    let mut tasks = Vec::new();
    for c in clients {
        let start = start.clone();
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            for _ in 0..ROUNDS {
                c.simple_query("SELECT pg_sleep(0.05)").await.unwrap();
            }
            c
        }));
    }
    start.wait().await;

    // While 20 clients share 2 connections, clients wait and the wait histogram grows.
    let mut max_waiting = 0.0f64;
    let mut first_count = None;
    let mut rising = false;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::time::Instant::now() < deadline && !(max_waiting > 0.0 && rising) {
        let text = scrape(port).await;
        max_waiting = max_waiting.max(pool_sample(
            &text,
            "sluice_pool_clients",
            &[("state", "waiting")],
        ));
        let count = pool_sample(&text, "sluice_client_wait_seconds_count", &[]);
        match first_count {
            None => first_count = Some(count),
            Some(c) if count > c => rising = true,
            _ => {}
        }
        let active = pool_sample(&text, "sluice_pool_servers", &[("state", "active")]);
        assert!(
            active <= 2.0,
            "more servers active than the pool has: {active}"
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert!(max_waiting > 0.0, "never saw a waiting client");
    assert!(rising, "the wait histogram's count did not rise under load");

    let mut clients = Vec::new();
    for t in tasks {
        clients.push(within(Duration::from_secs(60), "load", t).await.unwrap());
    }

    // After the load: nobody waits, nobody holds a server; the clients are idle.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = scrape(port).await;
        let ok = pool_sample(&text, "sluice_pool_clients", &[("state", "waiting")]) == 0.0
            && pool_sample(&text, "sluice_pool_clients", &[("state", "active")]) == 0.0
            && pool_sample(&text, "sluice_pool_servers", &[("state", "active")]) == 0.0
            && pool_sample(&text, "sluice_pool_longest_wait_seconds", &[]) == 0.0
            && pool_sample(&text, "sluice_pool_clients", &[("state", "idle")]) == CLIENTS as f64;
        if ok {
            break text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "gauges did not return to 0 after the load:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let total = (CLIENTS * ROUNDS) as f64;
    assert!(
        pool_sample(&text, "sluice_transactions_total", &[]) >= total,
        "{text}"
    );
    assert!(
        pool_sample(&text, "sluice_queries_total", &[]) >= total,
        "{text}"
    );
    assert!(pool_sample(&text, "sluice_client_received_bytes_total", &[]) > 0.0);
    assert!(pool_sample(&text, "sluice_client_sent_bytes_total", &[]) > 0.0);
    assert_eq!(pool_sample(&text, "sluice_pool_size", &[]), 2.0);
    assert_eq!(
        pool_sample(&text, "sluice_server_connections_opened_total", &[]),
        2.0
    );
    // Real buckets, cumulative, ending in +Inf = count.
    let inf = pool_sample(
        &text,
        "sluice_client_wait_seconds_bucket",
        &[("le", "+Inf")],
    );
    let count = pool_sample(&text, "sluice_client_wait_seconds_count", &[]);
    assert_eq!(inf, count);
    assert!(
        count >= total,
        "one wait per transaction: {count} < {total}"
    );
    let fast = pool_sample(
        &text,
        "sluice_client_wait_seconds_bucket",
        &[("le", "0.0001")],
    );
    assert!(
        fast < count,
        "some clients waited longer than 100µs: {fast} of {count}"
    );
    let q = pool_sample(&text, "sluice_query_duration_seconds_count", &[]);
    assert!(q >= total, "{text}");
    // pg_sleep(0.05) takes at least 50ms.
    let under_50ms = pool_sample(
        &text,
        "sluice_query_duration_seconds_bucket",
        &[("le", "0.05")],
    );
    assert!(under_50ms < q, "{text}");
    assert!(
        text.contains("# TYPE sluice_client_wait_seconds histogram"),
        "{text}"
    );

    // Errors are counted by SQLSTATE class.
    let c = &clients[0];
    c.simple_query("SELECT 1/0")
        .await
        .expect_err("division by zero");
    let text = scrape(port).await;
    assert_eq!(
        pool_sample(&text, "sluice_client_errors_total", &[("class", "22")]),
        1.0
    );

    drop(clients);
    poll_until(
        Duration::from_secs(10),
        "idle clients gone",
        || async move {
            let text = scrape(port).await;
            pool_sample(&text, "sluice_pool_clients", &[("state", "idle")]) == 0.0
        },
    )
    .await;
}

#[tokio::test]
async fn health_and_readiness() {
    let pg = PgCluster::start();
    let config = config_for(&pg, 2, PoolMode::Transaction);
    // Long enough to look at the endpoint while draining; the test ends the drain itself.
    let (config, port) = with_metrics(set_config(&config, "pooler.shutdown_timeout", "20s"));
    let pooler = Sluice::start(config);

    let (status, body) = get(port, "/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    // No pool has connected yet, but the server accepts connections.
    let (status, body) = get(port, "/readyz").await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = get(port, "/nope").await;
    assert_eq!(status, 404);
    let (status, _) = http(port, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n").await;
    assert_eq!(status, 405);
    let (status, body) = http(port, "HEAD /healthz HTTP/1.1\r\n\r\n").await;
    assert_eq!((status, body.as_str()), (200, ""));
    let (status, _) = http(port, "garbage\r\n\r\n").await;
    assert_eq!(status, 400);

    // Draining: /readyz says 503 while a transaction holds the shutdown open.
    let client = pooler.connect_app().await;
    client.batch_execute("BEGIN; SELECT 1").await.unwrap();
    let stopper = std::thread::spawn(move || pooler.shutdown());
    poll_until(
        Duration::from_secs(10),
        "/readyz 503 while draining",
        || async move { get(port, "/readyz").await.0 == 503 },
    )
    .await;
    let (status, _) = get(port, "/healthz").await;
    assert_eq!(status, 200, "healthy while draining");
    let text = scrape(port).await;
    assert!(text.contains("\nsluice_draining 1\n"), "{text}");
    // The open transaction may finish; then the drain ends.
    client.batch_execute("COMMIT").await.unwrap();
    stopper.join().unwrap().unwrap();
}

#[tokio::test]
async fn readiness_fails_for_a_database_that_cannot_be_reached() {
    let pg = PgCluster::start();
    let dead = free_port();
    let config = config_for(&pg, 2, PoolMode::Transaction);
    let config = set_config(&config, "databases.dead.port", i64::from(dead));
    let (config, port) = with_metrics(config);
    let _pooler = Sluice::start(config);
    let (status, body) = get(port, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("dead: not ready"), "{body}");
    assert!(body.contains("app: ok"), "{body}");
}

#[tokio::test]
async fn metrics_listen_that_cannot_be_bound_fails_start_up() {
    let pg = PgCluster::start();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let config = set_config(
        &config_for(&pg, 2, PoolMode::Transaction),
        "pooler.metrics_listen",
        addr.to_string(),
    );
    let config = sluice::Config::from_toml(&config).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let e = within(
        STEP,
        "run",
        sluice::run(config, listener, std::future::pending()),
    )
    .await
    .expect_err("the metrics port is taken");
    assert!(e.to_string().contains("metrics_listen"), "{e}");
}

#[tokio::test]
async fn readiness_fails_when_a_database_that_was_reached_goes_down() {
    let mut pg = PgCluster::start();
    let (config, port) = with_metrics(config_for(&pg, 2, PoolMode::Transaction));
    let pooler = Sluice::start(config);
    // The pool logs in to the server once.
    let c = pooler.connect_app().await;
    c.simple_query("SELECT 1").await.unwrap();
    drop(c);
    let (status, body) = get(port, "/readyz").await;
    assert_eq!(status, 200, "{body}");
    pg.stop();
    poll_until(STEP, "/readyz 503 once the server is down", || async move {
        let (status, body) = get(port, "/readyz").await;
        status == 503 && body.contains("app: not ready")
    })
    .await;
    pg.start_again();
    poll_until(STEP, "/readyz 200 once the server is back", || async move {
        get(port, "/readyz").await.0 == 200
    })
    .await;
}
