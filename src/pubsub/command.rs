//! Recognising `LISTEN` / `UNLISTEN` in a client's SQL text (no I/O).
//!
//! [`parse`] reads a query string and returns the subscription commands it consists of, or
//! `None` when it is anything else (those go to a server as before). Only text made entirely of
//! `LISTEN channel`, `UNLISTEN channel` and `UNLISTEN *` statements (separated by `;`, with
//! whitespace and comments anywhere) is recognised: a mix with other statements is
//! [`Parsed::Mixed`], which sluice refuses rather than run a LISTEN on a pooled connection.
//!
//! Channel names are identifiers, read as PostgreSQL reads them: unquoted ones are folded to
//! lower case (ASCII, like PostgreSQL's `downcase_identifier` for multibyte encodings), quoted
//! ones keep their case with `""` meaning `"`; both are cut to 63 bytes (NAMEDATALEN - 1).

/// One subscription command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Listen(Box<str>),
    Unlisten(Box<str>),
    UnlistenAll,
}

impl Command {
    /// The CommandComplete tag PostgreSQL answers it with.
    pub fn tag(&self) -> &'static str {
        match self {
            Command::Listen(_) => "LISTEN",
            Command::Unlisten(_) | Command::UnlistenAll => "UNLISTEN",
        }
    }
}

/// What a query string is, as far as subscriptions go.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Nothing but these subscription commands (at least one).
    Only(Vec<Command>),
    /// Subscription commands together with other statements.
    Mixed,
    /// No subscription command (or text sluice cannot read: the server reports it).
    None,
}

/// PostgreSQL's longest identifier, in bytes.
const NAME_MAX: usize = 63;

/// Reads `sql` (see the module's documentation).
pub fn parse(sql: &[u8]) -> Parsed {
    // Fast exit for the common case: no word starting with L or U can be a LISTEN/UNLISTEN.
    if !sql.iter().any(|&b| matches!(b, b'l' | b'L' | b'u' | b'U')) {
        return Parsed::None;
    }
    let mut lx = Lexer { s: sql, i: 0 };
    let mut commands = Vec::new();
    let mut others = false;
    while let Some(first) = lx.next() {
        let command = match first {
            Tok::Semi => continue,
            Tok::Word(w) if w.eq_ignore_ascii_case(b"listen") => match lx.next() {
                Some(Tok::Word(n)) => Some(Command::Listen(fold(n))),
                Some(Tok::Quoted(n)) => Some(Command::Listen(n)),
                _ => return Parsed::None,
            },
            Tok::Word(w) if w.eq_ignore_ascii_case(b"unlisten") => match lx.next() {
                Some(Tok::Word(n)) => Some(Command::Unlisten(fold(n))),
                Some(Tok::Quoted(n)) => Some(Command::Unlisten(n)),
                Some(Tok::Star) => Some(Command::UnlistenAll),
                _ => return Parsed::None,
            },
            _ => None,
        };
        match command {
            Some(c) => {
                // The statement must end here.
                match lx.next() {
                    None | Some(Tok::Semi) => commands.push(c),
                    Some(_) => return Parsed::None,
                }
            }
            None => {
                others = true;
                // Skip to the end of this statement.
                loop {
                    match lx.next() {
                        None | Some(Tok::Semi) => break,
                        Some(Tok::Bad) => return Parsed::None,
                        Some(_) => {}
                    }
                }
            }
        }
    }
    match (commands.is_empty(), others) {
        (true, _) => Parsed::None,
        (false, false) => Parsed::Only(commands),
        (false, true) => Parsed::Mixed,
    }
}

/// An unquoted identifier as PostgreSQL stores it.
fn fold(word: &[u8]) -> Box<str> {
    let lower: Vec<u8> = word.iter().map(u8::to_ascii_lowercase).collect();
    truncate(String::from_utf8_lossy(&lower).into_owned())
}

fn truncate(mut s: String) -> Box<str> {
    if s.len() > NAME_MAX {
        let mut end = NAME_MAX;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s.into_boxed_str()
}

/// Quotes `channel` as an SQL identifier (sluice's own LISTEN / UNLISTEN on the dedicated
/// connection).
pub fn quote(channel: &str) -> String {
    format!("\"{}\"", channel.replace('"', "\"\""))
}

enum Tok<'a> {
    Word(&'a [u8]),
    Quoted(Box<str>),
    Semi,
    Star,
    /// Anything else: a string, a number, punctuation.
    Other,
    /// Text the lexer cannot read to its end (an unterminated string or comment).
    Bad,
}

struct Lexer<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Lexer<'a> {
    fn next(&mut self) -> Option<Tok<'a>> {
        let s = self.s;
        loop {
            let c = *s.get(self.i)?;
            if c.is_ascii_whitespace() {
                self.i += 1;
            } else if s[self.i..].starts_with(b"--") {
                while self.i < s.len() && s[self.i] != b'\n' {
                    self.i += 1;
                }
            } else if s[self.i..].starts_with(b"/*") {
                let mut depth = 0usize;
                loop {
                    if self.i >= s.len() {
                        return Some(Tok::Bad);
                    }
                    if s[self.i..].starts_with(b"/*") {
                        depth += 1;
                        self.i += 2;
                    } else if s[self.i..].starts_with(b"*/") {
                        depth -= 1;
                        self.i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        self.i += 1;
                    }
                }
            } else {
                break;
            }
        }
        let start = self.i;
        let c = s[start];
        Some(match c {
            b';' => {
                self.i += 1;
                Tok::Semi
            }
            b'*' => {
                self.i += 1;
                Tok::Star
            }
            b'"' => {
                let mut name = Vec::new();
                self.i += 1;
                loop {
                    match s.get(self.i) {
                        None => return Some(Tok::Bad),
                        Some(b'"') if s.get(self.i + 1) == Some(&b'"') => {
                            name.push(b'"');
                            self.i += 2;
                        }
                        Some(b'"') => {
                            self.i += 1;
                            break;
                        }
                        Some(&b) => {
                            name.push(b);
                            self.i += 1;
                        }
                    }
                }
                if name.is_empty() {
                    return Some(Tok::Bad);
                }
                Tok::Quoted(truncate(String::from_utf8_lossy(&name).into_owned()))
            }
            b'\'' => {
                // A string (standard_conforming_strings; a backslash escape only matters to
                // statements that are not LISTEN, which go to the server anyway).
                self.i += 1;
                loop {
                    match s.get(self.i) {
                        None => return Some(Tok::Bad),
                        Some(b'\'') if s.get(self.i + 1) == Some(&b'\'') => self.i += 2,
                        Some(b'\'') => {
                            self.i += 1;
                            break;
                        }
                        Some(_) => self.i += 1,
                    }
                }
                Tok::Other
            }
            b'$' => {
                // A dollar quote, or a parameter.
                let tag_end = s[start + 1..]
                    .iter()
                    .position(|&b| !(b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80))
                    .map(|p| start + 1 + p);
                match tag_end {
                    Some(e)
                        if s[e] == b'$'
                            && !s[start + 1..e].first().is_some_and(u8::is_ascii_digit) =>
                    {
                        let tag = &s[start..=e];
                        match s[e + 1..].windows(tag.len()).position(|w| w == tag) {
                            Some(p) => self.i = e + 1 + p + tag.len(),
                            None => return Some(Tok::Bad),
                        }
                    }
                    _ => self.i += 1,
                }
                Tok::Other
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 => {
                while self.i < s.len()
                    && (s[self.i].is_ascii_alphanumeric()
                        || s[self.i] == b'_'
                        || s[self.i] == b'$'
                        || s[self.i] >= 0x80)
                {
                    self.i += 1;
                }
                // E'..', U&'..' and the like: the prefix is a word; what follows is lexed on.
                Tok::Word(&s[start..self.i])
            }
            _ => {
                self.i += 1;
                Tok::Other
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn only(sql: &str) -> Vec<Command> {
        match parse(sql.as_bytes()) {
            Parsed::Only(c) => c,
            other => panic!("{sql:?}: {other:?}"),
        }
    }

    #[test]
    fn listen_and_unlisten_as_postgres_reads_them() {
        assert_eq!(only("LISTEN foo"), [Command::Listen("foo".into())]);
        assert_eq!(only("  listen Foo ;"), [Command::Listen("foo".into())]);
        assert_eq!(
            only("LISTEN \"Foo\"\"x\""),
            [Command::Listen("Foo\"x".into())]
        );
        assert_eq!(only("unlisten bar"), [Command::Unlisten("bar".into())]);
        assert_eq!(only("UNLISTEN *"), [Command::UnlistenAll]);
        assert_eq!(
            only("/* hi */ LISTEN a; -- x\n UNLISTEN b;;"),
            [Command::Listen("a".into()), Command::Unlisten("b".into())]
        );
        let long = "x".repeat(70);
        assert_eq!(
            only(&format!("LISTEN {long}")),
            [Command::Listen("x".repeat(63).into())]
        );
    }

    #[test]
    fn other_text_is_not_a_subscription() {
        for sql in [
            "SELECT 1",
            "NOTIFY foo",
            "SELECT pg_notify('foo', 'LISTEN bar')",
            "select 'listen x'",
            "LISTEN",
            "LISTEN a b",
            "LISTEN 'a'",
            "UNLISTEN",
            "LISTEN \"\"",
            "LISTEN \"open",
            "",
        ] {
            assert_eq!(parse(sql.as_bytes()), Parsed::None, "{sql:?}");
        }
    }

    #[test]
    fn a_mix_with_other_statements_is_told_apart() {
        for sql in [
            "BEGIN; LISTEN a; COMMIT",
            "LISTEN a; SELECT 1",
            "SELECT $$;$$; LISTEN a",
        ] {
            assert_eq!(parse(sql.as_bytes()), Parsed::Mixed, "{sql:?}");
        }
    }

    #[test]
    fn quoting_round_trips() {
        assert_eq!(quote("a\"b"), "\"a\"\"b\"");
        assert_eq!(
            only(&format!("LISTEN {}", quote("Mixed\"Case"))),
            [Command::Listen("Mixed\"Case".into())]
        );
    }
}
