//! Target `startup`: the untagged packets a client sends first (SSLRequest, GSSENCRequest,
//! CancelRequest, StartupMessage), split off a stream with `split_startup` until it waits or refuses.
//!
//! Invariants: a packet is split off only whole, between 8 bytes and `MAX_STARTUP_LEN`, and
//! re-encodes to exactly its bytes (with `write_startup`, `write_cancel` and postgres-protocol's
//! `ssl_request`); an incomplete packet is left in place; each error matches the length field or
//! the packet; the NegotiateProtocolVersion sluice writes for a newer minor version or `_pq_.`
//! options frames correctly.

use bytes::{Buf, BytesMut};
use sluice_proto::startup::{self, GSSENC_REQUEST_CODE, StartupPacket, split_startup};
use sluice_proto::{MAX_STARTUP_LEN, ProtocolError, split_message};

pub fn run(data: &[u8]) {
    let mut buf = BytesMut::from(data);
    loop {
        let before = buf.clone();
        let declared = before
            .get(..4)
            .map(|l| i32::from_be_bytes([l[0], l[1], l[2], l[3]]));
        match split_startup(&mut buf) {
            Ok(Some(packet)) => {
                let used = before.len() - buf.len();
                assert_eq!(
                    Some(used),
                    declared.map(|l| l as usize),
                    "split off its own length"
                );
                assert!((8..=MAX_STARTUP_LEN).contains(&used));
                assert_eq!(&before[used..], &buf[..], "only the packet was taken");
                check_packet(&packet, &before[..used]);
            }
            Ok(None) => {
                assert_eq!(buf, before, "an incomplete packet is left in place");
                if let Some(len) = declared {
                    assert!((8..=MAX_STARTUP_LEN as i32).contains(&len));
                    assert!(
                        len as usize > before.len(),
                        "a whole packet was not split off"
                    );
                }
                return;
            }
            Err(e) => {
                check_error(&e, &before);
                return;
            }
        }
    }
}

fn check_error(e: &ProtocolError, buf: &[u8]) {
    let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    match *e {
        ProtocolError::BadLength { len: l } => assert!(len < 8 && l == i64::from(len)),
        ProtocolError::TooLarge { len: l, max } => {
            assert!(max == MAX_STARTUP_LEN && len >= 8 && l == len as usize && l > max)
        }
        // Only a whole packet is looked into.
        ProtocolError::Malformed { .. }
        | ProtocolError::Utf8 { .. }
        | ProtocolError::UnsupportedProtocol { .. } => {
            assert!(len >= 8 && len as usize <= buf.len().min(MAX_STARTUP_LEN))
        }
        ProtocolError::UnknownTag { .. } => panic!("{e:?} from split_startup"),
    }
    if let ProtocolError::UnsupportedProtocol { major, minor } = *e {
        let code = i32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
        assert_eq!((u32::from(major) << 16) | u32::from(minor), code as u32);
        assert_ne!(major, 3);
    }
}

fn check_packet(packet: &StartupPacket, wire: &[u8]) {
    let mut out = BytesMut::new();
    match packet {
        StartupPacket::SslRequest => postgres_protocol::message::frontend::ssl_request(&mut out),
        StartupPacket::GssEncRequest => {
            out.extend_from_slice(&8i32.to_be_bytes());
            out.extend_from_slice(&GSSENC_REQUEST_CODE.to_be_bytes());
        }
        StartupPacket::Cancel { pid, key } => startup::write_cancel(*pid, *key, &mut out),
        StartupPacket::Startup {
            major,
            minor,
            params,
        } => {
            assert_eq!(*major, 3);
            for (name, value) in params {
                assert!(!name.is_empty(), "an empty name ends the list");
                assert!(!name.contains('\0') && !value.contains('\0'));
            }
            if let Some((name, value)) = params.first() {
                let first = params.iter().find(|(k, _)| k == name).map(|(_, v)| v);
                assert_eq!(packet.param(name), first.map(String::as_str));
                assert!(first == Some(value));
            }
            let pairs: Vec<(&str, &str)> = params
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            startup::write_startup(&pairs, &mut out);
            // write_startup speaks 3.0; the client may have asked for a later minor version.
            out[6..8].copy_from_slice(&minor.to_be_bytes());
            check_negotiation(*minor, params);
        }
    }
    assert_eq!(&out[..], wire, "{packet:?} re-encodes to its bytes");
}

/// What sluice answers a newer minor version or unknown `_pq_.` options with frames as one 'v'
/// message listing exactly those options.
fn check_negotiation(minor: u16, params: &[(String, String)]) {
    let unknown: Vec<&str> = params
        .iter()
        .filter(|(k, _)| k.starts_with("_pq_."))
        .map(|(k, _)| k.as_str())
        .collect();
    if minor == 0 && unknown.is_empty() {
        return;
    }
    let mut out = BytesMut::new();
    startup::write_negotiate_protocol_version(0, &unknown, &mut out);
    let m = split_message(&mut out, usize::MAX).unwrap().unwrap();
    assert!(out.is_empty());
    assert_eq!(m.tag, b'v');
    let mut body = m.body;
    assert_eq!(body.get_i32(), 3 << 16);
    assert_eq!(body.get_i32() as usize, unknown.len());
    for opt in unknown {
        assert_eq!(&body[..opt.len()], opt.as_bytes());
        assert_eq!(body[opt.len()], 0);
        body.advance(opt.len() + 1);
    }
    assert!(body.is_empty());
}
