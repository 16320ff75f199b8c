//! COPY through the pooler: 100k rows in and out byte for byte, with tokio-postgres and psql,
//! and a COPY that fails half-way leaves the client usable.

mod common;

use bytes::Bytes;
use common::*;
use futures_util::{SinkExt, TryStreamExt, pin_mut};
use sluice::config::PoolMode;

const ROWS: usize = 100_000;

/// 100k rows of COPY text format, exactly as PostgreSQL would print them back: escapes for tab,
/// newline, carriage return and backslash, `\N` for NULL, and multi-byte UTF-8.
fn copy_text() -> Vec<u8> {
    let mut out = String::with_capacity(ROWS * 40);
    for id in 1..=ROWS {
        let mut name = format!("name-{id}-é€😀");
        if id % 7 == 0 {
            name.push_str("\\ttabbed");
        }
        if id % 11 == 0 {
            name.push_str("\\\\back\\\\slash");
        }
        if id % 13 == 0 {
            name.push_str("\\nnew\\rline");
        }
        let note = if id % 5 == 0 {
            "\\N".to_owned()
        } else {
            (id * 31 % 1000).to_string()
        };
        out.push_str(&format!("{id}\t{name}\t{note}\n"));
    }
    out.into_bytes()
}

async fn create_items(client: &tokio_postgres::Client, table: &str) {
    client
        .batch_execute(&format!(
            "CREATE TABLE {table}(id int PRIMARY KEY, name text NOT NULL, note int)"
        ))
        .await
        .unwrap();
}

#[tokio::test]
async fn copy_in_and_out_of_100k_rows_round_trips_byte_for_byte() {
    let pg = PgCluster::start();
    let pooler = Sluice::start(config_for(&pg, 2, PoolMode::Transaction));
    let mut client = pooler.connect_app().await;
    create_items(&client, "items").await;
    let data = copy_text();

    // Inside a transaction: tokio-postgres prepares COPY as a named statement first.
    let tx = client.transaction().await.unwrap();
    let sink = within(STEP, "COPY FROM STDIN", tx.copy_in("COPY items FROM STDIN"))
        .await
        .unwrap();
    pin_mut!(sink);
    for chunk in data.chunks(64 * 1024) {
        within(STEP, "CopyData", sink.send(Bytes::copy_from_slice(chunk)))
            .await
            .unwrap();
    }
    let copied = within(STEP, "CopyDone", sink.finish()).await.unwrap();
    assert_eq!(copied, ROWS as u64);
    tx.commit().await.unwrap();

    // Check from a direct connection that the pooler delivered what it was given.
    let direct = pg.connect_direct(APP_DB, APP_USER, APP_PASSWORD).await;
    let row = direct
        .query_one(
            "SELECT count(*), count(note), sum(length(name)) FROM items",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), ROWS as i64);
    assert_eq!(row.get::<_, i64>(1), (ROWS - ROWS / 5) as i64);

    let tx = client.transaction().await.unwrap();
    let stream = within(
        STEP,
        "COPY TO STDOUT",
        tx.copy_out("COPY (SELECT * FROM items ORDER BY id) TO STDOUT"),
    )
    .await
    .unwrap();
    let chunks: Vec<Bytes> = within(STEP * 4, "CopyData out", stream.try_collect())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let back: Vec<u8> = chunks.concat();
    assert_eq!(back.len(), data.len(), "COPY TO STDOUT size");
    assert!(back == data, "COPY TO STDOUT differs from what went in");

    // The session is in order afterwards.
    assert_eq!(
        simple_scalar(&client, "SELECT 'after copy'")
            .await
            .as_deref(),
        Some("after copy")
    );
}

#[tokio::test]
async fn failed_and_aborted_copies_leave_the_client_usable() {
    let pg = PgCluster::start();
    let pooler = Sluice::start(config_for(&pg, 1, PoolMode::Transaction));
    let mut client = pooler.connect_app().await;
    create_items(&client, "items").await;

    // A bad row half-way: the server answers ErrorResponse while data is still coming.
    let mut data = copy_text();
    let half = data[..data.len() / 2]
        .iter()
        .rposition(|&b| b == b'\n')
        .unwrap()
        + 1;
    data.truncate(half);
    data.extend_from_slice(b"not-a-number\tx\t1\n");
    data.extend_from_slice(&copy_text()[..1000]);
    let tx = client.transaction().await.unwrap();
    let sink = tx.copy_in("COPY items FROM STDIN").await.unwrap();
    pin_mut!(sink);
    let mut outcome = Ok(0);
    for chunk in data.chunks(64 * 1024) {
        if let Err(e) = within(STEP, "CopyData", sink.send(Bytes::copy_from_slice(chunk))).await {
            outcome = Err(e);
            break;
        }
    }
    if outcome.is_ok() {
        outcome = within(STEP, "CopyDone", sink.finish()).await;
    }
    let e = outcome.expect_err("a bad row must fail the COPY");
    assert_eq!(sqlstate(&e), Some("22P02"), "{}", describe_error(&e));
    within(STEP, "ROLLBACK", tx.rollback()).await.unwrap();

    // The client gives up half-way (CopyFail).
    let tx = client.transaction().await.unwrap();
    {
        let sink = tx
            .copy_in::<_, Bytes>("COPY items FROM STDIN")
            .await
            .unwrap();
        pin_mut!(sink);
        sink.send(Bytes::from_static(b"1\tone\t1\n")).await.unwrap();
        // Dropped without finish: tokio-postgres sends CopyFail.
    }
    let e = within(STEP, "query after CopyFail", tx.query_one("SELECT 1", &[]))
        .await
        .expect_err("transaction aborted");
    assert!(
        matches!(sqlstate(&e), Some("57014") | Some("25P02")),
        "{}",
        describe_error(&e)
    );
    within(STEP, "ROLLBACK", tx.rollback()).await.unwrap();

    let n: i64 = client
        .query_typed_one("SELECT count(*) FROM items", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
    assert_eq!(
        simple_scalar(&client, "SELECT 'still here'")
            .await
            .as_deref(),
        Some("still here")
    );
}

#[tokio::test]
async fn psql_copy_round_trips_byte_for_byte() {
    let pg = PgCluster::start();
    let pooler = Sluice::start(config_for(&pg, 2, PoolMode::Transaction));
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    let output = dir.path().join("out.txt");
    std::fs::write(&input, copy_text()).unwrap();

    let script = format!(
        "CREATE TABLE items(id int PRIMARY KEY, name text NOT NULL, note int);\n\
         \\copy items FROM '{}'\n\
         \\copy (SELECT * FROM items ORDER BY id) TO '{}'\n\
         SELECT count(*) FROM items;\n",
        input.display(),
        output.display()
    );
    let script_path = dir.path().join("script.sql");
    std::fs::write(&script_path, script).unwrap();
    let out = pooler
        .psql(&["-At", "-f", script_path.to_str().unwrap()])
        .await;
    assert!(out.status.success(), "{}", describe_output(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("COPY {ROWS}")), "{stdout}");
    assert!(stdout.lines().any(|l| l == ROWS.to_string()), "{stdout}");
    let back = std::fs::read(&output).unwrap();
    assert!(
        back == copy_text(),
        "psql \\copy out differs from what went in ({} vs {} bytes)",
        back.len(),
        copy_text().len()
    );
}
