//! Target `auth`: a client's side of login fed to sluice's password checks, as sluice's login runs
//! them: startup packets, then PasswordMessage / SASLInitialResponse / SASLResponse bodies for an
//! md5 check or a `ScramServer`, against each kind of configured secret (or none: the mock
//! verifier of an unknown user). A third mode parses the input as a configured secret.
//!
//! The first byte chooses; the rest is the client's byte stream (or the secret text):
//! - bits 0-1: 0 md5 login, 2 secret parsing, 1 or 3 SCRAM login;
//! - bits 2-3: the user's secret: 0 plain text, 1 md5 hash (bit 5: in upper case), 2 SCRAM
//!   verifier, 3 none (unknown user);
//! - bit 4: the SCRAM server offers channel binding (SCRAM-SHA-256-PLUS);
//! - the md5 salt is derived from the whole byte.
//!
//! A fuzzer cannot guess a hash or a random server nonce, so the harness fills in markers: an md5
//! response of `*` becomes the right response for [`PASSWORD`]; in a client-final-message the
//! attributes `c=*`, `r=*` and `p=*` become the channel-binding input the server expects (from the
//! client's own gs2 header), the nonce the server sent, and the right proof for [`PASSWORD`].
//!
//! Invariants: an md5 check passes exactly when the response is the right one and the secret is
//! plain text or an md5 hash; a SCRAM exchange succeeds only with the right proof against a real
//! verifier (never the mock one, never an md5 hash), always succeeds for `c=*,r=*,p=*` against a
//! real verifier, and then signs with the right server signature; the server-first-message extends
//! the client's nonce; once an exchange has failed or ended, every later message is out of order;
//! secrets parse as pg_authid's forms do and SCRAM verifiers round-trip through their string form.

use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::{Bytes, BytesMut};
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use sluice_proto::auth::md5::{md5_secret, verify_md5_response};
use sluice_proto::auth::{PasswordSecret, ScramError, ScramServer, ScramVerifier, SecretError};
use sluice_proto::frontend::{PasswordMessage, SaslInitialResponse, SaslResponse};
use sluice_proto::startup::{StartupPacket, split_startup};
use sluice_proto::{MAX_STARTUP_LEN, split_message};

/// The configured password of the fuzzed user.
pub const PASSWORD: &str = "pencil";
/// Salt and iteration count of its SCRAM verifier (few iterations: this runs millions of times).
const SALT: &[u8] = b"sluice-fuzz-salt";
const ITERATIONS: u32 = 2;
/// What a TLS server certificate's hash stands in for when channel binding is offered.
const CERT_HASH: &[u8] = b"certificate hash";
/// The server-private value the mock verifier of an unknown user is derived from.
const MOCK_SECRET: &[u8] = b"mock secret";

const SCRAM_SHA_256: &str = "SCRAM-SHA-256";
const SCRAM_SHA_256_PLUS: &str = "SCRAM-SHA-256-PLUS";

pub fn run(data: &[u8]) {
    let Some((&cfg, rest)) = data.split_first() else {
        return;
    };
    match cfg & 0b11 {
        0 => login(cfg, rest),
        2 => secret_text(rest),
        _ => login(cfg, rest),
    }
}

/// Which secret the user has, from bits 2-3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Plain,
    Md5,
    Scram,
    Unknown,
}

fn login(cfg: u8, stream: &[u8]) {
    let mut buf = BytesMut::from(stream);
    // The startup phase as sluice's login runs it: SSLRequest and GSSENCRequest are answered 'N'
    // and the client goes on in plain text; a cancel request ends the connection.
    let user = loop {
        match split_startup(&mut buf) {
            Ok(Some(StartupPacket::SslRequest | StartupPacket::GssEncRequest)) => continue,
            Ok(Some(p @ StartupPacket::Startup { .. })) => match p.param("user") {
                Some(u) if !u.is_empty() => break u.to_owned(),
                _ => return,
            },
            Ok(Some(StartupPacket::Cancel { .. }) | None) | Err(_) => return,
        }
    };
    let kind = [Kind::Plain, Kind::Md5, Kind::Scram, Kind::Unknown][usize::from(cfg >> 2 & 0b11)];
    if cfg & 0b11 == 0 {
        md5_login(cfg, kind, &user, &mut buf);
    } else {
        scram_login(cfg & 0x10 != 0, kind, &user, &mut buf);
    }
}

/// The next message, if it is a whole password-family message under sluice's startup cap.
fn read_password(buf: &mut BytesMut) -> Option<Bytes> {
    match split_message(buf, MAX_STARTUP_LEN) {
        Ok(Some(m)) if m.tag == b'p' => Some(m.body),
        _ => None,
    }
}

fn md5_login(cfg: u8, kind: Kind, user: &str, buf: &mut BytesMut) {
    let salt = [cfg, cfg.rotate_left(3), 0x5a ^ cfg, 0xa5];
    let secret = match kind {
        Kind::Plain => Some(PasswordSecret::Plain(PASSWORD.to_owned())),
        Kind::Md5 => {
            let hash = md5_secret(PASSWORD, user);
            Some(PasswordSecret::Md5(if cfg & 0x20 != 0 {
                format!("md5{}", hash[3..].to_ascii_uppercase())
            } else {
                hash
            }))
        }
        Kind::Scram => Some(PasswordSecret::Scram(keys().stored.clone())),
        Kind::Unknown => None,
    };
    let Some(body) = read_password(buf) else {
        return;
    };
    let Ok(msg) = PasswordMessage::decode(&body) else {
        return;
    };
    let right =
        postgres_protocol::authentication::md5_hash(user.as_bytes(), PASSWORD.as_bytes(), salt);
    let response = if msg.password == b"*" {
        right.as_bytes()
    } else {
        msg.password
    };
    let ok = secret
        .as_ref()
        .is_some_and(|s| verify_md5_response(user, s, salt, response));
    let expected = matches!(kind, Kind::Plain | Kind::Md5) && response == right.as_bytes();
    assert_eq!(ok, expected, "md5 check of {response:?} against {kind:?}");
}

/// The fuzzed user's SCRAM keys, derived once, and checked against sluice's own derivation.
struct Keys {
    /// The verifier derived from [`PASSWORD`].
    plain: ScramVerifier,
    /// The same, parsed back from its pg_authid string.
    stored: ScramVerifier,
    client_key: [u8; 32],
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let plain = ScramVerifier::from_password_with(PASSWORD, SALT, ITERATIONS);
        let stored = ScramVerifier::parse(&plain.to_secret_string()).expect("round trip");
        assert!(stored == plain);
        // PBKDF2-HMAC-SHA-256 with one block, written out here so the harness does not trust the
        // code under test for the keys it checks that code with.
        let mut u = hmac(PASSWORD.as_bytes(), &[SALT, &1u32.to_be_bytes()]);
        let mut salted = u;
        for _ in 1..ITERATIONS {
            u = hmac(PASSWORD.as_bytes(), &[&u]);
            salted.iter_mut().zip(u).for_each(|(s, u)| *s ^= u);
        }
        let client_key = hmac(&salted, &[b"Client Key"]);
        assert_eq!(Sha256::digest(client_key)[..], plain.stored_key[..]);
        assert_eq!(hmac(&salted, &[b"Server Key"]), plain.server_key);
        Keys {
            plain,
            stored,
            client_key,
        }
    })
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

fn scram_login(binding: bool, kind: Kind, user: &str, buf: &mut BytesMut) {
    // As sluice: a user without a SCRAM verifier gets the mock one, and the exchange fails at the end.
    let (verifier, real) = match kind {
        Kind::Plain => (keys().plain.clone(), true),
        Kind::Scram => (keys().stored.clone(), true),
        Kind::Md5 | Kind::Unknown => (ScramVerifier::mock(user, MOCK_SECRET), false),
    };
    let mut server = if binding {
        ScramServer::with_channel_binding(verifier.clone(), CERT_HASH.to_vec())
    } else {
        ScramServer::new(verifier.clone())
    };
    let offered: &[&str] = if binding {
        &[SCRAM_SHA_256_PLUS, SCRAM_SHA_256]
    } else {
        &[SCRAM_SHA_256]
    };
    assert_eq!(server.mechanisms(), offered);

    let Some(body) = read_password(buf) else {
        return;
    };
    let Ok(first) = SaslInitialResponse::decode(&body) else {
        return;
    };
    let data = first.data.unwrap_or(&[]);
    let server_first = match server.client_first(first.mechanism, data) {
        Ok(s) => s,
        Err(e) => {
            if let ScramError::UnsupportedMechanism(m) = &e {
                assert!(!offered.contains(&first.mechanism));
                assert!(first.mechanism.starts_with(m.as_str()) && m.len() <= 64);
            }
            assert_eq!(
                server.client_final(b"c=biws,r=x,p=x"),
                Err(ScramError::OutOfOrder)
            );
            return;
        }
    };
    assert!(offered.contains(&first.mechanism));

    // The gs2 header is everything up to the second comma; the bare message ends with `,r=nonce`.
    let second_comma = data
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b',')
        .nth(1)
        .map(|(i, _)| i)
        .expect("an accepted client-first has a gs2 header");
    let (gs2, bare) = data.split_at(second_comma + 1);
    let client_nonce = bare
        .split(|b| *b == b',')
        .nth(1)
        .and_then(|a| a.strip_prefix(b"r="))
        .expect("an accepted client-first has a nonce");
    let nonce = check_server_first(&server_first, client_nonce, &verifier);

    let Some(body) = read_password(buf) else {
        return;
    };
    let fin = SaslResponse::decode(&body).expect("any body").data;
    let cbind = if gs2.starts_with(b"p=") {
        [gs2, CERT_HASH].concat()
    } else {
        gs2.to_vec()
    };
    let auth_prefix = [bare, b",", &server_first, b","].concat();
    let (fin, proof_filled) = fill_markers(fin, &cbind, nonce, &auth_prefix);
    let canonical = body[..] == b"c=*,r=*,p=*"[..];
    match server.client_final(&fin) {
        Ok(server_final) => {
            assert!(
                real && proof_filled,
                "authenticated without the password's proof ({kind:?})"
            );
            let expected_start = [
                b"c=",
                BASE64.encode(&cbind).as_bytes(),
                b",r=",
                nonce,
                b",p=",
            ]
            .concat();
            assert!(
                fin.starts_with(&expected_start),
                "accepted a wrong binding or nonce"
            );
            let cut = fin
                .iter()
                .rposition(|b| *b == b',')
                .expect("three attributes");
            let without_proof = &fin[..cut];
            let signature = hmac(&verifier.server_key, &[&auth_prefix, without_proof]);
            let expected = [b"v=", BASE64.encode(signature).as_bytes()].concat();
            assert_eq!(server_final, expected, "server signature");
        }
        Err(e) => assert!(
            !(real && canonical),
            "the right client-final was refused: {e}"
        ),
    }
    assert_eq!(server.client_final(&fin), Err(ScramError::OutOfOrder));
    assert_eq!(
        server.client_first(first.mechanism, data),
        Err(ScramError::OutOfOrder)
    );
}

/// `r=<client nonce><24 base64 chars>,s=<salt>,i=<iterations>`; returns the whole nonce.
fn check_server_first<'a>(msg: &'a [u8], client_nonce: &[u8], v: &ScramVerifier) -> &'a [u8] {
    let tail = format!(",s={},i={}", BASE64.encode(&v.salt), v.iterations);
    let nonce = msg
        .strip_prefix(b"r=")
        .and_then(|m| m.strip_suffix(tail.as_bytes()))
        .expect("server-first-message shape");
    assert_eq!(nonce.len(), client_nonce.len() + 24);
    assert!(nonce.starts_with(client_nonce));
    assert!(
        nonce
            .iter()
            .all(|b| (0x21..=0x7e).contains(b) && *b != b',')
    );
    nonce
}

/// Replaces the attributes `c=*`, `r=*` and `p=*` of a client-final-message (see the module doc);
/// returns the message and whether the proof was filled in.
fn fill_markers(fin: &[u8], cbind: &[u8], nonce: &[u8], auth_prefix: &[u8]) -> (Vec<u8>, bool) {
    let mut out = Vec::with_capacity(fin.len() + 64);
    let mut proof_filled = false;
    for (i, attr) in fin.split(|b| *b == b',').enumerate() {
        if i > 0 {
            out.push(b',');
        }
        match attr {
            b"c=*" => out.extend_from_slice(format!("c={}", BASE64.encode(cbind)).as_bytes()),
            b"r=*" => {
                out.extend_from_slice(b"r=");
                out.extend_from_slice(nonce);
            }
            b"p=*" => {
                let without_proof = &out[..out.len().saturating_sub(1)];
                let signature = hmac(&keys().plain.stored_key, &[auth_prefix, without_proof]);
                let mut proof = keys().client_key;
                proof.iter_mut().zip(signature).for_each(|(p, s)| *p ^= s);
                out.extend_from_slice(format!("p={}", BASE64.encode(proof)).as_bytes());
                proof_filled = true;
            }
            other => out.extend_from_slice(other),
        }
    }
    (out, proof_filled)
}

/// A configured secret: recognised as pg_authid's forms are, and a SCRAM verifier round-trips.
fn secret_text(rest: &[u8]) {
    let s = String::from_utf8_lossy(rest);
    let md5_like = s.len() == 35 && s.starts_with("md5");
    let md5_hex = md5_like && s.as_bytes()[3..].iter().all(u8::is_ascii_hexdigit);
    let scram_like = s.starts_with("SCRAM-SHA-256$");
    let parsed = PasswordSecret::parse(&s);
    match &parsed {
        Ok(PasswordSecret::Plain(p)) => assert!(*p == s && !md5_like && !scram_like),
        Ok(PasswordSecret::Md5(h)) => assert!(md5_hex && *h == s.to_ascii_lowercase()),
        Ok(PasswordSecret::Scram(v)) => {
            assert!(scram_like && v.iterations >= 1 && !v.salt.is_empty());
            assert_eq!(
                ScramVerifier::parse(&v.to_secret_string()).as_ref(),
                Some(v)
            );
            assert_eq!(ScramVerifier::parse(&s).as_ref(), Some(v));
            let shown = format!("{v:?}");
            assert!(!shown.contains(&BASE64.encode(v.stored_key)));
            assert!(!shown.contains(&BASE64.encode(v.server_key)));
        }
        Err(SecretError::MalformedMd5) => assert!(md5_like && !md5_hex),
        Err(SecretError::MalformedScram) => {
            assert!(scram_like && ScramVerifier::parse(&s).is_none())
        }
    }
    if let Ok(secret) = &parsed {
        let shown = format!("{secret:?}");
        assert!(shown.ends_with("(..)"), "Debug shows no secret: {shown}");
        assert_eq!(
            secret.plain().is_some(),
            matches!(secret, PasswordSecret::Plain(_))
        );
    }
    let mock = ScramVerifier::mock(&s, rest);
    assert!(mock == ScramVerifier::mock(&s, rest) && mock.salt.len() == 16);
}
