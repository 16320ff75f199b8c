//! Client authentication: the password exchange chosen for a user (trust, md5, password,
//! SCRAM-SHA-256, cert; `access.rs` chooses).

use bytes::BytesMut;
use sluice_proto::auth::{ScramError, ScramServer, ScramVerifier};
use sluice_proto::frontend::FrontendTag;
use sluice_proto::{backend, frontend, sqlstate};

use super::Fatal;
use super::login::read_message;
use crate::hba::Method;
use crate::net::Stream;
use crate::{Shared, UserAuth};

pub(super) fn password_failed(user: &str) -> Fatal {
    Fatal::new(
        sqlstate::INVALID_PASSWORD,
        format!("password authentication failed for user \"{user}\""),
    )
}

/// Runs the chosen password exchange. An unknown user gets the same exchange against a mock secret,
/// so the answer does not tell which users exist; it fails after the client's proof.
/// Returns the client's SCRAM ClientKey after a SCRAM exchange (for SCRAM pass-through).
/// `cert_cn`: the verified client certificate's CN (None without TLS or certificate).
/// `end_point`: over TLS, the `tls-server-end-point` hash of sluice's certificate, with which
/// SCRAM-SHA-256-PLUS (channel binding) is offered besides SCRAM-SHA-256.
#[allow(clippy::too_many_arguments)]
pub(super) async fn authenticate(
    shared: &Shared,
    stream: &mut Stream,
    buf: &mut BytesMut,
    out: &mut BytesMut,
    user: &str,
    auth: Option<&UserAuth>,
    method: Method,
    cert_cn: Option<&str>,
    end_point: Option<&[u8]>,
) -> Result<Option<[u8; 32]>, Fatal> {
    let max = sluice_proto::MAX_STARTUP_LEN;
    let expect_password = |m: Option<sluice_proto::RawMessage>| -> Result<bytes::Bytes, Fatal> {
        match m {
            Some(m) if m.tag == FrontendTag::Password.as_u8() => Ok(m.body),
            Some(m) => Err(Fatal::new(
                sqlstate::PROTOCOL_VIOLATION,
                format!(
                    "expected password response, got message type {}",
                    m.tag as char
                ),
            )),
            None => Err(Fatal::new(
                sqlstate::PROTOCOL_VIOLATION,
                "connection closed during authentication",
            )),
        }
    };
    let secret = auth.and_then(|a| a.secret.as_ref());
    // As PostgreSQL: md5 for a user whose secret is a SCRAM secret runs SCRAM.
    let method = match (method, secret) {
        (Method::Md5, Some(sluice_proto::auth::PasswordSecret::Scram(_))) => Method::ScramSha256,
        (m, _) => m,
    };
    match method {
        Method::Trust => Ok(None),
        Method::Reject => Err(Fatal::new(
            sqlstate::INVALID_AUTHORIZATION_SPECIFICATION,
            "pg_hba.conf rejects connection",
        )),
        Method::Cert => {
            if cert_cn == Some(user) {
                Ok(None)
            } else {
                Err(Fatal::new(
                    sqlstate::INVALID_AUTHORIZATION_SPECIFICATION,
                    format!("certificate authentication failed for user \"{user}\""),
                ))
            }
        }
        Method::Password => {
            backend::authentication_cleartext_password(out);
            stream.send(out).await?;
            out.clear();
            let body = expect_password(read_message(stream, buf, max).await?)?;
            let msg = frontend::PasswordMessage::decode(&body)
                .map_err(|e| Fatal::new(sqlstate::PROTOCOL_VIOLATION, e.to_string()))?;
            let given = String::from_utf8_lossy(msg.password);
            match secret {
                Some(s) if s.verify_plain(user, &given) => Ok(None),
                _ => Err(password_failed(user)),
            }
        }
        Method::Md5 => {
            let salt: [u8; 4] = rand::random();
            backend::authentication_md5_password(salt, out);
            stream.send(out).await?;
            out.clear();
            let body = expect_password(read_message(stream, buf, max).await?)?;
            let msg = frontend::PasswordMessage::decode(&body)
                .map_err(|e| Fatal::new(sqlstate::PROTOCOL_VIOLATION, e.to_string()))?;
            let ok = match auth.and_then(|a| a.secret.as_ref()) {
                Some(secret) => {
                    sluice_proto::auth::md5::verify_md5_response(user, secret, salt, msg.password)
                }
                None => false,
            };
            if ok {
                Ok(None)
            } else {
                Err(password_failed(user))
            }
        }
        Method::ScramSha256 => {
            let verifier = match auth.and_then(|a| a.scram.clone()) {
                Some(v) => v,
                None => ScramVerifier::mock(user, &shared.mock_secret),
            };
            let mut scram = match end_point {
                Some(hash) => ScramServer::with_channel_binding(verifier, hash.to_vec()),
                None => ScramServer::new(verifier),
            };
            backend::authentication_sasl(scram.mechanisms(), out);
            stream.send(out).await?;
            out.clear();
            let scram_err = |e: ScramError| match e {
                ScramError::InvalidProof => password_failed(user),
                ScramError::UnsupportedMechanism(_) | ScramError::ChannelBindingUnsupported => {
                    Fatal::new(sqlstate::FEATURE_NOT_SUPPORTED, e.to_string())
                }
                other => Fatal::new(
                    sqlstate::PROTOCOL_VIOLATION,
                    format!("malformed SCRAM message: {other}"),
                ),
            };
            let body = expect_password(read_message(stream, buf, max).await?)?;
            let first = frontend::SaslInitialResponse::decode(&body)
                .map_err(|e| Fatal::new(sqlstate::PROTOCOL_VIOLATION, e.to_string()))?;
            let server_first = scram
                .client_first(first.mechanism, first.data.unwrap_or(&[]))
                .map_err(scram_err)?;
            backend::authentication_sasl_continue(&server_first, out);
            stream.send(out).await?;
            out.clear();
            let body = expect_password(read_message(stream, buf, max).await?)?;
            let fin = frontend::SaslResponse::decode(&body)
                .map_err(|e| Fatal::new(sqlstate::PROTOCOL_VIOLATION, e.to_string()))?;
            let server_final = scram.client_final(fin.data).map_err(scram_err)?;
            if auth.is_none() {
                return Err(password_failed(user));
            }
            backend::authentication_sasl_final(&server_final, out);
            Ok(scram.client_key())
        }
    }
}
