//! Splitting a byte stream into tagged messages.
//!
//! Every tagged message is `tag: u8, len: i32 (counting itself), body: len - 4 bytes`. The check
//! ([`Header::parse`]) is separate from the split ([`split_message`]), so a relay can look at a header
//! and forward a large message in pieces without ever holding it whole.

use bytes::{Buf, Bytes, BytesMut};

use crate::error::{ProtocolError, Result};

/// The five bytes in front of every tagged message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub tag: u8,
    /// Length of the body, without the tag and the length field.
    pub body_len: usize,
}

impl Header {
    pub const LEN: usize = 5;

    /// Reads a header from the front of `buf`. `Ok(None)` when fewer than five bytes are there.
    /// The length is checked against `max` (for the body) and for sanity; nothing is allocated.
    pub fn parse(buf: &[u8], max: usize) -> Result<Option<Header>> {
        if buf.len() < Self::LEN {
            return Ok(None);
        }
        let len = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
        if len < 4 {
            return Err(ProtocolError::BadLength { len: len as i64 });
        }
        let body_len = len as usize - 4;
        if body_len > max {
            return Err(ProtocolError::TooLarge { len: body_len, max });
        }
        Ok(Some(Header {
            tag: buf[0],
            body_len,
        }))
    }

    /// The whole message length on the wire, header included.
    pub fn wire_len(&self) -> usize {
        self.body_len + Self::LEN
    }
}

/// One whole message: its tag and its body (without tag and length), sharing the read buffer's memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMessage {
    pub tag: u8,
    pub body: Bytes,
}

impl RawMessage {
    /// Writes the message back in wire format.
    pub fn write(&self, out: &mut BytesMut) {
        out.reserve(self.body.len() + Header::LEN);
        out.extend_from_slice(&[self.tag]);
        out.extend_from_slice(&((self.body.len() + 4) as i32).to_be_bytes());
        out.extend_from_slice(&self.body);
    }
}

/// Splits one whole message off the front of `buf` without copying its body.
/// `Ok(None)` means "not complete yet, read more"; the buffer is left untouched then.
pub fn split_message(buf: &mut BytesMut, max: usize) -> Result<Option<RawMessage>> {
    let Some(header) = Header::parse(buf, max)? else {
        return Ok(None);
    };
    if buf.len() < header.wire_len() {
        return Ok(None);
    }
    buf.advance(Header::LEN);
    let body = buf.split_to(header.body_len).freeze();
    Ok(Some(RawMessage {
        tag: header.tag,
        body,
    }))
}

/// Splits a C string off the front of `b`: (its bytes without the NUL, what follows the NUL).
/// `None` when there is no NUL. For walking a message body one name at a time without the
/// checks a typed view makes (a relay renaming a statement keeps the rest as it is).
#[inline]
pub fn split_cstr(b: &[u8]) -> Option<(&[u8], &[u8])> {
    // A plain scan, not memchr: the strings split here are names, mostly a few bytes long,
    // where memchr's set-up costs more than it saves (callgrind: ~200 instructions per
    // extended-protocol transaction).
    let end = b.iter().position(|&c| c == 0)?;
    Some((&b[..end], &b[end + 1..]))
}

/// [`split_cstr`] for a SQL text (a Query's body): found with memchr, which pays for itself on
/// texts of more than a few bytes (callgrind: a plain scan of pgbench's 57-byte SELECT cost
/// about 250 instructions).
#[inline]
pub fn split_sql(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = memchr::memchr(0, b)?;
    Some((&b[..end], &b[end + 1..]))
}

/// Scans `buf` from the start and returns how many bytes form whole messages, ending right after
/// the first message whose tag is `stop` (for a server batch: `b'Z'`, ReadyForQuery), or after the
/// last whole message when there is none. Lets a relay forward a whole batch in one write, as
/// tokio-postgres' codec does.
pub fn scan_until(buf: &[u8], stop: u8, max: usize) -> Result<(usize, bool)> {
    let mut pos = 0;
    while let Some(header) = Header::parse(&buf[pos..], max)? {
        if buf.len() - pos < header.wire_len() {
            break;
        }
        pos += header.wire_len();
        if header.tag == stop {
            return Ok((pos, true));
        }
    }
    Ok((pos, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_whole_messages_and_waits_for_partial_ones() {
        let mut buf = BytesMut::from(&b"Z\0\0\0\x05IQ\0\0\0\x0bSEL"[..]);
        let m = split_message(&mut buf, 100).unwrap().unwrap();
        assert_eq!(m.tag, b'Z');
        assert_eq!(&m.body[..], b"I");
        assert_eq!(split_message(&mut buf, 100).unwrap(), None);
        assert_eq!(buf.len(), 8, "a partial message is left in place");
        buf.extend_from_slice(b"ECT\0");
        let m = split_message(&mut buf, 100).unwrap().unwrap();
        assert_eq!((m.tag, &m.body[..]), (b'Q', &b"SELECT\0"[..]));
        assert!(buf.is_empty());
    }

    #[test]
    fn a_length_over_the_cap_is_an_error_before_any_body_arrives() {
        let mut buf = BytesMut::from(&b"Q\x7f\xff\xff\xff"[..]);
        assert_eq!(
            split_message(&mut buf, 1024),
            Err(ProtocolError::TooLarge {
                len: 0x7fff_fffb,
                max: 1024
            })
        );
    }

    #[test]
    fn a_length_below_four_is_an_error() {
        let mut buf = BytesMut::from(&b"Q\0\0\0\x03"[..]);
        assert_eq!(
            split_message(&mut buf, 1024),
            Err(ProtocolError::BadLength { len: 3 })
        );
        let mut buf = BytesMut::from(&b"Q\xff\xff\xff\xff"[..]);
        assert_eq!(
            split_message(&mut buf, 1024),
            Err(ProtocolError::BadLength { len: -1 })
        );
    }

    #[test]
    fn cstr_split() {
        assert_eq!(split_cstr(b"s1\0rest"), Some((&b"s1"[..], &b"rest"[..])));
        assert_eq!(split_cstr(b"\0"), Some((&b""[..], &b""[..])));
        assert_eq!(split_cstr(b"a\0b\0"), Some((&b"a"[..], &b"b\0"[..])));
        assert_eq!(split_cstr(b"no nul"), None);
        assert_eq!(split_cstr(b""), None);
    }

    #[test]
    fn scan_stops_after_ready_for_query() {
        let buf = b"C\0\0\0\x0dSELECT 1\0Z\0\0\0\x05IC\0\0";
        assert_eq!(scan_until(buf, b'Z', 100).unwrap(), (20, true));
        assert_eq!(scan_until(&buf[..16], b'Z', 100).unwrap(), (14, false));
        assert_eq!(scan_until(&buf[..10], b'Z', 100).unwrap(), (0, false));
    }
}
