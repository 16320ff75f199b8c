//! Listening sockets: the client port and the metrics endpoint, bound with `SO_REUSEPORT` so a
//! new sluice process can bind the same address while the old one still listens (online
//! restart: start the new process, then SIGTERM the old; see deploy/README.md).
//!
//! Why `SO_REUSEPORT` rather than handing the listening socket from the old process to the new
//! one: the new process needs nothing from the old (no control socket, no file-descriptor
//! passing, no `unsafe`), so the same recipe works under systemd (two instances of a template
//! unit), a plain shell or any supervisor. The kernel spreads new connections over both sockets
//! while both are open; the one cost is that connections waiting in the closing socket's accept
//! queue would be reset, which the accept loop avoids by accepting what is queued before it
//! closes ([`crate::listener`]), and which `net.ipv4.tcp_migrate_req = 1` avoids in the kernel.
//!
//! Linux only lets sockets of the same user share a port this way, so another user cannot bind
//! beside sluice; a socket bound without `SO_REUSEPORT` (another program) still makes the bind
//! fail with "address in use".
//!
//! Owns: creating and binding listening sockets. Must not: accept (that is the listener's and
//! the metrics endpoint's business).

use std::io;
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket};

/// The accept queue length, as `tokio::net::TcpListener::bind` uses (the kernel caps it at
/// `net.core.somaxconn`).
const BACKLOG: u32 = 1024;

/// A listening socket on `addr` with `SO_REUSEADDR` and `SO_REUSEPORT`.
pub fn bind_shared(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn two_sockets_share_a_port_and_a_plain_socket_does_not() {
        let first = bind_shared("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = first.local_addr().unwrap();
        let second = bind_shared(addr).expect("a second sluice binds beside the first");
        assert_eq!(second.local_addr().unwrap(), addr);
        let plain = std::net::TcpListener::bind(addr).expect_err("a plain bind is refused");
        assert_eq!(plain.kind(), io::ErrorKind::AddrInUse);

        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let e = bind_shared(taken.local_addr().unwrap()).expect_err("taken without SO_REUSEPORT");
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
    }
}
