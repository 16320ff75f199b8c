//! Target `server`: a batch of server messages, as the relay scans it up to ReadyForQuery and
//! splits it, with each body put through every backend view (whatever its tag).
//!
//! Invariants: the framing ones of [`super::frames`] (with `scan_until` stopping at `Z`); every body
//! a view accepts re-encodes to the same wire bytes with sluice's writer for that message, and
//! postgres-protocol's parser accepts it and reads the same values; accessors agree with the bytes.

use bytes::BytesMut;
use fallible_iterator::FallibleIterator;
use postgres_protocol::message::backend::Message;
use sluice_proto::backend::{self, FieldDescription};
use sluice_proto::backend_view::{
    Authentication, BackendKeyData, CommandComplete, ErrorFields, ParameterDescription,
    ParameterStatus, RowDescription, ready_for_query_status,
};

use super::frames::{split_checked, wire};

/// The message cap for this target: small, so the fuzzer reaches it with short inputs.
pub const CAP: usize = 2048;

pub fn run(data: &[u8]) {
    let (frames, _) = split_checked(data, CAP, b'Z');
    for f in &frames {
        decode_all(&f.msg.body);
    }
}

/// postgres-protocol's reading of the message `tag` with `body`; it must accept what we accept.
fn theirs(tag: u8, body: &[u8]) -> Message {
    let mut buf = wire(tag, body);
    match Message::parse(&mut buf) {
        Ok(Some(m)) => m,
        Ok(None) => panic!("postgres-protocol wants more of a whole {:?}", tag as char),
        Err(e) => panic!(
            "postgres-protocol refuses a {:?} we accept: {e}",
            tag as char
        ),
    }
}

/// Runs every backend view on `body`; what decodes must re-encode to the same message.
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

    if let Ok(status) = ready_for_query_status(body) {
        backend::ready_for_query(status, &mut out);
        same(b'Z', &mut out, "ReadyForQuery");
        let Message::ReadyForQuery(r) = theirs(b'Z', body) else {
            panic!()
        };
        assert_eq!(r.status(), status);
    }
    if let Ok(p) = ParameterStatus::decode(body) {
        backend::parameter_status(p.name, p.value, &mut out);
        same(b'S', &mut out, "ParameterStatus");
        let Message::ParameterStatus(t) = theirs(b'S', body) else {
            panic!()
        };
        assert_eq!((t.name().unwrap(), t.value().unwrap()), (p.name, p.value));
    }
    if let Ok(k) = BackendKeyData::decode(body) {
        backend::backend_key_data(k.pid, k.key, &mut out);
        same(b'K', &mut out, "BackendKeyData");
        let Message::BackendKeyData(t) = theirs(b'K', body) else {
            panic!()
        };
        assert_eq!((t.process_id(), t.secret_key()), (k.pid, k.key));
    }
    if let Ok(c) = CommandComplete::decode(body) {
        backend::command_complete(c.tag, &mut out);
        same(b'C', &mut out, "CommandComplete");
        if let Some(rows) = c.rows() {
            let last = c.tag.rsplit_once(' ').expect("two words").1;
            assert!(last.bytes().all(|b| b.is_ascii_digit()));
            let digits = last.trim_start_matches('0');
            assert_eq!(
                rows.to_string(),
                if digits.is_empty() { "0" } else { digits }
            );
        }
    }
    if let Ok(e) = ErrorFields::decode(body) {
        let mut rebuilt = Vec::new();
        for (ty, value) in e.iter() {
            assert_ne!(ty, 0);
            assert_eq!(e.get(ty).map(|v| v.as_ptr() <= value.as_ptr()), Some(true));
            rebuilt.push(ty);
            rebuilt.extend_from_slice(value);
            rebuilt.push(0);
        }
        rebuilt.push(0);
        assert_eq!(rebuilt, body, "the fields account for every byte");
        assert_eq!(
            e.code(),
            e.get(b'C').and_then(|v| std::str::from_utf8(v).ok())
        );
        assert_eq!(e.message(), e.get_str(b'M'));
        if let Some(s) = e.severity() {
            assert!(e.get_str(b'V') == Some(s) || e.get_str(b'S') == Some(s));
        }
        let Message::ErrorResponse(t) = theirs(b'E', body) else {
            panic!()
        };
        let t: Vec<(u8, Vec<u8>)> = t
            .fields()
            .map(|f| Ok((f.type_(), f.value_bytes().to_vec())))
            .collect()
            .expect("postgres-protocol reads the fields");
        let ours: Vec<(u8, Vec<u8>)> = e.iter().map(|(t, v)| (t, v.to_vec())).collect();
        assert_eq!(t, ours);
    }
    if let Ok(a) = Authentication::decode(body) {
        check_authentication(&a, body);
    }
    if let Ok(p) = ParameterDescription::decode(body) {
        let types: Vec<u32> = p.types().collect();
        assert_eq!(types.len(), p.count());
        backend::parameter_description(&types, &mut out);
        same(b't', &mut out, "ParameterDescription");
        let Message::ParameterDescription(t) = theirs(b't', body) else {
            panic!()
        };
        assert_eq!(t.parameters().collect::<Vec<_>>().unwrap(), types);
    }
    if let Ok(r) = RowDescription::decode(body) {
        let fields: Vec<FieldDescription<'_>> = r.fields().collect();
        assert_eq!(fields.len(), r.count());
        backend::row_description(&fields, &mut out);
        same(b'T', &mut out, "RowDescription");
        let Message::RowDescription(t) = theirs(b'T', body) else {
            panic!()
        };
        let t: Vec<_> = t
            .fields()
            .map(|f| {
                Ok(FieldDescription {
                    name: f.name(),
                    table_oid: f.table_oid(),
                    column: f.column_id(),
                    type_oid: f.type_oid(),
                    type_size: f.type_size(),
                    type_modifier: f.type_modifier(),
                    format: f.format(),
                })
            })
            .collect()
            .expect("postgres-protocol reads the fields");
        assert_eq!(t, fields);
    }
}

fn check_authentication(a: &Authentication<'_>, body: &[u8]) {
    let mut out = BytesMut::new();
    match a {
        Authentication::Ok => backend::authentication_ok(&mut out),
        Authentication::CleartextPassword => backend::authentication_cleartext_password(&mut out),
        Authentication::Md5Password(salt) => backend::authentication_md5_password(*salt, &mut out),
        Authentication::Sasl(m) => {
            let names: Vec<&str> = m.clone().collect();
            for n in &names {
                assert!(m.contains(n) && !n.is_empty());
            }
            backend::authentication_sasl(&names, &mut out);
        }
        Authentication::SaslContinue(d) => backend::authentication_sasl_continue(d, &mut out),
        Authentication::SaslFinal(d) => backend::authentication_sasl_final(d, &mut out),
        Authentication::Other(code) => {
            assert!(![0, 3, 5, 10, 11, 12].contains(code));
            assert_eq!(body[..4], code.to_be_bytes());
            return;
        }
    }
    assert_eq!(
        &out[..],
        &wire(b'R', body)[..],
        "{a:?} re-encodes to its bytes"
    );
    match (theirs(b'R', body), a) {
        (Message::AuthenticationOk, Authentication::Ok)
        | (Message::AuthenticationCleartextPassword, Authentication::CleartextPassword) => {}
        (Message::AuthenticationMd5Password(t), Authentication::Md5Password(s)) => {
            assert_eq!(t.salt(), *s)
        }
        (Message::AuthenticationSasl(t), Authentication::Sasl(s)) => {
            let t: Vec<String> = t.mechanisms().map(|m| Ok(m.to_owned())).collect().unwrap();
            assert_eq!(t, s.clone().collect::<Vec<_>>());
        }
        (Message::AuthenticationSaslContinue(t), Authentication::SaslContinue(d)) => {
            assert_eq!(t.data(), *d)
        }
        (Message::AuthenticationSaslFinal(t), Authentication::SaslFinal(d)) => {
            assert_eq!(t.data(), *d)
        }
        (_, a) => panic!("postgres-protocol reads {a:?} as something else"),
    }
}
