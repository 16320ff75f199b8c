//! [`PoolSettings`]: a pool's settings, resolved from the config when the pool is made.

use std::time::Duration;

use crate::config::PoolMode;
use crate::server::TcpOptions;

/// Pool settings, resolved from the config.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub size: usize,
    pub mode: PoolMode,
    pub connect_timeout: Duration,
    pub login_retry: Duration,
    pub idle_timeout: Duration,
    pub lifetime: Duration,
    pub reset_query: String,
    pub query_wait_timeout: Duration,
    pub max_message_size: usize,
    /// Per server connection; 0 turns statement renaming off.
    pub max_prepared_statements: usize,
    /// `cache_unnamed_statements` for this database (needs `max_prepared_statements > 0`).
    pub cache_unnamed: bool,
    /// The timeouts of this pool's client sessions.
    pub timeouts: SessionTimeouts,
    /// A connection idle in the pool longer than this is checked before it is lent
    /// (`server_check_delay`; zero: before every lending).
    pub check_delay: Duration,
    /// Socket options of new server connections.
    pub tcp: TcpOptions,
    /// Notifications held per client in transaction mode (`listen_queue_size`).
    pub listen_queue_size: usize,
}

/// The timeouts a client session keeps (None: off). One timer per session serves them all
/// (`client/timeouts.rs`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionTimeouts {
    /// `query_timeout`: a request unanswered this long is given up.
    pub query: Option<Duration>,
    /// `idle_transaction_timeout`: a client idle inside a transaction this long is closed.
    pub idle_transaction: Option<Duration>,
    /// `client_idle_timeout`: a client idle outside a transaction this long is closed.
    pub client_idle: Option<Duration>,
}

impl SessionTimeouts {
    /// From the config's durations, where zero means off.
    pub fn new(query: Duration, idle_transaction: Duration, client_idle: Duration) -> Self {
        let on = |d: Duration| (!d.is_zero()).then_some(d);
        SessionTimeouts {
            query: on(query),
            idle_transaction: on(idle_transaction),
            client_idle: on(client_idle),
        }
    }

    /// At least one is on: the session needs its timer.
    pub fn any(&self) -> bool {
        self.query.is_some() || self.idle_transaction.is_some() || self.client_idle.is_some()
    }
}
