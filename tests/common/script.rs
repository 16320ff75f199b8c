//! Wire scripts: frontend messages sent in one write ([`Batch`]), backend messages as comparable
//! text ([`render`]: "ParseComplete", "DataRow 42", "Error 42601 <message>", ...), and scripts of
//! steps run on a direct PostgreSQL session and through the pooler, both held to the same expected
//! answers ([`check_script`]: PostgreSQL is the oracle, so an expectation is never wrong).
//!
//! Frontend messages are written with postgres-protocol's writers; sending and framing are
//! [`RawConn`]'s (see `raw.rs`).

use bytes::{BufMut, BytesMut};
use postgres_protocol::IsNull;
use postgres_protocol::message::frontend;

use super::raw::{cstr_at, i16_at, i32_at};
use super::{ErrorFields, RawConn, RawMessage};

/// Frontend messages to send in one write. Counts the ReadyForQuery they will be answered with.
#[derive(Clone, Default)]
pub struct Batch {
    buf: BytesMut,
    ready: usize,
}

impl Batch {
    pub fn new() -> Batch {
        Batch::default()
    }

    /// Parse with no parameter types given (the server infers them).
    pub fn parse(mut self, name: &str, sql: &str) -> Batch {
        frontend::parse(name, sql, std::iter::empty(), &mut self.buf).expect("Parse");
        self
    }

    /// Bind of `statement` to the unnamed portal, parameters and results in text format.
    pub fn bind(mut self, statement: &str, params: &[&str]) -> Batch {
        let bound = frontend::bind(
            "",
            statement,
            std::iter::empty(),
            params.iter(),
            |p, buf| {
                buf.put_slice(p.as_bytes());
                Ok(IsNull::No)
            },
            std::iter::empty(),
            &mut self.buf,
        );
        assert!(bound.is_ok(), "Bind could not be written");
        self
    }

    /// Execute of the unnamed portal, all rows.
    pub fn execute(mut self) -> Batch {
        frontend::execute("", 0, &mut self.buf).expect("Execute");
        self
    }

    /// Bind then Execute.
    pub fn run(self, statement: &str, params: &[&str]) -> Batch {
        self.bind(statement, params).execute()
    }

    pub fn describe_statement(mut self, name: &str) -> Batch {
        frontend::describe(b'S', name, &mut self.buf).expect("Describe");
        self
    }

    pub fn close_statement(mut self, name: &str) -> Batch {
        frontend::close(b'S', name, &mut self.buf).expect("Close");
        self
    }

    pub fn sync(mut self) -> Batch {
        frontend::sync(&mut self.buf);
        self.ready += 1;
        self
    }

    /// A simple Query.
    pub fn query(mut self, sql: &str) -> Batch {
        frontend::query(sql, &mut self.buf).expect("Query");
        self.ready += 1;
        self
    }
}

/// One backend message as text: "ParseComplete", "DataRow 42", "Error 42601 <message>",
/// "ReadyForQuery I", ...
pub fn render((tag, body): &RawMessage) -> String {
    let b = &body[..];
    match tag {
        b'1' => "ParseComplete".into(),
        b'2' => "BindComplete".into(),
        b'3' => "CloseComplete".into(),
        b'n' => "NoData".into(),
        b'I' => "EmptyQueryResponse".into(),
        b's' => "PortalSuspended".into(),
        b'Z' => format!("ReadyForQuery {}", b[0] as char),
        b'C' => format!("CommandComplete {}", cstr_at(b, 0).0),
        b'E' | b'N' => {
            let f = ErrorFields::parse(b);
            let kind = if *tag == b'E' { "Error" } else { "Notice" };
            format!(
                "{kind} {} {}",
                f.code().unwrap_or("?"),
                f.message().unwrap_or("?")
            )
        }
        b't' => {
            let n = i16_at(b, 0) as usize;
            let oids: Vec<i32> = (0..n).map(|i| i32_at(b, 2 + 4 * i)).collect();
            format!("ParameterDescription {oids:?}")
        }
        b'T' => {
            let n = i16_at(b, 0) as usize;
            let mut at = 2;
            let mut names = Vec::new();
            for _ in 0..n {
                let (name, next) = cstr_at(b, at);
                names.push(name);
                at = next + 18;
            }
            format!("RowDescription {}", names.join(","))
        }
        b'D' => {
            let n = i16_at(b, 0) as usize;
            let mut at = 2;
            let mut values = Vec::new();
            for _ in 0..n {
                let len = i32_at(b, at);
                at += 4;
                if len < 0 {
                    values.push("NULL".to_owned());
                } else {
                    let len = len as usize;
                    values.push(String::from_utf8_lossy(&b[at..at + len]).into_owned());
                    at += len;
                }
            }
            format!("DataRow {}", values.join(","))
        }
        b'S' => {
            let (k, next) = cstr_at(b, 0);
            format!("ParameterStatus {k}={}", cstr_at(b, next).0)
        }
        other => format!("{:?} ({} bytes)", *other as char, b.len()),
    }
}

/// The answers as text. ParameterStatus is left out: a pooler may report parameters where
/// PostgreSQL would not (and vice versa) without the client being told anything different.
pub fn transcript(msgs: &[RawMessage]) -> Vec<String> {
    msgs.iter().filter(|m| m.0 != b'S').map(render).collect()
}

/// Sends `batch` in one write and returns everything up to its last ReadyForQuery, as text.
pub async fn exchange(conn: &mut RawConn, batch: &Batch) -> Vec<String> {
    assert!(
        batch.ready > 0,
        "a batch without Sync or Query gets no ReadyForQuery"
    );
    conn.send(&batch.buf).await.expect("send a batch");
    let msgs = conn
        .recv_until_ready(batch.ready)
        .await
        .unwrap_or_else(|e| panic!("reading the answers to a batch: {e:?}"));
    transcript(&msgs)
}

/// One step of a script: a label, the batch, and the answers PostgreSQL gives (checked against
/// PostgreSQL too, so the expectation itself is never wrong).
pub type Step = (&'static str, Batch, Vec<String>);

pub fn step(label: &'static str, batch: Batch, expected: &[&str]) -> Step {
    (
        label,
        batch,
        expected.iter().map(|s| (*s).to_owned()).collect(),
    )
}

/// Runs `steps` on a direct PostgreSQL session and through sluice; both must answer exactly
/// `expected`, message by message.
pub async fn check_script(direct: &mut RawConn, pooled: &mut RawConn, steps: &[Step]) {
    for (label, batch, expected) in steps {
        let from_pg = exchange(direct, batch).await;
        assert_eq!(
            &from_pg, expected,
            "PostgreSQL itself answers step {label:?} differently (test bug)"
        );
        let through = exchange(pooled, batch).await;
        assert_eq!(
            &through, expected,
            "step {label:?}: sluice's answer differs from PostgreSQL's"
        );
    }
}
