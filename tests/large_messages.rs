//! Messages as large as PostgreSQL takes them: a simple Query and a CopyData past
//! `max_message_size` stream through sluice (the binary, as a process) instead of being refused,
//! and its peak resident memory stays far below the message.

mod common;

use bytes::Bytes;
use common::*;
use futures_util::SinkExt;
use sluice::config::PoolMode;
use tokio_postgres::SimpleQueryMessage;

const MIB: u64 = 1024 * 1024;

/// Peak resident memory (VmHWM) of process `pid`, in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmHWM")
        * 1024
}

fn first_value(rows: &[SimpleQueryMessage]) -> Option<String> {
    rows.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
        _ => None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_mb_query_and_a_100_mb_copy_row_stream_through_in_little_memory() {
    const QUERY_LEN: usize = 200 * 1024 * 1024;
    const ROW_LEN: usize = 100 * 1024 * 1024;
    let pg = PgCluster::start();
    // The default max_message_size (64 MiB) caps only what sluice holds whole.
    let sluice = SluiceProcess::start(&config_for(&pg, 2, PoolMode::Transaction));
    let before = peak_rss(sluice.pid());
    let pooled = connect_config(&client_config(
        sluice.port(),
        APP_DB,
        APP_USER,
        APP_PASSWORD,
    ))
    .await
    .expect("connect through sluice")
    .0;
    let direct = pg.connect_direct(APP_DB, APP_USER, APP_PASSWORD).await;

    let literal = "x".repeat(QUERY_LEN - 32);
    let sql = format!("SELECT length('{literal}')");
    drop(literal);
    let through = first_value(
        &pooled
            .simple_query(&sql)
            .await
            .unwrap_or_else(|e| panic!("the 200 MB query through sluice: {}", describe_error(&e))),
    );
    let straight = first_value(&direct.simple_query(&sql).await.unwrap());
    assert_eq!(through, straight);
    assert_eq!(through, Some((QUERY_LEN - 32).to_string()));
    drop(sql);
    // The session goes on: the next query on the same connection.
    assert_eq!(
        simple_scalar(&pooled, "SELECT 1").await.as_deref(),
        Some("1")
    );

    // One CopyData message of 100 MB (a single row).
    pooled
        .simple_query("CREATE TABLE big_row (v text)")
        .await
        .unwrap();
    let sink = pooled
        .copy_in::<_, Bytes>("COPY big_row (v) FROM STDIN")
        .await
        .unwrap();
    let mut row = vec![b'y'; ROW_LEN];
    row.push(b'\n');
    let mut sink = std::pin::pin!(sink);
    sink.send(Bytes::from(row)).await.expect("send the row");
    let copied = sink.finish().await.expect("COPY through sluice");
    assert_eq!(copied, 1);
    let len = simple_scalar(&pooled, "SELECT length(v) FROM big_row").await;
    assert_eq!(len, Some(ROW_LEN.to_string()));

    let peak = peak_rss(sluice.pid());
    eprintln!(
        "sluice peak RSS: {} MiB before, {} MiB after a 200 MB query and a 100 MB CopyData",
        before / MIB,
        peak / MIB
    );
    assert!(
        peak < before + 32 * MIB,
        "peak RSS {} MiB (was {} MiB)",
        peak / MIB,
        before / MIB
    );
}

/// A message sluice must hold whole (a Parse) is still capped by max_message_size, with 08P01.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_message_over_max_message_size_is_still_refused() {
    let pg = PgCluster::start();
    let config = config_for(&pg, 2, PoolMode::Transaction);
    let config = set_config(&config, "pooler.max_message_size", 4096);
    let pooler = Sluice::start(config);
    let c = pooler.connect_app().await;
    let long = format!("SELECT '{}'", "z".repeat(10_000));
    let err = c.prepare(&long).await.unwrap_err();
    assert!(
        describe_error(&err).contains("08P01") || c.is_closed(),
        "{}",
        describe_error(&err)
    );
    // The same text as a simple Query streams.
    let c = pooler.connect_app().await;
    let rows = c.simple_query(&long).await.expect("a long simple query");
    assert_eq!(first_value(&rows).map(|v| v.len()), Some(10_000));
}
