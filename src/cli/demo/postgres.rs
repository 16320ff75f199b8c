//! The demo's PostgreSQL: finding the programs, running them as an unprivileged user when sluice
//! runs as root, and a throwaway primary with a streaming replica in one temp directory.
//!
//! Owns: the temp directory ([`DemoDir`]) and the postmasters started in it. [`DemoDir::clean_up`]
//! (also run on drop) stops every postmaster whose data directory is in it and removes it, so
//! whatever step failed or was interrupted, nothing is left behind.
//!
//! Root: PostgreSQL refuses to run as root. When the effective uid is 0, every PostgreSQL program
//! runs as `nobody` (or `SLUICE_DEMO_PG_USER`), the temp directory is made under `/tmp` and given
//! to that user. Clients (sluice, pgbench) stay as they are: they only use TCP.
//!
//! Every program runs in its own process group, so a Ctrl-C in the terminal reaches only sluice,
//! which then stops them in order; `pg_ctl start` detaches the postmaster in its own session too.

use std::os::unix::fs::{MetadataExt, PermissionsExt, chown};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::Command;

/// The programs the demo cannot do without.
pub const REQUIRED: &[&str] = &["initdb", "pg_ctl", "postgres", "pg_basebackup"];

/// Where PostgreSQL's programs are, and which version they are.
#[derive(Debug, Clone)]
pub struct PgBin {
    pub dir: PathBuf,
    pub version: String,
    /// pgbench, if installed (beside the server programs or on PATH).
    pub pgbench: Option<PathBuf>,
}

impl PgBin {
    pub fn program(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// The directories to look in, best first: `$SLUICE_PG_BIN` alone when set; else each
/// `/usr/lib/postgresql/<version>/bin` (Debian, Ubuntu), newest first, each
/// `/usr/pgsql-<version>/bin` (the PGDG RPMs), then the directory of each `pg_ctl` on `PATH` (its
/// symlinks followed, as Debian's /usr/bin wrappers are not the server programs).
pub fn candidates() -> Vec<PathBuf> {
    if let Some(dir) = std::env::var_os("SLUICE_PG_BIN") {
        return vec![PathBuf::from(dir)];
    }
    let mut out = Vec::new();
    for (base, prefix) in [("/usr/lib/postgresql", ""), ("/usr", "pgsql-")] {
        let mut versioned: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir(base)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let version = version_key(name.strip_prefix(prefix)?)?;
                Some((version, e.path().join("bin")))
            })
            .collect();
        versioned.sort_by(|a, b| b.0.cmp(&a.0));
        out.extend(versioned.into_iter().map(|(_, p)| p));
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let ctl = dir.join("pg_ctl");
            if let Ok(real) = std::fs::canonicalize(&ctl)
                && let Some(parent) = real.parent()
            {
                out.push(parent.to_path_buf());
            }
        }
    }
    out
}

/// `15` → `[15]`, `9.6` → `[9, 6]`; `None` for names that are not versions.
pub fn version_key(name: &str) -> Option<Vec<u32>> {
    name.split('.').map(|p| p.parse().ok()).collect()
}

/// The first candidate that holds every required program.
pub fn choose(candidates: &[PathBuf], exists: impl Fn(&Path) -> bool) -> Option<PathBuf> {
    candidates
        .iter()
        .find(|dir| REQUIRED.iter().all(|p| exists(&dir.join(p))))
        .cloned()
}

/// What to tell someone who has no PostgreSQL programs.
pub fn missing_message(looked_in: &[PathBuf]) -> String {
    let places = if std::env::var_os("SLUICE_PG_BIN").is_some() {
        "$SLUICE_PG_BIN".to_owned()
    } else {
        "/usr/lib/postgresql/*/bin, /usr/pgsql-*/bin and $PATH".to_owned()
    };
    let tried: Vec<String> = looked_in.iter().map(|p| p.display().to_string()).collect();
    format!(
        "no PostgreSQL server programs found ({} are needed; looked in {places}{}).\n\
         Install them, for example:\n\
         \x20 apt-get install postgresql-15        # Debian, Ubuntu (any version 13 or later will do)\n\
         \x20 dnf install postgresql-server postgresql-contrib   # Fedora, RHEL\n\
         \x20 brew install postgresql@15           # macOS\n\
         or set SLUICE_PG_BIN to the directory that holds them.",
        REQUIRED.join(", "),
        if tried.is_empty() {
            String::new()
        } else {
            format!(": {}", tried.join(", "))
        }
    )
}

/// Finds the programs and asks `postgres --version`.
pub async fn find() -> Result<PgBin, String> {
    let candidates = candidates();
    let dir = choose(&candidates, |p| p.is_file()).ok_or_else(|| missing_message(&candidates))?;
    let out = Command::new(dir.join("postgres"))
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| format!("cannot run {}: {e}", dir.join("postgres").display()))?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let pgbench = Some(dir.join("pgbench"))
        .filter(|p| p.is_file())
        .or_else(|| {
            std::env::var_os("PATH").and_then(|path| {
                std::env::split_paths(&path)
                    .map(|d| d.join("pgbench"))
                    .find(|p| p.is_file())
            })
        });
    Ok(PgBin {
        dir,
        version,
        pgbench,
    })
}

/// The account PostgreSQL runs as.
#[derive(Debug, Clone)]
pub struct RunAs {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// We are root and switch to `uid`/`gid` for PostgreSQL's programs.
    pub switch: bool,
}

impl RunAs {
    pub fn detect() -> Result<RunAs, String> {
        // /proc/self belongs to the effective uid and gid of the process looking at it.
        let me = std::fs::metadata("/proc/self").map_err(|e| format!("stat /proc/self: {e}"))?;
        if me.uid() != 0 {
            let name = std::env::var("USER").unwrap_or_else(|_| me.uid().to_string());
            return Ok(RunAs {
                name,
                uid: me.uid(),
                gid: me.gid(),
                switch: false,
            });
        }
        let name = std::env::var("SLUICE_DEMO_PG_USER").unwrap_or_else(|_| "nobody".into());
        let passwd =
            std::fs::read_to_string("/etc/passwd").map_err(|e| format!("read /etc/passwd: {e}"))?;
        let (uid, gid) = passwd_entry(&passwd, &name).ok_or_else(|| {
            format!(
                "running as root, and user {name:?} (to run PostgreSQL as, since it refuses \
                 root) is not in /etc/passwd; set SLUICE_DEMO_PG_USER to an unprivileged user"
            )
        })?;
        if uid == 0 {
            return Err("SLUICE_DEMO_PG_USER must not be root".into());
        }
        Ok(RunAs {
            name,
            uid,
            gid,
            switch: true,
        })
    }

    /// A command for a PostgreSQL program, as this account, in its own process group, with no
    /// PG* variables of ours.
    pub fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new(program);
        if self.switch {
            cmd.uid(self.uid).gid(self.gid);
        }
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("PG") {
                cmd.env_remove(key);
            }
        }
        cmd.current_dir("/")
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .process_group(0)
            .kill_on_drop(true);
        cmd
    }

    /// Gives a file or directory we made to this account.
    pub fn hand_over(&self, path: &Path) -> Result<(), String> {
        if self.switch {
            chown(path, Some(self.uid), Some(self.gid))
                .map_err(|e| format!("chown {}: {e}", path.display()))?;
        }
        Ok(())
    }
}

/// `(uid, gid)` of `name` in /etc/passwd text.
pub fn passwd_entry(passwd: &str, name: &str) -> Option<(u32, u32)> {
    passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        (f.len() >= 4 && f[0] == name).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
    })
}

/// The demo's temp directory: the data directories, logs, and sluice.toml.
pub struct DemoDir {
    pub path: PathBuf,
    bin: PgBin,
    run_as: RunAs,
    cleaned: bool,
}

/// The data directories the demo makes, in the order they are stopped (the replica first).
const DATA_DIRS: &[&str] = &["replica", "primary"];

impl DemoDir {
    pub fn create(bin: &PgBin, run_as: &RunAs) -> Result<DemoDir, String> {
        let base = if run_as.switch {
            // World-traversable whatever TMPDIR says, so the PostgreSQL account reaches its dir.
            PathBuf::from("/tmp")
        } else {
            std::env::temp_dir()
        };
        let path = base.join(format!("sluice-demo-{:016x}", rand::random::<u64>()));
        std::fs::create_dir(&path).map_err(|e| format!("create {}: {e}", path.display()))?;
        let dir = DemoDir {
            path,
            bin: bin.clone(),
            run_as: run_as.clone(),
            cleaned: false,
        };
        std::fs::set_permissions(&dir.path, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("chmod {}: {e}", dir.path.display()))?;
        run_as.hand_over(&dir.path)?;
        Ok(dir)
    }

    pub fn data(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Writes a file the PostgreSQL account may read.
    pub fn write(&self, path: &Path, text: &str) -> Result<(), String> {
        std::fs::write(path, text).map_err(|e| format!("write {}: {e}", path.display()))?;
        self.run_as.hand_over(path)
    }

    /// Stops every postmaster running on a data directory here (fast shutdown, then immediate)
    /// and removes the directory. Safe to call more than once.
    pub fn clean_up(&mut self) -> Result<(), String> {
        if self.cleaned {
            return Ok(());
        }
        let mut problems = Vec::new();
        for name in DATA_DIRS {
            let data = self.data(name);
            if !data.join("postmaster.pid").exists() {
                continue;
            }
            if let Err(e) = self.stop_blocking(&data) {
                problems.push(e);
            }
        }
        if let Err(e) = std::fs::remove_dir_all(&self.path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            problems.push(format!("remove {}: {e}", self.path.display()));
        }
        self.cleaned = true;
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }

    /// `pg_ctl stop` (fast, falling back to immediate), synchronously: clean-up also runs from
    /// `Drop`, where nothing can be awaited.
    fn stop_blocking(&self, data: &Path) -> Result<(), String> {
        let pid = std::fs::read_to_string(data.join("postmaster.pid"))
            .ok()
            .and_then(|t| t.lines().next()?.trim().parse::<u32>().ok());
        self.pg_ctl_stop(data)?;
        // pg_ctl returns once the pid file is gone; the postmaster exits a moment later. Wait
        // for that, so that when the demo ends its servers have ended too.
        if let Some(pid) = pid {
            let deadline = Instant::now() + Duration::from_secs(10);
            while process_alive(pid) {
                if Instant::now() > deadline {
                    return Err(format!(
                        "postmaster {pid} still running 10 s after pg_ctl stop"
                    ));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    fn pg_ctl_stop(&self, data: &Path) -> Result<(), String> {
        let mut last = String::new();
        for mode in ["fast", "immediate"] {
            let mut cmd = std::process::Command::new(self.bin.program("pg_ctl"));
            use std::os::unix::process::CommandExt;
            if self.run_as.switch {
                cmd.uid(self.run_as.uid).gid(self.run_as.gid);
            }
            let out = cmd
                .arg("-D")
                .arg(data)
                .args(["-m", mode, "-w", "-t", "30", "-s", "stop"])
                .current_dir("/")
                .stdin(Stdio::null())
                // A second Ctrl-C must not cut the clean-up short.
                .process_group(0)
                .output();
            match out {
                Ok(o) if o.status.success() => return Ok(()),
                Ok(o) => last = String::from_utf8_lossy(&o.stderr).trim().to_owned(),
                Err(e) => last = e.to_string(),
            }
        }
        Err(format!("pg_ctl stop {}: {last}", data.display()))
    }
}

/// Whether `pid` is a process that has not ended (a zombie has ended). Linux's /proc; where
/// there is none, the process counts as ended.
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // "pid (comm) S ...": the state follows the last ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

impl Drop for DemoDir {
    fn drop(&mut self) {
        if let Err(e) = self.clean_up() {
            eprintln!("sluice demo: clean-up: {e}");
        }
    }
}

/// Settings for both servers (the replica inherits them with the data directory).
const SERVER_SETTINGS: &str = "
# --- sluice demo ---
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
max_connections = 100
shared_buffers = 32MB
# A throwaway cluster: durability is not the point.
fsync = off
synchronous_commit = off
full_page_writes = off
# Streaming replication to the demo's replica.
wal_level = replica
max_wal_senders = 4
max_replication_slots = 4
hot_standby = on
wal_receiver_status_interval = 1s
";

const PG_HBA: &str = "
# sluice demo: TCP from this machine only, SCRAM passwords.
host replication postgres 127.0.0.1/32 scram-sha-256
host all         all      127.0.0.1/32 scram-sha-256
";

/// A running server of the demo.
#[derive(Debug, Clone)]
pub struct Server {
    pub port: u16,
    pub pid: u32,
}

/// Runs `cmd` to completion; an error carries its output.
async fn run(cmd: &mut Command, what: &str) -> Result<std::process::Output, String> {
    let out = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .await
        .map_err(|e| format!("{what}: cannot run: {e}"))?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(format!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// A loopback port free right now (the server binds it a moment later; a clash is retried).
pub fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("find a free port: {e}"))
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// `initdb` for the primary, with `postgres`'s password `superuser_password`.
pub async fn init_primary(dir: &DemoDir, superuser_password: &str) -> Result<PathBuf, String> {
    let data = dir.data("primary");
    let pwfile = dir.path.join("superuser-password");
    dir.write(&pwfile, superuser_password)?;
    run(
        dir.run_as
            .command(&dir.bin.program("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "-A", "scram-sha-256", "-E", "UTF8"])
            .args(["--no-locale", "-N"])
            .arg(format!("--pwfile={}", pwfile.display())),
        "initdb",
    )
    .await?;
    std::fs::remove_file(&pwfile).map_err(|e| format!("remove {}: {e}", pwfile.display()))?;
    let conf = data.join("postgresql.conf");
    let mut text =
        std::fs::read_to_string(&conf).map_err(|e| format!("read {}: {e}", conf.display()))?;
    text.push_str(SERVER_SETTINGS);
    dir.write(&conf, &text)?;
    dir.write(&data.join("pg_hba.conf"), PG_HBA)?;
    Ok(data)
}

/// `pg_basebackup` of the primary into a hot standby that streams from it.
pub async fn clone_replica(
    dir: &DemoDir,
    primary: &Server,
    superuser_password: &str,
) -> Result<PathBuf, String> {
    let data = dir.data("replica");
    run(
        dir.run_as
            .command(&dir.bin.program("pg_basebackup"))
            .env("PGPASSWORD", superuser_password)
            .env("PGCONNECT_TIMEOUT", "10")
            .args(["-h", "127.0.0.1", "-p", &primary.port.to_string()])
            .args(["-U", "postgres", "-D"])
            .arg(&data)
            .args(["-R", "-X", "stream", "-C", "-S", "sluice_demo_replica"])
            .args(["-c", "fast", "--no-sync"]),
        "pg_basebackup",
    )
    .await?;
    let auto = data.join("postgresql.auto.conf");
    let mut text =
        std::fs::read_to_string(&auto).map_err(|e| format!("read {}: {e}", auto.display()))?;
    text.push_str(&format!(
        "primary_conninfo = 'host=127.0.0.1 port={} user=postgres password={superuser_password} \
         application_name=sluice_demo_replica'\nprimary_slot_name = 'sluice_demo_replica'\n",
        primary.port
    ));
    dir.write(&auto, &text)?;
    Ok(data)
}

/// Starts the server on `data` on a free port (retrying if another process took it meanwhile)
/// and returns once it accepts connections.
pub async fn start(dir: &DemoDir, data: &Path, name: &str) -> Result<Server, String> {
    let log = dir.path.join(format!("{name}.log"));
    let mut last = String::new();
    for _ in 0..5 {
        let port = free_port()?;
        let out = dir
            .run_as
            .command(&dir.bin.program("pg_ctl"))
            .arg("-D")
            .arg(data)
            .arg("-l")
            .arg(&log)
            .arg("-o")
            .arg(format!("-p {port}"))
            .args(["-w", "-t", "120", "-s", "start"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .await
            .map_err(|e| format!("pg_ctl start: {e}"))?;
        if out.status.success() {
            let pid_file = data.join("postmaster.pid");
            let pid = std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|t| t.lines().next()?.trim().parse().ok())
                .ok_or_else(|| format!("no pid in {}", pid_file.display()))?;
            return Ok(Server { port, pid });
        }
        last = format!(
            "pg_ctl start ({name}) failed: {}\n--- {}\n{}",
            String::from_utf8_lossy(&out.stderr).trim(),
            log.display(),
            log_tail(&log)
        );
        if !(last.contains("could not bind") || last.contains("already in use")) {
            break;
        }
    }
    Err(last)
}

/// A superuser connection to `server`'s database `postgres`, its driver task spawned.
pub async fn superuser(server: &Server, password: &str) -> Result<tokio_postgres::Client, String> {
    connect(server.port, "postgres", password, "postgres").await
}

pub async fn connect(
    port: u16,
    user: &str,
    password: &str,
    dbname: &str,
) -> Result<tokio_postgres::Client, String> {
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(port)
        .user(user)
        .password(password)
        .dbname(dbname)
        .connect_timeout(Duration::from_secs(10));
    let (client, conn) = config
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(|e| format!("connect to 127.0.0.1:{port} as {user}: {}", describe(&e)))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// An error with PostgreSQL's message (tokio-postgres's own says only "db error").
pub fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} {}: {}", db.severity(), db.code().code(), db.message()),
        None => e.to_string(),
    }
}

/// Waits until the primary reports the replica streaming.
pub async fn wait_streaming(primary: &Server, password: &str) -> Result<(), String> {
    let su = superuser(primary, password).await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let rows = su
            .simple_query(
                "SELECT 1 FROM pg_stat_replication \
                 WHERE application_name = 'sluice_demo_replica' AND state = 'streaming'",
            )
            .await
            .map_err(|e| format!("pg_stat_replication: {}", describe(&e)))?;
        if rows
            .iter()
            .any(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_)))
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err("the replica did not start streaming within 120 s".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_directory_with_every_program_wins() {
        let dirs: Vec<PathBuf> = ["/a/bin", "/b/bin", "/c/bin"].map(PathBuf::from).to_vec();
        let has = |p: &Path| {
            let s = p.to_string_lossy();
            s.starts_with("/b/") || (s.starts_with("/c/")) || s == "/a/bin/pg_ctl"
        };
        assert_eq!(choose(&dirs, has), Some(PathBuf::from("/b/bin")));
        assert_eq!(choose(&dirs, |_| false), None);
    }

    #[test]
    fn versions_sort_numerically() {
        let mut v = ["9.6", "15", "10", "17"].map(|s| version_key(s).unwrap());
        v.sort_by(|a, b| b.cmp(a));
        assert_eq!(v, [vec![17], vec![15], vec![10], vec![9, 6]]);
        assert_eq!(version_key("main"), None);
    }

    #[test]
    fn the_missing_message_names_the_package() {
        let m = missing_message(&[PathBuf::from("/usr/lib/postgresql/15/bin")]);
        assert!(m.contains("apt-get install postgresql-15"), "{m}");
        assert!(m.contains("SLUICE_PG_BIN"), "{m}");
        assert!(m.contains("/usr/lib/postgresql/15/bin"), "{m}");
    }

    #[test]
    fn passwd_lookup() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                      nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
        assert_eq!(passwd_entry(passwd, "nobody"), Some((65534, 65534)));
        assert_eq!(passwd_entry(passwd, "postgres"), None);
    }
}
