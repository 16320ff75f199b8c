//! Signals, as PgBouncer reads them: SIGHUP reloads the config file (what the console's RELOAD
//! does, `reload.rs`), SIGUSR1 pauses every database (the console's PAUSE), SIGUSR2 resumes them
//! (RESUME), SIGTERM and SIGINT shut down with a drain (`shutdown.rs`).
//!
//! The handlers are installed before sluice listens: until then SIGHUP's default action (end the
//! process) would still apply.

use std::sync::Arc;

use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::shared::Shared;

/// SIGHUP, SIGUSR1 and SIGUSR2, installed; [`Control::serve`] acts on them.
pub struct Control {
    hup: Signal,
    usr1: Signal,
    usr2: Signal,
}

/// SIGTERM and SIGINT, installed; [`Shutdown::wait`] completes at the first.
pub struct Shutdown {
    term: Signal,
    int: Signal,
}

/// Installs every handler sluice has.
pub fn install() -> std::io::Result<(Control, Shutdown)> {
    Ok((
        Control {
            hup: signal(SignalKind::hangup())?,
            usr1: signal(SignalKind::user_defined1())?,
            usr2: signal(SignalKind::user_defined2())?,
        },
        Shutdown {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        },
    ))
}

impl Shutdown {
    /// Completes at SIGTERM (stop accepting and wait for the clients to leave: online restart,
    /// rolling deploys) or SIGINT (drain: each client ends at its next clean point). See
    /// shutdown.rs.
    pub async fn wait(mut self) -> crate::shutdown::Stop {
        tokio::select! {
            _ = self.term.recv() => {
                tracing::info!("SIGTERM: shutting down: no new clients, waiting for connected ones to leave");
                crate::shutdown::Stop::WaitForClients
            }
            _ = self.int.recv() => {
                tracing::info!("SIGINT: shutting down: draining clients");
                crate::shutdown::Stop::Drain
            }
        }
    }
}

impl Control {
    /// Acts on SIGHUP, SIGUSR1 and SIGUSR2 for as long as the process runs.
    pub async fn serve(mut self, shared: Arc<Shared>) {
        loop {
            tokio::select! {
                Some(()) = self.hup.recv() => reload(&shared),
                Some(()) = self.usr1.recv() => {
                    tracing::info!("SIGUSR1: pausing every database");
                    // Waiting for the transactions under way must not hold up the next signal.
                    let shared = shared.clone();
                    tokio::spawn(async move {
                        // A PAUSE by signal returns when its transactions end (or a drain starts).
                        if crate::admin::pause_database(&shared, None).await.is_ok() {
                            tracing::info!("SIGUSR1: every database paused");
                        }
                    });
                }
                Some(()) = self.usr2.recv() => {
                    if crate::admin::resume_database(&shared, None).is_ok() {
                        tracing::info!("SIGUSR2: every database resumed");
                    }
                }
                else => return,
            }
        }
    }
}

/// SIGHUP: RELOAD.
fn reload(shared: &Shared) {
    match crate::reload::apply(shared) {
        Ok(notes) => tracing::info!(changes = notes.len(), "SIGHUP: configuration reloaded"),
        Err(why) => {
            tracing::warn!(error = %why, "SIGHUP: reload failed; nothing was changed")
        }
    }
}
