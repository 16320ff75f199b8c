//! From PgBouncer's settings to sluice's: the mapping itself, pure.
//!
//! [`convert`] takes the parsed pgbouncer.ini, the auth file's users and the HBA rules and
//! returns sluice.toml's text and the [`Note`]s: every setting that was left out (and why, with
//! the nearest sluice setting where there is one) or carried over with a change of meaning.
//!
//! Where PgBouncer's default differs from sluice's and the file does not set the key, the output
//! spells out PgBouncer's (`pool_mode = "session"`, `max_client_conn = 100`,
//! `query_wait_timeout = "2m"`, ...), so the imported pooler behaves as the old one did. A
//! setting whose value means "off" in PgBouncer and that sluice lacks (`reserve_pool_size = 0`,
//! `client_tls_sslmode = disable`) is equivalent to its absence and not reported.

use std::time::Duration;

use super::hba::{self, Rule};
use super::ini::{self, Entry, Ini};
use super::userlist::UserEntry;
use super::{Note, toml_out::Doc};

/// What the mapping reads.
pub struct Inputs<'a> {
    pub ini: &'a Ini,
    /// The auth file's users; `None` when there is no auth file to read.
    pub users: Option<&'a [UserEntry]>,
    /// The HBA file's rules, when `auth_type = hba` and the file could be read.
    pub hba: Option<&'a [Rule]>,
    /// The pgbouncer.ini path, for the header.
    pub source: &'a str,
    /// What the caller found reading the files (an auth file it could not read).
    pub file_notes: &'a [Note],
}

pub struct Output {
    pub toml: String,
    pub notes: Vec<Note>,
}

/// `[pgbouncer]` keys [`convert`] carries over (or reads, for the files).
const CARRIED: &[&str] = &[
    "listen_addr",
    "listen_port",
    "pool_mode",
    "max_client_conn",
    "default_pool_size",
    "auth_type",
    "auth_file",
    "auth_hba_file",
    "admin_users",
    "stats_users",
    "query_wait_timeout",
    "server_connect_timeout",
    "server_login_retry",
    "server_idle_timeout",
    "server_lifetime",
    "server_reset_query",
    "query_timeout",
    "client_idle_timeout",
    "idle_transaction_timeout",
    "client_login_timeout",
    "server_check_delay",
    "tcp_keepalive",
    "tcp_keepcnt",
    "tcp_keepidle",
    "tcp_keepintvl",
    "tcp_user_timeout",
    "client_tls_sslmode",
    "client_tls_key_file",
    "client_tls_cert_file",
    "client_tls_ca_file",
    "server_tls_sslmode",
    "server_tls_ca_file",
    "server_tls_key_file",
    "server_tls_cert_file",
    "auth_user",
    "auth_query",
    "max_db_connections",
    "max_user_connections",
    "max_db_client_connections",
    "max_user_client_connections",
    "max_packet_size",
    "max_prepared_statements",
];

/// What "0 = never" becomes where sluice needs a duration.
const NEVER: Duration = Duration::from_secs(365 * 24 * 3600);

fn duration_text(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// Masks a value for a note when its key is a secret.
fn shown(key: &str, value: &str) -> String {
    if key.contains("password") {
        "(masked)".into()
    } else {
        value.to_owned()
    }
}

struct Conv<'a> {
    inp: &'a Inputs<'a>,
    notes: Vec<Note>,
    doc: Doc,
}

impl Conv<'_> {
    fn get(&self, key: &str) -> Option<&Entry> {
        self.inp.ini.get("pgbouncer", key)
    }

    fn dropped(&mut self, e: &Entry, why: impl Into<String>, nearest: Option<&str>) {
        let setting = format!("[{}] {}", e.section, e.key);
        self.notes.push(Note::dropped(
            &setting,
            &shown(&e.key, &e.value),
            Some(e.origin.to_string()),
            why.into(),
            nearest,
        ));
    }

    fn changed(&mut self, e: &Entry, why: impl Into<String>, nearest: Option<&str>) {
        let setting = format!("[{}] {}", e.section, e.key);
        self.notes.push(Note::changed(
            &setting,
            &shown(&e.key, &e.value),
            Some(e.origin.to_string()),
            why.into(),
            nearest,
        ));
    }
}

/// A pool mode, `statement` becoming `transaction` (reported through `note`).
fn pool_mode(value: &str) -> Result<(&'static str, bool), String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "session" => Ok(("session", false)),
        "transaction" => Ok(("transaction", false)),
        "statement" => Ok(("transaction", true)),
        other => Err(format!("unknown pool mode {other:?}")),
    }
}

const STATEMENT_MODE: &str = "sluice has no statement mode; transaction mode is the nearest (multi-statement transactions, which statement mode refused, then work)";

pub fn convert(inp: &Inputs<'_>) -> Output {
    let mut c = Conv {
        inp,
        notes: inp.file_notes.to_vec(),
        doc: Doc::default(),
    };
    c.doc.comment(&format!(
        "sluice configuration imported from {} by `sluice import-pgbouncer`.",
        inp.source
    ));
    c.doc
        .comment("What could not be carried over is listed at the end of this file.");
    c.doc.comment("Check it with: sluice --check --config FILE");

    c.doc.table("pooler");
    listen(&mut c);
    simple_pooler_keys(&mut c);
    let auth = auth(&mut c);
    let users = users(&mut c, &auth);
    console_users(&mut c, &users);
    auth_lookup(&mut c, &users);
    databases::databases(&mut c, &users, &auth);
    left_out::left_out(&mut c);
    for e in inp.ini.entries.iter() {
        if !matches!(e.section.as_str(), "pgbouncer" | "databases" | "users") {
            let e = e.clone();
            c.dropped(
                &e,
                if e.section == "peers" {
                    "sluice has no peering of instances for cancel requests"
                } else {
                    "not a section PgBouncer reads"
                },
                None,
            );
        }
    }

    let mut toml = c.doc.render();
    if !c.notes.is_empty() {
        toml.push_str("\n# Not carried over, or carried over with a change:\n");
        for n in &c.notes {
            for (i, line) in n.to_string().lines().enumerate() {
                toml.push_str(if i == 0 { "# - " } else { "#   " });
                toml.push_str(line);
                toml.push('\n');
            }
        }
    }
    Output {
        toml,
        notes: c.notes,
    }
}

/// `listen_addr` + `listen_port` → `listen`.
fn listen(c: &mut Conv<'_>) {
    let port = match c.get("listen_port").cloned() {
        Some(e) => match e.value.trim().parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => {
                c.dropped(
                    &e,
                    "not a TCP port; PgBouncer's default 6432 is used",
                    Some("listen"),
                );
                6432
            }
        },
        None => 6432,
    };
    let host = match c.get("listen_addr").cloned() {
        None => {
            c.notes.push(Note::changed(
                "[pgbouncer] listen_addr",
                "",
                None,
                "not set: PgBouncer listened on its Unix socket only; sluice has no Unix socket and listens on 127.0.0.1".into(),
                Some("listen"),
            ));
            "127.0.0.1".to_owned()
        }
        Some(e) => {
            let addrs = ini::list(&e.value);
            if addrs.len() > 1 {
                c.changed(
                    &e,
                    format!("sluice listens on one address; {} is kept", addrs[0]),
                    Some("listen"),
                );
            }
            match addrs.first().map(String::as_str) {
                None => {
                    c.changed(&e, "empty: PgBouncer listened on its Unix socket only; sluice listens on 127.0.0.1", Some("listen"));
                    "127.0.0.1".to_owned()
                }
                Some("*") => {
                    c.changed(&e, "* is every IPv4 and IPv6 address; sluice listens on one address, 0.0.0.0 (every IPv4 address)", Some("listen"));
                    "0.0.0.0".to_owned()
                }
                Some("localhost") => {
                    c.changed(
                        &e,
                        "sluice listens on an IP address; localhost is taken as 127.0.0.1",
                        Some("listen"),
                    );
                    "127.0.0.1".to_owned()
                }
                Some(a) if a.parse::<std::net::IpAddr>().is_ok() => a.to_owned(),
                Some(a) => {
                    c.dropped(
                        &e,
                        format!("sluice listens on an IP address, not a host name ({a}); 127.0.0.1 is used: set the address {a} resolves to"),
                        Some("listen"),
                    );
                    "127.0.0.1".to_owned()
                }
            }
        }
    };
    let addr = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => std::net::SocketAddr::new(ip, port).to_string(),
        Err(_) => format!("{host}:{port}"),
    };
    c.doc.kv("listen", toml::Value::String(addr), None);
}

/// The keys that map one to one, PgBouncer's defaults written out.
fn simple_pooler_keys(c: &mut Conv<'_>) {
    match c.get("pool_mode").cloned() {
        None => {
            c.doc
                .kv("pool_mode", "session".into(), Some("PgBouncer's default"));
        }
        Some(e) => match pool_mode(&e.value) {
            Ok((m, was_statement)) => {
                if was_statement {
                    c.changed(&e, STATEMENT_MODE, Some("pool_mode = \"transaction\""));
                }
                c.doc.kv("pool_mode", m.into(), None);
            }
            Err(why) => {
                c.dropped(
                    &e,
                    format!("{why}; PgBouncer's default session is used"),
                    Some("pool_mode"),
                );
                c.doc
                    .kv("pool_mode", "session".into(), Some("PgBouncer's default"));
            }
        },
    }
    integer(c, "default_pool_size", "default_pool_size", 20, 1);
    integer(c, "max_client_conn", "max_client_conn", 100, 1);
    duration(c, "query_wait_timeout", 120.0, false);
    duration(c, "server_connect_timeout", 15.0, false);
    duration(c, "server_login_retry", 15.0, true);
    duration(c, "server_idle_timeout", 600.0, false);
    duration(c, "server_lifetime", 3600.0, true);
    // The same meanings in sluice, 0 = off included (README, "Failure behaviour").
    duration(c, "query_timeout", 0.0, true);
    duration(c, "client_idle_timeout", 0.0, true);
    duration(c, "idle_transaction_timeout", 0.0, true);
    duration(c, "client_login_timeout", 60.0, true);
    duration(c, "server_check_delay", 30.0, true);
    tcp(c);
    tls(c);
    // The connection caps: the same meanings in sluice (docs/security.md).
    for key in [
        "max_db_connections",
        "max_user_connections",
        "max_db_client_connections",
        "max_user_client_connections",
    ] {
        if let Some(e) = c.get(key).cloned() {
            match e.value.trim().parse::<i64>() {
                Ok(n) if n >= 0 => c.doc.kv(key, n.into(), None),
                _ => c.dropped(&e, "not a count", Some(key)),
            }
        }
    }
    if let Some(e) = c.get("server_reset_query").cloned() {
        c.doc.kv("server_reset_query", e.value.clone().into(), None);
    }
    if let Some(e) = c.get("max_packet_size").cloned() {
        match e.value.trim().parse::<i64>() {
            Ok(n) if n >= 1024 => {
                c.doc
                    .kv("max_message_size", n.into(), Some("from max_packet_size"))
            }
            _ => c.dropped(
                &e,
                "not a size of at least 1024 bytes",
                Some("max_message_size"),
            ),
        }
    }
    if let Some(e) = c.get("max_prepared_statements").cloned() {
        match e.value.trim().parse::<i64>() {
            Ok(n) if n >= 0 => c.doc.kv("max_prepared_statements", n.into(), None),
            _ => c.dropped(&e, "not a number", Some("max_prepared_statements")),
        }
    }
}

/// TCP keepalive and user timeout, only where the file sets them (PgBouncer's empty value and
/// sluice's 0 both mean the operating system's default). PgBouncer gives tcp_user_timeout in
/// milliseconds and the keepalive times in seconds.
fn tcp(c: &mut Conv<'_>) {
    let set = |c: &Conv<'_>, key: &str| c.get(key).cloned().filter(|e| !e.value.trim().is_empty());
    if let Some(e) = set(c, "tcp_keepalive") {
        match e.value.trim() {
            "1" | "yes" | "on" | "true" => c.doc.kv("tcp_keepalive", true.into(), None),
            "0" | "no" | "off" | "false" => c.doc.kv("tcp_keepalive", false.into(), None),
            _ => c.dropped(&e, "not a boolean", Some("tcp_keepalive")),
        }
    }
    if let Some(e) = set(c, "tcp_keepcnt") {
        match e.value.trim().parse::<i64>() {
            Ok(n) if (0..=127).contains(&n) => c.doc.kv("tcp_keepcnt", n.into(), None),
            _ => c.dropped(&e, "not a count from 0 to 127", Some("tcp_keepcnt")),
        }
    }
    for key in ["tcp_keepidle", "tcp_keepintvl"] {
        if let Some(e) = set(c, key) {
            match ini::seconds(&e.value) {
                Some(d) => c.doc.kv(key, duration_text(d).into(), None),
                None => c.dropped(&e, "not a time in seconds", Some(key)),
            }
        }
    }
    if let Some(e) = set(c, "tcp_user_timeout") {
        match e.value.trim().parse::<u64>() {
            Ok(ms) => c.doc.kv(
                "tcp_user_timeout",
                duration_text(Duration::from_millis(ms)).into(),
                Some("PgBouncer's value is in milliseconds"),
            ),
            Err(_) => c.dropped(&e, "not a number of milliseconds", Some("tcp_user_timeout")),
        }
    }
}

/// TLS on both sides: the modes have PgBouncer's names and meanings, the files carry as they are
/// (read when sluice starts). PgBouncer's server default is prefer, which sluice writes out.
fn tls(c: &mut Conv<'_>) {
    let set = |c: &Conv<'_>, key: &str| c.get(key).cloned().filter(|e| !e.value.trim().is_empty());
    if let Some(e) = set(c, "client_tls_sslmode") {
        let v = e.value.trim().to_ascii_lowercase();
        match v.as_str() {
            "disable" | "allow" | "prefer" | "require" | "verify-ca" | "verify-full" => {
                c.doc.kv("client_tls_mode", v.into(), None)
            }
            _ => c.dropped(&e, "not a TLS mode", Some("client_tls_mode")),
        }
    }
    match set(c, "server_tls_sslmode") {
        None => c.doc.kv(
            "server_tls_mode",
            "prefer".into(),
            Some("PgBouncer's default"),
        ),
        Some(e) => {
            let v = e.value.trim().to_ascii_lowercase();
            match v.as_str() {
                "disable" | "prefer" | "require" | "verify-ca" | "verify-full" => {
                    c.doc.kv("server_tls_mode", v.into(), None)
                }
                "allow" => {
                    c.changed(
                        &e,
                        "sluice has no allow for servers (plain first, TLS if refused): prefer asks for TLS first",
                        Some("server_tls_mode"),
                    );
                    c.doc.kv("server_tls_mode", "prefer".into(), None);
                }
                _ => c.dropped(&e, "not a TLS mode", Some("server_tls_mode")),
            }
        }
    }
    for key in [
        "client_tls_key_file",
        "client_tls_cert_file",
        "client_tls_ca_file",
        "server_tls_ca_file",
        "server_tls_key_file",
        "server_tls_cert_file",
    ] {
        if let Some(e) = set(c, key) {
            c.doc.kv(key, e.value.trim().to_owned().into(), None);
        }
    }
}

/// A count: the file's value, else PgBouncer's default.
fn integer(c: &mut Conv<'_>, key: &str, sluice_key: &str, default: i64, min: i64) {
    match c.get(key).cloned() {
        None => c
            .doc
            .kv(sluice_key, default.into(), Some("PgBouncer's default")),
        Some(e) => match e.value.trim().parse::<i64>() {
            Ok(n) if n >= min => c.doc.kv(sluice_key, n.into(), None),
            _ => {
                c.dropped(
                    &e,
                    format!(
                        "not a number of at least {min}; PgBouncer's default {default} is used"
                    ),
                    Some(sluice_key),
                );
                c.doc
                    .kv(sluice_key, default.into(), Some("PgBouncer's default"));
            }
        },
    }
}

/// A time in seconds. `zero_ok`: 0 means the same in sluice; otherwise PgBouncer's 0 means
/// "never", which sluice writes as a year.
fn duration(c: &mut Conv<'_>, key: &str, default_secs: f64, zero_ok: bool) {
    let (value, comment) = match c.get(key).cloned() {
        None => (
            Duration::from_secs_f64(default_secs),
            Some("PgBouncer's default"),
        ),
        Some(e) => match ini::seconds(&e.value) {
            Some(d) if d.is_zero() && !zero_ok => {
                c.changed(
                    &e,
                    "0 (never) is written as a year: sluice needs a time",
                    Some(key),
                );
                (NEVER, None)
            }
            Some(d) => (d, None),
            None => {
                c.dropped(
                    &e,
                    format!("not a time; PgBouncer's default {default_secs} s is used"),
                    Some(key),
                );
                (
                    Duration::from_secs_f64(default_secs),
                    Some("PgBouncer's default"),
                )
            }
        },
    };
    c.doc.kv(key, duration_text(value).into(), comment);
}

/// How clients authenticate, decided from `auth_type` (and the HBA rules).
struct Auth {
    /// `[pooler] auth_type`.
    default: &'static str,
    hba: Option<hba::Plan>,
}

impl Auth {
    /// The method a user is checked with (the database's is not known here).
    fn for_user(&self, name: &str) -> &'static str {
        self.hba
            .as_ref()
            .and_then(|p| p.users.iter().find(|(u, _)| u == name).map(|(_, m)| *m))
            .unwrap_or(self.default)
    }
}

fn auth(c: &mut Conv<'_>) -> Auth {
    let entry = c.get("auth_type").cloned();
    let value = entry
        .as_ref()
        .map(|e| e.value.trim().to_ascii_lowercase())
        .unwrap_or_else(|| "md5".to_owned());
    let mut hba_plan = None;
    let default = match value.as_str() {
        "md5" | "scram-sha-256" | "trust" => match value.as_str() {
            "md5" => "md5",
            "trust" => "trust",
            _ => "scram-sha-256",
        },
        "plain" => {
            if let Some(e) = &entry {
                c.changed(
                    e,
                    "sluice does not take clear-text passwords; it asks for SCRAM-SHA-256 instead",
                    Some("auth_type = \"scram-sha-256\""),
                );
            }
            "scram-sha-256"
        }
        "any" => {
            if let Some(e) = &entry {
                c.changed(e, "sluice has no `any`: it asks no password (trust) but still accepts only the users in [users], and the console only its admin_users", Some("auth_type = \"trust\""));
            }
            "trust"
        }
        "hba" => {
            match c.inp.hba {
                Some(rules) => {
                    let plan = hba::plan(rules);
                    c.notes.extend(plan.notes.iter().cloned());
                    let d = plan.default.unwrap_or_else(|| {
                    c.notes.push(Note::changed(
                        "auth_hba_file",
                        "",
                        None,
                        "no rule covers every database and user: PgBouncer refused connections no rule matched; sluice asks them for scram-sha-256".into(),
                        Some("auth_type"),
                    ));
                    "scram-sha-256"
                });
                    hba_plan = Some(plan);
                    d
                }
                None => {
                    if let Some(e) = &entry {
                        c.dropped(e, "the auth_hba_file could not be read; scram-sha-256 is used for everyone", Some("auth_type"));
                    }
                    "scram-sha-256"
                }
            }
        }
        other => {
            if let Some(e) = &entry {
                c.dropped(e, format!("sluice has no `{other}` authentication (it has scram-sha-256, md5 and trust); scram-sha-256 is used"), Some("auth_type"));
            }
            "scram-sha-256"
        }
    };
    let comment = entry.is_none().then_some("PgBouncer's default");
    c.doc.kv("auth_type", default.into(), comment);
    Auth {
        default,
        hba: hba_plan,
    }
}

/// A user as written to `[users]`.
/// `[pgbouncer] auth_user` / `auth_query`: sluice has them with PgBouncer's meaning.
fn auth_lookup(c: &mut Conv<'_>, users: &[UserOut]) {
    if let Some(e) = c
        .get("auth_user")
        .cloned()
        .filter(|e| !e.value.trim().is_empty())
    {
        match auth_user_usable(users, e.value.trim()) {
            Ok(()) => c
                .doc
                .kv("auth_user", e.value.trim().to_owned().into(), None),
            Err(why) => c.dropped(&e, why, Some("[users.NAME] password")),
        }
    }
    if let Some(e) = c
        .get("auth_query")
        .cloned()
        .filter(|e| !e.value.trim().is_empty())
    {
        c.doc
            .kv("auth_query", e.value.trim().to_owned().into(), None);
    }
}

/// sluice runs auth_query as `name` with its plain password from `[users]`; PgBouncer could log
/// in with a hash from its auth file.
fn auth_user_usable(users: &[UserOut], name: &str) -> Result<(), String> {
    match users
        .iter()
        .find(|u| u.name == name)
        .and_then(|u| u.secret.as_deref())
    {
        Some(s) if secret_kind(s) == "plain" => Ok(()),
        Some(_) => Err(format!(
            "the auth file has a hash for {name}: sluice runs auth_query with a plain password, so its users stay unknown until {name} has one in [users]"
        )),
        None => Err(format!(
            "{name} is not in the auth file: sluice runs auth_query with its plain password from [users]"
        )),
    }
}

pub(super) struct UserOut {
    name: String,
    secret: Option<String>,
}

pub(super) fn secret_kind(s: &str) -> &'static str {
    if s.starts_with("SCRAM-SHA-256$") {
        "scram"
    } else if s.len() == 35 && s.starts_with("md5") && s[3..].bytes().all(|b| b.is_ascii_hexdigit())
    {
        "md5"
    } else {
        "plain"
    }
}

fn users(c: &mut Conv<'_>, auth: &Auth) -> Vec<UserOut> {
    let mut out: Vec<UserOut> = Vec::new();
    let settings: Vec<Entry> = c.inp.ini.section("users").into_iter().cloned().collect();
    let listed = c.inp.users.unwrap_or(&[]);
    let mut names: Vec<&str> = listed.iter().map(|u| u.name.as_str()).collect();
    for s in &settings {
        if !names.contains(&s.key.as_str()) {
            names.push(&s.key);
        }
    }
    for name in names {
        let entry = listed.iter().find(|u| u.name == name);
        let setting = settings.iter().find(|s| s.key == name);
        let method = auth.for_user(name);
        let mut lines: Vec<(String, toml::Value, Option<&str>)> = Vec::new();
        match entry {
            Some(u) => {
                let kind = secret_kind(&u.secret);
                let at = Some(u.origin.to_string());
                let label = format!("auth_file: {name}");
                match (method, kind) {
                    ("scram-sha-256", "md5") => {
                        c.notes.push(Note::dropped(&label, "md5 hash", at, "an md5 hash cannot check a SCRAM-SHA-256 login (in PgBouncer neither), so this user could not log in; the user is left out".into(), Some("[users.NAME] password (plain or SCRAM secret), or auth_type = \"md5\"")));
                        continue;
                    }
                    ("md5", "scram") => {
                        c.notes.push(Note::changed(&label, "SCRAM secret", at, "auth_type md5 with a SCRAM secret: PgBouncer used SCRAM for this user, and so does sluice".into(), Some("[users.NAME] auth_type = \"scram-sha-256\"")));
                        lines.push(("auth_type".into(), "scram-sha-256".into(), None));
                    }
                    _ => {}
                }
                if method != auth.default && !lines.iter().any(|(k, _, _)| k == "auth_type") {
                    lines.push((
                        "auth_type".into(),
                        method.into(),
                        Some("from auth_hba_file"),
                    ));
                }
                lines.insert(0, ("password".into(), u.secret.clone().into(), None));
            }
            None => {
                if method != "trust" {
                    if let Some(s) = setting {
                        let why = if c.inp.users.is_some() {
                            "the user is not in the auth file: sluice needs a secret for it (PgBouncer looked it up with auth_query, or refused it)"
                        } else {
                            "there is no auth file to take the user's secret from"
                        };
                        c.dropped(s, why, Some("[users.NAME] password"));
                    }
                    continue;
                }
                if method != auth.default {
                    lines.push((
                        "auth_type".into(),
                        method.into(),
                        Some("from auth_hba_file"),
                    ));
                }
            }
        }
        if let Some(s) = setting {
            user_settings(c, s, &mut lines);
        }
        c.doc
            .table(&format!("users.{}", super::toml_out::key(name)));
        for (k, v, comment) in lines {
            c.doc.kv(&k, v, comment);
        }
        out.push(UserOut {
            name: name.to_owned(),
            secret: entry.map(|u| u.secret.clone()),
        });
    }
    out
}

/// A `[users]` line's settings (`pool_mode=session max_user_connections=10`).
fn user_settings(
    c: &mut Conv<'_>,
    s: &Entry,
    lines: &mut Vec<(String, toml::Value, Option<&'static str>)>,
) {
    let pairs = match ini::connstr(&s.value) {
        Ok(p) => p,
        Err(e) => {
            c.dropped(s, format!("cannot read the settings: {e}"), None);
            return;
        }
    };
    for (k, v) in pairs {
        let sub = Entry {
            section: s.section.clone(),
            key: format!("{}.{k}", s.key),
            value: v.clone(),
            origin: s.origin.clone(),
        };
        match k.as_str() {
            "pool_mode" => match pool_mode(&v) {
                Ok((m, was_statement)) => {
                    if was_statement {
                        c.changed(
                            &sub,
                            STATEMENT_MODE,
                            Some("[users.NAME] pool_mode = \"transaction\""),
                        );
                    }
                    lines.push(("pool_mode".into(), m.into(), None));
                }
                Err(why) => c.dropped(&sub, why, Some("[users.NAME] pool_mode")),
            },
            "pool_size" | "reserve_pool_size" => c.dropped(
                &sub,
                "sluice sizes pools per database, not per user",
                Some("[databases.NAME] pool_size"),
            ),
            "max_user_connections" | "max_user_client_connections" => {
                match sub.value.trim().parse::<i64>() {
                    Ok(n) if n >= 0 => lines.push((k.to_string(), n.into(), None)),
                    _ => c.dropped(
                        &sub,
                        "not a count",
                        Some("[users.NAME] max_user_connections"),
                    ),
                }
            }
            "query_wait_timeout" => c.dropped(
                &sub,
                "sluice sets it for every user at once",
                Some("query_wait_timeout"),
            ),
            "query_timeout" => c.dropped(
                &sub,
                "not supported yet",
                Some("PostgreSQL's statement_timeout (ALTER ROLE ... SET)"),
            ),
            "idle_transaction_timeout" => c.dropped(
                &sub,
                "not supported yet",
                Some("PostgreSQL's idle_in_transaction_session_timeout (ALTER ROLE ... SET)"),
            ),
            "client_idle_timeout" | "transaction_timeout" => {
                c.dropped(&sub, "not supported yet", None)
            }
            _ => c.dropped(&sub, "not a per-user setting this importer knows", None),
        }
    }
}

/// `admin_users` / `stats_users`: only users sluice knows can be console users.
fn console_users(c: &mut Conv<'_>, users: &[UserOut]) {
    // The [pooler] table is done by now; these keys go after it in the document.
    for key in ["admin_users", "stats_users"] {
        let Some(e) = c.get(key).cloned() else {
            continue;
        };
        let mut keep = Vec::new();
        for name in ini::list(&e.value) {
            if users.iter().any(|u| u.name == name) {
                keep.push(toml::Value::String(name));
            } else {
                let sub = Entry {
                    key: format!("{key}: {name}"),
                    ..e.clone()
                };
                c.dropped(&sub, "not among the users written to [users]: sluice's console users log in like any other user", Some("[users.NAME]"));
            }
        }
        c.doc.pooler_kv(key, toml::Value::Array(keep));
    }
}

mod databases;
mod left_out;

#[cfg(test)]
mod tests;
