//! TLS settings: `client_tls_*` and `server_tls_*` in `[pooler]` (PgBouncer's names and mode
//! meanings), `server_tls_*` overrides in `[databases.x]`, their checks, and the TLS contexts
//! built from the files ([`TlsContexts`], made when the config is loaded, so that a RELOAD with
//! a bad file is refused whole, naming the key, and the contexts in force stay).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio_rustls::rustls::ClientConfig;

use super::{Config, ConfigError, invalid};
use crate::net::tls::{self, Acceptor, File, FileError, Files, Verify};

/// `client_tls_mode`: what sluice accepts from clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientTlsMode {
    /// SSLRequest answered `N`; no TLS.
    #[default]
    Disable,
    /// TLS when the client asks; plain otherwise.
    Allow,
    /// The same as `allow` (PgBouncer's meaning: the server cannot prefer for the client).
    Prefer,
    /// TLS only: a plain login is refused (28000).
    Require,
    /// TLS with a client certificate that chains to `client_tls_ca_file`.
    VerifyCa,
    /// The same as `verify-ca` (a client certificate has no host name to check).
    VerifyFull,
}

impl ClientTlsMode {
    pub fn accepts_tls(self) -> bool {
        self != ClientTlsMode::Disable
    }

    /// A plain (non-TLS) login is refused.
    pub fn requires_tls(self) -> bool {
        matches!(
            self,
            ClientTlsMode::Require | ClientTlsMode::VerifyCa | ClientTlsMode::VerifyFull
        )
    }

    fn requires_client_cert(self) -> bool {
        matches!(self, ClientTlsMode::VerifyCa | ClientTlsMode::VerifyFull)
    }
}

/// `server_tls_mode`: how sluice connects to PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServerTlsMode {
    /// Plain TCP; no SSLRequest.
    #[default]
    Disable,
    /// TLS if the server accepts the SSLRequest, plain if it answers `N`; certificate not checked.
    Prefer,
    /// TLS or no connection; certificate not checked.
    Require,
    /// TLS; the certificate must chain to `server_tls_ca_file`.
    VerifyCa,
    /// TLS; the certificate must chain to `server_tls_ca_file` and name the database's `host`.
    VerifyFull,
}

impl fmt::Display for ServerTlsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ServerTlsMode::Disable => "disable",
            ServerTlsMode::Prefer => "prefer",
            ServerTlsMode::Require => "require",
            ServerTlsMode::VerifyCa => "verify-ca",
            ServerTlsMode::VerifyFull => "verify-full",
        })
    }
}

impl ServerTlsMode {
    fn verify(self) -> Verify {
        match self {
            ServerTlsMode::VerifyCa => Verify::Ca,
            ServerTlsMode::VerifyFull => Verify::Full,
            _ => Verify::Nothing,
        }
    }
}

/// How a pool's server connections use TLS.
#[derive(Debug, Clone, Default)]
pub struct ServerTls {
    pub mode: ServerTlsMode,
    /// `None` exactly when `mode` is `disable`.
    pub connector: Option<Arc<ClientConfig>>,
}

/// The TLS contexts of one loaded config.
#[derive(Debug, Default)]
pub struct TlsContexts {
    /// `None` when `client_tls_mode = disable`.
    pub client: Option<Acceptor>,
    /// `[pooler]`'s server side.
    pub server: ServerTls,
    /// Databases with `server_tls_*` keys of their own.
    pub server_by_db: BTreeMap<String, ServerTls>,
}

impl TlsContexts {
    /// The server side of `database`.
    pub fn server_for(&self, database: &str) -> &ServerTls {
        self.server_by_db.get(database).unwrap_or(&self.server)
    }
}

fn path(p: &Option<String>) -> Option<PathBuf> {
    p.as_ref().filter(|s| !s.is_empty()).map(PathBuf::from)
}

/// The error naming the key of `prefix` (`pooler.client_tls`) for the file at fault.
fn file_error(prefix: &str, e: FileError) -> ConfigError {
    let key = match e.file {
        File::Cert => "cert_file",
        File::Key => "key_file",
        File::Ca => "ca_file",
    };
    if e.path.is_empty() {
        invalid(format!("{prefix}_{key}"), e.why)
    } else {
        invalid(format!("{prefix}_{key}"), e.to_string())
    }
}

/// Checks the TLS keys and builds the contexts (reading the files).
pub fn load(config: &Config) -> Result<TlsContexts, ConfigError> {
    let p = &config.pooler;
    let mut out = TlsContexts::default();
    if p.client_tls_mode.accepts_tls() {
        let files = Files {
            cert: path(&p.client_tls_cert_file),
            key: path(&p.client_tls_key_file),
            ca: path(&p.client_tls_ca_file),
        };
        let why = |what: &str| {
            format!(
                "required by client_tls_mode = \"{}\" ({what})",
                serde_name(&p.client_tls_mode)
            )
        };
        if files.cert.is_none() {
            return Err(invalid(
                "pooler.client_tls_cert_file",
                why("sluice's certificate, PEM"),
            ));
        }
        if files.key.is_none() {
            return Err(invalid(
                "pooler.client_tls_key_file",
                why("the certificate's private key, PEM"),
            ));
        }
        let require_cert = p.client_tls_mode.requires_client_cert();
        if require_cert && files.ca.is_none() {
            return Err(invalid(
                "pooler.client_tls_ca_file",
                why("the CA that client certificates must chain to"),
            ));
        }
        out.client = Some(
            tls::acceptor(&files, require_cert).map_err(|e| file_error("pooler.client_tls", e))?,
        );
    }
    let pooler_files = Files {
        cert: path(&p.server_tls_cert_file),
        key: path(&p.server_tls_key_file),
        ca: path(&p.server_tls_ca_file),
    };
    out.server = server_side("pooler.server_tls", p.server_tls_mode, &pooler_files)?;
    for (name, db) in &config.databases {
        let own = db.server_tls_mode.is_some()
            || db.server_tls_ca_file.is_some()
            || db.server_tls_cert_file.is_some()
            || db.server_tls_key_file.is_some();
        if !own {
            continue;
        }
        let files = Files {
            cert: path(&db.server_tls_cert_file).or(pooler_files.cert.clone()),
            key: path(&db.server_tls_key_file).or(pooler_files.key.clone()),
            ca: path(&db.server_tls_ca_file).or(pooler_files.ca.clone()),
        };
        let mode = db.server_tls_mode.unwrap_or(p.server_tls_mode);
        let side = server_side(&format!("databases.{name}.server_tls"), mode, &files)?;
        out.server_by_db.insert(name.clone(), side);
    }
    Ok(out)
}

fn server_side(prefix: &str, mode: ServerTlsMode, files: &Files) -> Result<ServerTls, ConfigError> {
    if files.cert.is_some() != files.key.is_some() {
        let (given, missing) = if files.cert.is_some() {
            ("cert_file", "key_file")
        } else {
            ("key_file", "cert_file")
        };
        return Err(invalid(
            format!("{prefix}_{missing}"),
            format!("{prefix}_{given} is set: give both or neither"),
        ));
    }
    if mode == ServerTlsMode::Disable {
        return Ok(ServerTls::default());
    }
    if mode.verify() != Verify::Nothing && files.ca.is_none() {
        return Err(invalid(
            format!("{prefix}_ca_file"),
            format!(
                "required by server_tls_mode = \"{mode}\" (the CA the server's certificate must chain to)"
            ),
        ));
    }
    let connector = tls::connector(files, mode.verify()).map_err(|e| file_error(prefix, e))?;
    Ok(ServerTls {
        mode,
        connector: Some(connector),
    })
}

fn serde_name(mode: &ClientTlsMode) -> String {
    toml::Value::try_from(mode)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        Config::from_toml(text).unwrap_err().to_string()
    }

    #[test]
    fn modes_name_the_missing_file() {
        assert!(
            err("[pooler]\nclient_tls_mode = \"require\"\n").starts_with(
                "pooler.client_tls_cert_file: required by client_tls_mode = \"require\""
            )
        );
        assert!(
            err("[pooler]\nserver_tls_mode = \"verify-full\"\n").starts_with(
                "pooler.server_tls_ca_file: required by server_tls_mode = \"verify-full\""
            )
        );
        assert!(
            err("[pooler]\nserver_tls_mode = \"require\"\nserver_tls_cert_file = \"c.pem\"\n")
                .starts_with("pooler.server_tls_key_file: ")
        );
        assert!(
            err("[databases.app]\nserver_tls_mode = \"verify-ca\"\n")
                .starts_with("databases.app.server_tls_ca_file: required")
        );
        assert!(err("[pooler]\nclient_tls_mode = \"sometimes\"\n").contains("client_tls_mode"));
    }

    #[test]
    fn a_missing_file_is_named_with_its_key() {
        let e = err(
            "[pooler]\nclient_tls_mode = \"allow\"\nclient_tls_cert_file = \"/nonexistent/c.pem\"\nclient_tls_key_file = \"/nonexistent/k.pem\"\n",
        );
        assert!(
            e.starts_with("pooler.client_tls_cert_file: /nonexistent/c.pem: "),
            "{e}"
        );
    }

    #[test]
    fn defaults_are_plain_and_need_no_file() {
        let c = Config::from_toml("").unwrap();
        let tls = c.tls.as_deref().expect("loaded with the config");
        assert!(tls.client.is_none());
        assert_eq!(tls.server.mode, ServerTlsMode::Disable);
        assert!(tls.server.connector.is_none());
        // require without verification needs no file.
        let c = Config::from_toml("[pooler]\nserver_tls_mode = \"require\"\n[databases.a]\nserver_tls_mode = \"disable\"\n[databases.b]\n").unwrap();
        let tls = c.tls.as_deref().unwrap();
        assert_eq!(tls.server_for("b").mode, ServerTlsMode::Require);
        assert!(tls.server_for("b").connector.is_some());
        assert_eq!(tls.server_for("a").mode, ServerTlsMode::Disable);
    }
}
