//! Property tests: no input makes the splitters or decoders panic, and caps hold.
//!
//! Three kinds of input: arbitrary bytes; "soup" (bodies glued from protocol-shaped pieces such as
//! small lengths, NULs and kind bytes, which get deeper into the decoders); and valid messages
//! with a few random edits.

use bytes::{Bytes, BytesMut};
use postgres_protocol::message::frontend as pp;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;

use sluice_proto::backend::{self, ErrorResponse, FieldDescription};
use sluice_proto::backend_view::{
    Authentication, BackendKeyData, CommandComplete, ErrorFields, ParameterDescription,
    ParameterStatus, RowDescription, ready_for_query_status,
};
use sluice_proto::frontend::*;
use sluice_proto::startup::split_startup;
use sluice_proto::{ProtocolError, RawMessage, framing, split_message};

/// Runs every body decoder on `body` and walks whatever it returns.
fn decode_everything(body: &[u8]) {
    if let Ok(q) = Query::decode(body) {
        assert_eq!(q.sql.len() + 1, body.len());
    }
    if let Ok(p) = Parse::decode(body) {
        assert_eq!(p.param_types().count(), p.param_count());
    }
    if let Ok(b) = Bind::decode(body) {
        let _ = b.validate_rest();
    }
    if let Ok(d) = Describe::decode(body) {
        assert!(d.kind == b'S' || d.kind == b'P');
    }
    let _ = Execute::decode(body);
    if let Ok(c) = Close::decode(body) {
        assert!(c.kind == b'S' || c.kind == b'P');
    }
    let _ = CopyFail::decode(body);
    let _ = PasswordMessage::decode(body);
    let _ = SaslInitialResponse::decode(body);
    let _ = SaslResponse::decode(body);
    let _ = FunctionCall::decode(body);

    let _ = ready_for_query_status(body);
    let _ = ParameterStatus::decode(body);
    let _ = BackendKeyData::decode(body);
    if let Ok(c) = CommandComplete::decode(body) {
        let _ = c.rows();
    }
    if let Ok(e) = ErrorFields::decode(body) {
        // Every byte is accounted for: type byte, value, NUL per field, plus the terminator.
        let walked: usize = e.iter().map(|(_, v)| v.len() + 2).sum();
        assert_eq!(walked + 1, body.len());
        let _ = (e.code(), e.severity(), e.message());
    }
    if let Ok(Authentication::Sasl(m)) = Authentication::decode(body) {
        let _ = m.count();
    }
    if let Ok(p) = ParameterDescription::decode(body) {
        assert_eq!(p.types().count(), p.count());
    }
    if let Ok(r) = RowDescription::decode(body) {
        assert_eq!(r.fields().count(), r.count());
    }
}

/// A protocol-shaped fragment.
fn piece() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(vec![0u8]),
        any::<u8>().prop_map(|b| vec![b]),
        prop::sample::select(b"SPITECMVDH".to_vec()).prop_map(|b| vec![b]),
        (-2i16..5).prop_map(|n| n.to_be_bytes().to_vec()),
        (-2i32..14).prop_map(|n| n.to_be_bytes().to_vec()),
        "[a-z ]{0,6}".prop_map(|s| {
            let mut v = s.into_bytes();
            v.push(0);
            v
        }),
        Just(vec![0xff, 0xfe, 0]),
    ]
}

fn soup() -> impl Strategy<Value = Vec<u8>> {
    vec(piece(), 0..16).prop_map(|pieces| pieces.concat())
}

/// Bodies of valid messages of every type the decoders know.
fn valid_body() -> impl Strategy<Value = Vec<u8>> {
    let name = "[a-z_0-9]{0,8}";
    let whole = prop_oneof![
        (name, name).prop_map(|(a, b)| {
            let mut o = BytesMut::new();
            pp::parse(&a, &b, [23, 0], &mut o).map(|_| o)
        }),
        (
            name,
            name,
            vec(proptest::option::of(vec(any::<u8>(), 0..6)), 0..4)
        )
            .prop_map(|(p, s, vals)| {
                let mut o = BytesMut::new();
                let ser = |v: &Option<Vec<u8>>, b: &mut BytesMut| match v {
                    Some(v) => {
                        b.extend_from_slice(v);
                        Ok(postgres_protocol::IsNull::No)
                    }
                    None => Ok(postgres_protocol::IsNull::Yes),
                };
                pp::bind(&p, &s, [1], &vals, ser, [0, 1], &mut o)
                    .map(|_| o)
                    .map_err(|_| std::io::ErrorKind::Other.into())
            }),
        (name, any::<i32>()).prop_map(|(p, n)| {
            let mut o = BytesMut::new();
            pp::execute(&p, n, &mut o).map(|_| o)
        }),
        (prop::sample::select(b"SPX".to_vec()), name, any::<bool>()).prop_map(
            |(k, n, describe)| {
                let mut o = BytesMut::new();
                if describe {
                    pp::describe(k, &n, &mut o)
                } else {
                    pp::close(k, &n, &mut o)
                }
                .map(|_| o)
            }
        ),
        "[A-Z]{1,6} [0-9]{1,3}".prop_map(|tag| {
            let mut o = BytesMut::new();
            backend::command_complete(&tag, &mut o);
            Ok(o)
        }),
        (name, vec(any::<u8>(), 0..12)).prop_map(|(m, d)| {
            let mut o = BytesMut::new();
            pp::sasl_initial_response(&m, &d, &mut o).map(|_| o)
        }),
        (name, name).prop_map(|(a, b)| {
            let mut o = BytesMut::new();
            backend::parameter_status(&a, &b, &mut o);
            Ok(o)
        }),
        name.prop_map(|m| {
            let mut o = BytesMut::new();
            ErrorResponse::error("42P01", m).hint("h").write(&mut o);
            Ok(o)
        }),
        vec("[A-Z-]{1,8}", 0..3).prop_map(|ms| {
            let mut o = BytesMut::new();
            backend::authentication_sasl(
                &ms.iter().map(String::as_str).collect::<Vec<_>>(),
                &mut o,
            );
            Ok(o)
        }),
        vec(any::<u32>(), 0..4).prop_map(|ts| {
            let mut o = BytesMut::new();
            backend::parameter_description(&ts, &mut o);
            Ok(o)
        }),
        vec(name, 0..4).prop_map(|ns| {
            let fields: Vec<_> = ns.iter().map(|n| FieldDescription::text(n, 25)).collect();
            let mut o = BytesMut::new();
            backend::row_description(&fields, &mut o);
            Ok(o)
        }),
    ];
    whole.prop_map(|w: std::io::Result<BytesMut>| w.map(|w| w[5..].to_vec()).unwrap_or_default())
}

#[derive(Debug, Clone)]
enum Edit {
    Truncate(Index),
    Replace(Index, u8),
    Insert(Index, u8),
    Remove(Index),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        any::<Index>().prop_map(Edit::Truncate),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Edit::Replace(i, b)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Edit::Insert(i, b)),
        any::<Index>().prop_map(Edit::Remove),
    ]
}

fn apply(mut body: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        let len = body.len();
        match e {
            Edit::Truncate(i) => body.truncate(i.index(len + 1)),
            Edit::Insert(i, b) => body.insert(i.index(len + 1), *b),
            Edit::Replace(i, b) if len > 0 => body[i.index(len)] = *b,
            Edit::Remove(i) if len > 0 => {
                body.remove(i.index(len));
            }
            _ => {}
        }
    }
    body
}

/// Splits `buf` until it is incomplete or invalid, checking the cap and that an incomplete buffer
/// is left untouched. Returns the messages and the first error.
fn split_all(buf: &mut BytesMut, max: usize) -> (Vec<RawMessage>, Option<ProtocolError>) {
    let mut out = Vec::new();
    loop {
        let before = buf.clone();
        match split_message(buf, max) {
            Ok(Some(m)) => {
                assert!(
                    m.body.len() <= max,
                    "body of {} bytes over the cap of {max}",
                    m.body.len()
                );
                out.push(m);
            }
            Ok(None) => {
                assert_eq!(*buf, before, "an incomplete message is left in place");
                return (out, None);
            }
            Err(e) => return (out, Some(e)),
        }
    }
}

proptest! {
    #[test]
    fn decoders_survive_any_bytes(body in vec(any::<u8>(), 0..300)) {
        decode_everything(&body);
    }

    #[test]
    fn decoders_survive_soup(body in soup()) {
        decode_everything(&body);
    }

    #[test]
    fn decoders_survive_edited_messages(body in valid_body(), edits in vec(edit(), 0..4)) {
        decode_everything(&apply(body, &edits));
    }

    #[test]
    fn split_message_respects_the_cap(bytes in vec(any::<u8>(), 0..300), max in 0usize..64) {
        let mut buf = BytesMut::from(&bytes[..]);
        let (msgs, _) = split_all(&mut buf, max);
        let used: usize = msgs.iter().map(|m| m.body.len() + 5).sum();
        prop_assert!(used <= bytes.len());
    }

    #[test]
    fn framed_stream_with_a_small_cap(
        msgs in vec((any::<u8>(), vec(any::<u8>(), 0..48)), 0..10),
        max in 0usize..32,
        cut in any::<Index>(),
    ) {
        let mut wire = BytesMut::new();
        for (tag, body) in &msgs {
            RawMessage { tag: *tag, body: Bytes::copy_from_slice(body) }.write(&mut wire);
        }
        // Split whole, then a truncated copy: both stop at the first message over the cap.
        let first_big = msgs.iter().position(|(_, b)| b.len() > max);
        let (got, err) = split_all(&mut wire.clone(), max);
        prop_assert_eq!(got.len(), first_big.unwrap_or(msgs.len()));
        prop_assert_eq!(err.is_some(), first_big.is_some());
        for (m, (tag, body)) in got.iter().zip(&msgs) {
            prop_assert_eq!((m.tag, &m.body[..]), (*tag, &body[..]));
            decode_everything(&m.body);
        }
        let mut cut_wire = wire.split_to(cut.index(wire.len() + 1));
        let (got, _) = split_all(&mut cut_wire, max);
        prop_assert!(got.len() <= msgs.len());
    }

    #[test]
    fn scan_until_matches_split_message(bytes in vec(any::<u8>(), 0..300), stop in any::<u8>(), max in 0usize..128) {
        if let Ok((pos, found)) = framing::scan_until(&bytes, stop, max) {
            prop_assert!(pos <= bytes.len());
            // The prefix it reports is exactly whole messages, the last being `stop` if found.
            let mut prefix = BytesMut::from(&bytes[..pos]);
            let (msgs, err) = split_all(&mut prefix, max);
            prop_assert!(err.is_none() && prefix.is_empty());
            prop_assert_eq!(found, msgs.last().is_some_and(|m| m.tag == stop));
            prop_assert_eq!(msgs.iter().filter(|m| m.tag == stop).count(), usize::from(found));
        }
    }

    #[test]
    fn split_startup_survives_any_bytes(bytes in vec(any::<u8>(), 0..300)) {
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(_)) = split_startup(&mut buf) {}
    }

    #[test]
    fn split_startup_survives_shaped_packets(
        code in prop::sample::select(vec![80877103, 80877104, 80877102, 196608, 196610, 131072, 0, -1]),
        payload in soup(),
        len_delta in -10i32..10,
    ) {
        let len = 8 + payload.len() as i32 + len_delta;
        let mut bytes = BytesMut::new();
        bytes.extend_from_slice(&len.to_be_bytes());
        bytes.extend_from_slice(&i32::to_be_bytes(code));
        bytes.extend_from_slice(&payload);
        let before = bytes.len();
        match split_startup(&mut bytes) {
            Ok(Some(_)) => prop_assert_eq!(bytes.len(), before - len as usize),
            Ok(None) => prop_assert_eq!(bytes.len(), before),
            Err(_) => {}
        }
    }
}
