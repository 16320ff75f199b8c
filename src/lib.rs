//! sluice: a PostgreSQL connection pooler.
//!
//! The binary is a thin shell around [`run`], so tests and benchmarks start the pooler in process on
//! `127.0.0.1:0`.
#![deny(rust_2018_idioms)]
#![forbid(unsafe_code)]

pub mod config;

pub use config::Config;

use std::future::Future;
use tokio::net::TcpListener;

/// Serves clients on `listener` until `shutdown` completes, then drains.
pub async fn run(config: Config, listener: TcpListener, shutdown: impl Future<Output = ()> + Send) -> std::io::Result<()> {
    let _ = (config, listener);
    shutdown.await;
    Ok(())
}
