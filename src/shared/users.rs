//! [`UserAuth`]: a configured user with its secrets parsed once (SCRAM verifier derived at start-up
//! and at RELOAD, not at each login).

use std::collections::HashMap;
use std::sync::Arc;

use sluice_proto::auth::{PasswordSecret, ScramVerifier};

use crate::config::{AuthType, Config, PoolMode};

/// A configured user, with its SCRAM verifier derived once at start-up.
#[derive(Debug)]
pub struct UserAuth {
    pub name: String,
    pub auth_type: Option<AuthType>,
    pub pool_mode: Option<PoolMode>,
    pub secret: Option<PasswordSecret>,
    pub scram: Option<ScramVerifier>,
}

/// The configured users, each with its secrets parsed once.
pub fn users_of(config: &Config) -> HashMap<String, Arc<UserAuth>> {
    config
        .users
        .iter()
        .map(|(name, u)| {
            let secret = u
                .password
                .as_deref()
                .map(|p| PasswordSecret::parse(p).expect("validated"));
            let scram = secret.as_ref().and_then(|s| s.scram_verifier());
            let auth = UserAuth {
                name: name.clone(),
                auth_type: u.auth_type,
                pool_mode: u.pool_mode,
                secret,
                scram,
            };
            (name.clone(), Arc::new(auth))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_parsed_once_per_user() {
        let config = Config::from_toml(
            "[users.a]\npassword = \"secret\"\n[users.b]\nauth_type = \"trust\"\npool_mode = \"session\"\n",
        )
        .unwrap();
        let users = users_of(&config);
        let a = &users["a"];
        assert_eq!(a.name, "a");
        assert!(
            a.secret.is_some() && a.scram.is_some(),
            "a plain password gives a verifier"
        );
        let b = &users["b"];
        assert!(b.secret.is_none() && b.scram.is_none());
        assert_eq!(
            (b.auth_type, b.pool_mode),
            (Some(AuthType::Trust), Some(PoolMode::Session))
        );
    }
}
