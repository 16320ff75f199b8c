//! The demo's load: pgbench's tables on the primary, then two pgbench runs through sluice at once
//! (read-only statements, which go to the replica, and small write transactions, which stay on
//! the primary) so that the metrics and SHOW commands have something to show.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::Command;

/// A pgbench command against `port` as the demo user, in its own process group (a Ctrl-C in the
/// terminal is for sluice, which stops it), killed if dropped.
fn pgbench(program: &Path, port: u16, user: &str, password: &str, db: &str) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", user])
        .env("PGPASSWORD", password)
        .env("PGSSLMODE", "disable")
        .env("PGDATABASE", db)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    cmd
}

/// `pgbench -i -s 1` straight against the primary: the tables (100,000 accounts).
pub async fn init(
    program: &Path,
    port: u16,
    user: &str,
    password: &str,
    db: &str,
) -> Result<(), String> {
    let out = pgbench(program, port, user, password, db)
        .args(["-i", "-s", "1", "-q"])
        .output()
        .await
        .map_err(|e| format!("pgbench -i: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "pgbench -i failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// One pgbench run's summary line.
pub struct Summary {
    pub name: &'static str,
    pub line: String,
}

/// Runs the two pgbench loads through sluice for `seconds`, at the same time, and returns their
/// summaries (transactions, failures, tps as pgbench reports them).
pub async fn run(
    program: PathBuf,
    port: u16,
    user: &str,
    password: &str,
    db: &str,
    seconds: u64,
) -> Vec<Summary> {
    let t = seconds.to_string();
    // -S: one SELECT per transaction, provably read-only: the replica's. -M prepared: named
    // prepared statements, which sluice keeps working in transaction mode.
    let mut reads = pgbench(&program, port, user, password, db);
    reads.args(["-n", "-S", "-M", "prepared", "-c", "4", "-j", "2", "-T", &t]);
    // -N: the TPC-B-like transaction without the contended branch/teller updates: writes, on
    // the primary.
    let mut writes = pgbench(&program, port, user, password, db);
    writes.args(["-n", "-N", "-c", "2", "-j", "1", "-T", &t]);
    let (r, w) = tokio::join!(reads.output(), writes.output());
    vec![
        summarize("read-only (pgbench -S, to the replica)", r),
        summarize("writes (pgbench -N, to the primary)", w),
    ]
}

fn summarize(name: &'static str, out: std::io::Result<std::process::Output>) -> Summary {
    let line = match out {
        Err(e) => format!("could not run pgbench: {e}"),
        Ok(o) => {
            let text = String::from_utf8_lossy(&o.stdout);
            let pick = |prefix: &str| {
                text.lines()
                    .find(|l| l.starts_with(prefix))
                    .map(|l| l.trim().to_owned())
            };
            let done = pick("number of transactions actually processed");
            let failed = pick("number of failed transactions");
            let tps = pick("tps =");
            if o.status.success() && done.is_some() {
                [done, failed, tps]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join("; ")
            } else {
                let err = String::from_utf8_lossy(&o.stderr);
                let last = err
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("");
                format!("pgbench ended with {}: {last}", o.status)
            }
        }
    };
    Summary { name, line }
}
