//! `sluice healthcheck [URL]`: one HTTP GET against sluice's own endpoint, exit 0 on a 2xx
//! answer and 1 otherwise. For container `HEALTHCHECK`s and exec probes where the runtime image
//! has no curl or wget (the Dockerfile's Debian slim has neither): the sluice binary is already
//! there, so the check costs no extra package and no shell.
//!
//! Without a URL, `/healthz` on the config's `metrics_listen` (an unspecified address such as
//! `0.0.0.0` is asked on loopback).
//!
//! Owns: the URL, the request, reading the status. Must not: know what the endpoint serves.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::config::Config;

/// How long the whole check may take by default.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// `http://HOST:PORT/healthz` for the config's `metrics_listen`, or None when it is off.
pub fn default_url(config: &Config) -> Option<String> {
    let mut addr = config.metrics_addr()?;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    Some(format!("http://{addr}/healthz"))
}

/// GETs `url` (plain `http://host:port/path` only); Ok with the status line on a 2xx answer,
/// Err saying what went wrong otherwise.
pub fn check(url: &str, timeout: Duration) -> Result<String, String> {
    let (authority, path) = split_url(url)?;
    let addr = resolve(authority)?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| e.to_string())?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("cannot send to {addr}: {e}"))?;
    // The endpoint's answers are small; read the head and a little body, no more.
    let mut answer = Vec::new();
    stream
        .take(64 * 1024)
        .read_to_end(&mut answer)
        .map_err(|e| format!("no answer from {addr}: {e}"))?;
    let text = String::from_utf8_lossy(&answer);
    let status_line = text.lines().next().unwrap_or("").to_owned();
    let status = status_code(&status_line)
        .ok_or_else(|| format!("not an HTTP answer from {addr}: {status_line:?}"))?;
    if (200..300).contains(&status) {
        Ok(status_line)
    } else {
        let body = text.split("\r\n\r\n").nth(1).unwrap_or("").trim();
        Err(format!("{url}: {status_line}: {body}"))
    }
}

/// `http://authority/path` → (authority, path); the path defaults to `/`.
fn split_url(url: &str) -> Result<(&str, &str), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: only http:// URLs are supported"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(format!("{url}: no host"));
    }
    Ok((authority, path))
}

fn resolve(authority: &str) -> Result<SocketAddr, String> {
    let with_port = if authority.ends_with(']') || !authority.contains(':') {
        format!("{authority}:80")
    } else {
        authority.to_owned()
    };
    with_port
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {authority}: {e}"))?
        .next()
        .ok_or_else(|| format!("{authority}: no address"))
}

/// The code of an `HTTP/1.x NNN reason` status line.
fn status_code(line: &str) -> Option<u16> {
    let mut parts = line.split(' ');
    if !parts.next()?.starts_with("HTTP/") {
        return None;
    }
    parts.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            split_url("http://127.0.0.1:9930/healthz"),
            Ok(("127.0.0.1:9930", "/healthz"))
        );
        assert_eq!(
            split_url("http://localhost:9930"),
            Ok(("localhost:9930", "/"))
        );
        assert_eq!(
            split_url("http://[::1]:9930/readyz"),
            Ok(("[::1]:9930", "/readyz"))
        );
        assert!(split_url("https://x/healthz").is_err());
        assert!(split_url("http:///healthz").is_err());
        assert_eq!(resolve("127.0.0.1").unwrap().port(), 80);
        assert_eq!(resolve("[::1]:9").unwrap(), "[::1]:9".parse().unwrap());
    }

    #[test]
    fn status_lines() {
        assert_eq!(status_code("HTTP/1.1 200 OK"), Some(200));
        assert_eq!(status_code("HTTP/1.0 503 Service Unavailable"), Some(503));
        assert_eq!(status_code("SSH-2.0-OpenSSH"), None);
        assert_eq!(status_code(""), None);
    }

    #[test]
    fn default_url_asks_loopback_for_an_unspecified_address() {
        let c = Config::from_toml("[pooler]\nmetrics_listen = \"0.0.0.0:9930\"\n").unwrap();
        assert_eq!(default_url(&c).unwrap(), "http://127.0.0.1:9930/healthz");
        let c = Config::from_toml("[pooler]\nmetrics_listen = \"[::]:9930\"\n").unwrap();
        assert_eq!(default_url(&c).unwrap(), "http://[::1]:9930/healthz");
        let c = Config::from_toml("[pooler]\nmetrics_listen = \"10.1.2.3:9930\"\n").unwrap();
        assert_eq!(default_url(&c).unwrap(), "http://10.1.2.3:9930/healthz");
        assert_eq!(default_url(&Config::from_toml("").unwrap()), None);
    }

    #[test]
    fn a_closed_port_fails() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let e = check(&format!("http://127.0.0.1:{port}/healthz"), TIMEOUT).unwrap_err();
        assert!(e.contains("cannot connect"), "{e}");
    }
}
