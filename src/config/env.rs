//! `SLUICE_<KEY>` environment variables: overrides for every `[pooler]` key.
//!
//! `SLUICE_LISTEN=0.0.0.0:6432` sets `pooler.listen`, `SLUICE_METRICS_LISTEN` sets
//! `pooler.metrics_listen`, and so on: the variable's name is `SLUICE_` and the key in upper case.
//! They are applied after the file is read and before it is checked, so a value is validated
//! exactly as the same value in the file would be, and an error names the variable
//! (`SLUICE_POOL_MODE (pooler.pool_mode): unknown variant ...`). RELOAD reads the file again and
//! applies them again, so an override keeps winning over the file.
//!
//! How a value is read depends on the key ([`Kind`]): numbers as TOML integers, lists as
//! comma-separated names, everything else (addresses, modes, durations such as `30s`) as a string.
//! For a key that may be absent (`metrics_listen`), an empty value means absent (off).
//!
//! Variables that start with `SLUICE_` but name no `[pooler]` key (`SLUICE_LOG`, the test
//! harness's `SLUICE_TEST_*`) are not overrides and are left alone.
//!
//! Pure: the caller passes the variables (`Config::load` passes the process environment).

use super::ConfigError;

/// The prefix of every override variable.
pub const PREFIX: &str = "SLUICE_";

/// How the text of a variable becomes a TOML value for its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A string: addresses, modes, durations (`"30s"`), queries.
    Text,
    /// A string, or absent when the variable is empty.
    OptionalText,
    /// A whole number (anything else is passed on as a string, and rejected as the file would be).
    Integer,
    /// Comma-separated names; empty is the empty list.
    List,
    /// One item per line (access rules, whose fields hold commas); empty is the empty list.
    Lines,
    /// `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`); anything else is passed on as a
    /// string and rejected as the file would reject it. (No key is a boolean yet.)
    Bool,
}

/// Every `[pooler]` key and how its variable is read. A unit test checks that this covers every
/// field of `PoolerConfig`: a new key must be added here (and documented in README
/// "Configuration").
pub const POOLER_KEYS: &[(&str, Kind)] = &[
    ("listen", Kind::Text),
    ("pool_mode", Kind::Text),
    ("default_pool_size", Kind::Integer),
    ("max_client_conn", Kind::Integer),
    ("auth_type", Kind::Text),
    ("query_wait_timeout", Kind::Text),
    ("server_connect_timeout", Kind::Text),
    ("server_login_retry", Kind::Text),
    ("server_idle_timeout", Kind::Text),
    ("server_lifetime", Kind::Text),
    ("server_reset_query", Kind::Text),
    ("max_message_size", Kind::Integer),
    ("max_prepared_statements", Kind::Integer),
    ("cache_unnamed_statements", Kind::Bool),
    ("listen_queue_size", Kind::Integer),
    ("workers", Kind::Integer),
    ("shutdown_timeout", Kind::Text),
    ("metrics_listen", Kind::OptionalText),
    ("metrics_token", Kind::OptionalText),
    ("admin_users", Kind::List),
    ("stats_users", Kind::List),
    ("client_login_timeout", Kind::Text),
    ("client_idle_timeout", Kind::Text),
    ("idle_transaction_timeout", Kind::Text),
    ("query_timeout", Kind::Text),
    ("server_check_delay", Kind::Text),
    ("tcp_keepalive", Kind::Bool),
    ("tcp_keepidle", Kind::Text),
    ("tcp_keepintvl", Kind::Text),
    ("tcp_keepcnt", Kind::Integer),
    ("tcp_user_timeout", Kind::Text),
    ("max_prepared_statement_bytes", Kind::Integer),
    ("max_message_memory", Kind::Integer),
    ("log_format", Kind::Text),
    ("error_log_interval", Kind::Text),
    ("auth_hba_file", Kind::OptionalText),
    ("auth_hba", Kind::Lines),
    ("auth_user", Kind::OptionalText),
    ("auth_query", Kind::Text),
    ("auth_cache_ttl", Kind::Text),
    ("max_db_client_connections", Kind::Integer),
    ("max_user_client_connections", Kind::Integer),
    ("max_db_connections", Kind::Integer),
    ("max_user_connections", Kind::Integer),
    ("client_tls_mode", Kind::Text),
    ("client_tls_cert_file", Kind::OptionalText),
    ("client_tls_key_file", Kind::OptionalText),
    ("client_tls_ca_file", Kind::OptionalText),
    ("server_tls_mode", Kind::Text),
    ("server_tls_ca_file", Kind::OptionalText),
    ("server_tls_cert_file", Kind::OptionalText),
    ("server_tls_key_file", Kind::OptionalText),
    ("query_stats", Kind::Bool),
    ("query_stats_max_entries", Kind::Integer),
    ("log_min_duration", Kind::Text),
    ("log_parameters", Kind::Bool),
];

/// The variable that overrides `pooler.<key>`.
pub fn var_name(key: &str) -> String {
    format!("{PREFIX}{}", key.to_ascii_uppercase())
}

/// One variable that overrides one key.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    /// `SLUICE_LISTEN`.
    pub var: String,
    /// `listen` (a key of `[pooler]`).
    pub key: &'static str,
    /// The value to put in `[pooler]`; `None` removes the key (the default applies).
    pub value: Option<toml::Value>,
}

/// The overrides found among `vars`, in [`POOLER_KEYS`] order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    pub list: Vec<Override>,
}

impl Overrides {
    /// None at all (what `Config::from_toml` uses: tests are not affected by the environment).
    pub fn none() -> Overrides {
        Overrides::default()
    }

    /// Picks the override variables out of `vars` (name, value) pairs.
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Overrides {
        let vars: Vec<(String, String)> = vars
            .into_iter()
            .filter(|(name, _)| name.starts_with(PREFIX))
            .collect();
        let mut list = Vec::new();
        for &(key, kind) in POOLER_KEYS {
            let var = var_name(key);
            // A variable set twice in the list: the last one wins, as in a shell.
            if let Some((_, text)) = vars.iter().rev().find(|(name, _)| *name == var) {
                list.push(Override {
                    var,
                    key,
                    value: read(kind, text),
                });
            }
        }
        Overrides { list }
    }

    /// The process environment's overrides (variables whose value is not UTF-8 are skipped; a
    /// `SLUICE_` one of those cannot be a valid value anyway).
    pub fn from_process() -> Overrides {
        Overrides::from_vars(
            std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Writes the overrides into the parsed file, creating `[pooler]` if the file has none.
    pub fn apply(&self, table: &mut toml::Table) -> Result<(), ConfigError> {
        if self.list.is_empty() {
            return Ok(());
        }
        let pooler = table
            .entry("pooler")
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let Some(pooler) = pooler.as_table_mut() else {
            return Err(ConfigError::Invalid {
                key: "pooler".into(),
                why: "must be a table".into(),
            });
        };
        for o in &self.list {
            match &o.value {
                Some(v) => {
                    pooler.insert(o.key.to_owned(), v.clone());
                }
                None => {
                    pooler.remove(o.key);
                }
            }
        }
        Ok(())
    }

    /// An error about `pooler.<key>` (or inside it) names the variable that set the key.
    pub fn name_variable(&self, e: ConfigError) -> ConfigError {
        let ConfigError::Invalid { key, why } = e else {
            return e;
        };
        let hit = self.list.iter().find(|o| {
            key.strip_prefix("pooler.")
                .and_then(|rest| rest.strip_prefix(o.key))
                .is_some_and(|tail| tail.is_empty() || tail.starts_with(['.', '[']))
        });
        match hit {
            Some(o) => ConfigError::Invalid {
                key: format!("{} ({key})", o.var),
                why,
            },
            None => ConfigError::Invalid { key, why },
        }
    }

    /// `SLUICE_` variables in `vars` that are neither overrides nor known to sluice otherwise
    /// (`SLUICE_LOG`, the test harness's): probably misspelt keys, worth a warning.
    pub fn unrecognised(vars: impl IntoIterator<Item = (String, String)>) -> Vec<String> {
        const OTHER_USES: &[&str] = &["SLUICE_LOG", "SLUICE_PG_BIN"];
        const OTHER_PREFIXES: &[&str] = &["SLUICE_TEST_", "SLUICE_DEMO_"];
        let mut out: Vec<String> = vars
            .into_iter()
            .map(|(name, _)| name)
            .filter(|name| name.starts_with(PREFIX))
            .filter(|name| !POOLER_KEYS.iter().any(|(k, _)| var_name(k) == *name))
            .filter(|name| !OTHER_USES.contains(&name.as_str()))
            .filter(|name| !OTHER_PREFIXES.iter().any(|p| name.starts_with(p)))
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

fn read(kind: Kind, text: &str) -> Option<toml::Value> {
    Some(match kind {
        Kind::Text => toml::Value::String(text.to_owned()),
        Kind::OptionalText if text.trim().is_empty() => return None,
        Kind::OptionalText => toml::Value::String(text.to_owned()),
        Kind::Integer => match text.trim().parse::<i64>() {
            Ok(n) => toml::Value::Integer(n),
            // Passed on as it is: the key's own check then says what was expected.
            Err(_) => toml::Value::String(text.to_owned()),
        },
        Kind::Bool => match text.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => toml::Value::Boolean(true),
            "false" | "0" | "no" | "off" => toml::Value::Boolean(false),
            _ => toml::Value::String(text.to_owned()),
        },
        Kind::Lines => toml::Value::Array(
            text.lines()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.to_owned()))
                .collect(),
        ),
        Kind::List => toml::Value::Array(
            text.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.to_owned()))
                .collect(),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, PoolerConfig};

    fn vars(pairs: &[(&str, &str)]) -> Overrides {
        Overrides::from_vars(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        )
    }

    fn load(text: &str, pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_toml_with(text, &vars(pairs))
    }

    /// The names of `PoolerConfig`'s fields, as serde sees them: a deserializer that only
    /// records the field list it is asked for.
    fn pooler_fields() -> Vec<&'static str> {
        use serde::Deserialize;
        use serde::de::{self, Visitor};

        #[derive(Debug)]
        struct Stop;
        impl std::fmt::Display for Stop {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("stop")
            }
        }
        impl std::error::Error for Stop {}
        impl de::Error for Stop {
            fn custom<T: std::fmt::Display>(_: T) -> Self {
                Stop
            }
        }
        struct Fields<'a>(&'a mut Vec<&'static str>);
        impl<'de> de::Deserializer<'de> for Fields<'_> {
            type Error = Stop;
            fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
                Err(Stop)
            }
            fn deserialize_struct<V: Visitor<'de>>(
                self,
                _: &'static str,
                fields: &'static [&'static str],
                _: V,
            ) -> Result<V::Value, Stop> {
                self.0.extend_from_slice(fields);
                Err(Stop)
            }
            serde::forward_to_deserialize_any! {
                bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
                byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
                identifier ignored_any
            }
        }
        let mut fields = Vec::new();
        let _ = PoolerConfig::deserialize(Fields(&mut fields));
        fields
    }

    #[test]
    fn every_pooler_key_has_a_variable() {
        let fields = pooler_fields();
        assert!(fields.len() >= 18, "{fields:?}");
        for f in &fields {
            assert!(
                POOLER_KEYS.iter().any(|(k, _)| k == f),
                "pooler.{f} has no SLUICE_{} override: add it to POOLER_KEYS in config/env.rs",
                f.to_ascii_uppercase()
            );
        }
        for (k, _) in POOLER_KEYS {
            assert!(
                fields.contains(k),
                "POOLER_KEYS names {k}, not a pooler key"
            );
        }
    }

    #[test]
    fn overrides_win_over_the_file_and_defaults() {
        let file = "[pooler]\nlisten = \"127.0.0.1:7000\"\ndefault_pool_size = 5\n";
        let c = load(
            file,
            &[
                ("SLUICE_LISTEN", "0.0.0.0:6432"),
                ("SLUICE_METRICS_LISTEN", "127.0.0.1:9930"),
                ("SLUICE_POOL_MODE", "session"),
                ("SLUICE_DEFAULT_POOL_SIZE", "7"),
                ("SLUICE_QUERY_WAIT_TIMEOUT", "2m"),
                ("SLUICE_SERVER_RESET_QUERY", "DEALLOCATE ALL"),
                ("SLUICE_WORKERS", " 2 "),
                ("PATH", "/bin"),
                ("SLUICE_LOG", "debug"),
            ],
        )
        .unwrap();
        let p = &c.pooler;
        assert_eq!(p.listen, "0.0.0.0:6432");
        assert_eq!(p.metrics_listen.as_deref(), Some("127.0.0.1:9930"));
        assert_eq!(p.pool_mode, crate::config::PoolMode::Session);
        assert_eq!(p.default_pool_size, 7);
        assert_eq!(p.query_wait_timeout, std::time::Duration::from_secs(120));
        assert_eq!(p.server_reset_query, "DEALLOCATE ALL");
        assert_eq!(p.workers, 2);
        // Untouched keys keep the file's value or the default.
        assert_eq!(p.max_client_conn, 10_000);
    }

    #[test]
    fn lists_empty_values_and_a_file_without_pooler() {
        let file = "[users.ops]\npassword = \"x\"\n[users.mon]\npassword = \"y\"\n";
        let c = load(
            file,
            &[
                ("SLUICE_ADMIN_USERS", "ops, mon"),
                ("SLUICE_STATS_USERS", ""),
                ("SLUICE_METRICS_LISTEN", ""),
                ("SLUICE_SERVER_RESET_QUERY", ""),
            ],
        )
        .unwrap();
        assert_eq!(c.pooler.admin_users, ["ops", "mon"]);
        assert!(c.pooler.stats_users.is_empty());
        assert_eq!(c.pooler.metrics_listen, None);
        assert_eq!(c.pooler.server_reset_query, "");

        // An empty SLUICE_METRICS_LISTEN turns off what the file turned on.
        let c = load(
            "[pooler]\nmetrics_listen = \"127.0.0.1:9930\"\n",
            &[("SLUICE_METRICS_LISTEN", " ")],
        )
        .unwrap();
        assert_eq!(c.pooler.metrics_listen, None);
    }

    #[test]
    fn invalid_values_name_the_variable() {
        for (var, value, expect) in [
            ("SLUICE_LISTEN", "nope", "SLUICE_LISTEN (pooler.listen):"),
            (
                "SLUICE_METRICS_LISTEN",
                "9930",
                "SLUICE_METRICS_LISTEN (pooler.metrics_listen):",
            ),
            (
                "SLUICE_POOL_MODE",
                "statement",
                "SLUICE_POOL_MODE (pooler.pool_mode):",
            ),
            (
                "SLUICE_DEFAULT_POOL_SIZE",
                "many",
                "SLUICE_DEFAULT_POOL_SIZE (pooler.default_pool_size):",
            ),
            (
                "SLUICE_DEFAULT_POOL_SIZE",
                "0",
                "SLUICE_DEFAULT_POOL_SIZE (pooler.default_pool_size): must be at least 1",
            ),
            (
                "SLUICE_MAX_CLIENT_CONN",
                "-5",
                "SLUICE_MAX_CLIENT_CONN (pooler.max_client_conn):",
            ),
            (
                "SLUICE_QUERY_WAIT_TIMEOUT",
                "soon",
                "SLUICE_QUERY_WAIT_TIMEOUT (pooler.query_wait_timeout):",
            ),
            (
                "SLUICE_AUTH_TYPE",
                "password",
                "SLUICE_AUTH_TYPE (pooler.auth_type):",
            ),
            (
                "SLUICE_ADMIN_USERS",
                "ghost",
                "SLUICE_ADMIN_USERS (pooler.admin_users):",
            ),
        ] {
            let e = load("", &[(var, value)]).unwrap_err().to_string();
            assert!(e.starts_with(expect), "{var}={value}: {e}");
        }
        // A mistake in the file itself still names the file's key.
        let e = load(
            "[pooler]\nworkers = \"x\"\n",
            &[("SLUICE_LISTEN", "127.0.0.1:1")],
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("pooler.workers"), "{e}");
    }

    #[test]
    fn values_by_kind() {
        use toml::Value::*;
        assert_eq!(read(Kind::Bool, "Yes"), Some(Boolean(true)));
        assert_eq!(read(Kind::Bool, "off"), Some(Boolean(false)));
        assert_eq!(read(Kind::Bool, "maybe"), Some(String("maybe".into())));
        assert_eq!(read(Kind::Integer, " 12 "), Some(Integer(12)));
        assert_eq!(read(Kind::Integer, "12x"), Some(String("12x".into())));
        assert_eq!(read(Kind::OptionalText, ""), None);
        assert_eq!(read(Kind::List, ""), Some(Array(vec![])));
        assert_eq!(
            read(Kind::Text, ""),
            Some(String(std::string::String::new()))
        );
    }

    #[test]
    fn last_setting_wins_and_strangers_are_reported() {
        let o = vars(&[
            ("SLUICE_LISTEN", "127.0.0.1:1"),
            ("SLUICE_LISTEN", "127.0.0.1:2"),
        ]);
        assert_eq!(o.list.len(), 1);
        assert_eq!(
            o.list[0].value,
            Some(toml::Value::String("127.0.0.1:2".into()))
        );
        let strangers = Overrides::unrecognised(
            [
                ("SLUICE_LISTNE", ""),
                ("SLUICE_LOG", ""),
                ("SLUICE_TEST_PG_USER", ""),
                ("SLUICE_LISTEN", ""),
                ("HOME", ""),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
        );
        assert_eq!(strangers, ["SLUICE_LISTNE"]);
    }
}
