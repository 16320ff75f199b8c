//! Property tests: generated field values → written (by postgres-protocol where it has a writer, by
//! sluice otherwise) → split with `split_message` → decoded → the same values.

use bytes::{BufMut, Bytes, BytesMut};
use fallible_iterator::FallibleIterator;
use postgres_protocol::IsNull;
use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend as pp;
use proptest::collection::vec;
use proptest::prelude::*;

use sluice_proto::backend::{self, ErrorResponse, FieldDescription, Severity};
use sluice_proto::backend_view::{
    Authentication, BackendKeyData, CommandComplete, ErrorFields, ParameterDescription,
    ParameterStatus, RowDescription, ready_for_query_status,
};
use sluice_proto::frontend::{self, *};
use sluice_proto::startup::{StartupPacket, split_startup, write_cancel, write_startup};
use sluice_proto::{RawMessage, framing, split_message};

const MAX: usize = 1 << 20;

/// Splits exactly one message off `buf`.
fn one(buf: &mut BytesMut) -> (u8, Bytes) {
    let m = split_message(buf, MAX)
        .expect("valid framing")
        .expect("a whole message");
    assert!(buf.is_empty(), "exactly one message was written");
    (m.tag, m.body)
}

/// A name or SQL text: any Unicode without NUL.
fn text(max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[^\\x00]{{0,{max}}}")).expect("valid regex")
}

/// Bytes without NUL (a C string's content that need not be UTF-8).
fn cbytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(1u8.., 0..max)
}

fn kind() -> impl Strategy<Value = u8> {
    prop_oneof![Just(b'S'), Just(b'P')]
}

/// Bind arguments that satisfy PostgreSQL's rule: 0, 1 or one format per value.
#[derive(Debug, Clone)]
struct BindArgs {
    formats: Vec<i16>,
    values: Vec<Option<Vec<u8>>>,
    results: Vec<i16>,
}

fn bind_args() -> impl Strategy<Value = BindArgs> {
    (
        vec(proptest::option::of(vec(any::<u8>(), 0..24)), 0..8),
        0..3usize,
        any::<i16>(),
        vec(any::<i16>(), 0..6),
    )
        .prop_flat_map(|(values, mode, one_format, results)| {
            let n = values.len();
            let formats = match mode {
                0 => Just(Vec::new()).boxed(),
                1 => Just(vec![one_format]).boxed(),
                _ => vec(any::<i16>(), n..=n).boxed(),
            };
            (formats, Just(values), Just(results))
        })
        .prop_map(|(formats, values, results)| BindArgs {
            formats,
            values,
            results,
        })
}

fn pp_bind(portal: &str, stmt: &str, a: &BindArgs) -> BytesMut {
    let mut buf = BytesMut::new();
    let ser = |v: &Option<Vec<u8>>, b: &mut BytesMut| match v {
        Some(v) => {
            b.extend_from_slice(v);
            Ok(IsNull::No)
        }
        None => Ok(IsNull::Yes),
    };
    let written = pp::bind(
        portal,
        stmt,
        a.formats.iter().copied(),
        &a.values,
        ser,
        a.results.iter().copied(),
        &mut buf,
    );
    assert!(
        written.is_ok(),
        "postgres-protocol could not write the Bind"
    );
    buf
}

/// A FunctionCall body (postgres-protocol has no writer for it).
fn function_call_body(oid: u32, a: &BindArgs) -> Vec<u8> {
    let mut b = Vec::new();
    b.put_u32(oid);
    b.put_u16(a.formats.len() as u16);
    a.formats.iter().for_each(|f| b.put_i16(*f));
    b.put_u16(a.values.len() as u16);
    for v in &a.values {
        match v {
            Some(v) => {
                b.put_i32(v.len() as i32);
                b.extend_from_slice(v);
            }
            None => b.put_i32(-1),
        }
    }
    b.put_i16(a.results.first().copied().unwrap_or(0));
    b
}

fn severity() -> impl Strategy<Value = Severity> {
    prop::sample::select(vec![
        Severity::Error,
        Severity::Fatal,
        Severity::Panic,
        Severity::Warning,
        Severity::Notice,
        Severity::Debug,
        Severity::Info,
        Severity::Log,
    ])
}

#[derive(Debug, Clone)]
struct Field {
    name: String,
    table_oid: u32,
    column: i16,
    type_oid: u32,
    type_size: i16,
    type_modifier: i32,
    format: i16,
}

impl Field {
    fn view(&self) -> FieldDescription<'_> {
        FieldDescription {
            name: &self.name,
            table_oid: self.table_oid,
            column: self.column,
            type_oid: self.type_oid,
            type_size: self.type_size,
            type_modifier: self.type_modifier,
            format: self.format,
        }
    }
}

fn field() -> impl Strategy<Value = Field> {
    (
        text(16),
        any::<u32>(),
        any::<i16>(),
        any::<u32>(),
        any::<i16>(),
        any::<i32>(),
        any::<i16>(),
    )
        .prop_map(
            |(name, table_oid, column, type_oid, type_size, type_modifier, format)| Field {
                name,
                table_oid,
                column,
                type_oid,
                type_size,
                type_modifier,
                format,
            },
        )
}

/// An extended-protocol client message, for the mixed-stream test.
#[derive(Debug, Clone)]
enum ClientMsg {
    Query(String),
    Parse(String, String, Vec<u32>),
    Describe(u8, String),
    Execute(String, i32),
    Close(u8, String),
    Sync,
}

fn client_msg() -> impl Strategy<Value = ClientMsg> {
    prop_oneof![
        text(40).prop_map(ClientMsg::Query),
        (text(8), text(40), vec(any::<u32>(), 0..5))
            .prop_map(|(n, q, t)| ClientMsg::Parse(n, q, t)),
        (kind(), text(8)).prop_map(|(k, n)| ClientMsg::Describe(k, n)),
        (text(8), any::<i32>()).prop_map(|(p, r)| ClientMsg::Execute(p, r)),
        (kind(), text(8)).prop_map(|(k, n)| ClientMsg::Close(k, n)),
        Just(ClientMsg::Sync),
    ]
}

fn write_client_msg(m: &ClientMsg, out: &mut BytesMut) {
    let r = match m {
        ClientMsg::Query(q) => pp::query(q, out),
        ClientMsg::Parse(n, q, t) => pp::parse(n, q, t.iter().copied(), out),
        ClientMsg::Describe(k, n) => pp::describe(*k, n, out),
        ClientMsg::Execute(p, r) => pp::execute(p, *r, out),
        ClientMsg::Close(k, n) => pp::close(*k, n, out),
        ClientMsg::Sync => {
            pp::sync(out);
            Ok(())
        }
    };
    assert!(r.is_ok(), "postgres-protocol could not write {m:?}");
}

/// Decodes a message by its tag and checks it against what was written.
fn check_client_msg(m: &ClientMsg, raw: &RawMessage) -> Result<(), TestCaseError> {
    let tag = FrontendTag::from_u8(raw.tag);
    let body = &raw.body[..];
    match m {
        ClientMsg::Query(q) => {
            prop_assert_eq!(tag, Some(FrontendTag::Query));
            prop_assert_eq!(Query::decode(body)?.sql, q.as_str());
        }
        ClientMsg::Parse(n, q, t) => {
            prop_assert_eq!(tag, Some(FrontendTag::Parse));
            let p = Parse::decode(body)?;
            prop_assert_eq!((p.name, p.query), (n.as_str(), q.as_str()));
            prop_assert_eq!(&p.param_types().collect::<Vec<_>>(), t);
        }
        ClientMsg::Describe(k, n) => {
            prop_assert_eq!(tag, Some(FrontendTag::Describe));
            prop_assert_eq!(Describe::decode(body)?, Describe { kind: *k, name: n });
        }
        ClientMsg::Execute(p, r) => {
            prop_assert_eq!(tag, Some(FrontendTag::Execute));
            prop_assert_eq!(
                Execute::decode(body)?,
                Execute {
                    portal: p,
                    max_rows: *r
                }
            );
        }
        ClientMsg::Close(k, n) => {
            prop_assert_eq!(tag, Some(FrontendTag::Close));
            prop_assert_eq!(Close::decode(body)?, Close { kind: *k, name: n });
        }
        ClientMsg::Sync => {
            prop_assert_eq!(tag, Some(FrontendTag::Sync));
            prop_assert!(body.is_empty());
        }
    }
    Ok(())
}

/// Feeds `wire` to `split_message` in chunks of the given sizes (cycled), as reads would arrive.
fn split_in_chunks(wire: &[u8], chunks: &[usize]) -> Vec<RawMessage> {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut rest = wire;
    let mut sizes = chunks.iter().cycle();
    while !rest.is_empty() {
        let n = (*sizes.next().unwrap_or(&1)).clamp(1, rest.len());
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        while let Some(m) = split_message(&mut buf, MAX).expect("valid framing") {
            out.push(m);
        }
    }
    assert!(buf.is_empty(), "every byte ends up in a message");
    out
}

#[test]
fn frontend_tags() {
    let tags: Vec<u8> = (0..=u8::MAX)
        .filter(|b| FrontendTag::from_u8(*b).is_some())
        .collect();
    assert_eq!(tags, b"BCDEFHPQSXcdfp");
    for b in tags {
        assert_eq!(FrontendTag::from_u8(b).map(FrontendTag::as_u8), Some(b));
    }
}

#[test]
fn sync_flush_terminate() {
    let (mut ours, mut theirs) = (BytesMut::new(), BytesMut::new());
    frontend::write_sync(&mut ours);
    frontend::write_flush(&mut ours);
    frontend::write_terminate(&mut ours);
    pp::sync(&mut theirs);
    pp::flush(&mut theirs);
    pp::terminate(&mut theirs);
    assert_eq!(ours, theirs);
}

proptest! {

    #[test]
    fn query(sql in text(200)) {
        let mut buf = BytesMut::new();
        pp::query(&sql, &mut buf).unwrap();
        let mut ours = BytesMut::new();
        frontend::write_query(&sql, &mut ours);
        prop_assert_eq!(&ours, &buf);
        let (tag, body) = one(&mut buf);
        prop_assert_eq!(tag, b'Q');
        prop_assert_eq!(Query::decode(&body)?.sql, sql.as_str());
    }

    #[test]
    fn parse(name in text(20), query in text(100), types in vec(any::<u32>(), 0..40)) {
        let mut buf = BytesMut::new();
        pp::parse(&name, &query, types.iter().copied(), &mut buf).unwrap();
        let mut ours = BytesMut::new();
        write_parse(&name, &query, types.iter().copied(), &mut ours);
        prop_assert_eq!(&ours, &buf);
        let (tag, body) = one(&mut buf);
        prop_assert_eq!(tag, b'P');
        let p = Parse::decode(&body)?;
        prop_assert_eq!((p.name, p.query, p.param_count()), (name.as_str(), query.as_str(), types.len()));
        prop_assert_eq!(p.param_types().collect::<Vec<_>>(), types);
    }

    #[test]
    fn bind_and_rename(portal in text(12), stmt in text(12), new_stmt in text(12), args in bind_args()) {
        let mut buf = pp_bind(&portal, &stmt, &args);
        let (tag, body) = one(&mut buf);
        prop_assert_eq!(tag, b'B');
        let b = Bind::decode(&body)?;
        prop_assert_eq!((b.portal, b.statement), (portal.as_str(), stmt.as_str()));
        b.validate_rest()?;
        // Renaming the statement and copying `rest` is the same as binding the new name directly.
        let mut renamed = BytesMut::new();
        Bind::write(b.portal, &new_stmt, b.rest, &mut renamed);
        prop_assert_eq!(&renamed, &pp_bind(&portal, &new_stmt, &args));
    }

    #[test]
    fn bind_with_a_wrong_format_count_is_rejected(extra in 1usize..4, args in bind_args()) {
        let mut args = args;
        let n = args.values.len();
        args.formats = vec![0; n + 1 + extra]; // more than one, and not one per value
        let mut buf = pp_bind("", "", &args);
        let (_, body) = one(&mut buf);
        prop_assert!(Bind::decode(&body)?.validate_rest().is_err());
    }

    #[test]
    fn describe_and_close(k in kind(), name in text(20)) {
        let mut theirs = BytesMut::new();
        pp::describe(k, &name, &mut theirs).unwrap();
        pp::close(k, &name, &mut theirs).unwrap();
        let mut ours = BytesMut::new();
        Describe::write(k, &name, &mut ours);
        Close::write(k, &name, &mut ours);
        prop_assert_eq!(&ours, &theirs);
        let d = split_message(&mut theirs, MAX).unwrap().unwrap();
        let (tag, body) = one(&mut theirs);
        prop_assert_eq!((d.tag, tag), (b'D', b'C'));
        prop_assert_eq!(Describe::decode(&d.body)?, Describe { kind: k, name: &name });
        prop_assert_eq!(Close::decode(&body)?, Close { kind: k, name: &name });
    }

    #[test]
    fn execute(portal in text(20), max_rows in any::<i32>()) {
        let mut buf = BytesMut::new();
        pp::execute(&portal, max_rows, &mut buf).unwrap();
        let mut ours = BytesMut::new();
        Execute::write(&portal, max_rows, &mut ours);
        prop_assert_eq!(&ours, &buf);
        let (tag, body) = one(&mut buf);
        prop_assert_eq!(tag, b'E');
        prop_assert_eq!(Execute::decode(&body)?, Execute { portal: &portal, max_rows });
    }

    #[test]
    fn copy_fail(message in text(100)) {
        let mut buf = BytesMut::new();
        pp::copy_fail(&message, &mut buf).unwrap();
        let (tag, body) = one(&mut buf);
        prop_assert_eq!(tag, b'f');
        prop_assert_eq!(CopyFail::decode(&body)?.message, message.as_str());
    }

    #[test]
    fn password_message(password in cbytes(100)) {
        let mut buf = BytesMut::new();
        pp::password_message(&password, &mut buf).unwrap();
        let (tag, body) = one(&mut buf);
        prop_assert_eq!(tag, b'p');
        prop_assert_eq!(PasswordMessage::decode(&body)?.password, &password[..]);
    }

    #[test]
    fn sasl_messages(mechanism in text(20), data in vec(any::<u8>(), 0..100)) {
        let mut buf = BytesMut::new();
        pp::sasl_initial_response(&mechanism, &data, &mut buf).unwrap();
        let (tag, body) = one(&mut buf);
        prop_assert_eq!(tag, b'p');
        let r = SaslInitialResponse::decode(&body)?;
        prop_assert_eq!(r, SaslInitialResponse { mechanism: &mechanism, data: Some(&data[..]) });

        // Length -1: no initial data.
        let mut body = mechanism.clone().into_bytes();
        body.push(0);
        body.put_i32(-1);
        prop_assert_eq!(SaslInitialResponse::decode(&body)?.data, None);

        pp::sasl_response(&data, &mut buf).unwrap();
        let (tag, body) = one(&mut buf);
        prop_assert_eq!(tag, b'p');
        prop_assert_eq!(SaslResponse::decode(&body)?.data, &data[..]);
    }

    #[test]
    fn function_call(oid in any::<u32>(), args in bind_args()) {
        let body = function_call_body(oid, &args);
        prop_assert_eq!(FunctionCall::decode(&body)?.function_oid, oid);
        prop_assert!(FunctionCall::decode(&body[..body.len() - 1]).is_err());
    }

    #[test]
    fn client_stream_in_chunks(msgs in vec(client_msg(), 0..12), chunks in vec(1usize..40, 1..8)) {
        let mut wire = BytesMut::new();
        msgs.iter().for_each(|m| write_client_msg(m, &mut wire));
        let got = split_in_chunks(&wire, &chunks);
        prop_assert_eq!(got.len(), msgs.len());
        for (m, raw) in msgs.iter().zip(&got) {
            check_client_msg(m, raw)?;
        }
    }

    #[test]
    fn raw_stream_in_chunks(
        msgs in vec((any::<u8>(), vec(any::<u8>(), 0..80)), 0..12),
        chunks in vec(1usize..64, 1..8),
        stop in any::<u8>(),
    ) {
        let mut wire = BytesMut::new();
        for (tag, body) in &msgs {
            RawMessage { tag: *tag, body: Bytes::copy_from_slice(body) }.write(&mut wire);
        }
        let got = split_in_chunks(&wire, &chunks);
        let got: Vec<(u8, Vec<u8>)> = got.into_iter().map(|m| (m.tag, m.body.to_vec())).collect();
        prop_assert_eq!(&got, &msgs);

        // scan_until agrees: it ends right after the first `stop` message, or at the end.
        let first_stop = msgs.iter().position(|(t, _)| *t == stop);
        let upto = first_stop.map_or(msgs.len(), |i| i + 1);
        let len: usize = msgs[..upto].iter().map(|(_, b)| b.len() + 5).sum();
        prop_assert_eq!(framing::scan_until(&wire, stop, MAX)?, (len, first_stop.is_some()));
    }

    #[test]
    fn ready_for_query(status in prop_oneof![Just(b'I'), Just(b'T'), Just(b'E')], other in any::<u8>()) {
        let mut buf = BytesMut::new();
        backend::ready_for_query(status, &mut buf);
        let mut theirs = buf.clone();
        let (tag, body) = one(&mut buf);
        prop_assert_eq!(tag, b'Z');
        prop_assert_eq!(ready_for_query_status(&body)?, status);
        match Message::parse(&mut theirs).unwrap() {
            Some(Message::ReadyForQuery(r)) => prop_assert_eq!(r.status(), status),
            _ => prop_assert!(false, "not a ReadyForQuery"),
        }
        prop_assert_eq!(ready_for_query_status(&[other]).is_ok(), matches!(other, b'I' | b'T' | b'E'));
    }

    #[test]
    fn parameter_status(name in text(30), value in text(60)) {
        let mut buf = BytesMut::new();
        backend::parameter_status(&name, &value, &mut buf);
        let (tag, body) = one(&mut buf);
        prop_assert_eq!(tag, b'S');
        prop_assert_eq!(ParameterStatus::decode(&body)?, ParameterStatus { name: &name, value: &value });
    }

    #[test]
    fn backend_key_data(pid in any::<i32>(), key in any::<i32>()) {
        let mut buf = BytesMut::new();
        backend::backend_key_data(pid, key, &mut buf);
        let (tag, body) = one(&mut buf);
        prop_assert_eq!(tag, b'K');
        prop_assert_eq!(BackendKeyData::decode(&body)?, BackendKeyData { pid, key });
    }

    #[test]
    fn command_complete(
        cmd in prop::sample::select(vec!["INSERT 0", "SELECT", "UPDATE", "DELETE", "MERGE", "COPY", "MOVE", "FETCH"]),
        rows in any::<u64>(),
        other in text(40),
    ) {
        let tag = format!("{cmd} {rows}");
        let mut buf = BytesMut::new();
        backend::command_complete(&tag, &mut buf);
        backend::command_complete(&other, &mut buf);
        let first = split_message(&mut buf, MAX).unwrap().unwrap();
        let c = CommandComplete::decode(&first.body)?;
        prop_assert_eq!((c.tag, c.rows()), (tag.as_str(), Some(rows)));
        let (_, body) = one(&mut buf);
        let c = CommandComplete::decode(&body)?;
        prop_assert_eq!(c.tag, other.as_str());
        let _ = c.rows();
    }

    #[test]
    fn error_response(
        sev in severity(),
        code in "[0-9A-Z]{5}",
        message in text(60),
        detail in proptest::option::of(text(30)),
        hint in proptest::option::of(text(30)),
        notice in any::<bool>(),
    ) {
        let mut e = ErrorResponse::new(sev, &code, message.clone());
        e.detail = detail.clone();
        e.hint = hint.clone();
        let mut buf = BytesMut::new();
        if notice { e.write_notice(&mut buf) } else { e.write(&mut buf) }
        let mut theirs = buf.clone();
        let (tag, body) = one(&mut buf);
        prop_assert_eq!(tag, if notice { b'N' } else { b'E' });
        let f = ErrorFields::decode(&body)?;
        prop_assert_eq!(f.code(), Some(code.as_str()));
        prop_assert_eq!(f.severity(), Some(sev.as_str()));
        prop_assert_eq!(f.message(), Some(message.as_str()));
        prop_assert_eq!(f.get_str(b'D'), detail.as_deref());
        prop_assert_eq!(f.get_str(b'H'), hint.as_deref());

        let owned = |f: postgres_protocol::message::backend::ErrorField<'_>| Ok((f.type_(), f.value_bytes().to_vec()));
        let theirs: Vec<(u8, Vec<u8>)> = match Message::parse(&mut theirs).unwrap() {
            Some(Message::ErrorResponse(b)) => b.fields().map(owned).collect().unwrap(),
            Some(Message::NoticeResponse(b)) => b.fields().map(owned).collect().unwrap(),
            _ => return Err(TestCaseError::fail("not an error or notice")),
        };
        let ours: Vec<(u8, Vec<u8>)> = f.iter().map(|(t, v)| (t, v.to_vec())).collect();
        prop_assert_eq!(ours, theirs);
    }

    #[test]
    fn error_fields_of_any_bytes(fields in vec((1u8.., cbytes(30)), 0..10)) {
        let mut body = Vec::new();
        for (t, v) in &fields {
            body.push(*t);
            body.extend_from_slice(v);
            body.push(0);
        }
        body.push(0);
        let f = ErrorFields::decode(&body)?;
        let got: Vec<(u8, Vec<u8>)> = f.iter().map(|(t, v)| (t, v.to_vec())).collect();
        prop_assert_eq!(got, fields);
    }

    #[test]
    fn authentication(
        which in 0..6u8,
        salt in any::<[u8; 4]>(),
        mechs in vec("[A-Z0-9-]{1,20}", 0..4),
        data in vec(any::<u8>(), 0..80),
    ) {
        let mut buf = BytesMut::new();
        let mech_refs: Vec<&str> = mechs.iter().map(String::as_str).collect();
        match which {
            0 => backend::authentication_ok(&mut buf),
            1 => backend::authentication_cleartext_password(&mut buf),
            2 => backend::authentication_md5_password(salt, &mut buf),
            3 => backend::authentication_sasl(&mech_refs, &mut buf),
            4 => backend::authentication_sasl_continue(&data, &mut buf),
            _ => backend::authentication_sasl_final(&data, &mut buf),
        }
        let mut theirs = buf.clone();
        let (tag, body) = one(&mut buf);
        prop_assert_eq!(tag, b'R');
        let ours = Authentication::decode(&body)?;
        let theirs = Message::parse(&mut theirs).unwrap();
        match (which, ours, theirs) {
            (0, Authentication::Ok, Some(Message::AuthenticationOk)) => {}
            (1, Authentication::CleartextPassword, Some(Message::AuthenticationCleartextPassword)) => {}
            (2, Authentication::Md5Password(s), Some(Message::AuthenticationMd5Password(b))) => {
                prop_assert_eq!(s, salt);
                prop_assert_eq!(b.salt(), salt);
            }
            (3, Authentication::Sasl(m), Some(Message::AuthenticationSasl(b))) => {
                let theirs: Vec<String> = b.mechanisms().map(|m| Ok(m.to_owned())).collect().unwrap();
                prop_assert_eq!(&theirs, &mechs);
                prop_assert_eq!(m.collect::<Vec<_>>(), mech_refs);
            }
            (4, Authentication::SaslContinue(d), Some(Message::AuthenticationSaslContinue(b))) => {
                prop_assert_eq!(d, &data[..]);
                prop_assert_eq!(b.data(), &data[..]);
            }
            (5, Authentication::SaslFinal(d), Some(Message::AuthenticationSaslFinal(b))) => {
                prop_assert_eq!(d, &data[..]);
                prop_assert_eq!(b.data(), &data[..]);
            }
            (w, ours, _) => prop_assert!(false, "case {} decoded as {:?}", w, ours),
        }
    }

    #[test]
    fn parameter_description(types in vec(any::<u32>(), 0..60)) {
        let mut buf = BytesMut::new();
        backend::parameter_description(&types, &mut buf);
        let mut theirs = buf.clone();
        let (tag, body) = one(&mut buf);
        prop_assert_eq!(tag, b't');
        let d = ParameterDescription::decode(&body)?;
        prop_assert_eq!(d.count(), types.len());
        prop_assert_eq!(&d.types().collect::<Vec<_>>(), &types);
        match Message::parse(&mut theirs).unwrap() {
            Some(Message::ParameterDescription(p)) => prop_assert_eq!(p.parameters().collect::<Vec<_>>().unwrap(), types),
            _ => prop_assert!(false, "not a ParameterDescription"),
        }
    }

    #[test]
    fn row_description(fields in vec(field(), 0..12)) {
        let views: Vec<FieldDescription<'_>> = fields.iter().map(Field::view).collect();
        let mut buf = BytesMut::new();
        backend::row_description(&views, &mut buf);
        let mut theirs = buf.clone();
        let (tag, body) = one(&mut buf);
        prop_assert_eq!(tag, b'T');
        let r = RowDescription::decode(&body)?;
        prop_assert_eq!(r.count(), fields.len());
        prop_assert_eq!(&r.fields().collect::<Vec<_>>(), &views);
        match Message::parse(&mut theirs).unwrap() {
            Some(Message::RowDescription(b)) => {
                let names: Vec<String> = b.fields().map(|f| Ok(f.name().to_owned())).collect().unwrap();
                let ours: Vec<String> = r.fields().map(|f| f.name.to_owned()).collect();
                prop_assert_eq!(names, ours);
                let attrs: Vec<_> = b
                    .fields()
                    .map(|f| Ok((f.table_oid(), f.column_id(), f.type_oid(), f.type_size(), f.type_modifier(), f.format())))
                    .collect()
                    .unwrap();
                let ours: Vec<_> =
                    r.fields().map(|f| (f.table_oid, f.column, f.type_oid, f.type_size, f.type_modifier, f.format)).collect();
                prop_assert_eq!(attrs, ours);
            }
            _ => prop_assert!(false, "not a RowDescription"),
        }
    }

    #[test]
    fn startup_message(params in vec(("[^\\x00]{1,16}", "[^\\x00]{0,32}"), 0..8), chunks in vec(1usize..16, 1..4)) {
        let refs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let mut ours = BytesMut::new();
        write_startup(&refs, &mut ours);
        let mut theirs = BytesMut::new();
        pp::startup_message(refs.iter().copied(), &mut theirs).unwrap();
        prop_assert_eq!(&ours, &theirs);

        // Arrives in pieces: incomplete until the last byte.
        let mut buf = BytesMut::new();
        let mut rest = &ours[..];
        let mut sizes = chunks.iter().cycle();
        let mut got = None;
        while !rest.is_empty() {
            prop_assert!(got.is_none(), "complete before the last byte");
            let n = (*sizes.next().unwrap_or(&1)).clamp(1, rest.len());
            buf.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            got = split_startup(&mut buf)?;
        }
        prop_assert!(buf.is_empty());
        let expected = StartupPacket::Startup { major: 3, minor: 0, params: params.clone() };
        prop_assert_eq!(got, Some(expected));
    }

    #[test]
    fn cancel_request(pid in any::<i32>(), key in any::<i32>()) {
        let mut ours = BytesMut::new();
        write_cancel(pid, key, &mut ours);
        let mut theirs = BytesMut::new();
        pp::cancel_request(pid, key, &mut theirs);
        prop_assert_eq!(&ours, &theirs);
        prop_assert_eq!(split_startup(&mut ours)?, Some(StartupPacket::Cancel { pid, key }));
        prop_assert!(ours.is_empty());
    }
}
