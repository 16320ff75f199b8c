//! md5 password authentication, server side. (Being written.)
use super::PasswordSecret;

/// Checks the client's PasswordMessage (`md5` + hex of md5(md5(password || user) || salt)) against
/// the configured secret, which may be plain text or an `md5...` hash. A SCRAM secret never matches.
pub fn verify_md5_response(user: &str, secret: &PasswordSecret, salt: [u8; 4], response: &[u8]) -> bool {
    let _ = (user, secret, salt, response);
    todo!()
}
