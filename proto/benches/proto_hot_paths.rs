//! Micro-benchmarks for the wire-protocol paths sluice runs on every message.
//!
//! Server side: framing a typical result batch (RowDescription, 100 DataRows, CommandComplete,
//! ReadyForQuery) with `split_message` (message by message) and `scan_until` (find the batch end
//! without splitting), and `Header::parse` alone.
//! Client side: decoding the messages a transaction-mode pooler inspects (Query, Parse, Bind) and
//! splitting an extended-protocol batch (Parse, Bind, Describe, Execute, Sync).
//!
//! Run: `cargo bench -p sluice-proto` (add `-- --quick` for a short run).

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice_proto::MAX_MESSAGE_LEN;
use sluice_proto::backend::{self, FieldDescription};
use sluice_proto::framing::{Header, scan_until, split_message};
use sluice_proto::frontend::{self, Bind, Describe, Execute, Parse, Query};

/// RowDescription + `rows` DataRows of (int, text, text) + CommandComplete + ReadyForQuery.
fn server_batch(rows: usize) -> BytesMut {
    let mut out = BytesMut::new();
    backend::row_description(
        &[
            FieldDescription::text("aid", 23),
            FieldDescription::text("filler", 25),
            FieldDescription::text("note", 25),
        ],
        &mut out,
    );
    for i in 0..rows {
        let id = i.to_string();
        let filler = "x".repeat(40);
        backend::data_row(
            [
                Some(id.as_bytes()),
                Some(filler.as_bytes()),
                Some(&b"some text in a column"[..]),
            ],
            &mut out,
        );
    }
    backend::command_complete(&format!("SELECT {rows}"), &mut out);
    backend::ready_for_query(b'I', &mut out);
    out
}

/// What pgbench -M extended sends for its select-only script.
const SQL: &str = "SELECT abalance FROM pgbench_accounts WHERE aid = $1;";

fn bind_body() -> BytesMut {
    let mut out = BytesMut::new();
    Bind::write("", "S_1", &bind_rest(), &mut out);
    body_of(out)
}

/// One text parameter, no result format codes.
fn bind_rest() -> Vec<u8> {
    let mut rest = Vec::new();
    rest.extend_from_slice(&0u16.to_be_bytes()); // parameter format codes
    rest.extend_from_slice(&1u16.to_be_bytes()); // one value
    rest.extend_from_slice(&6i32.to_be_bytes());
    rest.extend_from_slice(b"123456");
    rest.extend_from_slice(&0u16.to_be_bytes()); // result format codes
    rest
}

fn extended_batch() -> BytesMut {
    let mut out = BytesMut::new();
    frontend::write_parse("", SQL, [23u32], &mut out);
    Bind::write("", "", &bind_rest(), &mut out);
    Describe::write(b'P', "", &mut out);
    Execute::write("", 0, &mut out);
    frontend::write_sync(&mut out);
    out
}

fn body_of(mut whole: BytesMut) -> BytesMut {
    let _ = whole.split_to(Header::LEN);
    whole
}

fn bench_server_framing(c: &mut Criterion) {
    let batch = server_batch(100);
    let messages = 100 + 3;
    let mut g = c.benchmark_group("server_batch_100_rows");
    g.throughput(Throughput::Bytes(batch.len() as u64));

    g.bench_function("split_message_all", |b| {
        b.iter_batched_ref(
            || batch.clone(),
            |buf| {
                let mut n = 0;
                while let Some(m) = split_message(buf, MAX_MESSAGE_LEN).unwrap() {
                    n += black_box(m.body.len());
                }
                n
            },
            criterion::BatchSize::SmallInput,
        )
    });

    g.bench_function("scan_until_ready_for_query", |b| {
        b.iter(|| {
            let (n, done) = scan_until(black_box(&batch[..]), b'Z', MAX_MESSAGE_LEN).unwrap();
            assert!(done);
            n
        })
    });

    // The same scan over a batch that arrived in pieces: half of it, no ReadyForQuery yet.
    let half = &batch[..batch.len() / 2];
    g.bench_function("scan_until_partial_half", |b| {
        b.iter(|| scan_until(black_box(half), b'Z', MAX_MESSAGE_LEN).unwrap())
    });
    g.finish();

    let mut g = c.benchmark_group("header");
    g.throughput(Throughput::Elements(messages as u64));
    // Offsets of every message in the batch, to parse headers at realistic positions.
    let mut offsets = Vec::new();
    let mut pos = 0;
    while let Some(h) = Header::parse(&batch[pos..], MAX_MESSAGE_LEN).unwrap() {
        offsets.push(pos);
        pos += h.wire_len();
        if pos >= batch.len() {
            break;
        }
    }
    assert_eq!(offsets.len(), messages);
    g.bench_function("parse_103_headers", |b| {
        b.iter(|| {
            let mut sum = 0usize;
            for &o in &offsets {
                let h = Header::parse(black_box(&batch[o..]), MAX_MESSAGE_LEN)
                    .unwrap()
                    .unwrap();
                sum += h.body_len;
            }
            sum
        })
    });
    g.finish();
}

fn bench_frontend(c: &mut Criterion) {
    let mut g = c.benchmark_group("frontend_decode");

    let mut q = BytesMut::new();
    frontend::write_query(SQL, &mut q);
    let query_body = body_of(q);
    g.bench_function("Query", |b| {
        b.iter(|| Query::decode(black_box(&query_body[..])).unwrap().sql.len())
    });

    let mut p = BytesMut::new();
    frontend::write_parse("P_0", SQL, [23u32], &mut p);
    let parse_body = body_of(p);
    g.bench_function("Parse", |b| {
        b.iter(|| {
            let p = Parse::decode(black_box(&parse_body[..])).unwrap();
            p.name.len() + p.query.len() + p.param_count()
        })
    });

    let bind = bind_body();
    g.bench_function("Bind", |b| {
        b.iter(|| {
            let d = Bind::decode(black_box(&bind[..])).unwrap();
            d.statement.len() + d.rest.len()
        })
    });
    g.bench_function("Bind_validate_rest", |b| {
        b.iter(|| {
            let d = Bind::decode(black_box(&bind[..])).unwrap();
            d.validate_rest().unwrap();
        })
    });
    g.finish();

    let batch = extended_batch();
    let mut g = c.benchmark_group("frontend_batch");
    g.throughput(Throughput::Bytes(batch.len() as u64));
    g.bench_function("split_parse_bind_describe_execute_sync", |b| {
        b.iter_batched_ref(
            || batch.clone(),
            |buf| {
                let mut tags = 0u32;
                while let Some(m) = split_message(buf, MAX_MESSAGE_LEN).unwrap() {
                    tags += u32::from(m.tag);
                }
                tags
            },
            criterion::BatchSize::SmallInput,
        )
    });
    // Split and decode what a transaction-mode pooler looks at (Parse and Bind names).
    g.bench_function("split_and_decode_parse_bind", |b| {
        b.iter_batched_ref(
            || batch.clone(),
            |buf| {
                let mut n = 0usize;
                while let Some(m) = split_message(buf, MAX_MESSAGE_LEN).unwrap() {
                    match m.tag {
                        b'P' => n += Parse::decode(&m.body).unwrap().name.len(),
                        b'B' => n += Bind::decode(&m.body).unwrap().statement.len(),
                        _ => n += 1,
                    }
                }
                n
            },
            criterion::BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench_server_framing, bench_frontend);
criterion_main!(benches);
