//! Errors from decoding bytes. "Not enough bytes yet" is never an error: it is `Ok(None)`.

/// A protocol violation found while decoding. Each one means the peer is broken or hostile; the
/// connection that sent it should get an 08P01 error and be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// The length field announces a message larger than the configured cap.
    #[error("message of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    /// The length field is smaller than the length field itself.
    #[error("invalid message length {len}")]
    BadLength { len: i64 },
    /// A tag that is not valid in this direction or state.
    #[error("unexpected message type 0x{tag:02x}")]
    UnknownTag { tag: u8 },
    /// The body does not have the shape the message type requires.
    #[error("malformed {what} message")]
    Malformed { what: &'static str },
    /// A string that must be UTF-8 is not.
    #[error("invalid UTF-8 in {what}")]
    Utf8 { what: &'static str },
    /// A startup packet with a protocol version sluice does not speak.
    #[error("unsupported frontend protocol {major}.{minor}")]
    UnsupportedProtocol { major: u16, minor: u16 },
}

pub type Result<T, E = ProtocolError> = std::result::Result<T, E>;
