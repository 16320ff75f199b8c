//! The mapping, on small in-memory files. (tests/import_pgbouncer.rs runs the command on
//! realistic files and checks the result with `sluice --check`.)

use super::*;
use crate::cli::import::{NoteKind, hba, ini, userlist};

const SCRAM: &str = "SCRAM-SHA-256$4096:c2x1aWNlLXRlc3Qtc2FsdA==$\
    C445j8RKbsoDbUyZOoFInLv7VPwHM5xR80vjC6SfY2I=:\
    5Ow0NoWCttHBRY+0ZXPKvkmzR1v8zI1Nb8stnFaj1x0=";
const MD5: &str = "md5a3556571e93b0d20722ba62be61e8c2d";

struct Run {
    toml: String,
    notes: Vec<Note>,
    config: sluice::Config,
}

impl Run {
    fn note(&self, setting: &str) -> &Note {
        self.notes
            .iter()
            .find(|n| n.setting == setting)
            .unwrap_or_else(|| panic!("no note for {setting}; notes:\n{}", self.all_notes()))
    }

    fn has_note(&self, setting: &str) -> bool {
        self.notes.iter().any(|n| n.setting == setting)
    }

    fn all_notes(&self) -> String {
        self.notes
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn run(ini_text: &str, users: Option<&str>, hba_text: Option<&str>) -> Run {
    let ini = ini::load("pgbouncer.ini", &mut |name: &str, _: Option<&str>| {
        assert_eq!(name, "pgbouncer.ini");
        Ok((name.to_owned(), ini_text.to_owned()))
    })
    .unwrap();
    let users = users.map(|t| userlist::parse("userlist.txt", t).unwrap());
    let rules = hba_text.map(|t| hba::parse("hba.conf", t).unwrap());
    let out = convert(&Inputs {
        ini: &ini,
        users: users.as_deref(),
        hba: rules.as_deref(),
        source: "pgbouncer.ini",
        file_notes: &[],
    });
    let config = sluice::Config::from_toml_unloaded(&out.toml)
        .unwrap_or_else(|e| panic!("the output does not pass --check: {e}\n{}", out.toml));
    Run {
        toml: out.toml,
        notes: out.notes,
        config,
    }
}

#[test]
fn pgbouncer_defaults_are_spelled_out() {
    let r = run(
        "[databases]\napp = host=10.0.0.5\n[pgbouncer]\nlisten_addr = 10.0.0.1\n",
        Some(""),
        None,
    );
    let p = &r.config.pooler;
    assert_eq!(p.listen, "10.0.0.1:6432");
    assert_eq!(p.pool_mode, sluice::config::PoolMode::Session);
    assert_eq!(p.max_client_conn, 100);
    assert_eq!(p.default_pool_size, 20);
    assert_eq!(p.auth_type, sluice::config::AuthType::Md5);
    assert_eq!(p.query_wait_timeout, Duration::from_secs(120));
    assert_eq!(p.server_connect_timeout, Duration::from_secs(15));
    assert_eq!(p.server_login_retry, Duration::from_secs(15));
    assert!(
        r.toml
            .contains("pool_mode = \"session\"  # PgBouncer's default"),
        "{}",
        r.toml
    );
    let db = &r.config.databases["app"];
    assert_eq!((db.host.as_str(), db.port), ("10.0.0.5", 5432));
    assert!(r.notes.is_empty(), "{}", r.all_notes());
}

#[test]
fn listen_addresses() {
    for (addr, listen, noted) in [
        ("*", "0.0.0.0:7000", true),
        ("localhost", "127.0.0.1:7000", true),
        ("::1", "[::1]:7000", false),
        ("10.1.1.1, 10.2.2.2", "10.1.1.1:7000", true),
        ("db-proxy.internal", "127.0.0.1:7000", true),
    ] {
        let r = run(
            &format!("[pgbouncer]\nlisten_addr = {addr}\nlisten_port = 7000\n"),
            None,
            None,
        );
        assert_eq!(r.config.pooler.listen, listen, "{addr}");
        assert_eq!(
            r.has_note("[pgbouncer] listen_addr"),
            noted,
            "{addr}: {}",
            r.all_notes()
        );
    }
    let r = run("[pgbouncer]\nlisten_port = 7000\n", None, None);
    assert_eq!(r.config.pooler.listen, "127.0.0.1:7000");
    assert!(
        r.note("[pgbouncer] listen_addr")
            .why
            .contains("Unix socket")
    );
}

#[test]
fn per_database_settings() {
    let r = run(
        "[databases]\n\
         app = host=db1 port=5433 dbname=app_prod pool_size=40 pool_mode=transaction\n\
         batch = host=db1 pool_mode=statement reserve_pool=5 connect_query='SET work_mem = ''64MB'''\n\
         forced = host=db2 user=svc password=svc-secret client_encoding=UTF8\n\
         authed = host=db2 auth_user=pgbouncer_auth\n\
         local = host=/var/run/postgresql\n\
         spread = host=db3,db4 port=5432,5433\n\
         * = host=fallback\n\
         [pgbouncer]\nlisten_addr = 127.0.0.1\npool_mode = session\n",
        Some(""),
        None,
    );
    let dbs = &r.config.databases;
    let app = &dbs["app"];
    assert_eq!(app.port, 5433);
    assert_eq!(app.dbname.as_deref(), Some("app_prod"));
    assert_eq!(app.pool_size, Some(40));
    assert_eq!(app.pool_mode, Some(sluice::config::PoolMode::Transaction));
    assert_eq!(
        dbs["batch"].pool_mode,
        Some(sluice::config::PoolMode::Transaction)
    );
    assert_eq!(
        r.note("[databases] batch.pool_mode").kind,
        NoteKind::Changed
    );
    assert!(
        r.note("[databases] batch.reserve_pool")
            .why
            .contains("no reserve pool")
    );
    assert!(r.note("[databases] batch.connect_query").nearest.is_some());
    assert_eq!(dbs["forced"].server_user.as_deref(), Some("svc"));
    assert_eq!(dbs["forced"].server_password.as_deref(), Some("svc-secret"));
    assert!(r.has_note("[databases] forced.client_encoding"));
    assert!(
        r.note("[databases] authed.auth_user")
            .why
            .contains("auth_query")
    );
    assert_eq!(dbs["local"].host, "127.0.0.1");
    assert!(r.note("[databases] local.host").why.contains("Unix socket"));
    assert_eq!(
        (dbs["spread"].host.as_str(), dbs["spread"].port),
        ("db3", 5432)
    );
    assert!(r.has_note("[databases] spread.host"));
    assert!(!dbs.contains_key("*"));
    assert!(
        r.note("[databases] *")
            .nearest
            .as_deref()
            .unwrap()
            .contains("list each database")
    );
    // The password of a connection string is never repeated in a note.
    assert!(!r.all_notes().contains("svc-secret"), "{}", r.all_notes());
}

#[test]
fn users_and_their_secrets() {
    let list = format!(
        "\"plain\" \"pw1\"\n\"hashed\" \"{MD5}\"\n\"scrammed\" \"{SCRAM}\"\n\"sess\" \"pw2\"\n"
    );
    let ini_text = "[databases]\napp = host=db\n[users]\nsess = pool_mode=session max_user_connections=5\nghost = pool_mode=transaction\n\
                    [pgbouncer]\nauth_type = md5\nadmin_users = plain, nobody\nstats_users = sess\n";
    let r = run(ini_text, Some(&list), None);
    let u = &r.config.users;
    assert_eq!(u["plain"].password.as_deref(), Some("pw1"));
    assert_eq!(u["hashed"].password.as_deref(), Some(MD5));
    // md5 with a SCRAM secret: PgBouncer used SCRAM for that user.
    assert_eq!(
        u["scrammed"].auth_type,
        Some(sluice::config::AuthType::ScramSha256)
    );
    assert_eq!(r.note("auth_file: scrammed").kind, NoteKind::Changed);
    assert_eq!(u["sess"].pool_mode, Some(sluice::config::PoolMode::Session));
    // Per-user caps are carried.
    assert_eq!(u["sess"].max_user_connections, Some(5));
    // ghost has no secret: left out, and said so.
    assert!(!u.contains_key("ghost"));
    assert!(r.note("[users] ghost").why.contains("not in the auth file"));
    assert_eq!(r.config.pooler.admin_users, ["plain"]);
    assert_eq!(r.config.pooler.stats_users, ["sess"]);
    assert!(r.has_note("[pgbouncer] admin_users: nobody"));
    // Hashed secrets log in to PostgreSQL by pass-through, as through PgBouncer: no note.
    assert!(!r.has_note("auth_file: hashed"), "{}", r.all_notes());

    // scram-sha-256 with an md5 hash: that user could not log in to PgBouncer either.
    let r = run(
        "[pgbouncer]\nauth_type = scram-sha-256\n",
        Some(&list),
        None,
    );
    assert!(!r.config.users.contains_key("hashed"));
    assert_eq!(r.note("auth_file: hashed").kind, NoteKind::LeftOut);
    assert!(r.config.users.contains_key("scrammed"));
}

#[test]
fn auth_types() {
    for (ty, expect, noted) in [
        ("md5", "md5", false),
        ("scram-sha-256", "scram-sha-256", false),
        ("trust", "trust", false),
        ("plain", "scram-sha-256", true),
        ("any", "trust", true),
        ("cert", "scram-sha-256", true),
        ("pam", "scram-sha-256", true),
    ] {
        let r = run(
            &format!("[pgbouncer]\nauth_type = {ty}\n"),
            Some("\"u\" \"pw\"\n"),
            None,
        );
        let got = sluice::config::auth_name(r.config.pooler.auth_type);
        assert_eq!(got, expect, "{ty}");
        assert_eq!(
            r.has_note("[pgbouncer] auth_type"),
            noted,
            "{ty}: {}",
            r.all_notes()
        );
    }
    // trust: a [users] entry without a secret is kept (no password needed).
    let r = run(
        "[users]\nbob = pool_mode=session\n[pgbouncer]\nauth_type = trust\n",
        Some(""),
        None,
    );
    assert_eq!(r.config.users["bob"].password, None);
}

#[test]
fn hba_rules_become_auth_types() {
    let r = run(
        "[databases]\nreports = host=db\napp = host=db\n\
         [pgbouncer]\nauth_type = hba\nauth_hba_file = hba.conf\n",
        Some(&format!("\"alice\" \"pw\"\n\"etl\" \"{SCRAM}\"\n")),
        Some(
            "local all all peer\n\
             host reports all all md5\n\
             host all etl all scram-sha-256\n\
             host all all 0.0.0.0/0 scram-sha-256\n",
        ),
    );
    use sluice::config::AuthType::*;
    assert_eq!(r.config.pooler.auth_type, ScramSha256);
    assert_eq!(r.config.databases["reports"].auth_type, Some(Md5));
    assert_eq!(r.config.databases["app"].auth_type, None);
    assert!(r.toml.contains("# from auth_hba_file"), "{}", r.toml);
    assert!(
        r.all_notes().contains("Unix-socket rule"),
        "{}",
        r.all_notes()
    );
    // Without the file: everyone gets scram, and the note says why.
    let r = run("[pgbouncer]\nauth_type = hba\n", None, None);
    assert_eq!(r.config.pooler.auth_type, ScramSha256);
    assert!(
        r.note("[pgbouncer] auth_type")
            .why
            .contains("could not be read")
    );
}

#[test]
fn tls_settings() {
    let r = run(
        "[pgbouncer]\nclient_tls_sslmode = require\nclient_tls_key_file = /etc/ssl/k.pem\n\
         client_tls_cert_file = /etc/ssl/c.pem\nserver_tls_sslmode = verify-full\n\
         server_tls_ca_file = /etc/ssl/ca.pem\n",
        None,
        None,
    );
    let p = &r.config.pooler;
    assert_eq!(
        p.client_tls_mode,
        sluice::config::tls::ClientTlsMode::Require
    );
    assert_eq!(p.client_tls_key_file.as_deref(), Some("/etc/ssl/k.pem"));
    assert_eq!(p.client_tls_cert_file.as_deref(), Some("/etc/ssl/c.pem"));
    assert_eq!(
        p.server_tls_mode,
        sluice::config::tls::ServerTlsMode::VerifyFull
    );
    assert_eq!(p.server_tls_ca_file.as_deref(), Some("/etc/ssl/ca.pem"));
    for key in [
        "client_tls_sslmode",
        "client_tls_key_file",
        "server_tls_sslmode",
    ] {
        assert!(
            !r.has_note(&format!("[pgbouncer] {key}")),
            "{}",
            r.all_notes()
        );
    }
    // Not set: PgBouncer's defaults (no TLS from clients; TLS to the server when it offers it).
    let r = run("[pgbouncer]\n", None, None);
    assert_eq!(
        r.config.pooler.client_tls_mode,
        sluice::config::tls::ClientTlsMode::Disable
    );
    assert_eq!(
        r.config.pooler.server_tls_mode,
        sluice::config::tls::ServerTlsMode::Prefer
    );
    // PgBouncer's server "allow" (plain first) becomes prefer, with a note; cipher lists are left.
    let r = run(
        "[pgbouncer]\nserver_tls_sslmode = allow\nclient_tls_ciphers = HIGH\n",
        None,
        None,
    );
    assert_eq!(
        r.config.pooler.server_tls_mode,
        sluice::config::tls::ServerTlsMode::Prefer
    );
    assert_eq!(
        r.note("[pgbouncer] server_tls_sslmode").kind,
        NoteKind::Changed
    );
    assert!(
        r.note("[pgbouncer] client_tls_ciphers")
            .why
            .contains("rustls")
    );
    // TLS switched off is what sluice does: nothing to report.
    let r = run(
        "[pgbouncer]\nclient_tls_sslmode = disable\nserver_tls_sslmode = disable\n",
        None,
        None,
    );
    assert!(
        !r.has_note("[pgbouncer] client_tls_sslmode"),
        "{}",
        r.all_notes()
    );
    assert!(
        !r.has_note("[pgbouncer] server_tls_sslmode"),
        "{}",
        r.all_notes()
    );
}

#[test]
fn timeouts_and_tcp_settings_are_carried() {
    let r = run(
        "[pgbouncer]\nquery_timeout = 30\nclient_idle_timeout = 600\nclient_login_timeout = 15\n\
         server_check_delay = 10\ntcp_keepalive = 1\ntcp_keepcnt = 5\ntcp_keepidle = 60\n\
         tcp_keepintvl = 10\ntcp_user_timeout = 2500\n",
        None,
        None,
    );
    let p = &r.config.pooler;
    assert_eq!(p.query_timeout, Duration::from_secs(30));
    assert_eq!(p.client_idle_timeout, Duration::from_secs(600));
    assert_eq!(p.client_login_timeout, Duration::from_secs(15));
    assert_eq!(p.server_check_delay, Duration::from_secs(10));
    assert!(p.tcp_keepalive);
    assert_eq!(p.tcp_keepcnt, 5);
    assert_eq!(p.tcp_keepidle, Duration::from_secs(60));
    assert_eq!(p.tcp_keepintvl, Duration::from_secs(10));
    assert_eq!(p.tcp_user_timeout, Duration::from_millis(2500));
    for key in ["query_timeout", "tcp_keepalive", "tcp_user_timeout"] {
        assert!(
            !r.has_note(&format!("[pgbouncer] {key}")),
            "{}",
            r.all_notes()
        );
    }
    // Not set: PgBouncer's defaults, which are sluice's, and the OS keepalive times.
    let r = run("[pgbouncer]\n", None, None);
    assert_eq!(
        r.config.pooler.client_login_timeout,
        Duration::from_secs(60)
    );
    assert_eq!(r.config.pooler.tcp_keepidle, Duration::ZERO);
    let r = run("[pgbouncer]\ntcp_keepcnt = lots\n", None, None);
    assert!(r.note("[pgbouncer] tcp_keepcnt").why.contains("count"));
}

#[test]
fn times_off_values_and_unknown_keys() {
    let r = run(
        "[pgbouncer]\nquery_wait_timeout = 0\nserver_idle_timeout = 30.5\nserver_lifetime = 0\n\
         query_timeout = 0\nidle_transaction_timeout = 60\nreserve_pool_size = 0\nsyslog = no\n\
         max_packet_size = 1048576\nmax_prepared_statements = 100\nserver_reset_query = DISCARD ALL;\n\
         frobnicate = 3\n[peers]\n1 = host=/tmp/pgb1\n",
        None,
        None,
    );
    let p = &r.config.pooler;
    assert_eq!(p.query_wait_timeout, NEVER);
    assert_eq!(
        r.note("[pgbouncer] query_wait_timeout").kind,
        NoteKind::Changed
    );
    assert_eq!(p.server_idle_timeout, Duration::from_millis(30_500));
    assert_eq!(p.server_lifetime, Duration::ZERO);
    assert_eq!(p.max_message_size, 1_048_576);
    assert_eq!(p.max_prepared_statements, 100);
    assert_eq!(p.server_reset_query, "DISCARD ALL;");
    for off in ["query_timeout", "reserve_pool_size", "syslog"] {
        assert!(
            !r.has_note(&format!("[pgbouncer] {off}")),
            "{off}: {}",
            r.all_notes()
        );
    }
    // Timeouts sluice has too are carried, 0 (off) included, with no note.
    assert_eq!(p.idle_transaction_timeout, Duration::from_secs(60));
    assert_eq!(p.query_timeout, Duration::ZERO);
    assert!(!r.has_note("[pgbouncer] idle_transaction_timeout"));
    assert!(
        r.note("[pgbouncer] frobnicate")
            .why
            .contains("not a PgBouncer setting")
    );
    assert!(r.note("[peers] 1").why.contains("peering"));
    // The notes are also at the end of the file, as comments.
    assert!(
        r.toml
            .contains("# - pgbouncer.ini:12: [pgbouncer] frobnicate = 3"),
        "{}",
        r.toml
    );
}
