//! `sluice --print-config`: the configuration sluice would run with, as TOML.
//!
//! What is printed is the checked [`Config`]: the file, then the `SLUICE_<KEY>` overrides, with
//! every default written out and what a database inherits filled in (its `dbname`, `pool_size`,
//! `pool_mode`, `auth_type`, each replica's `pool_size`). Durations are written as the file
//! would write them (`"30s"`, `"10m"`). Secrets are masked: the value of every key whose name
//! contains `password`, `secret` or `token`, and any string anywhere that looks like a stored secret
//! (`md5<32 hex>`, `SCRAM-SHA-256$...`), become a description of what was there
//! (`"(masked: SCRAM-SHA-256 secret)"`), never the text itself.
//!
//! Pure: [`render`] takes the config and the header lines and returns the text.

use sluice::Config;
use sluice::config::env::POOLER_KEYS;
use sluice::config::{DatabaseConfig, PoolerConfig};

/// Prints `config` (loaded from `path`) with a header saying where it came from.
pub fn print(config: &Config, path: &std::path::Path) -> std::process::ExitCode {
    let overrides = sluice::config::env::Overrides::from_process();
    let mut header = vec![
        format!("The effective sluice configuration: {}", path.display()),
        "then SLUICE_<KEY> environment overrides, with defaults filled in; secrets masked."
            .to_owned(),
    ];
    for o in &overrides.list {
        header.push(format!("pooler.{} is set by {}", o.key, o.var));
    }
    let env = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
    let strangers = sluice::config::env::Overrides::unrecognised(env);
    if !strangers.is_empty() {
        header.push(format!(
            "ignored, no such [pooler] key: {}",
            strangers.join(", ")
        ));
    }
    match render(config, &header) {
        Ok(text) => {
            print!("{text}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sluice: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The TOML text for `config`, after `header` lines (written as comments).
pub fn render(config: &Config, header: &[String]) -> Result<String, String> {
    let mut effective = config.clone();
    for (name, db) in effective.databases.iter_mut() {
        fill_inherited(name, db, &config.pooler);
    }
    let mut value =
        toml::Value::try_from(&effective).map_err(|e| format!("cannot print the config: {e}"))?;
    durations_as_text(&mut value);
    mask(&mut value, false);

    let mut out = String::new();
    for line in header {
        out.push_str("# ");
        out.push_str(line);
        out.push('\n');
    }
    if let Some(pooler) = value.get("pooler").and_then(|p| p.as_table()) {
        for (key, _) in POOLER_KEYS {
            if !pooler.contains_key(*key) {
                out.push_str(&format!("# pooler.{key} is not set\n"));
            }
        }
    }
    out.push('\n');
    out.push_str(
        &toml::to_string_pretty(&value).map_err(|e| format!("cannot print the config: {e}"))?,
    );
    Ok(out)
}

/// What a database takes from `[pooler]` when it does not say, written out.
fn fill_inherited(name: &str, db: &mut DatabaseConfig, pooler: &PoolerConfig) {
    db.dbname.get_or_insert_with(|| name.to_owned());
    let size = *db.pool_size.get_or_insert(pooler.default_pool_size);
    db.pool_mode.get_or_insert(pooler.pool_mode);
    db.auth_type.get_or_insert(pooler.auth_type);
    for r in &mut db.replicas {
        r.pool_size.get_or_insert(size);
    }
}

/// serde writes a `Duration` as a table `{ secs, nanos }`; the config file writes `"30s"`.
/// (Config has no other table with exactly these two integer keys.)
fn durations_as_text(v: &mut toml::Value) {
    match v {
        toml::Value::Table(t) => {
            let as_duration = t.len() == 2
                && matches!(t.get("secs"), Some(toml::Value::Integer(s)) if *s >= 0)
                && matches!(t.get("nanos"), Some(toml::Value::Integer(n)) if (0..1_000_000_000).contains(n));
            if as_duration {
                let secs = t["secs"].as_integer().unwrap_or(0) as u64;
                let nanos = t["nanos"].as_integer().unwrap_or(0) as u32;
                let d = std::time::Duration::new(secs, nanos);
                *v = toml::Value::String(humantime::format_duration(d).to_string());
            } else {
                t.iter_mut().for_each(|(_, v)| durations_as_text(v));
            }
        }
        toml::Value::Array(a) => a.iter_mut().for_each(durations_as_text),
        _ => {}
    }
}

/// Replaces secrets (see the module docs). `secret_key`: the value belongs to a key whose name
/// says it holds a secret.
fn mask(v: &mut toml::Value, secret_key: bool) {
    match v {
        toml::Value::Table(t) => {
            for (k, item) in t.iter_mut() {
                let k = k.to_ascii_lowercase();
                mask(
                    item,
                    k.contains("password") || k.contains("secret") || k.contains("token"),
                );
            }
        }
        toml::Value::Array(a) => a.iter_mut().for_each(|item| mask(item, secret_key)),
        toml::Value::String(s) => {
            if let Some(kind) = secret_kind(s).or(secret_key.then_some("plain text")) {
                *s = format!("(masked: {kind})");
            }
        }
        _ => {}
    }
}

/// What kind of stored secret `s` looks like, if it looks like one.
fn secret_kind(s: &str) -> Option<&'static str> {
    if s.starts_with("SCRAM-SHA-256$") {
        return Some("SCRAM-SHA-256 secret");
    }
    let hex = s.strip_prefix("md5")?;
    (hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some("md5 hash")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRAM: &str = "SCRAM-SHA-256$4096:c2x1aWNlLXRlc3Qtc2FsdA==$\
    C445j8RKbsoDbUyZOoFInLv7VPwHM5xR80vjC6SfY2I=:\
    5Ow0NoWCttHBRY+0ZXPKvkmzR1v8zI1Nb8stnFaj1x0=";

    fn config() -> Config {
        Config::from_toml(&format!(
            r#"
            [pooler]
            listen = "127.0.0.1:7432"
            query_wait_timeout = "90s"
            admin_users = ["ops"]
            [users.app]
            password = "plain-hunter2"
            [users.ops]
            password = "{SCRAM}"
            [users.old]
            password = "md5a3556571e93b0d20722ba62be61e8c2d"
            auth_type = "md5"
            [databases.app]
            port = 5433
            server_user = "app"
            server_password = "server-hunter3"
            [[databases.app.replicas]]
            port = 5434
            [databases.reports]
            dbname = "warehouse"
            pool_size = 3
            pool_mode = "session"
            "#
        ))
        .unwrap()
    }

    #[test]
    fn secrets_never_appear_and_their_kind_does() {
        let text = render(&config(), &[]).unwrap();
        for secret in [
            "plain-hunter2",
            "server-hunter3",
            "a3556571e93b0d20722ba62be61e8c2d",
            "c2x1aWNlLXRlc3Qtc2FsdA",
            "C445j8RKbsoDbUyZ",
            "5Ow0NoWCttHBRY",
        ] {
            assert!(!text.contains(secret), "{secret} printed:\n{text}");
        }
        assert!(text.contains("(masked: SCRAM-SHA-256 secret)"), "{text}");
        assert!(text.contains("(masked: md5 hash)"), "{text}");
        assert!(text.contains("(masked: plain text)"), "{text}");
    }

    #[test]
    fn defaults_and_inherited_values_are_filled_in_and_the_text_reads_back() {
        let text = render(&config(), &["from a test".into()]).unwrap();
        assert!(text.starts_with("# from a test\n"), "{text}");
        assert!(
            text.contains("# pooler.metrics_listen is not set"),
            "{text}"
        );
        let back = Config::from_toml(&text).unwrap_or_else(|e| panic!("{e}:\n{text}"));
        let original = config();
        let (p, q) = (&back.pooler, &original.pooler);
        assert_eq!(p.listen, q.listen);
        assert_eq!(p.query_wait_timeout, q.query_wait_timeout);
        assert_eq!(p.server_idle_timeout, q.server_idle_timeout);
        assert_eq!(p.shutdown_timeout, q.shutdown_timeout);
        assert_eq!(p.max_message_size, q.max_message_size);
        assert!(text.contains("query_wait_timeout = \"1m 30s\""), "{text}");
        assert!(text.contains("default_pool_size = 20"), "{text}");
        let app = &back.databases["app"];
        assert_eq!(app.dbname.as_deref(), Some("app"));
        assert_eq!(app.pool_size, Some(20));
        assert_eq!(app.replicas[0].pool_size, Some(20));
        assert_eq!(app.max_replica_lag, std::time::Duration::from_secs(10));
        let reports = &back.databases["reports"];
        assert_eq!(reports.dbname.as_deref(), Some("warehouse"));
        assert_eq!(reports.pool_size, Some(3));
        assert_eq!(reports.pool_mode, Some(sluice::config::PoolMode::Session));
        // The pooler section comes first, in the documented order.
        let listen = text.find("listen =").unwrap();
        let mode = text.find("pool_mode =").unwrap();
        let users = text.find("[users").unwrap();
        assert!(listen < mode && mode < users, "{text}");
    }

    #[test]
    fn secret_kinds() {
        assert_eq!(secret_kind(SCRAM), Some("SCRAM-SHA-256 secret"));
        assert_eq!(
            secret_kind("md5a3556571e93b0d20722ba62be61e8c2d"),
            Some("md5 hash")
        );
        assert_eq!(secret_kind("md5 is not a hash"), None);
        assert_eq!(secret_kind("DISCARD ALL"), None);
    }
}
