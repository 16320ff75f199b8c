//! `sluice --print-config` and the `SLUICE_<KEY>` environment overrides, through the binary.

use std::process::{Command, Output, Stdio};

use sluice::Config;

const SCRAM: &str = "SCRAM-SHA-256$4096:c2x1aWNlLXRlc3Qtc2FsdA==$\
    C445j8RKbsoDbUyZOoFInLv7VPwHM5xR80vjC6SfY2I=:5Ow0NoWCttHBRY+0ZXPKvkmzR1v8zI1Nb8stnFaj1x0=";

fn config_text() -> String {
    format!(
        r#"
[pooler]
listen = "127.0.0.1:7432"
admin_users = ["ops"]

[users.app]
password = "app-plain-secret"

[users.ops]
password = "{SCRAM}"

[users.old]
password = "md5adbd8a16ce07f4c5385f43ff39bc54af"
auth_type = "md5"

[databases.app]
port = 5433
server_user = "app"
server_password = "server-side-secret"
"#
    )
}

/// Runs sluice with `args` on a file holding `text`, with exactly the `SLUICE_` variables in
/// `env`.
fn sluice(text: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.toml");
    std::fs::write(&path, text).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("SLUICE_") {
            cmd.env_remove(k);
        }
    }
    cmd.args(args)
        .arg("--config")
        .arg(&path)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run the sluice binary")
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn print_config_masks_every_secret_and_fills_defaults() {
    for args in [&["--print-config"][..], &["--check", "--print-config"][..]] {
        let o = sluice(&config_text(), args, &[]);
        assert!(o.status.success(), "{args:?}: {}", err(&o));
        let printed = out(&o);
        for secret in [
            "app-plain-secret",
            "server-side-secret",
            "adbd8a16ce07f4c5385f43ff39bc54af",
            "c2x1aWNlLXRlc3Qtc2FsdA",
            "C445j8RKbsoDbUyZOoFInLv7VPwHM5xR80vjC6SfY2I",
            "5Ow0NoWCttHBRY+0ZXPKvkmzR1v8zI1Nb8stnFaj1x0",
        ] {
            assert!(!printed.contains(secret), "{secret} printed:\n{printed}");
            assert!(!err(&o).contains(secret), "{secret} on stderr");
        }
        assert!(
            printed.contains("(masked: SCRAM-SHA-256 secret)"),
            "{printed}"
        );
        // Defaults are filled in, and the text reads back as a config.
        assert!(printed.contains("default_pool_size = 20"), "{printed}");
        assert!(
            printed.contains("server_idle_timeout = \"10m\""),
            "{printed}"
        );
        assert!(printed.contains("dbname = \"app\""), "{printed}");
        let back = Config::from_toml(&printed).unwrap_or_else(|e| panic!("{e}\n{printed}"));
        assert_eq!(back.pooler.listen, "127.0.0.1:7432");
        assert_eq!(back.databases["app"].port, 5433);
    }
}

#[test]
fn environment_overrides_apply_and_are_shown() {
    let o = sluice(
        &config_text(),
        &["--print-config"],
        &[
            ("SLUICE_LISTEN", "0.0.0.0:6432"),
            ("SLUICE_METRICS_LISTEN", "127.0.0.1:9930"),
            ("SLUICE_POOL_MODE", "session"),
            ("SLUICE_DEFAULT_POOL_SIZE", "7"),
            ("SLUICE_STATS_USERS", "app,ops"),
            ("SLUICE_LISTNE", "typo"),
        ],
    );
    assert!(o.status.success(), "{}", err(&o));
    let printed = out(&o);
    let back = Config::from_toml(&printed).unwrap();
    assert_eq!(back.pooler.listen, "0.0.0.0:6432");
    assert_eq!(
        back.pooler.metrics_listen.as_deref(),
        Some("127.0.0.1:9930")
    );
    assert_eq!(back.pooler.pool_mode, sluice::config::PoolMode::Session);
    assert_eq!(back.pooler.default_pool_size, 7);
    assert_eq!(back.pooler.stats_users, ["app", "ops"]);
    assert!(
        printed.contains("# pooler.listen is set by SLUICE_LISTEN"),
        "{printed}"
    );
    assert!(
        printed.contains("SLUICE_LISTNE"),
        "a misspelt variable is pointed out:\n{printed}"
    );
    // --check alone applies them too.
    let o = sluice(&config_text(), &["--check"], &[("SLUICE_WORKERS", "2")]);
    assert!(o.status.success(), "{}", err(&o));
}

#[test]
fn an_invalid_override_names_the_variable() {
    for (var, value) in [
        ("SLUICE_LISTEN", "localhost"),
        ("SLUICE_POOL_MODE", "statement"),
        ("SLUICE_MAX_CLIENT_CONN", "0"),
        ("SLUICE_QUERY_WAIT_TIMEOUT", "forever"),
        ("SLUICE_ADMIN_USERS", "ops,nobody"),
    ] {
        let o = sluice(&config_text(), &["--check"], &[(var, value)]);
        assert_eq!(o.status.code(), Some(64), "{var}={value} accepted");
        assert!(err(&o).contains(var), "{var}: {}", err(&o));
    }
}
