//! SCRAM-SHA-256 (RFC 5802, RFC 7677), server side, as PostgreSQL's server speaks it.
//!
//! The exchange, in PostgreSQL's SASL messages:
//!
//! 1. server → AuthenticationSASL listing [`ScramServer::mechanisms`];
//! 2. client → SASLInitialResponse: mechanism + client-first-message
//!    `<gs2 header>n=<user>,r=<client nonce>` → [`ScramServer::client_first`], which returns the
//!    server-first-message `r=<client nonce><server nonce>,s=<salt>,i=<iterations>` for
//!    AuthenticationSASLContinue;
//! 3. client → SASLResponse: client-final-message `c=<base64 gs2 header>,r=<nonce>,p=<proof>` →
//!    [`ScramServer::client_final`], which checks the proof and returns the server-final-message
//!    `v=<server signature>` for AuthenticationSASLFinal.
//!
//! As in PostgreSQL, the user name inside the SCRAM message is ignored (the startup packet's user
//! is the one being authenticated; libpq sends an empty `n=`), and an authorization identity other
//! than an empty one is refused.
//!
//! Channel binding (`SCRAM-SHA-256-PLUS`, `tls-server-end-point`) is supported when the server was
//! built with [`ScramServer::with_channel_binding`] and the hash of the TLS server certificate.

use std::fmt;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use super::constant_time_eq;

/// The mechanism without channel binding.
pub const SCRAM_SHA_256: &str = "SCRAM-SHA-256";
/// The mechanism with channel binding.
pub const SCRAM_SHA_256_PLUS: &str = "SCRAM-SHA-256-PLUS";
/// The only channel-binding type PostgreSQL defines for SCRAM (RFC 5929).
pub const TLS_SERVER_END_POINT: &str = "tls-server-end-point";
/// Iteration count for verifiers derived here (PostgreSQL's default `scram_iterations`).
pub const DEFAULT_ITERATIONS: u32 = 4096;
/// Salt length for verifiers derived here (as PostgreSQL).
pub const SALT_LEN: usize = 16;
/// Random bytes in the server's part of the nonce (base64-encoded on the wire: 24 characters).
const SERVER_NONCE_BYTES: usize = 18;
/// Prefix of the secret string form.
const SECRET_PREFIX: &str = "SCRAM-SHA-256$";
/// Longest mechanism name echoed back in [`ScramError::UnsupportedMechanism`].
const MAX_ECHOED_MECHANISM: usize = 64;

type HmacSha256 = Hmac<Sha256>;

/// A SCRAM-SHA-256 verifier: what the server stores instead of the password
/// (`SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` in pg_authid).
///
/// `Debug` shows the iteration count and salt (both are sent to any client) but not the keys.
/// Equality compares those four fields.
#[derive(Clone)]
pub struct ScramVerifier {
    /// PBKDF2 iteration count (at least 1).
    pub iterations: u32,
    /// PBKDF2 salt.
    pub salt: Vec<u8>,
    /// SHA-256(ClientKey): checks the client's proof.
    pub stored_key: [u8; 32],
    /// HMAC(SaltedPassword, "Server Key"): signs the server-final-message.
    pub server_key: [u8; 32],
    /// HMAC states already keyed with the two keys, made with the verifier: each login's two
    /// HMACs then skip their key blocks (four of a login's thirteen SHA-256 compressions).
    macs: Arc<KeyedMacs>,
}

impl PartialEq for ScramVerifier {
    fn eq(&self, other: &Self) -> bool {
        self.iterations == other.iterations
            && self.salt == other.salt
            && self.stored_key == other.stored_key
            && self.server_key == other.server_key
    }
}

impl Eq for ScramVerifier {}

/// HMAC-SHA-256 keyed with a verifier's StoredKey and ServerKey, with the keys they were made
/// with (the verifier's fields are public: a state is used only while its key still matches).
struct KeyedMacs {
    stored_key: [u8; 32],
    stored: HmacSha256,
    server_key: [u8; 32],
    server: HmacSha256,
}

impl KeyedMacs {
    fn new(stored_key: [u8; 32], server_key: [u8; 32]) -> Arc<KeyedMacs> {
        Arc::new(KeyedMacs {
            stored_key,
            stored: keyed(&stored_key),
            server_key,
            server: keyed(&server_key),
        })
    }
}

impl ScramVerifier {
    /// Parses `SCRAM-SHA-256$<iterations>:<base64 salt>$<base64 StoredKey>:<base64 ServerKey>`.
    /// `None` if malformed: other prefix, iteration count not a positive decimal number, empty
    /// salt, bad base64, or keys not 32 bytes long.
    pub fn parse(s: &str) -> Option<ScramVerifier> {
        let rest = s.strip_prefix(SECRET_PREFIX)?;
        let (iter_salt, keys) = rest.split_once('$')?;
        let (iterations, salt) = iter_salt.split_once(':')?;
        let (stored_key, server_key) = keys.split_once(':')?;
        if iterations.is_empty() || !iterations.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let iterations: u32 = iterations.parse().ok().filter(|&i| i > 0)?;
        let salt = BASE64.decode(salt).ok().filter(|s| !s.is_empty())?;
        Some(ScramVerifier::with_keys(
            iterations,
            salt,
            decode_key(stored_key)?,
            decode_key(server_key)?,
        ))
    }

    /// Derives a verifier from a plain-text password with a fresh random 16-byte salt and 4096
    /// iterations, as PostgreSQL does by default. See [`from_password_with`](Self::from_password_with).
    pub fn from_password(password: &str) -> ScramVerifier {
        let mut salt = [0u8; SALT_LEN];
        rand::fill(&mut salt[..]);
        ScramVerifier::from_password_with(password, &salt, DEFAULT_ITERATIONS)
    }

    /// Derives a verifier from a plain-text password with the given salt and iteration count
    /// (an iteration count of 0 is taken as 1).
    ///
    /// The password is first normalised with SASLprep (RFC 4013), as PostgreSQL and its clients do;
    /// if SASLprep rejects it (prohibited or unassigned characters, bad bidirectional text), the
    /// raw bytes are used, again as PostgreSQL does. Then, per RFC 5802:
    /// SaltedPassword = PBKDF2-HMAC-SHA-256(password, salt, iterations),
    /// ClientKey = HMAC(SaltedPassword, "Client Key"), StoredKey = SHA-256(ClientKey),
    /// ServerKey = HMAC(SaltedPassword, "Server Key").
    pub fn from_password_with(password: &str, salt: &[u8], iterations: u32) -> ScramVerifier {
        let iterations = iterations.max(1);
        let prepared = stringprep::saslprep(password);
        let password = match &prepared {
            Ok(normalised) => normalised.as_bytes(),
            Err(_) => password.as_bytes(),
        };
        let salted = salted_password(password, salt, iterations);
        let client_key = hmac(&salted, &[b"Client Key"]);
        ScramVerifier::with_keys(
            iterations,
            salt.to_vec(),
            sha256(&client_key),
            hmac(&salted, &[b"Server Key"]),
        )
    }

    /// A verifier of these parts.
    pub fn with_keys(
        iterations: u32,
        salt: Vec<u8>,
        stored_key: [u8; 32],
        server_key: [u8; 32],
    ) -> ScramVerifier {
        ScramVerifier {
            iterations,
            salt,
            stored_key,
            server_key,
            macs: KeyedMacs::new(stored_key, server_key),
        }
    }

    /// HMAC of the concatenated `parts` under StoredKey (the client's signature).
    fn mac_stored(&self, parts: &[&[u8]]) -> [u8; 32] {
        if self.macs.stored_key == self.stored_key {
            finish(self.macs.stored.clone(), parts)
        } else {
            hmac(&self.stored_key, parts)
        }
    }

    /// HMAC of the concatenated `parts` under ServerKey (the server's signature).
    fn mac_server(&self, parts: &[&[u8]]) -> [u8; 32] {
        if self.macs.server_key == self.server_key {
            finish(self.macs.server.clone(), parts)
        } else {
            hmac(&self.server_key, parts)
        }
    }

    /// A verifier for a user that does not exist (or has no usable secret), so that the exchange
    /// runs to the end and fails exactly like a wrong password: PostgreSQL does this so that
    /// clients cannot probe which users exist.
    ///
    /// The salt is derived from `user` and `secret` (a value private to this server, e.g. random
    /// bytes drawn at startup), so repeated attempts for the same user see the same salt, as they
    /// would for a real user, yet the salt cannot be predicted from outside. The keys are derived
    /// the same way; as StoredKey is then an HMAC output nobody knows a SHA-256 preimage of, no
    /// client proof can satisfy it.
    pub fn mock(user: &str, secret: &[u8]) -> ScramVerifier {
        let derive = |label: &[u8]| {
            hmac(
                secret,
                &[
                    b"sluice SCRAM mock verifier\0",
                    label,
                    b"\0",
                    user.as_bytes(),
                ],
            )
        };
        ScramVerifier::with_keys(
            DEFAULT_ITERATIONS,
            derive(b"salt")[..SALT_LEN].to_vec(),
            derive(b"stored key"),
            derive(b"server key"),
        )
    }

    /// Formats the verifier as `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`
    /// (standard base64), the form [`parse`](Self::parse) reads and pg_authid stores.
    pub fn to_secret_string(&self) -> String {
        format!(
            "{SECRET_PREFIX}{}:{}${}:{}",
            self.iterations,
            BASE64.encode(&self.salt),
            BASE64.encode(self.stored_key),
            BASE64.encode(self.server_key)
        )
    }
}

impl fmt::Debug for ScramVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramVerifier")
            .field("iterations", &self.iterations)
            .field("salt", &BASE64.encode(&self.salt))
            .field("stored_key", &"<redacted>")
            .field("server_key", &"<redacted>")
            .finish()
    }
}

/// Why a SCRAM exchange failed. Any error ends the exchange: later calls return
/// [`OutOfOrder`](ScramError::OutOfOrder).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    /// The client-first-message or client-final-message does not follow the SCRAM syntax, or uses
    /// a feature we do not support (authorization identity, extensions).
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    /// The client chose a mechanism we did not offer (the name, truncated to 64 bytes).
    #[error("unsupported SASL mechanism {0:?}")]
    UnsupportedMechanism(String),
    /// The client asked for channel binding (`p=...`) that this server does not support.
    #[error("channel binding is not supported")]
    ChannelBindingUnsupported,
    /// The client-final-message's channel binding or nonce does not match the exchange, or the
    /// client's channel-binding choice is inconsistent with what the server offered.
    #[error("SCRAM {0} mismatch")]
    Mismatch(&'static str),
    /// The client's proof is wrong: wrong password (or a mock verifier).
    #[error("password authentication failed (invalid SCRAM proof)")]
    InvalidProof,
    /// A message arrived at the wrong point of the exchange.
    #[error("SCRAM message out of order")]
    OutOfOrder,
}

/// The server side of one SCRAM-SHA-256 exchange: create one per authentication attempt, feed it
/// the client's two messages, and send back what it returns.
pub struct ScramServer {
    verifier: ScramVerifier,
    /// Hash of the TLS server certificate for `tls-server-end-point` binding, when offered.
    channel_binding: Option<Vec<u8>>,
    state: State,
    /// The client's ClientKey, recovered from its proof once the proof checked out.
    client_key: Option<[u8; 32]>,
}

enum State {
    /// Waiting for SASLInitialResponse.
    Initial,
    /// server-first-message sent; waiting for SASLResponse.
    FirstSent {
        /// Exactly what the client's `c=` must decode to: gs2 header, plus the binding data when
        /// channel binding is in use.
        expected_cbind_input: Vec<u8>,
        /// Client nonce + server nonce.
        nonce: Vec<u8>,
        /// client-first-message-bare + "," + server-first-message + ",": the start of AuthMessage.
        auth_message_prefix: Vec<u8>,
    },
    /// Succeeded or failed; nothing more to do.
    Done,
}

impl ScramServer {
    /// A server for an exchange against `verifier`, offering `SCRAM-SHA-256` only.
    pub fn new(verifier: ScramVerifier) -> Self {
        ScramServer {
            verifier,
            channel_binding: None,
            state: State::Initial,
            client_key: None,
        }
    }

    /// A server that also offers `SCRAM-SHA-256-PLUS` with `tls-server-end-point` channel binding
    /// (RFC 5929). `cert_hash` is the hash of the TLS server certificate, computed with the
    /// certificate's signature hash algorithm (SHA-256 if that is MD5 or SHA-1). Use this only on
    /// TLS connections.
    pub fn with_channel_binding(verifier: ScramVerifier, cert_hash: Vec<u8>) -> Self {
        ScramServer {
            verifier,
            channel_binding: Some(cert_hash),
            state: State::Initial,
            client_key: None,
        }
    }

    /// The mechanisms to advertise in AuthenticationSASL, preferred first:
    /// `["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]` with channel binding, else `["SCRAM-SHA-256"]`.
    pub fn mechanisms(&self) -> &'static [&'static str] {
        if self.channel_binding.is_some() {
            &[SCRAM_SHA_256_PLUS, SCRAM_SHA_256]
        } else {
            &[SCRAM_SHA_256]
        }
    }

    /// Handles SASLInitialResponse: the chosen `mechanism` and the client-first-message `data`.
    /// Returns the server-first-message to send in AuthenticationSASLContinue.
    pub fn client_first(&mut self, mechanism: &str, data: &[u8]) -> Result<Vec<u8>, ScramError> {
        let mut server_nonce = [0u8; SERVER_NONCE_BYTES];
        rand::fill(&mut server_nonce[..]);
        self.client_first_with_nonce(mechanism, data, BASE64.encode(server_nonce).as_bytes())
    }

    /// [`client_first`](Self::client_first) with the server's part of the nonce given (tests use
    /// the RFC's test vector through this).
    fn client_first_with_nonce(
        &mut self,
        mechanism: &str,
        data: &[u8],
        server_nonce: &[u8],
    ) -> Result<Vec<u8>, ScramError> {
        if !matches!(self.state, State::Initial) {
            self.state = State::Done;
            return Err(ScramError::OutOfOrder);
        }
        // Whatever happens, this is the only client-first-message we accept.
        self.state = State::Done;

        let plus = self.check_mechanism(mechanism)?;
        let first = parse_client_first(data)?;
        let expected_cbind_input = match (first.cbind, plus) {
            (CbindFlag::Required(_), false) => {
                return Err(if self.channel_binding.is_some() {
                    ScramError::Malformed("channel binding requested without SCRAM-SHA-256-PLUS")
                } else {
                    ScramError::ChannelBindingUnsupported
                });
            }
            (CbindFlag::Required(name), true) => {
                if name != TLS_SERVER_END_POINT.as_bytes() {
                    return Err(ScramError::ChannelBindingUnsupported);
                }
                let cert_hash = self.channel_binding.as_deref().unwrap_or_default();
                [first.gs2_header, cert_hash].concat()
            }
            (CbindFlag::NotSupportedByClient | CbindFlag::ClientThinksServerLacks, true) => {
                return Err(ScramError::Malformed(
                    "SCRAM-SHA-256-PLUS chosen without channel binding",
                ));
            }
            // RFC 5802 §6: "y" means the client would have bound had we offered it; if we did offer
            // it, someone stripped -PLUS from our mechanism list.
            (CbindFlag::ClientThinksServerLacks, false) if self.channel_binding.is_some() => {
                return Err(ScramError::Mismatch("channel binding negotiation"));
            }
            (CbindFlag::NotSupportedByClient | CbindFlag::ClientThinksServerLacks, false) => {
                first.gs2_header.to_vec()
            }
        };

        let nonce = [first.client_nonce, server_nonce].concat();

        let mut server_first = Vec::with_capacity(nonce.len() + 64);
        server_first.extend_from_slice(b"r=");
        server_first.extend_from_slice(&nonce);
        server_first.extend_from_slice(b",s=");
        server_first.extend_from_slice(BASE64.encode(&self.verifier.salt).as_bytes());
        server_first.extend_from_slice(format!(",i={}", self.verifier.iterations).as_bytes());

        let auth_message_prefix = [first.bare, b",", &server_first, b","].concat();
        self.state = State::FirstSent {
            expected_cbind_input,
            nonce,
            auth_message_prefix,
        };
        Ok(server_first)
    }

    /// Handles SASLResponse: the client-final-message `data`. On success returns the
    /// server-final-message (`v=<base64 ServerSignature>`) for AuthenticationSASLFinal; a wrong
    /// password gives [`ScramError::InvalidProof`].
    pub fn client_final(&mut self, data: &[u8]) -> Result<Vec<u8>, ScramError> {
        let State::FirstSent {
            expected_cbind_input,
            nonce,
            auth_message_prefix,
        } = std::mem::replace(&mut self.state, State::Done)
        else {
            return Err(ScramError::OutOfOrder);
        };

        let last = parse_client_final(data)?;
        let cbind_input = BASE64
            .decode(last.channel_binding)
            .map_err(|_| ScramError::Malformed("channel binding is not valid base64"))?;
        let proof: [u8; 32] = BASE64
            .decode(last.proof)
            .ok()
            .and_then(|p| p.try_into().ok())
            .ok_or(ScramError::Malformed("proof is not 32 bytes of base64"))?;
        if cbind_input != expected_cbind_input {
            return Err(ScramError::Mismatch("channel binding"));
        }
        if last.nonce != nonce.as_slice() {
            return Err(ScramError::Mismatch("nonce"));
        }

        let auth_message: &[&[u8]] = &[&auth_message_prefix, last.without_proof];
        let client_signature = self.verifier.mac_stored(auth_message);
        let mut client_key = proof;
        for (k, s) in client_key.iter_mut().zip(client_signature) {
            *k ^= s;
        }
        if !constant_time_eq(&sha256(&client_key), &self.verifier.stored_key) {
            return Err(ScramError::InvalidProof);
        }
        self.client_key = Some(client_key);

        let server_signature = self.verifier.mac_server(auth_message);
        let mut server_final = b"v=".to_vec();
        server_final.extend_from_slice(BASE64.encode(server_signature).as_bytes());
        Ok(server_final)
    }

    /// After a successful [`client_final`](Self::client_final): the client's ClientKey
    /// (ClientProof XOR ClientSignature), with which sluice can log in to a server holding the
    /// same SCRAM secret (SCRAM pass-through, [`super::scram_client`]).
    pub fn client_key(&self) -> Option<[u8; 32]> {
        self.client_key
    }

    /// Checks the chosen mechanism against those offered; `true` for the channel-binding one.
    fn check_mechanism(&self, mechanism: &str) -> Result<bool, ScramError> {
        if mechanism == SCRAM_SHA_256 {
            Ok(false)
        } else if mechanism == SCRAM_SHA_256_PLUS && self.channel_binding.is_some() {
            Ok(true)
        } else {
            let mut end = mechanism.len().min(MAX_ECHOED_MECHANISM);
            while !mechanism.is_char_boundary(end) {
                end -= 1;
            }
            Err(ScramError::UnsupportedMechanism(
                mechanism[..end].to_owned(),
            ))
        }
    }
}

impl fmt::Debug for ScramServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Initial => "Initial",
            State::FirstSent { .. } => "FirstSent",
            State::Done => "Done",
        };
        f.debug_struct("ScramServer")
            .field("verifier", &self.verifier)
            .field("channel_binding", &self.channel_binding.is_some())
            .field("state", &state)
            .finish()
    }
}

/// The gs2-cbind-flag of a client-first-message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CbindFlag<'a> {
    /// `n`: the client does not support channel binding.
    NotSupportedByClient,
    /// `y`: the client supports channel binding but thinks the server does not.
    ClientThinksServerLacks,
    /// `p=<name>`: the client requires channel binding of this type.
    Required(&'a [u8]),
}

/// The parts of a client-first-message the server needs.
#[derive(Debug)]
struct ClientFirst<'a> {
    cbind: CbindFlag<'a>,
    /// The gs2 header exactly as sent, both commas included.
    gs2_header: &'a [u8],
    /// client-first-message-bare, for AuthMessage.
    bare: &'a [u8],
    client_nonce: &'a [u8],
}

/// Parses `gs2-cbind-flag "," [authzid] "," [reserved-mext ","] username "," nonce ["," extensions]`
/// (RFC 5802 §7), refusing an authorization identity and any extension.
fn parse_client_first(data: &[u8]) -> Result<ClientFirst<'_>, ScramError> {
    use ScramError::Malformed;

    let flag_end = memchr::memchr(b',', data).ok_or(Malformed("missing gs2 header"))?;
    let cbind = match &data[..flag_end] {
        b"n" => CbindFlag::NotSupportedByClient,
        b"y" => CbindFlag::ClientThinksServerLacks,
        flag => match flag.strip_prefix(b"p=") {
            Some(name) if is_cb_name(name) => CbindFlag::Required(name),
            _ => return Err(Malformed("invalid channel-binding flag")),
        },
    };
    let after_flag = &data[flag_end + 1..];
    let authzid_len = memchr::memchr(b',', after_flag).ok_or(Malformed("missing gs2 header"))?;
    match &after_flag[..authzid_len] {
        b"" | b"a=" => {}
        a if a.starts_with(b"a=") => {
            return Err(Malformed("authorization identity is not supported"));
        }
        _ => return Err(Malformed("invalid authorization identity")),
    }
    let header_len = flag_end + 1 + authzid_len + 1;
    let (gs2_header, bare) = data.split_at(header_len);

    let mut attrs = bare.split(|&b| b == b',');
    let user = attrs.next().unwrap_or_default();
    if user.starts_with(b"m=") {
        return Err(Malformed("mandatory SCRAM extensions are not supported"));
    }
    // The name is ignored (the startup packet's user is authenticated), so any value will do.
    if !user.starts_with(b"n=") {
        return Err(Malformed("expected user name attribute"));
    }
    let client_nonce = attrs
        .next()
        .and_then(|a| a.strip_prefix(b"r="))
        .ok_or(Malformed("expected nonce attribute"))?;
    if !is_printable(client_nonce) {
        return Err(Malformed("client nonce must be non-empty printable ASCII"));
    }
    if attrs.next().is_some() {
        return Err(Malformed("unexpected attribute in client-first-message"));
    }
    Ok(ClientFirst {
        cbind,
        gs2_header,
        bare,
        client_nonce,
    })
}

/// The parts of a client-final-message the server needs.
#[derive(Debug)]
struct ClientFinal<'a> {
    /// Base64 of the channel-binding input, still encoded.
    channel_binding: &'a [u8],
    nonce: &'a [u8],
    /// Base64 of the proof, still encoded.
    proof: &'a [u8],
    /// client-final-message-without-proof, for AuthMessage.
    without_proof: &'a [u8],
}

/// Parses `"c=" base64 "," "r=" nonce "," "p=" base64` (RFC 5802 §7), refusing extensions.
fn parse_client_final(data: &[u8]) -> Result<ClientFinal<'_>, ScramError> {
    use ScramError::Malformed;

    let mut attrs = data.split(|&b| b == b',');
    let mut attr = |prefix: &[u8], what: &'static str| {
        attrs
            .next()
            .and_then(|a| a.strip_prefix(prefix))
            .ok_or(Malformed(what))
    };
    let channel_binding = attr(b"c=", "expected channel-binding attribute")?;
    let nonce = attr(b"r=", "expected nonce attribute")?;
    let proof = attr(
        b"p=",
        "expected proof attribute (extensions are not supported)",
    )?;
    if attrs.next().is_some() {
        return Err(Malformed("unexpected attribute after proof"));
    }
    let without_proof = &data[..data.len() - proof.len() - b",p=".len()];
    Ok(ClientFinal {
        channel_binding,
        nonce,
        proof,
        without_proof,
    })
}

/// RFC 5802 `printable`: non-empty, ASCII 0x21..=0x7E except ','.
fn is_printable(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| (0x21..=0x7e).contains(&b) && b != b',')
}

/// RFC 5056 channel-binding type name: non-empty, ASCII letters, digits, '.' and '-'.
fn is_cb_name(s: &[u8]) -> bool {
    !s.is_empty()
        && s.iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
}

/// A base64-encoded 32-byte key of a secret string.
fn decode_key(s: &str) -> Option<[u8; 32]> {
    BASE64.decode(s).ok()?.try_into().ok()
}

/// HMAC-SHA-256 of the concatenated `parts` under `key`.
pub(crate) fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    finish(keyed(key), parts)
}

/// `mac` (already keyed) over the concatenated `parts`.
fn finish(mut mac: HmacSha256, parts: &[&[u8]]) -> [u8; 32] {
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// An HMAC-SHA-256 state keyed with `key`.
fn keyed(key: &[u8]) -> HmacSha256 {
    // HMAC hashes long keys and pads short ones, so no key length is invalid.
    HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length")
}

pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// RFC 5802 `Hi(password, salt, i)`: PBKDF2 with HMAC-SHA-256 and a single 32-byte block.
fn salted_password(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let keyed = keyed(password);
    let mut block = {
        let mut mac = keyed.clone();
        mac.update(salt);
        mac.update(&1u32.to_be_bytes());
        <[u8; 32]>::from(mac.finalize().into_bytes())
    };
    let mut result = block;
    for _ in 1..iterations {
        let mut mac = keyed.clone();
        mac.update(&block);
        block = mac.finalize().into_bytes().into();
        for (r, b) in result.iter_mut().zip(block) {
            *r ^= b;
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
    use proptest::prelude::*;

    /// Runs a whole exchange with postgres-protocol's client; returns the server's verdict, and
    /// whether the client accepted the server's signature when the server said yes.
    fn exchange(
        server: &mut ScramServer,
        password: &str,
        binding: ChannelBinding,
    ) -> Result<(), ScramError> {
        exchange_with(server, SCRAM_SHA_256, password, binding)
    }

    fn exchange_with(
        server: &mut ScramServer,
        mechanism: &str,
        password: &str,
        binding: ChannelBinding,
    ) -> Result<(), ScramError> {
        let mut client = ScramSha256::new(password.as_bytes(), binding);
        let server_first = server.client_first(mechanism, client.message())?;
        client
            .update(&server_first)
            .expect("client accepts server-first");
        let server_final = server.client_final(client.message())?;
        client
            .finish(&server_final)
            .expect("client accepts the server signature");
        Ok(())
    }

    /// The keyed HMAC states made with a verifier are used only while its (public) keys are the
    /// ones they were made with: keys changed afterwards are the ones checked.
    #[test]
    fn keys_changed_after_construction_are_the_ones_checked() {
        let salt = b"0123456789abcdef";
        let mut v = ScramVerifier::from_password_with("old", salt, 16);
        let new = ScramVerifier::from_password_with("new", salt, 16);
        assert!(
            exchange(
                &mut ScramServer::new(v.clone()),
                "old",
                ChannelBinding::unsupported()
            )
            .is_ok()
        );
        v.stored_key = new.stored_key;
        v.server_key = new.server_key;
        assert_eq!(v, new);
        assert!(
            exchange(
                &mut ScramServer::new(v.clone()),
                "new",
                ChannelBinding::unsupported()
            )
            .is_ok()
        );
        assert_eq!(
            exchange(
                &mut ScramServer::new(v),
                "old",
                ChannelBinding::unsupported()
            ),
            Err(ScramError::InvalidProof)
        );
    }

    /// A server after a valid client-first, with the client-final a real client would send.
    fn after_first(verifier: ScramVerifier, password: &str) -> (ScramServer, Vec<u8>) {
        let mut server = ScramServer::new(verifier);
        let mut client = ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
        let server_first = server
            .client_first(SCRAM_SHA_256, client.message())
            .unwrap();
        client.update(&server_first).unwrap();
        (server, client.message().to_vec())
    }

    fn replace_attr(message: &[u8], prefix: &str, value: &str) -> Vec<u8> {
        let text = std::str::from_utf8(message).unwrap();
        let parts: Vec<String> = text
            .split(',')
            .map(|a| {
                if a.starts_with(prefix) {
                    format!("{prefix}{value}")
                } else {
                    a.to_owned()
                }
            })
            .collect();
        parts.join(",").into_bytes()
    }

    #[test]
    fn right_password_succeeds_and_client_accepts_signature() {
        let verifier = ScramVerifier::from_password("correct horse");
        assert_eq!(verifier.iterations, 4096);
        assert_eq!(verifier.salt.len(), 16);
        for binding in [ChannelBinding::unsupported(), ChannelBinding::unrequested()] {
            let mut server = ScramServer::new(verifier.clone());
            assert_eq!(server.mechanisms(), &["SCRAM-SHA-256"]);
            assert_eq!(exchange(&mut server, "correct horse", binding), Ok(()));
            // The exchange is over.
            assert_eq!(
                server.client_final(b"c=biws,r=x,p=x"),
                Err(ScramError::OutOfOrder)
            );
        }
    }

    #[test]
    fn wrong_password_is_invalid_proof() {
        let verifier = ScramVerifier::from_password("correct horse");
        let mut server = ScramServer::new(verifier);
        assert_eq!(
            exchange(&mut server, "battery staple", ChannelBinding::unsupported()),
            Err(ScramError::InvalidProof)
        );
        assert_eq!(
            server.client_first(SCRAM_SHA_256, b"n,,n=,r=abc"),
            Err(ScramError::OutOfOrder)
        );
    }

    #[test]
    fn verifier_from_postgres_protocol_works() {
        for password in ["pencil", "", "pässwörd", "I\u{00AD}X", "\u{0007}bell"] {
            let secret = postgres_protocol::password::scram_sha_256(password.as_bytes());
            let verifier = ScramVerifier::parse(&secret).expect("parses");
            assert_eq!(verifier.to_secret_string(), secret);
            let mut server = ScramServer::new(verifier.clone());
            assert_eq!(
                exchange(&mut server, password, ChannelBinding::unsupported()),
                Ok(()),
                "{password:?}"
            );
            // Deriving with the same salt gives the same keys (same SASLprep handling).
            let ours =
                ScramVerifier::from_password_with(password, &verifier.salt, verifier.iterations);
            assert_eq!(ours, verifier, "{password:?}");
        }
    }

    #[test]
    fn saslprep_is_applied() {
        // U+00AD (soft hyphen) maps to nothing, so "I\u{AD}X" and "IX" are the same password.
        let verifier = ScramVerifier::from_password("I\u{00AD}X");
        let mut server = ScramServer::new(verifier);
        assert_eq!(
            exchange(&mut server, "IX", ChannelBinding::unsupported()),
            Ok(())
        );
        // A prohibited character makes SASLprep fail: the raw bytes are used.
        let raw = ScramVerifier::from_password_with("a\u{0007}b", b"salt", 2);
        let mut server = ScramServer::new(raw);
        assert_eq!(
            exchange(&mut server, "a\u{0007}b", ChannelBinding::unsupported()),
            Ok(())
        );
    }

    #[test]
    fn rfc7677_test_vector() {
        // RFC 7677 §3: user "user", password "pencil", with the RFC's nonces and salt.
        let salt = BASE64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let verifier = ScramVerifier::from_password_with("pencil", &salt, 4096);
        let mut server = ScramServer::new(verifier);
        let server_first = server
            .client_first_with_nonce(
                SCRAM_SHA_256,
                b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
                b"%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
            )
            .unwrap();
        assert_eq!(server_first, b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096");
        let server_final = server
            .client_final(
                b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
            )
            .unwrap();
        assert_eq!(
            server_final,
            b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
    }

    #[test]
    fn server_nonce_is_random_base64() {
        let mut server = ScramServer::new(ScramVerifier::from_password_with("pw", b"s", 1));
        let a = server_nonce_of(&mut server);
        let b = server_nonce_of(&mut ScramServer::new(ScramVerifier::from_password_with(
            "pw", b"s", 1,
        )));
        assert_eq!(a.len(), 24);
        assert_ne!(a, b);
        assert_eq!(BASE64.decode(&a).unwrap().len(), SERVER_NONCE_BYTES);
    }

    fn server_nonce_of(server: &mut ScramServer) -> String {
        let reply = server
            .client_first(SCRAM_SHA_256, b"n,,n=,r=clientnonce")
            .unwrap();
        let text = String::from_utf8(reply).unwrap();
        let nonce = text
            .strip_prefix("r=clientnonce")
            .unwrap()
            .split(',')
            .next()
            .unwrap();
        nonce.to_owned()
    }

    #[test]
    fn secret_string_round_trips() {
        let verifier = ScramVerifier::from_password("round trip");
        let s = verifier.to_secret_string();
        assert!(s.starts_with("SCRAM-SHA-256$4096:"));
        assert_eq!(ScramVerifier::parse(&s), Some(verifier.clone()));
        let debug = format!("{verifier:?}");
        assert!(!debug.contains(&BASE64.encode(verifier.stored_key)));
        assert!(!debug.contains(&BASE64.encode(verifier.server_key)));
        assert!(debug.contains("redacted"));
    }

    #[test]
    fn malformed_secret_strings_are_rejected() {
        let good =
            ScramVerifier::from_password_with("pw", b"0123456789abcdef", 4096).to_secret_string();
        assert!(ScramVerifier::parse(&good).is_some());
        let (head, keys) = good.rsplit_once('$').unwrap();
        let (stored, server) = keys.split_once(':').unwrap();
        let bad = [
            String::new(),
            "SCRAM-SHA-256$".into(),
            good.replacen("SCRAM-SHA-256", "SCRAM-SHA-1", 1),
            good.replacen("$4096:", "$0:", 1),
            good.replacen("$4096:", "$+4096:", 1),
            good.replacen("$4096:", "$-1:", 1),
            good.replacen("$4096:", "$99999999999:", 1),
            good.replacen("$4096:", "$:", 1),
            good.replacen("$4096:MDEyMzQ1Njc4OWFiY2RlZg==", "$4096:", 1),
            good.replacen("$4096:MDEyMzQ1Njc4OWFiY2RlZg==", "$4096:not base64!", 1),
            format!("{head}${stored}"),
            format!("{head}${stored}:{}", &server[4..]),
            format!("{head}${stored}:{server}:{server}"),
            format!("{head}${stored}:{server}$"),
            format!("{head}$AAAA:{server}"),
        ];
        for s in bad {
            assert_eq!(ScramVerifier::parse(&s), None, "{s:?}");
            // PasswordSecret reports a malformed SCRAM secret instead of taking it as plain text.
            if s.starts_with(SECRET_PREFIX) {
                assert!(crate::auth::PasswordSecret::parse(&s).is_err(), "{s:?}");
            }
        }
    }

    #[test]
    fn mock_verifier_is_deterministic_and_always_fails() {
        let a = ScramVerifier::mock("ghost", b"server secret");
        assert_eq!(a, ScramVerifier::mock("ghost", b"server secret"));
        assert_ne!(a.salt, ScramVerifier::mock("ghost2", b"server secret").salt);
        assert_ne!(a.salt, ScramVerifier::mock("ghost", b"other secret").salt);
        assert_eq!(a.salt.len(), SALT_LEN);
        assert_eq!(a.iterations, DEFAULT_ITERATIONS);
        for password in ["", "ghost", "server secret", "password"] {
            let mut server = ScramServer::new(a.clone());
            assert_eq!(
                exchange(&mut server, password, ChannelBinding::unsupported()),
                Err(ScramError::InvalidProof)
            );
        }
    }

    #[test]
    fn user_name_in_message_is_ignored_and_authzid_refused() {
        let verifier = ScramVerifier::from_password("pw");
        for first in [
            &b"n,,n=,r=abc"[..],
            b"n,,n=someone=2Celse,r=abc",
            b"y,,n=x,r=abc",
            b"n,a=,n=x,r=abc",
        ] {
            let mut server = ScramServer::new(verifier.clone());
            assert!(
                server.client_first(SCRAM_SHA_256, first).is_ok(),
                "{first:?}"
            );
        }
        let mut server = ScramServer::new(verifier);
        assert!(matches!(
            server.client_first(SCRAM_SHA_256, b"n,a=admin,n=x,r=abc"),
            Err(ScramError::Malformed(_))
        ));
    }

    #[test]
    fn tampered_nonce_is_mismatch() {
        let (mut server, client_final) = after_first(ScramVerifier::from_password("pw"), "pw");
        let text = std::str::from_utf8(&client_final).unwrap();
        let nonce = text.split(',').nth(1).unwrap().strip_prefix("r=").unwrap();
        let tampered = replace_attr(&client_final, "r=", &format!("{nonce}x"));
        assert_eq!(
            server.client_final(&tampered),
            Err(ScramError::Mismatch("nonce"))
        );

        // Only the client's half of the nonce.
        let (mut server, client_final) = after_first(ScramVerifier::from_password("pw"), "pw");
        let tampered = replace_attr(&client_final, "r=", &nonce[..nonce.len() - 24]);
        assert_eq!(
            server.client_final(&tampered),
            Err(ScramError::Mismatch("nonce"))
        );
    }

    #[test]
    fn tampered_channel_binding_is_mismatch() {
        // The client sent "n,," (base64 "biws"); claim another header, or none.
        for c in ["biws", "eSws", "cD10bHMtc2VydmVyLWVuZC1wb2ludCws", ""] {
            let (mut server, client_final) = after_first(ScramVerifier::from_password("pw"), "pw");
            let actual = std::str::from_utf8(&client_final)
                .unwrap()
                .split(',')
                .next()
                .unwrap()
                .to_owned();
            if actual == format!("c={c}") {
                continue;
            }
            let tampered = replace_attr(&client_final, "c=", c);
            assert_eq!(
                server.client_final(&tampered),
                Err(ScramError::Mismatch("channel binding")),
                "{c}"
            );
        }
    }

    #[test]
    fn proof_tampering_is_invalid_proof() {
        let (mut server, client_final) = after_first(ScramVerifier::from_password("pw"), "pw");
        let text = std::str::from_utf8(&client_final).unwrap();
        let proof = BASE64.decode(text.rsplit_once(",p=").unwrap().1).unwrap();
        let mut flipped = proof.clone();
        flipped[0] ^= 1;
        let tampered = replace_attr(&client_final, "p=", &BASE64.encode(flipped));
        assert_eq!(
            server.client_final(&tampered),
            Err(ScramError::InvalidProof)
        );
    }

    #[test]
    fn channel_binding_requests_without_support_are_refused() {
        let verifier = ScramVerifier::from_password("pw");
        let mut server = ScramServer::new(verifier.clone());
        assert_eq!(
            server.client_first(SCRAM_SHA_256, b"p=tls-server-end-point,,n=,r=abc"),
            Err(ScramError::ChannelBindingUnsupported)
        );
        let mut server = ScramServer::new(verifier.clone());
        assert_eq!(
            server.client_first(SCRAM_SHA_256_PLUS, b"p=tls-server-end-point,,n=,r=abc"),
            Err(ScramError::UnsupportedMechanism(
                "SCRAM-SHA-256-PLUS".into()
            ))
        );
        let mut server = ScramServer::new(verifier);
        assert_eq!(
            server.client_first("SCRAM-SHA-1", b"n,,n=,r=abc"),
            Err(ScramError::UnsupportedMechanism("SCRAM-SHA-1".into()))
        );
        let mut server = ScramServer::new(ScramVerifier::from_password("pw"));
        let long = "é".repeat(100);
        let Err(ScramError::UnsupportedMechanism(echoed)) =
            server.client_first(&long, b"n,,n=,r=abc")
        else {
            panic!("expected UnsupportedMechanism");
        };
        assert!(echoed.len() <= MAX_ECHOED_MECHANISM);
    }

    #[test]
    fn channel_binding_exchange() {
        let cert_hash = sha256(b"pretend this is a DER certificate").to_vec();
        let verifier = ScramVerifier::from_password("pw");
        let mut server = ScramServer::with_channel_binding(verifier.clone(), cert_hash.clone());
        assert_eq!(
            server.mechanisms(),
            &["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]
        );
        let binding = ChannelBinding::tls_server_end_point(cert_hash.clone());
        assert_eq!(
            exchange_with(&mut server, SCRAM_SHA_256_PLUS, "pw", binding),
            Ok(())
        );

        // Wrong password with binding.
        let mut server = ScramServer::with_channel_binding(verifier.clone(), cert_hash.clone());
        let binding = ChannelBinding::tls_server_end_point(cert_hash.clone());
        assert_eq!(
            exchange_with(&mut server, SCRAM_SHA_256_PLUS, "nope", binding),
            Err(ScramError::InvalidProof)
        );

        // A different certificate (man in the middle) is a channel-binding mismatch.
        let mut server = ScramServer::with_channel_binding(verifier.clone(), cert_hash.clone());
        let binding =
            ChannelBinding::tls_server_end_point(sha256(b"attacker's certificate").to_vec());
        assert_eq!(
            exchange_with(&mut server, SCRAM_SHA_256_PLUS, "pw", binding),
            Err(ScramError::Mismatch("channel binding"))
        );

        // "y": the client thinks we do not offer binding, but we do: downgrade.
        let mut server = ScramServer::with_channel_binding(verifier.clone(), cert_hash.clone());
        assert_eq!(
            server.client_first(SCRAM_SHA_256, b"y,,n=,r=abc"),
            Err(ScramError::Mismatch("channel binding negotiation"))
        );
        // "n" with plain SCRAM is still fine on a binding-capable server.
        let mut server = ScramServer::with_channel_binding(verifier.clone(), cert_hash.clone());
        assert_eq!(
            exchange(&mut server, "pw", ChannelBinding::unsupported()),
            Ok(())
        );
        // -PLUS without binding data, an unknown binding type, or p= with plain SCRAM.
        let cases: [(&str, &[u8]); 4] = [
            (SCRAM_SHA_256_PLUS, b"n,,n=,r=abc"),
            (SCRAM_SHA_256_PLUS, b"y,,n=,r=abc"),
            (SCRAM_SHA_256_PLUS, b"p=tls-unique,,n=,r=abc"),
            (SCRAM_SHA_256, b"p=tls-server-end-point,,n=,r=abc"),
        ];
        for (mechanism, first) in cases {
            let mut server = ScramServer::with_channel_binding(verifier.clone(), cert_hash.clone());
            assert!(
                server.client_first(mechanism, first).is_err(),
                "{mechanism} {first:?}"
            );
        }
    }

    #[test]
    fn server_first_nonce_is_printable_and_extends_client_nonce() {
        let mut server = ScramServer::new(ScramVerifier::from_password("pw"));
        let reply = server
            .client_first(SCRAM_SHA_256, b"n,,n=,r=clientnonce")
            .unwrap();
        let text = String::from_utf8(reply).unwrap();
        let nonce = text.strip_prefix("r=").unwrap().split(',').next().unwrap();
        assert!(nonce.starts_with("clientnonce"));
        assert!(nonce.len() >= "clientnonce".len() + 24);
        assert!(is_printable(nonce.as_bytes()));
    }

    #[test]
    fn malformed_client_first_is_rejected() {
        let cases: &[&[u8]] = &[
            b"",
            b"n",
            b"n,",
            b"n,,",
            b"x,,n=,r=abc",
            b"p=,,n=,r=abc",
            b"p=bad name,,n=,r=abc",
            b"n,b=x,n=,r=abc",
            b"n,,r=abc",
            b"n,,n=",
            b"n,,n=,",
            b"n,,n=,r=",
            b"n,,n=,r=a b",
            b"n,,n=,r=\xff",
            b"n,,n=,x=abc",
            b"n,,m=ext,n=,r=abc",
            b"n,,n=,r=abc,",
            b"n,,n=,r=abc,x=ext",
            b"n,,n=,r=abc,m=ext",
        ];
        for &first in cases {
            let mut server = ScramServer::new(ScramVerifier::from_password_with("pw", b"s", 1));
            assert!(
                matches!(
                    server.client_first(SCRAM_SHA_256, first),
                    Err(ScramError::Malformed(_))
                ),
                "{first:?}"
            );
            assert_eq!(
                server.client_final(b"c=biws,r=abc,p=AAAA"),
                Err(ScramError::OutOfOrder)
            );
        }
    }

    #[test]
    fn malformed_client_final_is_rejected() {
        let (_, good) = after_first(ScramVerifier::from_password_with("pw", b"s", 1), "pw");
        let text = std::str::from_utf8(&good).unwrap().to_owned();
        let without_proof = text.rsplit_once(",p=").unwrap().0.to_owned();
        let cases = [
            String::new(),
            without_proof.clone(),
            format!("{without_proof},p="),
            format!("{without_proof},p=AAAA"),
            format!("{without_proof},p=!!!!"),
            format!("{without_proof},x=1,{}", &text[without_proof.len() + 1..]),
            format!("{text},x=1"),
            format!("{text},"),
            text.replacen("c=", "x=", 1),
            text.replacen("c=", "c=!", 1),
        ];
        for last in cases {
            let (mut server, _) =
                after_first(ScramVerifier::from_password_with("pw", b"s", 1), "pw");
            assert!(
                matches!(
                    server.client_final(last.as_bytes()),
                    Err(ScramError::Malformed(_))
                ),
                "{last:?}"
            );
        }
    }

    #[test]
    fn client_final_before_client_first_is_out_of_order() {
        let mut server = ScramServer::new(ScramVerifier::from_password_with("pw", b"s", 1));
        assert_eq!(
            server.client_final(b"c=biws,r=abc,p=AAAA"),
            Err(ScramError::OutOfOrder)
        );
        assert_eq!(
            server.client_first(SCRAM_SHA_256, b"n,,n=,r=abc").err(),
            Some(ScramError::OutOfOrder)
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn arbitrary_client_first_never_panics(data in proptest::collection::vec(any::<u8>(), 0..128)) {
            let mut server = ScramServer::new(ScramVerifier::from_password_with("pw", b"s", 1));
            let _ = server.client_first(SCRAM_SHA_256, &data);
            let _ = server.client_final(&data);
        }

        #[test]
        fn arbitrary_gs2_like_client_first_never_panics(data in "[nyp=a-z,]{0,8}(n=[^,]{0,4},)?(r=[ -~]{0,8})?(,[a-z]=.{0,4})?") {
            let mut server = ScramServer::new(ScramVerifier::from_password_with("pw", b"s", 1));
            let _ = server.client_first(SCRAM_SHA_256, data.as_bytes());
        }

        #[test]
        fn arbitrary_client_final_never_panics(data in proptest::collection::vec(any::<u8>(), 0..160)) {
            let (mut server, _) = after_first(ScramVerifier::from_password_with("pw", b"s", 1), "pw");
            prop_assert!(server.client_final(&data).is_err());
        }

        #[test]
        fn mutated_client_final_fails_cleanly(index in 0usize..200, byte in any::<u8>()) {
            let (mut server, good) = after_first(ScramVerifier::from_password_with("pw", b"s", 1), "pw");
            let mut data = good.clone();
            let i = index % data.len();
            prop_assume!(data[i] != byte);
            data[i] = byte;
            // Base64 padding bits aside, any change must be refused.
            let result = server.client_final(&data);
            prop_assert!(result.is_err(), "{:?} accepted", String::from_utf8_lossy(&data));
        }

        #[test]
        fn structured_client_final_never_panics(c in "[A-Za-z0-9+/=]{0,12}", r in "[!-~]{0,40}", p in "[A-Za-z0-9+/=]{0,48}") {
            let (mut server, _) = after_first(ScramVerifier::from_password_with("pw", b"s", 1), "pw");
            let data = format!("c={c},r={r},p={p}");
            prop_assert!(server.client_final(data.as_bytes()).is_err());
        }
    }
}
