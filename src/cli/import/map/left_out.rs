//! `[pgbouncer]` settings sluice has no counterpart for: why, and the nearest sluice setting.

use super::{CARRIED, Conv, ini};
use crate::cli::import::ini::Entry;

/// `[pgbouncer]` keys with no sluice counterpart: the values that mean "off" (equivalent to
/// sluice, so not reported), why they cannot be carried over, the nearest sluice setting.
const LEFT_OUT: &[(&str, &[&str], &str, Option<&str>)] = &[
    (
        "logfile",
        &[""],
        "sluice logs to stderr (under systemd, to the journal)",
        Some("SLUICE_LOG (the level)"),
    ),
    (
        "pidfile",
        &[""],
        "sluice does not daemonize; run it under systemd or another supervisor",
        None,
    ),
    (
        "syslog",
        &["0"],
        "sluice logs to stderr; under systemd the journal forwards to syslog",
        None,
    ),
    ("syslog_ident", &[], "sluice logs to stderr", None),
    ("syslog_facility", &[], "sluice logs to stderr", None),
    (
        "log_connections",
        &["0"],
        "sluice writes no log line per client login",
        Some("SLUICE_LOG=debug; SHOW CLIENTS"),
    ),
    (
        "log_disconnections",
        &["0"],
        "sluice writes no log line per client logout",
        Some("SLUICE_LOG=debug; SHOW CLIENTS"),
    ),
    (
        "log_pooler_errors",
        &["0"],
        "sluice does not log the errors it sends clients",
        Some("the sluice_client_errors_total metric (by SQLSTATE class)"),
    ),
    (
        "log_stats",
        &["0"],
        "sluice writes no periodic statistics to the log",
        Some("metrics_listen (/metrics) or SHOW STATS"),
    ),
    (
        "stats_period",
        &[],
        "SHOW STATS_AVERAGES uses a fixed 15 s period",
        Some("metrics_listen (/metrics has the raw counters)"),
    ),
    (
        "verbose",
        &["0"],
        "no verbosity levels",
        Some("SLUICE_LOG=debug"),
    ),
    (
        "user",
        &[""],
        "sluice does not switch users; start it as that user (systemd User=)",
        None,
    ),
    (
        "unix_socket_dir",
        &[""],
        "sluice listens on TCP only, and connects to PostgreSQL over TCP",
        Some("listen"),
    ),
    (
        "unix_socket_mode",
        &[],
        "sluice listens on TCP only",
        Some("listen"),
    ),
    (
        "unix_socket_group",
        &[],
        "sluice listens on TCP only",
        Some("listen"),
    ),
    (
        "auth_dbname",
        &[""],
        "sluice runs auth_query in the database the client asked for",
        Some("[databases.NAME] auth_user"),
    ),
    (
        "auth_ident_file",
        &[""],
        "sluice has no ident maps (no peer or cert authentication)",
        None,
    ),
    (
        "auth_ldap_options",
        &[""],
        "sluice has no LDAP authentication",
        Some("auth_type"),
    ),
    (
        "min_pool_size",
        &["0"],
        "sluice opens server connections when clients need them, none in advance",
        None,
    ),
    (
        "reserve_pool_size",
        &["0"],
        "sluice has no reserve pool",
        Some("default_pool_size (make the pool that much larger)"),
    ),
    (
        "reserve_pool_timeout",
        &["0"],
        "sluice has no reserve pool",
        Some("default_pool_size"),
    ),
    (
        "server_round_robin",
        &["0"],
        "sluice has no choice of reuse order for idle server connections",
        None,
    ),
    (
        "track_extra_parameters",
        &[],
        "not needed: sluice keeps every parameter PostgreSQL reports, per client",
        None,
    ),
    (
        "ignore_startup_parameters",
        &[],
        "not needed: sluice accepts any startup parameter and sets it on the server for the client",
        None,
    ),
    (
        "peer_id",
        &["0"],
        "sluice has no peering of instances for cancel requests",
        None,
    ),
    (
        "disable_pqexec",
        &["0"],
        "sluice cannot refuse the simple query protocol",
        None,
    ),
    (
        "application_name_add_host",
        &["0"],
        "sluice does not change application_name",
        None,
    ),
    (
        "conffile",
        &[],
        "not applicable: sluice is given its file with --config",
        None,
    ),
    (
        "service_name",
        &[],
        "not applicable (Windows services)",
        None,
    ),
    ("job_name", &[], "not applicable (Windows services)", None),
    (
        "server_reset_query_always",
        &["0"],
        "sluice sends server_reset_query in session mode only",
        Some("server_reset_query"),
    ),
    (
        "server_check_query",
        &[],
        "sluice checks a connection idle longer than server_check_delay with a lone Sync, not a query",
        Some("server_check_delay"),
    ),
    (
        "server_fast_close",
        &["0"],
        "in session mode sluice closes a server connection marked by RECONNECT or RELOAD when its client leaves",
        None,
    ),
    (
        "autodb_idle_timeout",
        &[],
        "sluice has no \"*\" fallback database",
        None,
    ),
    (
        "pool_idle_timeout",
        &["0"],
        "sluice keeps a pool once made",
        Some("server_idle_timeout (closes its idle server connections)"),
    ),
    (
        "dns_max_ttl",
        &[],
        "sluice resolves host names with the system resolver at each connect; there is no cache to tune",
        None,
    ),
    (
        "dns_nxdomain_ttl",
        &[],
        "sluice resolves host names with the system resolver at each connect; there is no cache to tune",
        None,
    ),
    (
        "dns_zone_check_period",
        &["0"],
        "sluice resolves host names with the system resolver at each connect",
        None,
    ),
    (
        "resolv_conf",
        &[""],
        "sluice uses the system resolver",
        None,
    ),
    (
        "query_wait_notify",
        &["0"],
        "sluice sends no notice while a client waits",
        Some("the sluice_pool_clients{state=\"waiting\"} metric"),
    ),
    (
        "login_notify_message",
        &[""],
        "sluice sends no message at login",
        None,
    ),
    (
        "transaction_timeout",
        &["0"],
        "not supported yet",
        Some("PostgreSQL 17's transaction_timeout"),
    ),
    (
        "cancel_wait_timeout",
        &["0"],
        "sluice forwards a cancel request at once; nothing waits",
        None,
    ),
    (
        "suspend_timeout",
        &[],
        "sluice has no online reboot (-R) and no SUSPEND",
        None,
    ),
    (
        "pkt_buf",
        &[],
        "sluice sizes its relay buffers per message",
        None,
    ),
    (
        "sbuf_loopcnt",
        &[],
        "sluice sizes its relay buffers per message and yields between sockets itself",
        None,
    ),
    (
        "listen_backlog",
        &[],
        "sluice uses the operating system's default backlog",
        None,
    ),
    ("so_reuseport", &["0"], "not a setting in sluice", None),
    (
        "tcp_defer_accept",
        &[],
        "sluice uses the operating system's socket defaults",
        None,
    ),
    (
        "tcp_socket_buffer",
        &[""],
        "sluice uses the operating system's socket defaults",
        None,
    ),
    (
        "scram_iterations",
        &["4096"],
        "sluice makes no SCRAM secrets; it checks each with the iteration count stored in it",
        None,
    ),
    (
        "client_tls_protocols",
        &[],
        "sluice uses rustls's protocol versions, TLS 1.2 and 1.3",
        None,
    ),
    (
        "client_tls_ciphers",
        &[],
        "sluice uses rustls's cipher suites (AES-GCM and ChaCha20-Poly1305 only)",
        None,
    ),
    (
        "client_tls13_ciphers",
        &[""],
        "sluice uses rustls's cipher suites (AES-GCM and ChaCha20-Poly1305 only)",
        None,
    ),
    (
        "client_tls_ecdhcurve",
        &[],
        "sluice uses rustls's key exchange groups (X25519, P-256, P-384)",
        None,
    ),
    (
        "client_tls_dheparams",
        &[],
        "rustls does no finite-field Diffie-Hellman",
        None,
    ),
    (
        "server_tls_protocols",
        &[],
        "sluice uses rustls's protocol versions, TLS 1.2 and 1.3",
        None,
    ),
    (
        "server_tls_ciphers",
        &[],
        "sluice uses rustls's cipher suites (AES-GCM and ChaCha20-Poly1305 only)",
        None,
    ),
    (
        "server_tls13_ciphers",
        &[""],
        "sluice uses rustls's cipher suites (AES-GCM and ChaCha20-Poly1305 only)",
        None,
    ),
];

fn is_off(value: &str, offs: &[&str]) -> bool {
    let v = value.trim();
    offs.iter().any(|off| {
        v.eq_ignore_ascii_case(off)
            || (*off == "0" && ini::boolean(v) == Some(false))
            || (!off.is_empty()
                && off
                    .parse::<f64>()
                    .ok()
                    .is_some_and(|o| v.parse::<f64>().ok() == Some(o)))
    })
}

/// Every `[pgbouncer]` key neither carried over nor equivalent.
pub(super) fn left_out(c: &mut Conv<'_>) {
    let entries: Vec<Entry> = c
        .inp
        .ini
        .section("pgbouncer")
        .into_iter()
        .cloned()
        .collect();
    for e in entries {
        if CARRIED.contains(&e.key.as_str()) {
            continue;
        }
        match LEFT_OUT.iter().find(|(k, ..)| *k == e.key) {
            Some((_, offs, why, nearest)) => {
                if !is_off(&e.value, offs) {
                    c.dropped(&e, *why, *nearest);
                }
            }
            None => c.dropped(&e, "not a PgBouncer setting this importer knows", None),
        }
    }
}
