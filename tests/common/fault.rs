//! A fault proxy: a TCP proxy on loopback, put between sluice and PostgreSQL (point the
//! database's `port` at [`FaultProxy::port`]), whose behaviour the test sets while it runs.
//!
//! What it can do to the bytes ([`Fault`]): pass them, stall (stop forwarding both ways and
//! keep the sockets open: a silent link), drop (close both sides), cut mid-message (forward N more
//! bytes in one direction, then close), or add latency to every chunk. A fault applies to every
//! link (one accepted connection and its connection upstream) now and later ([`FaultProxy::set`]),
//! or only to the links open now ([`FaultProxy::set_existing`]: a firewall forgets the old flows,
//! new connections work).
//!
//! Owns: its own thread and tokio runtime (so a stalled test runtime, or a pooler thread that
//! blocks while shutting down, cannot stop it forwarding), the links, the counts. Dropping it
//! closes everything.
//!
//! A stall is the proxy not reading: its kernel still acknowledges what sluice sends (until the
//! socket buffers fill), so TCP keepalive and `tcp_user_timeout` never fire through it; sluice's
//! own timeouts must.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::STEP;

/// What the proxy does to the bytes of a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward both ways.
    Pass,
    /// Forward nothing either way; keep both sockets open. Bytes read before are held and go on
    /// when the stall ends.
    Stall,
    /// Close both sides (a new link is closed as soon as it is accepted).
    Drop,
    /// Forward this many more bytes from sluice to the server, then close both sides. The other
    /// direction passes.
    CutUp(usize),
    /// Forward this many more bytes from the server to sluice, then close both sides. The other
    /// direction passes.
    CutDown(usize),
    /// Forward both ways, each chunk this much later than it was read.
    Latency(Duration),
}

/// Which way bytes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    /// sluice to the server.
    Up,
    /// The server to sluice.
    Down,
}

/// A fault and a generation: a cut's byte budget starts again at each new setting.
type Setting = (u64, Fault);

struct Control {
    /// What new links start with.
    default: Mutex<Setting>,
    /// One sender per link (closed links drop their receivers and are pruned).
    links: Mutex<Vec<watch::Sender<Setting>>>,
    generation: std::sync::atomic::AtomicU64,
    accepted: AtomicUsize,
    open: AtomicUsize,
    /// The address each accepted link came from (sluice's end of its server connection).
    peers: Mutex<Vec<SocketAddr>>,
}

impl Control {
    fn next(&self, fault: Fault) -> Setting {
        (self.generation.fetch_add(1, Ordering::Relaxed) + 1, fault)
    }

    fn send_to_links(&self, setting: Setting) {
        let mut links = self.links.lock().unwrap();
        links.retain(|tx| tx.send(setting).is_ok());
    }
}

/// The proxy. See the module comment.
pub struct FaultProxy {
    addr: SocketAddr,
    control: Arc<Control>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FaultProxy {
    /// Listens on a loopback port the kernel picks and forwards each connection to `upstream`,
    /// passing bytes until told otherwise.
    pub fn start(upstream: SocketAddr) -> FaultProxy {
        let control = Arc::new(Control {
            default: Mutex::new((0, Fault::Pass)),
            links: Mutex::new(Vec::new()),
            generation: Default::default(),
            accepted: AtomicUsize::new(0),
            open: AtomicUsize::new(0),
            peers: Mutex::new(Vec::new()),
        });
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let ctl = control.clone();
        let thread = std::thread::Builder::new()
            .name("fault-proxy".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("the fault proxy's runtime");
                rt.block_on(async move {
                    let listener = TcpListener::bind("127.0.0.1:0")
                        .await
                        .expect("bind the fault proxy");
                    let _ = addr_tx.send(listener.local_addr().expect("its address"));
                    tokio::select! {
                        _ = stop_rx => {}
                        _ = accept(listener, upstream, ctl) => {}
                    }
                });
                // Dropping the runtime drops every link task and closes their sockets.
                rt.shutdown_timeout(Duration::from_secs(1));
            })
            .expect("spawn the fault proxy thread");
        let addr = addr_rx
            .recv_timeout(STEP)
            .expect("the fault proxy did not report its address");
        FaultProxy {
            addr,
            control,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Applies `fault` to every link open now and to every later one.
    pub fn set(&self, fault: Fault) {
        let setting = self.control.next(fault);
        *self.control.default.lock().unwrap() = setting;
        self.control.send_to_links(setting);
    }

    /// Applies `fault` to the links open now only; later links get what [`Self::set`] said last.
    pub fn set_existing(&self, fault: Fault) {
        let setting = self.control.next(fault);
        self.control.send_to_links(setting);
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.control.accepted.load(Ordering::SeqCst)
    }

    /// Links open now.
    pub fn open(&self) -> usize {
        self.control.open.load(Ordering::SeqCst)
    }

    /// The client-side address of every link accepted so far, oldest first.
    pub fn peers(&self) -> Vec<SocketAddr> {
        self.control.peers.lock().unwrap().clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn accept(listener: TcpListener, upstream: SocketAddr, control: Arc<Control>) {
    loop {
        let Ok((client, peer)) = listener.accept().await else {
            continue;
        };
        control.accepted.fetch_add(1, Ordering::SeqCst);
        control.peers.lock().unwrap().push(peer);
        let setting = *control.default.lock().unwrap();
        if setting.1 == Fault::Drop {
            drop(client);
            continue;
        }
        let (tx, rx) = watch::channel(setting);
        control.links.lock().unwrap().push(tx);
        let control = control.clone();
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(upstream).await else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            control.open.fetch_add(1, Ordering::SeqCst);
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            // When either direction ends (EOF, an error, a drop or a cut), the link ends: the
            // other direction is dropped here and both sockets close.
            tokio::select! {
                _ = pump(client_read, server_write, rx.clone(), Dir::Up) => {}
                _ = pump(server_read, client_write, rx, Dir::Down) => {}
            }
            control.open.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

/// Forwards one direction of a link under the fault in force. Returns when the link must end.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut fault: watch::Receiver<Setting>,
    dir: Dir,
) {
    let mut buf = vec![0u8; 64 * 1024];
    // The byte budget of a cut, and the setting it belongs to.
    let mut budget: Option<(u64, usize)> = None;
    loop {
        // Read only while the fault lets bytes through: a stalled link does not read at all.
        let (_, now) = *fault.borrow_and_update();
        match now {
            Fault::Drop => return,
            Fault::Stall => {
                if fault.changed().await.is_err() {
                    return;
                }
                continue;
            }
            _ => {}
        }
        let n = tokio::select! {
            r = from.read(&mut buf) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            changed = fault.changed() => {
                if changed.is_err() {
                    return;
                }
                continue;
            }
        };
        // Deliver the chunk under the fault in force now (a stall holds it until it ends).
        loop {
            let (generation, now) = *fault.borrow_and_update();
            let cut = match (now, dir) {
                (Fault::CutUp(n), Dir::Up) | (Fault::CutDown(n), Dir::Down) => Some(n),
                _ => None,
            };
            match now {
                Fault::Drop => return,
                Fault::Stall => {
                    if fault.changed().await.is_err() {
                        return;
                    }
                    continue;
                }
                Fault::Latency(d) => tokio::time::sleep(d).await,
                _ => {}
            }
            if let Some(limit) = cut {
                let left = match budget {
                    Some((g, left)) if g == generation => left,
                    _ => limit,
                };
                let m = left.min(n);
                if to.write_all(&buf[..m]).await.is_err() {
                    return;
                }
                budget = Some((generation, left - m));
                if left - m == 0 {
                    return;
                }
                break;
            }
            if to.write_all(&buf[..n]).await.is_err() {
                return;
            }
            break;
        }
    }
}
