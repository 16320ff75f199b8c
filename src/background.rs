//! The pooler's background tasks, for as long as [`crate::run`] runs: closing idle server
//! connections past their idle timeout or lifetime (and marking those idle past
//! `server_check_delay` for a check), the statistics upkeep (histogram folding, SHOW STATS'
//! period, the incident log's counts), and, with `metrics_listen`, the metrics endpoint.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::metrics::{STATS_PERIOD, http};
use crate::pool::Pool;
use crate::shared::Shared;

/// The running tasks; aborted when dropped.
pub struct Background {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Background {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Starts the tasks. The metrics endpoint binds its address now, so a taken port fails
/// start-up; `drain` tells it the pooler is shutting down.
pub async fn start(
    shared: &Arc<Shared>,
    drain: watch::Receiver<bool>,
) -> std::io::Result<Background> {
    let mut tasks = vec![tokio::spawn(stats_upkeep(shared.clone()))];
    if let Some(addr) = shared.config().metrics_addr() {
        tasks.push(http::start(addr, shared.clone(), drain).await?);
    }
    tasks.push(tokio::spawn(expire(shared.clone())));
    Ok(Background { tasks })
}

/// Folds histogram samples every second and rolls SHOW STATS' period.
async fn stats_upkeep(shared: Arc<Shared>) {
    // Samples pile up between folds (a few MB a second at 100k transactions/s): fold often.
    let tick = Duration::from_secs(1);
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_period = Instant::now();
    for pool in shared.pool_list() {
        pool.counters.roll_period(last_period);
    }
    let mut last_reading: Option<Instant> = None;
    loop {
        interval.tick().await;
        if last_reading.is_none_or(|t| t.elapsed() >= crate::diag::live::EVERY) {
            last_reading = Some(Instant::now());
            shared.take_live_reading();
        }
        if let Some(h) = &shared.histograms {
            h.upkeep();
        }
        shared.limits.incidents.flush();
        let now = Instant::now();
        if now.duration_since(last_period) >= STATS_PERIOD {
            last_period = now;
            for pool in shared.pool_list() {
                pool.counters.roll_period(now);
            }
        }
    }
}

/// Closes idle server connections past their idle timeout or lifetime, and marks those idle past
/// `server_check_delay` for a check.
async fn expire(shared: Arc<Shared>) {
    let config = shared.config();
    let p = &config.pooler;
    let mut shortest = p.server_idle_timeout.min(p.server_lifetime);
    if !p.server_check_delay.is_zero() {
        shortest = shortest.min(p.server_check_delay);
    }
    let tick = (shortest / 4).clamp(Duration::from_millis(50), Duration::from_secs(5));
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let now = Instant::now();
        let pools: Vec<Arc<Pool>> = shared.pools.iter().map(|e| e.value().clone()).collect();
        for pool in pools {
            pool.close_expired(now);
        }
    }
}
