//! Typed views of the client→server messages the pooler inspects, and writers for the ones it
//! rewrites or sends itself.
//!
//! Every `decode` takes a message body (the bytes after the tag and the length, as in
//! [`RawMessage::body`](crate::RawMessage)) and borrows from it; nothing is copied. A body that does
//! not have the shape its type requires is [`ProtocolError::Malformed`]; a name or SQL text that is
//! not UTF-8 is [`ProtocolError::Utf8`]. Decoders never panic, whatever the input.
//!
//! Writers append one whole message (tag, length, body) to `out`. Names and SQL handed to a writer
//! must not contain NUL bytes (anything decoded from the wire never does), and a body must stay
//! under 2 GiB; the writers do not check either.

use bytes::{BufMut, BytesMut};

use crate::backend::{put_cstr, write_message};
use crate::error::{ProtocolError, Result};

/// The tag byte of a protocol-3.0 client message sent after startup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrontendTag {
    /// Simple query (`Q`).
    Query = b'Q',
    /// Extended protocol: Parse (`P`).
    Parse = b'P',
    /// Extended protocol: Bind (`B`).
    Bind = b'B',
    /// Extended protocol: Describe (`D`).
    Describe = b'D',
    /// Extended protocol: Execute (`E`).
    Execute = b'E',
    /// Extended protocol: Close (`C`).
    Close = b'C',
    /// Extended protocol: Sync (`S`).
    Sync = b'S',
    /// Extended protocol: Flush (`H`).
    Flush = b'H',
    /// COPY FROM STDIN data (`d`).
    CopyData = b'd',
    /// End of COPY FROM STDIN data (`c`).
    CopyDone = b'c',
    /// Abort COPY FROM STDIN (`f`).
    CopyFail = b'f',
    /// Orderly disconnect (`X`).
    Terminate = b'X',
    /// Legacy fast-path function call (`F`).
    FunctionCall = b'F',
    /// `p`: PasswordMessage, SASLInitialResponse, SASLResponse or GSSResponse. Which one depends on
    /// the authentication request the server sent last.
    Password = b'p',
}

impl FrontendTag {
    /// The tag for a byte, or `None` if no client message uses it.
    pub fn from_u8(tag: u8) -> Option<Self> {
        Some(match tag {
            b'Q' => FrontendTag::Query,
            b'P' => FrontendTag::Parse,
            b'B' => FrontendTag::Bind,
            b'D' => FrontendTag::Describe,
            b'E' => FrontendTag::Execute,
            b'C' => FrontendTag::Close,
            b'S' => FrontendTag::Sync,
            b'H' => FrontendTag::Flush,
            b'd' => FrontendTag::CopyData,
            b'c' => FrontendTag::CopyDone,
            b'f' => FrontendTag::CopyFail,
            b'X' => FrontendTag::Terminate,
            b'F' => FrontendTag::FunctionCall,
            b'p' => FrontendTag::Password,
            _ => return None,
        })
    }

    /// The tag byte on the wire.
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// The message name, for logs.
    pub fn name(self) -> &'static str {
        match self {
            FrontendTag::Query => "Query",
            FrontendTag::Parse => "Parse",
            FrontendTag::Bind => "Bind",
            FrontendTag::Describe => "Describe",
            FrontendTag::Execute => "Execute",
            FrontendTag::Close => "Close",
            FrontendTag::Sync => "Sync",
            FrontendTag::Flush => "Flush",
            FrontendTag::CopyData => "CopyData",
            FrontendTag::CopyDone => "CopyDone",
            FrontendTag::CopyFail => "CopyFail",
            FrontendTag::Terminate => "Terminate",
            FrontendTag::FunctionCall => "FunctionCall",
            FrontendTag::Password => "PasswordMessage",
        }
    }
}

/// A simple Query (`Q`): one SQL string, possibly several statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Query<'a> {
    /// The SQL text, without the terminating NUL.
    pub sql: &'a str,
}

impl<'a> Query<'a> {
    /// Decodes a Query body: one C string and nothing after it.
    pub fn decode(body: &'a [u8]) -> Result<Self> {
        let mut cur = Cursor::new(body, "Query");
        let sql = cur.cstr()?;
        cur.finish()?;
        Ok(Query { sql })
    }
}

/// Writes a whole Query message.
pub fn write_query(sql: &str, out: &mut BytesMut) {
    write_message(out, b'Q', |b| put_cstr(b, sql.as_bytes()));
}

/// Writes a whole Sync message.
pub fn write_sync(out: &mut BytesMut) {
    write_message(out, b'S', |_| {});
}

/// Writes a whole Flush message.
pub fn write_flush(out: &mut BytesMut) {
    write_message(out, b'H', |_| {});
}

/// Writes a whole Terminate message.
pub fn write_terminate(out: &mut BytesMut) {
    write_message(out, b'X', |_| {});
}

/// A Parse (`P`): prepare `query` as statement `name` (empty: the unnamed statement).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parse<'a> {
    /// The prepared statement name; empty for the unnamed statement.
    pub name: &'a str,
    /// The SQL text.
    pub query: &'a str,
    /// The parameter type OIDs, 4 bytes each, big-endian (length checked at decode time).
    param_types_raw: &'a [u8],
}

impl<'a> Parse<'a> {
    /// Decodes a Parse body: name, query, `u16` count, that many `u32` type OIDs, nothing after.
    pub fn decode(body: &'a [u8]) -> Result<Self> {
        let mut cur = Cursor::new(body, "Parse");
        let name = cur.cstr()?;
        let query = cur.cstr()?;
        let count = cur.u16()?;
        let param_types_raw = cur.take(usize::from(count) * 4)?;
        cur.finish()?;
        Ok(Parse {
            name,
            query,
            param_types_raw,
        })
    }

    /// How many parameter types the client specified (0 means "let the server infer all").
    pub fn param_count(&self) -> usize {
        self.param_types_raw.len() / 4
    }

    /// The parameter type OIDs in order; 0 means "unspecified".
    pub fn param_types(&self) -> impl Iterator<Item = u32> + 'a {
        self.param_types_raw
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
    }
}

/// Writes a whole Parse message. At most 65535 parameter types fit in one.
pub fn write_parse(
    name: &str,
    query: &str,
    param_types: impl IntoIterator<Item = u32>,
    out: &mut BytesMut,
) {
    write_message(out, b'P', |b| {
        put_cstr(b, name.as_bytes());
        put_cstr(b, query.as_bytes());
        let count_at = b.len();
        b.put_u16(0);
        let mut count: u16 = 0;
        for t in param_types {
            b.put_u32(t);
            count = count.wrapping_add(1);
        }
        b[count_at..count_at + 2].copy_from_slice(&count.to_be_bytes());
    });
}

/// Writes a whole Parse message named `name` whose body after the name is `tail`, copied as it
/// is from another Parse: the query, its NUL, the parameter type count and OIDs. A pooler renaming
/// a client's statement keeps the rest of its Parse this way, without decoding it.
pub fn write_parse_tail(name: &str, tail: &[u8], out: &mut BytesMut) {
    write_message(out, b'P', |b| {
        put_cstr(b, name.as_bytes());
        b.extend_from_slice(tail);
    });
}

/// A Bind (`B`): create portal `portal` from prepared statement `statement`.
///
/// Only the two names are decoded; `rest` (parameter formats, parameter values, result formats) is
/// kept as bytes so a pooler can rename the statement and copy the rest unchanged. Call
/// [`Bind::validate_rest`] to check its shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bind<'a> {
    /// The destination portal; empty for the unnamed portal.
    pub portal: &'a str,
    /// The source prepared statement; empty for the unnamed statement.
    pub statement: &'a str,
    /// Everything after the two names, unparsed.
    pub rest: &'a [u8],
}

impl<'a> Bind<'a> {
    /// Decodes the two names of a Bind body. `rest` is not checked; see [`Bind::validate_rest`].
    pub fn decode(body: &'a [u8]) -> Result<Self> {
        let mut cur = Cursor::new(body, "Bind");
        let portal = cur.cstr()?;
        let statement = cur.cstr()?;
        Ok(Bind {
            portal,
            statement,
            rest: cur.rest(),
        })
    }

    /// Checks that `rest` is `u16` n format codes, `u16` m values (`i32` length, -1 for NULL, then
    /// the bytes), `u16` k result format codes, and nothing after; and, as PostgreSQL requires, that
    /// n is 0, 1 or m. Format code values are not checked (the server reports bad ones).
    pub fn validate_rest(&self) -> Result<()> {
        let mut cur = Cursor::new(self.rest, "Bind");
        let formats = skip_formats(&mut cur)?;
        let values = skip_values(&mut cur)?;
        if formats > 1 && formats != values {
            return Err(cur.malformed());
        }
        skip_formats(&mut cur)?;
        cur.finish()
    }

    /// Writes a whole Bind message from two names and the `rest` of another Bind.
    pub fn write(portal: &str, statement: &str, rest: &[u8], out: &mut BytesMut) {
        Self::write_raw(portal.as_bytes(), statement.as_bytes(), rest, out);
    }

    /// [`Bind::write`] with the names as bytes, as a client sent them (in its encoding).
    pub fn write_raw(portal: &[u8], statement: &[u8], rest: &[u8], out: &mut BytesMut) {
        write_message(out, b'B', |b| {
            put_cstr(b, portal);
            put_cstr(b, statement);
            b.extend_from_slice(rest);
        });
    }
}

/// A Describe (`D`) of a prepared statement (`kind == b'S'`) or a portal (`kind == b'P'`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Describe<'a> {
    /// `b'S'` (statement) or `b'P'` (portal).
    pub kind: u8,
    /// The statement or portal name; empty for the unnamed one.
    pub name: &'a str,
}

impl<'a> Describe<'a> {
    /// Decodes a Describe body: kind byte (`S` or `P`), name, nothing after.
    pub fn decode(body: &'a [u8]) -> Result<Self> {
        let (kind, name) = decode_kind_name(body, "Describe")?;
        Ok(Describe { kind, name })
    }

    /// Writes a whole Describe message.
    pub fn write(kind: u8, name: &str, out: &mut BytesMut) {
        write_message(out, b'D', |b| {
            b.put_u8(kind);
            put_cstr(b, name.as_bytes());
        });
    }
}

/// An Execute (`E`) of a portal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Execute<'a> {
    /// The portal name; empty for the unnamed portal.
    pub portal: &'a str,
    /// Row limit; 0 means no limit.
    pub max_rows: i32,
}

impl<'a> Execute<'a> {
    /// Decodes an Execute body: portal name, `i32` row limit, nothing after.
    pub fn decode(body: &'a [u8]) -> Result<Self> {
        let mut cur = Cursor::new(body, "Execute");
        let portal = cur.cstr()?;
        let max_rows = cur.i32()?;
        cur.finish()?;
        Ok(Execute { portal, max_rows })
    }

    /// Writes a whole Execute message.
    pub fn write(portal: &str, max_rows: i32, out: &mut BytesMut) {
        write_message(out, b'E', |b| {
            put_cstr(b, portal.as_bytes());
            b.put_i32(max_rows);
        });
    }
}

/// A Close (`C`) of a prepared statement (`kind == b'S'`) or a portal (`kind == b'P'`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Close<'a> {
    /// `b'S'` (statement) or `b'P'` (portal).
    pub kind: u8,
    /// The statement or portal name; empty for the unnamed one.
    pub name: &'a str,
}

impl<'a> Close<'a> {
    /// Decodes a Close body: kind byte (`S` or `P`), name, nothing after.
    pub fn decode(body: &'a [u8]) -> Result<Self> {
        let (kind, name) = decode_kind_name(body, "Close")?;
        Ok(Close { kind, name })
    }

    /// Writes a whole Close message.
    pub fn write(kind: u8, name: &str, out: &mut BytesMut) {
        write_message(out, b'C', |b| {
            b.put_u8(kind);
            put_cstr(b, name.as_bytes());
        });
    }
}

/// A CopyFail (`f`): the client aborts COPY FROM STDIN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyFail<'a> {
    /// The reason, reported by the server in its error.
    pub message: &'a str,
}

impl<'a> CopyFail<'a> {
    /// Decodes a CopyFail body: one C string and nothing after it.
    pub fn decode(body: &'a [u8]) -> Result<Self> {
        let mut cur = Cursor::new(body, "CopyFail");
        let message = cur.cstr()?;
        cur.finish()?;
        Ok(CopyFail { message })
    }
}

/// A PasswordMessage (`p` answering a cleartext or md5 request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordMessage<'a> {
    /// The password (or `md5...` hash), without the terminating NUL. Not necessarily UTF-8.
    pub password: &'a [u8],
}

impl<'a> PasswordMessage<'a> {
    /// Decodes a PasswordMessage body: one C string and nothing after it.
    pub fn decode(body: &'a [u8]) -> Result<Self> {
        let mut cur = Cursor::new(body, "PasswordMessage");
        let password = cur.cstr_bytes()?;
        cur.finish()?;
        Ok(PasswordMessage { password })
    }
}

/// A SASLInitialResponse (`p` answering AuthenticationSASL): the chosen mechanism and the client's
/// first message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SaslInitialResponse<'a> {
    /// The mechanism name, e.g. `SCRAM-SHA-256`.
    pub mechanism: &'a str,
    /// The client-first-message; `None` when the client sent length -1.
    pub data: Option<&'a [u8]>,
}

impl<'a> SaslInitialResponse<'a> {
    /// Decodes a SASLInitialResponse body: mechanism, `i32` length (-1: no data), data, nothing after.
    pub fn decode(body: &'a [u8]) -> Result<Self> {
        let mut cur = Cursor::new(body, "SASLInitialResponse");
        let mechanism = cur.cstr()?;
        let data = cur.nullable_bytes()?;
        cur.finish()?;
        Ok(SaslInitialResponse { mechanism, data })
    }
}

/// A SASLResponse (`p` answering AuthenticationSASLContinue): raw mechanism data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SaslResponse<'a> {
    /// The whole body.
    pub data: &'a [u8],
}

impl<'a> SaslResponse<'a> {
    /// Wraps a SASLResponse body. Any bytes are valid, so this never fails; it returns `Result` to
    /// read like the other decoders.
    pub fn decode(body: &'a [u8]) -> Result<Self> {
        Ok(SaslResponse { data: body })
    }
}

/// A FunctionCall (`F`), the legacy fast-path interface. Only the function OID is exposed; sluice
/// just needs to know one is in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FunctionCall {
    /// OID of the function to call.
    pub function_oid: u32,
}

impl FunctionCall {
    /// Decodes a FunctionCall body and checks its whole shape: `u32` OID, `u16` n argument formats,
    /// `u16` m arguments (`i32` length, -1 for NULL, then bytes) with n being 0, 1 or m, an `i16`
    /// result format, nothing after. Argument values are not exposed.
    pub fn decode(body: &[u8]) -> Result<Self> {
        let mut cur = Cursor::new(body, "FunctionCall");
        let function_oid = cur.u32()?;
        let formats = skip_formats(&mut cur)?;
        let args = skip_values(&mut cur)?;
        if formats > 1 && formats != args {
            return Err(cur.malformed());
        }
        cur.i16()?;
        cur.finish()?;
        Ok(FunctionCall { function_oid })
    }
}

/// Describe and Close share a body: kind byte, name, nothing after. PostgreSQL rejects any kind
/// other than `S` and `P` as a protocol violation.
fn decode_kind_name<'a>(body: &'a [u8], what: &'static str) -> Result<(u8, &'a str)> {
    let mut cur = Cursor::new(body, what);
    let kind = cur.u8()?;
    if kind != b'S' && kind != b'P' {
        return Err(cur.malformed());
    }
    let name = cur.cstr()?;
    cur.finish()?;
    Ok((kind, name))
}

/// `u16` count, then that many `i16` format codes. Returns the count.
fn skip_formats(cur: &mut Cursor<'_>) -> Result<u16> {
    let count = cur.u16()?;
    cur.take(usize::from(count) * 2)?;
    Ok(count)
}

/// `u16` count, then that many values (`i32` length, -1 for NULL, then the bytes). Returns the count.
fn skip_values(cur: &mut Cursor<'_>) -> Result<u16> {
    let count = cur.u16()?;
    for _ in 0..count {
        cur.nullable_bytes()?;
    }
    Ok(count)
}

/// A bounds-checked reader over a message body. Every failure is `Malformed { what }` (or
/// `Utf8 { what }`), so decoders read straight-line with `?`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(buf: &'a [u8], what: &'static str) -> Self {
        Cursor { buf, what }
    }

    pub(crate) fn malformed(&self) -> ProtocolError {
        ProtocolError::Malformed { what: self.what }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The next `n` bytes.
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let (head, tail) = self
            .buf
            .split_at_checked(n)
            .ok_or_else(|| self.malformed())?;
        self.buf = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let (head, tail) = self
            .buf
            .split_first_chunk::<N>()
            .ok_or_else(|| self.malformed())?;
        self.buf = tail;
        Ok(*head)
    }

    pub(crate) fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn i16(&mut self) -> Result<i16> {
        self.array().map(i16::from_be_bytes)
    }

    pub(crate) fn u16(&mut self) -> Result<u16> {
        self.array().map(u16::from_be_bytes)
    }

    pub(crate) fn i32(&mut self) -> Result<i32> {
        self.array().map(i32::from_be_bytes)
    }

    pub(crate) fn u32(&mut self) -> Result<u32> {
        self.array().map(u32::from_be_bytes)
    }

    /// A C string's bytes, without the NUL; the NUL is consumed.
    pub(crate) fn cstr_bytes(&mut self) -> Result<&'a [u8]> {
        let end = memchr::memchr(0, self.buf).ok_or_else(|| self.malformed())?;
        let s = self.take(end)?;
        self.take(1)?;
        Ok(s)
    }

    /// A C string that must be UTF-8.
    pub(crate) fn cstr(&mut self) -> Result<&'a str> {
        let s = self.cstr_bytes()?;
        std::str::from_utf8(s).map_err(|_| ProtocolError::Utf8 { what: self.what })
    }

    /// `i32` length, then that many bytes; -1 is `None`, other negative lengths are malformed.
    pub(crate) fn nullable_bytes(&mut self) -> Result<Option<&'a [u8]>> {
        match self.i32()? {
            -1 => Ok(None),
            len => {
                let len = usize::try_from(len).map_err(|_| self.malformed())?;
                self.take(len).map(Some)
            }
        }
    }

    /// Everything left.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    /// Fails unless every byte was consumed.
    pub(crate) fn finish(&self) -> Result<()> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(self.malformed())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framing::split_message;
    use postgres_protocol::IsNull;
    use postgres_protocol::message::frontend as pp;

    /// Splits exactly one message off `buf` and returns its tag and body.
    fn one(buf: &mut BytesMut) -> (u8, bytes::Bytes) {
        let m = split_message(buf, 1 << 20).unwrap().unwrap();
        assert!(buf.is_empty(), "exactly one message was written");
        (m.tag, m.body)
    }

    fn malformed(what: &'static str) -> ProtocolError {
        ProtocolError::Malformed { what }
    }

    #[test]
    fn tags_round_trip() {
        for b in 0..=u8::MAX {
            if let Some(t) = FrontendTag::from_u8(b) {
                assert_eq!(t.as_u8(), b);
            }
        }
        assert_eq!(FrontendTag::from_u8(b'p'), Some(FrontendTag::Password));
        assert_eq!(FrontendTag::from_u8(b'Z'), None);
    }

    #[test]
    fn query() {
        let mut buf = BytesMut::new();
        pp::query("SELECT 1; SELECT 2", &mut buf).unwrap();
        let (tag, body) = one(&mut buf);
        assert_eq!(tag, b'Q');
        assert_eq!(Query::decode(&body).unwrap().sql, "SELECT 1; SELECT 2");
        assert_eq!(Query::decode(b"\0").unwrap().sql, "");
        assert_eq!(Query::decode(b""), Err(malformed("Query")));
        assert_eq!(Query::decode(b"SELECT 1"), Err(malformed("Query")));
        assert_eq!(Query::decode(b"SELECT 1\0x"), Err(malformed("Query")));
        assert_eq!(Query::decode(b"SELECT 1\0\0"), Err(malformed("Query")));
        assert_eq!(
            Query::decode(b"\xff\0"),
            Err(ProtocolError::Utf8 { what: "Query" })
        );
    }

    #[test]
    fn parse_with_and_without_types() {
        let mut buf = BytesMut::new();
        pp::parse("s1", "SELECT $1, $2", [23, 0], &mut buf).unwrap();
        let (tag, body) = one(&mut buf);
        assert_eq!(tag, b'P');
        let p = Parse::decode(&body).unwrap();
        assert_eq!(
            (p.name, p.query, p.param_count()),
            ("s1", "SELECT $1, $2", 2)
        );
        assert_eq!(p.param_types().collect::<Vec<_>>(), [23, 0]);

        let mut ours = BytesMut::new();
        write_parse(p.name, p.query, p.param_types(), &mut ours);
        let mut theirs = BytesMut::new();
        pp::parse("s1", "SELECT $1, $2", [23, 0], &mut theirs).unwrap();
        assert_eq!(ours, theirs);

        assert_eq!(Parse::decode(b"\0SELECT 1\0\0\0").unwrap().param_count(), 0);
        // Count says one type, body has none; count says none, a type follows.
        assert_eq!(Parse::decode(b"\0x\0\0\x01"), Err(malformed("Parse")));
        assert_eq!(
            Parse::decode(b"\0x\0\0\0\0\0\0\x17"),
            Err(malformed("Parse"))
        );
        assert_eq!(Parse::decode(b"\0x\0\0"), Err(malformed("Parse")));
    }

    #[test]
    fn parse_from_a_tail_equals_the_whole_parse() {
        let mut client = BytesMut::new();
        pp::parse("client_name", "SELECT $1", [23], &mut client).unwrap();
        let (_, body) = one(&mut client);
        let (_, tail) = crate::split_cstr(&body).unwrap();
        let mut ours = BytesMut::new();
        write_parse_tail("sluice_7", tail, &mut ours);
        let mut theirs = BytesMut::new();
        pp::parse("sluice_7", "SELECT $1", [23], &mut theirs).unwrap();
        assert_eq!(ours, theirs);
        let (_, body) = one(&mut ours);
        let p = Parse::decode(&body).unwrap();
        assert_eq!((p.name, p.query), ("sluice_7", "SELECT $1"));
    }

    fn pp_bind(
        portal: &str,
        stmt: &str,
        formats: &[i16],
        values: &[Option<&[u8]>],
        results: &[i16],
    ) -> BytesMut {
        let mut buf = BytesMut::new();
        let ser = |v: &Option<&[u8]>, b: &mut BytesMut| match v {
            Some(v) => {
                b.extend_from_slice(v);
                Ok(IsNull::No)
            }
            None => Ok(IsNull::Yes),
        };
        if pp::bind(
            portal,
            stmt,
            formats.iter().copied(),
            values,
            ser,
            results.iter().copied(),
            &mut buf,
        )
        .is_err()
        {
            panic!("postgres-protocol could not write the Bind");
        }
        buf
    }

    #[test]
    fn bind_rename_keeps_the_rest() {
        let values: [Option<&[u8]>; 3] = [Some(b"42"), None, Some(b"")];
        let mut buf = pp_bind("", "s1", &[0], &values, &[1, 0]);
        let (tag, body) = one(&mut buf);
        assert_eq!(tag, b'B');
        let b = Bind::decode(&body).unwrap();
        assert_eq!((b.portal, b.statement), ("", "s1"));
        b.validate_rest().unwrap();

        let mut ours = BytesMut::new();
        Bind::write("p", "sluice_7", b.rest, &mut ours);
        assert_eq!(ours, pp_bind("p", "sluice_7", &[0], &values, &[1, 0]));
    }

    #[test]
    fn bind_rest_shape() {
        let ok = |rest: &[u8]| {
            Bind {
                portal: "",
                statement: "",
                rest,
            }
            .validate_rest()
        };
        ok(b"\0\0\0\0\0\0").unwrap();
        ok(b"\0\x01\0\x01\0\x02\xff\xff\xff\xff\0\0\0\x01x\0\0").unwrap();
        // Two formats for one value.
        assert_eq!(
            ok(b"\0\x02\0\0\0\0\0\x01\0\0\0\0\0\0"),
            Err(malformed("Bind"))
        );
        // A length of -2.
        assert_eq!(
            ok(b"\0\0\0\x01\xff\xff\xff\xfe\0\0"),
            Err(malformed("Bind"))
        );
        // A value longer than the message.
        assert_eq!(ok(b"\0\0\0\x01\0\0\0\x09abc\0\0"), Err(malformed("Bind")));
        // Trailing bytes; missing result format count.
        assert_eq!(ok(b"\0\0\0\0\0\0\0"), Err(malformed("Bind")));
        assert_eq!(ok(b"\0\0\0\0"), Err(malformed("Bind")));
        assert_eq!(Bind::decode(b"portal\0"), Err(malformed("Bind")));
    }

    #[test]
    fn describe_close_execute() {
        let mut buf = BytesMut::new();
        pp::describe(b'S', "s1", &mut buf).unwrap();
        let (tag, body) = one(&mut buf);
        assert_eq!(tag, b'D');
        assert_eq!(
            Describe::decode(&body).unwrap(),
            Describe {
                kind: b'S',
                name: "s1"
            }
        );
        assert_eq!(Describe::decode(b"X\0"), Err(malformed("Describe")));
        assert_eq!(Describe::decode(b""), Err(malformed("Describe")));

        pp::close(b'P', "", &mut buf).unwrap();
        let (tag, body) = one(&mut buf);
        assert_eq!(tag, b'C');
        assert_eq!(
            Close::decode(&body).unwrap(),
            Close {
                kind: b'P',
                name: ""
            }
        );
        assert_eq!(Close::decode(b"Pname"), Err(malformed("Close")));

        pp::execute("p", 100, &mut buf).unwrap();
        let (tag, body) = one(&mut buf);
        assert_eq!(tag, b'E');
        assert_eq!(
            Execute::decode(&body).unwrap(),
            Execute {
                portal: "p",
                max_rows: 100
            }
        );
        assert_eq!(Execute::decode(b"p\0\0\0\0"), Err(malformed("Execute")));

        let mut ours = BytesMut::new();
        let mut theirs = BytesMut::new();
        Describe::write(b'P', "x", &mut ours);
        Close::write(b'S', "y", &mut ours);
        Execute::write("z", 0, &mut ours);
        write_sync(&mut ours);
        write_flush(&mut ours);
        write_terminate(&mut ours);
        write_query("SELECT 1", &mut ours);
        pp::describe(b'P', "x", &mut theirs).unwrap();
        pp::close(b'S', "y", &mut theirs).unwrap();
        pp::execute("z", 0, &mut theirs).unwrap();
        pp::sync(&mut theirs);
        pp::flush(&mut theirs);
        pp::terminate(&mut theirs);
        pp::query("SELECT 1", &mut theirs).unwrap();
        assert_eq!(ours, theirs);
    }

    #[test]
    fn password_family() {
        let mut buf = BytesMut::new();
        pp::password_message(b"md5abc\xff", &mut buf).unwrap();
        let (_, body) = one(&mut buf);
        assert_eq!(
            PasswordMessage::decode(&body).unwrap().password,
            b"md5abc\xff"
        );
        assert_eq!(
            PasswordMessage::decode(b"pw"),
            Err(malformed("PasswordMessage"))
        );

        pp::sasl_initial_response("SCRAM-SHA-256", b"n,,n=,r=abc", &mut buf).unwrap();
        let (_, body) = one(&mut buf);
        let r = SaslInitialResponse::decode(&body).unwrap();
        assert_eq!(
            (r.mechanism, r.data),
            ("SCRAM-SHA-256", Some(&b"n,,n=,r=abc"[..]))
        );
        let r = SaslInitialResponse::decode(b"X\0\xff\xff\xff\xff").unwrap();
        assert_eq!(r.data, None);
        assert_eq!(
            SaslInitialResponse::decode(b"X\0\xff\xff\xff\xff?"),
            Err(malformed("SASLInitialResponse"))
        );
        assert_eq!(
            SaslInitialResponse::decode(b"X\0\xff\xff\xff\xfe"),
            Err(malformed("SASLInitialResponse"))
        );
        assert_eq!(
            SaslInitialResponse::decode(b"X\0\0\0\0\x02a"),
            Err(malformed("SASLInitialResponse"))
        );

        pp::sasl_response(b"c=biws,r=abc,p=xyz", &mut buf).unwrap();
        let (_, body) = one(&mut buf);
        assert_eq!(
            SaslResponse::decode(&body).unwrap().data,
            b"c=biws,r=abc,p=xyz"
        );
    }

    #[test]
    fn copy_fail_and_function_call() {
        let mut buf = BytesMut::new();
        pp::copy_fail("client gave up", &mut buf).unwrap();
        let (tag, body) = one(&mut buf);
        assert_eq!(tag, b'f');
        assert_eq!(CopyFail::decode(&body).unwrap().message, "client gave up");

        // oid 1598, one format (binary), two args (NULL, "ab"), result format 1.
        let body = b"\0\0\x06\x3e\0\x01\0\x01\0\x02\xff\xff\xff\xff\0\0\0\x02ab\0\x01";
        assert_eq!(FunctionCall::decode(body).unwrap().function_oid, 1598);
        assert_eq!(
            FunctionCall::decode(&body[..body.len() - 1]),
            Err(malformed("FunctionCall"))
        );
        assert_eq!(
            FunctionCall::decode(b"\0\0\0\x01"),
            Err(malformed("FunctionCall"))
        );
    }
}
