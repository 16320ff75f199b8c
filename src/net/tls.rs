//! TLS contexts from PEM files: the acceptor for client connections and the connector for server
//! connections (rustls, with the `ring` crypto provider: see `Cargo.toml`).
//!
//! Owns: reading certificates, keys and CA files, building rustls configs, the handshakes.
//! Must not: know the PostgreSQL protocol (the SSLRequest exchange is `client/tls.rs` and
//! `server/tls.rs`) or the config file (callers pass paths and flags).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio_rustls::rustls::client::WebPkiServerVerifier;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::{CryptoProvider, ring};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio_rustls::rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use tokio_rustls::rustls::{
    self, CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig,
    SignatureScheme,
};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::Stream;

/// The ALPN protocol name PostgreSQL 17 uses (required for direct TLS).
pub const ALPN_POSTGRESQL: &[u8] = b"postgresql";

/// Which file a problem is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum File {
    Cert,
    Key,
    Ca,
}

/// A certificate, key or CA file that cannot be used, and why.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{path}: {why}")]
pub struct FileError {
    pub file: File,
    pub path: String,
    pub why: String,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

fn certs(path: &Path, file: File) -> Result<Vec<CertificateDer<'static>>, FileError> {
    let err = |why: String| FileError {
        file,
        path: path.display().to_string(),
        why,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no PEM certificate in the file".into()));
    }
    Ok(certs)
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>, FileError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| FileError {
        file: File::Key,
        path: path.display().to_string(),
        why: e.to_string(),
    })
}

fn roots(path: &Path) -> Result<Arc<RootCertStore>, FileError> {
    let mut store = RootCertStore::empty();
    let (_, bad) = store.add_parsable_certificates(certs(path, File::Ca)?);
    if store.is_empty() {
        return Err(FileError {
            file: File::Ca,
            path: path.display().to_string(),
            why: format!("no usable CA certificate ({bad} could not be parsed)"),
        });
    }
    Ok(Arc::new(store))
}

/// Files of one side: certificate chain and key (both or neither on the server side), CA.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Files {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub ca: Option<PathBuf>,
}

/// The client side: what accepting a TLS client needs.
#[derive(Clone)]
pub struct Acceptor {
    pub acceptor: TlsAcceptor,
    /// `tls-server-end-point` hash of sluice's certificate (SCRAM-SHA-256-PLUS); `None` when its
    /// signature algorithm defines none (Ed25519).
    pub end_point: Option<Arc<[u8]>>,
    /// Client certificates are asked for (and checked against the CA file) when one is given.
    pub asks_client_cert: bool,
}

impl std::fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acceptor")
            .field("channel_binding", &self.end_point.is_some())
            .field("asks_client_cert", &self.asks_client_cert)
            .finish_non_exhaustive()
    }
}

/// Builds the acceptor for client connections: `cert` and `key` required; with `ca`, client
/// certificates are asked for and must chain to it (and must be given when `require_client_cert`).
pub fn acceptor(files: &Files, require_client_cert: bool) -> Result<Acceptor, FileError> {
    let missing = |file| FileError {
        file,
        path: String::new(),
        why: "not set".into(),
    };
    let cert_path = files.cert.as_deref().ok_or_else(|| missing(File::Cert))?;
    let key_path = files.key.as_deref().ok_or_else(|| missing(File::Key))?;
    let chain = certs(cert_path, File::Cert)?;
    let key = key(key_path)?;
    let end_point = super::x509::end_point_hash(&chain[0]).map(Arc::from);
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports TLS 1.2 and 1.3");
    let builder = match &files.ca {
        Some(ca) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(roots(ca)?, provider());
            let verifier = if require_client_cert {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            let verifier = verifier.build().map_err(|e| FileError {
                file: File::Ca,
                path: ca.display().to_string(),
                why: e.to_string(),
            })?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| FileError {
            file: File::Key,
            path: key_path.display().to_string(),
            why: format!("does not go with {}: {e}", cert_path.display()),
        })?;
    config.alpn_protocols = vec![ALPN_POSTGRESQL.to_vec()];
    // libpq never resumes a session: tickets and a session cache would only cost memory and CPU.
    config.send_tls13_tickets = 0;
    config.session_storage = Arc::new(NoServerSessionStorage {});
    Ok(Acceptor {
        acceptor: TlsAcceptor::from(Arc::new(config)),
        end_point,
        asks_client_cert: files.ca.is_some(),
    })
}

impl Acceptor {
    /// The TLS handshake on an accepted client socket.
    pub async fn accept(&self, tcp: TcpStream) -> std::io::Result<Stream> {
        let tls = self.acceptor.accept(tcp).await?;
        Ok(Stream::from(tokio_rustls::TlsStream::Server(tls)))
    }
}

/// How much of a server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// Nothing (encryption only, as libpq's `require`).
    Nothing,
    /// The chain up to the CA file, not the host name.
    Ca,
    /// The chain and the host name.
    Full,
}

/// Builds the connector for server connections. `ca` is required unless `verify` is
/// [`Verify::Nothing`]; `cert` and `key`, both or neither, are sluice's client certificate.
pub fn connector(files: &Files, verify: Verify) -> Result<Arc<ClientConfig>, FileError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports TLS 1.2 and 1.3");
    let builder = match (verify, &files.ca) {
        (Verify::Nothing, _) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider()))),
        (_, None) => {
            return Err(FileError {
                file: File::Ca,
                path: String::new(),
                why: "not set".into(),
            });
        }
        (Verify::Full, Some(ca)) => builder.with_root_certificates(roots(ca)?),
        (Verify::Ca, Some(ca)) => {
            let inner = WebPkiServerVerifier::builder_with_provider(roots(ca)?, provider())
                .build()
                .map_err(|e| FileError {
                    file: File::Ca,
                    path: ca.display().to_string(),
                    why: e.to_string(),
                })?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(ChainOnly(inner)))
        }
    };
    let mut config = match (&files.cert, &files.key) {
        (Some(c), Some(k)) => builder
            .with_client_auth_cert(certs(c, File::Cert)?, key(k)?)
            .map_err(|e| FileError {
                file: File::Key,
                path: k.display().to_string(),
                why: format!("does not go with {}: {e}", c.display()),
            })?,
        _ => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![ALPN_POSTGRESQL.to_vec()];
    Ok(Arc::new(config))
}

/// The TLS handshake on a socket to a server (after its 'S' to an SSLRequest).
pub async fn connect(
    config: &Arc<ClientConfig>,
    host: &str,
    tcp: TcpStream,
) -> std::io::Result<Stream> {
    let name = ServerName::try_from(host.to_owned()).map_err(|e| {
        std::io::Error::other(format!("{host:?} is not a valid TLS server name: {e}"))
    })?;
    let tls = TlsConnector::from(config.clone())
        .connect(name, tcp)
        .await?;
    Ok(Stream::from(tokio_rustls::TlsStream::Client(tls)))
}

/// `server_tls_mode = require` / `prefer`: any certificate (the handshake signature is still
/// checked against it, so the connection is encrypted to whoever holds its key).
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to the CA file; the host name is not checked.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
