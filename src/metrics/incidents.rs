//! [`Incidents`]: what went wrong for clients, counted and logged for the operator: refusals
//! (a login refused, a client cut off) counted by a bounded set of reasons for
//! `sluice_client_refusals_total{reason}`, and every kind of incident (refusals, checkouts that
//! waited past `query_wait_timeout`, checkouts failed because the server cannot be reached,
//! Parses over the statement cap) logged at `warn`, rate-limited by [`LogLimiter`]: one line per
//! kind per `error_log_interval`, with the count of events it stands for and the latest one's
//! details.
//!
//! Owns: the refusal counters and the limiter. The per-pool counters of wait timeouts and
//! connect failures stay in [`super::PoolCounters`].

use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::ratelimit::{Line, LogLimiter};

/// Why a client was refused or cut off (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// Wrong password, or a user sluice does not know (the answer is the same: 28P01).
    BadPassword,
    /// A database not in the config (3D000).
    UnknownDatabase,
    /// Over `max_client_conn` (53300).
    MaxClientConn,
    /// A per-database or per-user cap (`max_db_client_connections`, `max_user_client_connections`,
    /// or a login's wait on `max_db_connections` / `max_user_connections`).
    ConnectionCap,
    /// No login within the login timeout (57P03).
    LoginTimeout,
    /// A malformed or unexpected message, at login or later (08P01).
    ProtocolViolation,
    /// A message over `max_message_size` (08P01).
    OversizedMessage,
    /// A large message that found no room under `max_message_memory` in time (53200).
    MessageMemory,
    /// The login needed a server connection and got none (08001, 57014, ...).
    ServerUnavailable,
    /// Not allowed: no user name, an admin command without the right, a replication
    /// connection, options sluice does not support (28000, 42501, 0A000).
    NotAllowed,
    /// Anything else.
    Other,
}

impl Refusal {
    pub const ALL: [Refusal; 11] = [
        Refusal::BadPassword,
        Refusal::UnknownDatabase,
        Refusal::MaxClientConn,
        Refusal::ConnectionCap,
        Refusal::LoginTimeout,
        Refusal::ProtocolViolation,
        Refusal::OversizedMessage,
        Refusal::MessageMemory,
        Refusal::ServerUnavailable,
        Refusal::NotAllowed,
        Refusal::Other,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Refusal::BadPassword => "bad_password",
            Refusal::UnknownDatabase => "unknown_database",
            Refusal::MaxClientConn => "max_client_conn",
            Refusal::ConnectionCap => "connection_cap",
            Refusal::LoginTimeout => "login_timeout",
            Refusal::ProtocolViolation => "protocol_violation",
            Refusal::OversizedMessage => "oversized_message",
            Refusal::MessageMemory => "message_memory",
            Refusal::ServerUnavailable => "server_unavailable",
            Refusal::NotAllowed => "not_allowed",
            Refusal::Other => "other",
        }
    }

    /// The reason for a FATAL error sluice sent a client, from its SQLSTATE (and, for 08P01,
    /// whether the message was too large).
    pub fn of(code: &str, oversized: bool) -> Refusal {
        match code {
            "28P01" => Refusal::BadPassword,
            "3D000" => Refusal::UnknownDatabase,
            // max_client_conn is refused by the listener itself; 53300 at login is a cap.
            "53300" => Refusal::ConnectionCap,
            "57P03" => Refusal::LoginTimeout,
            "08P01" if oversized => Refusal::OversizedMessage,
            "08P01" => Refusal::ProtocolViolation,
            "53200" => Refusal::MessageMemory,
            "28000" | "42501" | "0A000" => Refusal::NotAllowed,
            c if c.starts_with("08") || c == "57014" || c == "57P01" || c == "53400" => {
                Refusal::ServerUnavailable
            }
            _ => Refusal::Other,
        }
    }

    fn index(self) -> usize {
        Refusal::ALL
            .iter()
            .position(|&r| r == self)
            .expect("listed")
    }
}

/// A kind of incident, each with its own log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Incident {
    Refused(Refusal),
    /// A checkout waited past `query_wait_timeout` (57014).
    WaitTimeout,
    /// A checkout failed: the server could not be reached or refused the login (08001...).
    ConnectFailed,
    /// A Parse would have taken the statement registry past `max_prepared_statement_bytes`.
    StatementMemory,
}

impl Incident {
    /// The `kind` field of its log line.
    pub fn label(self) -> &'static str {
        match self {
            Incident::Refused(_) => "refusal",
            Incident::WaitTimeout => "wait_timeout",
            Incident::ConnectFailed => "connect_failed",
            Incident::StatementMemory => "statement_memory",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Incident::Refused(_) => "client refused",
            Incident::WaitTimeout => {
                "query_wait_timeout reached: no server connection for a client"
            }
            Incident::ConnectFailed => "client request failed: no server connection could be made",
            Incident::StatementMemory => "Parse refused: max_prepared_statement_bytes reached",
        }
    }
}

/// Refusal counters and the rate-limited incident log.
pub struct Incidents {
    refusals: [AtomicU64; Refusal::ALL.len()],
    log: Mutex<LogLimiter<Incident>>,
}

impl Incidents {
    pub fn new(interval: Duration) -> Incidents {
        Incidents {
            refusals: Default::default(),
            log: Mutex::new(LogLimiter::new(interval)),
        }
    }

    pub fn set_interval(&self, interval: Duration) {
        self.limiter().set_interval(interval);
    }

    fn limiter(&self) -> std::sync::MutexGuard<'_, LogLimiter<Incident>> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A client refused or cut off for `reason`; `detail` (who, why) is made only if logged.
    pub fn refused(&self, reason: Refusal, detail: impl FnOnce() -> String) {
        self.refusals[reason.index()].fetch_add(1, Ordering::Relaxed);
        self.note(Incident::Refused(reason), detail);
    }

    /// Refusals counted for `reason` so far.
    pub fn refusals(&self, reason: Refusal) -> u64 {
        self.refusals[reason.index()].load(Ordering::Relaxed)
    }

    /// An incident (counted elsewhere, or a refusal counted by [`Self::refused`]): logged if
    /// its kind has not been logged this interval.
    pub fn note(&self, kind: Incident, detail: impl FnOnce() -> String) {
        let line = self.limiter().note(kind, Instant::now(), detail);
        if let Some(line) = line {
            log(&line);
        }
    }

    /// Logs the counts that waited for their interval to end (called every second).
    pub fn flush(&self) {
        let lines = self.limiter().flush(Instant::now());
        for line in &lines {
            log(line);
        }
    }

    /// `sluice_client_refusals_total`, for `/metrics`.
    pub fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP sluice_client_refusals_total Clients refused at login or cut off by sluice, by reason."
        );
        let _ = writeln!(out, "# TYPE sluice_client_refusals_total counter");
        for r in Refusal::ALL {
            let _ = writeln!(
                out,
                "sluice_client_refusals_total{{reason=\"{}\"}} {}",
                r.label(),
                self.refusals(r)
            );
        }
    }
}

fn log(line: &Line<Incident>) {
    let what = line.kind.describe();
    match line.kind {
        Incident::Refused(r) => tracing::warn!(
            kind = "refusal",
            reason = r.label(),
            count = line.count,
            last = %line.detail,
            "{what}"
        ),
        k => tracing::warn!(kind = k.label(), count = line.count, last = %line.detail, "{what}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_reasons_from_sqlstates() {
        assert_eq!(Refusal::of("28P01", false), Refusal::BadPassword);
        assert_eq!(Refusal::of("08P01", true), Refusal::OversizedMessage);
        assert_eq!(Refusal::of("08P01", false), Refusal::ProtocolViolation);
        assert_eq!(Refusal::of("08001", false), Refusal::ServerUnavailable);
        assert_eq!(Refusal::of("XX000", false), Refusal::Other);
        let labels: std::collections::HashSet<_> = Refusal::ALL.iter().map(|r| r.label()).collect();
        assert_eq!(labels.len(), Refusal::ALL.len(), "labels are distinct");
    }

    #[test]
    fn counts_render_by_reason() {
        let i = Incidents::new(Duration::from_secs(10));
        i.refused(Refusal::BadPassword, || "user app".into());
        i.refused(Refusal::BadPassword, || "user app".into());
        let mut page = String::new();
        i.render(&mut page);
        assert!(page.contains("sluice_client_refusals_total{reason=\"bad_password\"} 2\n"));
        assert!(page.contains("sluice_client_refusals_total{reason=\"login_timeout\"} 0\n"));
    }
}
