//! [`Limits`]: the process-wide guards every session shares: the memory budgets of large
//! messages and of prepared-statement texts, and the incident counters and log.
//!
//! Owns: those three. Settings come from the config at start and at RELOAD ([`Limits::apply`]).

use std::sync::Arc;

use crate::config::Config;
use crate::memory::ByteBudget;
use crate::metrics::Incidents;

/// What every session and pool shares to stay within bounds and report trouble.
pub struct Limits {
    /// Bytes of large messages held whole (`max_message_memory`).
    pub messages: ByteBudget,
    /// Bytes of prepared-statement texts in every pool's registry
    /// (`max_prepared_statement_bytes`).
    pub statements: Arc<ByteBudget>,
    /// Refusal counters and the rate-limited incident log.
    pub incidents: Incidents,
}

impl Limits {
    pub fn new(config: &Config) -> Limits {
        let p = &config.pooler;
        Limits {
            messages: ByteBudget::new(p.max_message_memory),
            statements: Arc::new(ByteBudget::new(p.max_prepared_statement_bytes)),
            incidents: Incidents::new(p.error_log_interval),
        }
    }

    /// The settings of `config` (RELOAD): caps and the log interval apply at once.
    pub fn apply(&self, config: &Config) {
        let p = &config.pooler;
        self.messages.set_cap(p.max_message_memory);
        self.statements.set_cap(p.max_prepared_statement_bytes);
        self.incidents.set_interval(p.error_log_interval);
    }

    /// Refusals and the two budgets, for `/metrics`.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write as _;
        self.incidents.render(out);
        for (name, help, b) in [
            (
                "sluice_message_memory_bytes",
                "Bytes of large messages (over 64 KiB) held whole by sessions now.",
                &self.messages,
            ),
            (
                "sluice_prepared_statement_bytes",
                "Bytes of prepared-statement texts held in the statement registries now.",
                &*self.statements,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} gauge");
            let _ = writeln!(out, "{name} {}", b.used());
            // Base unit last (Prometheus' naming): sluice_message_memory_limit_bytes.
            let limit = format!("{}_limit_bytes", name.trim_end_matches("_bytes"));
            let _ = writeln!(out, "# HELP {limit} The configured cap on {name}.");
            let _ = writeln!(out, "# TYPE {limit} gauge");
            let _ = writeln!(out, "{limit} {}", b.cap());
        }
    }
}
