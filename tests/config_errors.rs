//! Config mistakes are reported with the key at fault: by `Config::from_toml`, and by the
//! binary's `--check`.

use std::process::Command;

use sluice::Config;

const GOOD: &str = r#"
[pooler]
listen = "127.0.0.1:6432"
pool_mode = "transaction"
default_pool_size = 20
query_wait_timeout = "30s"

[users.app]
password = "secret"

[databases.app]
host = "127.0.0.1"
port = 5432
pool_size = 5
"#;

/// `GOOD` with `line` added to (or replacing the same key in) `section`.
fn with(section: &str, line: &str) -> String {
    let key = line.split('=').next().unwrap().trim();
    let mut out = String::new();
    let mut current = "";
    let mut added = false;
    for l in GOOD.lines() {
        let t = l.trim();
        if t.starts_with('[') {
            if current == section && !added {
                out.push_str(line);
                out.push('\n');
                added = true;
            }
            current = t.trim_matches(|c| c == '[' || c == ']');
        } else if current == section && t.split('=').next().map(str::trim) == Some(key) {
            continue;
        }
        out.push_str(l);
        out.push('\n');
    }
    if !added {
        if current != section {
            out.push_str(&format!("[{section}]\n"));
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn error_of(text: &str) -> String {
    match Config::from_toml(text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn the_base_config_is_valid() {
    let c = Config::from_toml(GOOD).unwrap();
    assert_eq!(c.databases["app"].pool_size, Some(5));
    // And `with` really replaces keys.
    let c = Config::from_toml(&with("databases.app", "pool_size = 7")).unwrap();
    assert_eq!(c.databases["app"].pool_size, Some(7));
    let c = Config::from_toml(&with("pooler", "default_pool_size = 9")).unwrap();
    assert_eq!(c.pooler.default_pool_size, 9);
    let c = Config::from_toml(&with("databases.app", "cache_unnamed_statements = true")).unwrap();
    assert_eq!(c.databases["app"].cache_unnamed_statements, Some(true));
    assert!(!c.pooler.cache_unnamed_statements, "off by default");
}

#[test]
fn unknown_keys_are_named() {
    for (section, line, key) in [
        ("pooler", "pool_szie = 3", "pool_szie"),
        // A PgBouncer key sluice does not have (query_timeout was the example until it became one).
        ("pooler", "server_check_query = \"\"", "server_check_query"),
        ("databases.app", "hots = \"db\"", "hots"),
        (
            "databases.app",
            "cache_unnamed_statement = true",
            "cache_unnamed_statement",
        ),
        (
            "pooler",
            "cache_unnamed_statements = \"yes\"",
            "cache_unnamed_statements",
        ),
        ("users.app", "passwrd = \"x\"", "passwrd"),
        ("poolr", "listen = \"127.0.0.1:1\"", "poolr"),
    ] {
        let e = error_of(&with(section, line));
        assert!(e.contains(key), "[{section}] {line}: {e}");
    }
}

#[test]
fn invalid_values_name_section_and_key() {
    let mut missed = Vec::new();
    for (section, line, key) in [
        ("databases.app", "pool_size = 0", "databases.app.pool_size"),
        ("databases.app", "port = 0", "databases.app.port"),
        ("databases.app", "host = \"\"", "databases.app.host"),
        (
            "databases.app",
            "server_password = \"x\"",
            "databases.app.server_password",
        ),
        (
            "pooler",
            "default_pool_size = 0",
            "pooler.default_pool_size",
        ),
        ("pooler", "max_client_conn = 0", "pooler.max_client_conn"),
        (
            "pooler",
            "listen_queue_size = 0",
            "pooler.listen_queue_size",
        ),
        ("pooler", "listen = \"nowhere\"", "pooler.listen"),
        ("pooler", "max_message_size = 10", "pooler.max_message_size"),
        (
            "pooler",
            "query_wait_timeout = \"0s\"",
            "pooler.query_wait_timeout",
        ),
        (
            "users.app",
            "password = \"SCRAM-SHA-256$nonsense\"",
            "users.app.password",
        ),
        // An md5 hash cannot check a SCRAM login (the default auth_type).
        (
            "users.app",
            "password = \"md5e8a48653851e28c69d0506508fb27fc5\"",
            "users.app.password",
        ),
        // Values of the wrong shape are caught while parsing; they must still name their key.
        (
            "pooler",
            "query_wait_timeout = \"soon\"",
            "pooler.query_wait_timeout",
        ),
        (
            "pooler",
            "server_connect_timeout = 5",
            "pooler.server_connect_timeout",
        ),
        (
            "pooler",
            "default_pool_size = \"ten\"",
            "pooler.default_pool_size",
        ),
        (
            "pooler",
            "default_pool_size = -1",
            "pooler.default_pool_size",
        ),
        ("pooler", "pool_mode = \"statement\"", "pooler.pool_mode"),
        ("pooler", "auth_type = \"password\"", "pooler.auth_type"),
        ("databases.app", "port = 70000", "databases.app.port"),
        (
            "databases.app",
            "pool_size = \"5\"",
            "databases.app.pool_size",
        ),
        ("users.app", "auth_type = \"md4\"", "users.app.auth_type"),
    ] {
        let e = error_of(&with(section, line));
        if !e.contains(key) {
            missed.push(format!(
                "[{section}] {line}: the error does not name {key}: {e}"
            ));
        }
    }
    assert!(missed.is_empty(), "{}", missed.join("\n\n"));
}

#[test]
fn a_missing_password_names_the_user() {
    let e = error_of(&with("users.bob", "pool_mode = \"session\""));
    assert!(e.contains("users.bob.password"), "{e}");
}

fn sluice_check(config_text: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.toml");
    std::fs::write(&path, config_text).unwrap();
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("--check")
        .arg("--config")
        .arg(&path)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run the sluice binary")
}

#[test]
fn check_flag_rejects_a_bad_config_naming_the_key() {
    for (text, key) in [
        (with("pooler", "pool_szie = 3"), "pool_szie"),
        (
            with("databases.app", "pool_size = 0"),
            "databases.app.pool_size",
        ),
    ] {
        let out = sluice_check(&text);
        let stderr = String::from_utf8_lossy(&out.stderr);
        eprintln!("sluice --check: {} / {stderr}", out.status);
        assert!(
            !out.status.success(),
            "sluice --check accepted a bad config"
        );
        assert!(stderr.contains(key), "stderr does not name {key}: {stderr}");
    }
}

#[test]
fn check_flag_accepts_a_good_config() {
    let out = sluice_check(GOOD);
    assert!(
        out.status.success(),
        "{}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn check_flag_reports_a_missing_file() {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["--check", "--config", "/nonexistent/sluice.toml"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run the sluice binary");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/sluice.toml"));
}
