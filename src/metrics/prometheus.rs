//! The `/metrics` page in Prometheus text format (version 0.0.4), written from readings of the
//! pools ([`PoolSample`]) and the pooler ([`Globals`]) taken at scrape time.
//!
//! Labels are bounded: database, user and role per pool (and `replica`, a replica pool's
//! host:port), plus a close reason, an SQLSTATE class or a routing reason. Nothing is labelled
//! per client, query or statement. The metric names and label sets are an interface
//! (tests/metrics.rs checks them).

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use super::PoolLabels;
use super::counters::{CloseReason, PoolCounters};
use super::gauges::PoolGauges;
use super::histograms::HistogramRecorder;
use crate::router::{RouteReason, Router};

/// One pool as a scrape sees it.
pub struct PoolSample<'a> {
    pub labels: PoolLabels,
    pub gauges: PoolGauges,
    pub counters: &'a PoolCounters,
    /// A primary pool's routing, when its database has replicas.
    pub router: Option<&'a Router>,
    /// LISTEN / NOTIFY, once a client of the pool has listened.
    pub pubsub: Option<PubsubSample>,
}

/// A pool's LISTEN / NOTIFY numbers (transaction mode), read from its hub at scrape time.
#[derive(Debug, Clone, Copy, Default)]
pub struct PubsubSample {
    /// (client, channel) subscriptions in effect.
    pub subscriptions: usize,
    /// Channels the dedicated connection listens to.
    pub channels: usize,
    /// The dedicated connection is up.
    pub connected: bool,
    /// Notifications put in a client's queue.
    pub deliveries: u64,
    /// Notifications lost to a queue overflow.
    pub drops: u64,
    /// Clients whose queue overflowed (their connection was ended).
    pub overflows: u64,
}

/// The pooler-wide gauges.
#[derive(Debug, Clone, Copy, Default)]
pub struct Globals {
    /// Client connections open (logging in or logged in, the admin console's included).
    pub client_connections: usize,
    /// `max_client_conn`.
    pub max_client_connections: usize,
    /// Shutting down.
    pub draining: bool,
}

/// Escapes a label value for the text format.
fn esc(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// (name, help, value) of a per-pool gauge.
type GaugeDef = (&'static str, &'static str, fn(&PoolGauges) -> f64);
/// (name, help, value) of a per-pool counter.
type CounterDef = (&'static str, &'static str, fn(&PoolCounters) -> u64);

/// `database`, `user`, `role` and, for a replica's pool, `replica` (its host:port).
fn pool_labels(p: &PoolLabels) -> String {
    let mut l = format!(
        "database=\"{}\",user=\"{}\",role=\"{}\"",
        esc(&p.database),
        esc(&p.user),
        p.role
    );
    if let Some(addr) = &p.replica {
        let _ = write!(l, ",replica=\"{}\"", esc(addr));
    }
    l
}

/// Replica health and routing decisions of the primary pools that have replicas.
fn render_routing(out: &mut String, pools: &[PoolSample<'_>]) {
    let routed: Vec<(&PoolSample<'_>, &Router)> =
        pools.iter().filter_map(|p| Some((p, p.router?))).collect();
    if routed.is_empty() {
        return;
    }
    let base = |p: &PoolSample<'_>| {
        format!(
            "database=\"{}\",user=\"{}\"",
            esc(&p.labels.database),
            esc(&p.labels.user)
        )
    };
    family(
        out,
        "sluice_routed_total",
        "counter",
        "Routing decisions (one per autocommit statement, batch up to Sync, or transaction started) by target (primary, replica) and reason.",
    );
    for (p, r) in &routed {
        for reason in RouteReason::ALL {
            let _ = writeln!(
                out,
                "sluice_routed_total{{{},role=\"primary\",target=\"{}\",reason=\"{}\"}} {}",
                base(p),
                reason.target(),
                reason.label(),
                r.stats.get(reason)
            );
        }
    }
    let healths: Vec<_> = routed
        .iter()
        .flat_map(|(p, r)| {
            (0..r.replicas.len()).map(move |i| {
                let l = format!("{},replica=\"{}\"", base(p), esc(&r.addrs[i]));
                (l, r.replicas.health(i).current())
            })
        })
        .collect();
    family(
        out,
        "sluice_replica_healthy",
        "gauge",
        "1 while the replica is in rotation (reachable, in recovery, within max_replica_lag), else 0.",
    );
    for (l, h) in &healths {
        let _ = writeln!(out, "sluice_replica_healthy{{{l}}} {}", u8::from(h.healthy));
    }
    family(
        out,
        "sluice_replica_lag_seconds",
        "gauge",
        "Upper bound on how old the newest commit the replica is missing can be; 0 when caught up. Absent while unknown.",
    );
    for (l, h) in &healths {
        if let Some(v) = h.lag_seconds {
            let _ = writeln!(out, "sluice_replica_lag_seconds{{{l}}} {v}");
        }
    }
    family(
        out,
        "sluice_replica_lag_bytes",
        "gauge",
        "WAL bytes the replica has not replayed yet (primary write position minus replay position). Absent while unknown.",
    );
    for (l, h) in &healths {
        if let Some(v) = h.lag_bytes {
            let _ = writeln!(out, "sluice_replica_lag_bytes{{{l}}} {v}");
        }
    }
}

/// LISTEN / NOTIFY of the pools where a client has listened (transaction mode).
fn render_pubsub(out: &mut String, pools: &[PoolSample<'_>]) {
    let rows: Vec<(String, PubsubSample)> = pools
        .iter()
        .filter_map(|p| Some((pool_labels(&p.labels), p.pubsub?)))
        .collect();
    if rows.is_empty() {
        return;
    }
    type Def = (
        &'static str,
        &'static str,
        &'static str,
        fn(&PubsubSample) -> f64,
    );
    let defs: [Def; 6] = [
        (
            "sluice_listen_subscriptions",
            "gauge",
            "LISTEN subscriptions in effect (one per client and channel), transaction mode.",
            |s| s.subscriptions as f64,
        ),
        (
            "sluice_listen_channels",
            "gauge",
            "Channels the pool's dedicated listening connection listens to.",
            |s| s.channels as f64,
        ),
        (
            "sluice_listen_connected",
            "gauge",
            "1 while the pool's dedicated listening connection is up, else 0.",
            |s| u8::from(s.connected) as f64,
        ),
        (
            "sluice_listen_deliveries_total",
            "counter",
            "Notifications queued for a subscribed client.",
            |s| s.deliveries as f64,
        ),
        (
            "sluice_listen_drops_total",
            "counter",
            "Notifications lost because a client's queue overflowed (listen_queue_size).",
            |s| s.drops as f64,
        ),
        (
            "sluice_listen_overflows_total",
            "counter",
            "Clients whose notification queue overflowed; their connection was ended.",
            |s| s.overflows as f64,
        ),
    ];
    for (name, kind, help, value) in defs {
        family(out, name, kind, help);
        for (l, s) in &rows {
            let _ = writeln!(out, "{name}{{{l}}} {}", value(s));
        }
    }
}

/// The whole `/metrics` page: `pools` in the order given, then the pooler-wide gauges, the
/// routing of the pools that have replicas, and the histograms.
pub fn render(
    pools: &[PoolSample<'_>],
    globals: &Globals,
    histograms: Option<&HistogramRecorder>,
) -> String {
    let rows: Vec<(String, &PoolCounters, PoolGauges)> = pools
        .iter()
        .map(|p| (pool_labels(&p.labels), p.counters, p.gauges))
        .collect();
    let mut out = String::with_capacity(4096 + rows.len() * 4096);

    family(
        &mut out,
        "sluice_pool_clients",
        "gauge",
        "Client sessions of the pool by state: active (holding a server connection), waiting (for one), idle (logged in, neither).",
    );
    for (l, _, g) in &rows {
        for (state, v) in [
            ("active", g.clients_active),
            ("waiting", g.clients_waiting),
            ("idle", g.clients_idle),
        ] {
            let _ = writeln!(out, "sluice_pool_clients{{{l},state=\"{state}\"}} {v}");
        }
    }
    family(
        &mut out,
        "sluice_pool_servers",
        "gauge",
        "Server connections of the pool by state: active (lent to a client), idle (in the pool), connecting (being opened).",
    );
    for (l, _, g) in &rows {
        for (state, v) in [
            ("active", g.servers_active),
            ("idle", g.servers_idle),
            ("connecting", g.servers_connecting),
        ] {
            let _ = writeln!(out, "sluice_pool_servers{{{l},state=\"{state}\"}} {v}");
        }
    }
    let gauges: [GaugeDef; 4] = [
        (
            "sluice_pool_size",
            "Configured maximum number of server connections of the pool (pool_size).",
            |g| g.size as f64,
        ),
        (
            "sluice_pool_utilization",
            "Share of the pool's server connections lent out or being opened, from 0 to 1.",
            |g| g.utilization(),
        ),
        (
            "sluice_pool_longest_wait_seconds",
            "How long the longest-waiting client of the pool has been waiting for a server connection so far; 0 when none waits.",
            |g| g.longest_wait.as_secs_f64(),
        ),
        (
            "sluice_pool_paused",
            "1 while the pool is paused from the admin console (PAUSE, KILL), else 0.",
            |g| f64::from(u8::from(g.paused)),
        ),
    ];
    for (name, help, f) in gauges {
        family(&mut out, name, "gauge", help);
        for (l, _, g) in &rows {
            let _ = writeln!(out, "{name}{{{l}}} {}", f(g));
        }
    }

    let counters: [CounterDef; 10] = [
        (
            "sluice_transactions_total",
            "Transactions completed (a ReadyForQuery reporting idle after requests).",
            |c| c.transactions.load(Ordering::Relaxed),
        ),
        (
            "sluice_queries_total",
            "Requests completed: simple Queries and extended-protocol batches up to Sync.",
            |c| c.queries.load(Ordering::Relaxed),
        ),
        (
            "sluice_client_received_bytes_total",
            "Bytes received from the pool's clients.",
            |c| c.received.load(Ordering::Relaxed),
        ),
        (
            "sluice_client_sent_bytes_total",
            "Bytes sent to the pool's clients.",
            |c| c.sent.load(Ordering::Relaxed),
        ),
        (
            "sluice_server_connections_opened_total",
            "Server connections opened (logged in) by the pool.",
            |c| c.connects.load(Ordering::Relaxed),
        ),
        (
            "sluice_server_connect_failures_total",
            "Attempts to open a server connection that failed (unreachable, timed out, login refused).",
            |c| c.connect_failures.load(Ordering::Relaxed),
        ),
        (
            "sluice_client_wait_timeouts_total",
            "Checkouts that found no server connection within query_wait_timeout (the client got 57014).",
            |c| c.wait_timeouts.load(Ordering::Relaxed),
        ),
        (
            "sluice_prepared_cache_hits_total",
            "Prepared statements found already prepared on the server connection (transaction mode).",
            |c| c.prepared_hits.load(Ordering::Relaxed),
        ),
        (
            "sluice_prepared_cache_misses_total",
            "Prepared statements that had to be prepared on the server connection first.",
            |c| c.prepared_misses.load(Ordering::Relaxed),
        ),
        (
            "sluice_prepared_cache_evictions_total",
            "Prepared statements closed on a server connection to stay within max_prepared_statements.",
            |c| c.prepared_evictions.load(Ordering::Relaxed),
        ),
    ];
    for (name, help, f) in counters {
        family(&mut out, name, "counter", help);
        for (l, p, _) in &rows {
            let _ = writeln!(out, "{name}{{{l}}} {}", f(p));
        }
    }
    family(
        &mut out,
        "sluice_server_connections_closed_total",
        "counter",
        "Server connections closed, by reason: idle_timeout, lifetime, unclean (returned mid-transaction or after a failed reset), server_lost (died in use or while idle), admin (PAUSE, KILL, RECONNECT).",
    );
    for (l, p, _) in &rows {
        for r in CloseReason::ALL {
            let _ = writeln!(
                out,
                "sluice_server_connections_closed_total{{{l},reason=\"{}\"}} {}",
                r.label(),
                p.closed_count(r)
            );
        }
    }
    family(
        &mut out,
        "sluice_client_errors_total",
        "counter",
        "ErrorResponses sent to clients, by SQLSTATE class (its first two characters), whether PostgreSQL or sluice raised them.",
    );
    for (l, p, _) in &rows {
        for (class, n) in p.errors() {
            let _ = writeln!(
                out,
                "sluice_client_errors_total{{{l},class=\"{}\"}} {n}",
                esc(&class)
            );
        }
    }

    family(
        &mut out,
        "sluice_client_connections",
        "gauge",
        "Client connections open, logging in or logged in, admin console included.",
    );
    let _ = writeln!(
        out,
        "sluice_client_connections {}",
        globals.client_connections
    );
    family(
        &mut out,
        "sluice_max_client_connections",
        "gauge",
        "Configured max_client_conn.",
    );
    let _ = writeln!(
        out,
        "sluice_max_client_connections {}",
        globals.max_client_connections
    );
    family(
        &mut out,
        "sluice_draining",
        "gauge",
        "1 while sluice is shutting down and draining clients, else 0.",
    );
    let _ = writeln!(out, "sluice_draining {}", u8::from(globals.draining));
    family(
        &mut out,
        "sluice_build_info",
        "gauge",
        "Always 1; the version is in the label.",
    );
    let _ = writeln!(
        out,
        "sluice_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );

    render_routing(&mut out, pools);
    render_pubsub(&mut out, pools);

    if let Some(h) = histograms {
        out.push_str(&h.render());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(labels: PoolLabels, counters: &PoolCounters) -> PoolSample<'_> {
        PoolSample {
            labels,
            gauges: PoolGauges {
                clients_active: 2,
                servers_active: 2,
                servers_idle: 1,
                size: 4,
                ..PoolGauges::default()
            },
            counters,
            router: None,
            pubsub: None,
        }
    }

    #[test]
    fn labels_are_escaped_and_a_replica_pool_names_its_replica() {
        assert_eq!(esc("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        let primary = PoolLabels {
            database: "app".into(),
            user: "u\"1".into(),
            role: "primary",
            replica: None,
        };
        assert_eq!(
            pool_labels(&primary),
            "database=\"app\",user=\"u\\\"1\",role=\"primary\""
        );
        let replica = PoolLabels {
            role: "replica",
            replica: Some("10.0.0.2:5433".into()),
            ..primary
        };
        assert!(pool_labels(&replica).ends_with(",role=\"replica\",replica=\"10.0.0.2:5433\""));
    }

    #[test]
    fn a_page_has_every_family_once_with_the_pools_samples() {
        let counters = PoolCounters::default();
        counters.transactions.fetch_add(7, Ordering::Relaxed);
        counters.closed(CloseReason::Lifetime);
        counters.error_code("57014");
        let labels = PoolLabels {
            database: "app".into(),
            user: "app".into(),
            role: "primary",
            replica: None,
        };
        let page = render(
            &[sample(labels, &counters)],
            &Globals {
                client_connections: 3,
                max_client_connections: 100,
                draining: false,
            },
            None,
        );
        let l = "database=\"app\",user=\"app\",role=\"primary\"";
        for line in [
            format!("sluice_pool_clients{{{l},state=\"active\"}} 2"),
            format!("sluice_pool_servers{{{l},state=\"idle\"}} 1"),
            format!("sluice_pool_size{{{l}}} 4"),
            format!("sluice_pool_utilization{{{l}}} 0.5"),
            format!("sluice_transactions_total{{{l}}} 7"),
            format!("sluice_server_connections_closed_total{{{l},reason=\"lifetime\"}} 1"),
            format!("sluice_client_errors_total{{{l},class=\"57\"}} 1"),
            "sluice_client_connections 3".to_owned(),
            "sluice_max_client_connections 100".to_owned(),
            "sluice_draining 0".to_owned(),
        ] {
            assert!(page.lines().any(|x| x == line), "no {line:?} in\n{page}");
        }
        for family in [
            "sluice_pool_clients",
            "sluice_transactions_total",
            "sluice_build_info",
        ] {
            assert_eq!(
                page.matches(&format!("# TYPE {family} ")).count(),
                1,
                "{family}"
            );
        }
        assert!(
            !page.contains("sluice_routed_total"),
            "no routed pools, no routing families"
        );
        assert!(
            !page.contains("sluice_listen_"),
            "nobody listened, no LISTEN families"
        );
    }

    #[test]
    fn listen_families_for_a_pool_where_a_client_listened() {
        let counters = PoolCounters::default();
        let labels = PoolLabels {
            database: "app".into(),
            user: "app".into(),
            role: "primary",
            replica: None,
        };
        let mut s = sample(labels, &counters);
        s.pubsub = Some(PubsubSample {
            subscriptions: 3,
            channels: 2,
            connected: true,
            deliveries: 10,
            drops: 4,
            overflows: 1,
        });
        let page = render(&[s], &Globals::default(), None);
        let l = "database=\"app\",user=\"app\",role=\"primary\"";
        for line in [
            format!("sluice_listen_subscriptions{{{l}}} 3"),
            format!("sluice_listen_channels{{{l}}} 2"),
            format!("sluice_listen_connected{{{l}}} 1"),
            format!("sluice_listen_deliveries_total{{{l}}} 10"),
            format!("sluice_listen_drops_total{{{l}}} 4"),
            format!("sluice_listen_overflows_total{{{l}}} 1"),
        ] {
            assert!(page.lines().any(|x| x == line), "no {line:?} in\n{page}");
        }
    }
}
