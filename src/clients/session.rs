//! [`SessionStats`]: what one client session reports while it runs: its entry in the client
//! list (SHOW CLIENTS: waiting since when, linked to which server connection) and the timing of
//! its open request and transaction, recorded into its pool's counters. Owned by the session;
//! the relay calls it at a few points.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use sluice_proto::backend::BackendTag;
use sluice_proto::frontend::FrontendTag;

use super::activity::{ACTIVE, IDLE, IDLE_IN_TRANSACTION, WAITING};
use super::{ClientEntry, ClientList, NewClient};
use crate::clock::{Mono, Stamp, now_us};
use crate::diag::{QueryTracker, Slow, TrackerSeed};
use crate::pool::{CheckoutError, Pool, ServerGuard};

/// What a client session counts as it runs: its entry in the client list and its open request and
/// transaction. Owned by the session; `client/session.rs` calls it at a few points.
pub struct SessionStats {
    pub client: ClientEntry,
    // Stamps, not Option<Instant>: 8 bytes each instead of 16, in every client's task.
    query_start: Stamp,
    xact_start: Stamp,
    /// When the checkout in progress (or just done) started: its wait is counted at the request
    /// that follows, with the clock reading that request takes anyway.
    wait_start: Stamp,
    /// Query statistics (`crate::diag`).
    queries: Queries,
}

/// A session's query statistics: the tracker is made at the session's first statement, so that a
/// client that only logs in and waits keeps a small seed instead (bench/README.md, "Idle client
/// memory").
enum Queries {
    /// `query_stats = false`.
    Off,
    /// Nothing asked yet.
    Seed(Box<TrackerSeed>),
    On(Box<QueryTracker>),
}

impl Queries {
    /// The tracker, made now if nothing was asked before; None with query statistics off.
    #[inline]
    fn tracker(&mut self) -> Option<&mut QueryTracker> {
        if let Queries::Seed(seed) = self {
            *self = Queries::On(Box::new(seed.tracker()));
        }
        self.made()
    }

    /// The tracker if one was made (what it would be told before then is about nothing).
    #[inline]
    fn made(&mut self) -> Option<&mut QueryTracker> {
        match self {
            Queries::On(q) => Some(q),
            _ => None,
        }
    }
}

/// Who a client that has just logged in is, as SHOW CLIENTS lists it.
pub struct Arrival<'a> {
    /// Our address the client connected to.
    pub local: Option<SocketAddr>,
    /// The client's address.
    pub peer: SocketAddr,
    /// The process id the client was given (BackendKeyData).
    pub pid: i32,
    pub application_name: Option<&'a str>,
    /// The TLS version and cipher, when the connection is TLS.
    pub tls: Option<String>,
}

impl SessionStats {
    /// Lists a client that has just logged in to `pool`.
    pub fn new(
        clients: &Arc<ClientList>,
        pool: &Arc<Pool>,
        arrival: Arrival<'_>,
        queries: Option<TrackerSeed>,
    ) -> SessionStats {
        let Arrival {
            local,
            peer,
            pid,
            application_name,
            tls,
        } = arrival;
        let client = clients.register(NewClient {
            database: pool.scope().database.clone(),
            user: pool.scope().user.clone(),
            pool: Some(pool.clone()),
            addr: peer,
            local,
            application_name: application_name.unwrap_or(""),
            remote_pid: pid,
            tls,
        });
        SessionStats {
            client,
            query_start: Stamp::NONE,
            xact_start: Stamp::NONE,
            wait_start: Stamp::NONE,
            queries: queries.map_or(Queries::Off, |s| Queries::Seed(Box::new(s))),
        }
    }

    /// A message went to the server: a request (and maybe a transaction) is under way.
    #[inline]
    pub fn request(&mut self) {
        if self.query_start.is_none() {
            let now = Mono::now();
            self.query_start = Stamp::at(now);
            if self.xact_start.is_none() {
                self.xact_start = self.query_start;
            }
            let activity = &self.client.info.activity;
            if let Some(w) = self.wait_start.take() {
                let us = now.us_since(w);
                activity.wait_total_us.fetch_add(us, Ordering::Relaxed);
                if let Some(q) = self.queries.tracker() {
                    q.waited(us);
                }
            }
            activity.set(ACTIVE, now.epoch_us());
        }
    }

    /// ReadyForQuery from the server: a request ended; a transaction too if `tx_status` is idle.
    /// `more`: further requests are already queued behind it. Returns the time it read.
    pub fn ready(&mut self, pool: &Pool, tx_status: u8, more: bool) {
        let now = Mono::now();
        let started = self.query_start.take().unwrap_or(now);
        let query = now.since(started);
        pool.counters.record_query(query);
        let mut xact = None;
        if tx_status == b'I' {
            let started = self.xact_start.take().unwrap_or(started);
            let d = now.since(started);
            pool.counters.record_transaction(d);
            xact = Some(d.as_micros() as u64);
        }
        if let Some(q) = self.queries.made() {
            let mut slow = Vec::new();
            q.ready(query.as_micros() as u64, xact, &mut slow);
            for s in slow {
                self.log_slow(pool, s);
            }
        }
        if more {
            self.request();
        } else {
            let state = if tx_status == b'I' {
                IDLE
            } else {
                IDLE_IN_TRANSACTION
            };
            self.client.info.activity.set(state, now.epoch_us());
        }
    }

    fn log_slow(&self, pool: &Pool, s: Slow) {
        let info = &self.client.info;
        tracing::warn!(
            pool = %pool.key,
            client = %info.addr,
            application_name = %info.application_name,
            elapsed_ms = s.elapsed_us as f64 / 1000.0,
            wait_ms = s.wait_us as f64 / 1000.0,
            fingerprint = %s.fingerprint.text,
            parameters = s.parameters.as_deref(),
            "slow statement"
        );
    }

    /// Every whole client message (query statistics: statement and portal names).
    #[inline]
    pub fn client_message(&mut self, tag: FrontendTag, msg: &Bytes) {
        if matches!(
            tag,
            FrontendTag::Parse | FrontendTag::Bind | FrontendTag::Close
        ) {
            if let Some(q) = self.queries.tracker() {
                q.client_message(tag, msg);
            }
        }
    }

    /// A client message goes to the server (query statistics; SHOW CLIENTS' current statement).
    #[inline]
    pub fn sent(&mut self, tag: FrontendTag, msg: &Bytes) {
        let Some(q) = self.queries.tracker() else {
            return;
        };
        if let Some(fp) = q.sent(tag, msg) {
            self.client.info.activity.set_current(fp);
        }
    }

    /// A server reply to the client's requests (not to sluice's own).
    #[inline]
    pub fn reply(&mut self, tag: BackendTag, body: &[u8]) {
        if let Some(q) = self.queries.made() {
            q.reply(tag, body);
        }
    }

    /// What the server owed is forgotten (it is gone, or the unit runs again elsewhere).
    pub fn forget_requests(&mut self) {
        if let Some(q) = self.queries.made() {
            q.forget();
        }
    }

    /// The server forgot every prepared statement (DISCARD ALL, DEALLOCATE ALL).
    pub fn forget_names(&mut self) {
        if let Some(q) = self.queries.made() {
            q.forget_names();
        }
    }

    /// When the request the server is still answering went out; None when nothing is asked.
    #[inline]
    pub fn busy_since(&self) -> Option<std::time::Instant> {
        self.query_start.get().map(Mono::instant)
    }

    /// sluice gave up the server connection (a timeout); `code` is the error the client got.
    pub fn gave_up(&mut self, pool: &Pool, code: &str) {
        self.query_start = Stamp::NONE;
        self.xact_start = Stamp::NONE;
        self.forget_requests();
        self.client.info.activity.set(IDLE, now_us());
        pool.counters.error_code(code);
    }

    /// The relay lost its server connection.
    pub fn server_lost(&mut self, pool: &Pool, guard: &ServerGuard) {
        if let Some(e) = &guard.conn().entry {
            e.info.lost.store(true, Ordering::Relaxed);
        }
        self.query_start = Stamp::NONE;
        self.xact_start = Stamp::NONE;
        self.forget_requests();
        self.client.info.activity.set(IDLE, now_us());
        pool.counters
            .error_code(sluice_proto::sqlstate::CONNECTION_FAILURE);
    }

    /// Runs a checkout as this client's wait: shown as waiting meanwhile, linked to the server
    /// connection after.
    pub async fn waiting(
        &mut self,
        checkout: impl Future<Output = Result<ServerGuard, CheckoutError>>,
    ) -> Result<ServerGuard, CheckoutError> {
        struct Waiting<'a>(&'a ClientEntry);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.info.wait_since.store(0, Ordering::Relaxed);
            }
        }
        let start = Mono::now();
        let now = start.epoch_us();
        self.client.info.request_time.store(now, Ordering::Relaxed);
        self.client.info.wait_since.store(now, Ordering::Relaxed);
        self.client.info.activity.set(WAITING, now);
        self.wait_start = Stamp::at(start);
        let _w = Waiting(&self.client);
        match checkout.await {
            Ok(guard) => {
                link(&self.client, &guard);
                Ok(guard)
            }
            Err(e) => {
                self.wait_start = Stamp::NONE;
                let activity = &self.client.info.activity;
                let waited = Mono::now().us_since(start);
                activity.wait_total_us.fetch_add(waited, Ordering::Relaxed);
                activity.set(IDLE, now_us());
                Err(e)
            }
        }
    }
}

fn link(client: &ClientEntry, guard: &ServerGuard) {
    if let Some(e) = &guard.conn().entry {
        e.info.client.store(client.info.id, Ordering::Relaxed);
    }
}
