//! Which simple Queries are SQL-level prepared-statement commands, read with the SQL lexer:
//! exactly one `PREPARE`, `EXECUTE` (also in `EXPLAIN` and `CREATE TABLE … AS`) or
//! `DEALLOCATE`, with the byte ranges the rewrite needs and names as PostgreSQL reads them.

use std::ops::Range;

use crate::router::classify::{Token, Tokens};

/// One SQL-level prepared-statement command, as found in a simple Query.
#[derive(Debug, PartialEq, Eq)]
pub enum SqlCommand {
    /// `PREPARE name [(types)] AS query`.
    Prepare {
        name: Vec<u8>,
        name_at: Range<usize>,
        /// Between the parentheses, as written.
        types: Option<Range<usize>>,
        query: Range<usize>,
    },
    /// `EXECUTE name [(args)]`, also inside `EXPLAIN` and `CREATE TABLE … AS`.
    Execute {
        name: Vec<u8>,
        name_at: Range<usize>,
    },
    /// `DEALLOCATE [PREPARE] name`; `None` for `ALL`.
    Deallocate { name: Option<Vec<u8>> },
}

/// PostgreSQL's longest identifier (NAMEDATALEN - 1).
const MAX_NAME: usize = 63;

/// Keywords that cannot be a statement name unquoted (PostgreSQL's reserved and
/// type/function-name keywords): such text is left to the server, which reports the error.
const NOT_NAMES: &[&str] = &[
    "all",
    "analyse",
    "analyze",
    "and",
    "any",
    "array",
    "as",
    "asc",
    "asymmetric",
    "both",
    "case",
    "cast",
    "check",
    "collate",
    "column",
    "constraint",
    "create",
    "current_catalog",
    "current_date",
    "current_role",
    "current_time",
    "current_timestamp",
    "current_user",
    "default",
    "deferrable",
    "desc",
    "distinct",
    "do",
    "else",
    "end",
    "except",
    "false",
    "fetch",
    "for",
    "foreign",
    "from",
    "grant",
    "group",
    "having",
    "in",
    "initially",
    "intersect",
    "into",
    "lateral",
    "leading",
    "limit",
    "localtime",
    "localtimestamp",
    "not",
    "null",
    "offset",
    "on",
    "only",
    "or",
    "order",
    "placing",
    "primary",
    "references",
    "returning",
    "select",
    "session_user",
    "some",
    "symmetric",
    "table",
    "then",
    "to",
    "trailing",
    "true",
    "union",
    "unique",
    "user",
    "using",
    "variadic",
    "when",
    "where",
    "window",
    "with",
    "authorization",
    "binary",
    "collation",
    "concurrently",
    "cross",
    "current_schema",
    "freeze",
    "full",
    "ilike",
    "inner",
    "is",
    "isnull",
    "join",
    "left",
    "like",
    "natural",
    "notnull",
    "outer",
    "overlaps",
    "right",
    "similar",
    "tablesample",
    "verbose",
];

type Tok<'a> = (Token<'a>, Range<usize>);

/// Whether `sql` may be one of these commands: a cheap look at its first byte, so other
/// statements (and large ones) are not lexed.
pub fn candidate(sql: &[u8]) -> bool {
    let first = sql.iter().find(|b| !b.is_ascii_whitespace());
    matches!(
        first.map(u8::to_ascii_lowercase),
        Some(b'p' | b'e' | b'd' | b'c' | b'/' | b'-')
    )
}

/// The command `sql` (a Query body without its NUL) is, if it is exactly one SQL-level
/// prepared-statement command read with certainty.
pub fn recognise(sql: &[u8]) -> Option<SqlCommand> {
    if !candidate(sql) {
        return None;
    }
    let mut lx = Tokens::new(sql);
    let mut toks: Vec<Tok<'_>> = Vec::new();
    let mut ended = false;
    while let Some(t) = lx.next_spanned() {
        if ended {
            return None; // a second statement
        }
        if t.0 == Token::Punct(b';') {
            ended = true;
        } else {
            toks.push(t);
        }
    }
    if lx.failed() {
        return None;
    }
    let first = word(toks.first()?)?;
    if first.eq_ignore_ascii_case(b"prepare") {
        prepare(&toks)
    } else if first.eq_ignore_ascii_case(b"execute") {
        execute_at(&toks, 1)
    } else if first.eq_ignore_ascii_case(b"deallocate") {
        deallocate(&toks)
    } else if first.eq_ignore_ascii_case(b"explain") {
        let mut i = 1;
        loop {
            match toks.get(i)? {
                (Token::Punct(b'('), _) => i = after_parens(&toks, i)?,
                (Token::Word(w), _)
                    if [&b"analyze"[..], b"analyse", b"verbose"]
                        .iter()
                        .any(|k| w.eq_ignore_ascii_case(k)) =>
                {
                    i += 1
                }
                t if is_word(t, b"execute") => return execute_at(&toks, i + 1),
                _ => return None,
            }
        }
    } else if first.eq_ignore_ascii_case(b"create") {
        // CREATE [TEMP] TABLE t [(cols)] AS EXECUTE name …: the first `AS EXECUTE` at depth 0.
        let mut depth = 0i32;
        for i in 1..toks.len() {
            match toks[i].0 {
                Token::Punct(b'(') => depth += 1,
                Token::Punct(b')') => depth -= 1,
                _ if depth == 0 && is_word(&toks[i], b"as") => {
                    return toks
                        .get(i + 1)
                        .filter(|t| is_word(t, b"execute"))
                        .and_then(|_| execute_at(&toks, i + 2));
                }
                _ => {}
            }
        }
        None
    } else {
        None
    }
}

fn word<'a>(t: &Tok<'a>) -> Option<&'a [u8]> {
    match t.0 {
        Token::Word(w) => Some(w),
        _ => None,
    }
}

fn is_word(t: &Tok<'_>, kw: &[u8]) -> bool {
    word(t).is_some_and(|w| w.eq_ignore_ascii_case(kw))
}

/// The index after the parenthesis that closes the one at `open`.
fn after_parens(toks: &[Tok<'_>], open: usize) -> Option<usize> {
    let mut depth = 0;
    for (i, t) in toks.iter().enumerate().skip(open) {
        match t.0 {
            Token::Punct(b'(') => depth += 1,
            Token::Punct(b')') => {
                depth -= 1;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
    }
    None
}

/// A statement name as PostgreSQL reads it: unquoted, folded to lower case; quoted, with `""`
/// as `"`; cut to 63 bytes.
fn name(t: &Tok<'_>) -> Option<Vec<u8>> {
    let mut n = match t.0 {
        Token::Word(w) => {
            let lower = w.to_ascii_lowercase();
            if NOT_NAMES.iter().any(|k| k.as_bytes() == lower) {
                return None;
            }
            lower
        }
        Token::QuotedIdent(body) if !body.is_empty() => {
            let mut n = Vec::with_capacity(body.len());
            let mut i = 0;
            while i < body.len() {
                n.push(body[i]);
                i += if body[i] == b'"' { 2 } else { 1 };
            }
            n
        }
        _ => return None,
    };
    if n.len() > MAX_NAME {
        let mut cut = MAX_NAME;
        while cut > 0 && (n[cut] & 0xC0) == 0x80 {
            cut -= 1;
        }
        n.truncate(cut);
    }
    Some(n)
}

fn prepare(toks: &[Tok<'_>]) -> Option<SqlCommand> {
    let name_tok = toks.get(1)?;
    let n = name(name_tok)?;
    let mut i = 2;
    let mut types = None;
    if toks.get(i)?.0 == Token::Punct(b'(') {
        let close = after_parens(toks, i)?;
        if close == i + 2 {
            return None; // `()`: PostgreSQL's syntax error
        }
        types = Some(toks[i + 1].1.start..toks[close - 2].1.end);
        i = close;
    }
    if !is_word(toks.get(i)?, b"as") {
        return None; // PREPARE TRANSACTION 'x', or a syntax error for the server to report
    }
    let body = toks.get(i + 1..)?;
    let query = body.first()?.1.start..body.last()?.1.end;
    Some(SqlCommand::Prepare {
        name: n,
        name_at: name_tok.1.clone(),
        types,
        query,
    })
}

fn execute_at(toks: &[Tok<'_>], i: usize) -> Option<SqlCommand> {
    let t = toks.get(i)?;
    let n = name(t)?;
    // What follows the name: nothing, or its argument list (then, in CREATE TABLE AS, WITH
    // [NO] DATA); the server judges the rest.
    if let Some(next) = toks.get(i + 1) {
        if next.0 != Token::Punct(b'(') && !is_word(next, b"with") {
            return None;
        }
    }
    Some(SqlCommand::Execute {
        name: n,
        name_at: t.1.clone(),
    })
}

fn deallocate(toks: &[Tok<'_>]) -> Option<SqlCommand> {
    let mut i = 1;
    if toks.len() == 3 && is_word(&toks[1], b"prepare") {
        i = 2;
    }
    if toks.len() != i + 1 {
        return None;
    }
    if is_word(&toks[i], b"all") {
        return Some(SqlCommand::Deallocate { name: None });
    }
    Some(SqlCommand::Deallocate {
        name: Some(name(&toks[i])?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec(name: &str) -> Option<SqlCommand> {
        match recognise(name.as_bytes())? {
            SqlCommand::Execute { name, name_at } => Some(SqlCommand::Execute { name, name_at }),
            _ => None,
        }
    }

    #[test]
    fn recognises_the_three_commands() {
        let sql = b"PREPARE Q1 (int, numeric(10,2)) AS SELECT $1, $2 ; -- done";
        match recognise(sql).unwrap() {
            SqlCommand::Prepare {
                name,
                name_at,
                types,
                query,
            } => {
                assert_eq!(name, b"q1");
                assert_eq!(&sql[name_at], b"Q1");
                assert_eq!(&sql[types.unwrap()], b"int, numeric(10,2)");
                assert_eq!(&sql[query], b"SELECT $1, $2");
            }
            c => panic!("{c:?}"),
        }
        let sql = b"/* hi */ execute \"My\"\"S\" ( 1, 'a;b' );";
        match recognise(sql).unwrap() {
            SqlCommand::Execute { name, name_at } => {
                assert_eq!(name, b"My\"S");
                assert_eq!(&sql[name_at], b"\"My\"\"S\"");
            }
            c => panic!("{c:?}"),
        }
        assert_eq!(
            recognise(b"DEALLOCATE PREPARE x"),
            Some(SqlCommand::Deallocate {
                name: Some(b"x".to_vec())
            })
        );
        assert_eq!(
            recognise(b"deallocate all;"),
            Some(SqlCommand::Deallocate { name: None })
        );
        assert_eq!(
            recognise(b"DEALLOCATE prepare"),
            Some(SqlCommand::Deallocate {
                name: Some(b"prepare".to_vec())
            })
        );
    }

    #[test]
    fn explain_and_create_table_as_execute() {
        assert!(exec("EXPLAIN EXECUTE q(1)").is_some());
        assert!(exec("EXPLAIN (ANALYZE, COSTS off) EXECUTE q").is_some());
        assert!(exec("explain analyze verbose execute q(2)").is_some());
        assert!(exec("CREATE TEMP TABLE t (a) AS EXECUTE q(1) WITH NO DATA").is_some());
        assert!(exec("CREATE TRIGGER t AFTER INSERT ON x EXECUTE FUNCTION f()").is_none());
        assert!(exec("EXPLAIN SELECT 1").is_none());
    }

    #[test]
    fn leaves_alone_what_it_does_not_handle() {
        for sql in [
            "PREPARE TRANSACTION 'x'",
            "PREPARE a AS SELECT 1; EXECUTE a",
            "EXECUTE a; SELECT 1",
            "PREPARE select AS SELECT 1",
            "PREPARE a () AS SELECT 1",
            "PREPARE a AS",
            "EXECUTE a b",
            "EXECUTE U&\"a\"",
            "PREPARE a AS SELECT 'unterminated",
            "DEALLOCATE a b",
            "SELECT 1",
        ] {
            assert_eq!(recognise(sql.as_bytes()), None, "{sql}");
        }
    }

    #[test]
    fn long_names_are_cut_as_postgresql_does() {
        let long = "a".repeat(70);
        match recognise(format!("EXECUTE {long}").as_bytes()).unwrap() {
            SqlCommand::Execute { name, .. } => assert_eq!(name.len(), 63),
            c => panic!("{c:?}"),
        }
    }
}
