//! The checks a parsed config must pass before sluice runs with it: addresses, sizes, times,
//! TCP settings, TLS files named in pairs, authentication and its users, replicas. Every error
//! names the dotted key it is about ([`invalid`]).

use super::*;

impl Config {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let p = &self.pooler;
        p.listen.parse::<SocketAddr>().map_err(|e| {
            invalid(
                "pooler.listen",
                format!("{e} (expected host:port, e.g. \"127.0.0.1:6432\")"),
            )
        })?;
        if p.default_pool_size == 0 {
            return Err(invalid("pooler.default_pool_size", "must be at least 1"));
        }
        if p.listen_queue_size == 0 {
            return Err(invalid("pooler.listen_queue_size", "must be at least 1"));
        }
        if p.max_client_conn == 0 {
            return Err(invalid("pooler.max_client_conn", "must be at least 1"));
        }
        if p.max_message_size < 1024 {
            return Err(invalid(
                "pooler.max_message_size",
                "must be at least 1024 bytes",
            ));
        }
        if p.max_message_memory < p.max_message_size {
            return Err(invalid(
                "pooler.max_message_memory",
                format!(
                    "must be at least max_message_size ({} bytes), or a message of that size could never be held",
                    p.max_message_size
                ),
            ));
        }
        if p.max_prepared_statement_bytes < 1024 {
            return Err(invalid(
                "pooler.max_prepared_statement_bytes",
                "must be at least 1024 bytes",
            ));
        }
        if p.query_stats_max_entries == 0 {
            return Err(invalid(
                "pooler.query_stats_max_entries",
                "must be at least 1 (set query_stats = false to turn the statistics off)",
            ));
        }
        if p.error_log_interval.is_zero() {
            return Err(invalid(
                "pooler.error_log_interval",
                "must be longer than 0",
            ));
        }
        if p.query_wait_timeout.is_zero() {
            return Err(invalid(
                "pooler.query_wait_timeout",
                "must be longer than 0",
            ));
        }
        if p.server_connect_timeout.is_zero() {
            return Err(invalid(
                "pooler.server_connect_timeout",
                "must be longer than 0",
            ));
        }
        validate_tcp(p)?;
        if let Some(addr) = &p.metrics_listen {
            addr.parse::<SocketAddr>().map_err(|e| {
                invalid(
                    "pooler.metrics_listen",
                    format!("{e} (expected host:port, e.g. \"127.0.0.1:9930\")"),
                )
            })?;
        }
        for (key, list) in [
            ("admin_users", &p.admin_users),
            ("stats_users", &p.stats_users),
        ] {
            if let Some(u) = list.iter().find(|u| !self.users.contains_key(*u)) {
                return Err(invalid(
                    format!("pooler.{key}"),
                    format!("user \"{u}\" is not in [users]; console users log in like any other"),
                ));
            }
        }
        self.validate_auth()?;
        for (name, user) in &self.users {
            let key = format!("users.{name}");
            let auth = user.auth_type.unwrap_or(p.auth_type);
            let secret = match &user.password {
                Some(pw) => Some(
                    PasswordSecret::parse(pw)
                        .map_err(|e| invalid(format!("{key}.password"), e.to_string()))?,
                ),
                None => None,
            };
            match (auth, &secret) {
                (AuthType::Trust, _) => {}
                (_, None) => {
                    return Err(invalid(
                        format!("{key}.password"),
                        format!(
                            "missing; auth_type {} needs a password (or set auth_type = \"trust\")",
                            auth_name(auth)
                        ),
                    ));
                }
                (AuthType::ScramSha256, Some(PasswordSecret::Md5(_))) => {
                    return Err(invalid(
                        format!("{key}.password"),
                        "an md5 hash cannot check a SCRAM-SHA-256 login; give the plain password or a SCRAM secret, or set auth_type = \"md5\"",
                    ));
                }
                (AuthType::Md5, Some(PasswordSecret::Scram(_))) => {
                    return Err(invalid(
                        format!("{key}.password"),
                        "a SCRAM secret cannot check an md5 login; give the plain password or set auth_type = \"scram-sha-256\"",
                    ));
                }
                _ => {}
            }
        }
        for (name, db) in &self.databases {
            let key = format!("databases.{name}");
            if name == "sluice" || name == "pgbouncer" {
                return Err(invalid(key, "this name is reserved for the admin console"));
            }
            if db.host.is_empty() {
                return Err(invalid(format!("{key}.host"), "must not be empty"));
            }
            if db.port == 0 {
                return Err(invalid(
                    format!("{key}.port"),
                    "must be between 1 and 65535",
                ));
            }
            if db.pool_size == Some(0) {
                return Err(invalid(format!("{key}.pool_size"), "must be at least 1"));
            }
            if db.server_password.is_some() && db.server_user.is_none() {
                return Err(invalid(
                    format!("{key}.server_password"),
                    "given without server_user",
                ));
            }
            if !(0.0..=1.0).contains(&db.primary_reads) {
                return Err(invalid(
                    format!("{key}.primary_reads"),
                    "must be between 0.0 and 1.0 (the share of reads kept on the primary)",
                ));
            }
            if db.replica_check_interval.is_zero() {
                return Err(invalid(
                    format!("{key}.replica_check_interval"),
                    "must be longer than 0",
                ));
            }
            if let Some(f) = db.writing_functions.iter().find(|f| f.trim().is_empty()) {
                return Err(invalid(
                    format!("{key}.writing_functions"),
                    format!("{f:?} is not a function name"),
                ));
            }
            for (i, r) in db.replicas.iter().enumerate() {
                let rkey = format!("{key}.replicas[{i}]");
                if r.host.is_empty() {
                    return Err(invalid(format!("{rkey}.host"), "must not be empty"));
                }
                if r.port == 0 {
                    return Err(invalid(
                        format!("{rkey}.port"),
                        "must be between 1 and 65535",
                    ));
                }
                if r.pool_size == Some(0) {
                    return Err(invalid(format!("{rkey}.pool_size"), "must be at least 1"));
                }
                if r.host == db.host && r.port == db.port {
                    return Err(invalid(
                        rkey,
                        "is the primary's own host and port; list only replicas here",
                    ));
                }
            }
        }
        Ok(())
    }

    /// auth_user / auth_query (pooler and per database) and the inline access rules.
    fn validate_auth(&self) -> Result<(), ConfigError> {
        let p = &self.pooler;
        if p.auth_hba_file.is_some() && !p.auth_hba.is_empty() {
            return Err(invalid(
                "pooler.auth_hba",
                "give the rules inline or in auth_hba_file, not both",
            ));
        }
        if !p.auth_hba.is_empty() {
            crate::hba::Rules::from_text("pooler.auth_hba", &p.auth_hba.join("\n"))
                .map_err(|e| invalid("pooler.auth_hba", e))?;
        }
        let mut auth_users = vec![("pooler.auth_user".to_owned(), p.auth_user.as_ref())];
        for (name, db) in &self.databases {
            auth_users.push((format!("databases.{name}.auth_user"), db.auth_user.as_ref()));
            if db
                .auth_query
                .as_deref()
                .is_some_and(|q| q.trim().is_empty())
            {
                return Err(invalid(
                    format!("databases.{name}.auth_query"),
                    "must not be empty",
                ));
            }
        }
        if p.auth_query.trim().is_empty() {
            return Err(invalid("pooler.auth_query", "must not be empty"));
        }
        for (key, user) in auth_users {
            let Some(user) = user else { continue };
            let Some(u) = self.users.get(user) else {
                return Err(invalid(
                    key,
                    format!("user \"{user}\" is not in [users]; it needs its password there"),
                ));
            };
            if let Some(pw) = &u.password
                && !matches!(PasswordSecret::parse(pw), Ok(PasswordSecret::Plain(_)))
            {
                return Err(invalid(
                    format!("users.{user}.password"),
                    "auth_user logs in to PostgreSQL itself and needs the plain-text password",
                ));
            }
        }
        Ok(())
    }
}

/// The TCP settings towards servers: what Linux accepts (whole seconds up to 32767 for the
/// keepalive timings, at most 127 probes), and no keepalive timing with keepalive off.
fn validate_tcp(p: &PoolerConfig) -> Result<(), ConfigError> {
    for (key, d) in [
        ("tcp_keepidle", p.tcp_keepidle),
        ("tcp_keepintvl", p.tcp_keepintvl),
    ] {
        if d.subsec_nanos() != 0 || d.as_secs() > 32_767 {
            return Err(invalid(
                format!("pooler.{key}"),
                "must be whole seconds, at most 32767s (\"0s\" = the OS's default)",
            ));
        }
    }
    if p.tcp_keepcnt > 127 {
        return Err(invalid(
            "pooler.tcp_keepcnt",
            "must be at most 127 (0 = the OS's default)",
        ));
    }
    if p.tcp_user_timeout.as_millis() > u128::from(i32::MAX as u32) {
        return Err(invalid(
            "pooler.tcp_user_timeout",
            "must be at most 2147483647ms",
        ));
    }
    if !p.tcp_keepalive {
        for (key, set) in [
            ("tcp_keepidle", !p.tcp_keepidle.is_zero()),
            ("tcp_keepintvl", !p.tcp_keepintvl.is_zero()),
            ("tcp_keepcnt", p.tcp_keepcnt != 0),
        ] {
            if set {
                return Err(invalid(
                    format!("pooler.{key}"),
                    "has no effect with tcp_keepalive = false",
                ));
            }
        }
    }
    Ok(())
}
