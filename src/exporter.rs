//! The HTTP endpoint (`[pooler] metrics_listen`): `/metrics` in Prometheus text format, `/healthz`
//! and `/readyz`; and the background upkeep that the statistics need.
//!
//! The responder is a deliberately small HTTP/1.1 server: one request per connection (`Connection:
//! close`), GET (and HEAD) only, the request head capped at 8 KiB and 5 s, at most 32 connections
//! at once. Scrapers and probes need nothing more, and it keeps hyper and a TLS stack out of the
//! build.
//!
//! `/metrics` is assembled at scrape time: gauges and counters from each pool's own state and
//! atomics (see `stats.rs`), then the histograms that the pools record into this instance's
//! Prometheus recorder.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use metrics::{Key, KeyName, Label, Level, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use crate::Shared;
use crate::pool::Role;
use crate::pool::{Pool, PoolKey};
use crate::router::RouteReason;
use crate::stats::{CloseReason, Histograms, PoolGauges, STATS_PERIOD};

pub const WAIT_SECONDS: &str = "sluice_client_wait_seconds";
pub const TRANSACTION_SECONDS: &str = "sluice_transaction_duration_seconds";
pub const QUERY_SECONDS: &str = "sluice_query_duration_seconds";

/// Bucket upper bounds, in seconds. Waits are usually zero and interesting from a millisecond on;
/// transactions and queries range from sub-millisecond to minutes.
const WAIT_BUCKETS: &[f64] = &[
    0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    30.0,
];
const DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0,
];

/// This pooler's Prometheus recorder (not installed globally; see `stats.rs`).
pub struct Exporter {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
}

impl Default for Exporter {
    fn default() -> Self {
        Self::new()
    }
}

impl Exporter {
    pub fn new() -> Exporter {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(WAIT_SECONDS.into()), WAIT_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full(TRANSACTION_SECONDS.into()),
                    DURATION_BUCKETS,
                )
            })
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Full(QUERY_SECONDS.into()), DURATION_BUCKETS)
            })
            .expect("bucket lists are not empty");
        let recorder = builder.build_recorder();
        for (name, help) in [
            (
                WAIT_SECONDS,
                "Time a client waited for a server connection, per checkout (zero when one was free).",
            ),
            (
                TRANSACTION_SECONDS,
                "Duration of transactions, from the first message sent to the server to the ReadyForQuery that ends the transaction.",
            ),
            (
                QUERY_SECONDS,
                "Duration of requests (a simple Query, or an extended-protocol batch up to Sync), from the first message sent to the server to its ReadyForQuery.",
            ),
        ] {
            recorder.describe_histogram(
                KeyName::from(name),
                Some(Unit::Seconds),
                SharedString::from(help),
            );
        }
        let handle = recorder.handle();
        Exporter { recorder, handle }
    }

    /// Registers the histograms of one pool.
    pub fn histograms(&self, key: &PoolKey, replica: Option<String>) -> Histograms {
        let mut labels = vec![
            Label::new("database", key.database.clone()),
            Label::new("user", key.user.clone()),
            Label::new("role", key.role.label()),
        ];
        if let Some(addr) = replica {
            labels.push(Label::new("replica", addr));
        }
        let meta = Metadata::new(module_path!(), Level::INFO, Some(module_path!()));
        let h = |name: &'static str| {
            self.recorder
                .register_histogram(&Key::from_parts(name, labels.clone()), &meta)
        };
        Histograms {
            wait: h(WAIT_SECONDS),
            transaction: h(TRANSACTION_SECONDS),
            query: h(QUERY_SECONDS),
        }
    }

    /// Folds recorded samples into the histograms, so they do not pile up between scrapes.
    pub fn upkeep(&self) {
        self.handle.run_upkeep();
    }
}

/// The background tasks; aborted when dropped (at the end of `sluice::run`).
pub struct Observer {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Observer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Starts the stats upkeep and, with `metrics_listen`, the HTTP endpoint (binding it now, so a
/// taken port fails start-up).
pub async fn start(
    shared: &Arc<Shared>,
    drain: watch::Receiver<bool>,
) -> std::io::Result<Observer> {
    let mut tasks = vec![tokio::spawn(upkeep(shared.clone()))];
    if let Some(addr) = shared.config().metrics_addr() {
        let listener = TcpListener::bind(addr).await.map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot listen on {addr} (metrics_listen): {e}"),
            )
        })?;
        tracing::info!(%addr, "metrics endpoint listening");
        tasks.push(tokio::spawn(serve_http(listener, shared.clone(), drain)));
    }
    Ok(Observer { tasks })
}

async fn upkeep(shared: Arc<Shared>) {
    // Samples pile up between folds (a few MB a second at 100k transactions/s): fold often.
    let tick = Duration::from_secs(1);
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_period = Instant::now();
    for pool in pools(&shared) {
        pool.metrics.roll_period(last_period);
    }
    loop {
        interval.tick().await;
        if let Some(e) = &shared.exporter {
            e.upkeep();
        }
        let now = Instant::now();
        if now.duration_since(last_period) >= STATS_PERIOD {
            last_period = now;
            for pool in pools(&shared) {
                pool.metrics.roll_period(now);
            }
        }
    }
}

/// The pools, in a stable order.
pub fn pools(shared: &Shared) -> Vec<Arc<Pool>> {
    let mut v: Vec<Arc<Pool>> = shared.pools.iter().map(|e| e.value().clone()).collect();
    v.sort_by(|a, b| a.key.cmp(&b.key));
    v
}

async fn serve_http(listener: TcpListener, shared: Arc<Shared>, drain: watch::Receiver<bool>) {
    let limit = Arc::new(Semaphore::new(32));
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "metrics endpoint: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            continue;
        };
        let shared = shared.clone();
        let draining = *drain.borrow();
        tokio::spawn(async move {
            let _ =
                tokio::time::timeout(Duration::from_secs(10), respond(stream, &shared, draining))
                    .await;
            drop(permit);
        });
    }
}

/// Reads one request head and answers it.
async fn respond(mut stream: TcpStream, shared: &Shared, draining: bool) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let complete = tokio::time::timeout(Duration::from_secs(5), async {
        let mut chunk = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok::<bool, std::io::Error>(false);
            }
            head.extend_from_slice(&chunk[..n]);
        }
        Ok(true)
    })
    .await;
    let (status, content_type, body, head_only) = match complete {
        Ok(Ok(true)) => route(&head, shared, draining).await,
        Ok(Ok(false)) | Err(_) => return Ok(()),
        Ok(Err(e)) => return Err(e),
    };
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if status == 405 {
        out.push_str("Allow: GET, HEAD\r\n");
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    if !head_only {
        bytes.extend_from_slice(body.as_bytes());
    }
    stream.write_all(&bytes).await?;
    stream.shutdown().await
}

const TEXT: &str = "text/plain; charset=utf-8";
const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";

async fn route(head: &[u8], shared: &Shared, draining: bool) -> (u16, &'static str, String, bool) {
    let line = head.split(|b| *b == b'\r').next().unwrap_or(&[]);
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return (400, TEXT, "bad request\n".into(), false);
    };
    if !version.starts_with("HTTP/1.") {
        return (400, TEXT, "bad request\n".into(), false);
    }
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        return (405, TEXT, "only GET\n".into(), false);
    }
    let path = target.split('?').next().unwrap_or("");
    match path {
        "/metrics" => (200, PROMETHEUS, render(shared, draining), head_only),
        "/healthz" => (200, TEXT, "ok\n".into(), head_only),
        "/readyz" => {
            let (ready, body) = readiness(shared, draining).await;
            (if ready { 200 } else { 503 }, TEXT, body, head_only)
        }
        _ => (
            404,
            TEXT,
            "not found: try /metrics, /healthz, /readyz\n".into(),
            head_only,
        ),
    }
}

/// Ready: not draining, and every configured database's server accepts a TCP connection now.
///
/// Probed on every request, not remembered: a server that went away after the pools logged in
/// makes sluice unready until it is back. Each distinct address is probed once, all at once, so a
/// probe takes at most about a second however many databases are down.
pub async fn readiness(shared: &Shared, draining: bool) -> (bool, String) {
    if draining {
        return (false, "draining: sluice is shutting down\n".into());
    }
    let config = shared.config();
    let mut addrs: Vec<(String, u16)> = config
        .databases
        .values()
        .map(|db| (db.host.clone(), db.port))
        .collect();
    addrs.sort();
    addrs.dedup();
    let mut probes = tokio::task::JoinSet::new();
    for (host, port) in addrs {
        probes.spawn(async move {
            let probe = tokio::time::timeout(
                Duration::from_secs(1),
                TcpStream::connect((host.as_str(), port)),
            )
            .await;
            let verdict = match probe {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("did not answer within 1s".to_owned()),
            };
            ((host, port), verdict)
        });
    }
    let mut verdicts = std::collections::HashMap::new();
    while let Some(done) = probes.join_next().await {
        if let Ok((addr, verdict)) = done {
            verdicts.insert(addr, verdict);
        }
    }
    let mut ready = true;
    let mut body = String::new();
    for (name, db) in &config.databases {
        let (host, port) = (&db.host, db.port);
        match verdicts.get(&(host.clone(), port)) {
            Some(Ok(())) => {
                let _ = writeln!(body, "{name}: ok ({host}:{port} accepts connections)");
            }
            Some(Err(e)) => {
                ready = false;
                let _ = writeln!(body, "{name}: not ready: {host}:{port}: {e}");
            }
            None => {
                ready = false;
                let _ = writeln!(body, "{name}: not ready: {host}:{port}: the probe failed");
            }
        }
    }
    if ready {
        body.insert_str(0, "ready\n");
    }
    (ready, body)
}

/// Escapes a label value for the text format.
fn esc(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// (name, help, value) of a per-pool gauge.
type GaugeDef = (&'static str, &'static str, fn(&PoolGauges) -> f64);
/// (name, help, value) of a per-pool counter.
type CounterDef = (&'static str, &'static str, fn(&Pool) -> u64);

/// `database`, `user`, `role` and, for a replica's pool, `replica` (its host:port).
fn pool_labels(p: &Pool) -> String {
    let mut l = format!(
        "database=\"{}\",user=\"{}\",role=\"{}\"",
        esc(&p.key.database),
        esc(&p.key.user),
        p.key.role.label()
    );
    if let Role::Replica(_) = p.key.role {
        let t = p.target();
        let _ = write!(l, ",replica=\"{}:{}\"", esc(&t.host), t.port);
    }
    l
}

/// Replica health and routing decisions of the primary pools that have replicas.
fn render_routing(out: &mut String, pools: &[Arc<Pool>]) {
    let routed: Vec<(&Arc<Pool>, &crate::router::Router)> = pools
        .iter()
        .filter_map(|p| Some((p, p.router.as_deref()?)))
        .collect();
    if routed.is_empty() {
        return;
    }
    let base = |p: &Pool| {
        format!(
            "database=\"{}\",user=\"{}\"",
            esc(&p.key.database),
            esc(&p.key.user)
        )
    };
    family(
        out,
        "sluice_routed_total",
        "counter",
        "Routing decisions (one per autocommit statement, batch up to Sync, or transaction started) by target (primary, replica) and reason.",
    );
    for (p, r) in &routed {
        for reason in RouteReason::ALL {
            let _ = writeln!(
                out,
                "sluice_routed_total{{{},role=\"primary\",target=\"{}\",reason=\"{}\"}} {}",
                base(p),
                reason.target(),
                reason.label(),
                r.stats.get(reason)
            );
        }
    }
    let healths: Vec<_> = routed
        .iter()
        .flat_map(|(p, r)| {
            (0..r.replicas.len()).map(move |i| {
                let l = format!("{},replica=\"{}\"", base(p), esc(&r.addrs[i]));
                (l, r.replicas.health(i).current())
            })
        })
        .collect();
    family(
        out,
        "sluice_replica_healthy",
        "gauge",
        "1 while the replica is in rotation (reachable, in recovery, within max_replica_lag), else 0.",
    );
    for (l, h) in &healths {
        let _ = writeln!(out, "sluice_replica_healthy{{{l}}} {}", u8::from(h.healthy));
    }
    family(
        out,
        "sluice_replica_lag_seconds",
        "gauge",
        "Upper bound on how old the newest commit the replica is missing can be; 0 when caught up. Absent while unknown.",
    );
    for (l, h) in &healths {
        if let Some(v) = h.lag_seconds {
            let _ = writeln!(out, "sluice_replica_lag_seconds{{{l}}} {v}");
        }
    }
    family(
        out,
        "sluice_replica_lag_bytes",
        "gauge",
        "WAL bytes the replica has not replayed yet (primary write position minus replay position). Absent while unknown.",
    );
    for (l, h) in &healths {
        if let Some(v) = h.lag_bytes {
            let _ = writeln!(out, "sluice_replica_lag_bytes{{{l}}} {v}");
        }
    }
}

/// The whole `/metrics` page.
pub fn render(shared: &Shared, draining: bool) -> String {
    let pools = pools(shared);
    let rows: Vec<(String, &Arc<Pool>, PoolGauges)> = pools
        .iter()
        .map(|p| (pool_labels(p), p, PoolGauges::of(p)))
        .collect();
    let mut out = String::with_capacity(4096 + rows.len() * 4096);

    family(
        &mut out,
        "sluice_pool_clients",
        "gauge",
        "Client sessions of the pool by state: active (holding a server connection), waiting (for one), idle (logged in, neither).",
    );
    for (l, _, g) in &rows {
        for (state, v) in [
            ("active", g.clients_active),
            ("waiting", g.clients_waiting),
            ("idle", g.clients_idle),
        ] {
            let _ = writeln!(out, "sluice_pool_clients{{{l},state=\"{state}\"}} {v}");
        }
    }
    family(
        &mut out,
        "sluice_pool_servers",
        "gauge",
        "Server connections of the pool by state: active (lent to a client), idle (in the pool), connecting (being opened).",
    );
    for (l, _, g) in &rows {
        for (state, v) in [
            ("active", g.servers_active),
            ("idle", g.servers_idle),
            ("connecting", g.servers_connecting),
        ] {
            let _ = writeln!(out, "sluice_pool_servers{{{l},state=\"{state}\"}} {v}");
        }
    }
    let gauges: [GaugeDef; 4] = [
        (
            "sluice_pool_size",
            "Configured maximum number of server connections of the pool (pool_size).",
            |g| g.size as f64,
        ),
        (
            "sluice_pool_utilization",
            "Share of the pool's server connections lent out or being opened, from 0 to 1.",
            |g| g.utilization(),
        ),
        (
            "sluice_pool_longest_wait_seconds",
            "How long the longest-waiting client of the pool has been waiting for a server connection so far; 0 when none waits.",
            |g| g.longest_wait.as_secs_f64(),
        ),
        (
            "sluice_pool_paused",
            "1 while the pool is paused from the admin console (PAUSE, KILL), else 0.",
            |g| f64::from(u8::from(g.paused)),
        ),
    ];
    for (name, help, f) in gauges {
        family(&mut out, name, "gauge", help);
        for (l, _, g) in &rows {
            let _ = writeln!(out, "{name}{{{l}}} {}", f(g));
        }
    }

    let counters: [CounterDef; 10] = [
        (
            "sluice_transactions_total",
            "Transactions completed (a ReadyForQuery reporting idle after requests).",
            |p| p.metrics.transactions.load(Ordering::Relaxed),
        ),
        (
            "sluice_queries_total",
            "Requests completed: simple Queries and extended-protocol batches up to Sync.",
            |p| p.metrics.queries.load(Ordering::Relaxed),
        ),
        (
            "sluice_client_received_bytes_total",
            "Bytes received from the pool's clients.",
            |p| p.metrics.received.load(Ordering::Relaxed),
        ),
        (
            "sluice_client_sent_bytes_total",
            "Bytes sent to the pool's clients.",
            |p| p.metrics.sent.load(Ordering::Relaxed),
        ),
        (
            "sluice_server_connections_opened_total",
            "Server connections opened (logged in) by the pool.",
            |p| p.stats.connects.load(Ordering::Relaxed),
        ),
        (
            "sluice_server_connect_failures_total",
            "Attempts to open a server connection that failed (unreachable, timed out, login refused).",
            |p| p.stats.connect_failures.load(Ordering::Relaxed),
        ),
        (
            "sluice_client_wait_timeouts_total",
            "Checkouts that found no server connection within query_wait_timeout (the client got 57014).",
            |p| p.stats.wait_timeouts.load(Ordering::Relaxed),
        ),
        (
            "sluice_prepared_cache_hits_total",
            "Prepared statements found already prepared on the server connection (transaction mode).",
            |p| p.prepared.hits.load(Ordering::Relaxed),
        ),
        (
            "sluice_prepared_cache_misses_total",
            "Prepared statements that had to be prepared on the server connection first.",
            |p| p.prepared.misses.load(Ordering::Relaxed),
        ),
        (
            "sluice_prepared_cache_evictions_total",
            "Prepared statements closed on a server connection to stay within max_prepared_statements.",
            |p| p.prepared.evictions.load(Ordering::Relaxed),
        ),
    ];
    for (name, help, f) in counters {
        family(&mut out, name, "counter", help);
        for (l, p, _) in &rows {
            let _ = writeln!(out, "{name}{{{l}}} {}", f(p));
        }
    }
    family(
        &mut out,
        "sluice_server_connections_closed_total",
        "counter",
        "Server connections closed, by reason: idle_timeout, lifetime, unclean (returned mid-transaction or after a failed reset), server_lost (died in use or while idle), admin (PAUSE, KILL, RECONNECT).",
    );
    for (l, p, _) in &rows {
        for r in CloseReason::ALL {
            let _ = writeln!(
                out,
                "sluice_server_connections_closed_total{{{l},reason=\"{}\"}} {}",
                r.label(),
                p.metrics.closed_count(r)
            );
        }
    }
    family(
        &mut out,
        "sluice_client_errors_total",
        "counter",
        "ErrorResponses sent to clients, by SQLSTATE class (its first two characters), whether PostgreSQL or sluice raised them.",
    );
    for (l, p, _) in &rows {
        for (class, n) in p.metrics.errors() {
            let _ = writeln!(
                out,
                "sluice_client_errors_total{{{l},class=\"{}\"}} {n}",
                esc(&class)
            );
        }
    }

    family(
        &mut out,
        "sluice_client_connections",
        "gauge",
        "Client connections open, logging in or logged in, admin console included.",
    );
    let _ = writeln!(
        out,
        "sluice_client_connections {}",
        shared.clients.connections()
    );
    family(
        &mut out,
        "sluice_max_client_connections",
        "gauge",
        "Configured max_client_conn.",
    );
    let _ = writeln!(
        out,
        "sluice_max_client_connections {}",
        shared.config().pooler.max_client_conn
    );
    family(
        &mut out,
        "sluice_draining",
        "gauge",
        "1 while sluice is shutting down and draining clients, else 0.",
    );
    let _ = writeln!(out, "sluice_draining {}", u8::from(draining));
    family(
        &mut out,
        "sluice_build_info",
        "gauge",
        "Always 1; the version is in the label.",
    );
    let _ = writeln!(
        out,
        "sluice_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );

    render_routing(&mut out, &pools);

    if let Some(e) = &shared.exporter {
        out.push_str(&e.handle.render());
    }
    out
}

/// Addresses for logs and the console.
pub fn host_port(a: Option<SocketAddr>) -> (String, String) {
    match a {
        Some(a) => (a.ip().to_string(), a.port().to_string()),
        None => (String::new(), "0".into()),
    }
}
