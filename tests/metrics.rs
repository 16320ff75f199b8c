//! The HTTP endpoint: /metrics under a saturating load, /healthz, /readyz.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use sluice::config::PoolMode;

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

/// The families README.md documents, by type.
const FAMILIES: [(&str, &str); 24] = [
    ("sluice_pool_clients", "gauge"),
    ("sluice_pool_servers", "gauge"),
    ("sluice_pool_size", "gauge"),
    ("sluice_pool_utilization", "gauge"),
    ("sluice_pool_longest_wait_seconds", "gauge"),
    ("sluice_pool_paused", "gauge"),
    ("sluice_client_wait_seconds", "histogram"),
    ("sluice_transaction_duration_seconds", "histogram"),
    ("sluice_query_duration_seconds", "histogram"),
    ("sluice_transactions_total", "counter"),
    ("sluice_queries_total", "counter"),
    ("sluice_client_received_bytes_total", "counter"),
    ("sluice_client_sent_bytes_total", "counter"),
    ("sluice_server_connections_opened_total", "counter"),
    ("sluice_server_connect_failures_total", "counter"),
    ("sluice_server_connections_closed_total", "counter"),
    ("sluice_client_errors_total", "counter"),
    ("sluice_client_wait_timeouts_total", "counter"),
    ("sluice_prepared_cache_hits_total", "counter"),
    ("sluice_prepared_cache_misses_total", "counter"),
    ("sluice_prepared_cache_evictions_total", "counter"),
    ("sluice_client_connections", "gauge"),
    ("sluice_max_client_connections", "gauge"),
    ("sluice_draining", "gauge"),
];

/// Every label sluice may put on a sample: the pool's, the few bounded ones, and the histogram's.
const LABELS: [&str; 8] = [
    "database", "user", "role", "state", "reason", "class", "le", "version",
];

/// Splits `name{a="x",b="y"} value` into (name, [(label, value)], value). Label values here never
/// hold `,` or `"`, so a plain split does.
fn parse_sample(line: &str) -> (String, Vec<(String, String)>, String) {
    let (series, value) = line
        .rsplit_once(' ')
        .unwrap_or_else(|| panic!("no value: {line:?}"));
    let (name, labels) = match series.split_once('{') {
        Some((name, rest)) => {
            let inner = rest
                .strip_suffix('}')
                .unwrap_or_else(|| panic!("unclosed labels: {line:?}"));
            let labels = inner
                .split(',')
                .map(|kv| {
                    let (k, v) = kv
                        .split_once('=')
                        .unwrap_or_else(|| panic!("bad label {kv:?} in {line:?}"));
                    let v = v
                        .strip_prefix('"')
                        .and_then(|v| v.strip_suffix('"'))
                        .unwrap_or_else(|| panic!("unquoted label value in {line:?}"));
                    (k.to_owned(), v.to_owned())
                })
                .collect();
            (name, labels)
        }
        None => (series, Vec::new()),
    };
    (name.to_owned(), labels, value.to_owned())
}

#[tokio::test]
async fn exposition_follows_prometheus_conventions_without_per_client_labels() {
    let pg = PgCluster::start();
    let (config, port) = with_metrics(config_for(&pg, 2, PoolMode::Transaction));
    let pooler = Sluice::start(config);
    // Some of everything: a transaction, a prepared statement, an error, from a client whose
    // application_name must not show up anywhere.
    let mut cfg = pooler.pg_config(APP_DB, APP_USER, APP_PASSWORD);
    cfg.application_name("per-client-marker");
    let (client, _) = connect_config(&cfg).await.expect("connect");
    client
        .batch_execute("BEGIN; SELECT 1; COMMIT")
        .await
        .unwrap();
    let stmt = client.prepare("SELECT $1::int4").await.unwrap();
    client.query(&stmt, &[&7i32]).await.unwrap();
    client.simple_query("SELECT 1/0").await.expect_err("22012");
    let text = scrape(port).await;
    assert!(!text.contains("per-client-marker"), "{text}");

    let mut help: HashMap<String, String> = HashMap::new();
    let mut kind: HashMap<String, String> = HashMap::new();
    let mut samples = 0;
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, h) = rest.split_once(' ').unwrap_or((rest, ""));
            assert!(h.trim().len() > 10, "HELP of {name} says nothing: {line:?}");
            assert!(
                help.insert(name.into(), h.into()).is_none(),
                "two HELP lines for {name}"
            );
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, k) = rest.split_once(' ').unwrap_or_else(|| panic!("{line:?}"));
            assert!(
                help.contains_key(name),
                "TYPE before (or without) HELP: {name}"
            );
            assert!(
                kind.insert(name.into(), k.into()).is_none(),
                "two TYPE lines for {name}"
            );
            continue;
        }
        assert!(!line.starts_with('#'), "unexpected comment {line:?}");
        let (name, labels, value) = parse_sample(line);
        samples += 1;
        assert!(
            value == "+Inf" || value.parse::<f64>().is_ok(),
            "value of {line:?}"
        );
        // The family: the name itself, or a histogram's for its _bucket/_sum/_count series.
        let family = if kind.contains_key(&name) {
            name.clone()
        } else {
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or_else(|| panic!("sample before its TYPE: {line:?}"));
            assert_eq!(
                kind.get(base).map(String::as_str),
                Some("histogram"),
                "{line:?}"
            );
            base.to_owned()
        };
        assert!(family.starts_with("sluice_"), "{line:?}");
        for (k, v) in &labels {
            assert!(LABELS.contains(&k.as_str()), "label {k} in {line:?}");
            assert!(!v.is_empty(), "empty label {k} in {line:?}");
        }
        let has = |k: &str| labels.iter().any(|(l, _)| l == k);
        assert_eq!(has("le"), name.ends_with("_bucket"), "{line:?}");
        // Refusals are process-wide: most happen before a pool is chosen (a wrong password, an
        // unknown database, max_client_conn), so they carry only `reason`.
        let process_wide = family == "sluice_client_refusals_total";
        if !process_wide
            && (family.starts_with("sluice_pool_")
                || family.contains("_total")
                || kind[&family] == "histogram")
        {
            assert!(
                has("database") && has("user") && has("role"),
                "a per-pool sample without the pool's labels: {line:?}"
            );
        }
    }
    assert!(samples > 50, "{text}");
    for (name, k) in &kind {
        // Base units in the name, counters (only they) ending in _total.
        assert_eq!(k == "counter", name.ends_with("_total"), "{name} is a {k}");
        if k == "histogram" || (name.contains("wait") && k == "gauge") {
            assert!(name.ends_with("_seconds"), "{name}: seconds");
        }
        if name.contains("bytes") {
            assert!(
                name.ends_with("_bytes_total") || name.ends_with("_bytes"),
                "{name}"
            );
        }
        assert!(
            !name.contains("milli") && !name.contains("micro"),
            "{name}: base units"
        );
    }
    for (name, k) in FAMILIES {
        assert_eq!(kind.get(name).map(String::as_str), Some(k), "{name}");
    }
}

#[tokio::test]
async fn counters_for_timeouts_errors_closes_failures_and_the_prepared_cache() {
    let pg = PgCluster::start();
    let config = config_for(&pg, 1, PoolMode::Transaction);
    let config = set_config(&config, "pooler.query_wait_timeout", "500ms");
    let config = set_config(&config, "pooler.max_prepared_statements", 2);
    let config = set_config(&config, "pooler.admin_users", vec![TRUST_USER.to_owned()]);
    let config = set_config(&config, "databases.dead.port", i64::from(free_port()));
    let (config, port) = with_metrics(config);
    let pooler = Sluice::start(config);

    // The only server connection held in a transaction: the next checkout times out (57014).
    let holder = pooler.connect_app().await;
    holder.batch_execute("BEGIN; SELECT 1").await.unwrap();
    let waiter = pooler.connect_app().await;
    let e = waiter
        .simple_query("SELECT 1")
        .await
        .expect_err("query_wait_timeout");
    assert_eq!(sqlstate(&e), Some("57014"), "{e:?}");
    holder.batch_execute("COMMIT").await.unwrap();
    let text = scrape(port).await;
    assert_eq!(
        pool_sample(&text, "sluice_client_wait_timeouts_total", &[]),
        1.0
    );
    assert_eq!(
        pool_sample(&text, "sluice_client_errors_total", &[("class", "57")]),
        1.0
    );

    // Prepared statements: 3 statements on a connection that keeps 2.
    let c = &waiter;
    let mut stmts = Vec::new();
    for sql in ["SELECT 1::int4", "SELECT 2::int4", "SELECT 3::int4"] {
        let s = c.prepare(sql).await.unwrap();
        c.query(&s, &[]).await.unwrap();
        c.query(&s, &[]).await.unwrap();
        stmts.push(s);
    }
    // The first was closed to make room; using it prepares it again.
    c.query(&stmts[0], &[]).await.unwrap();
    let text = scrape(port).await;
    let hits = pool_sample(&text, "sluice_prepared_cache_hits_total", &[]);
    let misses = pool_sample(&text, "sluice_prepared_cache_misses_total", &[]);
    let evictions = pool_sample(&text, "sluice_prepared_cache_evictions_total", &[]);
    assert!(misses >= 4.0, "misses {misses}\n{text}");
    assert!(hits >= 6.0, "hits {hits}\n{text}");
    assert!(evictions >= 2.0, "evictions {evictions}\n{text}");

    let closed = |text: &str, reason: &str| {
        pool_sample(
            text,
            "sluice_server_connections_closed_total",
            &[("reason", reason)],
        )
    };
    // RECONNECT closes the idle connection: reason admin.
    let console = pooler.connect("sluice", TRUST_USER, TRUST_PASSWORD).await;
    console.simple_query("RECONNECT app").await.unwrap();
    assert_eq!(closed(&scrape(port).await, "admin"), 1.0);

    // A client that leaves inside a transaction: its connection is closed, reason unclean.
    let leaver = pooler.connect_app().await;
    leaver.batch_execute("BEGIN; SELECT 1").await.unwrap();
    drop(leaver);
    poll_until(STEP, "closed{reason=unclean}", || async move {
        closed(&scrape(port).await, "unclean") == 1.0
    })
    .await;

    // The idle connection's backend is terminated: reason server_lost, noticed at the next use.
    c.simple_query("SELECT 1").await.unwrap();
    let su = pg.superuser(APP_DB).await;
    su.batch_execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'app' AND backend_type = 'client backend'",
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Whether sluice sees the death before lending the connection (and reconnects) or while
    // relaying (and the client gets 08006), the close is counted as server_lost.
    let _ = c.simple_query("SELECT 1").await;
    poll_until(STEP, "closed{reason=server_lost}", || async move {
        closed(&scrape(port).await, "server_lost") >= 1.0
    })
    .await;

    // A database nobody listens for: connect failures, on that pool's labels.
    let e = pooler
        .try_connect("dead", APP_USER, APP_PASSWORD)
        .await
        .expect_err("dead database");
    let text = scrape(port).await;
    let failures = sample(
        &text,
        "sluice_server_connect_failures_total",
        &[("database", "dead"), ("user", APP_USER)],
    );
    assert!(
        failures.is_some_and(|f| f >= 1.0),
        "{failures:?} after {e:?}\n{text}"
    );
    assert_eq!(
        pool_sample(&text, "sluice_server_connect_failures_total", &[]),
        0.0
    );

    // idle_timeout and lifetime, with a second pooler whose timers are short.
    let config = config_for(&pg, 1, PoolMode::Transaction);
    let config = set_config(&config, "pooler.server_idle_timeout", "300ms");
    let (config, port2) = with_metrics(config);
    let short = Sluice::start(config);
    let c2 = short.connect_app().await;
    c2.simple_query("SELECT 1").await.unwrap();
    poll_until(STEP, "closed{reason=idle_timeout}", || async move {
        closed(&scrape(port2).await, "idle_timeout") == 1.0
    })
    .await;
    let config = config_for(&pg, 1, PoolMode::Transaction);
    let config = set_config(&config, "pooler.server_lifetime", "300ms");
    let (config, port3) = with_metrics(config);
    let old = Sluice::start(config);
    let c3 = old.connect_app().await;
    c3.simple_query("SELECT 1").await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    c3.simple_query("SELECT 1").await.unwrap();
    poll_until(STEP, "closed{reason=lifetime}", || async move {
        closed(&scrape(port3).await, "lifetime") >= 1.0
    })
    .await;
}

#[tokio::test]
async fn gauges_stay_exact_when_clients_leave_mid_transaction_or_while_waiting() {
    let pg = PgCluster::start();
    let (config, port) = with_metrics(config_for(&pg, 2, PoolMode::Transaction));
    let pooler = Sluice::start(config);
    const ROUNDS: usize = 3;
    const CLIENTS: usize = 12;
    for round in 0..ROUNDS {
        // Each round starts once the last round's sessions have all been noticed gone.
        poll_until(STEP, "the last round's sessions gone", || async move {
            sample(&scrape(port).await, "sluice_client_connections", &[]) == Some(0.0)
        })
        .await;
        let mut conns = Vec::new();
        for _ in 0..CLIENTS {
            conns.push(RawConn::connect_app(pooler.addr()).await);
        }
        // A third open a transaction and keep it; the rest ask for a slow query, so most of them
        // queue behind the two server connections.
        for (i, c) in conns.iter_mut().enumerate() {
            if i % 3 == 0 {
                c.send_query("BEGIN").await.unwrap();
            } else {
                c.send_query("SELECT pg_sleep(0.5)").await.unwrap();
            }
        }
        // Every session is counted exactly once, in one state, and some queue.
        poll_until(
            STEP,
            "every session counted once, some waiting",
            || async move {
                let text = scrape(port).await;
                let active = pool_sample(&text, "sluice_pool_servers", &[("state", "active")]);
                let clients_active =
                    pool_sample(&text, "sluice_pool_clients", &[("state", "active")]);
                let waiting = pool_sample(&text, "sluice_pool_clients", &[("state", "waiting")]);
                let idle = pool_sample(&text, "sluice_pool_clients", &[("state", "idle")]);
                assert!(
                    active <= 2.0,
                    "round {round}: {active} active servers\n{text}"
                );
                assert!(
                    clients_active + waiting + idle <= CLIENTS as f64,
                    "round {round}: a session counted twice\n{text}"
                );
                clients_active + waiting + idle == CLIENTS as f64
                    && waiting > 0.0
                    && active == clients_active
            },
        )
        .await;
        // Everyone leaves abruptly (no Terminate): inside a transaction, mid-query, or queued.
        // Half now, half a moment later, so some go while others still move through the queue.
        let later = conns.split_off(CLIENTS / 2);
        drop(conns);
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(later);
    }
    // Plus clients that log in and go without a word, and some that go while logging in.
    for _ in 0..5 {
        drop(RawConn::connect_app(pooler.addr()).await);
        drop(tokio::net::TcpStream::connect(pooler.addr()).await.unwrap());
    }
    poll_until(
        Duration::from_secs(20),
        "every gauge back to exactly 0",
        || async move {
            let text = scrape(port).await;
            let zero = |name: &str, extra: &[(&str, &str)]| pool_sample(&text, name, extra) == 0.0;
            zero("sluice_pool_clients", &[("state", "active")])
                && zero("sluice_pool_clients", &[("state", "waiting")])
                && zero("sluice_pool_clients", &[("state", "idle")])
                && zero("sluice_pool_servers", &[("state", "active")])
                && zero("sluice_pool_servers", &[("state", "connecting")])
                && zero("sluice_pool_utilization", &[])
                && zero("sluice_pool_longest_wait_seconds", &[])
                && sample(&text, "sluice_client_connections", &[]) == Some(0.0)
                && pool_sample(&text, "sluice_pool_servers", &[("state", "idle")]) <= 2.0
        },
    )
    .await;
    // And the pool still works at full size.
    let c = pooler.connect_app().await;
    c.simple_query("SELECT 1").await.unwrap();
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
