//! sd_notify: tells the service manager (systemd `Type=notify`, deploy/systemd/sluice.service)
//! when sluice is ready, reloading and stopping.
//!
//! Only when `NOTIFY_SOCKET` is set (systemd sets it for a `Type=notify` service); otherwise
//! every function here does nothing. The protocol is one datagram of `KEY=VALUE` lines to the
//! socket named there: a path, or `@name` for Linux's abstract namespace. Written here rather
//! than taken from a crate: it is one `sendto`, and the crates that wrap it bring `unsafe`
//! environment handling or libsystemd.
//!
//! - [`ready`]: the client port and the metrics endpoint are bound and the pooler serves
//!   (`READY=1`); also the end of a reload.
//! - [`reloading`]: a configuration reload starts (`RELOADING=1` with `MONOTONIC_USEC`, which
//!   systemd uses to match the reload to the request); [`ready`] follows when it is done, whether
//!   or not the new file was good.
//! - [`stopping`]: the pooler stopped accepting clients and drains (`STOPPING=1`).
//!
//! A message that cannot be sent is logged and otherwise ignored: sluice serves the same either
//! way, and systemd's own timeouts take over.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::Duration;

/// The environment variable systemd sets to the notification socket.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// `READY=1`: serving (at start-up, and after a reload).
pub fn ready() {
    send("READY=1\nSTATUS=serving clients");
}

/// `RELOADING=1`: a reload of the configuration starts. Call [`ready`] when it is done.
pub fn reloading() {
    send(&format!(
        "RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=reloading the configuration",
        monotonic_usec()
    ));
}

/// `STOPPING=1`: no new clients; draining the connected ones.
pub fn stopping() {
    send("STOPPING=1\nSTATUS=draining clients");
}

fn send(state: &str) {
    let Some(target) = std::env::var_os(NOTIFY_SOCKET) else {
        return;
    };
    if let Err(e) = send_to(&target, state) {
        tracing::warn!(error = %e, socket = ?target, "sd_notify failed");
    }
}

/// Sends `state` as one datagram to `target`: an absolute path, or `@name` in the abstract
/// namespace.
pub fn send_to(target: &OsStr, state: &str) -> io::Result<()> {
    let socket = UnixDatagram::unbound()?;
    // systemd reads its notification socket at once; a full queue must not stall the pooler.
    socket.set_write_timeout(Some(Duration::from_secs(1)))?;
    let bytes = target.as_bytes();
    let sent = if let Some(name) = bytes.strip_prefix(b"@") {
        abstract_send(&socket, name, state.as_bytes())?
    } else if bytes.starts_with(b"/") {
        socket.send_to(state.as_bytes(), Path::new(target))?
    } else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "NOTIFY_SOCKET is neither an absolute path nor @abstract",
        ));
    };
    if sent != state.len() {
        return Err(io::Error::new(io::ErrorKind::WriteZero, "short datagram"));
    }
    Ok(())
}

#[cfg(target_os = "linux")]
fn abstract_send(socket: &UnixDatagram, name: &[u8], msg: &[u8]) -> io::Result<usize> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
    socket.send_to_addr(msg, &addr)
}

#[cfg(not(target_os = "linux"))]
fn abstract_send(_: &UnixDatagram, _: &[u8], _: &[u8]) -> io::Result<usize> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract sockets are Linux only",
    ))
}

/// CLOCK_MONOTONIC in microseconds, the clock systemd compares `MONOTONIC_USEC` with.
pub fn monotonic_usec() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    let (secs, nanos) = (t.tv_sec.max(0) as u64, t.tv_nsec.max(0) as u64);
    secs * 1_000_000 + nanos / 1_000
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receive(socket: &UnixDatagram) -> String {
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 512];
        let n = socket.recv(&mut buf).expect("a datagram");
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn sends_to_a_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let socket = UnixDatagram::bind(&path).unwrap();
        send_to(path.as_os_str(), "READY=1").unwrap();
        assert_eq!(receive(&socket), "READY=1");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn sends_to_an_abstract_name() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("sluice-notify-unit-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let socket = UnixDatagram::bind_addr(&addr).unwrap();
        send_to(OsStr::new(&format!("@{name}")), "STOPPING=1").unwrap();
        assert_eq!(receive(&socket), "STOPPING=1");
    }

    #[test]
    fn refuses_a_relative_name() {
        let e = send_to(OsStr::new("notify.sock"), "READY=1").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn monotonic_clock_moves_forward() {
        let a = monotonic_usec();
        let b = monotonic_usec();
        assert!(a > 0 && b >= a, "{a} {b}");
    }
}
