//! Access rules in pg_hba.conf form: which clients may log in, and how they prove who they are.
//!
//! The rules come from `auth_hba_file` (a PgBouncer `auth_hba_file` or a PostgreSQL pg_hba.conf
//! can be reused) or inline (`auth_hba`, one rule line per string); [`parse`] reads the text (the
//! same parser `sluice import-pgbouncer` uses), [`Rules::compile`] checks each line once, and
//! [`Rules::check`] decides for one connection: the first rule whose connection type, database,
//! user and address all match gives the method; no match is refused as PostgreSQL refuses it
//! (28000, `no pg_hba.conf entry for host ...`).
//!
//! What sluice reads of a line:
//! * type: `host`, `hostssl` (TLS connections only), `hostnossl` (plain only); `local` lines are
//!   accepted and never match (sluice listens on TCP only);
//! * database: `all`, `sameuser`, names (comma lists); `replication` never matches (sluice
//!   refuses replication connections); `samerole`, `samegroup` and `@file` are refused when read;
//! * user: `all`, names; `+group` and `@file` are refused when read (sluice does not know
//!   PostgreSQL's role memberships);
//! * address: `all`, `a.b.c.d/n`, `a.b.c.d m.a.s.k`, IPv6 likewise; `samehost`, `samenet` and
//!   host names are refused when read; an IPv4 rule matches an IPv4 client only (an
//!   IPv4-mapped IPv6 peer counts as IPv4);
//! * method: `trust`, `reject`, `md5`, `password`, `scram-sha-256`, `cert`; options after the
//!   method are ignored.
//!
//! Pure: no I/O beyond what the caller reads; unit-tested below.

mod parse;

pub use parse::{Line, parse};

use std::fmt;
use std::net::IpAddr;

/// How a client matched by a rule proves who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Trust,
    Reject,
    /// md5, or SCRAM when the user's secret is a SCRAM secret (as PostgreSQL does).
    Md5,
    /// The password in clear text (AuthenticationCleartextPassword).
    Password,
    ScramSha256,
    /// A verified TLS client certificate whose CN is the user name.
    Cert,
}

impl Method {
    fn from_name(m: &str) -> Result<Method, String> {
        Ok(match m {
            "trust" => Method::Trust,
            "reject" => Method::Reject,
            "md5" => Method::Md5,
            "password" => Method::Password,
            "scram-sha-256" => Method::ScramSha256,
            "cert" => Method::Cert,
            other => {
                return Err(format!(
                    "method {other:?} is not supported (trust, reject, md5, password, scram-sha-256, cert)"
                ));
            }
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Method::Trust => "trust",
            Method::Reject => "reject",
            Method::Md5 => "md5",
            Method::Password => "password",
            Method::ScramSha256 => "scram-sha-256",
            Method::Cert => "cert",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Local,
    Host,
    HostSsl,
    HostNoSsl,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Name {
    All,
    /// The database named like the user (`sameuser`).
    SameUser,
    /// `replication`: only replication connections, which sluice refuses anyway.
    Never,
    Exact(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Address {
    All,
    Net { ip: IpAddr, prefix: u8 },
}

/// One checked rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    kind: Kind,
    databases: Vec<Name>,
    users: Vec<Name>,
    address: Option<Address>,
    pub method: Method,
    /// `file:line`, for logs.
    pub origin: String,
}

/// The rule list, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    rules: Vec<Rule>,
}

/// What sluice knows of a connection when it picks the rule.
#[derive(Debug, Clone, Copy)]
pub struct Conn<'a> {
    pub addr: IpAddr,
    /// The client connection is TLS (false until sluice speaks TLS).
    pub tls: bool,
    pub database: &'a str,
    pub user: &'a str,
}

/// A connection refused by the rules: SQLSTATE 28000 with PostgreSQL's wording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub message: String,
    /// The `reject` rule that refused, or None when no rule matched.
    pub origin: Option<String>,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl Rules {
    /// Reads and checks `text` (pg_hba.conf form); `file` names it in errors.
    pub fn from_text(file: &str, text: &str) -> Result<Rules, String> {
        Rules::compile(file, &parse(file, text)?)
    }

    /// Checks parsed lines; an error names `file:line` and what is wrong or unsupported.
    pub fn compile(file: &str, lines: &[Line]) -> Result<Rules, String> {
        let rules = lines
            .iter()
            .map(|l| compile_line(l).map_err(|e| format!("{file}:{}: {e}", l.line)))
            .map(|r| {
                r.map(|mut rule| {
                    rule.origin = format!("{file}:{}", rule.origin);
                    rule
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Rules { rules })
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The first rule matching `conn`: its method (a `reject` rule and no match are refusals).
    pub fn check(&self, conn: &Conn<'_>) -> Result<&Rule, Refused> {
        let addr = canonical(conn.addr);
        let encryption = if conn.tls {
            "SSL encryption"
        } else {
            "no encryption"
        };
        let said = format!(
            "host \"{addr}\", user \"{}\", database \"{}\", {encryption}",
            conn.user, conn.database
        );
        match self.rules.iter().find(|r| r.matches(conn, addr)) {
            Some(r) if r.method == Method::Reject => Err(Refused {
                message: format!("pg_hba.conf rejects connection for {said}"),
                origin: Some(r.origin.clone()),
            }),
            Some(r) => Ok(r),
            None => Err(Refused {
                message: format!("no pg_hba.conf entry for {said}"),
                origin: None,
            }),
        }
    }
}

impl Rule {
    fn matches(&self, conn: &Conn<'_>, addr: IpAddr) -> bool {
        let kind = match self.kind {
            Kind::Local => false,
            Kind::Host => true,
            Kind::HostSsl => conn.tls,
            Kind::HostNoSsl => !conn.tls,
        };
        kind && self.databases.iter().any(|d| match d {
            Name::All => true,
            Name::SameUser => conn.database == conn.user,
            Name::Never => false,
            Name::Exact(n) => n == conn.database,
        }) && self.users.iter().any(|u| match u {
            Name::All => true,
            Name::Exact(n) => n == conn.user,
            Name::SameUser | Name::Never => false,
        }) && match self.address {
            None | Some(Address::All) => true,
            Some(Address::Net { ip, prefix }) => in_net(addr, ip, prefix),
        }
    }
}

fn compile_line(l: &Line) -> Result<Rule, String> {
    let kind = match l.kind.as_str() {
        "local" => Kind::Local,
        "host" => Kind::Host,
        "hostssl" => Kind::HostSsl,
        _ => Kind::HostNoSsl,
    };
    let databases = l
        .databases
        .iter()
        .map(|d| match d.as_str() {
            "all" => Ok(Name::All),
            "sameuser" => Ok(Name::SameUser),
            "replication" => Ok(Name::Never),
            "samerole" | "samegroup" => Err(format!(
                "database {d:?} is not supported (sluice does not know role memberships)"
            )),
            d if d.starts_with('@') => Err(format!("database list files ({d}) are not supported")),
            d => Ok(Name::Exact(d.to_owned())),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let users = l
        .users
        .iter()
        .map(|u| match u.as_str() {
            "all" => Ok(Name::All),
            u if u.starts_with('+') => Err(format!(
                "group membership ({u}) is not supported: sluice does not know PostgreSQL's roles; list the users"
            )),
            u if u.starts_with('@') => Err(format!("user list files ({u}) are not supported")),
            u => Ok(Name::Exact(u.to_owned())),
        })
        .collect::<Result<Vec<_>, _>>()?;
    if databases.is_empty() || users.is_empty() {
        return Err("empty database or user list".into());
    }
    let address = l.address.as_deref().map(address).transpose()?;
    let method = Method::from_name(&l.method)?;
    if method == Method::Cert && kind != Kind::HostSsl {
        return Err("cert authentication is only supported on hostssl connections".into());
    }
    Ok(Rule {
        kind,
        databases,
        users,
        address,
        method,
        origin: l.line.to_string(),
    })
}

fn address(a: &str) -> Result<Address, String> {
    if a == "all" {
        return Ok(Address::All);
    }
    if matches!(a, "samehost" | "samenet") {
        return Err(format!("address {a:?} is not supported; give a CIDR range"));
    }
    let bad = || {
        format!(
            "invalid address {a:?} (expected all, a.b.c.d/n, or an address and a mask; host names are not supported)"
        )
    };
    if let Some((ip, mask)) = a.split_once(' ') {
        let ip: IpAddr = ip.parse().map_err(|_| bad())?;
        let mask: IpAddr = mask.parse().map_err(|_| bad())?;
        let prefix = mask_prefix(mask).ok_or_else(|| format!("invalid mask in {a:?}"))?;
        if ip.is_ipv4() != mask.is_ipv4() {
            return Err(format!("address and mask of different families in {a:?}"));
        }
        return Ok(Address::Net {
            ip: canonical(ip),
            prefix,
        });
    }
    let (ip, prefix) = a.split_once('/').ok_or_else(bad)?;
    let ip: IpAddr = ip.parse().map_err(|_| bad())?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let prefix: u8 = prefix
        .parse()
        .ok()
        .filter(|p| *p <= max)
        .ok_or_else(|| format!("invalid CIDR mask in {a:?}"))?;
    Ok(Address::Net { ip, prefix })
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// The prefix length of a contiguous netmask.
fn mask_prefix(mask: IpAddr) -> Option<u8> {
    let bits: u128 = match mask {
        IpAddr::V4(m) => u128::from(u32::from(m)) << 96,
        IpAddr::V6(m) => u128::from(m),
    };
    let ones = bits.leading_ones();
    (bits.checked_shl(ones).unwrap_or(0) == 0).then_some(ones as u8)
}

fn in_net(addr: IpAddr, net: IpAddr, prefix: u8) -> bool {
    let (a, n, width) = match (addr, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => (u128::from(u32::from(a)), u128::from(u32::from(n)), 32),
        (IpAddr::V6(a), IpAddr::V6(n)) => (u128::from(a), u128::from(n), 128),
        _ => return false,
    };
    if prefix == 0 {
        return true;
    }
    let shift = width - u32::from(prefix);
    (a >> shift) == (n >> shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn<'a>(addr: &str, tls: bool, database: &'a str, user: &'a str) -> Conn<'a> {
        Conn {
            addr: addr.parse().unwrap(),
            tls,
            database,
            user,
        }
    }

    fn method(rules: &Rules, c: Conn<'_>) -> Result<Method, String> {
        rules.check(&c).map(|r| r.method).map_err(|e| e.message)
    }

    const RULES: &str = r#"
# comment
local   all         all                         trust
hostssl all         all     0.0.0.0/0           cert
host    app,"shop"  alice   10.0.0.0/8          md5      # a comment after
host    app         bob     192.168.1.0 255.255.255.0   password
host    sameuser    all     127.0.0.1/32        trust
host    all         evil    all                 reject
hostnossl all       all     ::1/128             scram-sha-256
host    replication all     all                 trust
host    all         all     127.0.0.0/8         scram-sha-256
"#;

    #[test]
    fn first_matching_rule_wins_by_type_database_user_and_address() {
        let r = Rules::from_text("hba", RULES).unwrap();
        assert_eq!(r.len(), 9);
        // hostssl only on TLS; a plain connection falls through to later lines.
        assert_eq!(
            method(&r, conn("10.1.2.3", true, "app", "alice")),
            Ok(Method::Cert)
        );
        assert_eq!(
            method(&r, conn("10.1.2.3", false, "app", "alice")),
            Ok(Method::Md5)
        );
        // Lists with commas, quoted names.
        assert_eq!(
            method(&r, conn("10.9.9.9", false, "shop", "alice")),
            Ok(Method::Md5)
        );
        // Address and mask.
        assert_eq!(
            method(&r, conn("192.168.1.77", false, "app", "bob")),
            Ok(Method::Password)
        );
        // sameuser.
        assert_eq!(
            method(&r, conn("127.0.0.1", false, "carol", "carol")),
            Ok(Method::Trust)
        );
        assert_eq!(
            method(&r, conn("127.0.0.1", false, "app", "carol")),
            Ok(Method::ScramSha256)
        );
        // IPv4-mapped IPv6 counts as IPv4.
        assert_eq!(
            method(&r, conn("::ffff:127.0.0.1", false, "dan", "dan")),
            Ok(Method::Trust)
        );
        // hostnossl on IPv6 loopback.
        assert_eq!(
            method(&r, conn("::1", false, "app", "x")),
            Ok(Method::ScramSha256)
        );
        // Address families do not mix; replication never matches; no rule: refused.
        let e = method(&r, conn("::1", true, "app", "x")).unwrap_err();
        assert_eq!(
            e,
            "no pg_hba.conf entry for host \"::1\", user \"x\", database \"app\", SSL encryption"
        );
        let e = method(&r, conn("172.16.0.1", false, "replication", "x")).unwrap_err();
        assert!(
            e.starts_with("no pg_hba.conf entry for host \"172.16.0.1\""),
            "{e}"
        );
        assert!(e.ends_with("no encryption"), "{e}");
    }

    #[test]
    fn reject_refuses_with_postgresql_wording_and_its_line() {
        let r = Rules::from_text("hba", RULES).unwrap();
        let e = r
            .check(&conn("127.0.0.1", false, "app", "evil"))
            .unwrap_err();
        assert_eq!(
            e.message,
            "pg_hba.conf rejects connection for host \"127.0.0.1\", user \"evil\", database \"app\", no encryption"
        );
        assert_eq!(e.origin.as_deref(), Some("hba:8"));
        // An earlier rule matching the same user wins (sameuser, line 7).
        assert_eq!(
            method(&r, conn("127.0.0.1", false, "evil", "evil")),
            Ok(Method::Trust)
        );
    }

    #[test]
    fn empty_rules_refuse_everything() {
        let r = Rules::default();
        assert!(r.is_empty());
        assert!(r.check(&conn("127.0.0.1", false, "a", "b")).is_err());
    }

    #[test]
    fn unsupported_and_malformed_lines_name_their_line() {
        for (text, want) in [
            (
                "host all +admins all trust",
                "hba:1: group membership (+admins)",
            ),
            (
                "host all all all peer",
                "hba:1: method \"peer\" is not supported",
            ),
            ("\nhost all all samenet md5", "hba:2: address \"samenet\""),
            ("host all all db.example.com md5", "hba:1: invalid address"),
            ("host all all 10.0.0.1 md5", "hba:1: invalid address"),
            ("host all all 10.0.0.0/33 md5", "hba:1: invalid CIDR mask"),
            (
                "host all all 10.0.0.0 255.0.255.0 md5",
                "hba:1: invalid mask",
            ),
            ("host samerole all all md5", "hba:1: database \"samerole\""),
            ("host @dbs all all md5", "hba:1: database list files"),
            ("hosts all all all md5", "hba:1: unknown connection type"),
            ("host all all", "hba:1: expected at least 5 fields"),
            (
                "host all all all cert",
                "hba:1: cert authentication is only supported on hostssl",
            ),
        ] {
            let e = Rules::from_text("hba", text).unwrap_err();
            assert!(e.starts_with(want), "{text}: {e}");
        }
    }

    #[test]
    fn networks_and_masks() {
        let n = |a: &str| address(a).unwrap();
        assert_eq!(
            n("0.0.0.0/0"),
            Address::Net {
                ip: "0.0.0.0".parse().unwrap(),
                prefix: 0
            }
        );
        assert_eq!(
            n("10.0.0.0 255.255.0.0"),
            Address::Net {
                ip: "10.0.0.0".parse().unwrap(),
                prefix: 16
            }
        );
        assert_eq!(mask_prefix("255.255.255.255".parse().unwrap()), Some(32));
        assert_eq!(mask_prefix("0.0.0.0".parse().unwrap()), Some(0));
        assert_eq!(mask_prefix("ffff:ffff::".parse().unwrap()), Some(32));
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(in_net(ip("10.1.2.3"), ip("10.0.0.0"), 8));
        assert!(!in_net(ip("11.1.2.3"), ip("10.0.0.0"), 8));
        assert!(in_net(ip("1.2.3.4"), ip("0.0.0.0"), 0));
        assert!(!in_net(ip("::1"), ip("0.0.0.0"), 0));
        assert!(in_net(ip("fd00::5"), ip("fd00::"), 64));
        assert!(!in_net(ip("fd01::5"), ip("fd00::"), 64));
    }
}
