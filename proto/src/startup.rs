//! The untagged packets a client may send first: `len: i32, code: i32, ...`.
//!
//! A connection starts with at most one SSLRequest or GSSENCRequest (answered with a single byte),
//! then a StartupMessage; or it is a CancelRequest and nothing else.

use bytes::{Buf, BufMut, BytesMut};

use crate::MAX_STARTUP_LEN;
use crate::error::{ProtocolError, Result};

pub const SSL_REQUEST_CODE: i32 = 80877103;
pub const GSSENC_REQUEST_CODE: i32 = 80877104;
pub const CANCEL_REQUEST_CODE: i32 = 80877102;
/// Protocol 3.0, the version sluice speaks on both sides.
pub const PROTOCOL_3_0: i32 = 196608;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupPacket {
    /// A StartupMessage. `params` keeps the client's order; `user` is required by PostgreSQL.
    Startup {
        major: u16,
        minor: u16,
        params: Vec<(String, String)>,
    },
    SslRequest,
    GssEncRequest,
    /// A CancelRequest carrying the key from our BackendKeyData (protocol 3.0: four bytes).
    Cancel {
        pid: i32,
        key: i32,
    },
}

impl StartupPacket {
    /// The value of a StartupMessage parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        match self {
            StartupPacket::Startup { params, .. } => params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str()),
            _ => None,
        }
    }
}

/// Splits one startup-phase packet off `buf`. `Ok(None)` until it is complete.
pub fn split_startup(buf: &mut BytesMut) -> Result<Option<StartupPacket>> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if len < 8 {
        return Err(ProtocolError::BadLength { len: len as i64 });
    }
    let len = len as usize;
    if len > MAX_STARTUP_LEN {
        return Err(ProtocolError::TooLarge {
            len,
            max: MAX_STARTUP_LEN,
        });
    }
    if buf.len() < len {
        return Ok(None);
    }
    let mut packet = buf.split_to(len);
    packet.advance(4);
    let code = packet.get_i32();
    let packet = match code {
        SSL_REQUEST_CODE | GSSENC_REQUEST_CODE if !packet.is_empty() => {
            return Err(ProtocolError::Malformed { what: "SSLRequest" });
        }
        SSL_REQUEST_CODE => StartupPacket::SslRequest,
        GSSENC_REQUEST_CODE => StartupPacket::GssEncRequest,
        CANCEL_REQUEST_CODE => {
            if packet.len() != 8 {
                return Err(ProtocolError::Malformed {
                    what: "CancelRequest",
                });
            }
            StartupPacket::Cancel {
                pid: packet.get_i32(),
                key: packet.get_i32(),
            }
        }
        version => {
            let major = (version >> 16) as u16;
            let minor = (version & 0xffff) as u16;
            if major != 3 {
                return Err(ProtocolError::UnsupportedProtocol { major, minor });
            }
            StartupPacket::Startup {
                major,
                minor,
                params: parse_params(&packet)?,
            }
        }
    };
    Ok(Some(packet))
}

/// `name\0value\0 ... \0`
fn parse_params(mut body: &[u8]) -> Result<Vec<(String, String)>> {
    const WHAT: &str = "StartupMessage";
    let mut params = Vec::new();
    loop {
        let name = take_cstr(&mut body, WHAT)?;
        if name.is_empty() {
            break;
        }
        let value = take_cstr(&mut body, WHAT)?;
        params.push((name.to_owned(), value.to_owned()));
    }
    if !body.is_empty() {
        return Err(ProtocolError::Malformed { what: WHAT });
    }
    Ok(params)
}

fn take_cstr<'a>(body: &mut &'a [u8], what: &'static str) -> Result<&'a str> {
    let end = memchr::memchr(0, body).ok_or(ProtocolError::Malformed { what })?;
    let s = std::str::from_utf8(&body[..end]).map_err(|_| ProtocolError::Utf8 { what })?;
    *body = &body[end + 1..];
    Ok(s)
}

/// Writes a StartupMessage (protocol 3.0) with the given parameters.
pub fn write_startup(params: &[(&str, &str)], out: &mut BytesMut) {
    let start = out.len();
    out.put_i32(0);
    out.put_i32(PROTOCOL_3_0);
    for (k, v) in params {
        put_cstr(out, k);
        put_cstr(out, v);
    }
    out.put_u8(0);
    let len = (out.len() - start) as i32;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

/// Writes a CancelRequest.
pub fn write_cancel(pid: i32, key: i32, out: &mut BytesMut) {
    out.put_i32(16);
    out.put_i32(CANCEL_REQUEST_CODE);
    out.put_i32(pid);
    out.put_i32(key);
}

/// Writes a NegotiateProtocolVersion ('v'): the newest minor version of protocol 3 we speak and the
/// `_pq_.` options we did not recognise.
pub fn write_negotiate_protocol_version(minor: i32, unrecognized: &[&str], out: &mut BytesMut) {
    let start = out.len();
    out.put_u8(b'v');
    out.put_i32(0);
    out.put_i32((3 << 16) | minor);
    out.put_i32(unrecognized.len() as i32);
    for opt in unrecognized {
        put_cstr(out, opt);
    }
    let len = (out.len() - start - 1) as i32;
    out[start + 1..start + 5].copy_from_slice(&len.to_be_bytes());
}

fn put_cstr(out: &mut BytesMut, s: &str) {
    out.extend_from_slice(s.as_bytes());
    out.put_u8(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_round_trips() {
        let mut buf = BytesMut::new();
        write_startup(
            &[
                ("user", "app"),
                ("database", "db"),
                ("application_name", "x"),
            ],
            &mut buf,
        );
        let p = split_startup(&mut buf).unwrap().unwrap();
        assert_eq!(p.param("user"), Some("app"));
        assert_eq!(p.param("database"), Some("db"));
        assert!(
            matches!(p, StartupPacket::Startup { major: 3, minor: 0, ref params } if params.len() == 3)
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn ssl_and_cancel_requests() {
        let mut buf = BytesMut::new();
        postgres_protocol::message::frontend::ssl_request(&mut buf);
        write_cancel(42, -7, &mut buf);
        assert_eq!(
            split_startup(&mut buf).unwrap(),
            Some(StartupPacket::SslRequest)
        );
        assert_eq!(
            split_startup(&mut buf).unwrap(),
            Some(StartupPacket::Cancel { pid: 42, key: -7 })
        );
    }

    #[test]
    fn incomplete_oversized_and_malformed_packets() {
        let mut buf = BytesMut::from(&b"\0\0\0\x10\0\x03"[..]);
        assert_eq!(split_startup(&mut buf).unwrap(), None);
        let mut buf = BytesMut::from(&b"\x7f\0\0\0\0\x03\0\0"[..]);
        assert!(matches!(
            split_startup(&mut buf),
            Err(ProtocolError::TooLarge { .. })
        ));
        let mut buf = BytesMut::from(&b"\0\0\0\x0c\0\x03\0\0user"[..]);
        assert!(matches!(
            split_startup(&mut buf),
            Err(ProtocolError::Malformed { .. })
        ));
        let mut buf = BytesMut::from(&b"\0\0\0\x08\0\x02\0\0"[..]);
        assert!(matches!(
            split_startup(&mut buf),
            Err(ProtocolError::UnsupportedProtocol { major: 2, .. })
        ));
    }
}
