//! `[databases]`: each database's connection string to a `[databases.NAME]` table.

use super::{Auth, Conv, STATEMENT_MODE, UserOut, ini, pool_mode, secret_kind};
use crate::cli::import::ini::Entry;

pub(super) fn databases(c: &mut Conv<'_>, users: &[UserOut], auth: &Auth) {
    let entries: Vec<Entry> = c
        .inp
        .ini
        .section("databases")
        .into_iter()
        .cloned()
        .collect();
    for e in &entries {
        if e.key == "*" {
            c.dropped(
                e,
                "sluice has no fallback database",
                Some("list each database under [databases]"),
            );
            continue;
        }
        if e.key == "pgbouncer" || e.key == "sluice" {
            c.dropped(e, "this name is the admin console's", None);
            continue;
        }
        let pairs = match ini::connstr(&e.value) {
            Ok(p) => p,
            Err(why) => {
                c.dropped(e, format!("cannot read the connection string: {why}"), None);
                continue;
            }
        };
        let get = |k: &str| {
            pairs
                .iter()
                .rev()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        let mut lines: Vec<(String, toml::Value, Option<&str>)> = Vec::new();
        let sub = |k: &str, v: &str| Entry {
            section: "databases".into(),
            key: format!("{}.{k}", e.key),
            value: v.to_owned(),
            origin: e.origin.clone(),
        };
        // host and port.
        let hosts = get("host").map(ini::list).unwrap_or_default();
        let host = match hosts.first() {
            None => {
                c.changed(&sub("host", ""), "not set: PgBouncer connected over the Unix socket; sluice connects over TCP to 127.0.0.1", Some("[databases.NAME] host"));
                "127.0.0.1".to_owned()
            }
            Some(h) if h.starts_with('/') || h.starts_with('@') => {
                c.changed(
                    &sub("host", h),
                    "a Unix socket: sluice connects over TCP, to 127.0.0.1",
                    Some("[databases.NAME] host"),
                );
                "127.0.0.1".to_owned()
            }
            Some(h) => {
                if hosts.len() > 1 {
                    c.changed(&sub("host", &hosts.join(",")), format!("sluice connects to one server per database (replicas aside); {h} is kept"), Some("[[databases.NAME.replicas]] for streaming replicas"));
                }
                h.clone()
            }
        };
        lines.push(("host".into(), host.into(), None));
        let port = match get("port").map(ini::list).and_then(|l| l.first().cloned()) {
            None => 5432,
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p > 0 => p,
                _ => {
                    c.dropped(
                        &sub("port", &p),
                        "not a TCP port; 5432 is used",
                        Some("[databases.NAME] port"),
                    );
                    5432
                }
            },
        };
        lines.push(("port".into(), i64::from(port).into(), None));
        if let Some(d) = get("dbname") {
            lines.push(("dbname".into(), d.into(), None));
        }
        if let Some(p) = get("pool_size") {
            match p.parse::<i64>() {
                Ok(n) if n >= 1 => lines.push(("pool_size".into(), n.into(), None)),
                _ => c.dropped(
                    &sub("pool_size", p),
                    "not a pool size of at least 1",
                    Some("[databases.NAME] pool_size"),
                ),
            }
        }
        if let Some(m) = get("pool_mode") {
            match pool_mode(m) {
                Ok((mode, was_statement)) => {
                    if was_statement {
                        c.changed(
                            &sub("pool_mode", m),
                            STATEMENT_MODE,
                            Some("[databases.NAME] pool_mode = \"transaction\""),
                        );
                    }
                    lines.push(("pool_mode".into(), mode.into(), None));
                }
                Err(why) => c.dropped(
                    &sub("pool_mode", m),
                    why,
                    Some("[databases.NAME] pool_mode"),
                ),
            }
        }
        if let Some(plan) = &auth.hba
            && let Some((_, m)) = plan.databases.iter().find(|(d, _)| *d == e.key)
            && *m != auth.default
        {
            lines.push(("auth_type".into(), (*m).into(), Some("from auth_hba_file")));
        }
        // The server login.
        match (get("user"), get("password")) {
            (Some(u), pw) => {
                lines.push(("server_user".into(), u.into(), None));
                let from_userlist = users
                    .iter()
                    .find(|x| x.name == u)
                    .and_then(|x| x.secret.clone());
                match pw.map(str::to_owned).or(from_userlist) {
                    Some(p) if secret_kind(&p) == "plain" => {
                        lines.push(("server_password".into(), p.into(), None))
                    }
                    Some(_) => c.changed(&sub("user", u), format!("the secret for {u} is a hash: PgBouncer could log in to PostgreSQL with it, sluice only with a plain password; sluice logs in as {u} without one (which works only if PostgreSQL trusts it)"), Some("[databases.NAME] server_password")),
                    None => c.changed(&sub("user", u), format!("no password for {u} (none here, none in the auth file): sluice logs in without one"), Some("[databases.NAME] server_password")),
                }
            }
            (None, Some(_)) => {
                c.dropped(&sub("password", "x"), "a server password without a user: sluice gives one only with server_user; it logs in as each client with the client's own password", Some("[databases.NAME] server_user + server_password"));
            }
            (None, None) => {}
        }
        for (k, v) in &pairs {
            let s = sub(k, v);
            match k.as_str() {
                "host" | "port" | "dbname" | "pool_size" | "pool_mode" | "user" | "password" => {}
                "auth_user" => match super::auth_user_usable(users, v) {
                    Ok(()) => lines.push((k.clone(), v.clone().into(), None)),
                    Err(why) => c.dropped(&s, why, Some("[users.NAME] password")),
                },
                "auth_query" => lines.push((k.clone(), v.clone().into(), None)),
                "auth_dbname" => c.dropped(&s, "sluice runs a database's auth_query in that database", Some("[databases.NAME] auth_user")),
                "min_pool_size" => c.dropped(&s, "sluice opens server connections when clients need them, none in advance", None),
                "reserve_pool" | "reserve_pool_size" => c.dropped(&s, "sluice has no reserve pool", Some("[databases.NAME] pool_size (that much larger)")),
                "max_db_connections" | "max_db_client_connections" => match v.trim().parse::<i64>() {
                    Ok(n) if n >= 0 => lines.push((k.clone(), n.into(), None)),
                    _ => c.dropped(&s, "not a count", Some(&format!("[databases.NAME] {k}"))),
                },
                "connect_query" => c.dropped(&s, "sluice runs no query on new server connections", Some("ALTER DATABASE / ALTER ROLE ... SET for settings")),
                "client_encoding" | "datestyle" | "timezone" | "application_name" => c.dropped(&s, "sluice does not set parameters for a database; clients keep their own", Some(&format!("ALTER DATABASE ... SET {k} on the server"))),
                "server_lifetime" | "query_wait_timeout" => c.dropped(&s, "sluice sets it for every database at once", Some(k)),
                "load_balance_hosts" => c.dropped(&s, "sluice connects to one server per database", None),
                "target_session_attrs" => c.dropped(&s, "sluice does not check a server's role at connect; it routes reads to the replicas it is given", Some("[[databases.NAME.replicas]]")),
                _ => c.dropped(&s, "not a connection parameter this importer knows", None),
            }
        }
        c.doc.table(&format!(
            "databases.{}",
            crate::cli::import::toml_out::key(&e.key)
        ));
        for (k, v, comment) in lines {
            c.doc.kv(&k, v, comment);
        }
    }
    // Users whose secret is a hash log in to PostgreSQL as through PgBouncer (md5 with the md5
    // hash, SCRAM with the keys from the client's own proof, docs/security.md): nothing to say.
}
