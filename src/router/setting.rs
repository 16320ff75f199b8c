//! What a statement does to the session's settings (`SET`, `RESET`, `DISCARD ALL`,
//! `set_config(…, false)`, and the savepoint commands that can undo them), read with the
//! classifier's lexer ([`Tokens`]). Pure: the session's record of settings
//! (`client/settings.rs`) applies these effects when PostgreSQL confirms them.
//!
//! A value is turned into the string `set_config` takes, as PostgreSQL flattens a `SET`'s
//! arguments: items joined with `", "`; unquoted words lowercased (`TRUE`, `ON` as `true`, `on`);
//! quoted identifiers as written without their quotes; strings decoded (`''`, `E'\n'`,
//! dollar quotes); numbers as written (integers without a sign `+` or leading zeros); for list
//! parameters that quote their items (`search_path`, `temp_tablespaces`, `*_preload_libraries`)
//! every word and string quoted as an identifier when it needs it. `DEFAULT` (and `SET TIME
//! ZONE LOCAL`) is a reset.
//!
//! What cannot be followed exactly is [`Effect::Untracked`]: a parameter (`$1`) or an
//! expression as a `set_config` argument, a `set_config(…)` call that is not one of a
//! `SELECT`'s plain output columns, `SET SEED`, a `U&` string or
//! identifier in a value, and a `DO` block whose body mentions `SET`, `RESET` or `set_config`.
//! The session then does not give that server connection to anyone else.

use super::classify::{Token, Tokens};

/// A session-level change of settings, as committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// `SET name = value`, `set_config(name, value, false)`. Names are lowercase unless quoted.
    Set { name: Box<str>, value: Box<str> },
    /// `RESET name`, `SET name TO DEFAULT`, `set_config(name, NULL, false)`.
    Reset { name: Box<str> },
    /// `RESET ALL` (`role` and `session_authorization` are not reset by it).
    ResetAll,
    /// `DISCARD ALL`: `RESET ALL` plus `SET SESSION AUTHORIZATION DEFAULT` (which resets `role`).
    DiscardAll,
}

/// What one statement does to the session's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Nothing that lasts past its transaction.
    Other,
    /// Session-level changes, in order (a `SELECT` may call `set_config` more than once).
    Changes(Vec<Change>),
    /// `SAVEPOINT name` (names are folded as identifiers).
    Savepoint(Box<str>),
    /// `RELEASE [SAVEPOINT] name`.
    Release(Box<str>),
    /// `ROLLBACK [WORK | TRANSACTION] TO [SAVEPOINT] name`.
    RollbackTo(Box<str>),
    /// Changes settings in a way sluice cannot follow.
    Untracked,
}

/// Parameters whose list items PostgreSQL quotes as identifiers (`GUC_LIST_QUOTE`).
const LIST_QUOTE: &[&str] = &[
    "search_path",
    "temp_tablespaces",
    "local_preload_libraries",
    "session_preload_libraries",
    "shared_preload_libraries",
];

/// Whether `sql` can have an effect at all: a cheap look for the words that start one, so most
/// queries are not lexed. `in_transaction_work`: changes are pending, so savepoint commands
/// matter too.
pub fn might_matter(sql: &[u8], in_transaction_work: bool) -> bool {
    // Eight bytes at a time: only the positions holding a first letter sought (`s`, `d`, and
    // `r` with transaction work, in either case) are looked at closer. Every Query in
    // transaction mode passes here, and a byte-at-a-time loop cost more than the rest of the
    // request's bookkeeping.
    let at = |i: usize, word: &[u8]| {
        sql.get(i..i + word.len())
            .is_some_and(|w| w.eq_ignore_ascii_case(word))
    };
    let word_at = |i: usize| match sql[i] | 0x20 {
        b's' => at(i, b"set") || (in_transaction_work && at(i, b"savepoint")),
        b'd' => at(i, b"discard"),
        b'r' => in_transaction_work && (at(i, b"release") || at(i, b"rollback")),
        _ => false,
    };
    let mut chunks = sql.chunks_exact(8);
    let mut base = 0;
    for chunk in chunks.by_ref() {
        let folded = u64::from_le_bytes(chunk.try_into().expect("eight bytes")) | FOLD;
        let mut hits = bytes_equal(folded, b's') | bytes_equal(folded, b'd');
        if in_transaction_work {
            hits |= bytes_equal(folded, b'r');
        }
        while hits != 0 {
            let i = base + hits.trailing_zeros() as usize / 8;
            if word_at(i) {
                return true;
            }
            hits &= hits - 1;
        }
        base += 8;
    }
    (base..sql.len()).any(word_at)
}

/// Sets bit 5 of every byte: ASCII letters to lower case (other bytes change too, but none of
/// them becomes a lower-case letter that was not one of the two cases of that letter).
const FOLD: u64 = 0x2020_2020_2020_2020;

/// The high bit of each byte of `word` that equals `b`, and no other bit (exact, no carries
/// between bytes).
#[inline]
fn bytes_equal(word: u64, b: u8) -> u64 {
    const LOW7: u64 = 0x7F7F_7F7F_7F7F_7F7F;
    let x = word ^ (u64::from(b) * 0x0101_0101_0101_0101);
    // A byte of `x` is zero exactly when its high bit stays clear here.
    let nonzero = ((x & LOW7) + LOW7) | x;
    !nonzero & !LOW7
}

/// The effects of a simple Query's statements: `(index, effect)` for each statement with one,
/// where `index` counts the statements that produce a completion (empty ones do not). `None`
/// when the text cannot be split into statements with certainty.
pub fn read_query(sql: &[u8]) -> Option<Vec<(u32, Effect)>> {
    let mut tokens = Tokens::new(sql);
    let mut out = Vec::new();
    let mut statement: Vec<Token<'_>> = Vec::new();
    let mut index = 0u32;
    let mut parens = 0u32;
    // Depth of `BEGIN ATOMIC … END` bodies (and `CASE … END` inside them).
    let mut atomic = 0u32;
    let mut finish = |statement: &mut Vec<Token<'_>>, out: &mut Vec<(u32, Effect)>| {
        if statement.is_empty() {
            return;
        }
        let effect = read_tokens(statement);
        if effect != Effect::Other {
            out.push((index, effect));
        }
        index += 1;
        statement.clear();
    };
    for t in tokens.by_ref() {
        match t {
            Token::Punct(b';') if parens == 0 && atomic == 0 => {
                finish(&mut statement, &mut out);
                continue;
            }
            Token::Punct(b'(') => parens += 1,
            Token::Punct(b')') => parens = parens.saturating_sub(1),
            Token::Word(w) if w.eq_ignore_ascii_case(b"atomic") => {
                if matches!(statement.last(), Some(Token::Word(b)) if b.eq_ignore_ascii_case(b"begin"))
                {
                    atomic += 1;
                }
            }
            Token::Word(w) if atomic > 0 && w.eq_ignore_ascii_case(b"case") => atomic += 1,
            Token::Word(w) if atomic > 0 && w.eq_ignore_ascii_case(b"end") => atomic -= 1,
            _ => {}
        }
        statement.push(t);
    }
    if tokens.failed() {
        return None;
    }
    finish(&mut statement, &mut out);
    Some(out)
}

/// The effect of one statement's text (a Parse holds one statement).
pub fn read_statement(sql: &[u8]) -> Effect {
    match read_query(sql) {
        None => Effect::Untracked,
        Some(mut effects) => match effects.len() {
            0 => Effect::Other,
            1 if effects[0].0 == 0 => effects.pop().expect("one").1,
            // PostgreSQL refuses more than one statement in a Parse.
            _ => Effect::Other,
        },
    }
}

fn word<'a>(t: Option<&Token<'a>>) -> Option<&'a [u8]> {
    match t {
        Some(Token::Word(w)) => Some(w),
        _ => None,
    }
}

fn is(t: Option<&Token<'_>>, kw: &str) -> bool {
    word(t).is_some_and(|w| w.eq_ignore_ascii_case(kw.as_bytes()))
}

/// The effect of one statement, as tokens without the final `;`.
fn read_tokens(t: &[Token<'_>]) -> Effect {
    let Some(first) = word(t.first()) else {
        return mentions_set_config(t);
    };
    let first = first.to_ascii_lowercase();
    match first.as_slice() {
        b"set" => read_set(&t[1..]),
        b"reset" => read_reset(&t[1..]),
        b"discard" if is(t.get(1), "all") && t.len() == 2 => {
            Effect::Changes(vec![Change::DiscardAll])
        }
        b"savepoint" => name_at(t, 1).map_or(Effect::Other, Effect::Savepoint),
        b"release" => {
            let at = if is(t.get(1), "savepoint") { 2 } else { 1 };
            name_at(t, at).map_or(Effect::Other, Effect::Release)
        }
        b"rollback" | b"abort" => {
            let mut at = 1;
            if is(t.get(at), "work") || is(t.get(at), "transaction") {
                at += 1;
            }
            if !is(t.get(at), "to") {
                return Effect::Other;
            }
            at += 1;
            if is(t.get(at), "savepoint") {
                at += 1;
            }
            name_at(t, at).map_or(Effect::Other, Effect::RollbackTo)
        }
        b"select" => read_select(t),
        b"do" => read_do(&t[1..]),
        _ => mentions_set_config(t),
    }
}

/// An identifier at `at` that ends the statement: lowercased unless quoted.
fn name_at(t: &[Token<'_>], at: usize) -> Option<Box<str>> {
    if t.len() != at + 1 {
        return None;
    }
    ident(&t[at])
}

fn ident(t: &Token<'_>) -> Option<Box<str>> {
    match t {
        Token::Word(w) => Some(lower(w).into()),
        Token::QuotedIdent(body) => Some(unquote_ident(body).into()),
        _ => None,
    }
}

fn lower(w: &[u8]) -> String {
    String::from_utf8_lossy(w).to_ascii_lowercase()
}

fn unquote_ident(body: &[u8]) -> String {
    String::from_utf8_lossy(body).replace("\"\"", "\"")
}

/// `SET …` after the `SET`.
fn read_set(t: &[Token<'_>]) -> Effect {
    let mut t = t;
    if is(t.first(), "local") {
        return Effect::Other;
    }
    if is(t.first(), "session") {
        // `SET SESSION CHARACTERISTICS AS TRANSACTION …` changes the default_transaction_*
        // parameters: not followed.
        if is(t.get(1), "characteristics") {
            return characteristics(&t[2..]);
        }
        if is(t.get(1), "authorization") {
            return match &t[2..] {
                [d] if is(Some(d), "default") => reset("session_authorization"),
                [v] => value_of(v).map_or(Effect::Untracked, |v| set("session_authorization", v)),
                _ => Effect::Other,
            };
        }
        t = &t[1..];
    }
    let Some(kw) = word(t.first()) else {
        return match t.first() {
            Some(Token::QuotedIdent(_)) => generic_set(t),
            _ => Effect::Other,
        };
    };
    if kw.eq_ignore_ascii_case(b"seed") {
        return Effect::Untracked;
    }
    if matches!(t.get(1), Some(Token::Punct(b'=' | b'.'))) || is(t.get(1), "to") {
        return generic_set(t);
    }
    match kw.to_ascii_lowercase().as_slice() {
        // Transaction-scoped.
        b"transaction" | b"constraints" => Effect::Other,
        b"time" if is(t.get(1), "zone") => match &t[2..] {
            [d] if is(Some(d), "default") || is(Some(d), "local") => reset("timezone"),
            // TimeZone is reported by the server: its value comes from ParameterStatus.
            _ => set("timezone", String::new()),
        },
        b"names" => match &t[1..] {
            [] => Effect::Other,
            [d] if is(Some(d), "default") => reset("client_encoding"),
            _ => set("client_encoding", String::new()),
        },
        b"schema" => match &t[1..] {
            [v] => value_of(v).map_or(Effect::Untracked, |v| {
                set("search_path", quote_ident_if_needed(&v))
            }),
            _ => Effect::Other,
        },
        b"role" => match &t[1..] {
            [v] => match v {
                Token::Word(w) if w.eq_ignore_ascii_case(b"default") => reset("role"),
                _ => value_of(v).map_or(Effect::Untracked, |v| set("role", v)),
            },
            _ => Effect::Other,
        },
        b"xml" if is(t.get(1), "option") => match &t[2..] {
            [v] => word(Some(v)).map_or(Effect::Other, |v| set("xmloption", lower(v))),
            _ => Effect::Other,
        },
        _ => generic_set(t),
    }
}

/// `SET SESSION CHARACTERISTICS AS TRANSACTION mode [, …]` after `CHARACTERISTICS`: the
/// `default_transaction_*` parameters it sets.
fn characteristics(t: &[Token<'_>]) -> Effect {
    if !is(t.first(), "as") || !is(t.get(1), "transaction") {
        return Effect::Other;
    }
    let mut changes = Vec::new();
    let mut change = |name: &str, value: &str| {
        changes.push(Change::Set {
            name: name.into(),
            value: value.into(),
        })
    };
    let mut i = 2;
    while i < t.len() {
        let w = |k: usize| word(t.get(i + k)).map(lower).unwrap_or_default();
        match (w(0).as_str(), w(1).as_str(), w(2).as_str(), w(3).as_str()) {
            ("isolation", "level", "serializable", _) => {
                change("default_transaction_isolation", "serializable");
                i += 3;
            }
            ("isolation", "level", "repeatable", "read") => {
                change("default_transaction_isolation", "repeatable read");
                i += 4;
            }
            ("isolation", "level", "read", "committed" | "uncommitted") => {
                let level = format!("read {}", w(3));
                change("default_transaction_isolation", &level);
                i += 4;
            }
            ("read", "only", _, _) => {
                change("default_transaction_read_only", "on");
                i += 2;
            }
            ("read", "write", _, _) => {
                change("default_transaction_read_only", "off");
                i += 2;
            }
            ("deferrable", _, _, _) => {
                change("default_transaction_deferrable", "on");
                i += 1;
            }
            ("not", "deferrable", _, _) => {
                change("default_transaction_deferrable", "off");
                i += 2;
            }
            _ => return Effect::Untracked,
        }
        if t.get(i) == Some(&Token::Punct(b',')) {
            i += 1;
        }
    }
    if changes.is_empty() {
        Effect::Other
    } else {
        Effect::Changes(changes)
    }
}

fn set(name: &str, value: String) -> Effect {
    Effect::Changes(vec![Change::Set {
        name: name.into(),
        value: value.into(),
    }])
}

fn reset(name: &str) -> Effect {
    Effect::Changes(vec![Change::Reset { name: name.into() }])
}

/// `name {= | TO} value [, …]`, `name {= | TO} DEFAULT`.
fn generic_set(t: &[Token<'_>]) -> Effect {
    // The name: words and quoted identifiers joined by dots.
    let mut name = String::new();
    let mut i = 0;
    loop {
        match t.get(i).and_then(ident) {
            Some(part) => name.push_str(&part),
            None => return Effect::Other,
        }
        i += 1;
        if t.get(i) == Some(&Token::Punct(b'.')) {
            name.push('.');
            i += 1;
        } else {
            break;
        }
    }
    match t.get(i) {
        Some(Token::Punct(b'=')) => {}
        Some(Token::Word(w)) if w.eq_ignore_ascii_case(b"to") => {}
        _ => return Effect::Other,
    }
    let values = &t[i + 1..];
    if let [d] = values {
        if is(Some(d), "default") {
            return reset(&name);
        }
    }
    match flatten(&name, values) {
        Some(value) => set(&name, value),
        None => Effect::Untracked,
    }
}

/// A `SET`'s value list as the string `set_config` takes, or `None` when it cannot be followed.
fn flatten(name: &str, values: &[Token<'_>]) -> Option<String> {
    let quote = LIST_QUOTE.iter().any(|n| n.eq_ignore_ascii_case(name));
    let mut out = String::new();
    let mut items = values.split(|t| *t == Token::Punct(b','));
    let mut first = true;
    for item in items.by_ref() {
        if !first {
            out.push_str(", ");
        }
        first = false;
        let text = match item {
            [Token::Punct(sign @ (b'-' | b'+')), Token::Literal(n)] if is_number(n) => {
                let n = number(n)?;
                if *sign == b'-' && n != "0" {
                    format!("-{n}")
                } else {
                    n
                }
            }
            [Token::Literal(n)] if is_number(n) => number(n)?,
            [v @ (Token::Word(_) | Token::QuotedIdent(_) | Token::Literal(_))] => {
                let v = value_of(v)?;
                if quote { quote_ident_if_needed(&v) } else { v }
            }
            _ => return None,
        };
        out.push_str(&text);
    }
    (!first).then_some(out)
}

fn is_number(lit: &[u8]) -> bool {
    lit.first()
        .is_some_and(|c| c.is_ascii_digit() || *c == b'.')
}

/// A number as PostgreSQL prints it back: an integer that fits 32 bits in decimal, anything else
/// as written.
fn number(lit: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(lit).ok()?;
    if text.bytes().all(|c| c.is_ascii_digit()) {
        if let Ok(n) = text.parse::<i32>() {
            return Some(n.to_string());
        }
    }
    Some(text.to_owned())
}

/// A single value: a word (lowercased; `TRUE`, `FALSE`, `ON` included), a quoted identifier, or
/// a string. `None` for parameters, `U&` text and anything else.
fn value_of(t: &Token<'_>) -> Option<String> {
    match t {
        Token::Word(w) => Some(lower(w)),
        Token::QuotedIdent(body) => Some(unquote_ident(body)),
        Token::Literal(lit) => string_value(lit),
        _ => None,
    }
}

/// The content of a string literal as written: `'…'`, `E'…'`, `$tag$…$tag$`. `None` for other
/// literals (numbers, parameters, `U&'…'`).
pub fn string_value(lit: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(lit).ok()?;
    if let Some(inner) = text.strip_prefix('\'') {
        return Some(inner.strip_suffix('\'')?.replace("''", "'"));
    }
    if let Some(inner) = text.strip_prefix("E'").or_else(|| text.strip_prefix("e'")) {
        return unescape(inner.strip_suffix('\'')?);
    }
    if let Some(after) = text.strip_prefix('$') {
        let tag_end = after.find('$')? + 2;
        let tag = &text[..tag_end];
        return Some(text[tag_end..].strip_suffix(tag)?.to_owned());
    }
    None
}

/// The backslash escapes of an `E'…'` string; `None` for escapes not handled (octal, hex and
/// Unicode escapes).
fn unescape(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                'b' => out.push('\u{8}'),
                'f' => out.push('\u{c}'),
                c @ ('\\' | '\'' | '"') => out.push(c),
                c if c.is_ascii_alphanumeric() => return None,
                c => out.push(c),
            },
            '\'' => {
                // `''` inside E'…'.
                chars.next();
                out.push('\'');
            }
            c => out.push(c),
        }
    }
    Some(out)
}

/// PostgreSQL's `quote_identifier`: quoted unless lowercase letters, digits and underscores
/// (not first a digit) and not a keyword that needs quoting.
fn quote_ident_if_needed(s: &str) -> String {
    let plain = s
        .bytes()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == b'_')
        && s.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
        && !QUOTED_KEYWORDS.split_ascii_whitespace().any(|k| k == s);
    if plain {
        s.to_owned()
    } else {
        format!("\"{}\"", s.replace('"', "\"\""))
    }
}

/// Keywords `quote_identifier` quotes (reserved, column-name and type/function-name keywords).
const QUOTED_KEYWORDS: &str = "\
    all analyse analyze and any array as asc asymmetric authorization between bigint binary \
    bit boolean both case cast char character check coalesce collate collation column \
    concurrently constraint create cross current_catalog current_date current_role \
    current_schema current_time current_timestamp current_user dec decimal default deferrable \
    desc distinct do else end except exists extract false fetch float for foreign freeze from \
    full grant greatest group grouping having ilike in initially inner inout int integer \
    intersect interval into is isnull join lateral leading least left like limit localtime \
    localtimestamp national natural nchar none normalize not notnull null nullif numeric \
    offset on only or order out outer overlaps overlay placing position precision primary real \
    references returning right row select session_user setof similar smallint some substring \
    symmetric system_user table tablesample then time timestamp to trailing treat trim true \
    union unique user using values varchar variadic verbose when where window with \
    xmlattributes xmlconcat xmlelement xmlexists xmlforest xmlnamespaces xmlparse xmlpi \
    xmlroot xmlserialize xmltable";

/// `RESET …` after the `RESET`.
fn read_reset(t: &[Token<'_>]) -> Effect {
    match t {
        [a] if is(Some(a), "all") => Effect::Changes(vec![Change::ResetAll]),
        [a, b] if is(Some(a), "time") && is(Some(b), "zone") => reset("timezone"),
        [a, b] if is(Some(a), "session") && is(Some(b), "authorization") => {
            reset("session_authorization")
        }
        [a, ..] if is(Some(a), "transaction") => Effect::Other,
        _ => {
            let mut name = String::new();
            for (i, tok) in t.iter().enumerate() {
                match (i % 2, tok) {
                    (0, tok) => match ident(tok) {
                        Some(part) => name.push_str(&part),
                        None => return Effect::Other,
                    },
                    (_, Token::Punct(b'.')) => name.push('.'),
                    _ => return Effect::Other,
                }
            }
            if name.is_empty() || name.ends_with('.') {
                return Effect::Other;
            }
            reset(&name)
        }
    }
}

/// `SELECT set_config(…) [[AS] alias], …`: changes when every output column is a `set_config`
/// call with literal arguments (a local one changes nothing); else whether it mentions
/// `set_config` at all.
fn read_select(t: &[Token<'_>]) -> Effect {
    let mut changes = Vec::new();
    let mut i = 1;
    loop {
        let mut j = i;
        if is(t.get(j), "pg_catalog") && t.get(j + 1) == Some(&Token::Punct(b'.')) {
            j += 2;
        }
        if !is(t.get(j), "set_config") || t.get(j + 1) != Some(&Token::Punct(b'(')) {
            return mentions_set_config(t);
        }
        let args = [t.get(j + 2), t.get(j + 4), t.get(j + 6)];
        let commas = [t.get(j + 3), t.get(j + 5)];
        if commas.iter().any(|c| *c != Some(&Token::Punct(b',')))
            || t.get(j + 7) != Some(&Token::Punct(b')'))
        {
            return mentions_set_config(t);
        }
        let local = match args[2] {
            Some(Token::Word(w)) if w.eq_ignore_ascii_case(b"true") => true,
            Some(Token::Word(w)) if w.eq_ignore_ascii_case(b"false") => false,
            Some(Token::Literal(l)) => match string_value(l).as_deref() {
                Some("t" | "true" | "on" | "yes" | "1") => true,
                Some("f" | "false" | "off" | "no" | "0") => false,
                _ => return Effect::Untracked,
            },
            _ => return mentions_set_config(t),
        };
        if !local {
            let name = match args[0] {
                Some(Token::Literal(l)) => string_value(l),
                _ => None,
            };
            let value = match args[1] {
                Some(Token::Word(w)) if w.eq_ignore_ascii_case(b"null") => Some(None),
                Some(Token::Literal(l)) => string_value(l).map(Some),
                _ => None,
            };
            let (Some(name), Some(value)) = (name, value) else {
                return Effect::Untracked;
            };
            let name: Box<str> = name.to_ascii_lowercase().into();
            changes.push(match value {
                Some(value) => Change::Set {
                    name,
                    value: value.into(),
                },
                None => Change::Reset { name },
            });
        }
        i = j + 8;
        // An optional alias.
        if is(t.get(i), "as") {
            i += 1;
            if !matches!(t.get(i), Some(Token::Word(_) | Token::QuotedIdent(_))) {
                return mentions_set_config(t);
            }
            i += 1;
        } else if matches!(t.get(i), Some(Token::Word(_) | Token::QuotedIdent(_))) {
            i += 1;
        }
        match t.get(i) {
            None => break,
            Some(Token::Punct(b',')) => i += 1,
            Some(_) => return mentions_set_config(t),
        }
    }
    if changes.is_empty() {
        Effect::Other
    } else {
        Effect::Changes(changes)
    }
}

/// A statement sluice does not read closely: untracked if it calls `set_config` with anything
/// but a literal `true` (local) as its third argument.
fn mentions_set_config(t: &[Token<'_>]) -> Effect {
    let mut i = 0;
    while i < t.len() {
        if is(t.get(i), "set_config") && t.get(i + 1) == Some(&Token::Punct(b'(')) {
            // The third argument at depth 1.
            let mut depth = 0u32;
            let mut commas = 0;
            let mut third: Vec<&Token<'_>> = Vec::new();
            let mut j = i + 1;
            while j < t.len() {
                match &t[j] {
                    Token::Punct(b'(') => depth += 1,
                    Token::Punct(b')') => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    Token::Punct(b',') if depth == 1 => {
                        commas += 1;
                        j += 1;
                        continue;
                    }
                    _ => {}
                }
                if depth == 1 && commas == 2 {
                    third.push(&t[j]);
                }
                j += 1;
            }
            let local = match third.as_slice() {
                [Token::Word(w)] => w.eq_ignore_ascii_case(b"true"),
                [Token::Literal(l)] => {
                    matches!(string_value(l).as_deref(), Some("t" | "true" | "on"))
                }
                _ => false,
            };
            if !local {
                return Effect::Untracked;
            }
            i = j;
        }
        i += 1;
    }
    Effect::Other
}

/// `DO [LANGUAGE x] body`: untracked when the body mentions `SET`, `RESET` or `set_config`
/// (PL/pgSQL's `SET` changes the session like the statement does).
fn read_do(t: &[Token<'_>]) -> Effect {
    for tok in t {
        if let Token::Literal(lit) = tok {
            let Some(body) = string_value(lit) else {
                return Effect::Untracked;
            };
            let mentions = Tokens::new(body.as_bytes()).any(|b| match b {
                Token::Word(w) => {
                    w.eq_ignore_ascii_case(b"set")
                        || w.eq_ignore_ascii_case(b"reset")
                        || w.eq_ignore_ascii_case(b"set_config")
                }
                _ => false,
            });
            if mentions {
                return Effect::Untracked;
            }
        }
    }
    Effect::Other
}

#[cfg(test)]
mod tests;
