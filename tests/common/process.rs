//! sluice as an operator runs it: the built binary (`CARGO_BIN_EXE_sluice`) as a child process
//! with its config in a file, for what only a process has: signals (SIGHUP, SIGUSR1...), its
//! resident memory (`/proc/PID/status`), its log lines on stderr.
//!
//! Owns: the child, its config file (rewrite it with [`SluiceProcess::write_config`], then send
//! SIGHUP), and the lines it logged (JSON, `log_format = "json"`, so that tests can read them).
//! Dropping it sends SIGTERM and waits (bounded), then kills.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{STEP, set_config};

pub struct SluiceProcess {
    child: Child,
    port: u16,
    config_path: PathBuf,
    _dir: tempfile::TempDir,
    lines: Arc<Mutex<Vec<String>>>,
}

impl SluiceProcess {
    /// Starts the binary on `config` (its `pooler.listen` is replaced with port 0 and
    /// `log_format` with json) and waits for its "sluice listening" line.
    pub fn start(config: &str) -> SluiceProcess {
        let config = set_config(config, "pooler.listen", "127.0.0.1:0");
        let config = set_config(&config, "pooler.log_format", "json");
        let dir = tempfile::tempdir().expect("temp dir");
        let config_path = dir.path().join("sluice.toml");
        std::fs::write(&config_path, &config).expect("write the config");
        let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("--config")
            .arg(&config_path)
            .env("SLUICE_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the sluice binary");
        let stderr = child.stderr.take().expect("stderr");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if let Some(port) = listening_port(&line) {
                        let _ = port_tx.send(port);
                    }
                    lines.lock().unwrap().push(line);
                }
            });
        }
        let port = match port_rx.recv_timeout(STEP) {
            Ok(p) => p,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "sluice did not log that it listens: {:?}",
                    lines.lock().unwrap()
                );
            }
        };
        SluiceProcess {
            child,
            port,
            config_path,
            _dir: dir,
            lines,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Replaces the config file (the next SIGHUP reads it); `listen` and `log_format` stay as
    /// [`Self::start`] set them.
    pub fn write_config(&self, config: &str) {
        let config = set_config(config, "pooler.listen", "127.0.0.1:0");
        let config = set_config(&config, "pooler.log_format", "json");
        std::fs::write(&self.config_path, config).expect("rewrite the config");
    }

    /// Sends `signal` (e.g. "HUP", "USR1") with kill(1).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {}", self.pid());
    }

    /// None while running, else how it ended.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().expect("wait for sluice")
    }

    /// Resident memory (VmRSS) in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc/PID/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }

    /// Every line logged so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Waits until `count` logged lines contain `needle`; the last of them. Panics after
    /// `limit`.
    pub async fn wait_for_log(&self, needle: &str, count: usize, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let found: Vec<String> = self
                .log_lines()
                .into_iter()
                .filter(|l| l.contains(needle))
                .collect();
            if found.len() >= count {
                return found.last().cloned().unwrap_or_default();
            }
            assert!(
                Instant::now() < deadline,
                "sluice logged {} of {count} lines with {needle:?} within {limit:?}: {:#?}",
                found.len(),
                self.log_lines()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The port of the "sluice listening" JSON line.
fn listening_port(line: &str) -> Option<u16> {
    if !line.contains("sluice listening") {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let addr = v["fields"]["addr"].as_str()?;
    addr.rsplit(':').next()?.parse().ok()
}

impl Drop for SluiceProcess {
    fn drop(&mut self) {
        if self.exited().is_some() {
            return;
        }
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
