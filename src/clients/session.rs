//! [`SessionStats`]: what one client session reports while it runs: its entry in the client
//! list (SHOW CLIENTS: waiting since when, linked to which server connection) and the timing of
//! its open request and transaction, recorded into its pool's counters. Owned by the session;
//! the relay calls it at a few points.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::{ClientEntry, ClientList, NewClient};
use crate::clock::now_us;
use crate::pool::{CheckoutError, Pool, ServerGuard};

/// What a client session counts as it runs: its entry in the client list and its open request and
/// transaction. Owned by the session; `client/session.rs` calls it at a few points.
pub struct SessionStats {
    pub client: ClientEntry,
    query_start: Option<Instant>,
    xact_start: Option<Instant>,
}

impl SessionStats {
    /// Lists a client that has just logged in to `pool` (connected from `peer` to our `local`
    /// address).
    pub fn new(
        clients: &Arc<ClientList>,
        pool: &Arc<Pool>,
        local: Option<SocketAddr>,
        peer: SocketAddr,
        pid: i32,
        application_name: Option<&str>,
        tls: Option<String>,
    ) -> SessionStats {
        let client = clients.register(NewClient {
            database: &pool.key.database,
            user: &pool.key.user,
            pool: Some(pool.clone()),
            addr: peer,
            local,
            application_name: application_name.unwrap_or(""),
            remote_pid: pid,
            tls,
        });
        SessionStats {
            client,
            query_start: None,
            xact_start: None,
        }
    }

    /// A message went to the server: a request (and maybe a transaction) is under way.
    #[inline]
    pub fn request(&mut self) {
        if self.query_start.is_none() {
            let now = Instant::now();
            self.query_start = Some(now);
            self.xact_start.get_or_insert(now);
        }
    }

    /// ReadyForQuery from the server: a request ended; a transaction too if `tx_status` is idle.
    /// `more`: further requests are already queued behind it. Returns the time it read.
    pub fn ready(&mut self, pool: &Pool, tx_status: u8, more: bool) -> Instant {
        let now = Instant::now();
        let started = self.query_start.take().unwrap_or(now);
        pool.counters.record_query(now.duration_since(started));
        if tx_status == b'I' {
            let started = self.xact_start.take().unwrap_or(started);
            pool.counters
                .record_transaction(now.duration_since(started));
        }
        if more {
            self.request();
        }
        now
    }

    /// When the request the server is still answering went out; None when nothing is asked.
    #[inline]
    pub fn busy_since(&self) -> Option<Instant> {
        self.query_start
    }

    /// sluice gave up the server connection (a timeout); `code` is the error the client got.
    pub fn gave_up(&mut self, pool: &Pool, code: &str) {
        self.query_start = None;
        self.xact_start = None;
        pool.counters.error_code(code);
    }

    /// The relay lost its server connection.
    pub fn server_lost(&mut self, pool: &Pool, guard: &ServerGuard) {
        if let Some(e) = &guard.conn().entry {
            e.info.lost.store(true, Ordering::Relaxed);
        }
        self.query_start = None;
        self.xact_start = None;
        pool.counters
            .error_code(sluice_proto::sqlstate::CONNECTION_FAILURE);
    }

    /// Runs a checkout as this client's wait: shown as waiting meanwhile, linked to the server
    /// connection after.
    pub async fn waiting(
        &self,
        checkout: impl Future<Output = Result<ServerGuard, CheckoutError>>,
    ) -> Result<ServerGuard, CheckoutError> {
        struct Waiting<'a>(&'a ClientEntry);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.info.wait_since.store(0, Ordering::Relaxed);
            }
        }
        let now = now_us();
        self.client.info.request_time.store(now, Ordering::Relaxed);
        self.client.info.wait_since.store(now, Ordering::Relaxed);
        let _w = Waiting(&self.client);
        let guard = checkout.await?;
        link(&self.client, &guard);
        Ok(guard)
    }
}

fn link(client: &ClientEntry, guard: &ServerGuard) {
    if let Some(e) = &guard.conn().entry {
        e.info.client.store(client.info.id, Ordering::Relaxed);
    }
}
