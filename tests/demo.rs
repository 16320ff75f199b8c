//! `sluice demo` as a newcomer runs it: the binary as a child process. It must start a primary
//! and a streaming replica from the PostgreSQL programs on the machine, serve through sluice
//! with reads going to the replica, run pgbench, and on SIGINT stop everything it started,
//! remove its files and exit 0.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{STEP, connect_config, poll_until, sample, scrape, simple_scalar, within};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout};

/// A fresh machine's first start: initdb, pg_basebackup, on a busy 2-core box.
const START_UP: Duration = Duration::from_secs(240);
/// Drain (5 s at most in the demo's config), then two fast shutdowns.
const SHUT_DOWN: Duration = Duration::from_secs(60);

/// The demo child; if the test fails half-way it is interrupted (as Ctrl-C would) and waited
/// for, so its servers and files do not outlive the test.
struct Demo {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    seen: Vec<String>,
}

fn interrupt(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -INT {pid}: {status}");
}

impl Drop for Demo {
    fn drop(&mut self) {
        if let (Ok(None), Some(pid)) = (self.child.try_wait(), self.child.id()) {
            interrupt(pid);
            let deadline = std::time::Instant::now() + SHUT_DOWN;
            while matches!(self.child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        if std::thread::panicking() {
            eprintln!("--- sluice demo's output:\n{}", self.seen.join("\n"));
        }
    }
}

impl Demo {
    fn start(args: &[&str]) -> Demo {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("demo")
            .args(args)
            .env_remove("SLUICE_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start sluice demo");
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Demo {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Reads output until a line starting with `prefix`; returns it.
    async fn wait_for(&mut self, prefix: &str, limit: Duration) -> String {
        let what = format!("a line starting with {prefix:?} from sluice demo");
        within(limit, &what, async {
            loop {
                match self.lines.next_line().await.expect("read demo output") {
                    Some(line) => {
                        self.seen.push(line.clone());
                        if line.starts_with(prefix) {
                            return line;
                        }
                    }
                    None => panic!("sluice demo ended before {what}"),
                }
            }
        })
        .await
    }

    /// The line seen so far that starts with `prefix`.
    fn seen_line(&self, prefix: &str) -> &str {
        self.seen
            .iter()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line starting with {prefix:?}"))
    }
}

/// The number after `word ` in `line`.
fn number_after(line: &str, word: &str) -> u32 {
    let rest = &line[line
        .find(word)
        .unwrap_or_else(|| panic!("{word} in {line}"))
        + word.len()..];
    rest.split_whitespace().next().unwrap().parse().unwrap()
}

fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        let state = s
            .rsplit_once(')')
            .map(|(_, r)| r.trim_start().chars().next());
        !matches!(state, Some(Some('Z' | 'X')))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_serves_through_sluice_and_cleans_up_on_sigint() {
    let mut demo = Demo::start(&["--port", "0", "--metrics-port", "0", "--load-seconds", "3"]);
    let connect = demo.wait_for("Connect:", START_UP).await;
    let url = connect
        .split('"')
        .nth(1)
        .unwrap_or_else(|| panic!("no quoted URL in {connect:?}"))
        .to_owned();
    let primary_pid = number_after(demo.seen_line("  primary"), "pid");
    let replica_pid = number_after(demo.seen_line("  replica"), "pid");
    let files = demo
        .seen_line("  files")
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_owned();
    let files = std::path::PathBuf::from(files);
    assert!(files.is_dir(), "{} missing while running", files.display());
    let metrics_line = demo.wait_for("Metrics:", STEP).await;
    let metrics_port: u16 = metrics_line
        .split_whitespace()
        .nth(1)
        .and_then(|u| u.strip_prefix("http://127.0.0.1:"))
        .and_then(|u| u.strip_suffix("/metrics"))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no metrics URL in {metrics_line:?}"));

    // A client, through the printed connection string.
    let config: tokio_postgres::Config = url.parse().expect("the printed URL parses");
    let (client, _notices) = connect_config(&config)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {}", common::describe_error(&e)));
    assert_eq!(
        simple_scalar(&client, "SELECT 6 * 7").await.as_deref(),
        Some("42")
    );
    // Read-only: once the replica has passed its first health check, the replica answers.
    poll_until(STEP * 2, "a read answered by the replica", || async {
        simple_scalar(&client, "SELECT pg_is_in_recovery()")
            .await
            .as_deref()
            == Some("t")
    })
    .await;
    // pgbench ran through sluice, reads and writes, without a failed transaction.
    for name in ["pgbench read-only", "pgbench writes"] {
        let line = demo.wait_for(name, STEP * 4).await;
        assert!(line.contains("number of failed transactions: 0 "), "{line}");
    }
    // The metrics endpoint counts reads sent to the replica.
    let text = scrape(metrics_port).await;
    let to_replica = sample(
        &text,
        "sluice_routed_total",
        &[
            ("database", "demo"),
            ("target", "replica"),
            ("reason", "read_only"),
        ],
    )
    .unwrap_or_else(|| panic!("no routed-to-replica sample in\n{text}"));
    assert!(to_replica >= 1.0, "{to_replica}");
    drop(client);

    // Ctrl-C: exit 0 in bounded time, servers gone, files gone.
    interrupt(demo.child.id().expect("demo running"));
    let status = within(
        SHUT_DOWN,
        "sluice demo exiting after SIGINT",
        demo.child.wait(),
    )
    .await
    .expect("wait for sluice demo");
    let rest = within(STEP, "the rest of the demo's output", async {
        while let Some(line) = demo.lines.next_line().await.unwrap() {
            demo.seen.push(line);
        }
    });
    rest.await;
    assert!(status.success(), "sluice demo exited with {status}");
    assert!(
        demo.seen.iter().any(|l| l.starts_with("Cleaned up:")),
        "no clean-up line"
    );
    for (name, pid) in [("primary", primary_pid), ("replica", replica_pid)] {
        assert!(!process_alive(pid), "the {name} (pid {pid}) still runs");
    }
    assert!(!files.exists(), "{} was not removed", files.display());
}

#[test]
fn without_postgresql_programs_it_names_the_package() {
    let empty = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("demo")
        .env("SLUICE_PG_BIN", empty.path())
        .stdin(Stdio::null())
        .output()
        .expect("run sluice demo");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(69), "{stderr}");
    assert!(stderr.contains("apt-get install postgresql-15"), "{stderr}");
    assert!(stderr.contains("initdb"), "{stderr}");
}
