//! The HTTP endpoint (`[pooler] metrics_listen`): `/metrics` in Prometheus text format,
//! `/healthz` and `/readyz`; the live page `/` (its script and style, `/page.js`, `/page.css`)
//! and the JSON it polls (`/api/live`), and `/debug/queries` (the query statistics).
//!
//! Served with hyper (HTTP/1.1, one request per connection: `Connection: close`), GET and HEAD
//! only, the request head capped at 8 KiB and 5 s, at most 32 connections at once. The request
//! line is read and checked here first, so a malformed one gets the same short 400 it always
//! did; hyper parses the rest. Header names are written title-case (`Content-Length`), as the
//! hand-written responder did, and without a `Date`, so `/metrics`, `/healthz` and `/readyz`
//! answer byte for byte as before. What it serves comes from a [`Source`] (the pooler's shared
//! state), so this module knows no pool.
//!
//! With `metrics_token` set, everything but `/healthz` and `/readyz` needs it, as
//! `Authorization: Bearer <token>` or `?token=<token>`; otherwise 401.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ALLOW, AUTHORIZATION, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
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
    /// The JSON of `/api/live` and `/debug/queries` (`path`); None: not found.
    fn json(&self, _path: &str) -> Option<String> {
        None
    }
}

/// The live page, shipped in the binary (no build step, nothing fetched from elsewhere).
const PAGE_HTML: &str = include_str!("page/index.html");
const PAGE_JS: &str = include_str!("page/page.js");
const PAGE_CSS: &str = include_str!("page/page.css");

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
            let _ = tokio::time::timeout(
                Duration::from_secs(10),
                connection(stream, source, draining),
            )
            .await;
            drop(permit);
        });
    }
}

/// One connection: the request line checked here, the request to hyper.
async fn connection<S: Source>(
    mut stream: TcpStream,
    source: Arc<S>,
    draining: bool,
) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let complete = tokio::time::timeout(Duration::from_secs(5), async {
        let mut chunk = [0u8; 1024];
        while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 8192 {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok::<bool, std::io::Error>(false);
            }
            head.extend_from_slice(&chunk[..n]);
        }
        Ok(true)
    })
    .await;
    match complete {
        Ok(Ok(true)) => {}
        Ok(Ok(false)) | Err(_) => return Ok(()),
        Ok(Err(e)) => return Err(e),
    }
    if !request_line_ok(&head) {
        let body = "bad request\n";
        let out = format!(
            "HTTP/1.1 400 Bad Request\r\nContent-Type: {TEXT}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(out.as_bytes()).await?;
        return stream.shutdown().await;
    }
    let io = TokioIo::new(Prefixed {
        prefix: Bytes::from(head),
        inner: stream,
    });
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let source = source.clone();
        async move { Ok::<_, std::convert::Infallible>(respond(&req, &*source, draining).await) }
    });
    hyper::server::conn::http1::Builder::new()
        .keep_alive(false)
        .title_case_headers(true)
        .auto_date_header(false)
        .max_buf_size(8192)
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(5))
        .serve_connection(io, service)
        .await
        .map_err(std::io::Error::other)
}

/// `METHOD SP target SP HTTP/1.x`: what the hand-written responder accepted.
fn request_line_ok(head: &[u8]) -> bool {
    let line = head.split(|b| *b == b'\r').next().unwrap_or(&[]);
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    !method.is_empty()
        && method.bytes().all(|b| b.is_ascii_alphabetic())
        && target.starts_with('/')
        && (version == "HTTP/1.1" || version == "HTTP/1.0")
}

/// Bytes already read (the request line), then the socket.
struct Prefixed {
    prefix: Bytes,
    inner: TcpStream,
}

impl AsyncRead for Prefixed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            let chunk = self.prefix.split_to(n);
            buf.put_slice(&chunk);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

const TEXT: &str = "text/plain; charset=utf-8";
const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";
const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const JSON: &str = "application/json";

async fn respond<S: Source>(
    req: &Request<Incoming>,
    source: &S,
    draining: bool,
) -> Response<Full<Bytes>> {
    let token = source.config().pooler.metrics_token.clone();
    let authorized = |path: &str| match &token {
        None => true,
        Some(_) if path == "/healthz" || path == "/readyz" => true,
        Some(t) => {
            let bearer = req
                .headers()
                .get(AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .is_some_and(|v| constant_time_eq(v.trim().as_bytes(), t.as_bytes()));
            let query = req.uri().query().unwrap_or("").split('&').any(|kv| {
                kv.strip_prefix("token=")
                    .is_some_and(|v| constant_time_eq(v.as_bytes(), t.as_bytes()))
            });
            bearer || query
        }
    };
    let head_only = req.method() == Method::HEAD;
    let (status, content_type, body) = if req.method() != Method::GET && !head_only {
        (405, TEXT, "only GET\n".to_owned())
    } else if !authorized(req.uri().path()) {
        (
            401,
            TEXT,
            "unauthorized: metrics_token is set; send Authorization: Bearer <token> or ?token=\n"
                .to_owned(),
        )
    } else {
        route(req.uri().path(), source, draining).await
    };
    let len = body.len();
    let mut resp = Response::new(Full::new(if head_only {
        Bytes::new()
    } else {
        Bytes::from(body)
    }));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(CONNECTION, HeaderValue::from_static("close"));
    if status == 405 {
        h.insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
    }
    if status == 401 {
        h.insert(
            hyper::header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer"),
        );
    }
    resp
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn route<S: Source>(path: &str, source: &S, draining: bool) -> (u16, &'static str, String) {
    match path {
        "/metrics" => (200, PROMETHEUS, source.render(draining)),
        "/healthz" => (200, TEXT, "ok\n".into()),
        "/readyz" => {
            let (ready, body) = readiness(&source.config(), draining).await;
            (if ready { 200 } else { 503 }, TEXT, body)
        }
        "/" => (200, HTML, PAGE_HTML.into()),
        "/page.js" => (200, JS, PAGE_JS.into()),
        "/page.css" => (200, CSS, PAGE_CSS.into()),
        _ => match source.json(path) {
            Some(json) => (200, JSON, json),
            None => (
                404,
                TEXT,
                "not found: try /metrics, /healthz, /readyz\n".into(),
            ),
        },
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

        fn json(&self, path: &str) -> Option<String> {
            (path == "/api/live").then(|| "{}".to_owned())
        }
    }

    #[tokio::test]
    async fn routes_by_path() {
        assert_eq!(
            route("/metrics", &Fake, true).await,
            (200, PROMETHEUS, "page draining=true\n".into())
        );
        assert_eq!(
            route("/healthz", &Fake, false).await,
            (200, TEXT, "ok\n".into())
        );
        // No databases configured: nothing to probe, ready unless draining.
        assert_eq!(route("/readyz", &Fake, false).await.0, 200);
        let (status, _, body) = route("/readyz", &Fake, true).await;
        assert_eq!(
            (status, body.as_str()),
            (503, "draining: sluice is shutting down\n")
        );
        assert_eq!(route("/nope", &Fake, false).await.0, 404);
        assert_eq!(
            route("/api/live", &Fake, false).await,
            (200, JSON, "{}".into())
        );
        assert_eq!(route("/", &Fake, false).await.1, HTML);
    }

    #[test]
    fn request_lines() {
        assert!(request_line_ok(
            b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n"
        ));
        assert!(request_line_ok(b"HEAD /healthz HTTP/1.0\r\n\r\n"));
        assert!(request_line_ok(b"POST /metrics HTTP/1.1\r\n\r\n"));
        assert!(!request_line_ok(b"GET /metrics SPDY/3\r\n\r\n"));
        assert!(!request_line_ok(b"garbage\r\n\r\n"));
    }

    #[test]
    fn the_page_is_self_contained() {
        for text in [PAGE_HTML, PAGE_JS, PAGE_CSS] {
            assert!(
                !text.contains("http://") && !text.contains("https://"),
                "nothing fetched from elsewhere"
            );
        }
        assert!(PAGE_HTML.contains("/page.js") && PAGE_HTML.contains("/page.css"));
    }
}
