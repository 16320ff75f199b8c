//! A throwaway PostgreSQL 15 cluster per test, on a free loopback port.
//!
//! Owns: the data directory (a temp dir, removed on drop), the postmaster (stopped with
//! `pg_ctl stop -m immediate` on drop), and the roles the tests log in as. Does not own any
//! pooler: see `pooler.rs`.
//!
//! Speed: `initdb` plus role set-up runs once into a *template* data directory kept in the temp
//! directory under a name derived from the PostgreSQL version, this file's set-up SQL and
//! settings, and the uid that runs PostgreSQL (so cargo test, nextest and later runs share it).
//! It is built in a private directory and renamed into place, so parallel test processes never
//! see half a template. Each cluster is a `cp -a` of it plus its own port file.
//!
//! Replication: every cluster can serve as a primary (`wal_level = replica`, a `repl` role with
//! REPLICATION, pg_hba allowing it from 127.0.0.1); [`PgCluster::start_replica`] clones one with
//! `pg_basebackup` into a streaming hot standby. `replica.rs` pairs the two for the routing tests.
//!
//! Root: PostgreSQL refuses to run as root, and CI runs as root. When the effective uid is 0
//! every PostgreSQL program (initdb, pg_ctl, postgres, cp of the data directory) runs as an
//! unprivileged user, `nobody` unless `SLUICE_TEST_PG_USER` names another, through
//! `CommandExt::uid/gid`. The temp dirs are created directly under `/tmp` (world-traversable)
//! and chowned to that user. Clients (psql, pgbench, the tests) stay root: they only use TCP.

use std::os::unix::fs::{MetadataExt, PermissionsExt, chown};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tokio_postgres::Client;

pub const SUPERUSER: &str = "postgres";
pub const SUPERUSER_PASSWORD: &str = "postgres-secret";
/// Owns database `app`; logs in with SCRAM-SHA-256.
pub const APP_USER: &str = "app";
pub const APP_PASSWORD: &str = "app-secret";
pub const APP_DB: &str = "app";
/// Its password is stored as an md5 hash and pg_hba says md5: the server asks for md5.
pub const MD5_USER: &str = "md5user";
pub const MD5_PASSWORD: &str = "md5-secret";
/// pg_hba says trust: the server asks for no password (the role still has one, for the pooler's
/// own client authentication).
pub const TRUST_USER: &str = "trustuser";
pub const TRUST_PASSWORD: &str = "trust-secret";
/// REPLICATION: what a standby streams WAL as (SCRAM).
pub const REPL_USER: &str = "repl";
pub const REPL_PASSWORD: &str = "repl-secret";

/// Bump when the template's construction changes in a way the key below does not see.
const TEMPLATE_REVISION: u32 = 2;
const READY_MARKER: &str = "sluice-template-ready";
const PORT_FILE: &str = "sluice_port.conf";

const SERVER_SETTINGS: &str = "
# --- sluice test harness ---
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = 32MB
max_connections = 200
log_connections = on
log_disconnections = on
log_min_error_statement = error
# What a streaming standby needs (PostgreSQL 15's defaults, spelled out: replica.rs relies on them).
wal_level = replica
max_wal_senders = 10
max_replication_slots = 10
hot_standby = on
include_if_exists = 'sluice_port.conf'
";

const PG_HBA: &str = "
host replication repl 127.0.0.1/32 scram-sha-256
host all md5user   127.0.0.1/32 md5
host all trustuser 127.0.0.1/32 trust
host all all       127.0.0.1/32 scram-sha-256
";

const SETUP_SQL: &str = "
CREATE ROLE app LOGIN CREATEDB PASSWORD 'app-secret';
CREATE DATABASE app OWNER app;
SET password_encryption = 'md5';
CREATE ROLE md5user LOGIN PASSWORD 'md5-secret';
SET password_encryption = 'scram-sha-256';
CREATE ROLE trustuser LOGIN PASSWORD 'trust-secret';
-- md5user and trustuser act on app's tables through membership.
GRANT app TO md5user, trustuser;
CREATE ROLE repl LOGIN REPLICATION PASSWORD 'repl-secret';
";

/// Where the PostgreSQL 15 programs are (`SLUICE_PG_BIN` overrides).
pub fn pg_bin(program: &str) -> PathBuf {
    let dir =
        std::env::var_os("SLUICE_PG_BIN").unwrap_or_else(|| "/usr/lib/postgresql/15/bin".into());
    Path::new(&dir).join(program)
}

/// The account PostgreSQL runs as.
#[derive(Debug, Clone, Copy)]
struct RunAs {
    uid: u32,
    gid: u32,
    /// True when we are root and must switch to `uid`/`gid` for PostgreSQL.
    switch: bool,
}

fn run_as() -> RunAs {
    static RUN_AS: OnceLock<RunAs> = OnceLock::new();
    *RUN_AS.get_or_init(|| {
        // /proc/self belongs to the effective uid/gid of the process looking at it.
        let me = std::fs::metadata("/proc/self").expect("stat /proc/self");
        if me.uid() != 0 {
            return RunAs { uid: me.uid(), gid: me.gid(), switch: false };
        }
        let name = std::env::var("SLUICE_TEST_PG_USER").unwrap_or_else(|_| "nobody".into());
        let passwd = std::fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
        let entry = passwd
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f.len() >= 4 && f[0] == name)
            .unwrap_or_else(|| panic!("running as root, and user {name:?} (to run PostgreSQL as) is not in /etc/passwd"));
        let uid: u32 = entry[2].parse().expect("uid in /etc/passwd");
        let gid: u32 = entry[3].parse().expect("gid in /etc/passwd");
        assert_ne!(uid, 0, "SLUICE_TEST_PG_USER must not be root");
        RunAs { uid, gid, switch: true }
    })
}

/// Is this process root (and so PostgreSQL runs as someone else)?
pub fn running_as_root() -> bool {
    run_as().switch
}

/// The uid PostgreSQL runs as.
pub fn postgres_uid() -> u32 {
    run_as().uid
}

/// Where our temp dirs go: `SLUICE_TEST_TMPDIR` if set; else `/dev/shm` when it is a
/// world-writable directory (tmpfs: copying a data directory there takes a tenth of the time it
/// takes on disk); else `/tmp` when we must hand the dirs to another user (world-traversable
/// whatever TMPDIR says), or the usual temp dir.
fn temp_base() -> PathBuf {
    if let Some(dir) = std::env::var_os("SLUICE_TEST_TMPDIR") {
        return dir.into();
    }
    let shm = Path::new("/dev/shm");
    if shm
        .metadata()
        .is_ok_and(|m| m.is_dir() && m.mode() & 0o1777 == 0o1777)
    {
        return shm.to_path_buf();
    }
    if run_as().switch {
        PathBuf::from("/tmp")
    } else {
        std::env::temp_dir()
    }
}

/// A command for a PostgreSQL program (or `cp`), run as the PostgreSQL account.
fn as_postgres(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let ra = run_as();
    let mut cmd = Command::new(program);
    if ra.switch {
        // std drops supplementary groups (setgroups(0)) before setuid when it runs as root.
        cmd.uid(ra.uid).gid(ra.gid);
    }
    // No PGDATA, PGHOST, PGSSLMODE... of the caller's: every program is told what to use.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PG") {
            cmd.env_remove(key);
        }
    }
    cmd.current_dir("/").stdin(Stdio::null()).env("LC_ALL", "C");
    cmd
}

fn run(cmd: &mut Command, what: &str) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{what} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// A temp dir owned by the PostgreSQL account, mode 0700.
fn owned_temp_dir(prefix: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(temp_base())
        .expect("create temp dir");
    hand_over(dir.path());
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
        .expect("chmod temp dir");
    dir
}

/// Gives a file or directory we created to the PostgreSQL account.
fn hand_over(path: &Path) {
    let ra = run_as();
    if ra.switch {
        chown(path, Some(ra.uid), Some(ra.gid))
            .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
    }
}

fn write_owned(path: &Path, contents: &str) {
    std::fs::write(path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    hand_over(path);
}

fn append(path: &Path, contents: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    f.write_all(contents.as_bytes())
        .unwrap_or_else(|e| panic!("append to {}: {e}", path.display()));
}

/// Asks the kernel for a loopback port that is free right now. PostgreSQL binds it a moment
/// later; if someone else took it meanwhile, `start_postmaster` retries with another.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

fn log_tail(log: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(log)
        .unwrap_or_else(|e| format!("(cannot read {}: {e})", log.display()));
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// `pg_ctl start` on `port` (written to the port file); `Err` carries the log tail on failure.
fn pg_ctl_start(data: &Path, log: &Path, port: u16) -> Result<(), String> {
    write_owned(&data.join(PORT_FILE), &format!("port = {port}\n"));
    let out = as_postgres(pg_bin("pg_ctl"))
        .arg("-D")
        .arg(data)
        .arg("-l")
        .arg(log)
        .args(["-w", "-t", "60", "-s", "start"])
        .output()
        .expect("run pg_ctl start");
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "pg_ctl start failed ({}): {}{}\n--- tail of {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            log.display(),
            log_tail(log, 40)
        ))
    }
}

/// Starts the postmaster on a fresh free port, retrying if the port was taken meanwhile.
fn start_postmaster(data: &Path, log: &Path) -> u16 {
    let mut last = String::new();
    for _ in 0..8 {
        let port = free_port();
        match pg_ctl_start(data, log, port) {
            Ok(()) => return port,
            Err(e) if e.contains("could not bind") || e.contains("Address already in use") => {
                last = e
            }
            Err(e) => panic!("{e}"),
        }
    }
    panic!("PostgreSQL could not bind a free port in 8 tries; last:\n{last}")
}

fn pg_ctl_stop(data: &Path, mode: &str) -> Output {
    as_postgres(pg_bin("pg_ctl"))
        .arg("-D")
        .arg(data)
        .args(["-m", mode, "-w", "-t", "60", "-s", "stop"])
        .output()
        .expect("run pg_ctl stop")
}

/// FNV-1a: stable across Rust versions, unlike `DefaultHasher`.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// How long this process took to build the template; unset if it found one ready.
pub static TEMPLATE_BUILD_TIME: OnceLock<Duration> = OnceLock::new();

/// The template data directory, built on first use (see the module docs).
fn template() -> &'static Path {
    static TEMPLATE: OnceLock<PathBuf> = OnceLock::new();
    TEMPLATE.get_or_init(find_or_build_template)
}

fn find_or_build_template() -> PathBuf {
    let version = run(
        Command::new(pg_bin("postgres")).arg("--version"),
        "postgres --version",
    );
    let key = fnv1a(&format!(
        "{TEMPLATE_REVISION}\n{}\n{SERVER_SETTINGS}\n{PG_HBA}\n{SETUP_SQL}\n{}",
        String::from_utf8_lossy(&version.stdout),
        run_as().uid
    ));
    let home = temp_base().join(format!("sluice-pg-template-{key:016x}"));
    if home.join(READY_MARKER).exists() {
        return home.join("data");
    }

    let started = Instant::now();
    let build = owned_temp_dir("sluice-pg-template-build-");
    let data = build.path().join("data");
    let pwfile = build.path().join("pwfile");
    write_owned(&pwfile, SUPERUSER_PASSWORD);
    run(
        as_postgres(pg_bin("initdb"))
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                SUPERUSER,
                "-A",
                "scram-sha-256",
                "-E",
                "UTF8",
                "--no-locale",
                "-N",
                "--no-instructions",
            ])
            // 1 MB WAL segments: the data directory shrinks from 39 to 24 MB, and copies faster.
            .arg("--wal-segsize=1")
            .arg(format!("--pwfile={}", pwfile.display())),
        "initdb",
    );
    append(&data.join("postgresql.conf"), SERVER_SETTINGS);
    std::fs::write(data.join("pg_hba.conf"), PG_HBA).expect("write pg_hba.conf");

    let log = build.path().join("template.log");
    let port = start_postmaster(&data, &log);
    let script = build.path().join("setup.sql");
    write_owned(&script, SETUP_SQL);
    let setup = Command::new(pg_bin("psql"))
        .args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-U",
            SUPERUSER,
            "-d",
            "postgres",
        ])
        .arg("-p")
        .arg(port.to_string())
        .arg("-f")
        .arg(&script)
        .env("PGPASSWORD", SUPERUSER_PASSWORD)
        .env("PGSSLMODE", "disable")
        .stdin(Stdio::null())
        .output()
        .expect("run psql");
    let stop = pg_ctl_stop(&data, "fast");
    if !setup.status.success() || !stop.status.success() {
        panic!(
            "template set-up failed: psql {} {}{}; pg_ctl stop {} {}\n--- log\n{}",
            setup.status,
            String::from_utf8_lossy(&setup.stdout),
            String::from_utf8_lossy(&setup.stderr),
            stop.status,
            String::from_utf8_lossy(&stop.stderr),
            log_tail(&log, 40)
        );
    }
    std::fs::remove_file(data.join(PORT_FILE)).expect("remove template port file");
    write_owned(&build.path().join(READY_MARKER), "");
    let _ = TEMPLATE_BUILD_TIME.set(started.elapsed());

    // Publish atomically. A directory already at `home` is either complete (another process won
    // the race: use it) or a leftover without its marker (remove it and try once more).
    let built = build.keep();
    if std::fs::rename(&built, &home).is_err() {
        if !home.join(READY_MARKER).exists() {
            let _ = std::fs::remove_dir_all(&home);
            if std::fs::rename(&built, &home).is_ok() {
                return home.join("data");
            }
        }
        let _ = std::fs::remove_dir_all(&built);
        assert!(
            home.join(READY_MARKER).exists(),
            "no usable template at {}",
            home.display()
        );
    }
    home.join("data")
}

/// A running PostgreSQL 15 cluster with roles `postgres` (superuser), `app` (owns database
/// `app`, SCRAM), `md5user` (md5) and `trustuser` (trust); see the constants above.
///
/// `start` and `Drop` are synchronous (they run `pg_ctl` and wait for it): call `start` before
/// the test spawns tasks that need its runtime to make progress, or from `spawn_blocking`.
pub struct PgCluster {
    dir: tempfile::TempDir,
    port: u16,
    running: bool,
    /// How long `start` took, for the self-test's report.
    pub start_time: Duration,
}

impl PgCluster {
    pub fn start() -> PgCluster {
        let started = Instant::now();
        let template = template();
        let dir = owned_temp_dir("sluice-pg-");
        let data = dir.path().join("data");
        run(
            as_postgres("cp").arg("-a").arg(template).arg(&data),
            "copy template data directory",
        );
        PgCluster::launch(dir, started)
    }

    /// Starts the postmaster on `dir`/data, logging to `dir`/postgres.log.
    fn launch(dir: tempfile::TempDir, started: Instant) -> PgCluster {
        let port = start_postmaster(&dir.path().join("data"), &dir.path().join("postgres.log"));
        PgCluster {
            dir,
            port,
            running: true,
            start_time: started.elapsed(),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:port`, for [`super::RawConn`].
    pub fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// The last `lines` lines of the server log.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log_path(), lines)
    }

    /// Stops the server (`pg_ctl stop -m fast`: backends get FATAL 57P01 and the port closes).
    pub fn stop(&mut self) {
        let out = pg_ctl_stop(&self.data_dir(), "fast");
        assert!(
            out.status.success(),
            "pg_ctl stop: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log_tail(20)
        );
        self.running = false;
    }

    /// Kills the server (`pg_ctl stop -m immediate`: every process quits at once, no checkpoint,
    /// crash recovery at the next start), as a crash or an operator in a hurry would.
    pub fn kill(&mut self) {
        let out = pg_ctl_stop(&self.data_dir(), "immediate");
        assert!(
            out.status.success(),
            "pg_ctl stop -m immediate: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log_tail(20)
        );
        self.running = false;
    }

    /// Turns TLS on: `cert_pem` and `key_pem` become `server.crt` and `server.key` in the data
    /// directory (the key 0600, as PostgreSQL demands), `ssl = on`, and the server restarts on
    /// the same port (deterministic, unlike waiting for a reload to reach new backends).
    pub fn enable_ssl(&mut self, cert_pem: &str, key_pem: &str) {
        let data = self.data_dir();
        write_owned(&data.join("server.crt"), cert_pem);
        write_owned(&data.join("server.key"), key_pem);
        std::fs::set_permissions(
            data.join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .expect("chmod server.key");
        append(
            &data.join("postgresql.conf"),
            "\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n",
        );
        self.stop();
        self.start_again();
    }

    /// Starts a stopped server again on the same port and data directory.
    pub fn start_again(&mut self) {
        assert!(!self.running, "already running");
        pg_ctl_start(&self.data_dir(), &self.log_path(), self.port)
            .unwrap_or_else(|e| panic!("{e}"));
        self.running = true;
    }

    /// A hot standby of this cluster on a port of its own: `pg_basebackup -R` as `repl` through
    /// the physical replication slot `slot` (created here; it keeps the WAL a stopped standby has
    /// yet to replay), streaming as `application_name = slot`. Returns once the standby accepts
    /// read-only connections; [`super::ReplicaCluster`] also waits until it streams.
    pub fn start_replica(&self, slot: &str) -> PgCluster {
        let started = Instant::now();
        let dir = owned_temp_dir("sluice-pg-replica-");
        let data = dir.path().join("data");
        run(
            as_postgres(pg_bin("pg_basebackup"))
                .env("PGPASSWORD", REPL_PASSWORD)
                .env("PGCONNECT_TIMEOUT", "10")
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
                .args(["-U", REPL_USER, "-D"])
                .arg(&data)
                .args(["-R", "-X", "stream", "-C", "-S", slot])
                .args(["-c", "fast", "--no-sync"]),
            "pg_basebackup",
        );
        // Spelled out rather than left to what -R wrote; replies every second so that the
        // primary's view of the standby (pg_stat_replication) stays fresh.
        append(
            &data.join("postgresql.auto.conf"),
            &format!(
                "primary_conninfo = 'host=127.0.0.1 port={} user={REPL_USER} \
                 password={REPL_PASSWORD} application_name={slot}'\n\
                 primary_slot_name = '{slot}'\n\
                 wal_receiver_status_interval = '1s'\n",
                self.port
            ),
        );
        // The copy carries the primary's port file: launching writes the standby's own.
        PgCluster::launch(dir, started)
    }

    /// A tokio-postgres config for a direct connection (no pooler).
    pub fn pg_config(&self, db: &str, user: &str, password: &str) -> tokio_postgres::Config {
        super::client_config(self.port, db, user, password)
    }

    /// A direct connection to PostgreSQL; panics on failure or after `super::STEP`.
    pub async fn connect_direct(&self, db: &str, user: &str, password: &str) -> Client {
        super::connect_config(&self.pg_config(db, user, password))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "direct connection to PostgreSQL as {user}: {}\n{}",
                    super::describe_error(&e),
                    self.log_tail(20)
                )
            })
            .0
    }

    /// A direct superuser connection to database `db`.
    pub async fn superuser(&self, db: &str) -> Client {
        self.connect_direct(db, SUPERUSER, SUPERUSER_PASSWORD).await
    }

    /// Runs psql straight against PostgreSQL (`-X -v ON_ERROR_STOP=1` first, then `args`).
    pub async fn psql_direct(&self, db: &str, user: &str, password: &str, args: &[&str]) -> Output {
        super::psql_at(self.port, db, user, password, args).await
    }

    /// `pgbench -i -s 1 -q` straight against PostgreSQL as `app` to `app`: the TPC-B tables.
    pub async fn pgbench_init(&self) {
        let out = super::pgbench_at(
            self.port,
            APP_DB,
            APP_USER,
            APP_PASSWORD,
            &["-i", "-s", "1", "-q"],
        )
        .await;
        assert!(
            out.status.success(),
            "pgbench -i: {}",
            super::describe_output(&out)
        );
    }

    /// Backends of `user` connected to database `app`, as PostgreSQL sees them.
    pub async fn backends_of(&self, su: &Client, user: &str) -> i64 {
        su.query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = $1 AND datname = 'app' AND backend_type = 'client backend'",
            &[&user],
        )
        .await
        .expect("count backends")
        .get(0)
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- last lines of the PostgreSQL log ({}):\n{}",
                self.log_path().display(),
                self.log_tail(30)
            );
        }
        if self.running {
            let out = pg_ctl_stop(&self.data_dir(), "immediate");
            if !out.status.success() {
                eprintln!(
                    "pg_ctl stop -m immediate: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        // The TempDir removes the data directory (root may remove nobody's files).
    }
}
