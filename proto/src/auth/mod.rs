//! Server-side password checks: what sluice needs to authenticate its own clients.
//!
//! `postgres-protocol` only has the client half of SCRAM; the server half is here ([`scram`]), with
//! the md5 check ([`md5`]). A configured password is a [`PasswordSecret`], in one of the three forms
//! pg_authid stores: plain text, `md5<32 hex>`, or `SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>`.

pub mod md5;
pub mod scram;
pub mod scram_client;

pub use scram::{ScramError, ScramServer, ScramVerifier};
pub use scram_client::{KeyClient, KeyClientError, ScramKeys};

/// A configured password in one of pg_authid's forms.
#[derive(Clone, PartialEq, Eq)]
pub enum PasswordSecret {
    Plain(String),
    /// `md5` followed by 32 lowercase hex digits: md5(password || username).
    Md5(String),
    Scram(ScramVerifier),
}

impl std::fmt::Debug for PasswordSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PasswordSecret::Plain(_) => "PasswordSecret::Plain(..)",
            PasswordSecret::Md5(_) => "PasswordSecret::Md5(..)",
            PasswordSecret::Scram(_) => "PasswordSecret::Scram(..)",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error(
        "malformed SCRAM-SHA-256 secret (expected SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>)"
    )]
    MalformedScram,
    #[error("malformed md5 secret (expected \"md5\" followed by 32 hex digits)")]
    MalformedMd5,
}

impl PasswordSecret {
    /// Recognises the form the way PostgreSQL does: a string that looks like an md5 or SCRAM secret
    /// is one (and must be well formed); anything else is a plain-text password.
    pub fn parse(s: &str) -> Result<PasswordSecret, SecretError> {
        if let Some(hex) = s.strip_prefix("md5") {
            if hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Ok(PasswordSecret::Md5(s.to_ascii_lowercase()));
            }
            if hex.len() == 32 {
                return Err(SecretError::MalformedMd5);
            }
        }
        if s.starts_with("SCRAM-SHA-256$") {
            return ScramVerifier::parse(s)
                .map(PasswordSecret::Scram)
                .ok_or(SecretError::MalformedScram);
        }
        Ok(PasswordSecret::Plain(s.to_owned()))
    }

    /// The verifier a SCRAM exchange checks against: the stored one, or one derived from the plain
    /// text (random salt, 4096 iterations, as PostgreSQL's default). `None` for an md5 hash.
    pub fn scram_verifier(&self) -> Option<ScramVerifier> {
        match self {
            PasswordSecret::Plain(pw) => Some(ScramVerifier::from_password(pw)),
            PasswordSecret::Scram(v) => Some(v.clone()),
            PasswordSecret::Md5(_) => None,
        }
    }

    /// Checks a password sent in clear text (the `password` method) against this secret: equal
    /// text, the same md5 hash for `user`, or the same SCRAM StoredKey with the secret's salt and
    /// iteration count.
    pub fn verify_plain(&self, user: &str, password: &str) -> bool {
        match self {
            PasswordSecret::Plain(pw) => constant_time_eq(pw.as_bytes(), password.as_bytes()),
            PasswordSecret::Md5(stored) => constant_time_eq(
                stored.as_bytes(),
                md5::md5_secret(password, user).as_bytes(),
            ),
            PasswordSecret::Scram(v) => {
                let derived = ScramVerifier::from_password_with(password, &v.salt, v.iterations);
                constant_time_eq(&derived.stored_key, &v.stored_key)
            }
        }
    }

    /// The plain text, when that is what was configured (needed to log in to a server).
    pub fn plain(&self) -> Option<&str> {
        match self {
            PasswordSecret::Plain(pw) => Some(pw),
            _ => None,
        }
    }
}

/// Compares two byte strings without an early exit on the first differing byte, so the time taken
/// does not reveal how much of a secret-derived value the client guessed right. Lengths are not
/// secret (they are fixed by the mechanism), so a length mismatch returns at once.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // Keep the optimiser from turning the fold back into a short-circuiting comparison.
    std::hint::black_box(diff) == 0
}
