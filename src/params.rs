//! Session parameters: what a client has set, what a server connection has, and the SQL that brings
//! a server connection to a client's values before it serves that client.
//!
//! Tracked: the parameters PostgreSQL reports (ParameterStatus) that a client may change and that
//! change results: client_encoding, DateStyle, TimeZone, IntervalStyle, standard_conforming_strings,
//! application_name; plus any other parameter the client gave in its startup packet (for example
//! pgJDBC's extra_float_digits). A client's own later `SET` of an unreported parameter is read
//! from its statements (`router/setting.rs`, `client/settings.rs`) and kept here as an extra.

use std::sync::Arc;

use postgres_protocol::escape::{escape_identifier, escape_literal};
use sluice_proto::backend_view::ParameterStatus;

/// Reported parameters a client may change and that sluice keeps per client.
pub const TRACKED: &[&str] = &[
    "client_encoding",
    "DateStyle",
    "TimeZone",
    "IntervalStyle",
    "standard_conforming_strings",
    "application_name",
    // Reported since PostgreSQL 14, 16 and 18: a client's change must not stay on the server.
    "default_transaction_read_only",
    "scram_iterations",
    "search_path",
    // Changed only by a superuser pool's clients (SET SESSION AUTHORIZATION).
    "session_authorization",
];

pub fn is_tracked(name: &str) -> bool {
    TRACKED.iter().any(|t| t.eq_ignore_ascii_case(name))
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    name: String,
    value: String,
    /// Set from a client's startup packet, not reported by the server: must be RESET when the next
    /// client does not want it.
    extra: bool,
}

/// An ordered name → value list. Names compare case-insensitively, as GUC names do.
///
/// The list is shared between clones and copied on the first change (clients whose parameters
/// are the pool's defaults, most of them, share one list instead of holding a copy each).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    entries: Arc<Vec<Entry>>,
}

/// Distinct parameter lists an interner keeps.
const INTERNED: usize = 32;

/// Lets clients with equal parameter lists share one copy. An application sends the same
/// startup packet every time, so its clients differ from the pool's defaults (in
/// application_name, say) all in the same way; without this each would hold its own copy of the
/// list, a few hundred bytes per idle client. A client that changes its list later (SET) gets
/// its own copy then, as before. Up to `INTERNED` (32) lists are kept.
#[derive(Default)]
pub struct ParamsInterner(std::sync::Mutex<Vec<Params>>);

impl ParamsInterner {
    /// An equal list that is already shared, or `params` itself (remembered for the next one).
    pub fn share(&self, params: Params) -> Params {
        let mut lists = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(same) = lists.iter().find(|l| **l == params) {
            return same.clone();
        }
        if lists.len() < INTERNED {
            lists.push(params.clone());
        }
        params
    }
}

/// What startup parameters became on a server, by the exact list a client sent them in, so that
/// the next client sending the same list needs no server connection at login. PostgreSQL
/// normalises some values (DateStyle "ISO" reads back "ISO, MDY", client_encoding "utf8"
/// "UTF8") and rejects others, which is why a list is tried on a server once. An application
/// sends the same startup packet every time, so its clients log in without waiting for a server
/// even while every server connection is taken (session mode). Only what a server said while its
/// values for those parameters were the pool's defaults (where a fresh PostgreSQL login starts)
/// is remembered; up to `INTERNED` (32) lists.
#[derive(Default)]
pub struct StartupMemo(std::sync::Mutex<Vec<(StartupList, Params)>>);

/// Startup parameters as a client sent them, in its order.
type StartupList = Vec<(String, String)>;

impl StartupMemo {
    /// Sets in `wanted` what `requested` became last time; false when it is not known.
    pub fn apply(&self, requested: &[(String, String)], wanted: &mut Params) -> bool {
        let lists = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let Some((_, became)) = lists.iter().find(|(r, _)| r == requested) else {
            return false;
        };
        wanted.set_all(became);
        true
    }

    /// Remembers that `requested` became `became` (the entries login set in a client's values).
    pub fn remember(&self, requested: &[(String, String)], became: Params) {
        let mut lists = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if lists.len() < INTERNED && !lists.iter().any(|(r, _)| r == requested) {
            lists.push((requested.to_vec(), became));
        }
    }
}

/// How a login with a given startup list ended, once one did: the client's parameter list (the
/// one its pool's interner shares) and its ParameterStatus messages, written once and copied into
/// every later greeting for that list. Only for lists no server is asked about (the pool's
/// defaults, or a list the [`StartupMemo`] knows): the pool's defaults are fixed at its first
/// login and a memo entry is never replaced, so the same list then always ends the same way. Up
/// to `INTERNED` (32) lists.
#[derive(Default)]
pub struct GreetingMemo(std::sync::Mutex<Vec<(StartupList, Params, bytes::Bytes)>>);

impl GreetingMemo {
    /// The parameter list and ParameterStatus messages of a login that sent `requested`.
    pub fn get(&self, requested: &[(String, String)]) -> Option<(Params, bytes::Bytes)> {
        let lists = self.0.lock().unwrap_or_else(|p| p.into_inner());
        lists
            .iter()
            .find(|(r, _, _)| r == requested)
            .map(|(_, wanted, greeting)| (wanted.clone(), greeting.clone()))
    }

    /// Remembers how a login that sent `requested` ended.
    pub fn remember(&self, requested: &[(String, String)], wanted: Params, greeting: bytes::Bytes) {
        let mut lists = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if lists.len() < INTERNED && !lists.iter().any(|(r, _, _)| r == requested) {
            lists.push((requested.to_vec(), wanted, greeting));
        }
    }
}

impl Params {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|e| e.name.eq_ignore_ascii_case(name))
            .map(|e| e.value.as_str())
    }

    /// The very same list, not an equal one: true only while neither has been changed since
    /// one was cloned from the other (a change copies a list that is shared). Holding a clone
    /// of each is what makes a later "same" mean "unchanged".
    pub fn same_list(&self, other: &Params) -> bool {
        Arc::ptr_eq(&self.entries, &other.entries)
    }

    /// [`Self::get`], searching from index `*at` round to it; `*at` moves past the entry found.
    fn get_from(&self, name: &str, at: &mut usize) -> Option<&str> {
        let n = self.entries.len();
        for i in (*at..n).chain(0..(*at).min(n)) {
            let e = &self.entries[i];
            // Names are nearly always spelled alike on both sides: a plain comparison first.
            if e.name == name || e.name.eq_ignore_ascii_case(name) {
                *at = i + 1;
                return Some(&e.value);
            }
        }
        None
    }

    /// Sets a reported parameter, keeping the position of an existing entry.
    pub fn set(&mut self, name: &str, value: &str) {
        self.set_entry(name, value, false)
    }

    /// Sets a parameter the server does not report.
    pub fn set_extra(&mut self, name: &str, value: &str) {
        self.set_entry(name, value, true)
    }

    fn set_entry(&mut self, name: &str, value: &str, extra: bool) {
        match self
            .entries
            .iter()
            .position(|e| e.name.eq_ignore_ascii_case(name))
        {
            Some(i) => {
                let e = &self.entries[i];
                if e.value == value && e.extra == extra {
                    return;
                }
                let e = &mut Arc::make_mut(&mut self.entries)[i];
                if e.value != value {
                    e.value.clear();
                    e.value.push_str(value);
                }
                e.extra = extra;
            }
            None => Arc::make_mut(&mut self.entries).push(Entry {
                name: name.to_owned(),
                value: value.to_owned(),
                extra,
            }),
        }
    }

    /// Sets every entry of `other` (an extra stays an extra).
    pub fn set_all(&mut self, other: &Params) {
        for e in other.entries.iter() {
            self.set_entry(&e.name, &e.value, e.extra);
        }
    }

    pub fn remove(&mut self, name: &str) {
        if self.get(name).is_some() {
            Arc::make_mut(&mut self.entries).retain(|e| !e.name.eq_ignore_ascii_case(name));
        }
    }

    /// An entry the server reports (ParameterStatus), not an extra.
    pub fn is_reported(&self, name: &str) -> bool {
        self.entries
            .iter()
            .any(|e| !e.extra && e.name.eq_ignore_ascii_case(name))
    }

    /// The names of the extras (parameters the server does not report).
    pub fn extras(&self) -> impl Iterator<Item = &str> {
        self.entries
            .iter()
            .filter(|e| e.extra)
            .map(|e| e.name.as_str())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries
            .iter()
            .map(|e| (e.name.as_str(), e.value.as_str()))
    }

    /// The [`TRACKED`] parameters of `self`, in its order: what a client starts with.
    pub fn tracked(&self) -> Params {
        let entries = self
            .entries
            .iter()
            .filter(|e| is_tracked(&e.name))
            .cloned()
            .collect();
        Params {
            entries: Arc::new(entries),
        }
    }

    /// Applies a ParameterStatus body (`name\0value\0`). Malformed bodies are ignored.
    pub fn apply_status(&mut self, body: &[u8]) {
        if let Ok(ParameterStatus { name, value }) = ParameterStatus::decode(body) {
            self.set(name, value);
        }
    }

    /// The SQL that makes a server with `self` as its params match `wanted`, or `None` when they
    /// already match. One simple Query, so it can be pipelined in front of the client's own.
    pub fn sync_sql(&self, wanted: &Params) -> Option<String> {
        let mut sets = Vec::new();
        // Runs at every checkout. Both lists mostly follow the server's own order (a client's
        // defaults come from a server's login), so each name is looked for from just after the
        // previous one's place: one comparison each, instead of a scan of the whole list.
        let mut at = 0;
        for e in wanted.entries.iter() {
            if self.get_from(&e.name, &mut at) != Some(e.value.as_str()) {
                sets.push(format!(
                    "pg_catalog.set_config({}, {}, false)",
                    escape_literal(&e.name),
                    escape_literal(&e.value)
                ));
            }
        }
        let resets: Vec<String> = self
            .entries
            .iter()
            .filter(|e| e.extra && wanted.get(&e.name).is_none())
            .map(|e| format!("RESET {}", escape_identifier(&e.name)))
            .collect();
        if sets.is_empty() && resets.is_empty() {
            return None;
        }
        let mut sql = String::new();
        if !sets.is_empty() {
            sql.push_str("SELECT ");
            sql.push_str(&sets.join(", "));
        }
        for r in resets {
            if !sql.is_empty() {
                sql.push_str("; ");
            }
            sql.push_str(&r);
        }
        Some(sql)
    }

    /// After `sync_sql(wanted)` ran: record the values that PostgreSQL does not report back.
    pub fn note_synced(&mut self, wanted: &Params) {
        let unwanted = |e: &Entry| e.extra && wanted.get(&e.name).is_none();
        if self.entries.iter().any(unwanted) {
            Arc::make_mut(&mut self.entries).retain(|e| !unwanted(e));
        }
        for e in wanted.entries.iter().filter(|e| e.extra) {
            self.set_extra(&e.name, &e.value);
        }
    }
}

/// Splits libpq's `options` startup parameter (`-c name=value`, `--name=value`) into parameters.
pub fn parse_options(options: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut words = options.split_ascii_whitespace();
    while let Some(w) = words.next() {
        let setting = if w == "-c" {
            words
                .next()
                .ok_or_else(|| "-c without a setting".to_owned())?
        } else if let Some(s) = w.strip_prefix("-c") {
            s
        } else if let Some(s) = w.strip_prefix("--") {
            s
        } else {
            return Err(format!(
                "unsupported option \"{w}\" (only -c name=value is supported)"
            ));
        };
        let (name, value) = setting
            .split_once('=')
            .ok_or_else(|| format!("option \"{setting}\" has no value"))?;
        out.push((name.replace('-', "_"), value.to_owned()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_list_means_unchanged_since_cloned() {
        let mut a = Params::default();
        a.set("TimeZone", "UTC");
        let mut b = a.clone();
        assert!(a.same_list(&b));
        // Setting the value it already has is no change.
        b.set("TimeZone", "UTC");
        assert!(a.same_list(&b));
        b.set("TimeZone", "Europe/Paris");
        assert!(!a.same_list(&b));
        assert_eq!(a.get("TimeZone"), Some("UTC"));
        // An equal list made separately is not the same list.
        let mut c = Params::default();
        c.set("TimeZone", "UTC");
        assert!(!a.same_list(&c));
    }

    #[test]
    fn interner_shares_equal_lists_and_copies_on_change() {
        let interner = ParamsInterner::default();
        let list = |app: &str| {
            let mut p = Params::default();
            p.set("client_encoding", "UTF8");
            p.set("application_name", app);
            p
        };
        let a = interner.share(list("web"));
        let b = interner.share(list("web"));
        assert!(
            Arc::ptr_eq(&a.entries, &b.entries),
            "equal lists are shared"
        );
        let c = interner.share(list("worker"));
        assert!(!Arc::ptr_eq(&a.entries, &c.entries));
        assert_eq!(c.get("application_name"), Some("worker"));
        // A change later (a client's SET) copies: the other holders keep their values.
        let mut changed = b.clone();
        changed.set("application_name", "batch");
        assert_eq!(a.get("application_name"), Some("web"));
        assert_eq!(changed.get("application_name"), Some("batch"));
        // Past the limit, lists are no longer remembered but still returned unchanged.
        for i in 0..2 * INTERNED {
            let p = interner.share(list(&format!("app{i}")));
            assert_eq!(p.get("application_name"), Some(format!("app{i}").as_str()));
        }
        assert_eq!(interner.0.lock().unwrap().len(), INTERNED);
    }

    #[test]
    fn greeting_memo_gives_back_the_same_list_only_and_stays_bounded() {
        let memo = GreetingMemo::default();
        let list = |app: &str| vec![("application_name".to_owned(), app.to_owned())];
        let mut wanted = Params::default();
        wanted.set("application_name", "a");
        memo.remember(
            &list("a"),
            wanted.clone(),
            bytes::Bytes::from_static(b"S-a"),
        );
        let (got, greeting) = memo.get(&list("a")).expect("remembered");
        assert!(
            got.same_list(&wanted),
            "the very list remembered, not a copy"
        );
        assert_eq!(&greeting[..], b"S-a");
        assert!(memo.get(&list("b")).is_none());
        // The first outcome stays.
        memo.remember(
            &list("a"),
            Params::default(),
            bytes::Bytes::from_static(b"other"),
        );
        assert_eq!(&memo.get(&list("a")).unwrap().1[..], b"S-a");
        for i in 0..2 * INTERNED {
            memo.remember(
                &list(&i.to_string()),
                Params::default(),
                bytes::Bytes::new(),
            );
        }
        assert_eq!(memo.0.lock().unwrap().len(), INTERNED);
    }

    #[test]
    fn startup_memo_gives_back_what_the_same_list_became() {
        let memo = StartupMemo::default();
        let requested = |style: &str| {
            vec![
                ("DateStyle".to_owned(), style.to_owned()),
                ("search_path".to_owned(), "app".to_owned()),
            ]
        };
        let mut became = Params::default();
        became.set("DateStyle", "ISO, MDY");
        became.set_extra("search_path", "app");
        memo.remember(&requested("ISO"), became);

        let mut wanted = Params::default();
        wanted.set("DateStyle", "Postgres, MDY");
        wanted.set("TimeZone", "UTC");
        assert!(!memo.apply(&requested("SQL"), &mut wanted), "another list");
        assert_eq!(wanted.get("DateStyle"), Some("Postgres, MDY"));
        assert!(memo.apply(&requested("ISO"), &mut wanted));
        assert_eq!(wanted.get("DateStyle"), Some("ISO, MDY"));
        assert_eq!(wanted.get("TimeZone"), Some("UTC"));
        assert_eq!(wanted.get("search_path"), Some("app"));
        // The extra stays an extra: the next client without it has it RESET.
        let sql = wanted.sync_sql(&Params::default());
        assert_eq!(sql.as_deref(), Some("RESET \"search_path\""));
        // Order matters (a later duplicate wins in PostgreSQL too): only the exact list.
        let mut reversed = requested("ISO");
        reversed.reverse();
        assert!(!memo.apply(&reversed, &mut wanted));
        for i in 0..2 * INTERNED {
            memo.remember(&requested(&format!("x{i}")), Params::default());
        }
        assert_eq!(memo.0.lock().unwrap().len(), INTERNED);
    }

    #[test]
    fn sync_sets_what_differs_and_resets_unwanted_extras() {
        let mut server = Params::default();
        server.set("TimeZone", "UTC");
        server.set("application_name", "");
        server.set_extra("extra_float_digits", "3");
        let mut wanted = Params::default();
        wanted.set("TimeZone", "UTC");
        wanted.set("application_name", "it's");
        let sql = server.sync_sql(&wanted).unwrap();
        assert_eq!(
            sql,
            "SELECT pg_catalog.set_config('application_name', 'it''s', false); RESET \"extra_float_digits\""
        );
        server.set("application_name", "it's");
        server.note_synced(&wanted);
        assert_eq!(server.sync_sql(&wanted), None);
    }

    #[test]
    fn sync_finds_names_in_any_order() {
        let mut server = Params::default();
        for (k, v) in [("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")] {
            server.set(k, v);
        }
        let mut wanted = Params::default();
        for (k, v) in [("D", "4"), ("b", "2"), ("a", "1"), ("c", "3")] {
            wanted.set(k, v);
        }
        assert_eq!(server.sync_sql(&wanted), None);
        wanted.set("a", "9");
        wanted.set("e", "5");
        assert_eq!(
            server.sync_sql(&wanted).unwrap(),
            "SELECT pg_catalog.set_config('a', '9', false), pg_catalog.set_config('e', '5', false)"
        );
    }

    #[test]
    fn names_compare_case_insensitively() {
        let mut p = Params::default();
        p.set("DateStyle", "ISO, MDY");
        p.set("datestyle", "ISO, DMY");
        assert_eq!(p.iter().count(), 1);
        assert_eq!(p.get("DATESTYLE"), Some("ISO, DMY"));
    }

    #[test]
    fn options_parse() {
        assert_eq!(
            parse_options("-c search_path=a,b --statement-timeout=5s -cwork_mem=4MB").unwrap(),
            vec![
                ("search_path".into(), "a,b".into()),
                ("statement_timeout".into(), "5s".into()),
                ("work_mem".into(), "4MB".into())
            ]
        );
        assert!(parse_options("-x").is_err());
    }
}
