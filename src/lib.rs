//! sluice: a PostgreSQL connection pooler.
//!
//! The binary is a thin shell around [`run`], so tests and benchmarks start the pooler in process on
//! `127.0.0.1:0`.
//!
//! # Layers
//! Values, then decisions, then counting, then connections and pools, then the shared state,
//! then sessions, then the process: each module imports only modules listed before it.
//!
//! 1. Values and settings: [`config`], [`hba`] (access rules), [`params`] (session parameters), [`clock`], [`buffers`],
//!    [`memory`] (process-wide byte budgets), [`net`] (the [`net::Stream`] under every
//!    connection, listening sockets), [`notify`] (sd_notify to systemd).
//! 2. Decisions: [`router`] (read/write splitting, replica health, read-your-writes).
//! 3. Counting: [`metrics`] (counters, gauges, `/metrics`, `/healthz`, `/readyz`, the live
//!    page), [`diag`] (query fingerprints and statistics, a session's statement tracker).
//! 4. Connections: [`prepared`] (statement names), [`unnamed`] (caching unnamed statements), [`server`] (one PostgreSQL connection),
//!    [`cancel`] (cancel keys), [`pubsub`] (LISTEN / NOTIFY in transaction mode: subscriptions
//!    and the dedicated listening connection), [`pool`] (server connections per database and
//!    user).
//! 5. Shared state: [`clients`] (the live client list), [`shared`] (what every task shares),
//!    [`reload`] (RELOAD).
//! 6. Sessions: [`admin`] (the admin console), [`client`] (one client session: login and relay).
//! 7. The process: [`listener`] (accept loop), [`background`] (expiry, statistics upkeep, the
//!    metrics endpoint), [`shutdown`] (drain), [`signals`] (SIGHUP, SIGUSR1, SIGUSR2),
//!    [`healthcheck`] (`sluice healthcheck`).
#![deny(rust_2018_idioms)]
#![forbid(unsafe_code)]

pub mod admin;
pub mod background;
pub mod buffers;
pub mod cancel;
pub mod client;
pub mod clients;
pub mod clock;
pub mod config;
pub mod diag;
pub mod hba;
pub mod healthcheck;
pub mod listener;
pub mod memory;
pub mod metrics;
pub mod net;
pub mod notify;
pub mod params;
pub mod pool;
pub mod prepared;
pub mod pubsub;
pub mod reload;
pub mod router;
pub mod server;
pub mod shared;
pub mod shutdown;
pub mod signals;
pub mod unnamed;

pub use config::Config;
pub use shared::{Shared, UserAuth};
pub use shutdown::Stop;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;

/// The tokio runtime `config` asks for (`pooler.workers`, capped by [`threads`]). One thread is
/// a current-thread runtime, like PgBouncer's single event loop: tasks never move between
/// threads and a wake-up never has to reach another core, which is the cheapest per transaction
/// (docs/workers.md). More are a multi-thread runtime.
pub fn runtime(config: &Config) -> std::io::Result<tokio::runtime::Runtime> {
    let workers = config.pooler.workers;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let n = threads(workers, cores);
    if workers > n {
        tracing::info!(
            workers,
            cores,
            "workers capped at the CPU cores this process may use"
        );
    }
    let mut builder = if n == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(n);
        b
    };
    builder.enable_all().build()
}

/// The threads `workers` comes to with `cores` CPU cores available (the process's CPU affinity
/// and a container's CPU quota count, as `std::thread::available_parallelism` sees them): 0 is
/// one per core, and more than `cores` is capped at `cores`. A second thread on one core only
/// adds the wake-ups and hand-overs between the two (docs/workers.md), so on one core it is
/// never started.
pub fn threads(workers: usize, cores: usize) -> usize {
    let cores = cores.max(1);
    if workers == 0 {
        cores
    } else {
        workers.min(cores)
    }
}

/// Serves clients on `listener` until `shutdown` completes (or an admin runs SHUTDOWN), then
/// drains: idle clients are told the pooler is shutting down (57P01), clients inside a
/// transaction may finish it, and whatever is left after `shutdown_timeout` is closed.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    run_shared(Shared::new(config), listener, shutdown).await
}

/// [`run`] on a [`Shared`] the caller made from the config and may keep, to look at the pools
/// while the pooler runs (the integration tests read the prepared-statement counters this way).
pub async fn run_shared(
    shared: Arc<Shared>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    run_until(shared, listener, async {
        shutdown.await;
        Stop::Drain
    })
    .await
}

/// [`run_shared`] until `stop` completes, which also says how the clients are let go
/// ([`Stop`]: the binary waits for clients to leave on SIGTERM, for an online restart). Tells
/// systemd when it is ready and when it stops ([`notify`]).
pub async fn run_until(
    shared: Arc<Shared>,
    listener: TcpListener,
    stop: impl Future<Output = Stop> + Send,
) -> std::io::Result<()> {
    let (drain_tx, drain_rx) = watch::channel(false);
    let _background = background::start(&shared, drain_rx.clone()).await?;
    notify::ready();
    let (clients, stop) = listener::accept(&shared, listener, stop).await;
    shutdown::drain(&shared, clients, &drain_tx, stop).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::threads;

    #[test]
    fn workers_come_to_at_most_one_thread_per_core() {
        assert_eq!(threads(1, 8), 1);
        assert_eq!(threads(4, 8), 4);
        assert_eq!(threads(0, 8), 8, "0 is one per core");
        assert_eq!(
            threads(2, 1),
            1,
            "a second worker on one core is not started"
        );
        assert_eq!(threads(16, 4), 4);
        assert_eq!(threads(0, 0), 1, "no count of cores is one");
    }
}
