//! `sluice import-pgbouncer` on realistic PgBouncer set-ups (tests/data/pgbouncer/): the
//! Debian-shaped default file, and a production-like one with `%include`s, per-database pool
//! settings and `auth_user`, `auth_type = hba` with its HBA file, TLS settings, and a userlist
//! with SCRAM and md5 secrets. Each result must pass `sluice --check`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use sluice::Config;
use sluice::config::{AuthType, PoolMode};

#[allow(dead_code)]
#[path = "common/certs.rs"]
mod certs;

/// PgBouncer's TLS files as the production set-up names them (tests/data/pgbouncer/tls.ini),
/// made for real in `dir`: sluice reads them when it checks a config.
fn tls_files(dir: &Path) -> Vec<(&'static str, PathBuf)> {
    let ca = certs::TestCa::new("test CA");
    let pooler = ca.localhost();
    vec![
        (
            "pooler.key",
            certs::write_pem(dir, "pooler.key", &pooler.key),
        ),
        (
            "pooler.crt",
            certs::write_pem(dir, "pooler.crt", &pooler.cert),
        ),
        (
            "clients-ca.crt",
            certs::write_pem(dir, "clients-ca.crt", &ca.pem),
        ),
        ("db-ca.crt", certs::write_pem(dir, "db-ca.crt", &ca.pem)),
    ]
}

/// `toml` with the TLS file paths of tls.ini pointing at real files in `dir`.
fn with_real_tls_files(toml: &str, dir: &Path) -> String {
    let mut toml = toml.to_owned();
    for (name, path) in tls_files(dir) {
        toml = toml.replace(
            &format!("/etc/pgbouncer/tls/{name}"),
            path.to_str().expect("UTF-8 path"),
        );
    }
    toml
}

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/pgbouncer")
        .join(name)
}

fn sluice(args: &[&std::ffi::OsStr], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .current_dir(cwd)
        .env_remove("SLUICE_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run the sluice binary")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Imports `ini` (and `userlist`) into a file, checks it with `sluice --check`, and returns the
/// parsed config, the file's text and the report on stderr.
fn import(ini: &str, userlist: Option<&str>, cwd: &Path) -> (Config, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("sluice.toml");
    let ini = data(ini);
    let list = userlist.map(data);
    let mut args: Vec<&std::ffi::OsStr> = vec!["import-pgbouncer".as_ref(), ini.as_os_str()];
    if let Some(l) = &list {
        args.push(l.as_os_str());
    }
    args.extend(["-o".as_ref(), out_path.as_os_str()]);
    let out = sluice(&args, cwd);
    let report = text(&out.stderr);
    assert!(
        out.status.success(),
        "import failed: {}\n{report}",
        out.status
    );
    assert!(out.stdout.is_empty(), "with -o nothing goes to stdout");
    let toml = std::fs::read_to_string(&out_path).unwrap();
    // The TLS files are read where sluice runs: make them exist here for the check.
    let files = tempfile::tempdir().unwrap();
    let toml = with_real_tls_files(&toml, files.path());
    std::fs::write(&out_path, &toml).unwrap();

    let check = sluice(
        &[
            "--check".as_ref(),
            "--config".as_ref(),
            out_path.as_os_str(),
        ],
        cwd,
    );
    assert!(
        check.status.success(),
        "sluice --check rejected the import: {}\n{toml}",
        text(&check.stderr)
    );
    let config = Config::from_toml(&toml).unwrap();
    (config, toml, report)
}

/// The report lists `setting` (as `[section] key` or a prefix of it) with `why` in its reason.
fn reported(report: &str, setting: &str, why: &str) -> bool {
    let lines: Vec<&str> = report.lines().collect();
    lines
        .windows(2)
        .any(|w| w[0].contains(setting) && w[1].contains(why))
}

#[test]
fn debian_default_file() {
    // From the repository root: auth_file names /etc/pgbouncer/userlist.txt, which is not here.
    let (config, toml, report) = import("debian.ini", None, Path::new(env!("CARGO_MANIFEST_DIR")));
    let p = &config.pooler;
    assert_eq!(p.listen, "127.0.0.1:6432");
    assert_eq!(p.pool_mode, PoolMode::Session);
    assert_eq!(p.auth_type, AuthType::Md5);
    assert_eq!(p.max_client_conn, 100);
    assert_eq!(p.query_wait_timeout.as_secs(), 120);
    assert!(config.databases.is_empty() && config.users.is_empty());
    for (setting, why) in [
        ("[pgbouncer] logfile", "stderr"),
        ("[pgbouncer] pidfile", "daemonize"),
        ("[pgbouncer] unix_socket_dir", "TCP only"),
        ("[pgbouncer] listen_addr = localhost", "127.0.0.1"),
        ("[pgbouncer] auth_file", "cannot read"),
    ] {
        assert!(
            reported(&report, setting, why),
            "{setting} / {why} not in:\n{report}"
        );
    }
    // Commented-out settings are not settings.
    assert!(!report.contains("max_prepared_statements"), "{report}");
    assert!(
        toml.contains("# - "),
        "the notes are in the file too:\n{toml}"
    );
}

#[test]
fn production_file_with_includes_hba_tls_and_secrets() {
    // From another directory: the includes and files are found beside pgbouncer.ini.
    let elsewhere = tempfile::tempdir().unwrap();
    let (config, toml, report) = import("production.ini", None, elsewhere.path());

    // From common.ini (included), overridden where production.ini says otherwise.
    let p = &config.pooler;
    assert_eq!(p.listen, "0.0.0.0:6432");
    assert_eq!(p.pool_mode, PoolMode::Transaction);
    assert_eq!(p.max_client_conn, 2000);
    assert_eq!(p.default_pool_size, 25);
    assert_eq!(p.query_wait_timeout.as_secs(), 45);
    assert_eq!(p.server_idle_timeout.as_secs(), 300);
    assert_eq!(p.server_lifetime.as_secs(), 1800);
    assert_eq!(p.max_prepared_statements, 150);

    // Per-database pool settings.
    let dbs = &config.databases;
    assert_eq!(dbs["shop"].pool_size, Some(60));
    assert_eq!(dbs["shop"].dbname.as_deref(), Some("shop_production"));
    assert_eq!(dbs["reports"].pool_mode, Some(PoolMode::Session));
    assert_eq!(dbs["reports"].pool_size, Some(8));
    assert_eq!(dbs["billing"].server_user.as_deref(), Some("billing_app"));
    assert_eq!(dbs["legacy"].pool_mode, Some(PoolMode::Transaction));
    assert!(!dbs.contains_key("*"));

    // auth_type = hba: the all/all rule sets the default; the rule for reports its own.
    assert_eq!(p.auth_type, AuthType::ScramSha256);
    assert_eq!(dbs["reports"].auth_type, Some(AuthType::Md5));

    // The userlist: SCRAM secrets kept as they are; md5 hashes cannot check SCRAM logins.
    let users = &config.users;
    assert!(
        users["ops"]
            .password
            .as_deref()
            .unwrap()
            .starts_with("SCRAM-SHA-256$4096:")
    );
    assert_eq!(users["etl"].pool_mode, Some(PoolMode::Session));
    assert_eq!(users["webshop"].password.as_deref(), Some("plain-web-pw"));
    assert!(!users.contains_key("oldapp"));
    assert_eq!(p.admin_users, ["ops"]);
    assert_eq!(p.stats_users, ["ops"]);

    for (setting, why) in [
        ("[databases] legacy.auth_user", "plain password"),
        (
            "[databases] legacy.pool_mode = statement",
            "no statement mode",
        ),
        ("[databases] reports.reserve_pool", "reserve pool"),
        ("[databases] billing.connect_query", "no query"),
        ("[databases] *", "fallback"),
        ("[pgbouncer] client_tls_protocols", "TLS 1.2 and 1.3"),
        ("[pgbouncer] reserve_pool_size = 5", "reserve pool"),
        ("common.ini:19: [pgbouncer] so_reuseport", "not a setting"),
        (
            "auth_file: oldapp",
            "md5 hash cannot check a SCRAM-SHA-256 login",
        ),
        ("[pgbouncer] stats_users: monitoring", "not among the users"),
        ("pgbouncer_hba.conf:3: auth_hba_file: local", "Unix-socket"),
        ("pgbouncer_hba.conf:8:", "no reject rule"),
    ] {
        assert!(
            reported(&report, setting, why),
            "{setting} / {why} not in:\n{report}"
        );
    }
    // Per-user caps are carried.
    assert_eq!(config.users["etl"].max_user_connections, Some(4));
    // TLS is carried, modes and files.
    assert!(toml.contains("client_tls_mode = \"require\""), "{toml}");
    assert!(toml.contains("server_tls_mode = \"verify-full\""), "{toml}");
    assert!(!report.contains("client_tls_sslmode"), "{report}");
    // Timeouts sluice has too are carried.
    assert_eq!(
        p.idle_transaction_timeout,
        std::time::Duration::from_secs(120)
    );
    // Settings equal to "off" are not reported (query_timeout = 0), nor is a password.
    assert!(!report.contains("query_timeout = 0"), "{report}");
    assert!(!report.contains("billing-server-pw"), "{report}");
    assert!(
        toml.contains("server_password = \"billing-server-pw\""),
        "{toml}"
    );
}

#[test]
fn the_userlist_argument_wins_and_stdout_is_the_default() {
    let elsewhere = tempfile::tempdir().unwrap();
    let list = elsewhere.path().join("other-userlist.txt");
    std::fs::write(&list, "\"webshop\" \"another-pw\"\n").unwrap();
    let ini = data("production.ini");
    let out = sluice(
        &[
            "import-pgbouncer".as_ref(),
            ini.as_os_str(),
            list.as_os_str(),
        ],
        elsewhere.path(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let files = tempfile::tempdir().unwrap();
    let config = Config::from_toml(&with_real_tls_files(&text(&out.stdout), files.path())).unwrap();
    assert_eq!(config.users.len(), 1);
    assert_eq!(
        config.users["webshop"].password.as_deref(),
        Some("another-pw")
    );
}

#[test]
fn unreadable_input_is_a_usage_error_naming_the_file() {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = sluice(
        &[
            "import-pgbouncer".as_ref(),
            "/nonexistent/pgbouncer.ini".as_ref(),
        ],
        here,
    );
    assert_eq!(out.status.code(), Some(64));
    assert!(text(&out.stderr).contains("/nonexistent/pgbouncer.ini"));

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.ini");
    std::fs::write(&bad, "[pgbouncer]\nlisten_port 6432\n").unwrap();
    let out = sluice(&["import-pgbouncer".as_ref(), bad.as_os_str()], here);
    assert_eq!(out.status.code(), Some(64));
    assert!(
        text(&out.stderr).contains("bad.ini:2:"),
        "{}",
        text(&out.stderr)
    );
}
