//! Server→client messages: their tags ([`BackendTag`]) and builders for the ones sluice writes
//! itself.
//!
//! Each function appends one whole message to `out`. Messages relayed from PostgreSQL are never
//! rebuilt: they are forwarded as the bytes PostgreSQL sent. Typed views of server messages live in
//! [`crate::backend_view`].

use bytes::{BufMut, BytesMut};

/// The tag byte of a protocol-3.0 server message. The same byte means a different message in the
/// other direction (`D` is DataRow here, Describe from a client; see
/// [`FrontendTag`](crate::frontend::FrontendTag)), so the two sets are kept apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum BackendTag {
    /// Authentication request or result (`R`).
    Authentication = b'R',
    /// Cancel key of the backend (`K`).
    BackendKeyData = b'K',
    /// Bind succeeded (`2`).
    BindComplete = b'2',
    /// Close succeeded (`3`).
    CloseComplete = b'3',
    /// A statement finished, with its command tag (`C`).
    CommandComplete = b'C',
    /// COPY TO STDOUT data (`d`).
    CopyData = b'd',
    /// End of COPY TO STDOUT data (`c`).
    CopyDone = b'c',
    /// COPY FROM STDIN starts: the server waits for the client's data (`G`).
    CopyInResponse = b'G',
    /// COPY TO STDOUT starts (`H`).
    CopyOutResponse = b'H',
    /// Streaming replication's COPY BOTH starts (`W`).
    CopyBothResponse = b'W',
    /// One result row (`D`).
    DataRow = b'D',
    /// The query string was empty (`I`).
    EmptyQueryResponse = b'I',
    /// An error (`E`).
    ErrorResponse = b'E',
    /// Result of a fast-path FunctionCall (`V`).
    FunctionCallResponse = b'V',
    /// The server supports an older minor protocol version or not all options (`v`).
    NegotiateProtocolVersion = b'v',
    /// Describe found no result rows (`n`).
    NoData = b'n',
    /// A notice or warning (`N`).
    NoticeResponse = b'N',
    /// LISTEN/NOTIFY notification (`A`).
    NotificationResponse = b'A',
    /// Parameter types of a described statement (`t`).
    ParameterDescription = b't',
    /// A run-time parameter's current value (`S`).
    ParameterStatus = b'S',
    /// Parse succeeded (`1`).
    ParseComplete = b'1',
    /// Execute stopped at its row limit (`s`).
    PortalSuspended = b's',
    /// The server is ready for a new request, with its transaction status (`Z`).
    ReadyForQuery = b'Z',
    /// The columns of the rows that follow (`T`).
    RowDescription = b'T',
}

impl BackendTag {
    /// Every server message tag.
    pub const ALL: [BackendTag; 24] = [
        BackendTag::Authentication,
        BackendTag::BackendKeyData,
        BackendTag::BindComplete,
        BackendTag::CloseComplete,
        BackendTag::CommandComplete,
        BackendTag::CopyData,
        BackendTag::CopyDone,
        BackendTag::CopyInResponse,
        BackendTag::CopyOutResponse,
        BackendTag::CopyBothResponse,
        BackendTag::DataRow,
        BackendTag::EmptyQueryResponse,
        BackendTag::ErrorResponse,
        BackendTag::FunctionCallResponse,
        BackendTag::NegotiateProtocolVersion,
        BackendTag::NoData,
        BackendTag::NoticeResponse,
        BackendTag::NotificationResponse,
        BackendTag::ParameterDescription,
        BackendTag::ParameterStatus,
        BackendTag::ParseComplete,
        BackendTag::PortalSuspended,
        BackendTag::ReadyForQuery,
        BackendTag::RowDescription,
    ];

    /// The tag for a byte, or `None` if no server message uses it.
    #[inline]
    pub fn from_u8(tag: u8) -> Option<Self> {
        Some(match tag {
            b'R' => BackendTag::Authentication,
            b'K' => BackendTag::BackendKeyData,
            b'2' => BackendTag::BindComplete,
            b'3' => BackendTag::CloseComplete,
            b'C' => BackendTag::CommandComplete,
            b'd' => BackendTag::CopyData,
            b'c' => BackendTag::CopyDone,
            b'G' => BackendTag::CopyInResponse,
            b'H' => BackendTag::CopyOutResponse,
            b'W' => BackendTag::CopyBothResponse,
            b'D' => BackendTag::DataRow,
            b'I' => BackendTag::EmptyQueryResponse,
            b'E' => BackendTag::ErrorResponse,
            b'V' => BackendTag::FunctionCallResponse,
            b'v' => BackendTag::NegotiateProtocolVersion,
            b'n' => BackendTag::NoData,
            b'N' => BackendTag::NoticeResponse,
            b'A' => BackendTag::NotificationResponse,
            b't' => BackendTag::ParameterDescription,
            b'S' => BackendTag::ParameterStatus,
            b'1' => BackendTag::ParseComplete,
            b's' => BackendTag::PortalSuspended,
            b'Z' => BackendTag::ReadyForQuery,
            b'T' => BackendTag::RowDescription,
            _ => return None,
        })
    }

    /// The tag byte on the wire.
    #[inline]
    pub const fn as_u8(self) -> u8 {
        self as u8
    }

    /// The message name, for logs.
    pub fn name(self) -> &'static str {
        match self {
            BackendTag::Authentication => "Authentication",
            BackendTag::BackendKeyData => "BackendKeyData",
            BackendTag::BindComplete => "BindComplete",
            BackendTag::CloseComplete => "CloseComplete",
            BackendTag::CommandComplete => "CommandComplete",
            BackendTag::CopyData => "CopyData",
            BackendTag::CopyDone => "CopyDone",
            BackendTag::CopyInResponse => "CopyInResponse",
            BackendTag::CopyOutResponse => "CopyOutResponse",
            BackendTag::CopyBothResponse => "CopyBothResponse",
            BackendTag::DataRow => "DataRow",
            BackendTag::EmptyQueryResponse => "EmptyQueryResponse",
            BackendTag::ErrorResponse => "ErrorResponse",
            BackendTag::FunctionCallResponse => "FunctionCallResponse",
            BackendTag::NegotiateProtocolVersion => "NegotiateProtocolVersion",
            BackendTag::NoData => "NoData",
            BackendTag::NoticeResponse => "NoticeResponse",
            BackendTag::NotificationResponse => "NotificationResponse",
            BackendTag::ParameterDescription => "ParameterDescription",
            BackendTag::ParameterStatus => "ParameterStatus",
            BackendTag::ParseComplete => "ParseComplete",
            BackendTag::PortalSuspended => "PortalSuspended",
            BackendTag::ReadyForQuery => "ReadyForQuery",
            BackendTag::RowDescription => "RowDescription",
        }
    }
}

/// Appends `tag`, a length placeholder, runs `body`, then patches the length.
#[inline]
pub fn write_message(out: &mut BytesMut, tag: u8, body: impl FnOnce(&mut BytesMut)) {
    let start = out.len();
    out.put_u8(tag);
    out.put_i32(0);
    body(out);
    let len = (out.len() - start - 1) as i32;
    out[start + 1..start + 5].copy_from_slice(&len.to_be_bytes());
}

#[inline]
pub fn put_cstr(out: &mut BytesMut, s: &[u8]) {
    out.extend_from_slice(s);
    out.put_u8(0);
}

pub fn authentication_ok(out: &mut BytesMut) {
    write_message(out, b'R', |b| b.put_i32(0));
}

pub fn authentication_cleartext_password(out: &mut BytesMut) {
    write_message(out, b'R', |b| b.put_i32(3));
}

pub fn authentication_md5_password(salt: [u8; 4], out: &mut BytesMut) {
    write_message(out, b'R', |b| {
        b.put_i32(5);
        b.extend_from_slice(&salt);
    });
}

pub fn authentication_sasl(mechanisms: &[&str], out: &mut BytesMut) {
    write_message(out, b'R', |b| {
        b.put_i32(10);
        for m in mechanisms {
            put_cstr(b, m.as_bytes());
        }
        b.put_u8(0);
    });
}

pub fn authentication_sasl_continue(data: &[u8], out: &mut BytesMut) {
    write_message(out, b'R', |b| {
        b.put_i32(11);
        b.extend_from_slice(data);
    });
}

pub fn authentication_sasl_final(data: &[u8], out: &mut BytesMut) {
    write_message(out, b'R', |b| {
        b.put_i32(12);
        b.extend_from_slice(data);
    });
}

pub fn parameter_status(name: &str, value: &str, out: &mut BytesMut) {
    write_message(out, b'S', |b| {
        put_cstr(b, name.as_bytes());
        put_cstr(b, value.as_bytes());
    });
}

pub fn backend_key_data(pid: i32, key: i32, out: &mut BytesMut) {
    write_message(out, b'K', |b| {
        b.put_i32(pid);
        b.put_i32(key);
    });
}

/// `status` is `b'I'` (idle), `b'T'` (in a transaction) or `b'E'` (in a failed transaction).
pub fn ready_for_query(status: u8, out: &mut BytesMut) {
    write_message(out, b'Z', |b| b.put_u8(status));
}

pub fn command_complete(tag: &str, out: &mut BytesMut) {
    write_message(out, b'C', |b| put_cstr(b, tag.as_bytes()));
}

pub fn empty_query_response(out: &mut BytesMut) {
    write_message(out, b'I', |_| {});
}

pub fn parse_complete(out: &mut BytesMut) {
    write_message(out, b'1', |_| {});
}

pub fn bind_complete(out: &mut BytesMut) {
    write_message(out, b'2', |_| {});
}

pub fn close_complete(out: &mut BytesMut) {
    write_message(out, b'3', |_| {});
}

pub fn no_data(out: &mut BytesMut) {
    write_message(out, b'n', |_| {});
}

pub fn parameter_description(types: &[u32], out: &mut BytesMut) {
    write_message(out, b't', |b| {
        b.put_i16(types.len() as i16);
        for t in types {
            b.put_u32(*t);
        }
    });
}

/// One column of a RowDescription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldDescription<'a> {
    pub name: &'a str,
    pub table_oid: u32,
    pub column: i16,
    pub type_oid: u32,
    pub type_size: i16,
    pub type_modifier: i32,
    /// 0 text, 1 binary.
    pub format: i16,
}

impl<'a> FieldDescription<'a> {
    /// A text-format column not tied to a table, as the admin console returns them.
    pub fn text(name: &'a str, type_oid: u32) -> Self {
        let type_size = match type_oid {
            20 => 8,  // int8
            23 => 4,  // int4
            701 => 8, // float8
            _ => -1,
        };
        FieldDescription {
            name,
            table_oid: 0,
            column: 0,
            type_oid,
            type_size,
            type_modifier: -1,
            format: 0,
        }
    }
}

pub fn row_description(fields: &[FieldDescription<'_>], out: &mut BytesMut) {
    write_message(out, b'T', |b| {
        b.put_i16(fields.len() as i16);
        for f in fields {
            put_cstr(b, f.name.as_bytes());
            b.put_u32(f.table_oid);
            b.put_i16(f.column);
            b.put_u32(f.type_oid);
            b.put_i16(f.type_size);
            b.put_i32(f.type_modifier);
            b.put_i16(f.format);
        }
    });
}

/// A DataRow; `None` is SQL NULL.
pub fn data_row<'a>(values: impl IntoIterator<Item = Option<&'a [u8]>>, out: &mut BytesMut) {
    write_message(out, b'D', |b| {
        let count_at = b.len();
        b.put_i16(0);
        let mut n: i16 = 0;
        for v in values {
            n += 1;
            match v {
                None => b.put_i32(-1),
                Some(v) => {
                    b.put_i32(v.len() as i32);
                    b.extend_from_slice(v);
                }
            }
        }
        b[count_at..count_at + 2].copy_from_slice(&n.to_be_bytes());
    });
}

/// Severity of an ErrorResponse or NoticeResponse, as PostgreSQL spells it in field `S` and `V`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Fatal,
    Panic,
    Warning,
    Notice,
    Debug,
    Info,
    Log,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "ERROR",
            Severity::Fatal => "FATAL",
            Severity::Panic => "PANIC",
            Severity::Warning => "WARNING",
            Severity::Notice => "NOTICE",
            Severity::Debug => "DEBUG",
            Severity::Info => "INFO",
            Severity::Log => "LOG",
        }
    }
}

/// An ErrorResponse or NoticeResponse that sluice raises itself.
///
/// ```
/// # use sluice_proto::backend::{ErrorResponse, Severity};
/// let mut out = bytes::BytesMut::new();
/// ErrorResponse::new(Severity::Fatal, "3D000", "database \"x\" does not exist").write(&mut out);
/// assert_eq!(out[0], b'E');
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorResponse {
    pub severity: Severity,
    pub code: String,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

impl ErrorResponse {
    pub fn new(severity: Severity, code: &str, message: impl Into<String>) -> Self {
        ErrorResponse {
            severity,
            code: code.to_owned(),
            message: message.into(),
            detail: None,
            hint: None,
        }
    }

    pub fn error(code: &str, message: impl Into<String>) -> Self {
        Self::new(Severity::Error, code, message)
    }

    pub fn fatal(code: &str, message: impl Into<String>) -> Self {
        Self::new(Severity::Fatal, code, message)
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Writes it as an ErrorResponse ('E').
    pub fn write(&self, out: &mut BytesMut) {
        self.write_tagged(b'E', out)
    }

    /// Writes it as a NoticeResponse ('N').
    pub fn write_notice(&self, out: &mut BytesMut) {
        self.write_tagged(b'N', out)
    }

    fn write_tagged(&self, tag: u8, out: &mut BytesMut) {
        write_message(out, tag, |b| {
            let sev = self.severity.as_str().as_bytes();
            b.put_u8(b'S');
            put_cstr(b, sev);
            b.put_u8(b'V');
            put_cstr(b, sev);
            b.put_u8(b'C');
            put_cstr(b, self.code.as_bytes());
            b.put_u8(b'M');
            put_cstr(b, self.message.as_bytes());
            if let Some(d) = &self.detail {
                b.put_u8(b'D');
                put_cstr(b, d.as_bytes());
            }
            if let Some(h) = &self.hint {
                b.put_u8(b'H');
                put_cstr(b, h.as_bytes());
            }
            b.put_u8(0);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fallible_iterator::FallibleIterator;
    use postgres_protocol::message::backend::Message;

    fn parse_one(buf: &mut BytesMut) -> Message {
        let m = Message::parse(buf).unwrap().unwrap();
        assert!(buf.is_empty(), "exactly one message was written");
        m
    }

    #[test]
    fn backend_tags_round_trip_and_match_postgres_protocol() {
        use postgres_protocol::message::backend as pp;
        let mut seen = std::collections::HashSet::new();
        for t in BackendTag::ALL {
            assert_eq!(BackendTag::from_u8(t.as_u8()), Some(t));
            assert!(seen.insert(t.as_u8()), "{} twice", t.name());
        }
        let count = (0..=u8::MAX)
            .filter(|b| BackendTag::from_u8(*b).is_some())
            .count();
        assert_eq!(count, BackendTag::ALL.len());
        for (t, theirs) in [
            (BackendTag::Authentication, pp::AUTHENTICATION_TAG),
            (BackendTag::BackendKeyData, pp::BACKEND_KEY_DATA_TAG),
            (BackendTag::BindComplete, pp::BIND_COMPLETE_TAG),
            (BackendTag::CloseComplete, pp::CLOSE_COMPLETE_TAG),
            (BackendTag::CommandComplete, pp::COMMAND_COMPLETE_TAG),
            (BackendTag::CopyData, pp::COPY_DATA_TAG),
            (BackendTag::CopyDone, pp::COPY_DONE_TAG),
            (BackendTag::CopyInResponse, pp::COPY_IN_RESPONSE_TAG),
            (BackendTag::CopyOutResponse, pp::COPY_OUT_RESPONSE_TAG),
            (BackendTag::DataRow, pp::DATA_ROW_TAG),
            (BackendTag::EmptyQueryResponse, pp::EMPTY_QUERY_RESPONSE_TAG),
            (BackendTag::ErrorResponse, pp::ERROR_RESPONSE_TAG),
            (BackendTag::NoData, pp::NO_DATA_TAG),
            (BackendTag::NoticeResponse, pp::NOTICE_RESPONSE_TAG),
            (
                BackendTag::NotificationResponse,
                pp::NOTIFICATION_RESPONSE_TAG,
            ),
            (
                BackendTag::ParameterDescription,
                pp::PARAMETER_DESCRIPTION_TAG,
            ),
            (BackendTag::ParameterStatus, pp::PARAMETER_STATUS_TAG),
            (BackendTag::ParseComplete, pp::PARSE_COMPLETE_TAG),
            (BackendTag::PortalSuspended, pp::PORTAL_SUSPENDED_TAG),
            (BackendTag::ReadyForQuery, pp::READY_FOR_QUERY_TAG),
            (BackendTag::RowDescription, pp::ROW_DESCRIPTION_TAG),
        ] {
            assert_eq!(t.as_u8(), theirs, "{}", t.name());
        }
        // Same byte, other direction.
        assert_eq!(BackendTag::from_u8(b'D'), Some(BackendTag::DataRow));
        assert_eq!(
            crate::frontend::FrontendTag::from_u8(b'D'),
            Some(crate::frontend::FrontendTag::Describe)
        );
        assert_eq!(BackendTag::from_u8(b'Q'), None);
        // What the writers here write is tagged as the enum says.
        let mut b = BytesMut::new();
        ready_for_query(b'I', &mut b);
        assert_eq!(BackendTag::from_u8(b[0]), Some(BackendTag::ReadyForQuery));
    }

    #[test]
    fn written_messages_parse_with_postgres_protocol() {
        let mut b = BytesMut::new();
        ready_for_query(b'T', &mut b);
        assert!(matches!(parse_one(&mut b), Message::ReadyForQuery(r) if r.status() == b'T'));
        parameter_status("TimeZone", "UTC", &mut b);
        match parse_one(&mut b) {
            Message::ParameterStatus(p) => {
                assert_eq!(p.name().unwrap(), "TimeZone");
                assert_eq!(p.value().unwrap(), "UTC");
            }
            _ => panic!("not a ParameterStatus"),
        }
        backend_key_data(7, -9, &mut b);
        assert!(
            matches!(parse_one(&mut b), Message::BackendKeyData(k) if k.process_id() == 7 && k.secret_key() == -9)
        );
        authentication_md5_password([1, 2, 3, 4], &mut b);
        assert!(
            matches!(parse_one(&mut b), Message::AuthenticationMd5Password(m) if m.salt() == [1, 2, 3, 4])
        );
        command_complete("SELECT 1", &mut b);
        assert!(
            matches!(parse_one(&mut b), Message::CommandComplete(c) if c.tag().unwrap() == "SELECT 1")
        );
        data_row([Some(&b"ab"[..]), None], &mut b);
        match parse_one(&mut b) {
            Message::DataRow(r) => assert_eq!(r.ranges().count().unwrap(), 2),
            _ => panic!("not a DataRow"),
        }
    }

    #[test]
    fn error_response_fields() {
        let mut b = BytesMut::new();
        ErrorResponse::error("57014", "canceled")
            .hint("retry")
            .write(&mut b);
        match parse_one(&mut b) {
            Message::ErrorResponse(e) => {
                let fields: Vec<(u8, String)> = e
                    .fields()
                    .map(|f| {
                        Ok((
                            f.type_(),
                            String::from_utf8_lossy(f.value_bytes()).into_owned(),
                        ))
                    })
                    .collect()
                    .unwrap();
                assert_eq!(
                    fields,
                    vec![
                        (b'S', "ERROR".into()),
                        (b'V', "ERROR".into()),
                        (b'C', "57014".into()),
                        (b'M', "canceled".into()),
                        (b'H', "retry".into())
                    ]
                );
            }
            _ => panic!("not an ErrorResponse"),
        }
    }
}
