//! SHOW QUERIES: the query statistics (`crate::diag`), heaviest total time first. Times in
//! microseconds, like PgBouncer's SHOW STATS. Shows fingerprints only, never literal values.

use super::show::Table;
use crate::shared::Shared;

pub(super) const QUERY_COLUMNS: [(&str, bool); 14] = [
    ("database", false),
    ("user", false),
    ("calls", true),
    ("errors", true),
    ("errors_by_class", false),
    ("rows", true),
    ("total_us", true),
    ("mean_us", true),
    ("max_us", true),
    ("p50_us", true),
    ("p99_us", true),
    ("wait_us", true),
    ("held_us", true),
    ("fingerprint", false),
];

pub(super) fn show_queries(shared: &Shared) -> Table {
    let mut table = Table::new(&QUERY_COLUMNS);
    for q in shared.query_stats.snapshot() {
        let n = |v: u64| Some(v.to_string());
        table.row(vec![
            Some(q.database.to_string()),
            Some(q.user.to_string()),
            n(q.calls),
            n(q.error_count()),
            Some(q.errors_text()),
            n(q.rows),
            n(q.total_us),
            n(q.mean_us()),
            n(q.max_us),
            n(q.hist.quantile(0.5).min(q.max_us)),
            n(q.hist.quantile(0.99).min(q.max_us)),
            n(q.wait_us),
            n(q.held_us),
            Some(q.fingerprint.text.to_string()),
        ]);
    }
    table
}
