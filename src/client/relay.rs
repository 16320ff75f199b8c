//! The relay: the I/O loop of a session. It polls the client's and the server's sockets, walks
//! the bytes by message header, and hands each whole message that matters to the session.
//!
//! Four buffers per client (`buffers.rs`): bytes read from the client (`cli_in`) and from the server (`srv_in`),
//! and bytes owed to each (`to_server`, `to_client`). Each round polls the four socket operations
//! in turn and acts on the first that can make progress, so a large result and a large COPY can
//! both be in flight without deadlock, and reading stops while more than [`HIGH_WATER`] bytes are
//! owed to the other side (backpressure: a slow reader never makes sluice buffer a whole result).
//!
//! Messages are walked by header. Only the few whose body matters are held whole; all others
//! (DataRow, CopyData, ...) are passed on as their bytes arrive, whatever their size. An idle
//! client (no server, nothing buffered) holds no buffers at all: its box goes back to the
//! per-thread cache.

use std::pin::Pin;

use bytes::{Buf, BytesMut};
use sluice_proto::backend::BackendTag;
use sluice_proto::frontend::FrontendTag;
use sluice_proto::{Header, ProtocolError, sqlstate};
use tokio::io::AsyncReadExt;
use tokio_util::io::poll_read_buf;

use super::login::READ_CHUNK;
use super::session::{Session, Step};
use super::{Fatal, checkout_error};
use crate::clients::{STOP_DRAIN, STOP_KILL};

/// The longest message that streams (CopyData, a large simple Query): PostgreSQL's own limit for
/// them (`PQ_LARGE_MESSAGE_LIMIT`, 1 GB less 2 bytes), so sluice takes what PostgreSQL takes.
const STREAM_MAX: usize = 0x3FFF_FFFE;
/// Stop reading from one side while this many bytes are owed to the other.
const HIGH_WATER: usize = 256 * 1024;
/// A buffer that grew past this while busy is given back when it empties.
const SHRINK_ABOVE: usize = 64 * 1024;

enum Event {
    Drain,
    Kill,
    ClientReadable(std::io::Result<()>),
    ClientRead(std::io::Result<usize>),
    ClientWrote(std::io::Result<usize>),
    ServerRead(std::io::Result<usize>),
    ServerWrote(std::io::Result<usize>),
    /// The session's timer went off (client/timeouts.rs).
    Timer,
    /// Notifications for the client, or its queue overflowed (client/listen.rs).
    Notified,
}

/// Polls `fut` once: its output if it is ready now, `None` if it would wait.
async fn now_or_never<F: std::future::Future>(fut: F) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(|cx| match fut.as_mut().poll(cx) {
        std::task::Poll::Ready(v) => std::task::Poll::Ready(Some(v)),
        std::task::Poll::Pending => std::task::Poll::Ready(None),
    })
    .await
}

fn shrink(buf: &mut BytesMut) {
    if buf.is_empty() && buf.capacity() > SHRINK_ABOVE {
        *buf = BytesMut::new();
    }
}

/// Server messages held whole: the ones that end a request or carry state. (`internal`: the
/// answer to sluice's own query, whose DataRow is read too.)
fn held_whole(tag: Option<BackendTag>, internal: bool) -> bool {
    use BackendTag::*;
    let Some(tag) = tag else {
        return false;
    };
    matches!(
        tag,
        ReadyForQuery
            | ParameterStatus
            | CopyInResponse
            | ErrorResponse
            | ParseComplete
            | BindComplete
            | CloseComplete
            | NoData
            | PortalSuspended
            | EmptyQueryResponse
            | CommandComplete
            | RowDescription
    ) || (internal && tag == DataRow)
}

impl Session {
    pub(super) async fn relay(&mut self) -> Result<(), Fatal> {
        // KILL, or the pooler draining (also when the drain began before this session
        // registered): the client list wakes this task. Registering the waker costs a lock; once
        // registered (the task's waker stays the same), a round only needs to look at the stop
        // bits, which are set before the wake-up. `armed`: registered; `handled`: bits acted on.
        let mut armed = false;
        let mut handled = 0u8;
        loop {
            self.write_now()?;
            if self.want_room {
                // A large server message waits for room under max_message_memory (memory.rs).
                let len = self.wanted_room();
                self.want_room = false;
                if Box::pin(self.take_room(len)).await {
                    self.process_server();
                } else {
                    self.server_no_room(len);
                    self.server_lost("a large server message found no room under max_message_memory within query_wait_timeout");
                }
                continue;
            }
            // A failed write to a replica may have put its unit back for the primary.
            if self.server.is_none() && self.route.as_deref_mut().is_some_and(|r| r.take_blocked())
            {
                if self.process_client().await? {
                    return Ok(());
                }
                continue;
            }
            if self.draining && self.server.is_none() && self.bufs.to_client.is_empty() {
                return Err(Fatal::new(
                    sqlstate::ADMIN_SHUTDOWN,
                    "terminating connection due to administrator command",
                ));
            }
            // An idle client (no server, nothing buffered) holds no buffers: it waits for its
            // socket to become readable and only then gets a read buffer. Most of a pooler's
            // clients are idle most of the time.
            let idle = self.server.is_none()
                && self.bufs.cli_in.is_empty()
                && self.cli_skip == 0
                && self.bufs.to_client.is_empty()
                && self.bufs.to_server.is_empty();
            if idle {
                self.bufs.give();
            } else if self.bufs.cli_in.capacity() - self.bufs.cli_in.len() < READ_CHUNK / 2 {
                self.bufs.cli_in.reserve(READ_CHUNK);
            }
            if self.server.is_some()
                && self.bufs.srv_in.capacity() - self.bufs.srv_in.len() < READ_CHUNK / 2
            {
                self.bufs.srv_in.reserve(READ_CHUNK);
            }
            let writable = self.writable();
            let blocked = self.route.as_deref().is_some_and(|r| r.is_blocked())
                || self.subscription_waiting()
                || (self.cache_unnamed && self.unnamed_waiting());
            // The sockets are polled directly, in this order (the first ready one wins), rather
            // than through a select! over one future per socket: a future per socket is state
            // that every client's task keeps for its whole life, idle or not.
            let has_server = self.server.is_some();
            let write_server = has_server && !self.bufs.to_server.is_empty();
            let read_server = has_server && self.bufs.to_client.len() < HIGH_WATER;
            let read_client = idle
                || (self.bufs.to_server.len() < HIGH_WATER
                    && !(blocked && self.bufs.cli_in.len() >= HIGH_WATER));
            let this = &mut *self;
            let armed_now = &mut armed;
            // `move`: the closure holds copies of the flags above rather than a reference to each
            // (which would also keep them alive across the awaits below: room in every task).
            let event = std::future::poll_fn(move |cx| {
                use std::task::Poll;
                use tokio::io::AsyncWrite;
                // The session is captured whole, by one reference: a closure capturing each field
                // it uses would keep one reference per field in every idle client's future.
                let this = &mut *this;
                let info = &this.stats.client.info;
                if !*armed_now || info.stop_requested() & !handled != 0 {
                    *armed_now = true;
                    if let Poll::Ready(bits) = info.poll_stop(cx, handled) {
                        return Poll::Ready(if bits & STOP_KILL != 0 {
                            Event::Kill
                        } else {
                            Event::Drain
                        });
                    }
                }
                // Before the sockets: a result that streams without pause must not hide it.
                if let Some(t) = this.timer.as_deref_mut() {
                    if t.poll_expired(cx) {
                        return Poll::Ready(Event::Timer);
                    }
                }
                // Notifications go to a client idle outside a transaction (no server attached in
                // transaction mode); an overflow is seen whenever.
                if let Some(l) = this.listen.as_deref() {
                    let deliver = this.server.is_none() && this.bufs.to_client.len() < HIGH_WATER;
                    if l.sub.inbox.poll(cx, deliver).is_ready() {
                        return Poll::Ready(Event::Notified);
                    }
                }
                if let (true, Some(g)) = (write_server, this.server.as_mut()) {
                    let stream = Pin::new(&mut g.conn_mut().stream);
                    if let Poll::Ready(r) = stream.poll_write(cx, &this.bufs.to_server) {
                        return Poll::Ready(Event::ServerWrote(r));
                    }
                }
                if writable > 0 {
                    let client = Pin::new(&mut this.client);
                    if let Poll::Ready(r) = client.poll_write(cx, &this.bufs.to_client[..writable])
                    {
                        return Poll::Ready(Event::ClientWrote(r));
                    }
                }
                // TLS records still queued in rustls after a write (net/stream.rs): the socket
                // takes them when it has room. Nothing to do for plain TCP.
                if this.client.wants_flush() {
                    if let Poll::Ready(Err(e)) = Pin::new(&mut this.client).poll_flush(cx) {
                        return Poll::Ready(Event::ClientWrote(Err(e)));
                    }
                }
                if let Some(g) = this.server.as_mut() {
                    let stream = &mut g.conn_mut().stream;
                    if stream.wants_flush() {
                        if let Poll::Ready(Err(e)) = Pin::new(stream).poll_flush(cx) {
                            return Poll::Ready(Event::ServerWrote(Err(e)));
                        }
                    }
                }
                if let (true, Some(g)) = (read_server, this.server.as_mut()) {
                    let stream = Pin::new(&mut g.conn_mut().stream);
                    if let Poll::Ready(r) = poll_read_buf(stream, cx, &mut this.bufs.srv_in) {
                        return Poll::Ready(Event::ServerRead(r));
                    }
                }
                if idle {
                    if let Poll::Ready(r) = this.client.poll_read_ready(cx) {
                        return Poll::Ready(Event::ClientReadable(r));
                    }
                } else if read_client {
                    let client = Pin::new(&mut this.client);
                    if let Poll::Ready(r) = poll_read_buf(client, cx, &mut this.bufs.cli_in) {
                        return Poll::Ready(Event::ClientRead(r));
                    }
                }
                // About to wait: the timer must wake this task by the deadline in force.
                if this.timer_before_wait(cx) {
                    return Poll::Ready(Event::Timer);
                }
                Poll::Pending
            })
            .await;
            let from_client = matches!(event, Event::ClientRead(_) | Event::ClientReadable(_));
            // What the event asks of the session that takes an await is done after the match, so
            // that the event itself is not kept across those awaits (room in every task).
            let mut read_now = false;
            let mut process_client = false;
            match event {
                Event::Drain => {
                    self.draining = true;
                    handled |= STOP_DRAIN;
                }
                Event::Kill => {
                    return Err(Fatal::new(
                        sqlstate::ADMIN_SHUTDOWN,
                        "terminating connection due to administrator command (KILL)",
                    ));
                }
                Event::ClientReadable(r) => {
                    r?;
                    // The buffers' box, with storage for the read buffer only: the other three
                    // get theirs when a server is attached (`attach_guard`), so that a client
                    // waiting in a pool's queue holds one buffer, not four (a storm of 5,000
                    // waiting clients, issue 16).
                    self.bufs.cli_in.reserve(READ_CHUNK);
                    read_now = true;
                }
                Event::Timer => self.on_timer()?,
                Event::Notified => {
                    let inbox = self.listen.as_deref().map(|l| l.sub.inbox.clone());
                    match inbox.and_then(|i| i.take()) {
                        Some(notifications) => self.deliver(notifications),
                        None => {
                            return Err(super::listen::overflow_error(
                                self.pool.settings.listen_queue_size,
                            ));
                        }
                    }
                }
                Event::ClientWrote(r) => self.client_wrote(r?),
                Event::ServerWrote(Ok(n)) => self.server_wrote(n),
                Event::ServerWrote(Err(e)) | Event::ServerRead(Err(e)) => {
                    self.server_lost(&e.to_string())
                }
                Event::ServerRead(Ok(0)) => {
                    self.server_lost("server closed the connection unexpectedly")
                }
                Event::ServerRead(Ok(_)) => {
                    self.process_server();
                    shrink(&mut self.bufs.srv_in);
                }
                Event::ClientRead(r) => {
                    let n = r?;
                    if n == 0 {
                        return Ok(());
                    }
                    self.received(n);
                    process_client = true;
                }
            }
            if read_now {
                // Not try_read_buf: read_buf takes a short read as "socket drained", so the
                // next round does not make a read syscall only to get EAGAIN.
                match now_or_never(self.client.read_buf(&mut self.bufs.cli_in)).await {
                    Some(Ok(0)) => return Ok(()),
                    Some(Ok(n)) => {
                        self.received(n);
                        if self.process_client().await? {
                            return Ok(());
                        }
                    }
                    None => {}
                    Some(Err(e)) => return Err(e.into()),
                }
            }
            if process_client {
                let close = self.process_client().await?;
                shrink(&mut self.bufs.cli_in);
                if close {
                    return Ok(());
                }
            }
            self.give_room_if_small();
            // A unit that waited for the attached server (routing), a LISTEN that waited for
            // the answers before it, or a batch behind one that may be replayed (or the replay
            // itself, client/unnamed.rs) may be able to go now.
            if !from_client
                && (self.route.as_deref_mut().is_some_and(|r| r.take_blocked())
                    || self.subscription_unblocked()
                    || (self.cache_unnamed && self.unnamed_resume()))
                && self.process_client().await?
            {
                return Ok(());
            }
        }
    }

    /// Writes what either side is owed right away, as far as its socket takes it, instead of in
    /// the next round of the relay; whatever is left waits for that round as before.
    fn write_now(&mut self) -> Result<(), Fatal> {
        if let (false, Some(g)) = (self.bufs.to_server.is_empty(), self.server.as_mut()) {
            match g.conn_mut().stream.try_write(&self.bufs.to_server) {
                Ok(n) => self.server_wrote(n),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => self.server_lost(&e.to_string()),
            }
        }
        let writable = self.writable();
        if writable > 0 {
            match self.client.try_write(&self.bufs.to_client[..writable]) {
                Ok(n) => self.client_wrote(n),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Bytes of `to_client` that may be written now (the rest is a held replica answer, or
    /// local answers that go out with the server's reply: `Exchange::holds_back`).
    fn writable(&self) -> usize {
        if self.server.is_some() && self.exchange.holds_back(&self.bufs.to_client) {
            return 0;
        }
        match self.route.as_deref() {
            Some(r) => r.writable(self.bufs.to_client.len()),
            None => self.bufs.to_client.len(),
        }
    }

    /// `n` bytes of `to_client` went out.
    fn client_wrote(&mut self, n: usize) {
        self.pool
            .counters
            .sent
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        self.bufs.to_client.advance(n);
        if let Some(r) = self.route.as_deref_mut() {
            r.client_wrote(n);
        }
        shrink(&mut self.bufs.to_client);
    }

    /// `n` bytes of `to_server` went out.
    fn server_wrote(&mut self, n: usize) {
        self.bufs.to_server.advance(n);
        shrink(&mut self.bufs.to_server);
    }

    /// Walks the client's bytes: CopyData streams through, every other message is handed to the
    /// session whole. Returns true when the client said Terminate.
    async fn process_client(&mut self) -> Result<bool, Fatal> {
        loop {
            if self.cli_skip > 0 {
                let n = self.cli_skip.min(self.bufs.cli_in.len());
                if n == 0 {
                    break;
                }
                if !self.cli_skip_discard {
                    let bufs = &mut *self.bufs;
                    bufs.to_server.extend_from_slice(&bufs.cli_in[..n]);
                }
                self.bufs.cli_in.advance(n);
                self.cli_skip -= n;
                continue;
            }
            // Messages that stream (CopyData, most large Queries) may be as long as PostgreSQL
            // takes; the ones held whole are capped by max_message_size below.
            let header = match Header::parse(&self.bufs.cli_in, STREAM_MAX) {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(ProtocolError::TooLarge { len, .. })
                    if ![b'd', b'Q'].contains(&self.bufs.cli_in[0]) =>
                {
                    let max = self.max;
                    return Err(Fatal::invalid_message(ProtocolError::TooLarge { len, max }));
                }
                Err(e) => return Err(Fatal::invalid_message(e)),
            };
            let len = header.wire_len();
            if header.tag == FrontendTag::CopyData.as_u8() {
                // CopyData streams through whatever its size; without a server (the COPY failed or
                // the server was lost) it is dropped, as PostgreSQL drops it after a COPY error.
                let n = len.min(self.bufs.cli_in.len());
                let discard = self.server.is_none() || self.exchange.discarding();
                if !discard {
                    let bufs = &mut *self.bufs;
                    bufs.to_server.extend_from_slice(&bufs.cli_in[..n]);
                }
                self.bufs.cli_in.advance(n);
                self.cli_skip = len - n;
                self.cli_skip_discard = discard;
                continue;
            }
            // A simple Query over max_message_size that sluice need not read whole streams to
            // the server like CopyData: the session sees its head only (`query_streams`).
            let streams = header.body_len > self.max
                && self.bufs.cli_in.len() < len
                && header.tag == FrontendTag::Query.as_u8()
                && self.query_streams();
            if !streams && header.body_len > self.max {
                return Err(Fatal::invalid_message(ProtocolError::TooLarge {
                    len: header.body_len,
                    max: self.max,
                }));
            }
            if !streams && self.bufs.cli_in.len() < len {
                // A large message takes room under max_message_memory before it is read.
                if self.needs_room(len) {
                    if !Box::pin(self.take_room(len)).await {
                        return Err(self.no_room(len));
                    }
                    // One allocation of the message's size, not a series of doublings up to it.
                    let buf = &mut self.bufs.cli_in;
                    buf.reserve(len - buf.len());
                }
                break;
            }
            let msg = if streams {
                // The rest follows as it arrives, once the head went to a server (`forward`
                // clears the discard); else (no server, a local answer) it is dropped.
                self.cli_skip = len - self.bufs.cli_in.len();
                self.cli_skip_discard = true;
                self.bufs.cli_in.split().freeze()
            } else {
                self.bufs.cli_in.split_to(len).freeze()
            };
            let mut step = self.on_client_message(msg)?;
            if let Step::Checkout(tag, msg) = step {
                // Boxed: a checkout's future is as big as the rest of the relay put together,
                // and the relay's future lives as long as the client, idle or not. One small
                // allocation per transaction keeps every idle client that much smaller.
                let attached = if self.route.is_some() {
                    Box::pin(self.attach_routed(&msg)).await
                } else {
                    Box::pin(self.attach())
                        .await
                        .map_err(|e| checkout_error(&e, &self.pool, &self.limits.incidents))
                };
                step = self.after_checkout(tag, msg, attached)?;
            }
            if let Step::Subscribe(s) = step {
                // Boxed for the same reason as a checkout.
                step = Box::pin(self.subscribe(s)).await?;
            }
            match step {
                Step::Next => {}
                Step::Wait => break,
                Step::Close => return Ok(true),
                Step::Checkout(..) | Step::Subscribe(_) => {
                    unreachable!("after_checkout sends or fails the message; subscribe answers it")
                }
            }
        }
        Ok(false)
    }

    /// Walks the server's bytes and forwards them; releases the server at a clean point.
    fn process_server(&mut self) {
        loop {
            if self.srv_skip > 0 {
                let n = self.srv_skip.min(self.bufs.srv_in.len());
                if n == 0 {
                    break;
                }
                if !self.srv_skip_discard {
                    let bufs = &mut *self.bufs;
                    bufs.to_client.extend_from_slice(&bufs.srv_in[..n]);
                }
                self.bufs.srv_in.advance(n);
                self.srv_skip -= n;
                continue;
            }
            let header = match Header::parse(&self.bufs.srv_in, i32::MAX as usize) {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(e) => return self.server_lost(&format!("invalid message from server: {e}")),
            };
            let len = header.wire_len();
            let internal = self.exchange.front_is_internal();
            let tag = BackendTag::from_u8(header.tag);
            // Only messages that end a request or carry state are held whole; DataRow, CopyData,
            // notices and the like stream through as they arrive.
            if !held_whole(tag, internal) {
                if !internal {
                    if let Some(rs) = self.route.as_deref_mut() {
                        rs.on_reply(tag, false);
                    }
                }
                let n = len.min(self.bufs.srv_in.len());
                if !internal {
                    let bufs = &mut *self.bufs;
                    bufs.to_client.extend_from_slice(&bufs.srv_in[..n]);
                }
                self.bufs.srv_in.advance(n);
                self.srv_skip = len - n;
                self.srv_skip_discard = internal;
                continue;
            }
            if header.body_len > self.max {
                return self.server_lost("server sent an oversized message");
            }
            if self.bufs.srv_in.len() < len {
                if self.needs_room(len) {
                    if self.try_room(len) {
                        let buf = &mut self.bufs.srv_in;
                        buf.reserve(len - buf.len());
                    } else {
                        // The relay waits for the room before it reads on (see `relay`).
                        self.want_room = true;
                    }
                }
                break;
            }
            let msg = self.bufs.srv_in.split_to(len);
            let tag = tag.expect("held whole: a known tag");
            if !self.on_server_message(tag, msg, internal) {
                return;
            }
        }
        self.release_if_clean();
    }
}
