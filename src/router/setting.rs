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
//! `SELECT`'s plain output columns, `SET SEED`, `SET SESSION CHARACTERISTICS`, a `U&` string or
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
    // One pass, looking closer only at the first letter of a word sought.
    let at = |i: usize, word: &[u8]| {
        sql.get(i..i + word.len())
            .is_some_and(|w| w.eq_ignore_ascii_case(word))
    };
    (0..sql.len()).any(|i| match sql[i] | 0x20 {
        b's' => at(i, b"set") || (in_transaction_work && at(i, b"savepoint")),
        b'd' => at(i, b"discard"),
        b'r' => in_transaction_work && (at(i, b"release") || at(i, b"rollback")),
        _ => false,
    })
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
            return Effect::Untracked;
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
mod tests {
    use super::*;

    fn one(sql: &str) -> Effect {
        read_statement(sql.as_bytes())
    }

    fn sets(sql: &str) -> Option<(String, String)> {
        match one(sql) {
            Effect::Changes(c) => match c.as_slice() {
                [Change::Set { name, value }] => Some((name.to_string(), value.to_string())),
                _ => None,
            },
            _ => None,
        }
    }

    fn set_value(sql: &str) -> String {
        sets(sql)
            .unwrap_or_else(|| panic!("{sql}: {:?}", one(sql)))
            .1
    }

    fn resets(sql: &str) -> String {
        match one(sql) {
            Effect::Changes(c) => match c.as_slice() {
                [Change::Reset { name }] => name.to_string(),
                other => panic!("{sql}: {other:?}"),
            },
            other => panic!("{sql}: {other:?}"),
        }
    }

    #[test]
    fn values_are_flattened_as_postgresql_does() {
        // Each expected value is what `SHOW` printed on PostgreSQL 15 after the statement.
        let cases = [
            ("SET search_path = a, \"B c\", public", "a, \"B c\", public"),
            (
                "SET search_path = \"user\", \"Ab\", ab, 'x y', '$user'",
                "\"user\", \"Ab\", ab, \"x y\", \"$user\"",
            ),
            ("SET search_path = ''", "\"\""),
            ("SET search_path TO public, E'x\\'y'", "public, \"x'y\""),
            ("SET SCHEMA 'x'", "x"),
            ("set Search_Path to App", "app"),
            ("SET statement_timeout = 1000", "1000"),
            ("SET statement_timeout = 007", "7"),
            ("SET statement_timeout = '2min'", "2min"),
            ("SET extra_float_digits = -1.5", "-1.5"),
            ("SET extra_float_digits = -2", "-2"),
            ("SET datestyle = iso, dmy", "iso, dmy"),
            ("SET application_name = 'a b'", "a b"),
            ("SET application_name = Foo", "foo"),
            ("SET enable_seqscan = FALSE", "false"),
            ("SET enable_seqscan TO on", "on"),
            ("SET foo.bar = 'x'", "x"),
            ("SET x.y = $$dollar 'q'$$", "dollar 'q'"),
            ("SET SESSION work_mem = '64MB'", "64MB"),
            ("SET ROLE r1", "r1"),
            ("SET role = r1", "r1"),
            ("SET role TO 'r1'", "r1"),
            ("SET ROLE NONE", "none"),
            ("SET ROLE 'Mixed'", "Mixed"),
            ("SET SESSION AUTHORIZATION u2", "u2"),
            ("SET XML OPTION CONTENT", "content"),
        ];
        for (sql, want) in cases {
            assert_eq!(set_value(sql), want, "{sql}");
        }
        assert_eq!(
            sets("SET foo.bar = 1").map(|s| s.0).as_deref(),
            Some("foo.bar")
        );
        assert_eq!(
            sets("SET \"Foo\".bar = 1").map(|s| s.0).as_deref(),
            Some("Foo.bar")
        );
        assert_eq!(
            sets("SET TIME ZONE 'Europe/Paris'").map(|s| s.0).as_deref(),
            Some("timezone")
        );
    }

    #[test]
    fn resets_and_defaults() {
        assert_eq!(resets("RESET search_path"), "search_path");
        assert_eq!(resets("reset Foo.Bar"), "foo.bar");
        assert_eq!(resets("SET search_path TO DEFAULT"), "search_path");
        assert_eq!(resets("SET search_path = default"), "search_path");
        assert_eq!(resets("SET TIME ZONE LOCAL"), "timezone");
        assert_eq!(resets("RESET TIME ZONE"), "timezone");
        assert_eq!(resets("RESET ROLE"), "role");
        assert_eq!(resets("SET ROLE DEFAULT"), "role");
        assert_eq!(
            resets("RESET SESSION AUTHORIZATION"),
            "session_authorization"
        );
        assert_eq!(
            resets("SET SESSION AUTHORIZATION DEFAULT"),
            "session_authorization"
        );
        assert_eq!(
            resets("SELECT set_config('search_path', NULL, false)"),
            "search_path"
        );
        assert_eq!(one("RESET ALL"), Effect::Changes(vec![Change::ResetAll]));
        assert_eq!(
            one("discard all"),
            Effect::Changes(vec![Change::DiscardAll])
        );
        assert_eq!(one("DISCARD PLANS"), Effect::Other);
        assert_eq!(one("RESET TRANSACTION ISOLATION LEVEL"), Effect::Other);
    }

    #[test]
    fn local_and_transaction_scoped_change_nothing() {
        for sql in [
            "SET LOCAL search_path = x",
            "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
            "SET CONSTRAINTS ALL DEFERRED",
            "SELECT set_config('search_path', 'x', true)",
            "SELECT set_config('search_path', $1, true), set_config('role', $2, 't')",
            "SELECT 1",
            "UPDATE t SET a = 1",
            "ALTER TABLE t ALTER c SET DEFAULT 1",
            "DO $$ BEGIN PERFORM 1; END $$",
        ] {
            assert_eq!(one(sql), Effect::Other, "{sql}");
        }
    }

    #[test]
    fn set_config_with_literals_is_followed() {
        assert_eq!(
            one(
                "SELECT pg_catalog.set_config('Search_Path', 'a, b', false) AS x, set_config('statement_timeout', '5s', 'f') y"
            ),
            Effect::Changes(vec![
                Change::Set {
                    name: "search_path".into(),
                    value: "a, b".into()
                },
                Change::Set {
                    name: "statement_timeout".into(),
                    value: "5s".into()
                },
            ])
        );
        // A local call beside a session-level one: only the session-level one.
        assert_eq!(
            one("SELECT set_config('a.b', 'x', true), set_config('a.c', 'y', false)"),
            Effect::Changes(vec![Change::Set {
                name: "a.c".into(),
                value: "y".into()
            }])
        );
    }

    #[test]
    fn what_cannot_be_followed_is_untracked() {
        for sql in [
            "SELECT set_config('search_path', $1, false)",
            "SELECT set_config($1, 'x', false)",
            "SELECT set_config('search_path', 'x', $1)",
            "SELECT set_config('search_path', 'x' || 'y', false)",
            "SELECT set_config('search_path', 'x', false) FROM t",
            "SELECT 1 WHERE set_config('search_path', 'x', false) IS NOT NULL",
            "WITH s AS (SELECT set_config('a.b', 'x', false)) SELECT * FROM s",
            "SET SEED TO 0.5",
            "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
            "SET search_path = U&'x'",
            "SET statement_timeout = $1",
            "DO $$ BEGIN SET search_path = x; END $$",
            "DO LANGUAGE plpgsql 'BEGIN PERFORM set_config(''a.b'', ''x'', false); END'",
        ] {
            assert_eq!(one(sql), Effect::Untracked, "{sql}");
        }
    }

    #[test]
    fn savepoint_commands_name_their_savepoint() {
        assert_eq!(one("SAVEPOINT s1"), Effect::Savepoint("s1".into()));
        assert_eq!(one("SAVEPOINT \"S 1\""), Effect::Savepoint("S 1".into()));
        assert_eq!(one("release savepoint S1"), Effect::Release("s1".into()));
        assert_eq!(one("RELEASE s1"), Effect::Release("s1".into()));
        assert_eq!(one("ROLLBACK TO s1"), Effect::RollbackTo("s1".into()));
        assert_eq!(
            one("ROLLBACK WORK TO SAVEPOINT s1"),
            Effect::RollbackTo("s1".into())
        );
        assert_eq!(one("ABORT"), Effect::Other);
        assert_eq!(one("ROLLBACK"), Effect::Other);
        assert_eq!(one("ROLLBACK AND CHAIN"), Effect::Other);
    }

    #[test]
    fn a_query_is_split_into_statements_as_postgresql_counts_them() {
        let q = read_query(b"SELECT 1;; SET a.b = 1; SELECT 'x;y'; RESET a.b;").unwrap();
        assert_eq!(
            q,
            vec![
                (
                    1,
                    Effect::Changes(vec![Change::Set {
                        name: "a.b".into(),
                        value: "1".into()
                    }])
                ),
                (
                    3,
                    Effect::Changes(vec![Change::Reset { name: "a.b".into() }])
                ),
            ]
        );
        // A SQL-standard function body is one statement, its inner semicolons included.
        let q = read_query(
            b"CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN true THEN 1 END; SELECT 2; END; SET a.b = 2",
        )
        .unwrap();
        assert_eq!(q.len(), 1);
        assert_eq!(q[0].0, 1);
        // Unterminated text: nothing can be counted.
        assert_eq!(read_query(b"SET a.b = 'x"), None);
        assert_eq!(read_statement(b"SET a.b = 'x"), Effect::Untracked);
    }

    #[test]
    fn the_prefilter_only_lets_through_what_may_matter() {
        assert!(might_matter(b"reset all", false));
        assert!(might_matter(b"SELECT set_config('a', 'b', false)", false));
        assert!(might_matter(b"DISCARD ALL", false));
        assert!(!might_matter(b"SELECT 1", false));
        assert!(!might_matter(b"ROLLBACK TO s", false));
        assert!(might_matter(b"ROLLBACK TO s", true));
        assert!(might_matter(b"savepoint s", true));
    }
}
