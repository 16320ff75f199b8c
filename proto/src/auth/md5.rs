//! md5 password authentication, server side.
//!
//! The server sends AuthenticationMD5Password with a 4-byte salt; the client answers with a
//! PasswordMessage whose body is `"md5"` followed by the lowercase hex of
//! `md5(hex(md5(password || user)) || salt)`. The inner `hex(md5(password || user))` is exactly
//! what pg_authid stores (after an `md5` prefix) for an md5 password, so the check works from
//! either a plain-text password or a stored md5 hash. A SCRAM secret cannot answer an md5
//! challenge.

use md5::{Digest, Md5};

use super::{PasswordSecret, constant_time_eq};

/// Length of a lowercase hex md5 digest.
const HEX_LEN: usize = 32;

/// Checks the client's PasswordMessage body (`md5` + hex of md5(md5(password || user) || salt),
/// without the terminating NUL) against the configured secret, which may be plain text or an
/// `md5...` hash. A SCRAM secret, or a malformed md5 one, never matches.
///
/// `user` is the user name from the startup packet. The comparison runs in constant time.
pub fn verify_md5_response(
    user: &str,
    secret: &PasswordSecret,
    salt: [u8; 4],
    response: &[u8],
) -> bool {
    let inner: [u8; HEX_LEN] = match secret {
        PasswordSecret::Plain(password) => hex_md5(&[password.as_bytes(), user.as_bytes()]),
        PasswordSecret::Md5(stored) => match stored_hash(stored) {
            Some(inner) => inner,
            None => return false,
        },
        PasswordSecret::Scram(_) => return false,
    };
    let outer = hex_md5(&[&inner, &salt]);
    let mut expected = [0u8; 3 + HEX_LEN];
    expected[..3].copy_from_slice(b"md5");
    expected[3..].copy_from_slice(&outer);
    constant_time_eq(&expected, response)
}

/// The md5 secret PostgreSQL stores for `password` and `user`: `"md5"` followed by the lowercase
/// hex of md5(password || user). For tooling and tests.
pub fn md5_secret(password: &str, user: &str) -> String {
    let hex = hex_md5(&[password.as_bytes(), user.as_bytes()]);
    let mut s = String::with_capacity(3 + HEX_LEN);
    s.push_str("md5");
    s.extend(hex.iter().map(|&b| char::from(b)));
    s
}

/// The answer to an md5 challenge with `salt` computed from a stored `md5<hex>` secret, without
/// the password (md5 pass-through to a server storing the same secret); `None` if `stored` is
/// not an md5 secret.
pub fn response_from_secret(stored: &str, salt: [u8; 4]) -> Option<String> {
    let inner = stored_hash(stored)?;
    let outer = hex_md5(&[&inner, &salt]);
    let mut s = String::with_capacity(3 + HEX_LEN);
    s.push_str("md5");
    s.extend(outer.iter().map(|&b| char::from(b)));
    Some(s)
}

/// The 32 hex digits (lowercased) of a stored `md5<32 hex>` secret; `None` if it is not one.
fn stored_hash(stored: &str) -> Option<[u8; HEX_LEN]> {
    let hex = stored.as_bytes().strip_prefix(b"md5")?;
    let hex: [u8; HEX_LEN] = hex.try_into().ok()?;
    if !hex.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    Some(hex.map(|b| b.to_ascii_lowercase()))
}

/// Lowercase hex of the md5 of the concatenated `parts`.
fn hex_md5(parts: &[&[u8]]) -> [u8; HEX_LEN] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut hasher = Md5::new();
    for part in parts {
        hasher.update(part);
    }
    let digest = hasher.finalize();
    let mut out = [0u8; HEX_LEN];
    for (pair, byte) in out.chunks_exact_mut(2).zip(digest.iter()) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0x0f)];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::ScramVerifier;
    use postgres_protocol::authentication::md5_hash;

    const SALT: [u8; 4] = [0x93, 0x01, 0xff, 0x7a];

    #[test]
    fn response_from_the_secret_is_what_the_client_sends() {
        let secret = md5_secret("pw", "alice");
        assert_eq!(
            response_from_secret(&secret, SALT).unwrap().into_bytes(),
            client_response("alice", "pw", SALT)
        );
        assert!(response_from_secret("SCRAM-SHA-256$x", SALT).is_none());
    }

    /// What a client (libpq, rust-postgres) sends for `password`.
    fn client_response(user: &str, password: &str, salt: [u8; 4]) -> Vec<u8> {
        md5_hash(user.as_bytes(), password.as_bytes(), salt).into_bytes()
    }

    #[test]
    fn md5_secret_matches_postgres_protocol() {
        let ours = md5_secret("hunter2", "alice");
        let theirs = postgres_protocol::password::md5(b"hunter2", "alice");
        assert_eq!(ours, theirs);
        assert_eq!(
            PasswordSecret::parse(&ours),
            Ok(PasswordSecret::Md5(ours.clone()))
        );
    }

    #[test]
    fn md5_secret_known_value() {
        // md5("md5" + hex(md5("foo" || "bar"))) is a widely published value: md5("foobar").
        assert_eq!(
            md5_secret("foo", "bar"),
            "md53858f62230ac3c915f300c664312c63f"
        );
    }

    #[test]
    fn plain_secret_right_and_wrong_password() {
        let secret = PasswordSecret::Plain("s3cret".into());
        assert!(verify_md5_response(
            "bob",
            &secret,
            SALT,
            &client_response("bob", "s3cret", SALT)
        ));
        assert!(!verify_md5_response(
            "bob",
            &secret,
            SALT,
            &client_response("bob", "s3creT", SALT)
        ));
        // Same password, other user or other salt: the hash differs.
        assert!(!verify_md5_response(
            "bob",
            &secret,
            SALT,
            &client_response("bobby", "s3cret", SALT)
        ));
        assert!(!verify_md5_response(
            "bob",
            &secret,
            [0; 4],
            &client_response("bob", "s3cret", SALT)
        ));
    }

    #[test]
    fn md5_secret_right_and_wrong_password() {
        let secret = PasswordSecret::parse(&md5_secret("pässwörd", "carol")).unwrap();
        assert!(matches!(secret, PasswordSecret::Md5(_)));
        assert!(verify_md5_response(
            "carol",
            &secret,
            SALT,
            &client_response("carol", "pässwörd", SALT)
        ));
        assert!(!verify_md5_response(
            "carol",
            &secret,
            SALT,
            &client_response("carol", "password", SALT)
        ));
        assert!(!verify_md5_response(
            "dave",
            &secret,
            SALT,
            &client_response("dave", "pässwörd", SALT)
        ));
    }

    #[test]
    fn md5_secret_in_upper_case_still_matches() {
        let upper = format!("md5{}", md5_secret("pw", "eve")[3..].to_ascii_uppercase());
        let secret = PasswordSecret::Md5(upper);
        assert!(verify_md5_response(
            "eve",
            &secret,
            SALT,
            &client_response("eve", "pw", SALT)
        ));
    }

    #[test]
    fn scram_and_malformed_secrets_never_match() {
        let scram = PasswordSecret::Scram(ScramVerifier::from_password("pw"));
        assert!(!verify_md5_response(
            "eve",
            &scram,
            SALT,
            &client_response("eve", "pw", SALT)
        ));
        for bad in ["md5", "md5abc", "pw", "md5zz3858f62230ac3c915f300c664312c6"] {
            let secret = PasswordSecret::Md5(bad.into());
            assert!(!verify_md5_response(
                "eve",
                &secret,
                SALT,
                &client_response("eve", "pw", SALT)
            ));
        }
    }

    #[test]
    fn malformed_responses_are_rejected() {
        let secret = PasswordSecret::Plain("pw".into());
        let good = client_response("u", "pw", SALT);
        assert!(verify_md5_response("u", &secret, SALT, &good));
        let mut with_nul = good.clone();
        with_nul.push(0);
        let upper = good.to_ascii_uppercase();
        let bad: [&[u8]; 5] = [b"", b"md5", &good[..good.len() - 1], &with_nul, &upper];
        for response in bad {
            assert!(!verify_md5_response("u", &secret, SALT, response));
        }
        // The plain password itself is not accepted as a response.
        assert!(!verify_md5_response("u", &secret, SALT, b"pw"));
    }
}
