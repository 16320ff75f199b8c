//! [`ClientCaps`]: client connections counted per database and per user, for
//! `max_db_client_connections` and `max_user_client_connections` (PgBouncer 1.24's meaning:
//! client connections to sluice, whatever pool or server connection they use). A login over a
//! cap is refused with 53300, PostgreSQL's words for its own CONNECTION LIMIT.

use std::sync::Arc;

use dashmap::DashMap;

#[derive(Default)]
struct Counts {
    databases: DashMap<String, usize>,
    users: DashMap<String, usize>,
}

/// The live counts; a [`CapGuard`] is one client, counted until dropped.
#[derive(Default)]
pub struct ClientCaps {
    counts: Arc<Counts>,
}

/// Which cap refused a login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CapRefusal {
    Database { name: String, max: usize },
    User { name: String, max: usize },
}

impl CapRefusal {
    /// PostgreSQL's message for the same refusal.
    pub fn message(&self) -> String {
        match self {
            CapRefusal::Database { name, .. } => {
                format!("too many connections for database \"{name}\"")
            }
            CapRefusal::User { name, .. } => format!("too many connections for role \"{name}\""),
        }
    }

    /// Which setting, and its value.
    pub fn detail(&self) -> String {
        match self {
            CapRefusal::Database { max, .. } => {
                format!(
                    "sluice allows {max} client connections per database (max_db_client_connections)"
                )
            }
            CapRefusal::User { max, .. } => {
                format!(
                    "sluice allows {max} client connections per user (max_user_client_connections)"
                )
            }
        }
    }
}

impl ClientCaps {
    /// Counts one client of `database` as `user`, unless that passes a cap (0: none).
    pub fn admit(
        &self,
        database: &str,
        user: &str,
        max_db: usize,
        max_user: usize,
    ) -> Result<CapGuard, CapRefusal> {
        let counts = &self.counts;
        {
            let mut n = counts.databases.entry(database.to_owned()).or_insert(0);
            if max_db > 0 && *n >= max_db {
                return Err(CapRefusal::Database {
                    name: database.to_owned(),
                    max: max_db,
                });
            }
            *n += 1;
        }
        let guard = CapGuard(Box::new((
            self.counts.clone(),
            database.to_owned(),
            user.to_owned(),
            false,
            true,
        )));
        {
            let mut n = counts.users.entry(user.to_owned()).or_insert(0);
            if max_user > 0 && *n >= max_user {
                // `guard` drops here: the database count goes back.
                drop(n);
                drop(guard);
                return Err(CapRefusal::User {
                    name: user.to_owned(),
                    max: max_user,
                });
            }
            *n += 1;
        }
        let mut guard = guard;
        guard.0.3 = true;
        Ok(guard)
    }

    /// Gives back one client's places (a session of the pool of `database` and `user` ended;
    /// its guard was [kept](CapGuard::keep)).
    pub fn release_fn(&self, database: &str, user: &str) -> Box<dyn Fn() + Send + Sync> {
        let counts = self.counts.clone();
        let (database, user) = (database.to_owned(), user.to_owned());
        Box::new(move || {
            down(&counts.databases, &database);
            down(&counts.users, &user);
        })
    }

    /// Client connections counted for `database` now.
    pub fn database_count(&self, database: &str) -> usize {
        self.counts.databases.get(database).map_or(0, |n| *n)
    }

    /// Client connections counted for `user` now.
    pub fn user_count(&self, user: &str) -> usize {
        self.counts.users.get(user).map_or(0, |n| *n)
    }
}

/// One counted client during its login; once it is a session, its pool gives the places back
/// ([`CapGuard::keep`]). Boxed, as login futures are kept small.
/// (counts, database, user, whether the user was counted, whether the guard still gives the
/// places back when dropped).
pub struct CapGuard(Box<(Arc<Counts>, String, String, bool, bool)>);

impl std::fmt::Debug for CapGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CapGuard({}, {})", self.0.1, self.0.2)
    }
}

impl CapGuard {
    /// The client became a session of its pool: the pool gives its places back when the session
    /// ends (`Pool::on_session_closed`), so the session carries no guard.
    pub fn keep(mut self) {
        self.0.4 = false;
    }
}

fn down(map: &DashMap<String, usize>, key: &str) {
    map.remove_if_mut(key, |_, n| {
        *n = n.saturating_sub(1);
        *n == 0
    });
}

impl Drop for CapGuard {
    fn drop(&mut self) {
        let (counts, database, user, user_counted, armed) = &*self.0;
        if !*armed {
            return;
        }
        down(&counts.databases, database);
        if *user_counted {
            down(&counts.users, user);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_count_per_database_and_per_user_and_free_on_drop() {
        let caps = ClientCaps::default();
        let a = caps.admit("db", "u1", 2, 1).unwrap();
        assert_eq!(
            caps.admit("db", "u1", 2, 1).err(),
            Some(CapRefusal::User {
                name: "u1".into(),
                max: 1
            })
        );
        // The refused login did not stay counted.
        assert_eq!(caps.database_count("db"), 1);
        let b = caps.admit("db", "u2", 2, 1).unwrap();
        let e = caps.admit("db", "u3", 2, 1).unwrap_err();
        assert_eq!(e.message(), "too many connections for database \"db\"");
        assert!(e.detail().contains("max_db_client_connections"));
        // Other databases are not affected; 0 is no limit.
        let c = caps.admit("other", "u3", 0, 0).unwrap();
        drop(a);
        assert_eq!((caps.database_count("db"), caps.user_count("u1")), (1, 0));
        let _a = caps.admit("db", "u1", 2, 1).unwrap();
        drop((b, c));
        assert_eq!(caps.user_count("u2"), 0);
        assert_eq!(caps.database_count("other"), 0);
        // A kept guard stays counted until the pool's release runs.
        let before = (caps.database_count("db"), caps.user_count("u9"));
        caps.admit("db", "u9", 0, 0).unwrap().keep();
        assert_eq!(caps.user_count("u9"), 1);
        caps.release_fn("db", "u9")();
        assert_eq!((caps.database_count("db"), caps.user_count("u9")), before);
    }
}
