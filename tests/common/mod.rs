//! The integration-test harness: a real PostgreSQL per test ([`PgCluster`]; a primary with a
//! streaming replica, [`ReplicaCluster`]), the pooler in
//! process ([`Sluice`]) or as the built binary ([`SluiceProcess`], for signals and RSS), real clients (tokio-postgres, psql, pgbench, and the drivers applications use: [`Driver`]) and a raw wire-protocol
//! client ([`RawConn`]) for what the real clients never send, with wire scripts ([`Batch`],
//! [`check_script`]) that hold the pooler's answers to PostgreSQL's own, and a fault proxy
//! ([`FaultProxy`]) to put between the pooler and PostgreSQL.
//!
//! Every wait here has a deadline: a pooler that never answers fails the test instead of hanging
//! the run. Nothing sleeps to synchronise; [`poll_until`] re-checks a condition until a deadline.
//!
//! Each test binary uses a different part of this module, hence the `dead_code` allowance.
#![allow(dead_code)]

mod certs;
mod drivers;
mod fault;
mod metrics;
mod pg;
mod pooler;
mod process;
mod process_ops;
mod raw;
mod replica;
mod script;

#[allow(unused_imports)]
pub use certs::*;
#[allow(unused_imports)]
pub use drivers::*;
#[allow(unused_imports)]
pub use fault::*;
#[allow(unused_imports)]
pub use metrics::*;
pub use pg::*;
pub use pooler::*;
#[allow(unused_imports)]
pub use process::*;
#[allow(unused_imports)]
pub use process_ops::*;
#[allow(unused_imports)]
pub use raw::*;
#[allow(unused_imports)]
pub use replica::*;
#[allow(unused_imports)]
pub use script::*;

use std::future::{Future, poll_fn};
use std::process::Output;
use std::time::{Duration, Instant};

use tokio_postgres::error::DbError;
use tokio_postgres::tls::NoTlsStream;
use tokio_postgres::{AsyncMessage, Client, Connection, NoTls, Socket};

/// The bound on one ordinary step (connect, a short query) before the test calls it a hang.
pub const STEP: Duration = Duration::from_secs(15);

/// Awaits `fut`, panicking with `what` if it takes longer than `limit`.
pub async fn within<F: Future>(limit: Duration, what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(limit, fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: no answer within {limit:?}"),
    }
}

/// Re-checks `condition` every 20 ms until it is true; panics with `what` after `limit`.
pub async fn poll_until<F, Fut>(limit: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if condition().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: still not true after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An error with its SQLSTATE and server message (tokio-postgres's Display says only "db error").
pub fn describe_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} {}: {}", db.severity(), db.code().code(), db.message()),
        None => format!("{e} ({e:?})"),
    }
}

/// The SQLSTATE of a server (or pooler) error, if the error carries one.
pub fn sqlstate(e: &tokio_postgres::Error) -> Option<&str> {
    e.code().map(|c| c.code())
}

/// A tokio-postgres config for `127.0.0.1:port` (TLS off, which is also what `NoTls` implies).
pub fn client_config(port: u16, db: &str, user: &str, password: &str) -> tokio_postgres::Config {
    let mut cfg = tokio_postgres::Config::new();
    cfg.host("127.0.0.1")
        .port(port)
        .dbname(db)
        .user(user)
        .password(password)
        .ssl_mode(tokio_postgres::config::SslMode::Disable)
        .connect_timeout(Duration::from_secs(5));
    cfg
}

/// Connects with `cfg`, driving the connection on a spawned task. Notices (and only notices)
/// arrive on the returned receiver; it may be dropped. Panics if connecting takes over [`STEP`].
pub async fn connect_config(
    cfg: &tokio_postgres::Config,
) -> Result<(Client, tokio::sync::mpsc::UnboundedReceiver<DbError>), tokio_postgres::Error> {
    let (client, conn) = within(STEP, "connect", cfg.connect(NoTls)).await?;
    Ok((client, spawn_connection(conn)))
}

/// Drives `conn` on its own task and forwards its notices.
pub fn spawn_connection(
    mut conn: Connection<Socket, NoTlsStream>,
) -> tokio::sync::mpsc::UnboundedReceiver<DbError> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(msg) = poll_fn(|cx| conn.poll_message(cx)).await {
            match msg {
                Ok(AsyncMessage::Notice(n)) => {
                    let _ = tx.send(n);
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    });
    rx
}

/// The single value of a one-row, one-column simple query, as text.
pub async fn simple_scalar(client: &Client, sql: &str) -> Option<String> {
    let msgs = within(STEP, sql, client.simple_query(sql))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {}", describe_error(&e)));
    let rows: Vec<_> = msgs
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(rows.len(), 1, "{sql}: expected one row");
    rows[0].get(0).map(str::to_owned)
}

/// The process id of the server backend behind `client` (through a pooler: the server connection
/// its statement ran on).
pub async fn backend_pid(client: &Client) -> i32 {
    simple_scalar(client, "SELECT pg_backend_pid()")
        .await
        .expect("a pid")
        .parse()
        .expect("pid is a number")
}

/// Has superuser connection `su` terminate backend `pid`; panics if it was not there. Does not
/// wait for it to exit: see [`wait_backend_gone`].
pub async fn terminate_backend(su: &Client, pid: i32) {
    let killed: bool = su
        .query_one("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .expect("pg_terminate_backend")
        .get(0);
    assert!(killed, "backend {pid} was not there to terminate");
}

/// Waits until PostgreSQL no longer lists backend `pid`.
pub async fn wait_backend_gone(su: &Client, pid: i32) {
    poll_until(STEP, "the terminated backend to exit", || async {
        let n: i64 = su
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = $1",
                &[&pid],
            )
            .await
            .expect("look for the backend")
            .get(0);
        n == 0
    })
    .await;
}

/// Runs `cmd` with a deadline (killing it after `limit`), collecting its output.
pub async fn run_command(cmd: &mut tokio::process::Command, limit: Duration) -> Output {
    cmd.stdin(std::process::Stdio::null()).kill_on_drop(true);
    let what = format!("{cmd:?}");
    let child = cmd.output();
    within(limit, &what, child)
        .await
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"))
}

fn libpq_command(
    program: &str,
    port: u16,
    db: &str,
    user: &str,
    password: &str,
) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(pg_bin(program));
    cmd.env("PGHOST", "127.0.0.1")
        .env("PGPORT", port.to_string())
        .env("PGDATABASE", db)
        .env("PGUSER", user)
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "10")
        .env_remove("PGSERVICE")
        .env_remove("PGSSLMODE")
        .env_remove("PGOPTIONS");
    cmd
}

/// psql at `127.0.0.1:port` with `-X -v ON_ERROR_STOP=1` and then `args`.
pub async fn psql_at(port: u16, db: &str, user: &str, password: &str, args: &[&str]) -> Output {
    let mut cmd = libpq_command("psql", port, db, user, password);
    cmd.args(["-X", "-v", "ON_ERROR_STOP=1"]).args(args);
    run_command(&mut cmd, Duration::from_secs(120)).await
}

/// pgbench at `127.0.0.1:port` with `args`.
pub async fn pgbench_at(port: u16, db: &str, user: &str, password: &str, args: &[&str]) -> Output {
    let mut cmd = libpq_command("pgbench", port, db, user, password);
    cmd.args(args);
    run_command(&mut cmd, Duration::from_secs(240)).await
}

/// A number from a pgbench summary line such as "number of failed transactions: 0 (0.000%)".
pub fn pgbench_number(stdout: &str, prefix: &str) -> u64 {
    let line = stdout
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("pgbench printed no {prefix:?}:\n{stdout}"));
    let digits: String = line[prefix.len()..]
        .trim_start_matches(':')
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("no number in {line:?}"))
}

/// Checks a finished pgbench run: success, no failed transactions, `expected` processed. Prints
/// its throughput and latency lines.
pub fn assert_pgbench_ok(what: &str, out: &Output, expected: u64) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{what}: {}", describe_output(out));
    assert_eq!(
        pgbench_number(&stdout, "number of failed transactions"),
        0,
        "{what}: {}",
        describe_output(out)
    );
    assert_eq!(
        pgbench_number(&stdout, "number of transactions actually processed"),
        expected,
        "{what}: {}",
        describe_output(out)
    );
    let figures: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("tps") || l.starts_with("latency"))
        .collect();
    eprintln!("{what}: {}", figures.join("; "));
}

/// stdout and stderr of a finished command, for assertion messages.
pub fn describe_output(out: &Output) -> String {
    format!(
        "exit {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
