//! sluice as a separate process, started from the built binary (`CARGO_BIN_EXE_sluice`): for
//! what only a process shows (signals, sd_notify, two processes on one port).
//!
//! Each process gets its own sd_notify socket (an abstract name, so nothing to clean up), which
//! is also how a test knows the process is listening: [`OpsProcess::expect_notify`] with
//! `READY=1`. stderr goes to a file in the process's directory, shown when an assertion fails.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::{STEP, within};

/// A running `sluice --config FILE`. Dropping it kills the process if it still runs.
pub struct OpsProcess {
    child: Child,
    notify: tokio::net::UnixDatagram,
    log: PathBuf,
    /// Messages received but not yet asked for.
    pending: Vec<String>,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// The built binary.
pub fn sluice_bin() -> &'static str {
    env!("CARGO_BIN_EXE_sluice")
}

impl OpsProcess {
    /// Starts `sluice --config config` with `NOTIFY_SOCKET` set to a socket of the test's;
    /// stderr goes to `log`. Returns at once: wait for `READY=1` to know it listens.
    pub fn start(config: &Path, log: &Path) -> OpsProcess {
        use std::os::linux::net::SocketAddrExt;
        let name = format!(
            "sluice-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
            .expect("abstract name");
        let socket = std::os::unix::net::UnixDatagram::bind_addr(&addr).expect("notify socket");
        socket.set_nonblocking(true).expect("non-blocking");
        let notify = tokio::net::UnixDatagram::from_std(socket).expect("tokio socket");
        let stderr = std::fs::File::create(log).expect("log file");
        let child = Command::new(sluice_bin())
            .arg("--config")
            .arg(config)
            .env("NOTIFY_SOCKET", format!("@{name}"))
            .env("SLUICE_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start sluice");
        OpsProcess {
            child,
            notify,
            log: log.to_owned(),
            pending: Vec::new(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next sd_notify datagram, within [`STEP`].
    pub async fn next_notify(&mut self) -> String {
        if !self.pending.is_empty() {
            return self.pending.remove(0);
        }
        let mut buf = [0u8; 1024];
        let what = format!("an sd_notify message from sluice\n{}", self.log_text());
        let n = within(STEP, &what, self.notify.recv(&mut buf))
            .await
            .expect("recv");
        String::from_utf8(buf[..n].to_vec()).expect("UTF-8 datagram")
    }

    /// Waits for a message whose first line is `first` and returns the whole message; panics
    /// if another message comes first.
    pub async fn expect_notify(&mut self, first: &str) -> String {
        let msg = self.next_notify().await;
        assert_eq!(
            msg.lines().next(),
            Some(first),
            "sd_notify: {msg:?}\n{}",
            self.log_text()
        );
        msg
    }

    /// Sends `signal` (a `kill -s` name: TERM, INT, HUP).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args(["-s", signal, &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -s {signal} {}", self.pid());
    }

    /// Whether the process still runs.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Waits (up to `limit`) for the process to exit and returns its status.
    pub async fn exit_within(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "sluice {} still runs after {limit:?}\n{}",
                self.pid(),
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// What the process wrote to stderr so far.
    pub fn log_text(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        format!("--- sluice {} stderr\n{text}", self.child.id())
    }
}

impl Drop for OpsProcess {
    fn drop(&mut self) {
        if self.running() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs the binary with `args` to completion (a CLI command such as `healthcheck`), within
/// [`STEP`].
pub async fn sluice_command(args: &[&str]) -> std::process::Output {
    let mut cmd = tokio::process::Command::new(sluice_bin());
    cmd.args(args);
    super::run_command(&mut cmd, STEP).await
}
