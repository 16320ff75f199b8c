//! The unit of routing: an autocommit simple Query, or an extended-protocol batch up to Sync,
//! and where it may run. Pure: it reads message bytes and a lookup of named statements.

use sluice_proto::frontend::FrontendTag;
use sluice_proto::{Header, split_cstr};

use super::{Classification, Reason, Route, RouteReason, classify};

/// Where a unit of work may run, from the statements it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unit {
    /// Provably read-only (or inside a `READ ONLY` transaction it opens): a replica may run it.
    pub read: bool,
    /// Why not, when not.
    pub reason: Reason,
    pub hint: bool,
    pub begins_ro_tx: bool,
    pub ends_tx: bool,
}

impl Unit {
    pub fn read() -> Unit {
        Unit {
            read: true,
            reason: Reason::ReadOnly,
            hint: false,
            begins_ro_tx: false,
            ends_tx: false,
        }
    }

    pub fn primary(reason: Reason) -> Unit {
        Unit {
            read: false,
            reason,
            hint: false,
            begins_ro_tx: false,
            ends_tx: false,
        }
    }

    /// Why a replica may run it (for a unit that is `read`).
    pub fn replica_reason(&self) -> RouteReason {
        if self.begins_ro_tx {
            RouteReason::ReadOnlyTransaction
        } else if self.hint {
            RouteReason::Hint
        } else {
            RouteReason::ReadOnly
        }
    }

    fn add(&mut self, c: Classification) {
        if !self.read {
            return;
        }
        if c.route == Route::Primary {
            *self = Unit::primary(c.reason);
            // Kept for a primary unit too: a COMMIT ends the transaction wherever it runs.
            self.ends_tx = c.ends_tx && !c.chains_tx;
            return;
        }
        self.hint |= c.reason == Reason::HintReplica;
        self.begins_ro_tx |= c.begins_read_only_tx;
        self.ends_tx |= c.ends_tx && !c.chains_tx;
    }
}

/// Classifies SQL given as bytes (None when it is not UTF-8).
pub fn classify_bytes(sql: &[u8], writing_functions: &[String]) -> Option<Classification> {
    std::str::from_utf8(sql)
        .ok()
        .map(|q| classify(q, writing_functions))
}

/// Classifies the unit of work that starts with the whole message `first` and continues in `rest`
/// up to its Sync (a Query is a unit by itself). `named` gives the classification of a client's
/// named statement prepared before this unit. Returns the unit with how many bytes of `rest`
/// belong to it, or None for the length when its end has not arrived yet.
pub fn classify_unit(
    writing_functions: &[String],
    first: &[u8],
    rest: &[u8],
    max: usize,
    named: impl Fn(&[u8]) -> Option<Classification>,
) -> (Unit, Option<usize>) {
    let text = |b: &[u8]| classify_bytes(b, writing_functions);
    if first[0] == FrontendTag::Query.as_u8() {
        let body = &first[Header::LEN..];
        let mut u = Unit::read();
        match body.strip_suffix(&[0]).and_then(text) {
            Some(c) => u.add(c),
            None => u = Unit::primary(Reason::Malformed),
        }
        return (u, Some(0));
    }
    let mut u = Unit::read();
    let mut statements = 0;
    let mut unnamed: Option<Classification> = None;
    let mut parsed: Vec<(&[u8], Classification)> = Vec::new();
    let mut msg = first;
    let mut used = 0;
    loop {
        let body = &msg[Header::LEN..];
        let lookup = |name: &[u8], parsed: &[(&[u8], Classification)]| {
            if name.is_empty() {
                return unnamed;
            }
            parsed
                .iter()
                .rev()
                .find(|(n, _)| *n == name)
                .map(|(_, c)| *c)
                .or_else(|| named(name))
        };
        match FrontendTag::from_u8(msg[0]) {
            Some(FrontendTag::Parse) => {
                let c = split_cstr(body).and_then(|(name, tail)| {
                    let (q, _) = split_cstr(tail)?;
                    Some((name, text(q)?))
                });
                let Some((name, c)) = c else {
                    return (Unit::primary(Reason::Malformed), Some(used));
                };
                if name.is_empty() {
                    unnamed = Some(c);
                } else {
                    parsed.push((name, c));
                }
                statements += 1;
                u.add(c);
            }
            Some(tag @ (FrontendTag::Bind | FrontendTag::Describe)) => {
                let name = if tag == FrontendTag::Bind {
                    split_cstr(body)
                        .and_then(|(_, rest)| split_cstr(rest))
                        .map(|(n, _)| n)
                } else {
                    match body.split_first() {
                        Some((b'S', rest)) => split_cstr(rest).map(|(n, _)| n),
                        _ => None,
                    }
                };
                if let Some(name) = name {
                    match lookup(name, &parsed) {
                        Some(c) => {
                            statements += 1;
                            u.add(c);
                        }
                        None => u = Unit::primary(Reason::Uncertain),
                    }
                } else if tag == FrontendTag::Bind {
                    u = Unit::primary(Reason::Malformed);
                }
            }
            Some(FrontendTag::Execute | FrontendTag::Close | FrontendTag::Flush) => {}
            Some(FrontendTag::Sync) => {
                if statements == 0 {
                    u = Unit::primary(Reason::Uncertain);
                }
                return (u, Some(used));
            }
            _ => u = Unit::primary(Reason::Uncertain),
        }
        let len = match Header::parse(&rest[used..], max) {
            Ok(Some(h)) if rest.len() - used >= h.wire_len() => h.wire_len(),
            _ => return (u, None),
        };
        msg = &rest[used..used + len];
        used += len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use postgres_protocol::message::frontend;

    fn none(_: &[u8]) -> Option<Classification> {
        None
    }

    fn batch(f: impl FnOnce(&mut BytesMut)) -> BytesMut {
        let mut b = BytesMut::new();
        f(&mut b);
        b
    }

    /// (first message, the rest) as the session holds them.
    fn split(b: &BytesMut) -> (&[u8], &[u8]) {
        let h = Header::parse(b, usize::MAX).unwrap().unwrap();
        b.split_at(h.wire_len())
    }

    #[test]
    fn simple_select_is_read() {
        let q = batch(|b| frontend::query("select 1", b).unwrap());
        let (u, len) = classify_unit(&[], &q, &[], usize::MAX, none);
        assert!(u.read);
        assert_eq!(len, Some(0));
        let q = batch(|b| frontend::query("insert into t values (1)", b).unwrap());
        assert!(!classify_unit(&[], &q, &[], usize::MAX, none).0.read);
    }

    #[test]
    fn extended_batch_up_to_sync() {
        let b = batch(|b| {
            frontend::parse("", "select $1", std::iter::empty(), b).unwrap();
            frontend::bind(
                "",
                "",
                std::iter::empty(),
                std::iter::empty::<&[u8]>(),
                |_, _| Ok(postgres_protocol::IsNull::Yes),
                std::iter::empty(),
                b,
            )
            .map_err(|_| ())
            .unwrap();
            frontend::execute("", 0, b).unwrap();
            frontend::sync(b);
        });
        let (first, rest) = split(&b);
        let (u, len) = classify_unit(&[], first, rest, usize::MAX, none);
        assert!(u.read);
        assert_eq!(len, Some(rest.len()));
        // Without its Sync the end is unknown.
        let cut = &rest[..rest.len() - 5];
        assert_eq!(classify_unit(&[], first, cut, usize::MAX, none).1, None);
    }

    #[test]
    fn named_statements_use_the_lookup() {
        let b = batch(|b| {
            frontend::describe(b'S', "s1", b).unwrap();
            frontend::sync(b);
        });
        let (first, rest) = split(&b);
        let (u, _) = classify_unit(&[], first, rest, usize::MAX, none);
        assert_eq!(u, Unit::primary(Reason::Uncertain), "unknown name");
        let read = |n: &[u8]| (n == b"s1").then(|| classify("select 1", &[]));
        assert!(classify_unit(&[], first, rest, usize::MAX, read).0.read);
        let write = |_: &[u8]| Some(classify("delete from t", &[]));
        assert!(!classify_unit(&[], first, rest, usize::MAX, write).0.read);
    }

    #[test]
    fn a_sync_alone_goes_to_the_primary() {
        let b = batch(frontend::sync);
        let (u, _) = classify_unit(&[], &b, &[], usize::MAX, none);
        assert!(!u.read);
    }

    /// A COMMIT goes to the primary and still says it ends the transaction (routing asks the
    /// primary whether the transaction wrote anything just before it).
    #[test]
    fn commit_is_a_primary_unit_that_ends_the_transaction() {
        for sql in ["commit", "END", "rollback"] {
            let q = batch(|b| frontend::query(sql, b).unwrap());
            let (u, _) = classify_unit(&[], &q, &[], usize::MAX, none);
            assert!(!u.read && u.ends_tx, "{sql}: {u:?}");
        }
        let q = batch(|b| frontend::query("commit and chain", b).unwrap());
        assert!(!classify_unit(&[], &q, &[], usize::MAX, none).0.ends_tx);
    }

    #[test]
    fn read_only_transaction_begins() {
        let q = batch(|b| frontend::query("begin read only", b).unwrap());
        let (u, _) = classify_unit(&[], &q, &[], usize::MAX, none);
        assert!(u.read && u.begins_ro_tx);
        assert_eq!(u.replica_reason(), RouteReason::ReadOnlyTransaction);
    }
}
