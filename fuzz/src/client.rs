//! Target `client`: a stream of client messages after startup, split with `split_message` and each
//! body put through every frontend decoder (whatever its tag: a decoder must cope with any body).
//!
//! Invariants: the framing ones of [`super::frames`]; every body that decodes re-encodes to the
//! same wire bytes with sluice's writer for that message (or postgres-protocol's, where sluice has
//! none); counts and kinds are what the decoders promise.

use bytes::BytesMut;
use postgres_protocol::message::frontend as pp;
use sluice_proto::frontend::{
    self, Bind, Close, CopyFail, Describe, Execute, FrontendTag, FunctionCall, Parse,
    PasswordMessage, Query, SaslInitialResponse, SaslResponse,
};

use super::frames::{split_checked, wire};

/// The message cap for this target: small, so the fuzzer reaches it with short inputs.
pub const CAP: usize = 2048;

pub fn run(data: &[u8]) {
    let (frames, _) = split_checked(data, CAP, b'S');
    for f in &frames {
        if let Some(tag) = FrontendTag::from_u8(f.msg.tag) {
            assert_eq!(tag.as_u8(), f.msg.tag);
            assert!(!tag.name().is_empty());
        }
        decode_all(&f.msg.body);
    }
}

/// Runs every frontend decoder on `body`; what decodes must re-encode to the same message.
pub fn decode_all(body: &[u8]) {
    let mut out = BytesMut::new();
    let same = |tag: u8, out: &mut BytesMut, what: &str| {
        assert_eq!(
            &out[..],
            &wire(tag, body)[..],
            "{what} re-encodes to its bytes"
        );
        out.clear();
    };

    if let Ok(q) = Query::decode(body) {
        frontend::write_query(q.sql, &mut out);
        same(b'Q', &mut out, "Query");
    }
    if let Ok(p) = Parse::decode(body) {
        assert!(p.param_count() <= usize::from(u16::MAX));
        assert_eq!(p.param_types().count(), p.param_count());
        frontend::write_parse(p.name, p.query, p.param_types(), &mut out);
        same(b'P', &mut out, "Parse");
    }
    if let Ok(b) = Bind::decode(body) {
        Bind::write(b.portal, b.statement, b.rest, &mut out);
        same(b'B', &mut out, "Bind");
        if b.validate_rest().is_ok() {
            check_bind_rest(b.rest);
        }
    }
    if let Ok(d) = Describe::decode(body) {
        assert!(d.kind == b'S' || d.kind == b'P');
        Describe::write(d.kind, d.name, &mut out);
        same(b'D', &mut out, "Describe");
    }
    if let Ok(e) = Execute::decode(body) {
        Execute::write(e.portal, e.max_rows, &mut out);
        same(b'E', &mut out, "Execute");
    }
    if let Ok(c) = Close::decode(body) {
        assert!(c.kind == b'S' || c.kind == b'P');
        Close::write(c.kind, c.name, &mut out);
        same(b'C', &mut out, "Close");
    }
    if let Ok(c) = CopyFail::decode(body) {
        pp::copy_fail(c.message, &mut out).unwrap();
        same(b'f', &mut out, "CopyFail");
    }
    if let Ok(p) = PasswordMessage::decode(body) {
        pp::password_message(p.password, &mut out).unwrap();
        same(b'p', &mut out, "PasswordMessage");
    }
    if let Ok(s) = SaslInitialResponse::decode(body) {
        match s.data {
            Some(data) => pp::sasl_initial_response(s.mechanism, data, &mut out).unwrap(),
            None => {
                // postgres-protocol has no writer for the "no data" form (length -1).
                let mut b = s.mechanism.as_bytes().to_vec();
                b.push(0);
                b.extend_from_slice(&(-1i32).to_be_bytes());
                out.extend_from_slice(&wire(b'p', &b));
            }
        }
        same(b'p', &mut out, "SASLInitialResponse");
    }
    let s = SaslResponse::decode(body).expect("any SASLResponse body is valid");
    pp::sasl_response(s.data, &mut out).unwrap();
    same(b'p', &mut out, "SASLResponse");
    if let Ok(f) = FunctionCall::decode(body) {
        assert_eq!(f.function_oid.to_be_bytes(), body[..4]);
        check_function_call(body);
    }
}

/// A Bind `rest` that validates is what postgres-protocol writes for the same formats and values.
fn check_bind_rest(rest: &[u8]) {
    let (formats, values, results) = read_formats_values(rest).expect("validated");
    assert!(formats.len() <= 1 || formats.len() == values.len());
    let mut out = BytesMut::new();
    let written = pp::bind(
        "",
        "",
        formats.iter().copied(),
        &values,
        |v: &Option<&[u8]>, b: &mut BytesMut| match v {
            Some(v) => {
                b.extend_from_slice(v);
                Ok(postgres_protocol::IsNull::No)
            }
            None => Ok(postgres_protocol::IsNull::Yes),
        },
        results.iter().copied(),
        &mut out,
    );
    assert!(
        written.is_ok(),
        "postgres-protocol could not write the Bind"
    );
    let mut body = vec![0, 0];
    body.extend_from_slice(rest);
    assert_eq!(&out[..], &wire(b'B', &body)[..]);
}

/// A FunctionCall that decodes has the shape of a Bind's rest after its OID, with one result format.
fn check_function_call(body: &[u8]) {
    let args = &body[4..body.len() - 2];
    let mut rest = args.to_vec();
    rest.extend_from_slice(&[0, 1]);
    rest.extend_from_slice(&body[body.len() - 2..]);
    let b = Bind {
        portal: "",
        statement: "",
        rest: &rest,
    };
    assert!(b.validate_rest().is_ok(), "FunctionCall and Bind disagree");
}

type Formats = Vec<i16>;
type Values<'a> = Vec<Option<&'a [u8]>>;

/// Reads a Bind's rest independently of sluice-proto's cursor.
fn read_formats_values(rest: &[u8]) -> Option<(Formats, Values<'_>, Formats)> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, tail) = b.split_at_checked(n)?;
        *b = tail;
        Some(head)
    }
    fn formats(b: &mut &[u8]) -> Option<Formats> {
        let n = u16::from_be_bytes(take(b, 2)?.try_into().ok()?);
        (0..n)
            .map(|_| Some(i16::from_be_bytes(take(b, 2)?.try_into().ok()?)))
            .collect()
    }
    let mut b = rest;
    let f = formats(&mut b)?;
    let n = u16::from_be_bytes(take(&mut b, 2)?.try_into().ok()?);
    let mut values = Vec::new();
    for _ in 0..n {
        let len = i32::from_be_bytes(take(&mut b, 4)?.try_into().ok()?);
        values.push(match len {
            -1 => None,
            len => Some(take(&mut b, usize::try_from(len).ok()?)?),
        });
    }
    let r = formats(&mut b)?;
    b.is_empty().then_some((f, values, r))
}
