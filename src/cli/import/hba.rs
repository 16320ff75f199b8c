//! `auth_type = hba`: PgBouncer reads each client's authentication method from an
//! `auth_hba_file` in pg_hba.conf format. sluice chooses the method by user, then database, then
//! `[pooler]` and knows nothing of client addresses or Unix sockets, so [`plan`] turns the rules
//! into those three levels and says what it had to leave out:
//!
//! * a rule for every database and user sets `[pooler] auth_type` (the first such rule, as the
//!   first matching line wins in pg_hba.conf);
//! * a rule for named databases and every user sets their `auth_type`; a rule for named users
//!   and every database, theirs;
//! * address ranges are not carried over; where rules for different ranges disagree, the
//!   stricter method is kept (scram-sha-256 over md5 over trust), so no client gets in more
//!   easily than before;
//! * `local` rules (Unix sockets), `reject`, and methods sluice lacks (`cert`, `peer`, `ldap`,
//!   ...) are reported and skipped; `hostssl` is read as `host` (these per-user methods apply to every connection);
//!   `password` becomes `scram-sha-256`.

use super::Note;
use super::ini::Origin;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// `local`, `host`, `hostssl`, `hostnossl`.
    pub kind: String,
    pub databases: Vec<String>,
    pub users: Vec<String>,
    /// `None` for `local`; `all`, `a.b.c.d/n`, or `a.b.c.d m.a.s.k` joined with a space.
    pub address: Option<String>,
    pub method: String,
    pub origin: Origin,
}

/// Parses pg_hba.conf text (the library's parser, [`sluice::hba::parse`]), each line with its
/// origin for the notes.
pub fn parse(file: &str, text: &str) -> Result<Vec<Rule>, String> {
    Ok(sluice::hba::parse(file, text)?
        .into_iter()
        .map(|l| Rule {
            kind: l.kind,
            databases: l.databases,
            users: l.users,
            address: l.address,
            method: l.method,
            origin: Origin {
                file: file.to_owned(),
                line: l.line,
            },
        })
        .collect())
}

/// What the rules come to in sluice's terms.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// `[pooler] auth_type`.
    pub default: Option<&'static str>,
    /// `[databases.NAME] auth_type`, in rule order.
    pub databases: Vec<(String, &'static str)>,
    /// `[users.NAME] auth_type`, in rule order.
    pub users: Vec<(String, &'static str)>,
    pub notes: Vec<Note>,
}

/// How strict a sluice method is (higher: harder to get in).
fn strength(m: &str) -> u8 {
    match m {
        "trust" => 0,
        "md5" => 1,
        _ => 2,
    }
}

fn covers_every_address(a: &str) -> bool {
    matches!(
        a,
        "all" | "0.0.0.0/0" | "::/0" | "::0/0" | "0.0.0.0 0.0.0.0"
    )
}

/// One level's choice for one name: the method and whether an address range limited the rule
/// that chose it.
type Slot = (String, &'static str, bool);

/// Sets the slot for `name` unless a rule set it already; a later rule for a different address
/// range only ever makes it stricter. Returns the method it replaced.
fn settle(
    slots: &mut Vec<Slot>,
    name: &str,
    method: &'static str,
    ranged: bool,
) -> Option<&'static str> {
    match slots.iter_mut().find(|(n, _, _)| n == name) {
        None => {
            slots.push((name.to_owned(), method, ranged));
            None
        }
        Some((_, m, r)) if (ranged || *r) && strength(method) > strength(m) => {
            let old = *m;
            *m = method;
            Some(old)
        }
        Some(_) => None,
    }
}

pub fn plan(rules: &[Rule]) -> Plan {
    let mut p = Plan::default();
    let mut defaults: Vec<Slot> = Vec::new();
    let mut databases: Vec<Slot> = Vec::new();
    let mut users: Vec<Slot> = Vec::new();
    for r in rules {
        let at = r.origin.to_string();
        let setting = format!(
            "auth_hba_file: {} {} {}{} {}",
            r.kind,
            r.databases.join(","),
            r.users.join(","),
            r.address
                .as_deref()
                .map(|a| format!(" {a}"))
                .unwrap_or_default(),
            r.method
        );
        let note = |why: String, nearest: Option<&str>| {
            Note::dropped(&setting, "", Some(at.clone()), why, nearest)
        };
        if r.kind == "local" {
            p.notes.push(note(
                "a Unix-socket rule; sluice listens on TCP only".into(),
                None,
            ));
            continue;
        }
        let method = match r.method.as_str() {
            "scram-sha-256" => "scram-sha-256",
            "md5" => "md5",
            "trust" => "trust",
            "password" => {
                p.notes.push(Note::changed(
                    &setting,
                    "",
                    Some(at.clone()),
                    "sluice does not take clear-text passwords; it asks for SCRAM-SHA-256 instead"
                        .into(),
                    Some("auth_type = \"scram-sha-256\""),
                ));
                "scram-sha-256"
            }
            "reject" => {
                p.notes.push(note(
                    "sluice has no reject rule: a user or database it should refuse must be left out of [users] / [databases]".into(),
                    None,
                ));
                continue;
            }
            other => {
                p.notes.push(note(
                    format!("sluice has no `{other}` authentication (it has scram-sha-256, md5 and trust)"),
                    Some("auth_type = \"scram-sha-256\""),
                ));
                continue;
            }
        };
        if r.kind == "hostssl" {
            p.notes.push(Note::changed(
                &setting,
                "",
                Some(at.clone()),
                "the rule becomes a per-user or per-database method for every connection, TLS or not; sluice's own auth_hba_file keeps hostssl".into(),
                Some("auth_hba_file"),
            ));
        }
        let address = r.address.as_deref().unwrap_or("all");
        let ranged = !covers_every_address(address);
        if ranged {
            p.notes.push(note(
                format!("the address range {address} is not carried over: sluice chooses the method by user and database only (where rules for different ranges disagree, the stricter method is kept)"),
                None,
            ));
        }
        let plain = |names: &[String]| -> Vec<String> {
            names
                .iter()
                .filter(|n| n.as_str() != "all")
                .cloned()
                .collect()
        };
        let odd: Vec<&String> = r
            .databases
            .iter()
            .chain(&r.users)
            .filter(|n| {
                n.starts_with('@')
                    || n.starts_with('+')
                    || matches!(
                        n.as_str(),
                        "sameuser" | "samerole" | "samegroup" | "replication"
                    )
            })
            .collect();
        if !odd.is_empty() {
            p.notes.push(note(
                format!(
                    "{} cannot be expressed in sluice (databases and users are listed by name)",
                    odd.iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                None,
            ));
            continue;
        }
        let all_dbs = r.databases.iter().any(|d| d == "all");
        let all_users = r.users.iter().any(|u| u == "all");
        let replaced = |p: &mut Plan, what: String, old: Option<&'static str>| {
            if let Some(old) = old {
                p.notes.push(Note::changed(
                    &setting,
                    "",
                    Some(at.clone()),
                    format!("{what}: {old} from an earlier rule for another address range; the stricter {method} is kept"),
                    None,
                ));
            }
        };
        match (all_dbs, all_users) {
            (true, true) => {
                let old = settle(&mut defaults, "", method, ranged);
                replaced(&mut p, "[pooler] auth_type".into(), old);
            }
            (false, true) => {
                for db in plain(&r.databases) {
                    let old = settle(&mut databases, &db, method, ranged);
                    replaced(&mut p, format!("databases.{db}.auth_type"), old);
                }
            }
            (true, false) => {
                for u in plain(&r.users) {
                    let old = settle(&mut users, &u, method, ranged);
                    replaced(&mut p, format!("users.{u}.auth_type"), old);
                }
            }
            (false, false) => p.notes.push(note(
                "a rule for particular users of particular databases cannot be expressed: sluice sets auth_type per user or per database".into(),
                Some("[users.NAME] auth_type (for every database)"),
            )),
        }
    }
    p.default = defaults.first().map(|(_, m, _)| *m);
    // A rule for one address range that is looser than what every other client gets (the
    // default) would let clients from elsewhere in more easily: keep the default's strictness.
    let floor = p.default.unwrap_or("trust");
    for (level, slots, out) in [
        ("databases", databases, &mut p.databases),
        ("users", users, &mut p.users),
    ] {
        for (name, method, ranged) in slots {
            let method = if ranged && strength(method) < strength(floor) {
                p.notes.push(Note::changed(
                    &format!("{level}.{name}.auth_type"),
                    "",
                    None,
                    format!("{method} came from a rule for one address range only; sluice cannot tell addresses apart, so the default {floor} is kept"),
                    None,
                ));
                floor
            } else {
                method
            };
            out.push((name, method));
        }
    }
    if !p.users.is_empty() && !p.databases.is_empty() {
        p.notes.push(Note::changed(
            "auth_hba_file",
            "",
            None,
            "sluice takes a user's auth_type before its database's, whatever the order of the rules".into(),
            None,
        ));
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    const HBA: &str = "\
# TYPE  DATABASE  USER      ADDRESS         METHOD
local   all       all                       peer
host    all       admin     127.0.0.1/32    trust
host    reports   all       10.0.0.0 255.0.0.0 md5
hostssl all       all       0.0.0.0/0       scram-sha-256
host    all       all       127.0.0.1/32    trust
host    all       \"odd user\",bob all        password
host    all       all       all             reject
host    app       carol     all             md5
host    @dbs.txt  all       all             md5
";

    #[test]
    fn parses_fields_quotes_masks_and_comments() {
        let rules = parse("hba.conf", HBA).unwrap();
        assert_eq!(rules.len(), 9);
        assert_eq!(rules[0].address, None);
        assert_eq!(rules[2].address.as_deref(), Some("10.0.0.0 255.0.0.0"));
        assert_eq!(rules[2].method, "md5");
        assert_eq!(rules[5].users, ["odd user", "bob"]);
        assert_eq!(rules[3].origin.line, 5);
        assert!(parse("h", "host all all\n").is_err());
        assert!(parse("h", "hosts all all all trust\n").is_err());
        assert!(parse("h", "host \"all all all trust\n").is_err());
    }

    #[test]
    fn plan_levels_strictness_and_notes() {
        let p = plan(&parse("hba.conf", HBA).unwrap());
        // The first all/all rule is scram (hostssl read as host); the later trust rule for a
        // narrower range does not loosen it.
        assert_eq!(p.default, Some("scram-sha-256"));
        // reports' md5 held for 10/8 only, looser than the default: the default is kept.
        assert_eq!(p.databases, [("reports".to_owned(), "scram-sha-256")]);
        // admin's trust held for 127.0.0.1 only: elsewhere admin got scram.
        assert_eq!(
            p.users,
            [
                ("admin".to_owned(), "scram-sha-256"),
                ("odd user".to_owned(), "scram-sha-256"),
                ("bob".to_owned(), "scram-sha-256"),
            ]
        );
        let text: Vec<String> = p.notes.iter().map(|n| n.to_string()).collect();
        let all = text.join("\n");
        for expect in [
            "Unix-socket rule",
            "127.0.0.1/32 is not carried over",
            "TLS or not",
            "clear-text passwords",
            "no reject rule",
            "particular users of particular databases",
            "@dbs.txt cannot be expressed",
            "user's auth_type before its database's",
            "trust came from a rule for one address range only",
        ] {
            assert!(all.contains(expect), "no note saying {expect:?}:\n{all}");
        }
    }

    #[test]
    fn a_stricter_rule_for_another_range_wins() {
        let p = plan(
            &parse(
                "h",
                "host all all 127.0.0.1/32 trust\nhost all all 0.0.0.0/0 md5\n",
            )
            .unwrap(),
        );
        assert_eq!(p.default, Some("md5"));
        assert!(
            p.notes
                .iter()
                .any(|n| n.to_string().contains("the stricter md5 is kept"))
        );
        // Without address ranges the first rule simply wins.
        let p = plan(&parse("h", "host all all all trust\nhost all all all md5\n").unwrap());
        assert_eq!(p.default, Some("trust"));
    }
}
