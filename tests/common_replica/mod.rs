//! A real PostgreSQL 15 primary with a real streaming replica, for read/write-splitting tests.
//!
//! [`ReplicaCluster::start`] runs `initdb` for the primary (`wal_level = replica`, WAL senders,
//! `pg_hba` allowing replication from 127.0.0.1 for the `repl` role), creates the roles and the
//! `app` database on it, clones it with `pg_basebackup -R` (through a physical replication slot,
//! so a stopped replica can catch up), starts the replica on another free port and waits until
//! the primary reports it streaming. Dropping the cluster stops both servers
//! (`pg_ctl stop -m immediate`) and removes their directories.
//!
//! Roles: `postgres` (superuser), `app` (owns database `app`), `repl` (REPLICATION); all log in
//! with SCRAM passwords over TCP. No Unix sockets are used.
//!
//! Root: PostgreSQL refuses to run as root. When this process is root, every PostgreSQL program
//! runs as an unprivileged user (`nobody`, or `SLUICE_TEST_PG_USER`) through
//! `CommandExt::uid/gid`, in a temp directory made under `/tmp` (which anyone may traverse) and
//! handed to that user. The tests themselves stay root and only use TCP.
//!
//! Every wait has a deadline; nothing sleeps a fixed time to synchronise.
#![allow(dead_code)]

use std::fs;
use std::io::Write as _;
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, chown};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use sluice::router::health::{HealthHandle, ReplicaHealth, ReplicaTarget};
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

pub const SUPERUSER: &str = "postgres";
pub const SUPERUSER_PASSWORD: &str = "postgres-secret";
pub const APP_USER: &str = "app";
pub const APP_PASSWORD: &str = "app-secret";
pub const APP_DB: &str = "app";
pub const REPL_USER: &str = "repl";
pub const REPL_PASSWORD: &str = "repl-secret";
/// The replica's slot on the primary, and its `application_name` in `pg_stat_replication`.
pub const REPLICA_NAME: &str = "sluice_replica";

/// The bound on one ordinary step (connect, a query).
pub const STEP: Duration = Duration::from_secs(15);
/// The bound on a PostgreSQL program (initdb, pg_basebackup, pg_ctl start/stop).
const PROGRAM: Duration = Duration::from_secs(120);

const SETTINGS: &str = "
# --- sluice replica harness ---
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
wal_level = replica
max_wal_senders = 5
max_replication_slots = 5
wal_keep_size = '128MB'
hot_standby = on
wal_receiver_status_interval = '1s'
fsync = off
shared_buffers = '16MB'
max_connections = 50
log_min_messages = warning
";

const PG_HBA: &str = "
host replication repl 127.0.0.1/32 scram-sha-256
host all         all  127.0.0.1/32 scram-sha-256
";

/// Where the PostgreSQL programs are (`SLUICE_PG_BIN` overrides).
fn pg_program(name: &str) -> PathBuf {
    let dir =
        std::env::var_os("SLUICE_PG_BIN").unwrap_or_else(|| "/usr/lib/postgresql/15/bin".into());
    Path::new(&dir).join(name)
}

/// Who runs PostgreSQL: (uid, gid), and whether we must switch to them.
#[derive(Debug, Clone, Copy)]
struct PgUser {
    uid: u32,
    gid: u32,
    switch: bool,
}

fn pg_user() -> PgUser {
    // /proc/self is owned by the effective uid and gid of whoever looks at it.
    let me = fs::metadata("/proc/self").expect("stat /proc/self");
    if me.uid() != 0 {
        return PgUser {
            uid: me.uid(),
            gid: me.gid(),
            switch: false,
        };
    }
    let name = std::env::var("SLUICE_TEST_PG_USER").unwrap_or_else(|_| "nobody".to_owned());
    let passwd = fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
    let fields: Vec<&str> = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 3 && f[0] == name)
        .unwrap_or_else(|| {
            panic!("running as root and there is no user {name:?} to run PostgreSQL as")
        });
    let uid: u32 = fields[2].parse().expect("uid");
    let gid: u32 = fields[3].parse().expect("gid");
    assert_ne!(uid, 0, "PostgreSQL cannot run as root");
    PgUser {
        uid,
        gid,
        switch: true,
    }
}

/// A loopback port nothing listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// Runs `cmd` to completion, killing it after `limit`. Output goes to files under `dir` (a
/// postmaster started by pg_ctl could otherwise hold a pipe open).
fn run(mut cmd: Command, dir: &Path, limit: Duration) -> Output {
    let what = format!("{cmd:?}");
    let out_path = dir.join(".cmd.out");
    let err_path = dir.join(".cmd.err");
    let out = fs::File::create(&out_path).expect("create .cmd.out");
    let err = fs::File::create(&err_path).expect("create .cmd.err");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: fs::read(&out_path).unwrap_or_default(),
        stderr: fs::read(&err_path).unwrap_or_default(),
    }
}

fn describe(out: &Output) -> String {
    format!(
        "{}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A primary and one streaming replica.
pub struct ReplicaCluster {
    /// Removed on drop; holds both data directories, their logs and the password file.
    base: tempfile::TempDir,
    user: PgUser,
    primary_dir: PathBuf,
    replica_dir: PathBuf,
    primary_port: u16,
    replica_port: u16,
}

impl ReplicaCluster {
    /// Starts the primary and the replica and waits until the replica streams.
    pub async fn start() -> ReplicaCluster {
        let cluster = tokio::task::spawn_blocking(ReplicaCluster::init_primary)
            .await
            .expect("init primary");
        cluster.create_roles().await;
        let cluster = tokio::task::spawn_blocking(move || cluster.clone_replica())
            .await
            .expect("clone replica");
        cluster.wait_streaming().await;
        cluster
    }

    pub fn primary_port(&self) -> u16 {
        self.primary_port
    }

    pub fn replica_port(&self) -> u16 {
        self.replica_port
    }

    pub fn primary_log(&self) -> String {
        fs::read_to_string(self.base.path().join("primary.log")).unwrap_or_default()
    }

    pub fn replica_log(&self) -> String {
        fs::read_to_string(self.base.path().join("replica.log")).unwrap_or_default()
    }

    fn view(&self) -> BlockingView {
        BlockingView {
            base: self.base.path().to_path_buf(),
            user: self.user,
        }
    }

    fn init_primary() -> ReplicaCluster {
        let user = pg_user();
        let base = tempfile::Builder::new()
            .prefix("sluice-replica-")
            .tempdir_in(if user.switch {
                PathBuf::from("/tmp")
            } else {
                std::env::temp_dir()
            })
            .expect("temp dir");
        if user.switch {
            chown(base.path(), Some(user.uid), Some(user.gid)).expect("chown temp dir");
        }
        let pwfile = base.path().join("superuser.pw");
        fs::write(&pwfile, SUPERUSER_PASSWORD).expect("write password file");
        if user.switch {
            chown(&pwfile, Some(user.uid), Some(user.gid)).expect("chown password file");
        }
        let mut cluster = ReplicaCluster {
            primary_dir: base.path().join("primary"),
            replica_dir: base.path().join("replica"),
            base,
            user,
            primary_port: 0,
            replica_port: 0,
        };
        let mut initdb = pg_command_as(user, cluster.base.path(), "initdb");
        initdb
            .arg("-D")
            .arg(&cluster.primary_dir)
            .args(["-U", SUPERUSER, "-A", "scram-sha-256", "-E", "UTF8"])
            .args(["--locale=C", "--no-sync", "--no-instructions"])
            .arg(format!("--pwfile={}", pwfile.display()));
        let out = run(initdb, cluster.base.path(), PROGRAM);
        assert!(out.status.success(), "initdb: {}", describe(&out));
        append(&cluster.primary_dir.join("postgresql.conf"), SETTINGS);
        fs::write(cluster.primary_dir.join("pg_hba.conf"), PG_HBA).expect("write pg_hba.conf");
        cluster.primary_port = cluster
            .view()
            .start_server(&cluster.primary_dir, "primary.log");
        cluster
    }

    async fn create_roles(&self) {
        let su = self.connect_primary().await;
        let sql = format!(
            "CREATE ROLE {REPL_USER} LOGIN REPLICATION PASSWORD '{REPL_PASSWORD}';
             CREATE ROLE {APP_USER} LOGIN PASSWORD '{APP_PASSWORD}';
             CREATE DATABASE {APP_DB} OWNER {APP_USER};"
        );
        for stmt in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            within(STEP, stmt, su.batch_execute(stmt))
                .await
                .unwrap_or_else(|e| panic!("{stmt}: {e}"));
        }
    }

    /// Clones the primary into the replica's directory and starts the replica.
    fn clone_replica(mut self) -> ReplicaCluster {
        let mut cmd = pg_command_as(self.user, self.base.path(), "pg_basebackup");
        cmd.env("PGPASSWORD", REPL_PASSWORD)
            .args(["-h", "127.0.0.1", "-p", &self.primary_port.to_string()])
            .args(["-U", REPL_USER, "-D"])
            .arg(&self.replica_dir)
            .args(["-R", "-X", "stream", "-C", "-S", REPLICA_NAME])
            .args(["-c", "fast", "--no-sync"]);
        let out = run(cmd, self.base.path(), PROGRAM);
        assert!(out.status.success(), "pg_basebackup: {}", describe(&out));
        // Spell out how to reach the primary rather than rely on what -R wrote.
        append(
            &self.replica_dir.join("postgresql.auto.conf"),
            &format!(
                "primary_conninfo = 'host=127.0.0.1 port={} user={REPL_USER} \
                 password={REPL_PASSWORD} application_name={REPLICA_NAME}'\n\
                 primary_slot_name = '{REPLICA_NAME}'\n",
                self.primary_port
            ),
        );
        self.replica_port = self.view().start_server(&self.replica_dir, "replica.log");
        self
    }

    /// Starts the replica again (on the same port) and waits until it streams.
    pub async fn start_replica(&self) {
        let view = self.view();
        let dir = self.replica_dir.clone();
        let started = tokio::task::spawn_blocking(move || view.pg_ctl_start(&dir, "replica.log"))
            .await
            .expect("start replica");
        assert!(started, "replica did not start:\n{}", self.replica_log());
        self.wait_streaming().await;
    }

    /// Stops the replica (fast shutdown) and waits until it is down.
    pub async fn stop_replica(&self) {
        let view = self.view();
        let dir = self.replica_dir.clone();
        let out = tokio::task::spawn_blocking(move || view.pg_ctl_stop(&dir, "fast"))
            .await
            .expect("stop replica");
        assert!(out.status.success(), "pg_ctl stop: {}", describe(&out));
    }

    /// Waits until the primary reports the replica streaming.
    pub async fn wait_streaming(&self) {
        let su = self.connect_primary().await;
        let sql = format!(
            "SELECT count(*) FROM pg_stat_replication \
             WHERE application_name = '{REPLICA_NAME}' AND state = 'streaming'"
        );
        poll_until(Duration::from_secs(90), "replica streaming", || async {
            scalar(&su, &sql).await.as_deref() == Some("1")
        })
        .await;
    }

    /// Pauses WAL replay on the replica and waits until the pause has been requested.
    pub async fn pause_replay(&self) {
        let r = self.connect_replica().await;
        scalar(&r, "SELECT pg_wal_replay_pause()::text").await;
        poll_until(STEP, "replay paused", || async {
            scalar(&r, "SELECT pg_get_wal_replay_pause_state()")
                .await
                .as_deref()
                != Some("not paused")
        })
        .await;
    }

    pub async fn resume_replay(&self) {
        let r = self.connect_replica().await;
        scalar(&r, "SELECT pg_wal_replay_resume()::text").await;
    }

    fn target(&self, port: u16, db: &str, user: &str, password: &str) -> ReplicaTarget {
        ReplicaTarget {
            host: "127.0.0.1".to_owned(),
            port,
            dbname: db.to_owned(),
            user: user.to_owned(),
            password: Some(password.to_owned()),
        }
    }

    /// The primary as the `app` user sees it (what a pool's health checker would use).
    pub fn primary_target(&self) -> ReplicaTarget {
        self.target(self.primary_port, APP_DB, APP_USER, APP_PASSWORD)
    }

    /// The replica as the `app` user sees it.
    pub fn replica_target(&self) -> ReplicaTarget {
        self.target(self.replica_port(), APP_DB, APP_USER, APP_PASSWORD)
    }

    pub async fn connect_primary(&self) -> Client {
        connect(self.primary_port, "postgres", SUPERUSER, SUPERUSER_PASSWORD).await
    }

    pub async fn connect_replica(&self) -> Client {
        connect(
            self.replica_port(),
            "postgres",
            SUPERUSER,
            SUPERUSER_PASSWORD,
        )
        .await
    }

    pub async fn connect_primary_app(&self) -> Client {
        connect(self.primary_port, APP_DB, APP_USER, APP_PASSWORD).await
    }

    pub async fn connect_replica_app(&self) -> Client {
        connect(self.replica_port(), APP_DB, APP_USER, APP_PASSWORD).await
    }
}

/// The parts of a cluster that blocking helpers use from another thread.
struct BlockingView {
    base: PathBuf,
    user: PgUser,
}

impl BlockingView {
    fn pg_ctl_start(&self, dir: &Path, log: &str) -> bool {
        let mut cmd = pg_command_as(self.user, &self.base, "pg_ctl");
        cmd.arg("-D")
            .arg(dir)
            .arg("-l")
            .arg(self.base.join(log))
            .args(["-w", "-t", "90", "start"]);
        run(cmd, &self.base, PROGRAM).status.success()
    }

    fn pg_ctl_stop(&self, dir: &Path, mode: &str) -> Output {
        let mut cmd = pg_command_as(self.user, &self.base, "pg_ctl");
        cmd.arg("-D")
            .arg(dir)
            .args(["-m", mode, "-w", "-t", "60", "stop"]);
        run(cmd, &self.base, PROGRAM)
    }

    fn start_server(&self, dir: &Path, log: &str) -> u16 {
        for _ in 0..5 {
            let port = free_port();
            append(&dir.join("postgresql.conf"), &format!("port = {port}\n"));
            if self.pg_ctl_start(dir, log) {
                return port;
            }
            let text = fs::read_to_string(self.base.join(log)).unwrap_or_default();
            assert!(
                text.contains("could not bind") || text.contains("already in use"),
                "server in {} did not start:\n{text}",
                dir.display()
            );
        }
        panic!("no free port for the server in {}", dir.display());
    }
}

fn pg_command_as(user: PgUser, base: &Path, program: &str) -> Command {
    let mut cmd = Command::new(pg_program(program));
    cmd.current_dir(base);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("PG") {
            cmd.env_remove(k);
        }
    }
    cmd.env("LC_ALL", "C");
    if user.switch {
        cmd.uid(user.uid).gid(user.gid).env("HOME", base);
    }
    cmd
}

impl Drop for ReplicaCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let tail = |log: String| {
                let lines: Vec<&str> = log.lines().collect();
                lines[lines.len().saturating_sub(40)..].join("\n")
            };
            eprintln!("--- primary log (tail) ---\n{}", tail(self.primary_log()));
            eprintln!("--- replica log (tail) ---\n{}", tail(self.replica_log()));
        }
        let view = self.view();
        for dir in [&self.replica_dir, &self.primary_dir] {
            if dir.join("postmaster.pid").exists() {
                let _ = view.pg_ctl_stop(dir, "immediate");
            }
        }
    }
}

fn append(path: &Path, text: &str) {
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    f.write_all(text.as_bytes())
        .unwrap_or_else(|e| panic!("append to {}: {e}", path.display()));
}

/// Awaits `fut`, panicking with `what` if it takes longer than `limit`.
pub async fn within<F: std::future::Future>(limit: Duration, what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(limit, fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: no answer within {limit:?}"),
    }
}

/// Re-checks `condition` every 20 ms until it holds; panics with `what` after `limit`.
pub async fn poll_until<F, Fut>(limit: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
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

/// Connects over TCP with a password, driving the connection on its own task.
pub async fn connect(port: u16, db: &str, user: &str, password: &str) -> Client {
    let mut cfg = tokio_postgres::Config::new();
    cfg.host("127.0.0.1")
        .port(port)
        .dbname(db)
        .user(user)
        .password(password)
        .connect_timeout(Duration::from_secs(10));
    let (client, conn) = within(STEP, "connect", cfg.connect(NoTls))
        .await
        .unwrap_or_else(|e| panic!("connect to {db} as {user} on port {port}: {e}"));
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// The first column of the only row of `sql` (a simple query), as text.
pub async fn scalar(client: &Client, sql: &str) -> Option<String> {
    let msgs = within(STEP, sql, client.simple_query(sql))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let rows: Vec<_> = msgs
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(rows.len(), 1, "{sql}: expected one row");
    rows[0].get(0).map(str::to_owned)
}

/// Waits for a health reading that satisfies `pred` (the current one included); panics with
/// `what` and the last reading after `limit`.
pub async fn wait_health(
    handle: &mut HealthHandle,
    limit: Duration,
    what: &str,
    mut pred: impl FnMut(&ReplicaHealth) -> bool,
) -> ReplicaHealth {
    match tokio::time::timeout(limit, handle.wait_until(|h| pred(h))).await {
        Ok(Some(h)) => h,
        Ok(None) => panic!("{what}: the health checker stopped"),
        Err(_) => panic!(
            "{what}: not seen within {limit:?}; last reading: {:?}",
            handle.current()
        ),
    }
}
