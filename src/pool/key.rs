//! [`PoolKey`]: which pool: a (database, user) pair and the server it connects to ([`Role`]).

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PoolKey {
    pub database: String,
    pub user: String,
    pub role: Role,
}

impl PoolKey {
    pub fn primary(database: &str, user: &str) -> PoolKey {
        PoolKey {
            database: database.to_owned(),
            user: user.to_owned(),
            role: Role::Primary,
        }
    }
}

/// Which server of a database a pool connects to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Role {
    #[default]
    Primary,
    /// The replica at this index of the database's `replicas` list.
    Replica(usize),
}

impl Role {
    /// The `role` label of metrics.
    pub fn label(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Replica(_) => "replica",
        }
    }
}

impl std::fmt::Display for PoolKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.role {
            Role::Primary => write!(f, "{}/{}", self.database, self.user),
            Role::Replica(i) => write!(f, "{}/{}/replica{i}", self.database, self.user),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_print_and_sort_primary_first() {
        let p = PoolKey::primary("app", "u");
        let r = PoolKey {
            role: Role::Replica(1),
            ..p.clone()
        };
        assert_eq!(p.to_string(), "app/u");
        assert_eq!(r.to_string(), "app/u/replica1");
        assert_eq!((p.role.label(), r.role.label()), ("primary", "replica"));
        assert!(p < r);
    }
}
