//! A real primary with a real streaming replica, for the read/write-splitting tests.
//!
//! Owns: the two [`PgCluster`]s (the primary from the shared template, the replica cloned from it
//! by [`PgCluster::start_replica`]), and what a test does to the pair: wait until the replica
//! streams, pause and resume its replay, stop and restart it. Dropping the pair stops both servers
//! (`pg_ctl stop -m immediate`, the replica first) and removes their directories, as
//! [`PgCluster`] does for one.
//!
//! Roles are those of every cluster (see `pg.rs`): `postgres`, `app` (owns database `app`) and
//! `repl` (REPLICATION), all with SCRAM passwords over TCP.
//!
//! The servers' programs (`pg_ctl`, `pg_basebackup`) block: on a multi-thread runtime they run in
//! `block_in_place`, so tasks the test spawned keep running meanwhile.

use std::time::Duration;

use sluice::router::health::{HealthHandle, ReplicaHealth, ReplicaTarget};
use tokio_postgres::Client;

use super::{APP_DB, APP_PASSWORD, APP_USER, PgCluster, STEP, poll_until, simple_scalar};

/// The replica's slot on the primary, and its `application_name` in `pg_stat_replication`.
pub const REPLICA_NAME: &str = "sluice_replica";

/// How long a (re)started replica may take to stream.
const STREAMING: Duration = Duration::from_secs(90);

/// Runs the blocking `f` without stalling the runtime's other tasks where the runtime allows it.
fn blocking<R>(f: impl FnOnce() -> R) -> R {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// A primary and one streaming replica. (Fields drop in order: the replica stops first.)
pub struct ReplicaCluster {
    pub replica: PgCluster,
    pub primary: PgCluster,
}

impl ReplicaCluster {
    /// Starts the primary and the replica and waits until the replica streams.
    pub async fn start() -> ReplicaCluster {
        let c = blocking(|| {
            let primary = PgCluster::start();
            let replica = primary.start_replica(REPLICA_NAME);
            ReplicaCluster { replica, primary }
        });
        c.wait_streaming().await;
        c
    }

    pub fn primary_port(&self) -> u16 {
        self.primary.port()
    }

    pub fn replica_port(&self) -> u16 {
        self.replica.port()
    }

    /// Starts the stopped replica again (same port) and waits until it streams.
    pub async fn start_replica(&mut self) {
        blocking(|| self.replica.start_again());
        self.wait_streaming().await;
    }

    /// Stops the replica (fast shutdown) and waits until it is down.
    pub async fn stop_replica(&mut self) {
        blocking(|| self.replica.stop());
    }

    /// Waits until the primary reports the replica streaming.
    pub async fn wait_streaming(&self) {
        let su = self.connect_primary().await;
        let sql = format!(
            "SELECT count(*) FROM pg_stat_replication \
             WHERE application_name = '{REPLICA_NAME}' AND state = 'streaming'"
        );
        poll_until(STREAMING, "replica streaming", || async {
            simple_scalar(&su, &sql).await.as_deref() == Some("1")
        })
        .await;
    }

    /// Pauses WAL replay on the replica and waits until the pause has been requested.
    pub async fn pause_replay(&self) {
        let r = self.connect_replica().await;
        simple_scalar(&r, "SELECT pg_wal_replay_pause()::text").await;
        poll_until(STEP, "replay paused", || async {
            simple_scalar(&r, "SELECT pg_get_wal_replay_pause_state()")
                .await
                .as_deref()
                != Some("not paused")
        })
        .await;
    }

    pub async fn resume_replay(&self) {
        let r = self.connect_replica().await;
        simple_scalar(&r, "SELECT pg_wal_replay_resume()::text").await;
    }

    /// The primary as the `app` user sees it (what a pool's health checker would use).
    pub fn primary_target(&self) -> ReplicaTarget {
        app_target(&self.primary)
    }

    /// The replica as the `app` user sees it.
    pub fn replica_target(&self) -> ReplicaTarget {
        app_target(&self.replica)
    }

    /// The superuser on the primary's database `postgres`.
    pub async fn connect_primary(&self) -> Client {
        self.primary.superuser("postgres").await
    }

    /// The superuser on the replica's database `postgres`.
    pub async fn connect_replica(&self) -> Client {
        self.replica.superuser("postgres").await
    }

    pub async fn connect_primary_app(&self) -> Client {
        self.primary
            .connect_direct(APP_DB, APP_USER, APP_PASSWORD)
            .await
    }

    pub async fn connect_replica_app(&self) -> Client {
        self.replica
            .connect_direct(APP_DB, APP_USER, APP_PASSWORD)
            .await
    }
}

fn app_target(pg: &PgCluster) -> ReplicaTarget {
    ReplicaTarget {
        host: "127.0.0.1".to_owned(),
        port: pg.port(),
        dbname: APP_DB.to_owned(),
        user: APP_USER.to_owned(),
        password: Some(APP_PASSWORD.to_owned()),
    }
}

/// Waits for a health reading that satisfies `pred` (the current one included); panics with
/// `what` and the last reading after `limit`.
pub async fn wait_health(
    handle: &mut HealthHandle,
    limit: Duration,
    what: &str,
    mut pred: impl FnMut(&ReplicaHealth) -> bool,
) -> ReplicaHealth {
    match tokio::time::timeout(limit, handle.wait_until(|h| pred(h))).await {
        Ok(Some(h)) => h,
        Ok(None) => panic!("{what}: the health checker stopped"),
        Err(_) => panic!(
            "{what}: not seen within {limit:?}; last reading: {:?}",
            handle.current()
        ),
    }
}
