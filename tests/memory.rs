//! Bounded memory (issue 16, items 3 and 6), on a sluice process started from the built binary
//! (its VmRSS read from /proc) and in process where the registry is looked at directly:
//! - prepared-statement texts leave as soon as no client holds them, and are capped by
//!   `max_prepared_statement_bytes` (a Parse over it gets 53200, the session goes on);
//! - large messages held whole are capped across the process by `max_message_memory`: clients
//!   stalled inside large queries hold at most that, the others get 53200;
//! - RSS after a 5,000-client storm stays under a stated bound.
//!
//! The RSS bounds are stated with each test; bench/README.md ("Memory") has the measured figures.

mod common;

use std::time::Duration;

use common::*;
use sluice::config::PoolMode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MIB: u64 = 1024 * 1024;

async fn gauge(metrics_port: u16, name: &str) -> f64 {
    let page = scrape(metrics_port).await;
    sample(&page, name, &[]).unwrap_or_else(|| panic!("no {name} in /metrics"))
}

/// A statement of about `len` bytes, different for each `n`.
fn big_statement(n: usize, len: usize) -> String {
    format!(
        "SELECT {n} AS n, length('{}') + $1::int AS l",
        "x".repeat(len)
    )
}

/// Five clients in turn each prepare a different large statement and leave: with nobody
/// connected the registry holds no bytes (it used to keep every text until 1,024 more
/// statements had been made), and RSS comes back down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_texts_leave_with_their_clients() {
    const LEN: usize = 40 * 1024 * 1024;
    // Bound: RSS with nobody connected stays within this of RSS before the first client (the
    // five texts alone are 200 MiB).
    const RSS_BOUND: u64 = 16 * MIB;
    let pg = PgCluster::start();
    let (config, metrics_port) = with_metrics(config_for(&pg, 2, PoolMode::Transaction));
    let sluice = SluiceProcess::start(&config);
    let before = sluice.rss_kib() * 1024;
    for n in 0..5 {
        let cfg = client_config(sluice.port(), APP_DB, APP_USER, APP_PASSWORD);
        let (client, _) = connect_config(&cfg).await.expect("connect");
        let sql = big_statement(n, LEN);
        let stmt = within(STEP, "prepare a large statement", client.prepare(&sql))
            .await
            .expect("prepare");
        let row = client.query_one(&stmt, &[&1i32]).await.expect("execute");
        assert_eq!(row.get::<_, i32>(1), LEN as i32 + 1);
        let held = gauge(metrics_port, "sluice_prepared_statement_bytes").await;
        assert!(held >= LEN as f64, "the registry holds the text: {held}");
        drop((stmt, client));
        poll_until(STEP, "the text to leave the registry", || async {
            gauge(metrics_port, "sluice_prepared_statement_bytes").await == 0.0
        })
        .await;
    }
    let mut rss = 0;
    poll_until(Duration::from_secs(20), "RSS to come back down", || {
        rss = sluice.rss_kib() * 1024;
        async move { rss <= before + RSS_BOUND }
    })
    .await;
    eprintln!(
        "RSS before {} MiB, after five 40 MiB statements and their clients left {} MiB",
        before / MIB,
        rss / MIB
    );
}

/// A Parse whose text would pass max_prepared_statement_bytes fails with 53200; the session
/// goes on, and smaller statements still work.
#[tokio::test]
async fn a_parse_over_the_statement_cap_fails_and_the_session_goes_on() {
    let pg = PgCluster::start();
    let config = set_config(
        &config_for(&pg, 1, PoolMode::Transaction),
        "pooler.max_prepared_statement_bytes",
        (1024 * 1024) as i64,
    );
    let pooler = Sluice::start(config);
    let client = pooler.connect_app().await;
    let small = client.prepare("SELECT $1::int + 1").await.expect("small");
    let e = client
        .prepare(&big_statement(0, 2 * 1024 * 1024))
        .await
        .expect_err("over the cap");
    assert_eq!(sqlstate(&e), Some("53200"), "{}", describe_error(&e));
    assert!(
        describe_error(&e).contains("max_prepared_statement_bytes"),
        "{}",
        describe_error(&e)
    );
    let row = client
        .query_one(&small, &[&41i32])
        .await
        .expect("still works");
    assert_eq!(row.get::<_, i32>(0), 42);
    let other = client.prepare("SELECT $1::int * 2").await.expect("fits");
    let row = client.query_one(&other, &[&21i32]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 42);
    let limits = &pooler.shared().limits;
    assert!(limits.statements.used() < 1024 * 1024);
}

/// Writes the start of a Query of `len` bytes (wire length) whose SQL is
/// `SELECT length('xxx...')`, up to `send` bytes of it.
fn query_prefix(len: usize, send: usize) -> (Vec<u8>, Vec<u8>) {
    let sql_len = len - 5 - 1;
    let body_x = sql_len - "SELECT length('')".len();
    let mut msg = Vec::with_capacity(len);
    msg.push(b'Q');
    msg.extend_from_slice(&((len - 1) as i32).to_be_bytes());
    msg.extend_from_slice(b"SELECT length('");
    msg.resize(msg.len() + body_x, b'x');
    msg.extend_from_slice(b"')\0");
    assert_eq!(msg.len(), len);
    let rest = msg.split_off(send);
    (msg, rest)
}

/// A logged-in raw client, its socket.
async fn raw_client(port: u16) -> tokio::net::TcpStream {
    let addr = ([127, 0, 0, 1], port).into();
    RawConn::connect(addr, TRUST_USER, APP_DB, Some(TRUST_PASSWORD), &[])
        .await
        .expect("raw login")
        .into_stream()
}

/// Six clients stall inside 30 MiB queries under max_message_memory = 64 MiB: two hold room
/// (60 MiB, what sluice holds of them), the other four are not read, and get FATAL 53200 after
/// query_wait_timeout. RSS stays under max_message_memory + 48 MiB (the six messages are
/// 180 MiB). The two finish their queries afterwards and get their answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_stalled_inside_large_queries_stay_under_max_message_memory() {
    const LEN: usize = 30 * 1024 * 1024;
    const CAP: u64 = 64 * MIB;
    const RSS_BOUND: u64 = CAP + 48 * MIB;
    let pg = PgCluster::start();
    let config = config_for(&pg, 2, PoolMode::Transaction);
    let config = set_config(&config, "pooler.max_message_memory", CAP as i64);
    let config = set_config(&config, "pooler.max_message_size", (32 * MIB) as i64);
    let config = set_config(&config, "pooler.query_wait_timeout", "2s");
    let (config, metrics_port) = with_metrics(config);
    let sluice = SluiceProcess::start(&config);

    // Two clients send all but the last MiB of their query, and stall.
    let mut holders = Vec::new();
    for _ in 0..2 {
        let mut s = raw_client(sluice.port()).await;
        let (head, rest) = query_prefix(LEN, LEN - 1024 * 1024);
        within(STEP, "send the start of a large query", s.write_all(&head))
            .await
            .expect("sluice reads a message it has room for");
        holders.push((s, rest));
    }
    poll_until(STEP, "sluice to read what the two sent", || async {
        gauge(metrics_port, "sluice_message_memory_bytes").await == 2.0 * 30.0 * MIB as f64
    })
    .await;

    // Four more: no room; each gets 53200 once query_wait_timeout has passed.
    let mut others = Vec::new();
    for _ in 0..4 {
        let mut s = raw_client(sluice.port()).await;
        // Less than sluice's first read: all of it is read, none is left to reset the socket.
        let (head, _) = query_prefix(LEN, 4096);
        s.write_all(&head).await.expect("the first bytes go out");
        others.push(s);
    }
    let rss = sluice.rss_kib() * 1024;
    eprintln!(
        "RSS with six clients stalled inside 30 MiB queries: {} MiB",
        rss / MIB
    );
    assert!(rss <= RSS_BOUND, "RSS {} MiB while stalled", rss / MIB);
    for mut s in others {
        let mut answer = Vec::new();
        within(STEP, "the refusal", s.read_to_end(&mut answer))
            .await
            .expect("read the refusal");
        let text = String::from_utf8_lossy(&answer);
        assert!(
            answer.first() == Some(&b'E') && text.contains("53200"),
            "{text:?}"
        );
        assert!(text.contains("max_message_memory"), "{text:?}");
    }
    assert!(gauge(metrics_port, "sluice_message_memory_bytes").await <= CAP as f64);
    let page = scrape(metrics_port).await;
    assert_eq!(
        sample(
            &page,
            "sluice_client_refusals_total",
            &[("reason", "message_memory")]
        ),
        Some(4.0)
    );

    // The two finish their queries: answered in full, and their room is given back.
    for (mut s, rest) in holders {
        s.write_all(&rest).await.expect("the rest of the query");
        let mut buf = bytes::BytesMut::new();
        let mut row = None;
        loop {
            let (tag, body) = within(STEP, "the answer", read_message(&mut s, &mut buf))
                .await
                .expect("read")
                .expect("a message");
            match tag {
                b'D' => row = Some(String::from_utf8_lossy(&body[6..]).into_owned()),
                b'Z' => break,
                b'E' => panic!("{:?}", String::from_utf8_lossy(&body)),
                _ => {}
            }
        }
        let expected = LEN - 6 - "SELECT length('')".len();
        assert_eq!(row, Some(expected.to_string()));
    }
    poll_until(STEP, "the room to be given back", || async {
        gauge(metrics_port, "sluice_message_memory_bytes").await == 0.0
    })
    .await;
}

/// 5,000 clients log in, all run a query at once (4,990 of them wait in the pool's queue), and
/// all leave: RSS settles under 32 MiB (issue 16: about 104 MB with glibc's malloc, never given
/// back; sluice now uses jemalloc, which gives freed pages back, and a waiting client holds one
/// buffer instead of four).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rss_after_a_5000_client_storm_stays_bounded() {
    const CLIENTS: usize = 5000;
    const RSS_BOUND: u64 = 32 * MIB;
    let pg = PgCluster::start();
    let config = config_for(&pg, 10, PoolMode::Transaction);
    let config = set_config(&config, "users.trustuser.auth_type", "trust");
    let config = set_config(&config, "pooler.query_wait_timeout", "60s");
    let (config, metrics_port) = with_metrics(config);
    let sluice = SluiceProcess::start(&config);
    let port = sluice.port();
    let before = sluice.rss_kib() * 1024;

    let mut clients = Vec::with_capacity(CLIENTS);
    let mut set = tokio::task::JoinSet::new();
    let mut started = 0;
    while clients.len() < CLIENTS {
        while started < CLIENTS && set.len() < 200 {
            started += 1;
            set.spawn(async move {
                let cfg = client_config(port, APP_DB, TRUST_USER, TRUST_PASSWORD);
                connect_config(&cfg).await.expect("connect in the storm").0
            });
        }
        let client = within(STEP, "a storm client", set.join_next())
            .await
            .expect("a task")
            .expect("a client");
        clients.push(std::sync::Arc::new(client));
    }
    assert_eq!(
        gauge(metrics_port, "sluice_client_connections").await,
        CLIENTS as f64
    );
    let mut queries = tokio::task::JoinSet::new();
    for c in &clients {
        let c = c.clone();
        queries.spawn(async move {
            let rows = c
                .simple_query("SELECT 1")
                .await
                .expect("query in the storm");
            assert!(!rows.is_empty());
        });
    }
    within(Duration::from_secs(120), "the storm's queries", async {
        while let Some(r) = queries.join_next().await {
            r.expect("a query task");
        }
    })
    .await;
    let peak = sluice.rss_kib() * 1024;
    drop(clients);
    poll_until(STEP, "every storm client to be gone", || async {
        gauge(metrics_port, "sluice_client_connections").await == 0.0
    })
    .await;
    let mut rss = 0;
    poll_until(
        Duration::from_secs(30),
        "RSS to settle under the bound",
        || {
            rss = sluice.rss_kib() * 1024;
            async move { rss <= RSS_BOUND }
        },
    )
    .await;
    eprintln!(
        "RSS before {} MiB, after {CLIENTS} clients' queries {} MiB, after they left {} MiB",
        before / MIB,
        peak / MIB,
        rss / MIB
    );
}
