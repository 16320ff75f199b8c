//! Which password exchange a client gets, or whether it is refused before any: the access rules
//! (`auth_hba_file` / `auth_hba`, [`crate::hba`]) when there are any, else `auth_type` (per
//! user, then per database, then `[pooler]`) as before rules existed. Pure.

use std::net::IpAddr;

use crate::config::AuthType;
use crate::hba::{Conn, Method, Refused, Rules};

/// What sluice knows of the connection when it decides.
#[derive(Debug, Clone, Copy)]
pub(super) struct Peer<'a> {
    pub addr: IpAddr,
    /// The client connection is TLS. Always false until sluice speaks TLS.
    pub tls: bool,
    /// The verified client certificate's CN (the `cert` method). None until sluice speaks TLS.
    pub cert_cn: Option<&'a str>,
}

/// The method for `user` on `database`: the first matching rule's, or with no rules the
/// configured `auth_type`. A `reject` rule or no matching rule is a refusal (28000).
pub(super) fn choose(
    rules: Option<&Rules>,
    peer: Peer<'_>,
    database: &str,
    user: &str,
    configured: AuthType,
) -> Result<Method, Refused> {
    match rules {
        None => Ok(match configured {
            AuthType::Trust => Method::Trust,
            AuthType::Md5 => Method::Md5,
            AuthType::ScramSha256 => Method::ScramSha256,
        }),
        Some(rules) => rules
            .check(&Conn {
                addr: peer.addr,
                tls: peer.tls,
                database,
                user,
            })
            .map(|r| r.method),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(addr: &str) -> Peer<'static> {
        Peer {
            addr: addr.parse().unwrap(),
            tls: false,
            cert_cn: None,
        }
    }

    #[test]
    fn no_rules_keep_the_configured_method_for_every_address() {
        for (t, m) in [
            (AuthType::Trust, Method::Trust),
            (AuthType::Md5, Method::Md5),
            (AuthType::ScramSha256, Method::ScramSha256),
        ] {
            assert_eq!(choose(None, peer("10.1.1.1"), "db", "u", t), Ok(m));
        }
    }

    #[test]
    fn rules_override_the_configured_method() {
        let rules = Rules::from_text(
            "r",
            "host all all 127.0.0.1/32 trust\nhostssl all all all cert\n",
        )
        .unwrap();
        assert_eq!(
            choose(
                Some(&rules),
                peer("127.0.0.1"),
                "db",
                "u",
                AuthType::ScramSha256
            ),
            Ok(Method::Trust)
        );
        let e = choose(Some(&rules), peer("10.0.0.1"), "db", "u", AuthType::Trust).unwrap_err();
        assert!(
            e.message
                .starts_with("no pg_hba.conf entry for host \"10.0.0.1\"")
        );
        let tls = Peer {
            tls: true,
            ..peer("10.0.0.1")
        };
        assert_eq!(
            choose(Some(&rules), tls, "db", "u", AuthType::Trust),
            Ok(Method::Cert)
        );
    }
}
