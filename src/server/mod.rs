//! One connection to PostgreSQL and the state the pooler tracks on it.
//!
//! * [`connect()`] (connect.rs): open a socket and log in.
//! * [`run_simple`] (query.rs): run one simple Query of sluice's own on an idle connection.
//! * [`check`] (check.rs): the round trip that proves an idle connection still answers.
//! * [`TcpOptions`] (tcp.rs): keepalive and user timeout on the socket.
//! * [`tls`]: the SSLRequest and TLS handshake per `server_tls_mode`.
//! * [`list`]: a pool's list of its connections, for the admin console.
//!
//! Owns: one connection's socket and tracked state (parameters, prepared statements, transaction
//! cleanliness). Must not: know pools, clients or routing; a pool lends a connection out, a
//! session relays on it.

mod check;
mod connect;
pub mod list;
mod query;
mod tcp;
pub mod tls;

pub use check::check;
pub use connect::connect;
pub use query::run_simple;
pub use tcp::TcpOptions;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::net::Stream;
use crate::params::Params;
use crate::prepared::ServerStatements;

/// Where and as whom a pool's server connections log in.
#[derive(Debug, Clone)]
pub struct ServerTarget {
    pub host: String,
    pub port: u16,
    pub dbname: String,
    pub user: String,
    pub password: Option<String>,
    /// `server_tls_mode` and its rustls config for this database.
    pub tls: crate::config::tls::ServerTls,
    /// What to log in with when no password is configured (SCRAM and md5 pass-through).
    pub pass: PassThrough,
}

/// Secrets sluice may log in with in place of a password: the user's md5 secret (answers an md5
/// challenge as the client would), or SCRAM keys recovered from a client's proof (see
/// `sluice_proto::auth::scram_client`). Never shown (`Debug` says which are present only).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct PassThrough {
    pub md5: Option<String>,
    pub scram: Option<sluice_proto::auth::ScramKeys>,
}

impl std::fmt::Debug for PassThrough {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PassThrough")
            .field("md5", &self.md5.is_some())
            .field("scram", &self.scram.is_some())
            .finish()
    }
}

impl ServerTarget {
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// Why a server connection could not be made. The message is what a client is shown.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConnectError {
    #[error("could not connect to server {addr}: {reason}")]
    Unreachable { addr: String, reason: String },
    #[error("server {addr} did not answer within {timeout:?}")]
    Timeout { addr: String, timeout: Duration },
    /// PostgreSQL refused the login; its own SQLSTATE and message are passed on.
    #[error("server login failed: {message}")]
    Refused { code: String, message: String },
    #[error("server login failed: {0}")]
    Protocol(String),
    /// TLS could not be set up as `server_tls_mode` asks (refused, or the certificate failed).
    #[error("could not connect to server: {0}")]
    Tls(String),
}

impl ConnectError {
    pub fn sqlstate(&self) -> &str {
        match self {
            ConnectError::Refused { code, .. } => code,
            _ => sluice_proto::sqlstate::SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION,
        }
    }
}

/// A logged-in server connection.
pub struct ServerConn {
    pub id: u64,
    pub stream: Stream,
    /// The server's BackendKeyData, for forwarding cancel requests.
    pub pid: i32,
    pub key: i32,
    /// Values the server reported (ParameterStatus) or that sluice set on it.
    pub params: Params,
    /// (`params`, a client's list) as they were when they last matched: while both are still
    /// those very lists (nothing changed either since, see [`Params::same_list`]), the next
    /// checkout for that list has nothing to compare.
    pub in_sync: Option<(Params, Params)>,
    pub target: Arc<ServerTarget>,
    pub created: Instant,
    pub last_used: Instant,
    /// Set while a client holds it and may have left it mid-transaction. A guard dropped with
    /// `dirty` set closes the connection instead of returning it to the pool.
    pub dirty: bool,
    /// Idle in the pool longer than `server_check_delay` (set by the pool's upkeep): a round
    /// trip ([`check`]) must succeed before it is lent again.
    pub check_due: bool,
    /// A client changed its settings in a way sluice could not follow (`set_config` with a
    /// parameter, `SET` in a `DO` block, a failed parameter sync): `params` may not be true, so
    /// the connection is closed when given back instead of serving anyone else.
    pub settings_unknown: bool,
    /// sluice's statements prepared on this connection (transaction mode).
    pub statements: ServerStatements,
    /// Its entry in the pool's server list (SHOW SERVERS), removed when it is dropped.
    pub entry: Option<list::ServerEntry>,
}

impl ServerConn {
    /// True when the connection has neither closed nor sent anything unasked while idle (PostgreSQL
    /// sends an ErrorResponse before it closes a terminated backend). Does not block.
    pub fn is_alive(&mut self) -> bool {
        !self.stream.closed_or_spoke()
    }
}
