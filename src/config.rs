//! Configuration: TOML, every key documented in `config/sluice.toml`.
//!
//! Unknown keys are errors (`deny_unknown_fields`), and [`Config::validate`] reports problems with
//! the dotted path of the key at fault, e.g. `databases.app.pool_size: must be at least 1`.
//! [`Config::load`] applies the `SLUICE_<KEY>` environment overrides of `[pooler]` keys
//! ([`env`]) between reading the file and checking it.

pub mod env;
pub mod tls;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};
use sluice_proto::auth::PasswordSecret;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub pooler: PoolerConfig,
    #[serde(default)]
    pub users: BTreeMap<String, UserConfig>,
    #[serde(default)]
    pub databases: BTreeMap<String, DatabaseConfig>,
    /// The file this was loaded from (RELOAD reads it again).
    #[serde(skip)]
    pub source: Option<std::path::PathBuf>,
    /// The access rules of `auth_hba_file` or `auth_hba`, checked; None: no rules.
    #[serde(skip)]
    pub hba: Option<std::sync::Arc<crate::hba::Rules>>,
    /// The TLS contexts built from the `*_tls_*` files when this config was loaded (always set
    /// on a config that passed [`Config::from_toml`] or [`Config::load`]).
    #[serde(skip)]
    pub tls: Option<std::sync::Arc<tls::TlsContexts>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PoolMode {
    /// A server connection is bound to a client for one transaction.
    Transaction,
    /// A server connection is bound to a client for its whole session.
    Session,
}

impl fmt::Display for PoolMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PoolMode::Transaction => "transaction",
            PoolMode::Session => "session",
        })
    }
}

/// How a client proves who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum AuthType {
    #[serde(rename = "scram-sha-256")]
    ScramSha256,
    #[serde(rename = "md5")]
    Md5,
    /// No password asked; the user must still be listed in `[users]`.
    #[serde(rename = "trust")]
    Trust,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoolerConfig {
    pub listen: String,
    pub pool_mode: PoolMode,
    pub default_pool_size: usize,
    pub max_client_conn: usize,
    pub auth_type: AuthType,
    #[serde(deserialize_with = "duration")]
    pub query_wait_timeout: Duration,
    #[serde(deserialize_with = "duration")]
    pub server_connect_timeout: Duration,
    #[serde(deserialize_with = "duration")]
    pub server_login_retry: Duration,
    #[serde(deserialize_with = "duration")]
    pub server_idle_timeout: Duration,
    #[serde(deserialize_with = "duration")]
    pub server_lifetime: Duration,
    pub server_reset_query: String,
    /// Time from connect to the end of login; 0 = no limit.
    #[serde(deserialize_with = "duration")]
    pub client_login_timeout: Duration,
    /// A logged-in client idle (nothing asked, outside a transaction) longer is closed; 0 = never.
    #[serde(deserialize_with = "duration")]
    pub client_idle_timeout: Duration,
    /// A client idle inside a transaction longer is closed with its server connection; 0 = never.
    #[serde(deserialize_with = "duration")]
    pub idle_transaction_timeout: Duration,
    /// A query unanswered longer is cancelled and its server connection closed; 0 = never.
    #[serde(deserialize_with = "duration")]
    pub query_timeout: Duration,
    /// A server connection idle longer is checked with a round trip before it is lent; 0 = always.
    #[serde(deserialize_with = "duration")]
    pub server_check_delay: Duration,
    /// TCP keepalive on server connections, with the OS's timings unless given below.
    pub tcp_keepalive: bool,
    /// Idle time before the first keepalive probe; 0 = the OS's.
    #[serde(deserialize_with = "duration")]
    pub tcp_keepidle: Duration,
    /// Time between keepalive probes; 0 = the OS's.
    #[serde(deserialize_with = "duration")]
    pub tcp_keepintvl: Duration,
    /// Unanswered probes before the connection is dropped; 0 = the OS's.
    pub tcp_keepcnt: u32,
    /// Sent data unacknowledged this long drops the connection (TCP_USER_TIMEOUT); 0 = the OS's.
    #[serde(deserialize_with = "duration")]
    pub tcp_user_timeout: Duration,
    pub max_message_size: usize,
    pub max_prepared_statements: usize,
    /// Transaction mode: a repeated unnamed statement (same text and parameter types, seen twice
    /// by a session) runs as a server-side prepared statement (docs/unnamed-statements.md).
    pub cache_unnamed_statements: bool,
    /// Notifications held for one client while it is busy (transaction mode LISTEN); one more
    /// ends the client's connection (docs/listen-notify.md).
    pub listen_queue_size: usize,
    /// Threads serving clients: 1 (the default) = one event loop on the main thread; 0 = one per
    /// CPU core; never more than the cores the process may use ([`crate::threads`]).
    pub workers: usize,
    #[serde(deserialize_with = "duration")]
    pub shutdown_timeout: Duration,
    /// `host:port` of the HTTP endpoint for `/metrics`, `/healthz` and `/readyz`; none = off.
    pub metrics_listen: Option<String>,
    /// When set, the metrics endpoint (all but `/healthz` and `/readyz`) needs it as
    /// `Authorization: Bearer <token>` or `?token=<token>`.
    pub metrics_token: Option<String>,
    /// Users (listed in `[users]`) allowed every admin console command.
    pub admin_users: Vec<String>,
    /// Users (listed in `[users]`) allowed the admin console's SHOW commands.
    pub stats_users: Vec<String>,
    /// Cap on the bytes of prepared-statement texts kept across all pools; a Parse that would
    /// pass it fails with 53200.
    pub max_prepared_statement_bytes: usize,
    /// Cap on the bytes of large messages (over 64 KiB) held whole across all sessions; a
    /// message that finds no room waits up to `query_wait_timeout`, then its client gets 53200.
    pub max_message_memory: usize,
    /// `text` (the default) or `json` (one JSON object per line).
    pub log_format: LogFormat,
    /// Incidents (refused logins, wait timeouts, ...) are logged at most once per kind per
    /// interval, with counts.
    #[serde(deserialize_with = "duration")]
    pub error_log_interval: Duration,
    /// Access rules in pg_hba.conf form, from this file (docs/security.md).
    pub auth_hba_file: Option<String>,
    /// Access rules inline, one pg_hba.conf line per string (instead of `auth_hba_file`).
    pub auth_hba: Vec<String>,
    /// Users not in `[users]` are looked up in PostgreSQL by this user (listed in `[users]`).
    pub auth_user: Option<String>,
    /// The lookup: `$1` is the user name; returns (name, secret); no row or a NULL secret: no
    /// such user.
    pub auth_query: String,
    /// How long a looked-up secret is kept; a failed login looks it up again sooner.
    #[serde(deserialize_with = "duration")]
    pub auth_cache_ttl: Duration,
    /// Client connections per database (all users) at once; 0 = no limit. Over it: 53300.
    pub max_db_client_connections: usize,
    /// Client connections per user (all databases) at once; 0 = no limit. Over it: 53300.
    pub max_user_client_connections: usize,
    /// Server connections per database (all users' pools) at once; 0 = no limit. Past it a
    /// checkout waits (an idle connection of another pool is closed to make room).
    pub max_db_connections: usize,
    /// Server connections per user (all databases' pools) at once; 0 = no limit.
    pub max_user_connections: usize,
    /// TLS from clients: disable, allow, prefer, require, verify-ca, verify-full.
    pub client_tls_mode: tls::ClientTlsMode,
    /// sluice's certificate (chain) and key for clients, PEM.
    pub client_tls_cert_file: Option<String>,
    pub client_tls_key_file: Option<String>,
    /// CA for client certificates (asked for when set; required under verify-ca/verify-full).
    pub client_tls_ca_file: Option<String>,
    /// TLS to servers: disable, prefer, require, verify-ca, verify-full.
    pub server_tls_mode: tls::ServerTlsMode,
    /// CA the servers' certificates must chain to (verify-ca, verify-full).
    pub server_tls_ca_file: Option<String>,
    /// sluice's client certificate and key for servers, PEM (optional; both or neither).
    pub server_tls_cert_file: Option<String>,
    pub server_tls_key_file: Option<String>,
    /// Statistics per (database, user, query fingerprint): SHOW QUERIES, `/debug/queries`.
    pub query_stats: bool,
    /// Cap on the entries of the query statistics; the lightest tenth by total time goes when
    /// it is reached.
    pub query_stats_max_entries: usize,
    /// Statements that run at least this long are logged (fingerprint, pool, client); 0 = off.
    #[serde(deserialize_with = "duration")]
    pub log_min_duration: Duration,
    /// The slow-statement log also shows the statement's text and parameter values as sent.
    pub log_parameters: bool,
}

/// The default `auth_query`: the secret of a role that may log in and whose password has not
/// expired (`valuntil` in the past is refused, unlike PgBouncer before CVE-2025-2291's fix).
pub const DEFAULT_AUTH_QUERY: &str = "SELECT usename, passwd FROM pg_catalog.pg_shadow WHERE usename = $1 AND (valuntil IS NULL OR valuntil > pg_catalog.now())";

/// How log lines are written (`log_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl Default for PoolerConfig {
    fn default() -> Self {
        PoolerConfig {
            listen: "127.0.0.1:6432".into(),
            pool_mode: PoolMode::Transaction,
            default_pool_size: 20,
            max_client_conn: 10_000,
            auth_type: AuthType::ScramSha256,
            query_wait_timeout: Duration::from_secs(30),
            server_connect_timeout: Duration::from_secs(5),
            server_login_retry: Duration::from_millis(500),
            server_idle_timeout: Duration::from_secs(600),
            server_lifetime: Duration::from_secs(3600),
            server_reset_query: "DISCARD ALL".into(),
            client_login_timeout: Duration::from_secs(60),
            client_idle_timeout: Duration::ZERO,
            idle_transaction_timeout: Duration::ZERO,
            query_timeout: Duration::ZERO,
            server_check_delay: Duration::from_secs(30),
            tcp_keepalive: true,
            tcp_keepidle: Duration::ZERO,
            tcp_keepintvl: Duration::ZERO,
            tcp_keepcnt: 0,
            tcp_user_timeout: Duration::ZERO,
            max_message_size: sluice_proto::MAX_MESSAGE_LEN,
            max_prepared_statements: 200,
            cache_unnamed_statements: false,
            listen_queue_size: 1000,
            workers: 1,
            shutdown_timeout: Duration::from_secs(30),
            metrics_listen: None,
            metrics_token: None,
            admin_users: Vec::new(),
            stats_users: Vec::new(),
            max_prepared_statement_bytes: 128 * 1024 * 1024,
            max_message_memory: 256 * 1024 * 1024,
            log_format: LogFormat::Text,
            error_log_interval: Duration::from_secs(10),
            auth_hba_file: None,
            auth_hba: Vec::new(),
            auth_user: None,
            auth_query: DEFAULT_AUTH_QUERY.to_owned(),
            auth_cache_ttl: Duration::from_secs(60),
            max_db_client_connections: 0,
            max_user_client_connections: 0,
            max_db_connections: 0,
            max_user_connections: 0,
            client_tls_mode: tls::ClientTlsMode::Disable,
            client_tls_cert_file: None,
            client_tls_key_file: None,
            client_tls_ca_file: None,
            server_tls_mode: tls::ServerTlsMode::Disable,
            server_tls_ca_file: None,
            server_tls_cert_file: None,
            server_tls_key_file: None,
            query_stats: true,
            query_stats_max_entries: 5000,
            log_min_duration: Duration::ZERO,
            log_parameters: false,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// Plain text, `md5<hex>` or `SCRAM-SHA-256$...`, as in pg_authid.
    pub password: Option<String>,
    pub auth_type: Option<AuthType>,
    pub pool_mode: Option<PoolMode>,
    /// This user's client connections at once (all databases); overrides the `[pooler]` value.
    pub max_user_client_connections: Option<usize>,
    /// This user's server connections at once (all databases); overrides the `[pooler]` value.
    pub max_user_connections: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    #[serde(default = "default_host")]
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    /// The database name on the server; defaults to the table's name.
    pub dbname: Option<String>,
    pub pool_size: Option<usize>,
    pub pool_mode: Option<PoolMode>,
    pub auth_type: Option<AuthType>,
    /// Log in to the server as this user instead of the client's.
    pub server_user: Option<String>,
    pub server_password: Option<String>,
    /// Looks up users not in `[users]` for this database (overrides `[pooler]`).
    pub auth_user: Option<String>,
    pub auth_query: Option<String>,
    /// Client connections to this database at once (all users); overrides the `[pooler]` value.
    pub max_db_client_connections: Option<usize>,
    /// Server connections to this database at once (all users); overrides the `[pooler]` value.
    pub max_db_connections: Option<usize>,
    /// Caching of repeated unnamed statements for this database; overrides the `[pooler]` value.
    pub cache_unnamed_statements: Option<bool>,
    /// Streaming replicas of this database: provably read-only work may go to them.
    #[serde(default)]
    pub replicas: Vec<ReplicaConfig>,
    /// How a client's reads are kept behind its own writes (`lsn`, `window`, `off`).
    #[serde(default)]
    pub read_your_writes: ReadYourWrites,
    /// `window` mode (and `lsn` mode when a position is unknown): reads stay on the primary this
    /// long after a write.
    #[serde(default = "default_ryw_window", deserialize_with = "duration")]
    pub read_your_writes_window: Duration,
    #[serde(
        default = "default_replica_check_interval",
        deserialize_with = "duration"
    )]
    pub replica_check_interval: Duration,
    /// A replica further behind than this (in time) leaves rotation; "0s" turns the limit off.
    #[serde(default = "default_max_replica_lag", deserialize_with = "duration")]
    pub max_replica_lag: Duration,
    /// A replica further behind than this many bytes of WAL leaves rotation; unset: no limit.
    pub max_replica_lag_bytes: Option<u64>,
    #[serde(default)]
    pub load_balance: Balance,
    /// The share of routable reads (0.0 to 1.0) sent to the primary anyway.
    #[serde(default)]
    pub primary_reads: f64,
    /// Functions (besides the built-in list) whose calls must run on the primary.
    #[serde(default)]
    pub writing_functions: Vec<String>,
    /// With no replica in rotation, reads go to the primary (`primary`) or fail (`error`).
    #[serde(default)]
    pub replica_fallback: ReplicaFallback,
    /// This database's `server_tls_*`, overriding `[pooler]`'s (unset ones are `[pooler]`'s).
    pub server_tls_mode: Option<tls::ServerTlsMode>,
    pub server_tls_ca_file: Option<String>,
    pub server_tls_cert_file: Option<String>,
    pub server_tls_key_file: Option<String>,
}

/// One streaming replica of a database.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicaConfig {
    #[serde(default = "default_host")]
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    /// Server connections to this replica; defaults to the database's pool size.
    pub pool_size: Option<usize>,
}

/// What a read that could go to a replica does when none is in rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReplicaFallback {
    #[default]
    Primary,
    Error,
}

/// How reads are spread over the eligible replicas (`load_balance` setting).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// The replica with the fewest reads in flight (ties go round robin).
    #[default]
    LeastOutstanding,
    RoundRobin,
    Random,
}

/// The `read_your_writes` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadYourWrites {
    /// Compare LSNs (falls back to the window when the LSN is unknown).
    #[default]
    Lsn,
    /// Reads go to the primary for a fixed time after a write.
    Window,
    /// No guarantee: reads may see a replica that has not replayed the client's writes.
    Off,
}

fn default_ryw_window() -> Duration {
    Duration::from_secs(5)
}

fn default_replica_check_interval() -> Duration {
    Duration::from_secs(1)
}

fn default_max_replica_lag() -> Duration {
    Duration::from_secs(10)
}

fn default_host() -> String {
    "127.0.0.1".into()
}

fn default_port() -> u16 {
    5432
}

/// A config problem, naming the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Parse(String),
    #[error("{key}: {why}")]
    Invalid { key: String, why: String },
}

fn invalid(key: impl Into<String>, why: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        why: why.into(),
    }
}

impl Config {
    /// Reads `path`, applies the process's `SLUICE_<KEY>` overrides ([`env`]), and checks.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Self::load_with(path, &env::Overrides::from_process())
    }

    /// [`Config::load`] with the given overrides instead of the process's.
    pub fn load_with(path: &Path, overrides: &env::Overrides) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let mut config = Self::from_toml_with(&text, overrides).map_err(|e| match e {
            ConfigError::Parse(msg) => ConfigError::Parse(format!("{}: {msg}", path.display())),
            other => other,
        })?;
        config.source = Some(path.to_owned());
        Ok(config)
    }

    /// Parses and validates (no environment overrides).
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        Self::from_toml_with(text, &env::Overrides::none())
    }

    /// Parses, applies `overrides` to `[pooler]`, and validates; an error in an overridden key
    /// names its variable.
    pub fn from_toml_with(text: &str, overrides: &env::Overrides) -> Result<Config, ConfigError> {
        Self::parse_and_check(text, overrides).map_err(|e| overrides.name_variable(e))
    }

    /// Parses and validates like [`Self::from_toml`] without reading the TLS files the config
    /// names (for a config written on one machine to run on another: `import-pgbouncer`).
    pub fn from_toml_unloaded(text: &str) -> Result<Config, ConfigError> {
        Self::parse_unloaded(text, &env::Overrides::none())
    }

    fn parse_and_check(text: &str, overrides: &env::Overrides) -> Result<Config, ConfigError> {
        let mut config = Self::parse_unloaded(text, overrides)?;
        config.tls = Some(std::sync::Arc::new(tls::load(&config)?));
        Ok(config)
    }

    fn parse_unloaded(text: &str, overrides: &env::Overrides) -> Result<Config, ConfigError> {
        // Syntax first (with line and column), then shape, through a tree so that every error
        // can name the dotted path of its key.
        let mut table: toml::Table =
            toml::from_str(text).map_err(|e| ConfigError::Parse(describe_toml_error(&e)))?;
        overrides.apply(&mut table)?;
        let mut config: Config = serde_path_to_error::deserialize(toml::Value::Table(table))
            .map_err(|e| {
                let path = e.path().to_string();
                let inner = e.inner().message().trim_end().to_owned();
                if path.is_empty() || path == "." {
                    ConfigError::Parse(inner)
                } else {
                    invalid(path, inner)
                }
            })?;
        config.validate()?;
        config.load_rules()?;
        Ok(config)
    }

    /// Reads and checks the access rules (`auth_hba_file`, or `auth_hba` inline) into `hba`.
    pub fn load_rules(&mut self) -> Result<(), ConfigError> {
        let p = &self.pooler;
        self.hba = if let Some(path) = &p.auth_hba_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| invalid("pooler.auth_hba_file", format!("cannot read {path}: {e}")))?;
            let rules = crate::hba::Rules::from_text(path, &text)
                .map_err(|e| invalid("pooler.auth_hba_file", e))?;
            Some(std::sync::Arc::new(rules))
        } else if !p.auth_hba.is_empty() {
            let rules = crate::hba::Rules::from_text("pooler.auth_hba", &p.auth_hba.join("\n"))
                .map_err(|e| invalid("pooler.auth_hba", e))?;
            Some(std::sync::Arc::new(rules))
        } else {
            None
        };
        Ok(())
    }

    /// `max_db_connections` for `database` (0: none).
    pub fn max_db_connections(&self, database: &str) -> usize {
        self.databases
            .get(database)
            .and_then(|d| d.max_db_connections)
            .unwrap_or(self.pooler.max_db_connections)
    }

    /// `max_user_connections` for `user` (0: none).
    pub fn max_user_connections(&self, user: &str) -> usize {
        self.users
            .get(user)
            .and_then(|u| u.max_user_connections)
            .unwrap_or(self.pooler.max_user_connections)
    }

    pub fn listen_addr(&self) -> SocketAddr {
        self.pooler.listen.parse().expect("validated")
    }

    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        let addr = self.pooler.metrics_listen.as_ref()?;
        Some(addr.parse().expect("validated"))
    }
}

pub fn auth_name(a: AuthType) -> &'static str {
    match a {
        AuthType::ScramSha256 => "scram-sha-256",
        AuthType::Md5 => "md5",
        AuthType::Trust => "trust",
    }
}

/// toml's messages already carry line and column; make the key path explicit where it knows one.
fn describe_toml_error(e: &toml::de::Error) -> String {
    e.to_string().trim_end().to_owned()
}

/// Durations as "250ms", "30s", "5m", "1h".
fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(&s).map_err(|e| {
        serde::de::Error::custom(format!(
            "invalid duration {s:?}: {e} (examples: \"250ms\", \"30s\", \"5m\")"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_example_parses_with_defaults() {
        let c = Config::from_toml(
            r#"
            [pooler]
            listen = "127.0.0.1:6432"
            pool_mode = "transaction"
            default_pool_size = 20
            max_client_conn = 10000
            query_wait_timeout = "30s"
            [users.app]
            password = "secret"
            [databases.app]
            host = "127.0.0.1"
            port = 5432
            dbname = "app"
            pool_size = 20
            "#,
        )
        .unwrap();
        assert_eq!(c.pooler.query_wait_timeout, Duration::from_secs(30));
        assert_eq!(c.databases["app"].pool_size, Some(20));
    }

    #[test]
    fn replicas_parse_with_defaults_and_errors_name_their_key() {
        let c = Config::from_toml(
            r#"
            [databases.app]
            port = 5432
            [[databases.app.replicas]]
            port = 5433
            [[databases.app.replicas]]
            host = "10.0.0.2"
            pool_size = 3
            "#,
        )
        .unwrap();
        let db = &c.databases["app"];
        assert_eq!(db.replicas.len(), 2);
        assert_eq!(
            (db.replicas[0].host.as_str(), db.replicas[0].port),
            ("127.0.0.1", 5433)
        );
        assert_eq!(db.replicas[1].pool_size, Some(3));
        assert_eq!(db.read_your_writes, ReadYourWrites::Lsn);
        assert_eq!(db.read_your_writes_window, Duration::from_secs(5));
        assert_eq!(db.replica_check_interval, Duration::from_secs(1));
        assert_eq!(db.max_replica_lag, Duration::from_secs(10));
        assert_eq!(db.max_replica_lag_bytes, None);
        assert_eq!(db.load_balance, Balance::LeastOutstanding);
        assert_eq!(db.primary_reads, 0.0);
        assert_eq!(db.replica_fallback, ReplicaFallback::Primary);

        for (text, key) in [
            (
                "[databases.app]\n[[databases.app.replicas]]\nport = 0\n",
                "databases.app.replicas[0].port:",
            ),
            (
                "[databases.app]\nport = 5432\n[[databases.app.replicas]]\nport = 5432\n",
                "databases.app.replicas[0]:",
            ),
            (
                "[databases.app]\n[[databases.app.replicas]]\nprot = 5433\n",
                "databases.app.replicas[0].prot",
            ),
            (
                "[databases.app]\nprimary_reads = 1.5\n",
                "databases.app.primary_reads:",
            ),
            (
                "[databases.app]\nread_your_writes = \"always\"\n",
                "databases.app.read_your_writes",
            ),
            (
                "[databases.app]\nload_balance = \"fastest\"\n",
                "databases.app.load_balance",
            ),
            (
                "[databases.app]\nmax_replica_lag = \"soon\"\n",
                "databases.app.max_replica_lag",
            ),
            (
                "[databases.app]\nreplica_check_interval = \"0s\"\n",
                "databases.app.replica_check_interval:",
            ),
        ] {
            let e = Config::from_toml(text).unwrap_err().to_string();
            assert!(e.contains(key), "{text}: {e}");
        }
    }

    #[test]
    fn unknown_key_is_an_error_naming_it() {
        let e = Config::from_toml("[pooler]\npool_szie = 3\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("pool_szie"), "{e}");
    }

    #[test]
    fn bad_values_name_their_key() {
        let e = Config::from_toml("[databases.app]\npool_size = 0\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("databases.app.pool_size:"), "{e}");
        let e = Config::from_toml("[pooler]\nquery_wait_timeout = \"soon\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("query_wait_timeout") && e.contains("invalid duration"),
            "{e}"
        );
        let e = Config::from_toml("[users.app]\n").unwrap_err().to_string();
        assert!(e.starts_with("users.app.password:"), "{e}");
        let e = Config::from_toml("[pooler]\nlisten = \"nope\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("pooler.listen:"), "{e}");
        let e = Config::from_toml("[pooler]\nmetrics_listen = \"9930\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("pooler.metrics_listen:"), "{e}");
        let e = Config::from_toml("[pooler]\nmax_message_memory = 1048576\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("pooler.max_message_memory:"), "{e}");
        let e = Config::from_toml("[pooler]\nmax_prepared_statement_bytes = 10\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("pooler.max_prepared_statement_bytes:"), "{e}");
        let e = Config::from_toml("[pooler]\nlog_format = \"xml\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("pooler.log_format"), "{e}");
        let e = Config::from_toml("[pooler]\nerror_log_interval = \"0s\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("pooler.error_log_interval:"), "{e}");
        let e = Config::from_toml("[pooler]\nadmin_users = [\"ops\"]\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("pooler.admin_users:"), "{e}");
    }

    #[test]
    fn timeouts_and_tcp_settings_default_as_pgbouncer_and_errors_name_their_key() {
        let p = Config::from_toml("").unwrap().pooler;
        assert_eq!(p.client_login_timeout, Duration::from_secs(60));
        assert_eq!(p.client_idle_timeout, Duration::ZERO);
        assert_eq!(p.idle_transaction_timeout, Duration::ZERO);
        assert_eq!(p.query_timeout, Duration::ZERO);
        assert_eq!(p.server_check_delay, Duration::from_secs(30));
        assert!(p.tcp_keepalive);
        assert_eq!(
            (
                p.tcp_keepidle,
                p.tcp_keepintvl,
                p.tcp_keepcnt,
                p.tcp_user_timeout
            ),
            (Duration::ZERO, Duration::ZERO, 0, Duration::ZERO)
        );
        let p = Config::from_toml(
            "[pooler]\nquery_timeout = \"5m\"\ntcp_keepidle = \"60s\"\ntcp_keepcnt = 5\ntcp_user_timeout = \"30s\"\n",
        )
        .unwrap()
        .pooler;
        assert_eq!(p.query_timeout, Duration::from_secs(300));
        assert_eq!(p.tcp_keepidle, Duration::from_secs(60));
        assert_eq!(p.tcp_keepcnt, 5);
        assert_eq!(p.tcp_user_timeout, Duration::from_secs(30));

        for (text, key) in [
            ("query_timeout = \"soon\"", "pooler.query_timeout"),
            ("client_idle_timeout = 5", "pooler.client_idle_timeout"),
            (
                "idle_transaction_timeout = \"x\"",
                "pooler.idle_transaction_timeout",
            ),
            (
                "client_login_timeout = \"-1s\"",
                "pooler.client_login_timeout",
            ),
            (
                "server_check_delay = \"1 fortnight\"",
                "pooler.server_check_delay",
            ),
            ("tcp_keepalive = \"yes\"", "pooler.tcp_keepalive"),
            ("tcp_keepidle = \"1500ms\"", "pooler.tcp_keepidle:"),
            ("tcp_keepintvl = \"10h\"", "pooler.tcp_keepintvl:"),
            ("tcp_keepcnt = 1000", "pooler.tcp_keepcnt:"),
            ("tcp_keepcnt = -1", "pooler.tcp_keepcnt"),
            ("tcp_user_timeout = \"30d\"", "pooler.tcp_user_timeout:"),
            (
                "tcp_keepalive = false\ntcp_keepidle = \"60s\"",
                "pooler.tcp_keepidle:",
            ),
        ] {
            let e = Config::from_toml(&format!("[pooler]\n{text}\n"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(key), "{text}: {e}");
        }
    }

    #[test]
    fn balance_deserializes() {
        #[derive(Deserialize)]
        struct C {
            b: Balance,
        }
        for (text, b) in [
            ("least_outstanding", Balance::LeastOutstanding),
            ("round_robin", Balance::RoundRobin),
            ("random", Balance::Random),
        ] {
            let c: C = toml::from_str(&format!("b = \"{text}\"")).unwrap();
            assert_eq!(c.b, b);
        }
        assert!(toml::from_str::<C>("b = \"fastest\"").is_err());
    }

    #[test]
    fn read_your_writes_deserializes() {
        #[derive(Deserialize)]
        struct C {
            m: ReadYourWrites,
        }
        for (text, m) in [
            ("lsn", ReadYourWrites::Lsn),
            ("window", ReadYourWrites::Window),
            ("off", ReadYourWrites::Off),
        ] {
            let c: C = toml::from_str(&format!("m = \"{text}\"")).unwrap();
            assert_eq!(c.m, m);
        }
        assert!(toml::from_str::<C>("m = \"sometimes\"").is_err());
    }
}
