//! RELOAD (admin console): read the config file again and apply it.
//!
//! What applies in place: users and their secrets, each existing pool's size and server address
//! (connections are remade as they come back), TLS certificates and keys (new connections use
//! them; the files are read when the config is loaded, so a bad one refuses the whole RELOAD),
//! and everything that pools made from now on use.
//! What waits for a restart: the listening sockets, the worker threads, `max_client_conn`, and a
//! database's replica list. An invalid file changes nothing.

use std::sync::Arc;

use crate::config::Config;
use crate::metrics::CloseReason;
use crate::notify;
use crate::pool::{Pool, Role};
use crate::shared::{Shared, pool_parts, replica_parts};

/// Reads the config file again and applies it. Returns what changed and what waits for a
/// restart, one line each; on an invalid file, the error (naming the key at fault) and nothing
/// changes. systemd hears RELOADING=1 before and READY=1 after, either way ([`notify`]).
pub fn apply(shared: &Shared) -> Result<Vec<String>, String> {
    notify::reloading();
    let result = apply_file(shared);
    notify::ready();
    result
}

fn apply_file(shared: &Shared) -> Result<Vec<String>, String> {
    let old = shared.config();
    let path = old
        .source
        .clone()
        .ok_or("sluice was started without a config file: nothing to reload")?;
    let mut new = Config::load(&path).map_err(|e| e.to_string())?;
    let mut notes = keep_restart_only(&old, &mut new);
    let new = shared.install(new);

    // Existing pools: size and server address apply in place; anything else that changed
    // applies to pools made from now on.
    let pools: Vec<Arc<Pool>> = shared.pools.iter().map(|e| e.value().clone()).collect();
    for pool in pools {
        let Some(db) = new.databases.get(&pool.key.database) else {
            notes.push(format!(
                "database {} removed: no new sessions; connected ones continue",
                pool.key.database
            ));
            continue;
        };
        let Some(auth) = shared.user(&pool.key.user) else {
            continue;
        };
        let (target, settings) = pool_parts(&new, db, &pool.key.database, &pool.key.user, &auth);
        let (target, size) = match pool.key.role {
            Role::Primary => (target, settings.size),
            Role::Replica(i) => match db.replicas.get(i) {
                Some(r) => {
                    let (target, settings) = replica_parts(r, &target, &settings);
                    (target, settings.size)
                }
                None => continue,
            },
        };
        if pool.size() != size {
            notes.push(format!(
                "pool {}: pool_size {} -> {size}",
                pool.key,
                pool.size()
            ));
            pool.set_size(size);
        }
        if pool.set_target(target) {
            notes.push(format!(
                "pool {}: server changed; connections are remade as they are given back",
                pool.key
            ));
            pool.reconnect();
            pool.close_idle(CloseReason::Admin);
        }
    }
    notes.extend(database_changes(&old, &new));
    if old.users != new.users {
        notes.push("users reloaded".to_owned());
    }
    if uses_tls(&old) || uses_tls(&new) {
        // The contexts were built from the files when the config was loaded (config/tls.rs).
        notes.push(
            "TLS certificates and keys read again: new connections use them, open ones keep theirs"
                .to_owned(),
        );
    }
    tracing::info!(changes = notes.len(), "configuration reloaded");
    for n in &notes {
        tracing::info!("reload: {n}");
    }
    Ok(notes)
}

fn uses_tls(config: &Config) -> bool {
    config.tls.as_deref().is_some_and(|t| {
        t.client.is_some()
            || t.server.connector.is_some()
            || t.server_by_db.values().any(|s| s.connector.is_some())
    })
}

/// Settings set up once at start (sockets, threads): a change is noted and `new` keeps the old
/// value.
fn keep_restart_only(old: &Config, new: &mut Config) -> Vec<String> {
    let mut notes = Vec::new();
    let (o, n) = (&old.pooler, &mut new.pooler);
    if n.listen != o.listen {
        notes.push(format!(
            "pooler.listen changed to {:?}: takes effect at restart",
            n.listen
        ));
        n.listen = o.listen.clone();
    }
    if n.metrics_listen != o.metrics_listen {
        notes.push("pooler.metrics_listen changed: takes effect at restart".to_owned());
        n.metrics_listen = o.metrics_listen.clone();
    }
    if n.workers != o.workers {
        notes.push("pooler.workers changed: takes effect at restart".to_owned());
        n.workers = o.workers;
    }
    if n.log_format != o.log_format {
        notes.push("pooler.log_format changed: takes effect at restart".to_owned());
        n.log_format = o.log_format;
    }
    if n.max_client_conn != o.max_client_conn {
        notes.push("pooler.max_client_conn changed: takes effect at restart".to_owned());
        n.max_client_conn = o.max_client_conn;
    }
    notes
}

/// Databases added, and replica lists changed (those wait for a restart).
fn database_changes(old: &Config, new: &Config) -> Vec<String> {
    let mut notes = Vec::new();
    for (name, db) in &new.databases {
        match old.databases.get(name) {
            None => notes.push(format!("database {name} added")),
            Some(o) if o.replicas != db.replicas => notes.push(format!(
                "database {name}: replicas changed: take effect at restart"
            )),
            _ => {}
        }
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        Config::from_toml(text).unwrap()
    }

    #[test]
    fn restart_only_settings_are_noted_and_kept() {
        let old = config("[pooler]\nlisten = \"127.0.0.1:6432\"\nworkers = 1\n");
        let mut new = config(
            "[pooler]\nlisten = \"127.0.0.1:7000\"\nworkers = 4\nmax_client_conn = 5\ndefault_pool_size = 3\n",
        );
        let notes = keep_restart_only(&old, &mut new);
        assert_eq!(
            notes,
            [
                "pooler.listen changed to \"127.0.0.1:7000\": takes effect at restart",
                "pooler.workers changed: takes effect at restart",
                "pooler.max_client_conn changed: takes effect at restart",
            ]
        );
        assert_eq!(new.pooler.listen, "127.0.0.1:6432");
        assert_eq!(
            (new.pooler.workers, new.pooler.max_client_conn),
            (1, 10_000)
        );
        assert_eq!(new.pooler.default_pool_size, 3, "the rest applies");
        let mut same = old.clone();
        assert!(keep_restart_only(&old, &mut same).is_empty());
    }

    #[test]
    fn databases_added_and_replicas_changed() {
        let old = config("[databases.a]\n[databases.b]\n[[databases.b.replicas]]\nport = 5433\n");
        let new = config(
            "[databases.a]\npool_size = 9\n[databases.b]\n[[databases.b.replicas]]\nport = 5434\n[databases.c]\n",
        );
        assert_eq!(
            database_changes(&old, &new),
            [
                "database b: replicas changed: take effect at restart",
                "database c added"
            ]
        );
        assert!(database_changes(&new, &new).is_empty());
    }
}
