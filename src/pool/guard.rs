//! The guards a checkout hands over. [`ServerGuard`]: a server connection lent to one client,
//! given back (or closed, if `dirty`) when dropped. `Slot`: the right to open one connection,
//! freed when dropped unused. Because everything handed over travels inside one of these, a
//! waiter that gives up passes it on by dropping it: nothing leaks a connection or a slot.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::Pool;
use super::outage::Ticket;
use crate::metrics::CloseReason;
use crate::server::ServerConn;

/// The right to open one connection, counted in `open`. Dropped unused, it frees the slot (and
/// gives up its probe, if it was admitted as the outage's one probe).
pub(super) struct Slot {
    pub(super) pool: Option<Arc<Pool>>,
    /// Admitted to connect (see `outage.rs`); slots handed over are admitted when used.
    pub(super) ticket: Option<Ticket>,
}

impl Slot {
    pub(super) fn new(pool: Arc<Pool>, ticket: Option<Ticket>) -> Slot {
        Slot {
            pool: Some(pool),
            ticket,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            pool.release_slot(self.ticket.take());
        }
    }
}

/// A server connection lent to one client. Dropped, it goes back to the pool, or is closed if
/// dirty (after a cancel of whatever it may still be running, unless the server is gone).
pub struct ServerGuard {
    conn: Option<Box<ServerConn>>,
    pool: Arc<Pool>,
}

impl ServerGuard {
    pub(super) fn new(pool: Arc<Pool>, conn: Box<ServerConn>) -> Self {
        pool.lent.fetch_add(1, Ordering::Relaxed);
        if let Some(e) = &conn.entry {
            e.info.lent();
        }
        ServerGuard {
            conn: Some(conn),
            pool,
        }
    }

    pub(super) fn take(&mut self) -> Box<ServerConn> {
        self.conn
            .take()
            .expect("guard holds a connection until dropped")
    }

    pub fn conn(&self) -> &ServerConn {
        self.conn
            .as_ref()
            .expect("guard holds a connection until dropped")
    }

    pub fn conn_mut(&mut self) -> &mut ServerConn {
        self.conn
            .as_mut()
            .expect("guard holds a connection until dropped")
    }

    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }
}

impl Drop for ServerGuard {
    fn drop(&mut self) {
        self.pool.lent.fetch_sub(1, Ordering::Relaxed);
        if let Some(conn) = self.conn.take() {
            if conn.dirty {
                let lost = conn
                    .entry
                    .as_ref()
                    .is_some_and(|e| e.info.lost.load(Ordering::Relaxed));
                if lost {
                    self.pool.discard(conn, CloseReason::ServerLost);
                } else {
                    self.pool.close_unclean(conn);
                }
            } else {
                self.pool.checkin(conn);
            }
        }
    }
}
