//! The console's SHOW commands.
//!
//! Where PgBouncer has the command, the columns are PgBouncer's (as of 1.18), by name and in order,
//! so tools written against PgBouncer read sluice; sluice's own columns come after them. Columns
//! for things sluice does not have (cancel-request queues, reserve pools, DNS, TLS) are present
//! and always 0 or empty. README.md ("Admin console") says which columns carry real values.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::BytesMut;
use sluice_proto::backend::{self, ErrorResponse, FieldDescription};
use sluice_proto::sqlstate;

use crate::clock::now_us;
use crate::config::{PoolMode, PoolerConfig, auth_name};
use crate::metrics::{Averages, Totals};
use crate::pool::Pool;
use crate::server::list::SERVER_ACTIVE;
use crate::shared::Shared;

const TEXT: u32 = 25;
const INT8: u32 = 20;

/// A result set being built.
pub(super) struct Table {
    columns: Vec<(&'static str, u32)>,
    rows: Vec<Vec<Option<String>>>,
}

impl Table {
    /// `columns`: (name, is a number).
    pub(super) fn new(columns: &[(&'static str, bool)]) -> Table {
        Table {
            columns: columns
                .iter()
                .map(|(n, num)| (*n, if *num { INT8 } else { TEXT }))
                .collect(),
            rows: Vec::new(),
        }
    }

    pub(super) fn row(&mut self, values: Vec<Option<String>>) {
        debug_assert_eq!(values.len(), self.columns.len());
        self.rows.push(values);
    }

    pub(super) fn write(self, out: &mut BytesMut) {
        let fields: Vec<FieldDescription<'_>> = self
            .columns
            .iter()
            .map(|(n, t)| FieldDescription::text(n, *t))
            .collect();
        backend::row_description(&fields, out);
        for r in &self.rows {
            backend::data_row(r.iter().map(|v| v.as_deref().map(str::as_bytes)), out);
        }
        backend::command_complete("SHOW", out);
    }
}

fn t(v: impl ToString) -> Option<String> {
    Some(v.to_string())
}

fn n(v: impl Into<u64>) -> Option<String> {
    Some(v.into().to_string())
}

fn z() -> Option<String> {
    Some("0".into())
}

fn e() -> Option<String> {
    Some(String::new())
}

pub fn show(shared: &Shared, what: &str, out: &mut BytesMut) -> Result<(), ErrorResponse> {
    let table = match what {
        "POOLS" => show_pools(shared),
        "STATS" => show_stats(shared),
        "STATS_TOTALS" => show_stats_totals(shared),
        "STATS_AVERAGES" => show_stats_averages(shared),
        "CLIENTS" => show_clients(shared),
        "SERVERS" => show_servers(shared),
        "DATABASES" => show_databases(shared),
        "USERS" => show_users(shared),
        "LISTS" => show_lists(shared),
        "REPLICAS" => show_replicas(shared),
        "CONFIG" => show_config(shared),
        "QUERIES" => super::queries::show_queries(shared),
        "VERSION" => {
            let mut t = Table::new(&[("version", false)]);
            t.row(vec![Some(format!("sluice {}", env!("CARGO_PKG_VERSION")))]);
            t
        }
        "HELP" => {
            let help = "Console usage\n\
                \tSHOW HELP|POOLS|STATS|STATS_TOTALS|STATS_AVERAGES|CLIENTS|SERVERS\n\
                \tSHOW DATABASES|USERS|LISTS|CONFIG|VERSION|REPLICAS|QUERIES\n\
                \tRESET QUERIES\n\
                \tPAUSE [<db>]\n\
                \tRESUME [<db>]\n\
                \tKILL [<db>]\n\
                \tRECONNECT [<db>]\n\
                \tSHUTDOWN";
            ErrorResponse::new(
                backend::Severity::Notice,
                sqlstate::SUCCESSFUL_COMPLETION,
                help,
            )
            .write_notice(out);
            backend::command_complete("SHOW", out);
            return Ok(());
        }
        other => {
            return Err(ErrorResponse::error(
                sqlstate::SYNTAX_ERROR,
                format!("SHOW {other}: no such item; SHOW HELP lists them"),
            ));
        }
    };
    table.write(out);
    Ok(())
}

fn mode_name(m: PoolMode) -> String {
    m.to_string()
}

fn show_pools(shared: &Shared) -> Table {
    let mut table = Table::new(&[
        ("database", false),
        ("user", false),
        ("cl_active", true),
        ("cl_waiting", true),
        ("cl_active_cancel_req", true),
        ("cl_waiting_cancel_req", true),
        ("sv_active", true),
        ("sv_active_cancel", true),
        ("sv_being_canceled", true),
        ("sv_idle", true),
        ("sv_used", true),
        ("sv_tested", true),
        ("sv_login", true),
        ("maxwait", true),
        ("maxwait_us", true),
        ("pool_mode", false),
        // sluice's own
        ("cl_idle", true),
        ("pool_size", true),
        ("paused", true),
    ]);
    for p in shared.pool_list() {
        let g = p.gauges();
        let wait_us = g.longest_wait.as_micros() as u64;
        table.row(vec![
            t(p.console_database()),
            t(&p.key.user),
            // As PgBouncer counts it: logged in and not waiting, with or without a server.
            n((g.clients_active + g.clients_idle) as u64),
            n(g.clients_waiting as u64),
            z(),
            z(),
            n(g.servers_active as u64),
            z(),
            z(),
            n(g.servers_idle as u64),
            z(),
            z(),
            n(g.servers_connecting as u64),
            n(wait_us / 1_000_000),
            n(wait_us % 1_000_000),
            t(mode_name(p.settings.mode)),
            n(g.clients_idle as u64),
            n(g.size as u64),
            n(u8::from(g.paused)),
        ]);
    }
    table
}

/// Totals and averages per configured database, over its pools.
fn per_database(shared: &Shared) -> BTreeMap<String, (Totals, Averages)> {
    let mut map: BTreeMap<String, (Totals, Averages)> = shared
        .config()
        .databases
        .keys()
        .map(|k| (k.clone(), Default::default()))
        .collect();
    for p in shared.pool_list() {
        let (totals, avg) = map.entry(p.key.database.clone()).or_default();
        totals.add(&p.counters.totals());
        let a = p.counters.averages();
        // Rates add up; per-item times are weighted by how many items each pool had.
        let weigh = |acc: u64, acc_n: u64, v: u64, v_n: u64| {
            (acc * acc_n + v * v_n)
                .checked_div(acc_n + v_n)
                .unwrap_or(0)
        };
        avg.xact_time = weigh(avg.xact_time, avg.xact_count, a.xact_time, a.xact_count);
        avg.query_time = weigh(avg.query_time, avg.query_count, a.query_time, a.query_count);
        avg.wait_time = weigh(avg.wait_time, avg.query_count, a.wait_time, a.query_count);
        avg.xact_count += a.xact_count;
        avg.query_count += a.query_count;
        avg.recv += a.recv;
        avg.sent += a.sent;
    }
    map
}

fn show_stats(shared: &Shared) -> Table {
    let mut table = Table::new(&[
        ("database", false),
        ("total_xact_count", true),
        ("total_query_count", true),
        ("total_received", true),
        ("total_sent", true),
        ("total_xact_time", true),
        ("total_query_time", true),
        ("total_wait_time", true),
        ("avg_xact_count", true),
        ("avg_query_count", true),
        ("avg_recv", true),
        ("avg_sent", true),
        ("avg_xact_time", true),
        ("avg_query_time", true),
        ("avg_wait_time", true),
        // sluice's own: PgBouncer's name for total_query_count before 1.8, still read by some
        // exporters.
        ("total_requests", true),
    ]);
    for (db, (s, a)) in per_database(shared) {
        table.row(vec![
            t(db),
            n(s.xact_count),
            n(s.query_count),
            n(s.received),
            n(s.sent),
            n(s.xact_time_us),
            n(s.query_time_us),
            n(s.wait_time_us),
            n(a.xact_count),
            n(a.query_count),
            n(a.recv),
            n(a.sent),
            n(a.xact_time),
            n(a.query_time),
            n(a.wait_time),
            n(s.query_count),
        ]);
    }
    table
}

const STATS_SHORT: [(&str, bool); 8] = [
    ("database", false),
    ("xact_count", true),
    ("query_count", true),
    ("bytes_received", true),
    ("bytes_sent", true),
    ("xact_time", true),
    ("query_time", true),
    ("wait_time", true),
];

fn show_stats_totals(shared: &Shared) -> Table {
    let mut table = Table::new(&STATS_SHORT);
    for (db, (s, _)) in per_database(shared) {
        table.row(vec![
            t(db),
            n(s.xact_count),
            n(s.query_count),
            n(s.received),
            n(s.sent),
            n(s.xact_time_us),
            n(s.query_time_us),
            n(s.wait_time_us),
        ]);
    }
    table
}

fn show_stats_averages(shared: &Shared) -> Table {
    let mut table = Table::new(&STATS_SHORT);
    for (db, (_, a)) in per_database(shared) {
        table.row(vec![
            t(db),
            n(a.xact_count),
            n(a.query_count),
            n(a.recv),
            n(a.sent),
            n(a.xact_time),
            n(a.query_time),
            n(a.wait_time),
        ]);
    }
    table
}

const CONNECTION_COLUMNS: [(&str, bool); 23] = [
    ("type", false),
    ("user", false),
    ("database", false),
    ("state", false),
    ("addr", false),
    ("port", true),
    ("local_addr", false),
    ("local_port", true),
    ("connect_time", false),
    ("request_time", false),
    ("wait", true),
    ("wait_us", true),
    ("close_needed", true),
    ("ptr", false),
    ("link", false),
    ("remote_pid", true),
    ("tls", false),
    ("application_name", false),
    // sluice's own
    ("id", true),
    // What the client does now (docs/diagnosis.md): idle, active, waiting, idle in transaction;
    // for how long; its total wait for server connections; its last statement's fingerprint.
    ("activity", false),
    ("activity_us", true),
    ("wait_total_us", true),
    ("fingerprint", false),
];

/// The four activity columns of a client (empty for a server connection that is not lent).
fn activity_columns(c: Option<&crate::clients::ClientInfo>, now: u64) -> [Option<String>; 4] {
    let Some(c) = c else {
        return [t("idle"), z(), z(), e()];
    };
    let (state, since) = c.activity.state();
    let since = if since == 0 { c.connect_time } else { since };
    [
        t(crate::clients::activity::state_name(state)),
        n(now.saturating_sub(since)),
        n(c.activity.wait_total_us.load(Ordering::Relaxed)),
        Some(
            c.activity
                .current()
                .map(|f| f.text.to_string())
                .unwrap_or_default(),
        ),
    ]
}

fn client_ptr(id: u64) -> String {
    format!("c{id}")
}

fn server_ptr(id: u64) -> String {
    format!("s{id}")
}

/// Servers currently lent out: client id → server id.
fn links(pools: &[Arc<Pool>]) -> HashMap<u64, u64> {
    let mut m = HashMap::new();
    for p in pools {
        for s in p.servers.snapshot() {
            let c = s.client.load(Ordering::Relaxed);
            if c != 0 && s.state.load(Ordering::Relaxed) == SERVER_ACTIVE {
                m.insert(c, s.id);
            }
        }
    }
    m
}

fn show_clients(shared: &Shared) -> Table {
    let mut table = Table::new(&CONNECTION_COLUMNS);
    let links = links(&shared.pool_list());
    let now = now_us();
    for c in shared.clients.snapshot() {
        let wait_since = c.wait_since.load(Ordering::Relaxed);
        let waited = if wait_since == 0 {
            0
        } else {
            now.saturating_sub(wait_since)
        };
        let link = links.get(&c.id).copied();
        let (addr, port) = host_port(Some(c.addr));
        let (local_addr, local_port) = host_port(c.local);
        table.row(
            vec![
                t("C"),
                t(&c.user),
                t(&c.database),
                t(if wait_since != 0 { "waiting" } else { "active" }),
                t(addr),
                t(port),
                t(local_addr),
                t(local_port),
                t(timestamp(c.connect_time)),
                t(timestamp(c.request_time.load(Ordering::Relaxed))),
                n(waited / 1_000_000),
                n(waited % 1_000_000),
                z(),
                t(client_ptr(c.id)),
                Some(link.map(server_ptr).unwrap_or_default()),
                t(c.remote_pid),
                t(c.tls.as_deref().unwrap_or("")),
                t(&c.application_name),
                n(c.id),
            ]
            .into_iter()
            .chain(activity_columns(Some(&c), now))
            .collect(),
        );
    }
    table
}

fn show_servers(shared: &Shared) -> Table {
    let mut table = Table::new(&CONNECTION_COLUMNS);
    let clients: HashMap<u64, Arc<crate::clients::ClientInfo>> = shared
        .clients
        .snapshot()
        .into_iter()
        .map(|c| (c.id, c))
        .collect();
    let now = now_us();
    for p in shared.pool_list() {
        let target = p.target();
        for s in p.servers.snapshot() {
            let active = s.state.load(Ordering::Relaxed) == SERVER_ACTIVE;
            let client = s.client.load(Ordering::Relaxed);
            let (local_addr, local_port) = host_port(s.local);
            table.row(
                vec![
                    t("S"),
                    t(&target.user),
                    t(p.console_database()),
                    t(if active { "active" } else { "idle" }),
                    t(&target.host),
                    t(target.port),
                    t(local_addr),
                    t(local_port),
                    t(timestamp(s.connect_time)),
                    t(timestamp(s.request_time.load(Ordering::Relaxed))),
                    z(),
                    z(),
                    n(u8::from(p.must_reconnect(s.connect_time))),
                    t(server_ptr(s.id)),
                    Some(if active && client != 0 {
                        client_ptr(client)
                    } else {
                        String::new()
                    }),
                    t(s.remote_pid),
                    e(),
                    Some(
                        clients
                            .get(&client)
                            .map(|c| c.application_name.to_string())
                            .unwrap_or_default(),
                    ),
                    n(s.id),
                ]
                .into_iter()
                .chain(activity_columns(
                    clients.get(&client).filter(|_| active).map(|c| &**c),
                    now,
                ))
                .collect(),
            );
        }
    }
    table
}

fn show_databases(shared: &Shared) -> Table {
    let mut table = Table::new(&[
        ("name", false),
        ("host", false),
        ("port", true),
        ("database", false),
        ("force_user", false),
        ("pool_size", true),
        ("min_pool_size", true),
        ("reserve_pool", true),
        ("pool_mode", false),
        ("max_connections", true),
        ("current_connections", true),
        ("paused", true),
        ("disabled", true),
    ]);
    let config = shared.config();
    let p = &config.pooler;
    let pools = shared.pool_list();
    for (name, db) in &config.databases {
        let current: usize = pools
            .iter()
            .filter(|pool| pool.key.database == *name)
            .map(|pool| pool.counts().1)
            .sum();
        table.row(vec![
            t(name),
            t(&db.host),
            t(db.port),
            t(db.dbname.as_deref().unwrap_or(name)),
            Some(db.server_user.clone().unwrap_or_default()),
            n(db.pool_size.unwrap_or(p.default_pool_size) as u64),
            z(),
            z(),
            t(mode_name(db.pool_mode.unwrap_or(p.pool_mode))),
            z(),
            n(current as u64),
            n(u8::from(shared.console.is_paused(name))),
            z(),
        ]);
    }
    table
}

fn show_users(shared: &Shared) -> Table {
    let mut table = Table::new(&[("name", false), ("pool_mode", false)]);
    for (name, u) in &shared.config().users {
        table.row(vec![
            t(name),
            Some(u.pool_mode.map(mode_name).unwrap_or_default()),
        ]);
    }
    table
}

/// sluice's own: one row per replica of each routed pool, with its health and lag, and the
/// pool's routing counters (repeated on each of its replicas' rows).
fn show_replicas(shared: &Shared) -> Table {
    use crate::router::RouteReason;
    let mut cols: Vec<(&str, bool)> = vec![
        ("database", false),
        ("user", false),
        ("replica", false),
        ("healthy", false),
        ("in_recovery", false),
        ("lag_seconds", false),
        ("lag_bytes", true),
        ("replay_lsn", false),
        ("outstanding", true),
        ("last_error", false),
    ];
    cols.extend(RouteReason::ALL.iter().map(|r| (r.column(), true)));
    let mut table = Table::new(&cols);
    for p in shared.pool_list() {
        let Some(router) = p.router.as_deref() else {
            continue;
        };
        for i in 0..router.replicas.len() {
            let h = router.replicas.health(i).current();
            let mut row = vec![
                t(&p.key.database),
                t(&p.key.user),
                t(&router.addrs[i]),
                t(if h.healthy { "yes" } else { "no" }),
                h.in_recovery
                    .map(|r| if r { "yes" } else { "no" }.to_owned()),
                h.lag_seconds.map(|v| format!("{v:.3}")),
                h.lag_bytes.map(|v| v.to_string()),
                h.replay_lsn.map(crate::router::health::format_lsn),
                n(router.replicas.outstanding(i) as u64),
                Some(h.last_error.clone().unwrap_or_default()),
            ];
            row.extend(RouteReason::ALL.iter().map(|r| n(router.stats.get(*r))));
            table.row(row);
        }
    }
    table
}

fn show_lists(shared: &Shared) -> Table {
    let mut table = Table::new(&[("list", false), ("items", true)]);
    let pools = shared.pool_list();
    let servers: usize = pools.iter().map(|p| p.counts().1).sum();
    let used_clients = shared.clients.len();
    let login = shared.clients.connections().saturating_sub(used_clients);
    for (k, v) in [
        ("databases", shared.config().databases.len()),
        ("users", shared.config().users.len()),
        ("pools", pools.len()),
        ("free_clients", 0),
        ("used_clients", used_clients),
        ("login_clients", login),
        ("free_servers", 0),
        ("used_servers", servers),
        ("dns_names", 0),
        ("dns_zones", 0),
        ("dns_queries", 0),
        ("dns_pending", 0),
    ] {
        table.row(vec![t(k), n(v as u64)]);
    }
    table
}

fn duration(d: std::time::Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// `[pooler]` settings as (key, value, default). Keep in step with `PoolerConfig`.
fn pooler_settings(p: &PoolerConfig) -> Vec<(&'static str, String)> {
    vec![
        ("listen", p.listen.clone()),
        ("pool_mode", mode_name(p.pool_mode)),
        ("default_pool_size", p.default_pool_size.to_string()),
        ("max_client_conn", p.max_client_conn.to_string()),
        ("auth_type", auth_name(p.auth_type).to_owned()),
        ("query_wait_timeout", duration(p.query_wait_timeout)),
        ("server_connect_timeout", duration(p.server_connect_timeout)),
        ("server_login_retry", duration(p.server_login_retry)),
        ("server_idle_timeout", duration(p.server_idle_timeout)),
        ("server_lifetime", duration(p.server_lifetime)),
        ("server_reset_query", p.server_reset_query.clone()),
        ("client_login_timeout", duration(p.client_login_timeout)),
        ("client_idle_timeout", duration(p.client_idle_timeout)),
        (
            "idle_transaction_timeout",
            duration(p.idle_transaction_timeout),
        ),
        ("query_timeout", duration(p.query_timeout)),
        ("server_check_delay", duration(p.server_check_delay)),
        ("tcp_keepalive", p.tcp_keepalive.to_string()),
        ("tcp_keepidle", duration(p.tcp_keepidle)),
        ("tcp_keepintvl", duration(p.tcp_keepintvl)),
        ("tcp_keepcnt", p.tcp_keepcnt.to_string()),
        ("tcp_user_timeout", duration(p.tcp_user_timeout)),
        ("max_message_size", p.max_message_size.to_string()),
        (
            "max_prepared_statements",
            p.max_prepared_statements.to_string(),
        ),
        (
            "cache_unnamed_statements",
            p.cache_unnamed_statements.to_string(),
        ),
        ("listen_queue_size", p.listen_queue_size.to_string()),
        ("workers", p.workers.to_string()),
        ("shutdown_timeout", duration(p.shutdown_timeout)),
        (
            "metrics_listen",
            p.metrics_listen.clone().unwrap_or_default(),
        ),
        (
            "metrics_token",
            if p.metrics_token.is_some() {
                "********"
            } else {
                ""
            }
            .to_owned(),
        ),
        ("admin_users", p.admin_users.join(",")),
        ("stats_users", p.stats_users.join(",")),
        (
            "max_prepared_statement_bytes",
            p.max_prepared_statement_bytes.to_string(),
        ),
        ("max_message_memory", p.max_message_memory.to_string()),
        (
            "log_format",
            match p.log_format {
                crate::config::LogFormat::Text => "text",
                crate::config::LogFormat::Json => "json",
            }
            .to_owned(),
        ),
        ("error_log_interval", duration(p.error_log_interval)),
        ("auth_hba_file", p.auth_hba_file.clone().unwrap_or_default()),
        ("auth_hba", p.auth_hba.join("; ")),
        ("auth_user", p.auth_user.clone().unwrap_or_default()),
        ("auth_query", p.auth_query.clone()),
        ("auth_cache_ttl", duration(p.auth_cache_ttl)),
        (
            "max_db_client_connections",
            p.max_db_client_connections.to_string(),
        ),
        (
            "max_user_client_connections",
            p.max_user_client_connections.to_string(),
        ),
        ("max_db_connections", p.max_db_connections.to_string()),
        ("max_user_connections", p.max_user_connections.to_string()),
        ("client_tls_mode", serde_name(&p.client_tls_mode)),
        ("client_tls_cert_file", opt(&p.client_tls_cert_file)),
        ("client_tls_key_file", opt(&p.client_tls_key_file)),
        ("client_tls_ca_file", opt(&p.client_tls_ca_file)),
        ("server_tls_mode", p.server_tls_mode.to_string()),
        ("server_tls_ca_file", opt(&p.server_tls_ca_file)),
        ("server_tls_cert_file", opt(&p.server_tls_cert_file)),
        ("server_tls_key_file", opt(&p.server_tls_key_file)),
        ("query_stats", p.query_stats.to_string()),
        (
            "query_stats_max_entries",
            p.query_stats_max_entries.to_string(),
        ),
        ("log_min_duration", duration(p.log_min_duration)),
        ("log_parameters", p.log_parameters.to_string()),
    ]
}

fn opt(v: &Option<String>) -> String {
    v.clone().unwrap_or_default()
}

/// A setting's name as the config file spells it.
fn serde_name(v: &impl serde::Serialize) -> String {
    toml::Value::try_from(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn show_config(shared: &Shared) -> Table {
    let mut table = Table::new(&[
        ("key", false),
        ("value", false),
        ("default", false),
        ("changeable", false),
    ]);
    let defaults: HashMap<&str, String> = pooler_settings(&PoolerConfig::default())
        .into_iter()
        .collect();
    for (k, v) in pooler_settings(&shared.config().pooler) {
        table.row(vec![
            t(k),
            t(v),
            Some(defaults.get(k).cloned().unwrap_or_default()),
            t("no"),
        ]);
    }
    table
}

/// (address, port) columns; empty and "0" when unknown.
fn host_port(a: Option<std::net::SocketAddr>) -> (String, String) {
    match a {
        Some(a) => (a.ip().to_string(), a.port().to_string()),
        None => (String::new(), "0".into()),
    }
}

/// `YYYY-MM-DD HH:MM:SS UTC` for microseconds since the Unix epoch.
pub fn timestamp(us: u64) -> String {
    let secs = us / 1_000_000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01, in 400-year eras.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_config_lists_every_documented_pooler_key() {
        let example = include_str!("../../config/sluice.toml");
        let shown: Vec<&str> = pooler_settings(&PoolerConfig::default())
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        let mut in_pooler = false;
        for line in example.lines() {
            let line = line.trim();
            if line.starts_with('[') {
                in_pooler = line == "[pooler]";
                continue;
            }
            let line = line.trim_start_matches("# ");
            let Some((key, _)) = line.split_once(" = ") else {
                continue;
            };
            if in_pooler && !key.contains(' ') {
                assert!(
                    shown.contains(&key),
                    "SHOW CONFIG does not show pooler.{key}"
                );
            }
        }
    }

    #[test]
    fn timestamps() {
        assert_eq!(timestamp(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(timestamp(951_782_400_000_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(timestamp(1_700_000_000_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(timestamp(4_107_542_399_000_000), "2100-02-28 23:59:59 UTC");
    }
}
