//! One client's read/write splitting: which server a unit of work goes to, the unit held for a
//! retry on the primary, and the read-your-writes fence. The session calls its hooks at fixed
//! points (before a unit, on a reply, on release, on loss); nothing else in the relay looks at
//! routing. No I/O: checkouts are the session's.

use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use sluice_proto::backend::{BackendTag, ErrorResponse};
use sluice_proto::backend_view::DataRow;
use sluice_proto::{frontend, sqlstate};

use super::statements::ClientStatements;
use crate::config::ReplicaFallback;
use crate::router::unit::{Unit, classify_bytes, classify_unit};
use crate::router::{
    Classification, Outstanding, ReadConstraint, ReadYourWrites, Reason, RouteReason, Router,
    WriteFence,
};

/// A unit of work sent to a replica that can still be run on the primary instead: nothing of its
/// answer has reached the client (the answer is held in `to_client` from `hold_from`).
pub struct Retry {
    /// The client's messages of the unit, as received.
    pub bytes: Bytes,
    hold_from: usize,
    /// The replica refused it (25006): retry once its ReadyForQuery arrives.
    refused: bool,
}

/// Where the next unit goes.
pub enum Plan {
    /// Try replica `i` (its pool is `router.pools[i]`).
    Replica(usize),
    /// The primary, for this reason (None: a retried unit, counted when it was retried).
    Primary(Option<RouteReason>),
}

/// A client's read/write splitting state.
pub struct Routing {
    pub router: Arc<Router>,
    fence: WriteFence,
    /// The attached server is this replica's (None: the primary's, or no server).
    on_replica: Option<usize>,
    /// Counts this client on the replica for least-outstanding balancing.
    _outstanding: Option<Outstanding>,
    /// A `READ ONLY` transaction is open on the replica: everything goes there until it ends.
    ro_tx: bool,
    /// Work that was not provably read-only ran on the attached primary server: at the end of
    /// the transaction the read-your-writes fence moves.
    wrote: bool,
    /// The first unit sent to a replica, held for a retry on the primary.
    retry: Option<Retry>,
    /// The next unit goes to the primary (it is a retried one).
    force_primary: bool,
    /// The session stopped at a unit that must wait for the attached server to be released.
    blocked: bool,
    /// The answer of an LSN probe so far.
    probe_lsn: Option<u64>,
    /// An xid probe is out (see [`Routing::wants_xid_probe`]); true once another unit followed
    /// it, which voids its answer.
    xid_probe: Option<bool>,
    /// The xid probe's answer so far: no transaction id was assigned.
    no_xid: bool,
}

/// Asked just before a COMMIT on the primary: NULL when the transaction has no transaction id,
/// that is, wrote nothing (PostgreSQL 9.6 and later; granted to everyone).
pub const XID_PROBE_QUERY: &str = "SELECT txid_current_if_assigned()";

impl Routing {
    pub fn new(router: Arc<Router>) -> Routing {
        Routing {
            fence: router.fence(),
            router,
            on_replica: None,
            _outstanding: None,
            ro_tx: false,
            wrote: false,
            retry: None,
            force_primary: false,
            blocked: false,
            probe_lsn: None,
            xid_probe: None,
            no_xid: false,
        }
    }

    /// Classifies the unit starting with the whole message `first`, continuing in `rest`.
    pub fn classify(
        &self,
        statements: &ClientStatements,
        first: &[u8],
        rest: &[u8],
        max: usize,
    ) -> (Unit, Option<usize>) {
        let wf = &self.router.writing_functions;
        classify_unit(wf, first, rest, max, |name| {
            let stmt = statements.get(name)?;
            Some(*stmt.class.get_or_init(|| {
                classify_bytes(stmt.query(), wf)
                    .unwrap_or(Classification::primary(Reason::Malformed))
            }))
        })
    }

    /// Hook before a unit, with a server attached: whether the unit may run on it. Anything may
    /// run on the primary; on a replica, only the rest of a `READ ONLY` transaction, or read-only
    /// units the client's fence allows there.
    pub fn may_continue(&mut self, unit: Unit, len: Option<usize>) -> bool {
        let Some(i) = self.on_replica else {
            if !unit.read || len.is_none() {
                self.wrote = true;
            }
            if let Some(voided) = self.xid_probe.as_mut() {
                // A unit after the probe: its answer no longer covers the transaction.
                *voided = true;
            }
            return true;
        };
        if self.retry.is_some() {
            // One unit at a time until the first one's answer has begun.
            return false;
        }
        if self.ro_tx {
            if unit.ends_tx {
                self.ro_tx = false;
            }
            return true;
        }
        if !unit.read || len.is_none() {
            return false;
        }
        let health = self.router.replicas.health(i);
        let allowed = match self.fence.constraint(Instant::now()) {
            ReadConstraint::Any => health.is_eligible(None),
            ReadConstraint::MinLsn(lsn) => health.is_eligible(Some(lsn)),
            ReadConstraint::PrimaryOnly => false,
        };
        if allowed {
            self.ro_tx = unit.begins_ro_tx;
            self.router.stats.count(unit.replica_reason());
        }
        allowed
    }

    /// Hook before a unit, with no server attached: where it should go.
    pub fn plan(&mut self, unit: Unit, len: Option<usize>) -> Plan {
        let read = unit.read && len.is_some();
        if std::mem::take(&mut self.force_primary) {
            return Plan::Primary(None);
        }
        if !read {
            return Plan::Primary(Some(RouteReason::for_primary(unit.reason)));
        }
        let min = match self.fence.constraint(Instant::now()) {
            ReadConstraint::PrimaryOnly => {
                return Plan::Primary(Some(RouteReason::ReadYourWrites));
            }
            ReadConstraint::Any => None,
            ReadConstraint::MinLsn(lsn) => Some(lsn),
        };
        let replicas = &self.router.replicas;
        if replicas.draw_primary_share() {
            return Plan::Primary(Some(RouteReason::PrimaryShare));
        }
        match replicas.pick(min) {
            Some(i) => Plan::Replica(i),
            None if min.is_some() && replicas.pick(None).is_some() => {
                // Fenced: have the replicas polled fast so the next read can go there as soon
                // as one has replayed the write.
                replicas.want(min.unwrap_or(0));
                Plan::Primary(Some(RouteReason::ReadYourWrites))
            }
            None => Plan::Primary(Some(RouteReason::NoReplica)),
        }
    }

    /// Replica `i` took the unit (`bytes`, whose answer starts at `hold_from` in `to_client`).
    /// `outstanding` counted the client on it from before its checkout.
    pub fn on_replica(
        &mut self,
        i: usize,
        outstanding: Outstanding,
        unit: Unit,
        bytes: Bytes,
        hold_from: usize,
    ) {
        self.router.stats.count(unit.replica_reason());
        self._outstanding = Some(outstanding);
        self.on_replica = Some(i);
        self.ro_tx = unit.begins_ro_tx;
        self.retry = Some(Retry {
            bytes,
            hold_from,
            refused: false,
        });
    }

    /// The unit goes to the primary for `reason`: counted, and refused when reads must not fall
    /// back to the primary (`replica_fallback = "error"`) and no replica is in rotation.
    pub fn to_primary(
        &self,
        reason: Option<RouteReason>,
        database: &str,
    ) -> Result<(), ErrorResponse> {
        let Some(reason) = reason else {
            return Ok(());
        };
        self.router.stats.count(reason);
        // Until every replica has had its first health check (just after start), reads without
        // one go to the primary even with replica_fallback = "error".
        if reason == RouteReason::NoReplica
            && self.router.fallback == ReplicaFallback::Error
            && !self.router.replicas.any_unchecked()
        {
            return Err(ErrorResponse::error(
                sqlstate::CANNOT_CONNECT_NOW,
                format!("no replica of database \"{database}\" is in rotation"),
            )
            .hint("replica_fallback = \"error\" is set; see SHOW REPLICAS on the admin console"));
        }
        Ok(())
    }

    /// Hook before a unit that continues on the attached server: whether to ask the primary,
    /// ahead of it, if the transaction wrote anything. True for a unit that ends a transaction
    /// (`tx_status` `T`: open and not failed) that counts as a write so far: if it wrote
    /// nothing (`BEGIN; SET TRANSACTION READ ONLY; COMMIT`, a transaction of SELECTs) the
    /// client's reads need no fence. The session sends [`XID_PROBE_QUERY`] ahead of the unit, in
    /// the same write, and calls [`Routing::xid_probe_sent`].
    pub fn wants_xid_probe(&self, unit: Unit, tx_status: u8) -> bool {
        self.on_replica.is_none()
            && self.wrote
            && unit.ends_tx
            && tx_status == b'T'
            && self.router.read_your_writes != ReadYourWrites::Off
    }

    pub fn xid_probe_sent(&mut self) {
        self.xid_probe = Some(false);
        self.no_xid = false;
    }

    /// A reply to the xid probe. Returns true at its ReadyForQuery (the probe is done).
    pub fn on_xid_probe_reply(&mut self, tag: BackendTag, body: &[u8]) -> bool {
        match tag {
            BackendTag::DataRow => {
                self.no_xid = DataRow::decode(body)
                    .ok()
                    .and_then(|row| row.values().next())
                    .is_some_and(|first| first.is_none());
                false
            }
            BackendTag::ReadyForQuery => {
                if self.xid_probe.take() == Some(false) && self.no_xid {
                    // Nothing was written; the COMMIT behind the probe writes nothing either.
                    self.wrote = false;
                }
                true
            }
            _ => false,
        }
    }

    /// A primary server was attached for a unit; `read`: the unit is provably read-only.
    pub fn on_primary(&mut self, read: bool) {
        self.on_replica = None;
        self.wrote = !read;
    }

    /// Bytes of `to_client` (of `len`) that may be written now: the rest is a held replica answer.
    pub fn writable(&self, len: usize) -> usize {
        self.retry.as_ref().map_or(len, |r| r.hold_from)
    }

    /// `n` bytes of `to_client` went out.
    pub fn client_wrote(&mut self, n: usize) {
        if let Some(r) = self.retry.as_mut() {
            r.hold_from -= n;
        }
    }

    /// Hook on each reply while a unit is held for a retry: commits to the replica's answer at the
    /// first message that is more than statement bookkeeping, or marks the unit for a retry when
    /// the replica refuses it as a write (25006, `refusal`).
    pub fn on_reply(&mut self, tag: Option<BackendTag>, refusal: bool) {
        let Some(retry) = self.retry.as_mut() else {
            return;
        };
        if retry.refused {
            return;
        }
        match tag {
            Some(
                BackendTag::ParseComplete
                | BackendTag::BindComplete
                | BackendTag::CloseComplete
                | BackendTag::NoData
                | BackendTag::ParameterDescription
                | BackendTag::RowDescription,
            ) => {}
            Some(BackendTag::ErrorResponse) if refusal => retry.refused = true,
            _ => self.retry = None,
        }
    }

    /// The held unit was refused by the replica and its ReadyForQuery has arrived.
    pub fn refused(&self) -> bool {
        self.retry.as_ref().is_some_and(|r| r.refused)
    }

    /// A unit is held for a retry.
    pub fn holding(&self) -> bool {
        self.retry.is_some()
    }

    /// Gives up the replica for the held unit: it runs again on the primary. Returns the unit's
    /// bytes and where its held answer starts in `to_client`.
    pub fn take_retry(&mut self) -> Option<(Bytes, usize)> {
        let retry = self.retry.take()?;
        self.router.stats.count(RouteReason::Retried);
        self.leave_server();
        self.force_primary = true;
        self.blocked = true;
        Some((retry.bytes, retry.hold_from))
    }

    /// Hook at a clean point on the primary, before release: moves the read-your-writes fence if
    /// the transaction may have written. In `lsn` mode the primary's WAL position is asked for on
    /// the same connection first (written to `to_server`; returns true: release after its answer).
    pub fn at_release(&mut self, to_server: &mut BytesMut) -> bool {
        if self.on_replica.is_some() || !std::mem::take(&mut self.wrote) {
            return false;
        }
        match self.router.read_your_writes {
            ReadYourWrites::Off => false,
            ReadYourWrites::Window => {
                self.fence.record_write(None, Instant::now());
                false
            }
            ReadYourWrites::Lsn => {
                self.probe_lsn = None;
                frontend::write_query(crate::router::health::RYW_LSN_QUERY, to_server);
                true
            }
        }
    }

    /// A reply to the LSN probe. Returns true at its ReadyForQuery (the probe is done).
    pub fn on_probe_reply(&mut self, tag: BackendTag, body: &[u8]) -> bool {
        match tag {
            BackendTag::DataRow => {
                self.probe_lsn = DataRow::decode(body)
                    .ok()
                    .and_then(|row| row.first_text())
                    .and_then(crate::router::parse_lsn);
                false
            }
            BackendTag::ReadyForQuery => {
                // Undo the page-header offset the insert position has at a page start
                // (PostgreSQL's default page and segment sizes; with others the fence is only
                // stricter than needed).
                let lsn = self
                    .probe_lsn
                    .take()
                    .map(|l| crate::router::health::ryw_fence_lsn(l, 8192, 16 * 1024 * 1024));
                self.fence.record_write(lsn, Instant::now());
                true
            }
            _ => false,
        }
    }

    /// Hook on release at a clean point.
    pub fn released(&mut self) {
        self.leave_server();
        self.retry = None;
        self.xid_probe = None;
    }

    /// Hook on the loss of the attached server. Returns true when a held unit should be retried
    /// on the primary instead (the session then calls [`Routing::take_retry`]).
    pub fn on_loss(&mut self, probing: bool) -> bool {
        if self.retry.is_some() {
            return true;
        }
        self.xid_probe = None;
        if std::mem::take(&mut self.wrote) || probing {
            // The write may or may not have committed: keep reads on the primary a while.
            self.fence.record_write(None, Instant::now());
        }
        self.leave_server();
        false
    }

    /// The session stopped at a unit that waits for the attached server to be released.
    pub fn block(&mut self) {
        self.blocked = true;
    }

    /// Whether a unit waits; clears the mark (the session goes back to it).
    pub fn take_blocked(&mut self) -> bool {
        std::mem::take(&mut self.blocked)
    }

    pub fn is_blocked(&self) -> bool {
        self.blocked
    }

    /// The attached server is gone (released, lost, or given up for a retry).
    fn leave_server(&mut self) {
        self.on_replica = None;
        self._outstanding = None;
        self.ro_tx = false;
    }
}
