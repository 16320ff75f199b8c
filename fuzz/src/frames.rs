//! Framing invariants shared by the client and server targets: `split_message`, `Header::parse`,
//! `scan_until` and `RawMessage::write` agree with each other on any byte stream, and reading the
//! stream in small pieces gives the same messages as reading it whole.

use std::ops::Range;

use bytes::BytesMut;
use sluice_proto::framing::{Header, scan_until};
use sluice_proto::{ProtocolError, RawMessage, split_message};

/// How splitting a stream ended.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// Every byte formed whole messages, or the rest is an incomplete message.
    Incomplete,
    /// The next header is refused.
    Error(ProtocolError),
}

/// One whole message and where its wire bytes (header included) are in the stream.
pub struct Frame {
    pub msg: RawMessage,
    pub wire: Range<usize>,
}

/// Splits `data` into messages under `cap`, checks the framing invariants, and returns the
/// messages. `stop` is the tag `scan_until` is checked with (ReadyForQuery for a server batch).
pub fn split_checked(data: &[u8], cap: usize, stop: u8) -> (Vec<Frame>, End) {
    let mut buf = BytesMut::from(data);
    let mut frames = Vec::new();
    let end = loop {
        let at = data.len() - buf.len();
        let before = buf.clone();
        match split_message(&mut buf, cap) {
            Ok(Some(msg)) => {
                let wire = at..data.len() - buf.len();
                check_frame(&msg, &data[wire.clone()], cap);
                frames.push(Frame { msg, wire });
            }
            Ok(None) => {
                assert_eq!(buf, before, "an incomplete message is left in place");
                match Header::parse(&buf, cap) {
                    Ok(None) => assert!(buf.len() < Header::LEN),
                    Ok(Some(h)) => assert!(h.wire_len() > buf.len(), "{h:?} is complete"),
                    Err(e) => panic!("split_message waits where Header::parse refuses: {e}"),
                }
                break End::Incomplete;
            }
            Err(e) => {
                assert_eq!(Header::parse(&before, cap), Err(e.clone()));
                check_header_error(&e, &before, cap);
                break End::Error(e);
            }
        }
    };
    check_scan(data, cap, stop, &frames, &end);
    check_in_pieces(data, cap, &frames, &end);
    (frames, end)
}

fn check_frame(msg: &RawMessage, wire: &[u8], cap: usize) {
    assert!(msg.body.len() <= cap, "a body over the cap was split off");
    assert_eq!(wire.len(), msg.body.len() + Header::LEN);
    assert_eq!(wire[0], msg.tag);
    assert_eq!(&wire[Header::LEN..], &msg.body[..]);
    let header = Header::parse(wire, cap).unwrap().unwrap();
    assert_eq!((header.tag, header.body_len), (msg.tag, msg.body.len()));
    let mut out = BytesMut::new();
    msg.write(&mut out);
    assert_eq!(
        &out[..],
        wire,
        "RawMessage::write gives back the wire bytes"
    );
}

/// The error says what the length field says.
fn check_header_error(e: &ProtocolError, buf: &[u8], cap: usize) {
    let len = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
    match *e {
        ProtocolError::BadLength { len: l } => assert!(len < 4 && l == i64::from(len)),
        ProtocolError::TooLarge { len: l, max } => {
            assert!(len >= 4 && max == cap && l == len as usize - 4 && l > cap)
        }
        ref other => panic!("framing error {other:?}"),
    }
}

/// `scan_until` ends after the first `stop` message, else after the last whole message, and
/// refuses a stream only where splitting it would, before any `stop`.
fn check_scan(data: &[u8], cap: usize, stop: u8, frames: &[Frame], end: &End) {
    let scanned = scan_until(data, stop, cap);
    let expected = match frames.iter().find(|f| f.msg.tag == stop) {
        Some(f) => Ok((f.wire.end, true)),
        None => match end {
            End::Error(e) => Err(e.clone()),
            End::Incomplete => Ok((frames.last().map_or(0, |f| f.wire.end), false)),
        },
    };
    assert_eq!(scanned, expected, "scan_until disagrees with split_message");
}

/// Feeding the stream a few bytes at a time (as reads from a socket would) splits off the same
/// messages and ends the same way. The piece size comes from the first byte.
fn check_in_pieces(data: &[u8], cap: usize, frames: &[Frame], end: &End) {
    let Some(&first) = data.first() else { return };
    let piece = 1 + usize::from(first % 13);
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    let mut fed = 0;
    let piecewise_end = loop {
        match split_message(&mut buf, cap) {
            Ok(Some(m)) => got.push(m),
            Ok(None) if fed < data.len() => {
                let next = (fed + piece).min(data.len());
                buf.extend_from_slice(&data[fed..next]);
                fed = next;
            }
            Ok(None) => break End::Incomplete,
            Err(e) => break End::Error(e),
        }
    };
    assert_eq!(&piecewise_end, end, "reading in pieces ends differently");
    assert_eq!(
        got.len(),
        frames.len(),
        "reading in pieces splits differently"
    );
    for (a, b) in got.iter().zip(frames) {
        assert_eq!(a, &b.msg);
    }
}

/// The wire form of a message with this tag and body, for comparing with a writer's output.
pub fn wire(tag: u8, body: &[u8]) -> BytesMut {
    let mut out = BytesMut::with_capacity(body.len() + Header::LEN);
    RawMessage {
        tag,
        body: bytes::Bytes::copy_from_slice(body),
    }
    .write(&mut out);
    out
}
