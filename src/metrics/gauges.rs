//! [`PoolGauges`]: how many clients and server connections of a pool are in each state, and the
//! longest current wait.
//!
//! Gauges are not kept anywhere: they are computed when someone asks (a scrape, SHOW POOLS) from
//! a reading of the pool's own state ([`PoolState`], taken by `Pool::gauges`). They cannot drift
//! under churn and return to exactly 0 when the load stops; the hot path pays nothing.

use std::time::{Duration, Instant};

/// A reading of one pool's state, the inputs of [`PoolGauges::compute`].
#[derive(Debug, Clone, Copy, Default)]
pub struct PoolState {
    /// Server connections idle in the pool.
    pub idle: usize,
    /// Server connections the pool is responsible for: idle, lent out or being opened.
    pub open: usize,
    /// Server connections lent out (one per client holding one).
    pub lent: usize,
    /// Checkouts queued for a connection, and when the oldest started.
    pub queued: usize,
    pub queued_since: Option<Instant>,
    /// Checkouts held by PAUSE, and when the oldest started.
    pub held: usize,
    pub held_since: Option<Instant>,
    /// Logged-in client sessions of the pool.
    pub sessions: usize,
    /// Of those, the ones busy on (or waiting for) another pool: a primary pool's sessions
    /// running on its replicas' pools.
    pub elsewhere: usize,
    /// The pool's size.
    pub size: usize,
    pub paused: bool,
}

/// Gauges of one pool at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PoolGauges {
    /// Clients holding a server connection.
    pub clients_active: usize,
    /// Clients waiting for one (in the pool's queue or held by PAUSE).
    pub clients_waiting: usize,
    /// Logged-in clients doing neither.
    pub clients_idle: usize,
    pub servers_active: usize,
    pub servers_idle: usize,
    /// Being connected and logged in.
    pub servers_connecting: usize,
    pub size: usize,
    /// The longest current wait.
    pub longest_wait: Duration,
    pub paused: bool,
}

impl PoolGauges {
    /// The gauges of a pool whose state was `s` at `now`.
    pub fn compute(s: &PoolState, now: Instant) -> PoolGauges {
        let longest = [s.queued_since, s.held_since]
            .into_iter()
            .flatten()
            .map(|t| now.saturating_duration_since(t))
            .max()
            .unwrap_or_default();
        let waiting = s.queued + s.held;
        PoolGauges {
            clients_active: s.lent,
            clients_waiting: waiting,
            clients_idle: s.sessions.saturating_sub(s.lent + waiting + s.elsewhere),
            servers_active: s.lent,
            servers_idle: s.idle,
            servers_connecting: s.open.saturating_sub(s.idle + s.lent),
            size: s.size,
            longest_wait: longest,
            paused: s.paused,
        }
    }

    /// Share of the pool's connections in use (lent out or being connected), 0 to 1.
    pub fn utilization(&self) -> f64 {
        if self.size == 0 {
            return 0.0;
        }
        ((self.servers_active + self.servers_connecting) as f64 / self.size as f64).min(1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_add_up() {
        let now = Instant::now();
        let s = PoolState {
            idle: 1,
            open: 5,
            lent: 3,
            queued: 2,
            queued_since: Some(now - Duration::from_millis(30)),
            held: 1,
            held_since: Some(now - Duration::from_millis(70)),
            sessions: 10,
            elsewhere: 2,
            size: 5,
            paused: true,
        };
        let g = PoolGauges::compute(&s, now);
        assert_eq!(
            (g.clients_active, g.clients_waiting, g.clients_idle),
            (3, 3, 2)
        );
        assert_eq!(
            (g.servers_active, g.servers_idle, g.servers_connecting),
            (3, 1, 1)
        );
        assert_eq!(g.longest_wait, Duration::from_millis(70));
        assert!(g.paused);
        assert_eq!(g.utilization(), 0.8);
    }

    #[test]
    fn an_idle_pool_is_all_zero_and_readings_never_underflow() {
        let now = Instant::now();
        let g = PoolGauges::compute(&PoolState::default(), now);
        assert_eq!(g, PoolGauges::default());
        assert_eq!(g.utilization(), 0.0);
        // Readings taken one after another can disagree for a moment (a connection lent out
        // between two loads): counts clamp at zero and utilization at one.
        let g = PoolGauges::compute(
            &PoolState {
                open: 1,
                idle: 1,
                lent: 2,
                sessions: 1,
                size: 2,
                ..PoolState::default()
            },
            now,
        );
        assert_eq!((g.clients_idle, g.servers_connecting), (0, 0));
        assert_eq!(g.utilization(), 1.0);
        // A wait that started "after" now (clock read earlier) counts as zero.
        let g = PoolGauges::compute(
            &PoolState {
                queued: 1,
                queued_since: Some(now + Duration::from_secs(1)),
                ..PoolState::default()
            },
            now,
        );
        assert_eq!(g.longest_wait, Duration::ZERO);
    }
}
