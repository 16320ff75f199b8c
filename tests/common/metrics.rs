//! The metrics endpoint as a test sees it: a config that turns it on, HTTP requests, and
//! samples picked out of the Prometheus text.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{STEP, free_port, set_config, within};

/// A config with `metrics_listen` on a free loopback port; returns it and the port.
pub fn with_metrics(config: String) -> (String, u16) {
    let port = free_port();
    let config = set_config(
        &config,
        "pooler.metrics_listen",
        format!("127.0.0.1:{port}"),
    );
    (config, port)
}

/// One HTTP request (`request` is the whole head); returns (status, body).
pub async fn http(port: u16, request: &str) -> (u16, String) {
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

pub async fn get(port: u16, path: &str) -> (u16, String) {
    http(
        port,
        &format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n"),
    )
    .await
}

pub async fn scrape(port: u16) -> String {
    let (status, body) = get(port, "/metrics").await;
    assert_eq!(status, 200, "{body}");
    body
}

/// The value of the sample `name{...}` whose labels include every `k="v"` of `labels`.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
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
