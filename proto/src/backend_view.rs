//! Typed views of the server→client messages the pooler inspects.
//!
//! Like [`crate::frontend`], every `decode` takes a message body and borrows from it. Each view is
//! fully validated when it is decoded, so its accessors and iterators cannot fail afterwards.
//! Malformed bodies are [`ProtocolError::Malformed`], names that must be UTF-8 and are not are
//! [`ProtocolError::Utf8`]; nothing panics.

use crate::backend::FieldDescription;
use crate::error::{ProtocolError, Result};
use crate::frontend::Cursor;

/// The transaction status of a ReadyForQuery (`Z`) body: `b'I'` (idle), `b'T'` (in a transaction)
/// or `b'E'` (in a failed transaction).
pub fn ready_for_query_status(body: &[u8]) -> Result<u8> {
    match body {
        [status @ (b'I' | b'T' | b'E')] => Ok(*status),
        _ => Err(ProtocolError::Malformed {
            what: "ReadyForQuery",
        }),
    }
}

/// A ParameterStatus (`S`): the server reports a run-time parameter's current value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParameterStatus<'a> {
    /// Parameter name, e.g. `TimeZone`.
    pub name: &'a str,
    /// Its new value.
    pub value: &'a str,
}

impl<'a> ParameterStatus<'a> {
    /// Decodes a ParameterStatus body: name, value (both C strings), nothing after.
    pub fn decode(body: &'a [u8]) -> Result<Self> {
        let mut cur = Cursor::new(body, "ParameterStatus");
        let name = cur.cstr()?;
        let value = cur.cstr()?;
        cur.finish()?;
        Ok(ParameterStatus { name, value })
    }
}

/// A BackendKeyData (`K`): what a client needs to cancel this backend's queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BackendKeyData {
    /// Backend process id.
    pub pid: i32,
    /// Secret cancel key.
    pub key: i32,
}

impl BackendKeyData {
    /// Decodes a BackendKeyData body: exactly 8 bytes, as in protocol 3.0 (3.2's longer keys are
    /// rejected).
    pub fn decode(body: &[u8]) -> Result<Self> {
        let mut cur = Cursor::new(body, "BackendKeyData");
        let pid = cur.i32()?;
        let key = cur.i32()?;
        cur.finish()?;
        Ok(BackendKeyData { pid, key })
    }
}

/// A CommandComplete (`C`): the command tag of a finished statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandComplete<'a> {
    /// The tag, e.g. `INSERT 0 5`, `SELECT 3` or `BEGIN`.
    pub tag: &'a str,
}

impl<'a> CommandComplete<'a> {
    /// Decodes a CommandComplete body: one C string and nothing after it.
    pub fn decode(body: &'a [u8]) -> Result<Self> {
        let mut cur = Cursor::new(body, "CommandComplete");
        let tag = cur.cstr()?;
        cur.finish()?;
        Ok(CommandComplete { tag })
    }

    /// The row count: the tag's last word when there are at least two and the last is all digits
    /// (`INSERT 0 5` → 5, `SELECT 3` → 3, `BEGIN` → `None`).
    pub fn rows(&self) -> Option<u64> {
        let (_, last) = self.tag.rsplit_once(' ')?;
        if last.is_empty() || !last.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        last.parse().ok()
    }
}

/// The fields of an ErrorResponse (`E`) or NoticeResponse (`N`): `(type byte, value)` pairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorFields<'a> {
    /// The body without its final NUL: `type, value, NUL` repeated, checked at decode time.
    raw: &'a [u8],
}

impl<'a> ErrorFields<'a> {
    /// Decodes an ErrorResponse or NoticeResponse body: fields of a non-zero type byte and a C
    /// string, then a zero byte, nothing after. Values are not required to be UTF-8.
    pub fn decode(body: &'a [u8]) -> Result<Self> {
        let mut cur = Cursor::new(body, "ErrorResponse");
        while cur.u8()? != 0 {
            cur.cstr_bytes()?;
        }
        cur.finish()?;
        // Validated above: the last byte is the terminating zero.
        let raw = body.split_last().map_or(body, |(_, raw)| raw);
        Ok(ErrorFields { raw })
    }

    /// The fields in the order the server sent them. Values are raw bytes without the NUL.
    pub fn iter(&self) -> impl Iterator<Item = (u8, &'a [u8])> + 'a {
        let mut cur = Cursor::new(self.raw, "ErrorResponse");
        std::iter::from_fn(move || {
            if cur.is_empty() {
                return None;
            }
            let ty = cur.u8().ok()?;
            let value = cur.cstr_bytes().ok()?;
            Some((ty, value))
        })
    }

    /// The first field of type `ty`, as raw bytes.
    pub fn get(&self, ty: u8) -> Option<&'a [u8]> {
        self.iter().find(|(t, _)| *t == ty).map(|(_, v)| v)
    }

    /// The first field of type `ty`, if it is present and UTF-8.
    pub fn get_str(&self, ty: u8) -> Option<&'a str> {
        self.get(ty).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The SQLSTATE code (field `C`).
    pub fn code(&self) -> Option<&'a str> {
        self.get_str(b'C')
    }

    /// The severity: the non-localized field `V` when present (PostgreSQL 9.6+), else `S`.
    pub fn severity(&self) -> Option<&'a str> {
        self.get_str(b'V').or_else(|| self.get_str(b'S'))
    }

    /// The primary message (field `M`).
    pub fn message(&self) -> Option<&'a str> {
        self.get_str(b'M')
    }

    /// Severity FATAL or PANIC: PostgreSQL closes the connection after sending it.
    pub fn is_fatal(&self) -> bool {
        matches!(self.severity(), Some("FATAL" | "PANIC"))
    }
}

/// The SQLSTATE and message of an ErrorResponse body, for logs and for errors the pooler raises
/// from a server's. Values that are not UTF-8 are converted lossily; a field that is missing, or
/// a malformed body, gives empty strings.
pub fn error_code_and_message(body: &[u8]) -> (String, String) {
    let Ok(fields) = ErrorFields::decode(body) else {
        return (String::new(), String::new());
    };
    let text = |ty: u8| {
        fields
            .get(ty)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default()
    };
    (text(b'C'), text(b'M'))
}

/// Whether an ErrorResponse body is FATAL or PANIC ([`ErrorFields::is_fatal`]); false when
/// malformed.
pub fn is_fatal(body: &[u8]) -> bool {
    ErrorFields::decode(body).is_ok_and(|f| f.is_fatal())
}

/// A DataRow (`D`): one row of column values, each NULL or bytes in the column's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataRow<'a> {
    count: u16,
    /// The values (`i32` length, -1 for NULL, then the bytes), checked at decode time.
    raw: &'a [u8],
}

impl<'a> DataRow<'a> {
    /// Decodes a DataRow body: `u16` count, that many values, nothing after.
    pub fn decode(body: &'a [u8]) -> Result<Self> {
        let mut cur = Cursor::new(body, "DataRow");
        let count = cur.u16()?;
        let raw = cur.rest();
        let mut values = Cursor::new(raw, "DataRow");
        for _ in 0..count {
            values.nullable_bytes()?;
        }
        values.finish()?;
        Ok(DataRow { count, raw })
    }

    /// How many columns.
    pub fn len(&self) -> usize {
        usize::from(self.count)
    }

    /// True for a row of no columns.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The values in column order; `None` is NULL.
    pub fn values(&self) -> impl Iterator<Item = Option<&'a [u8]>> + 'a {
        let mut cur = Cursor::new(self.raw, "DataRow");
        std::iter::from_fn(move || cur.nullable_bytes().ok()).take(self.len())
    }

    /// The first column as text; `None` when there is none, it is NULL, or it is not UTF-8.
    pub fn first_text(&self) -> Option<&'a str> {
        std::str::from_utf8(self.values().next()??).ok()
    }
}

/// An authentication request (`R`) from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authentication<'a> {
    /// AuthenticationOk (0).
    Ok,
    /// AuthenticationCleartextPassword (3).
    CleartextPassword,
    /// AuthenticationMD5Password (5) with its salt.
    Md5Password([u8; 4]),
    /// AuthenticationSASL (10) with the mechanisms the server offers, in its order of preference.
    Sasl(SaslMechanisms<'a>),
    /// AuthenticationSASLContinue (11) with the server-first-message.
    SaslContinue(&'a [u8]),
    /// AuthenticationSASLFinal (12) with the server-final-message.
    SaslFinal(&'a [u8]),
    /// Any other request (Kerberos, GSSAPI, SSPI, ...), by its code; the rest of the body is not
    /// checked.
    Other(i32),
}

impl<'a> Authentication<'a> {
    /// Decodes an Authentication body: `i32` code, then what that code carries, nothing after.
    pub fn decode(body: &'a [u8]) -> Result<Self> {
        let mut cur = Cursor::new(body, "Authentication");
        let auth = match cur.i32()? {
            0 => Authentication::Ok,
            3 => Authentication::CleartextPassword,
            5 => {
                let salt = cur.take(4)?;
                Authentication::Md5Password([salt[0], salt[1], salt[2], salt[3]])
            }
            10 => {
                let list = cur.rest();
                let mut names = Cursor::new(list, "Authentication");
                while !names.cstr()?.is_empty() {}
                names.finish()?;
                // Validated above: `list` ends with the empty name's NUL.
                let raw = list.split_last().map_or(list, |(_, raw)| raw);
                Authentication::Sasl(SaslMechanisms { raw })
            }
            11 => Authentication::SaslContinue(cur.rest()),
            12 => Authentication::SaslFinal(cur.rest()),
            code => return Ok(Authentication::Other(code)),
        };
        cur.finish()?;
        Ok(auth)
    }
}

/// The mechanism names of an AuthenticationSASL request; an iterator of `&str`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslMechanisms<'a> {
    /// `name, NUL` repeated (without the list's terminating NUL), checked at decode time.
    raw: &'a [u8],
}

impl<'a> SaslMechanisms<'a> {
    /// Whether the server offers `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.clone().any(|m| m == name)
    }
}

impl<'a> Iterator for SaslMechanisms<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.raw.is_empty() {
            return None;
        }
        let mut cur = Cursor::new(self.raw, "Authentication");
        let name = cur.cstr().ok();
        self.raw = if name.is_some() { cur.rest() } else { &[] };
        name
    }
}

/// A ParameterDescription (`t`): the parameter type OIDs of a prepared statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParameterDescription<'a> {
    /// The OIDs, 4 bytes each, big-endian.
    raw: &'a [u8],
}

impl<'a> ParameterDescription<'a> {
    /// Decodes a ParameterDescription body: `u16` count, that many `u32` OIDs, nothing after.
    pub fn decode(body: &'a [u8]) -> Result<Self> {
        let mut cur = Cursor::new(body, "ParameterDescription");
        let count = cur.u16()?;
        let raw = cur.take(usize::from(count) * 4)?;
        cur.finish()?;
        Ok(ParameterDescription { raw })
    }

    /// How many parameters the statement has.
    pub fn count(&self) -> usize {
        self.raw.len() / 4
    }

    /// The parameter type OIDs in order.
    pub fn types(&self) -> impl Iterator<Item = u32> + 'a {
        self.raw
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
    }
}

/// A RowDescription (`T`): the columns of the rows that follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowDescription<'a> {
    count: u16,
    /// The field descriptions, checked at decode time.
    raw: &'a [u8],
}

impl<'a> RowDescription<'a> {
    /// Fixed-size part of a field after its name: table OID, column, type OID, size, modifier, format.
    const FIXED: usize = 4 + 2 + 4 + 2 + 4 + 2;

    /// Decodes a RowDescription body: `u16` count, then per field a UTF-8 name and 18 bytes of
    /// attributes, nothing after.
    pub fn decode(body: &'a [u8]) -> Result<Self> {
        let mut cur = Cursor::new(body, "RowDescription");
        let count = cur.u16()?;
        let raw = cur.rest();
        let mut fields = Cursor::new(raw, "RowDescription");
        for _ in 0..count {
            fields.cstr()?;
            fields.take(Self::FIXED)?;
        }
        fields.finish()?;
        Ok(RowDescription { count, raw })
    }

    /// How many columns.
    pub fn count(&self) -> usize {
        usize::from(self.count)
    }

    /// The columns in order.
    pub fn fields(&self) -> impl Iterator<Item = FieldDescription<'a>> + 'a {
        let mut cur = Cursor::new(self.raw, "RowDescription");
        std::iter::from_fn(move || read_field(&mut cur).ok()).take(self.count())
    }
}

fn read_field<'a>(cur: &mut Cursor<'a>) -> Result<FieldDescription<'a>> {
    Ok(FieldDescription {
        name: cur.cstr()?,
        table_oid: cur.u32()?,
        column: cur.i16()?,
        type_oid: cur.u32()?,
        type_size: cur.i16()?,
        type_modifier: cur.i32()?,
        format: cur.i16()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{self, ErrorResponse, Severity};
    use crate::framing::split_message;
    use bytes::BytesMut;
    use fallible_iterator::FallibleIterator;
    use postgres_protocol::message::backend::Message;

    fn one(buf: &mut BytesMut) -> (u8, bytes::Bytes) {
        let m = split_message(buf, 1 << 20).unwrap().unwrap();
        assert!(buf.is_empty(), "exactly one message was written");
        (m.tag, m.body)
    }

    fn malformed(what: &'static str) -> ProtocolError {
        ProtocolError::Malformed { what }
    }

    #[test]
    fn ready_for_query() {
        let mut buf = BytesMut::new();
        for s in [b'I', b'T', b'E'] {
            backend::ready_for_query(s, &mut buf);
            let (tag, body) = one(&mut buf);
            assert_eq!(tag, b'Z');
            assert_eq!(ready_for_query_status(&body), Ok(s));
        }
        assert_eq!(ready_for_query_status(b""), Err(malformed("ReadyForQuery")));
        assert_eq!(
            ready_for_query_status(b"X"),
            Err(malformed("ReadyForQuery"))
        );
        assert_eq!(
            ready_for_query_status(b"II"),
            Err(malformed("ReadyForQuery"))
        );
    }

    #[test]
    fn parameter_status_and_key_data() {
        let mut buf = BytesMut::new();
        backend::parameter_status("TimeZone", "Europe/Paris", &mut buf);
        let (_, body) = one(&mut buf);
        assert_eq!(
            ParameterStatus::decode(&body).unwrap(),
            ParameterStatus {
                name: "TimeZone",
                value: "Europe/Paris"
            }
        );
        assert_eq!(
            ParameterStatus::decode(b"a\0b\0c"),
            Err(malformed("ParameterStatus"))
        );
        assert_eq!(
            ParameterStatus::decode(b"a\0"),
            Err(malformed("ParameterStatus"))
        );

        backend::backend_key_data(1234, -5, &mut buf);
        let (_, body) = one(&mut buf);
        assert_eq!(
            BackendKeyData::decode(&body).unwrap(),
            BackendKeyData { pid: 1234, key: -5 }
        );
        assert_eq!(
            BackendKeyData::decode(&[0; 7]),
            Err(malformed("BackendKeyData"))
        );
        assert_eq!(
            BackendKeyData::decode(&[0; 12]),
            Err(malformed("BackendKeyData"))
        );
    }

    #[test]
    fn command_complete_rows() {
        let rows = |tag: &str| CommandComplete { tag }.rows();
        assert_eq!(rows("INSERT 0 5"), Some(5));
        assert_eq!(rows("SELECT 3"), Some(3));
        assert_eq!(rows("UPDATE 18446744073709551615"), Some(u64::MAX));
        assert_eq!(rows("UPDATE 18446744073709551616"), None);
        assert_eq!(rows("BEGIN"), None);
        assert_eq!(rows("CREATE TABLE"), None);
        assert_eq!(rows("SELECT +3"), None);
        assert_eq!(rows("SELECT "), None);
        assert_eq!(rows("7"), None);

        let mut buf = BytesMut::new();
        backend::command_complete("DELETE 12", &mut buf);
        let (tag, body) = one(&mut buf);
        assert_eq!(tag, b'C');
        let c = CommandComplete::decode(&body).unwrap();
        assert_eq!((c.tag, c.rows()), ("DELETE 12", Some(12)));
        assert_eq!(
            CommandComplete::decode(b"DELETE 12"),
            Err(malformed("CommandComplete"))
        );
    }

    #[test]
    fn error_fields() {
        let mut buf = BytesMut::new();
        ErrorResponse::new(Severity::Fatal, "53300", "too many clients")
            .detail("d")
            .write(&mut buf);
        let (tag, body) = one(&mut buf);
        assert_eq!(tag, b'E');
        let e = ErrorFields::decode(&body).unwrap();
        assert_eq!(
            (e.code(), e.severity(), e.message()),
            (Some("53300"), Some("FATAL"), Some("too many clients"))
        );
        assert_eq!(e.get(b'D'), Some(&b"d"[..]));
        assert_eq!(e.get(b'H'), None);
        assert_eq!(e.iter().count(), 5);

        // Localized S only, a non-UTF-8 message.
        let e = ErrorFields::decode(b"SFEHLER\0M\xff\0\0").unwrap();
        assert_eq!(
            (e.severity(), e.message(), e.get(b'M')),
            (Some("FEHLER"), None, Some(&b"\xff"[..]))
        );
        assert_eq!(ErrorFields::decode(b"\0").unwrap().iter().count(), 0);
        for bad in [&b""[..], b"Mx\0", b"Mx", b"M", b"\0\0", b"Mx\0\0y"] {
            assert_eq!(
                ErrorFields::decode(bad),
                Err(malformed("ErrorResponse")),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn error_helpers() {
        let mut buf = BytesMut::new();
        ErrorResponse::new(Severity::Fatal, "57P01", "terminating").write(&mut buf);
        let (_, fatal) = one(&mut buf);
        ErrorResponse::error("25006", "read-only").write(&mut buf);
        let (_, error) = one(&mut buf);
        assert!(is_fatal(&fatal));
        assert!(!is_fatal(&error));
        assert_eq!(
            error_code_and_message(&error),
            ("25006".to_owned(), "read-only".to_owned())
        );
        // PANIC counts; the non-localized V wins over a localized S.
        assert!(is_fatal(b"SPANIC\0\0"));
        assert!(is_fatal(b"SSCHWERWIEGEND\0VFATAL\0\0"));
        assert!(!is_fatal(b"SFATAL\0VERROR\0\0"));
        // Missing fields and malformed bodies give empty strings and "not fatal".
        assert_eq!(
            error_code_and_message(b"M\xffx\0\0"),
            (String::new(), "\u{fffd}x".to_owned())
        );
        assert_eq!(
            error_code_and_message(b"Mx"),
            (String::new(), String::new())
        );
        assert!(!is_fatal(b"SFATAL\0"));
    }

    #[test]
    fn data_rows_agree_with_postgres_protocol() {
        let mut buf = BytesMut::new();
        backend::data_row([Some(&b"0/3000148"[..]), None, Some(&b""[..])], &mut buf);
        let mut theirs = buf.clone();
        let (tag, body) = one(&mut buf);
        assert_eq!(tag, b'D');
        let row = DataRow::decode(&body).unwrap();
        assert_eq!(row.len(), 3);
        assert_eq!(
            row.values().collect::<Vec<_>>(),
            [Some(&b"0/3000148"[..]), None, Some(&b""[..])]
        );
        assert_eq!(row.first_text(), Some("0/3000148"));
        match Message::parse(&mut theirs).unwrap().unwrap() {
            Message::DataRow(r) => assert_eq!(r.ranges().count().unwrap(), row.len()),
            _ => panic!("not a DataRow"),
        }
        assert_eq!(DataRow::decode(b"\0\0").unwrap().first_text(), None);
        assert_eq!(
            DataRow::decode(b"\0\x01\xff\xff\xff\xff")
                .unwrap()
                .first_text(),
            None
        );
        for bad in [
            &b""[..],
            b"\0\x01",
            b"\0\x01\0\0\0\x02a",
            b"\0\x01\xff\xff\xff\xfe",
            b"\0\0x",
        ] {
            assert_eq!(DataRow::decode(bad), Err(malformed("DataRow")), "{bad:?}");
        }
    }

    #[test]
    fn authentication_requests_agree_with_postgres_protocol() {
        let mut buf = BytesMut::new();
        backend::authentication_ok(&mut buf);
        backend::authentication_cleartext_password(&mut buf);
        backend::authentication_md5_password([9, 8, 7, 6], &mut buf);
        backend::authentication_sasl(&["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"], &mut buf);
        backend::authentication_sasl_continue(b"r=abc,s=xyz,i=4096", &mut buf);
        backend::authentication_sasl_final(b"v=xyz", &mut buf);
        let mut theirs = buf.clone();

        let mut ours = Vec::new();
        while let Some(m) = split_message(&mut buf, 1 << 20).unwrap() {
            assert_eq!(m.tag, b'R');
            ours.push(m.body);
        }
        let views: Vec<_> = ours
            .iter()
            .map(|b| Authentication::decode(b).unwrap())
            .collect();
        assert_eq!(views[0], Authentication::Ok);
        assert_eq!(views[1], Authentication::CleartextPassword);
        assert_eq!(views[2], Authentication::Md5Password([9, 8, 7, 6]));
        match &views[3] {
            Authentication::Sasl(m) => {
                assert_eq!(
                    m.clone().collect::<Vec<_>>(),
                    ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]
                );
                assert!(m.contains("SCRAM-SHA-256") && !m.contains("SCRAM"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            views[4],
            Authentication::SaslContinue(b"r=abc,s=xyz,i=4096")
        );
        assert_eq!(views[5], Authentication::SaslFinal(b"v=xyz"));

        let mut n = 0;
        while let Some(m) = Message::parse(&mut theirs).unwrap() {
            match (m, &views[n]) {
                (Message::AuthenticationOk, Authentication::Ok) => {}
                (Message::AuthenticationCleartextPassword, Authentication::CleartextPassword) => {}
                (Message::AuthenticationMd5Password(b), Authentication::Md5Password(s)) => {
                    assert_eq!(&b.salt(), s)
                }
                (Message::AuthenticationSasl(b), Authentication::Sasl(s)) => {
                    let theirs: Vec<String> =
                        b.mechanisms().map(|m| Ok(m.to_owned())).collect().unwrap();
                    assert_eq!(theirs, s.clone().collect::<Vec<_>>());
                }
                (Message::AuthenticationSaslContinue(b), Authentication::SaslContinue(d)) => {
                    assert_eq!(b.data(), *d)
                }
                (Message::AuthenticationSaslFinal(b), Authentication::SaslFinal(d)) => {
                    assert_eq!(b.data(), *d)
                }
                (_, v) => panic!("postgres-protocol disagrees on {v:?}"),
            }
            n += 1;
        }
        assert_eq!(n, 6);
    }

    #[test]
    fn malformed_authentication() {
        let what = malformed("Authentication");
        assert_eq!(Authentication::decode(b"\0\0\0"), Err(what.clone()));
        assert_eq!(Authentication::decode(b"\0\0\0\0x"), Err(what.clone()));
        assert_eq!(Authentication::decode(b"\0\0\0\x05abc"), Err(what.clone()));
        assert_eq!(
            Authentication::decode(b"\0\0\0\x05abcde"),
            Err(what.clone())
        );
        assert_eq!(
            Authentication::decode(b"\0\0\0\x0aSCRAM\0"),
            Err(what.clone())
        );
        assert_eq!(
            Authentication::decode(b"\0\0\0\x0aSCRAM\0\0x"),
            Err(what.clone())
        );
        assert_eq!(
            Authentication::decode(b"\0\0\0\x0a\xff\0\0"),
            Err(ProtocolError::Utf8 {
                what: "Authentication"
            })
        );
        assert_eq!(
            Authentication::decode(b"\0\0\0\x07anything"),
            Ok(Authentication::Other(7))
        );
        match Authentication::decode(b"\0\0\0\x0a\0") {
            Ok(Authentication::Sasl(m)) => assert_eq!(m.count(), 0),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parameter_and_row_descriptions_agree_with_postgres_protocol() {
        let mut buf = BytesMut::new();
        backend::parameter_description(&[23, 25, 0], &mut buf);
        let fields = [
            FieldDescription::text("database", 25),
            FieldDescription {
                name: "n",
                table_oid: 16384,
                column: 2,
                type_oid: 20,
                type_size: 8,
                type_modifier: -1,
                format: 1,
            },
        ];
        backend::row_description(&fields, &mut buf);
        let mut theirs = buf.clone();

        let (tag, body) = (
            b't',
            split_message(&mut buf, 1 << 20).unwrap().unwrap().body,
        );
        let pd = ParameterDescription::decode(&body).unwrap();
        assert_eq!((tag, pd.count()), (b't', 3));
        assert_eq!(pd.types().collect::<Vec<_>>(), [23, 25, 0]);
        let (tag, body) = one(&mut buf);
        assert_eq!(tag, b'T');
        let rd = RowDescription::decode(&body).unwrap();
        assert_eq!(rd.count(), 2);
        assert_eq!(rd.fields().collect::<Vec<_>>(), fields);

        match Message::parse(&mut theirs).unwrap() {
            Some(Message::ParameterDescription(p)) => {
                assert_eq!(
                    p.parameters().collect::<Vec<_>>().unwrap(),
                    pd.types().collect::<Vec<_>>()
                )
            }
            _ => panic!("not a ParameterDescription"),
        }
        match Message::parse(&mut theirs).unwrap() {
            Some(Message::RowDescription(r)) => {
                let theirs: Vec<_> = r
                    .fields()
                    .map(|f| {
                        Ok((
                            f.name().to_owned(),
                            f.table_oid(),
                            f.column_id(),
                            f.type_oid(),
                            f.type_size(),
                            f.type_modifier(),
                            f.format(),
                        ))
                    })
                    .collect()
                    .unwrap();
                let ours: Vec<_> = rd
                    .fields()
                    .map(|f| {
                        (
                            f.name.to_owned(),
                            f.table_oid,
                            f.column,
                            f.type_oid,
                            f.type_size,
                            f.type_modifier,
                            f.format,
                        )
                    })
                    .collect();
                assert_eq!(theirs, ours);
            }
            _ => panic!("not a RowDescription"),
        }

        assert_eq!(
            ParameterDescription::decode(b"\0\x01\0\0\0"),
            Err(malformed("ParameterDescription"))
        );
        assert_eq!(
            ParameterDescription::decode(b"\0\0\0"),
            Err(malformed("ParameterDescription"))
        );
        assert_eq!(
            RowDescription::decode(b"\0\x01a\0"),
            Err(malformed("RowDescription"))
        );
        assert_eq!(
            RowDescription::decode(b"\0\0x"),
            Err(malformed("RowDescription"))
        );
        assert_eq!(RowDescription::decode(b"\0\0").unwrap().fields().count(), 0);
    }
}
