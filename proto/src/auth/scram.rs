//! SCRAM-SHA-256 (RFC 5802, RFC 7677), server side. (Being written.)

/// A parsed `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` secret.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramVerifier {
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub stored_key: [u8; 32],
    pub server_key: [u8; 32],
}

impl ScramVerifier {
    pub fn parse(s: &str) -> Option<ScramVerifier> {
        let _ = s;
        todo!()
    }
    pub fn from_password(password: &str) -> ScramVerifier {
        let _ = password;
        todo!()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error("x")]
    InvalidProof,
}

pub struct ScramServer {}
