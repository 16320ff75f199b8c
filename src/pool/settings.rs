//! [`PoolSettings`]: a pool's settings, resolved from the config when the pool is made.

use std::time::Duration;

use crate::config::PoolMode;

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
}
