//! LISTEN / NOTIFY in transaction mode: one pool's subscriptions and its dedicated listening
//! connection (docs/listen-notify.md).
//!
//! In transaction mode a client's LISTEN never reaches a pooled server connection (which would
//! hand the notifications to whichever client came next). sluice records it in the pool's
//! [`Hub`]; one dedicated server connection per pool listens to the union of its clients'
//! channels (`conn.rs`), and each NotificationResponse it receives is put, unchanged, in the
//! [`Inbox`] of every client subscribed to its channel. The session (`client/listen.rs`) answers
//! LISTEN / UNLISTEN as PostgreSQL would and writes what its inbox holds when the client is idle.
//!
//! The rooms:
//! * `command.rs`: LISTEN / UNLISTEN in SQL text (pure);
//! * `registry.rs`: who listens to what (pure);
//! * `queue.rs`: one client's bounded queue and its overflow rule (pure);
//! * `conn.rs`: the dedicated connection's task (the only I/O here);
//! * here: the [`Hub`] that ties them together under one lock, and the per-client [`Inbox`].
//!
//! Owns: subscriptions and deliveries. Must not: know sessions, pools (the pool hands it a
//! [`Connector`]) or sockets of clients.

pub mod command;
mod conn;
pub mod queue;
pub mod registry;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Notify, oneshot};

pub use command::{Command, Parsed};
use queue::{Pushed, Queue};
use registry::Registry;

use crate::metrics::PubsubSample;
use crate::server::{ConnectError, ServerConn};

/// How the hub opens its dedicated connection (the pool provides it: its target and settings).
pub type Connector = Box<
    dyn Fn() -> Pin<Box<dyn Future<Output = Result<ServerConn, ConnectError>> + Send>>
        + Send
        + Sync,
>;

/// Told when a channel is listened to, or why it could not be.
type Waiter = oneshot::Sender<Result<(), String>>;

/// What the dedicated connection must do: (channels to LISTEN, channels to UNLISTEN).
type Diff = (Vec<Box<str>>, Vec<Box<str>>);

/// What a hub needs besides its connector.
#[derive(Debug, Clone)]
pub struct HubSettings {
    /// The pool, for logs.
    pub name: String,
    /// Wait between failed connects (`server_login_retry`).
    pub retry: Duration,
    /// Notifications held per client (`listen_queue_size`).
    pub queue_size: usize,
    pub max_message_size: usize,
}

/// One pool's subscriptions and deliveries.
pub struct Hub {
    settings: HubSettings,
    connect: Connector,
    state: Mutex<State>,
    /// The union changed: the dedicated connection's task has LISTENs or UNLISTENs to send.
    changed: Notify,
    next_client: AtomicU64,
    /// The dedicated connection is up.
    connected: AtomicBool,
    /// RECONNECT (or a RELOAD that moved the server): open the dedicated connection again.
    reopen: AtomicBool,
    /// Notifications put in a client's queue.
    pub deliveries: AtomicU64,
    /// Notifications lost to a queue overflow.
    pub drops: AtomicU64,
    /// Clients whose queue overflowed.
    pub overflows: AtomicU64,
}

#[derive(Default)]
struct State {
    registry: Registry,
    inboxes: HashMap<u64, Arc<Inbox>>,
    /// The dedicated connection's task is running.
    running: bool,
    /// Channels the dedicated connection listens to now (confirmed by its ReadyForQuery).
    listened: HashSet<Box<str>>,
    /// Channels an UNLISTEN is under way for on the dedicated connection.
    removing: Vec<Box<str>>,
    /// LISTENs waiting for their channel to be listened.
    waiters: Vec<(Box<str>, Waiter)>,
}

impl Hub {
    pub fn new(settings: HubSettings, connect: Connector) -> Arc<Hub> {
        Arc::new(Hub {
            settings,
            connect,
            state: Mutex::new(State::default()),
            changed: Notify::new(),
            next_client: AtomicU64::new(1),
            connected: AtomicBool::new(false),
            reopen: AtomicBool::new(false),
            deliveries: AtomicU64::new(0),
            drops: AtomicU64::new(0),
            overflows: AtomicU64::new(0),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A client's place in the hub, removed when dropped.
    pub fn subscriber(self: &Arc<Self>) -> Subscriber {
        let id = self.next_client.fetch_add(1, Ordering::Relaxed);
        let inbox = Arc::new(Inbox::default());
        self.state().inboxes.insert(id, inbox.clone());
        Subscriber {
            hub: self.clone(),
            id,
            inbox,
        }
    }

    /// `client` is about to LISTEN to `channel` (a LISTEN not in effect yet: [`Hub::commit`] or
    /// [`Hub::rollback`] ends it): the dedicated connection listens to it from now on. Returns
    /// what to wait on ([`Hub::confirm`]) when the channel is not listened to yet.
    pub fn reserve(
        self: &Arc<Self>,
        client: u64,
        channel: &str,
    ) -> Option<oneshot::Receiver<Result<(), String>>> {
        let rx = {
            let mut st = self.state();
            st.registry.add_pending(client, channel);
            if st.listened.contains(channel) && !st.removing.iter().any(|c| &**c == channel) {
                return None;
            }
            let (tx, rx) = oneshot::channel();
            st.waiters.push((channel.into(), tx));
            if !st.running {
                st.running = true;
                tokio::spawn(conn::run(self.clone()));
            }
            rx
        };
        self.changed.notify_one();
        Some(rx)
    }

    /// Waits up to `limit` for the dedicated connection to listen to `channel` (the `waiter` of
    /// [`Hub::reserve`]). On failure the reservation is ended.
    pub async fn confirm(
        &self,
        client: u64,
        channel: &str,
        waiter: Option<oneshot::Receiver<Result<(), String>>>,
        limit: Duration,
    ) -> Result<(), String> {
        let Some(rx) = waiter else {
            return Ok(());
        };
        let outcome = match tokio::time::timeout(limit, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err("the listening connection stopped".to_string()),
            Err(_) => Err(format!(
                "the listening connection did not confirm LISTEN within {limit:?}"
            )),
        };
        if outcome.is_err() {
            self.end_pending(client, channel);
        }
        outcome
    }

    fn end_pending(&self, client: u64, channel: &str) {
        if self.state().registry.drop_pending(client, channel) {
            self.changed.notify_one();
        }
    }

    /// `client`'s commands take effect (autocommit, or its transaction committed), in order. Each
    /// LISTEN among them was prepared with [`Hub::prepare_listen`].
    pub fn commit(&self, client: u64, commands: &[Command]) {
        let mut gone = false;
        {
            let mut st = self.state();
            for c in commands {
                match c {
                    Command::Listen(ch) => {
                        gone |= st.registry.set_active(client, ch, true);
                        gone |= st.registry.drop_pending(client, ch);
                    }
                    Command::Unlisten(ch) => gone |= st.registry.set_active(client, ch, false),
                    Command::UnlistenAll => gone |= !st.registry.deactivate_all(client).is_empty(),
                }
            }
        }
        if gone {
            self.changed.notify_one();
        }
    }

    /// `client`'s transaction rolled back: its prepared LISTENs end without effect.
    pub fn rollback(&self, client: u64, commands: &[Command]) {
        let mut gone = false;
        {
            let mut st = self.state();
            for c in commands {
                if let Command::Listen(ch) = c {
                    gone |= st.registry.drop_pending(client, ch);
                }
            }
        }
        if gone {
            self.changed.notify_one();
        }
    }

    fn remove(&self, client: u64) {
        let gone = {
            let mut st = self.state();
            st.inboxes.remove(&client);
            !st.registry.remove_client(client).is_empty()
        };
        if gone {
            self.changed.notify_one();
        }
    }

    /// A NotificationResponse (`message`, whole) on `channel` arrived: into the queue of every
    /// client subscribed to it.
    fn dispatch(&self, channel: &str, message: &Bytes) {
        let st = self.state();
        for client in st.registry.subscribers(channel) {
            let Some(inbox) = st.inboxes.get(&client) else {
                continue;
            };
            match inbox.push(message.clone(), self.settings.queue_size) {
                Pushed::Queued => {
                    self.deliveries.fetch_add(1, Ordering::Relaxed);
                }
                Pushed::Overflowed { dropped } => {
                    self.overflows.fetch_add(1, Ordering::Relaxed);
                    self.drops.fetch_add(dropped as u64 + 1, Ordering::Relaxed);
                    tracing::warn!(pool = %self.settings.name, client, queue = self.settings.queue_size, "a client's notification queue overflowed; ending its connection");
                }
                Pushed::Dropped => {
                    self.drops.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// The changes the dedicated connection must make: (channels to LISTEN, to UNLISTEN). `None`
    /// when there is nothing to listen to any more: the task then stops (under the same lock, so
    /// a LISTEN arriving now starts a new one).
    fn diff(&self) -> Option<Diff> {
        let mut st = self.state();
        if st.registry.is_empty() && st.listened.is_empty() {
            st.running = false;
            self.connected.store(false, Ordering::Relaxed);
            for (_, w) in st.waiters.drain(..) {
                let _ = w.send(Err("nothing to listen to".into()));
            }
            return None;
        }
        let add = st
            .registry
            .channels()
            .filter(|c| !st.listened.contains(*c))
            .map(Box::from)
            .collect();
        let remove = st
            .listened
            .iter()
            .filter(|c| !st.registry.has_channel(c))
            .cloned()
            .collect::<Vec<_>>();
        st.removing.clone_from(&remove);
        Some((add, remove))
    }

    /// The dedicated connection confirmed these LISTENs and UNLISTENs.
    fn listened(&self, added: &[Box<str>], removed: &[Box<str>]) {
        let mut st = self.state();
        for c in removed {
            st.listened.remove(c);
        }
        st.removing.clear();
        st.listened.extend(added.iter().cloned());
        let State {
            listened, waiters, ..
        } = &mut *st;
        let mut i = 0;
        while i < waiters.len() {
            if listened.contains(&waiters[i].0) {
                let (_, w) = waiters.swap_remove(i);
                let _ = w.send(Ok(()));
            } else {
                i += 1;
            }
        }
    }

    /// The dedicated connection failed (or could not be made): LISTENs waiting for it fail with
    /// `why`; it listens to nothing now.
    fn lost(&self, why: &str) {
        self.connected.store(false, Ordering::Relaxed);
        let mut st = self.state();
        st.listened.clear();
        st.removing.clear();
        for (_, w) in st.waiters.drain(..) {
            let _ = w.send(Err(why.to_string()));
        }
    }

    /// LISTENs that failed on the dedicated connection (PostgreSQL refused them).
    fn refused(&self, channels: &[Box<str>], why: &str) {
        let mut st = self.state();
        let mut i = 0;
        while i < st.waiters.len() {
            if channels.contains(&st.waiters[i].0) {
                let (_, w) = st.waiters.swap_remove(i);
                let _ = w.send(Err(why.to_string()));
            } else {
                i += 1;
            }
        }
    }

    /// Closes the dedicated connection and opens it again, to the pool's target as it is now, with
    /// every channel (RECONNECT, or a RELOAD that moved the server). Notifications sent in
    /// between are lost.
    pub fn reconnect(&self) {
        self.reopen.store(true, Ordering::Relaxed);
        self.changed.notify_one();
    }

    /// The numbers `/metrics` shows.
    pub fn sample(&self) -> PubsubSample {
        let st = self.state();
        PubsubSample {
            subscriptions: st.registry.subscriptions(),
            channels: st.listened.len(),
            connected: self.connected.load(Ordering::Relaxed),
            deliveries: self.deliveries.load(Ordering::Relaxed),
            drops: self.drops.load(Ordering::Relaxed),
            overflows: self.overflows.load(Ordering::Relaxed),
        }
    }
}

/// One client's notifications waiting for it, and the waker of its task.
#[derive(Default)]
pub struct Inbox {
    state: Mutex<InboxState>,
}

#[derive(Default)]
struct InboxState {
    queue: Queue,
    waker: Option<Waker>,
}

impl Inbox {
    fn lock(&self) -> MutexGuard<'_, InboxState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(&self, message: Bytes, cap: usize) -> Pushed {
        let mut st = self.lock();
        let pushed = st.queue.push(message, cap);
        if pushed != Pushed::Dropped {
            if let Some(w) = st.waker.take() {
                w.wake();
            }
        }
        pushed
    }

    /// Ready when the queue overflowed, or when `deliver` (the client may be sent notifications
    /// now) and some wait ([`Inbox::take`] them); else the task is woken when that changes.
    pub fn poll(&self, cx: &mut Context<'_>, deliver: bool) -> Poll<()> {
        let mut st = self.lock();
        if st.queue.overflowed() || (deliver && !st.queue.is_empty()) {
            return Poll::Ready(());
        }
        if !st.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            st.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }

    /// Notifications waiting now, oldest first; `None` when the queue overflowed (the client's
    /// connection must end).
    pub fn take(&self) -> Option<std::collections::VecDeque<Bytes>> {
        let mut st = self.lock();
        if st.queue.overflowed() {
            return None;
        }
        Some(st.queue.take())
    }
}

/// A client's place in a [`Hub`]: its id and inbox. Dropped, its subscriptions end.
pub struct Subscriber {
    pub hub: Arc<Hub>,
    pub id: u64,
    pub inbox: Arc<Inbox>,
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.hub.remove(self.id);
    }
}
