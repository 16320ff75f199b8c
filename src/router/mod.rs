//! Read/write splitting: the decisions and state routing needs, without I/O on the relay's path.
//!
//! * [`classify`](mod@classify) decides per query string whether it may run on a replica.
//! * [`health`] polls each replica in the background ([`spawn_checker`]) and publishes whether it
//!   is in rotation and how far it has replayed.
//! * [`ryw`] keeps a client's reads behind its own writes ([`WriteFence`]).
//! * [`replicas`] picks a replica among the healthy ones ([`ReplicaSet::pick`]), by the
//!   configured [`Balance`], and counts reads in flight.
//! * [`Router`] (here) holds those for one primary pool, with the database's routing settings,
//!   and counts each decision by [`RouteReason`].
//!
//! Owns: the decisions. Must not: check out server connections or touch sockets. The replica
//! pools themselves belong to the primary pool (`Pool::replicas`, in the order of
//! [`ReplicaSet`]'s indexes); the client session checks out from them.
//!
//! # How a session routes
//! Routing happens in the client session (transaction mode, a database with replicas), one
//! *unit* at a time: a simple Query, or an extended-protocol batch up to its Sync. A
//! transaction runs where its first unit went.
//!
//! * No server attached (the session's `attach_routed`): the unit is classified, every
//!   statement it names included (a named statement by its pool-wide classification). A unit
//!   not provably read-only, or whose Sync has not arrived yet, goes to the primary. A read-only
//!   one asks the client's [`WriteFence`]: `PrimaryOnly` sends it to the primary; otherwise,
//!   unless drawn for the `primary_reads` share, [`ReplicaSet::pick`] chooses a replica (with the
//!   fence's minimum LSN) and the session checks out from that replica's pool, counted by an
//!   [`Outstanding`] guard. The replica's answer is held back until it is more than statement
//!   bookkeeping, so a refusal (25006) or a lost connection before that reruns the unit on the
//!   primary. With no replica eligible the unit goes to the primary, or fails with 57P03 under
//!   `replica_fallback = "error"` once every replica has had a health check.
//! * A server attached, at each unit boundary (the session's `may_continue`): on the primary
//!   every unit continues (one not provably read-only marks the transaction as writing); on a
//!   replica only the rest of a `READ ONLY` transaction, or further read-only units the fence
//!   still allows there. Any other unit waits until the replica connection is released and is
//!   then routed afresh.
//! * When a transaction that may have written on the primary ends, the fence moves: in `lsn`
//!   mode after reading the primary's WAL insert position on the same connection
//!   ([`health::RYW_LSN_QUERY`]), in `window` mode at once.

pub mod classify;
pub mod health;
pub mod replicas;
pub mod ryw;
pub mod setting;
pub mod unit;

/// Routing settings, defined with the rest of the configuration.
pub use crate::config::{Balance, ReadYourWrites, ReplicaFallback};
pub use classify::{Classification, Reason, Route, classify};
pub use health::{
    HealthHandle, HealthPolicy, HealthReporter, ReplicaHealth, ReplicaTarget, parse_lsn,
    spawn_checker,
};
pub use replicas::{Outstanding, ReplicaSet};
pub use ryw::{ReadConstraint, WriteFence};

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Read/write splitting for one primary pool: its replicas' health and load, the rules, and the
/// count of decisions. The replicas' pools are the primary pool's (`Pool::replicas`), by the
/// same index.
pub struct Router {
    pub replicas: Arc<ReplicaSet>,
    /// `host:port` of each replica (the `replica` metrics label).
    pub addrs: Vec<String>,
    pub read_your_writes: ReadYourWrites,
    pub read_your_writes_window: Duration,
    pub writing_functions: Vec<String>,
    pub fallback: ReplicaFallback,
    pub stats: RouteStats,
}

impl Router {
    /// A fresh read-your-writes fence for a client session.
    pub fn fence(&self) -> WriteFence {
        WriteFence::new(self.read_your_writes, self.read_your_writes_window)
    }
}

/// Why a unit of work (an autocommit statement, a batch up to Sync, or a transaction) went where
/// it went. Counted once per routing decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteReason {
    /// Provably read-only, outside a transaction (replica).
    ReadOnly,
    /// A transaction opened `READ ONLY` (replica).
    ReadOnlyTransaction,
    /// A `sluice:replica` hint on a statement the classifier could not prove (replica).
    Hint,
    /// A write: DML, DDL, locking clause, writing function, writable CTE, a transaction that is
    /// not read-only, session state (primary).
    Write,
    /// The classifier could not prove it read-only (primary).
    Uncertain,
    /// Read-only, but no replica has replayed the client's last write yet (primary).
    ReadYourWrites,
    /// Read-only, but no replica is in rotation (primary).
    NoReplica,
    /// Read-only, but drawn for the primary's `primary_reads` share (primary).
    PrimaryShare,
    /// A replica refused it (25006) or failed before answering: run again on the primary.
    Retried,
}

impl RouteReason {
    pub const ALL: [RouteReason; 9] = [
        RouteReason::ReadOnly,
        RouteReason::ReadOnlyTransaction,
        RouteReason::Hint,
        RouteReason::Write,
        RouteReason::Uncertain,
        RouteReason::ReadYourWrites,
        RouteReason::NoReplica,
        RouteReason::PrimaryShare,
        RouteReason::Retried,
    ];

    pub fn label(self) -> &'static str {
        match self {
            RouteReason::ReadOnly => "read_only",
            RouteReason::ReadOnlyTransaction => "read_only_transaction",
            RouteReason::Hint => "hint",
            RouteReason::Write => "write",
            RouteReason::Uncertain => "uncertain",
            RouteReason::ReadYourWrites => "read_your_writes",
            RouteReason::NoReplica => "no_replica",
            RouteReason::PrimaryShare => "primary_share",
            RouteReason::Retried => "retried",
        }
    }

    /// The column of SHOW REPLICAS on the admin console.
    pub fn column(self) -> &'static str {
        match self {
            RouteReason::ReadOnly => "routed_read_only",
            RouteReason::ReadOnlyTransaction => "routed_read_only_transaction",
            RouteReason::Hint => "routed_hint",
            RouteReason::Write => "routed_write",
            RouteReason::Uncertain => "routed_uncertain",
            RouteReason::ReadYourWrites => "routed_read_your_writes",
            RouteReason::NoReplica => "routed_no_replica",
            RouteReason::PrimaryShare => "routed_primary_share",
            RouteReason::Retried => "routed_retried",
        }
    }

    /// `replica` or `primary`.
    pub fn target(self) -> &'static str {
        match self {
            RouteReason::ReadOnly | RouteReason::ReadOnlyTransaction | RouteReason::Hint => {
                "replica"
            }
            _ => "primary",
        }
    }

    /// The primary-side reason for a classifier answer that is not provably read-only.
    pub fn for_primary(reason: Reason) -> RouteReason {
        match reason {
            Reason::Uncertain
            | Reason::Empty
            | Reason::Malformed
            | Reason::Ambiguous
            | Reason::MultiStatement => RouteReason::Uncertain,
            _ => RouteReason::Write,
        }
    }
}

/// Routing decisions of one primary pool, by [`RouteReason`].
#[derive(Debug, Default)]
pub struct RouteStats {
    counts: [AtomicU64; RouteReason::ALL.len()],
}

impl RouteStats {
    pub fn count(&self, reason: RouteReason) {
        self.counts[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self, reason: RouteReason) -> u64 {
        self.counts[reason as usize].load(Ordering::Relaxed)
    }
}
