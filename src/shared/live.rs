//! The JSON the metrics listener serves besides `/metrics`: `/api/live` (what the live page
//! polls) and `/debug/queries` (the query statistics). Fingerprints, never literal values;
//! client addresses and application names, never passwords or parameters.

use std::time::Duration;

use serde_json::{Value, json};

use super::Shared;
use crate::clients::activity::{IDLE_IN_TRANSACTION, state_name};
use crate::clock::now_us;
use crate::diag::Entry;
use crate::pool::Role;

/// Top queries on the live page.
const TOP: usize = 15;

fn ms(us: u64) -> f64 {
    (us as f64 / 1000.0 * 1000.0).round() / 1000.0
}

fn query_json(q: &Entry) -> Value {
    json!({
        "database": &*q.database,
        "user": &*q.user,
        "fingerprint": &*q.fingerprint.text,
        "calls": q.calls,
        "errors": q.error_count(),
        "errors_by_class": q.errors.iter().map(|(c, n)| (String::from_utf8_lossy(c).into_owned(), *n)).collect::<Vec<_>>(),
        "rows": q.rows,
        "total_ms": ms(q.total_us),
        "mean_ms": ms(q.mean_us()),
        "max_ms": ms(q.max_us),
        "p50_ms": ms(q.hist.quantile(0.5).min(q.max_us)),
        "p99_ms": ms(q.hist.quantile(0.99).min(q.max_us)),
        "wait_ms": ms(q.wait_us),
        "held_ms": ms(q.held_us),
    })
}

impl Shared {
    /// `/debug/queries`: every entry, heaviest first.
    pub fn queries_json(&self) -> String {
        let st = &self.query_stats;
        let entries = st.snapshot();
        json!({
            "enabled": self.config().pooler.query_stats,
            "since_us": st.since_us(),
            "entries": entries.len(),
            "max_entries": st.max_entries(),
            "evicted": st.evicted(),
            "queries": entries.iter().map(query_json).collect::<Vec<_>>(),
        })
        .to_string()
    }

    /// `/api/live`: pools, holders, replicas, top queries.
    pub fn live_json(&self) -> String {
        let now = now_us();
        let holders_by_pool = self.idle_in_transaction();
        let mut pools = Vec::new();
        for p in self.pool_list() {
            let g = p.gauges();
            let key = p.key.to_string();
            let (iit, iit_age) = holders_by_pool.get(&p.key).copied().unwrap_or((0, 0));
            let wait_p99: Vec<Value> = self
                .live
                .wait_p99(&key)
                .into_iter()
                .map(|(t, v)| json!([t / 1000, v]))
                .collect();
            pools.push(json!({
                "name": key,
                "database": p.key.database,
                "user": p.key.user,
                "role": match p.key.role { Role::Primary => "primary", Role::Replica(_) => "replica" },
                "size": g.size,
                "servers_active": g.servers_active,
                "servers_idle": g.servers_idle,
                "clients_active": g.clients_active,
                "clients_waiting": g.clients_waiting,
                "clients_idle": g.clients_idle,
                "saturation": if g.size == 0 { 0.0 } else { g.servers_active as f64 / g.size as f64 },
                "longest_wait_s": g.longest_wait.as_secs_f64(),
                "paused": g.paused,
                "idle_in_transaction": iit,
                "idle_in_transaction_max_s": iit_age as f64 / 1e6,
                "wait_p99_ms": wait_p99,
                "errors_last_minute": self.live.recent_errors(&key, Duration::from_secs(60)),
                "errors_total": p.counters.errors(),
            }));
        }
        let mut holders = Vec::new();
        for c in self.clients.snapshot() {
            let (state, since) = c.activity.state();
            if state != IDLE_IN_TRANSACTION {
                continue;
            }
            holders.push(json!({
                "pool": c.pool.as_ref().map(|p| p.key.to_string()),
                "client": c.addr.to_string(),
                "application_name": c.application_name,
                "state": state_name(state),
                "age_s": now.saturating_sub(since) as f64 / 1e6,
                "fingerprint": c.activity.current().map(|f| f.text.to_string()),
            }));
        }
        holders.sort_by(|a, b| {
            b["age_s"]
                .as_f64()
                .partial_cmp(&a["age_s"].as_f64())
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        let mut replicas = Vec::new();
        for p in self.pool_list() {
            let Some(router) = p.router.as_deref() else {
                continue;
            };
            for i in 0..router.replicas.len() {
                let h = router.replicas.health(i).current();
                replicas.push(json!({
                    "database": p.key.database,
                    "user": p.key.user,
                    "replica": router.addrs[i],
                    "healthy": h.healthy,
                    "lag_seconds": h.lag_seconds,
                    "lag_bytes": h.lag_bytes,
                    "last_error": h.last_error,
                }));
            }
        }
        let entries = self.query_stats.snapshot();
        json!({
            "now_ms": now / 1000,
            "version": env!("CARGO_PKG_VERSION"),
            "pools": pools,
            "holders": holders,
            "replicas": replicas,
            "queries": entries.iter().take(TOP).map(query_json).collect::<Vec<_>>(),
            "query_stats": {
                "enabled": self.config().pooler.query_stats,
                "entries": entries.len(),
                "evicted": self.query_stats.evicted(),
            },
        })
        .to_string()
    }

    /// A reading of every pool for the live page's history (the statistics upkeep calls it
    /// every `diag::live::EVERY`).
    pub fn take_live_reading(&self) {
        let now = now_us();
        let mut keys = Vec::new();
        for p in self.pool_list() {
            let key = p.key.to_string();
            self.live.push(
                &key,
                now,
                p.counters.wait_buckets.snapshot(),
                p.counters.errors(),
            );
            keys.push(key);
        }
        self.live.retain(&keys);
    }
}
