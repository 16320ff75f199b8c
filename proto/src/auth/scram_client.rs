//! The client side of SCRAM-SHA-256 from keys instead of a password: SCRAM pass-through.
//!
//! A pooler that holds only a user's SCRAM secret (StoredKey, ServerKey) cannot compute a proof
//! for the server: that needs ClientKey. But a client that logs in to the pooler proves it knows
//! ClientKey, and the pooler recovers it from the proof (ClientKey = ClientProof XOR
//! ClientSignature, [`super::ScramServer::client_key`]). With ClientKey and ServerKey the pooler
//! can log in to a server that stores the *same* secret: the salt and iteration count the server
//! sends must be the secret's own, or the keys do not fit. [`KeyClient`] checks that first and
//! says so ([`KeyClientError::OtherSecret`]) rather than sending a proof bound to fail.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::constant_time_eq;
use super::scram::{ScramVerifier, hmac, sha256};

/// Keys to log in with, and the secret they belong to.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramKeys {
    pub client_key: [u8; 32],
    pub server_key: [u8; 32],
    pub salt: Vec<u8>,
    pub iterations: u32,
}

impl ScramKeys {
    /// The keys of `verifier` with the ClientKey a client proved; `None` if the ClientKey does
    /// not belong to it.
    pub fn new(verifier: &ScramVerifier, client_key: [u8; 32]) -> Option<ScramKeys> {
        constant_time_eq(&sha256(&client_key), &verifier.stored_key).then(|| ScramKeys {
            client_key,
            server_key: verifier.server_key,
            salt: verifier.salt.clone(),
            iterations: verifier.iterations,
        })
    }
}

impl std::fmt::Debug for ScramKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScramKeys(..)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyClientError {
    #[error(
        "the server's SCRAM secret is not the one sluice holds (salt or iteration count differ); \
         SCRAM pass-through needs the same secret on both"
    )]
    OtherSecret,
    #[error("malformed SCRAM message from the server: {0}")]
    Malformed(&'static str),
    #[error("the server's SCRAM signature is wrong")]
    BadServerSignature,
    #[error("SCRAM message out of order")]
    OutOfOrder,
}

/// One SCRAM-SHA-256 login (no channel binding) with [`ScramKeys`].
pub struct KeyClient {
    keys: ScramKeys,
    nonce: String,
    /// The server signature to expect, once the proof is sent.
    expected: Option<[u8; 32]>,
}

impl KeyClient {
    pub fn new(keys: ScramKeys) -> KeyClient {
        let mut raw = [0u8; 18];
        rand::fill(&mut raw[..]);
        KeyClient {
            keys,
            nonce: BASE64.encode(raw),
            expected: None,
        }
    }

    /// The client-first-message for SASLInitialResponse.
    pub fn client_first(&self) -> Vec<u8> {
        format!("n,,n=,r={}", self.nonce).into_bytes()
    }

    /// Takes the server-first-message; returns the client-final-message.
    pub fn server_first(&mut self, data: &[u8]) -> Result<Vec<u8>, KeyClientError> {
        use KeyClientError::Malformed;
        let text = std::str::from_utf8(data).map_err(|_| Malformed("not UTF-8"))?;
        let mut parts = text.split(',');
        let nonce = parts
            .next()
            .and_then(|p| p.strip_prefix("r="))
            .ok_or(Malformed("expected nonce"))?;
        let salt = parts
            .next()
            .and_then(|p| p.strip_prefix("s="))
            .and_then(|s| BASE64.decode(s).ok())
            .ok_or(Malformed("expected salt"))?;
        let iterations: u32 = parts
            .next()
            .and_then(|p| p.strip_prefix("i="))
            .and_then(|i| i.parse().ok())
            .ok_or(Malformed("expected iteration count"))?;
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err(Malformed("server nonce does not extend ours"));
        }
        if salt != self.keys.salt || iterations != self.keys.iterations {
            return Err(KeyClientError::OtherSecret);
        }
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("n=,r={},{text},{without_proof}", self.nonce);
        let stored_key = sha256(&self.keys.client_key);
        let signature = hmac(&stored_key, &[auth_message.as_bytes()]);
        let mut proof = self.keys.client_key;
        for (p, s) in proof.iter_mut().zip(signature) {
            *p ^= s;
        }
        self.expected = Some(hmac(&self.keys.server_key, &[auth_message.as_bytes()]));
        Ok(format!("{without_proof},p={}", BASE64.encode(proof)).into_bytes())
    }

    /// Checks the server-final-message.
    pub fn server_final(&self, data: &[u8]) -> Result<(), KeyClientError> {
        let expected = self.expected.ok_or(KeyClientError::OutOfOrder)?;
        let v = data
            .strip_prefix(b"v=")
            .and_then(|v| BASE64.decode(v).ok())
            .ok_or(KeyClientError::Malformed("expected server signature"))?;
        if constant_time_eq(&v, &expected) {
            Ok(())
        } else {
            Err(KeyClientError::BadServerSignature)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::ScramServer;

    /// A client logs in to a ScramServer with its password; the key recovered from its proof
    /// logs in to another ScramServer holding the same verifier, and fails against another.
    #[test]
    fn recovered_client_key_logs_in_to_a_server_with_the_same_secret() {
        let verifier = ScramVerifier::from_password_with("pencil", b"0123456789abcdef", 4096);
        // The "client" side, through postgres-protocol.
        let mut front = ScramServer::new(verifier.clone());
        let mut client = postgres_protocol::authentication::sasl::ScramSha256::new(
            b"pencil",
            postgres_protocol::authentication::sasl::ChannelBinding::unsupported(),
        );
        let sf = front
            .client_first("SCRAM-SHA-256", client.message())
            .unwrap();
        client.update(&sf).unwrap();
        let fin = front.client_final(client.message()).unwrap();
        client.finish(&fin).unwrap();
        let key = front.client_key().expect("recovered");
        let keys = ScramKeys::new(&verifier, key).expect("the key fits the verifier");

        // Pass-through to a "server" with the same secret.
        let mut server = ScramServer::new(verifier.clone());
        let mut kc = KeyClient::new(keys.clone());
        let sf = server
            .client_first("SCRAM-SHA-256", &kc.client_first())
            .unwrap();
        let cf = kc.server_first(&sf).unwrap();
        let v = server
            .client_final(&cf)
            .expect("the server accepts the proof");
        kc.server_final(&v).unwrap();
        assert!(kc.server_final(b"v=AAAA").is_err());

        // Same password, other salt: refused before any proof is sent.
        let other = ScramVerifier::from_password_with("pencil", b"fedcba9876543210", 4096);
        let mut server = ScramServer::new(other.clone());
        let mut kc = KeyClient::new(keys);
        let sf = server
            .client_first("SCRAM-SHA-256", &kc.client_first())
            .unwrap();
        assert_eq!(kc.server_first(&sf), Err(KeyClientError::OtherSecret));
        // And a key for another verifier is not taken.
        assert!(ScramKeys::new(&other, key).is_none());
    }
}
