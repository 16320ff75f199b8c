//! The HTTP endpoint (`[pooler] metrics_listen`): `/metrics` in Prometheus text format,
//! `/healthz` and `/readyz`.
//!
//! The responder is a deliberately small HTTP/1.1 server: one request per connection (`Connection:
//! close`), GET (and HEAD) only, the request head capped at 8 KiB and 5 s, at most 32 connections
//! at once. Scrapers and probes need nothing more, and it keeps hyper and a TLS stack out of the
//! build. What it serves comes from a [`Source`] (the pooler's shared state), so this module
//! knows no pool.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use crate::config::Config;

/// What the endpoint serves.
pub trait Source: Send + Sync + 'static {
    /// The whole `/metrics` page.
    fn render(&self, draining: bool) -> String;
    /// The configuration in force: `/readyz` probes its databases.
    fn config(&self) -> Arc<Config>;
}

/// Binds `addr` now (a taken port fails start-up; another sluice process's does not: online
/// restart, [`crate::net::listen`]) and serves it from then on; `drain` turns
/// `/readyz` unready and `sluice_draining` to 1. The task runs until aborted.
pub async fn start<S: Source>(
    addr: SocketAddr,
    source: Arc<S>,
    drain: watch::Receiver<bool>,
) -> std::io::Result<JoinHandle<()>> {
    let listener = crate::net::listen::bind_shared(addr).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot listen on {addr} (metrics_listen): {e}"),
        )
    })?;
    tracing::info!(%addr, "metrics endpoint listening");
    Ok(tokio::spawn(serve(listener, source, drain)))
}

async fn serve<S: Source>(listener: TcpListener, source: Arc<S>, drain: watch::Receiver<bool>) {
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
        let source = source.clone();
        let draining = *drain.borrow();
        tokio::spawn(async move {
            let _ =
                tokio::time::timeout(Duration::from_secs(10), respond(stream, &*source, draining))
                    .await;
            drop(permit);
        });
    }
}

/// Reads one request head and answers it.
async fn respond<S: Source>(
    mut stream: TcpStream,
    source: &S,
    draining: bool,
) -> std::io::Result<()> {
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
        Ok(Ok(true)) => route(&head, source, draining).await,
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

async fn route<S: Source>(
    head: &[u8],
    source: &S,
    draining: bool,
) -> (u16, &'static str, String, bool) {
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
        "/metrics" => (200, PROMETHEUS, source.render(draining), head_only),
        "/healthz" => (200, TEXT, "ok\n".into(), head_only),
        "/readyz" => {
            let (ready, body) = readiness(&source.config(), draining).await;
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
pub async fn readiness(config: &Config, draining: bool) -> (bool, String) {
    if draining {
        return (false, "draining: sluice is shutting down\n".into());
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake;

    impl Source for Fake {
        fn render(&self, draining: bool) -> String {
            format!("page draining={draining}\n")
        }

        fn config(&self) -> Arc<Config> {
            Arc::new(Config::from_toml("").expect("empty config"))
        }
    }

    async fn get(head: &str, draining: bool) -> (u16, &'static str, String, bool) {
        route(head.as_bytes(), &Fake, draining).await
    }

    #[tokio::test]
    async fn routes_by_method_and_path() {
        assert_eq!(
            get("GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n", true).await,
            (200, PROMETHEUS, "page draining=true\n".into(), false)
        );
        assert_eq!(
            get("HEAD /healthz HTTP/1.0\r\n\r\n", false).await,
            (200, TEXT, "ok\n".into(), true)
        );
        // No databases configured: nothing to probe, ready unless draining.
        assert_eq!(get("GET /readyz HTTP/1.1\r\n\r\n", false).await.0, 200);
        let (status, _, body, _) = get("GET /readyz HTTP/1.1\r\n\r\n", true).await;
        assert_eq!(
            (status, body.as_str()),
            (503, "draining: sluice is shutting down\n")
        );
        assert_eq!(get("GET /nope HTTP/1.1\r\n\r\n", false).await.0, 404);
        assert_eq!(get("POST /metrics HTTP/1.1\r\n\r\n", false).await.0, 405);
        assert_eq!(get("GET /metrics SPDY/3\r\n\r\n", false).await.0, 400);
        assert_eq!(get("garbage\r\n\r\n", false).await.0, 400);
    }
}
