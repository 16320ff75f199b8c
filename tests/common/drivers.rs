//! The client drivers applications run in production (psycopg 3, asyncpg, node-postgres, pgJDBC),
//! each driven by a script in `tests/drivers/` against an address sluice listens on.
//!
//! A driver that is not installed here is skipped with a printed reason, except under CI (env
//! `CI` set), where `.ci/run` installs them all and a missing one fails the test. Scripts print one
//! `ok <check>` line per check and exit non-zero, with the reason on stderr, on a wrong answer.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use super::run_command;

/// How long one driver script may run.
const SCRIPT_LIMIT: Duration = Duration::from_secs(180);

/// Where a driver script connects (libpq's environment variables for the Python and Node
/// drivers, a JDBC URL for Java).
#[derive(Debug, Clone)]
pub struct DriverTarget {
    pub port: u16,
    pub db: String,
    pub user: String,
    pub password: String,
    /// `PGSSLMODE` / JDBC `sslmode`; `None` for a plain connection.
    pub sslmode: Option<String>,
    /// `PGSSLROOTCERT` / JDBC `sslrootcert` for verify-ca and verify-full.
    pub sslrootcert: Option<PathBuf>,
}

impl DriverTarget {
    pub fn new(port: u16, db: &str, user: &str, password: &str) -> DriverTarget {
        DriverTarget {
            port,
            db: db.to_string(),
            user: user.to_string(),
            password: password.to_string(),
            sslmode: None,
            sslrootcert: None,
        }
    }

    fn jdbc_url(&self) -> String {
        let mut url = format!("jdbc:postgresql://127.0.0.1:{}/{}", self.port, self.db);
        if let Some(mode) = &self.sslmode {
            url.push_str(&format!("?sslmode={mode}"));
            if let Some(root) = &self.sslrootcert {
                url.push_str(&format!("&sslrootcert={}", root.display()));
            }
        }
        url
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    Psycopg,
    Asyncpg,
    NodePostgres,
    Jdbc,
}

/// Debian's pgJDBC (package libpostgresql-jdbc-java).
const JDBC_JAR: &str = "/usr/share/java/postgresql.jar";

pub fn drivers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/drivers")
}

impl Driver {
    pub const ALL: [Driver; 4] = [
        Driver::Psycopg,
        Driver::Asyncpg,
        Driver::NodePostgres,
        Driver::Jdbc,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Driver::Psycopg => "psycopg",
            Driver::Asyncpg => "asyncpg",
            Driver::NodePostgres => "node-postgres",
            Driver::Jdbc => "pgjdbc",
        }
    }

    /// The script that checks what an application does with this driver.
    pub fn check_script(self) -> PathBuf {
        drivers_dir().join(match self {
            Driver::Psycopg => "check_psycopg.py",
            Driver::Asyncpg => "check_asyncpg.py",
            Driver::NodePostgres => "check_node.js",
            Driver::Jdbc => "Check.java",
        })
    }

    /// Why this driver cannot run here, or `None` when it can.
    pub fn missing(self) -> Option<String> {
        let quiet = |program: &str, args: &[&str]| {
            Command::new(program)
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        };
        match self {
            Driver::Psycopg => (!quiet("python3", &["-c", "import psycopg"]))
                .then(|| "python3 cannot import psycopg (pip install 'psycopg[binary]')".into()),
            Driver::Asyncpg => (!quiet("python3", &["-c", "import asyncpg"]))
                .then(|| "python3 cannot import asyncpg (pip install asyncpg)".into()),
            Driver::NodePostgres => {
                if !quiet("node", &["--version"]) {
                    Some("node is not installed".into())
                } else if !drivers_dir().join("node_modules/pg").is_dir() {
                    Some("node-postgres is not installed (npm ci --prefix tests/drivers)".into())
                } else {
                    None
                }
            }
            Driver::Jdbc => {
                if !quiet("java", &["-version"]) {
                    Some("java is not installed".into())
                } else if !Path::new(JDBC_JAR).is_file() {
                    Some(format!(
                        "{JDBC_JAR} is missing (apt install libpostgresql-jdbc-java)"
                    ))
                } else {
                    None
                }
            }
        }
    }

    /// True when the driver can run. When it cannot, prints why and returns false, or panics
    /// under CI, where a missing driver is a broken set-up rather than a reason to skip.
    pub fn available(self) -> bool {
        match self.missing() {
            None => true,
            Some(why) if std::env::var_os("CI").is_some() => {
                panic!("{}: {why}; .ci/run installs it", self.name())
            }
            Some(why) => {
                eprintln!("skipping {}: {why}", self.name());
                false
            }
        }
    }

    /// Runs `script` (a file of this driver's language) against `target`, with `args` after it.
    pub async fn run(self, script: &Path, target: &DriverTarget, args: &[&str]) -> Output {
        let mut cmd = match self {
            Driver::Psycopg | Driver::Asyncpg => {
                let mut cmd = tokio::process::Command::new("python3");
                cmd.arg(script);
                cmd
            }
            Driver::NodePostgres => {
                let mut cmd = tokio::process::Command::new("node");
                cmd.env("NODE_PATH", drivers_dir().join("node_modules"))
                    .arg(script);
                cmd
            }
            Driver::Jdbc => {
                let mut cmd = tokio::process::Command::new("java");
                cmd.args(["-cp", JDBC_JAR])
                    .arg(script)
                    .arg(target.jdbc_url())
                    .arg(&target.user)
                    .arg(&target.password);
                cmd
            }
        };
        cmd.args(args)
            .current_dir(drivers_dir())
            .env("PGHOST", "127.0.0.1")
            .env("PGPORT", target.port.to_string())
            .env("PGDATABASE", &target.db)
            .env("PGUSER", &target.user)
            .env("PGPASSWORD", &target.password)
            .env("PGCONNECT_TIMEOUT", "10")
            .env_remove("PGSERVICE")
            .env_remove("PGOPTIONS")
            .env_remove("PGSSLROOTCERT");
        match &target.sslmode {
            Some(mode) => cmd.env("PGSSLMODE", mode),
            None => cmd.env_remove("PGSSLMODE"),
        };
        if let Some(root) = &target.sslrootcert {
            // node-postgres checks certificates against Node's CA list, which this extends.
            cmd.env("PGSSLROOTCERT", root)
                .env("NODE_EXTRA_CA_CERTS", root);
        }
        run_command(&mut cmd, SCRIPT_LIMIT).await
    }

    /// Runs this driver's check script against `target` and returns the checks it passed, in
    /// order; panics with the script's output when it failed.
    pub async fn check(self, target: &DriverTarget) -> Vec<String> {
        self.checks(&self.check_script(), target).await
    }

    /// Runs `script` against `target` and returns the checks it printed as passed (its `ok NAME`
    /// lines), in order; panics with the script's output when it failed.
    pub async fn checks(self, script: &Path, target: &DriverTarget) -> Vec<String> {
        let out = self.run(script, target, &[]).await;
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{} {} failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
            self.name(),
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
            .lines()
            .filter_map(|l| l.strip_prefix("ok "))
            .map(str::to_string)
            .collect()
    }
}
