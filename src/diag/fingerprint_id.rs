//! A statement's fingerprint identity in one pass over its bytes, for the hot path: a simple
//! query whose literal changes every time (pgbench's `WHERE aid = 12345`) misses the per-session
//! text cache, so every statement is read again.
//!
//! Same rules as [`super::fingerprint`], token for token: the same lexing as the router's lexer
//! (`router::classify`), operators merged and trailing signs split the same way, a sign folded
//! into the number after it under the same condition, `IN (…)`, `ARRAY[…]` and `VALUES` lists
//! collapsed under the same grammar, trailing `;` dropped, and each resulting token fed to the
//! same [`IdHasher`] as [`super::fingerprint::Fingerprint::of`] uses. So [`id`] is exactly
//! `Fingerprint::of(sql).id` for every input (a property test says so over generated SQL and
//! arbitrary bytes), without a token vector, an allocation or the text.
//!
//! The only lookahead is the list collapse: at `IN`, `ARRAY` or `VALUES` the reader is copied
//! (a few words), the list read ahead, and the copy put back when it is not a list of literals.

use super::fingerprint::Kind;

/// Hashes the normalised tokens of a statement: the identity of its fingerprint. Words are
/// hashed lower-cased (PostgreSQL folds them), a token's kind and length go first.
#[derive(Clone)]
pub(super) struct IdHasher(u64);

const K: u64 = 0x9e37_79b9_7f4a_7c15;

impl IdHasher {
    pub(super) fn new() -> IdHasher {
        IdHasher(0x243f_6a88_85a3_08d3)
    }

    #[inline]
    fn mix(&mut self, w: u64) {
        self.0 = (self.0 ^ w).wrapping_mul(K).rotate_left(29);
    }

    /// One token: its kind and bytes (a word's compared case-insensitively).
    #[inline]
    pub(super) fn token(&mut self, kind: Kind, b: &[u8]) {
        self.mix(((kind as u64) << 56) | b.len() as u64);
        let word = kind == Kind::Word;
        let mut chunks = b.chunks_exact(8);
        for c in chunks.by_ref() {
            let w = u64::from_le_bytes(c.try_into().expect("8 bytes"));
            self.mix(if word { lower8(w) } else { w });
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = 0u64;
            for (i, &c) in rest.iter().enumerate() {
                w |= (c as u64) << (8 * i);
            }
            self.mix(if word { lower8(w) } else { w });
        }
    }

    /// A token the reader gave.
    #[inline(always)]
    fn tok(&mut self, t: &Tok, sql: &[u8]) {
        self.token(t.kind, t.bytes(sql))
    }

    pub(super) fn finish(&self) -> u64 {
        let h = (self.0 ^ (self.0 >> 32)).wrapping_mul(0xd6e8_feb8_6659_fd93);
        h ^ (h >> 32)
    }
}

/// ASCII `A`-`Z` to lower case in each of the 8 bytes; other bytes unchanged.
#[inline]
fn lower8(w: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let low7 = w & !HIGH;
    let ge_a = low7 + (0x80 - b'A' as u64) * ONES;
    let gt_z = low7 + (0x80 - b'Z' as u64 - 1) * ONES;
    let upper = ge_a & !gt_z & !w & HIGH;
    w | (upper >> 2)
}

const WS: u8 = 1;
const ID_START: u8 = 2;
const ID_CONT: u8 = 4;
const DIGIT: u8 = 8;
const OP: u8 = 16;
/// A character of a dollar-quote tag after its first.
const TAG: u8 = 32;

const CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        let mut c = 0;
        if matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c) {
            c |= WS;
        }
        if b.is_ascii_alphabetic() || b == b'_' || b >= 0x80 {
            c |= ID_START | ID_CONT | TAG;
        }
        if b.is_ascii_digit() {
            c |= DIGIT | ID_CONT | TAG;
        }
        if b == b'$' {
            c |= ID_CONT;
        }
        if matches!(
            b,
            b'+' | b'-'
                | b'*'
                | b'/'
                | b'<'
                | b'>'
                | b'='
                | b'~'
                | b'!'
                | b'@'
                | b'#'
                | b'%'
                | b'^'
                | b'&'
                | b'|'
                | b'`'
                | b'?'
                | b':'
        ) {
            c |= OP;
        }
        t[i] = c;
        i += 1;
    }
    t
};

#[inline]
fn class(b: u8) -> u8 {
    CLASS[b as usize]
}

#[derive(Debug, Clone, Copy)]
struct Tok {
    kind: Kind,
    // u32: a statement is at most 1 GB (PostgreSQL's limit; `id` checks).
    start: u32,
    end: u32,
    /// A number (or `$n`): a sign before it may be folded in.
    numeric: bool,
}

impl Tok {
    fn is_op(&self, sql: &[u8], op: &[u8]) -> bool {
        self.kind == Kind::Op && &sql[self.start as usize..self.end as usize] == op
    }

    fn bytes<'a>(&self, sql: &'a [u8]) -> &'a [u8] {
        match self.kind {
            Kind::Placeholder => b"?",
            Kind::Unread => "…".as_bytes(),
            Kind::Sep => b";",
            Kind::Ellipsis => b"...",
            _ => &sql[self.start as usize..self.end as usize],
        }
    }
}

/// The tokens as `fingerprint::lex` leaves them (signs folded), one at a time.
#[derive(Clone)]
struct Reader<'a> {
    sql: &'a [u8],
    pos: usize,
    /// Trailing signs split off an operator, still to come (`=-` is `=` then `-`).
    signs: (usize, usize),
    failed: bool,
    unread_sent: bool,
    /// The last token read was the word `IS` or `NOT` (`IS NULL` is structure).
    after_is: bool,
    /// A token read ahead while deciding whether a sign folds.
    held: Option<Tok>,
    /// The last token given out, for that decision.
    last: Option<Tok>,
}

impl<'a> Reader<'a> {
    fn new(sql: &'a [u8]) -> Reader<'a> {
        Reader {
            sql,
            pos: 0,
            signs: (0, 0),
            failed: false,
            unread_sent: false,
            after_is: false,
            held: None,
            last: None,
        }
    }

    #[inline]
    fn at(&self, i: usize) -> Option<u8> {
        self.sql.get(i).copied()
    }

    /// The next token, a sign folded into the number after it where `lex` folds it.
    #[inline(always)]
    fn next(&mut self) -> Option<Tok> {
        let t = match self.held.take() {
            Some(t) => t,
            None => self.raw()?,
        };
        if t.kind == Kind::Op
            && t.end - t.start == 1
            && matches!(self.sql[t.start as usize], b'-' | b'+')
        {
            if let Some(n) = self.raw() {
                if n.kind == Kind::Placeholder && n.numeric && !self.value_before() {
                    self.last = Some(n);
                    return Some(n);
                }
                self.held = Some(n);
            }
        }
        self.last = Some(t);
        Some(t)
    }

    /// The token before a sign ends a value (so the sign is a subtraction).
    fn value_before(&self) -> bool {
        let Some(p) = self.last else {
            return false;
        };
        match p.kind {
            Kind::Word => !super::fingerprint::BEFORE_VALUE
                .iter()
                .any(|k| p.bytes(self.sql).eq_ignore_ascii_case(k.as_bytes())),
            Kind::Quoted | Kind::Placeholder | Kind::Ellipsis | Kind::Unread => true,
            Kind::Op => p.is_op(self.sql, b")") || p.is_op(self.sql, b"]"),
            Kind::Sep => false,
        }
    }

    fn tok(&mut self, kind: Kind, start: usize, end: usize, numeric: bool) -> Option<Tok> {
        self.after_is = false;
        Some(Tok {
            kind,
            start: start as u32,
            end: end as u32,
            numeric,
        })
    }

    fn fail(&mut self) -> Option<Tok> {
        self.failed = true;
        self.pos = self.sql.len();
        self.raw()
    }

    /// The next token as lexed, operators merged and split.
    #[inline(always)]
    fn raw(&mut self) -> Option<Tok> {
        if self.signs.0 < self.signs.1 {
            let at = self.signs.0;
            self.signs.0 += 1;
            return self.tok(Kind::Op, at, at + 1, false);
        }
        let sql = self.sql;
        loop {
            let Some(b) = self.at(self.pos) else {
                if self.failed && !self.unread_sent {
                    self.unread_sent = true;
                    return self.tok(Kind::Unread, 0, 0, false);
                }
                return None;
            };
            if class(b) & WS != 0 {
                self.pos += 1;
            } else if b == b'-' && self.at(self.pos + 1) == Some(b'-') {
                self.pos = sql[self.pos + 2..]
                    .iter()
                    .position(|&c| c == b'\n' || c == b'\r')
                    .map_or(sql.len(), |n| self.pos + 2 + n);
            } else if b == b'/' && self.at(self.pos + 1) == Some(b'*') {
                let mut i = self.pos + 2;
                let mut depth = 1u32;
                while depth > 0 {
                    match self.at(i) {
                        None => return self.fail(),
                        Some(b'/') if self.at(i + 1) == Some(b'*') => {
                            depth += 1;
                            i += 2;
                        }
                        Some(b'*') if self.at(i + 1) == Some(b'/') => {
                            depth -= 1;
                            i += 2;
                        }
                        Some(_) => i += 1,
                    }
                }
                self.pos = i;
            } else {
                break;
            }
        }
        let start = self.pos;
        let b = sql[start];
        let c = class(b);
        if c & ID_START != 0 {
            let mut i = start + 1;
            while let Some(&c) = sql.get(i) {
                if class(c) & ID_CONT == 0 {
                    break;
                }
                i += 1;
            }
            self.pos = i;
            let word = &sql[start..i];
            if word.len() == 1 {
                match (b | 0x20, self.at(i), self.at(i + 1)) {
                    (b'e', Some(b'\''), _) => return self.escape_string(start, i),
                    (b'u', Some(b'&'), Some(b'\'')) => return self.standard_string(start, i + 1),
                    (b'u', Some(b'&'), Some(b'"')) => return self.quoted_ident(start, i + 1),
                    _ => {}
                }
            }
            let literal = match word.len() {
                4 => word.eq_ignore_ascii_case(b"true") || word.eq_ignore_ascii_case(b"null"),
                5 => word.eq_ignore_ascii_case(b"false"),
                _ => false,
            };
            let kind = if literal && !self.after_is {
                Kind::Placeholder
            } else {
                Kind::Word
            };
            let t = self.tok(kind, start, i, false);
            self.after_is = kind == Kind::Word
                && (word.eq_ignore_ascii_case(b"is") || word.eq_ignore_ascii_case(b"not"));
            return t;
        }
        if c & DIGIT != 0 || (b == b'.' && self.at(start + 1).is_some_and(|c| c.is_ascii_digit())) {
            self.pos = self.number(start);
            return self.tok(Kind::Placeholder, start, self.pos, true);
        }
        if c & OP != 0 {
            // The longest run of operator characters that does not start a comment.
            let mut i = start + 1;
            while let Some(&n) = sql.get(i) {
                if class(n) & OP == 0
                    || (n == b'-' && self.at(i + 1) == Some(b'-'))
                    || (n == b'/' && self.at(i + 1) == Some(b'*'))
                {
                    break;
                }
                i += 1;
            }
            self.pos = i;
            let mut end = i;
            if i - start >= 2 && !sql[start..i].iter().any(|b| b"~!@#%^&|`?".contains(b)) {
                while end - start > 1 && matches!(sql[end - 1], b'+' | b'-') {
                    end -= 1;
                }
                self.signs = (end, i);
            }
            return self.tok(Kind::Op, start, end, false);
        }
        match b {
            b'\'' => self.standard_string(start, start),
            b'"' => self.quoted_ident(start, start),
            b'$' => self.dollar(start),
            b';' => {
                self.pos = start + 1;
                self.tok(Kind::Sep, start, start + 1, false)
            }
            _ => {
                self.pos = start + 1;
                self.tok(Kind::Op, start, start + 1, false)
            }
        }
    }

    fn number(&self, start: usize) -> usize {
        let digits = |mut i: usize| {
            while self.at(i).is_some_and(|c| c.is_ascii_digit()) {
                i += 1;
            }
            i
        };
        let mut i = digits(start);
        if self.at(i) == Some(b'.') && self.at(i + 1) != Some(b'.') {
            i = digits(i + 1);
        }
        if matches!(self.at(i), Some(b'e' | b'E')) {
            let mut j = i + 1;
            if matches!(self.at(j), Some(b'+' | b'-')) {
                j += 1;
            }
            if self.at(j).is_some_and(|c| c.is_ascii_digit()) {
                i = digits(j);
            }
        }
        i
    }

    fn standard_string(&mut self, start: usize, quote: usize) -> Option<Tok> {
        let mut i = quote + 1;
        loop {
            match self.at(i) {
                None => return self.fail(),
                Some(b'\'') => {
                    if self.at(i + 1) == Some(b'\'') {
                        i += 2;
                    } else {
                        self.pos = i + 1;
                        return self.tok(Kind::Placeholder, start, i + 1, false);
                    }
                }
                Some(b'\\') if self.at(i + 1) == Some(b'\'') => return self.fail(),
                Some(_) => i += 1,
            }
        }
    }

    fn escape_string(&mut self, start: usize, quote: usize) -> Option<Tok> {
        let mut i = quote + 1;
        loop {
            match self.at(i) {
                None => return self.fail(),
                Some(b'\\') => i += 2,
                Some(b'\'') => {
                    if self.at(i + 1) == Some(b'\'') {
                        i += 2;
                    } else {
                        self.pos = i + 1;
                        return self.tok(Kind::Placeholder, start, i + 1, false);
                    }
                }
                Some(_) => i += 1,
            }
        }
    }

    fn quoted_ident(&mut self, start: usize, quote: usize) -> Option<Tok> {
        let mut i = quote + 1;
        loop {
            match self.at(i) {
                None => return self.fail(),
                Some(b'"') => {
                    if self.at(i + 1) == Some(b'"') {
                        i += 2;
                    } else {
                        self.pos = i + 1;
                        return self.tok(Kind::Quoted, start, i + 1, false);
                    }
                }
                Some(_) => i += 1,
            }
        }
    }

    /// `$1`, `$tag$…$tag$`, or a lone `$`.
    fn dollar(&mut self, start: usize) -> Option<Tok> {
        let sql = self.sql;
        let mut i = start + 1;
        if self.at(i).is_some_and(|c| c.is_ascii_digit()) {
            while self.at(i).is_some_and(|c| c.is_ascii_digit()) {
                i += 1;
            }
            self.pos = i;
            return self.tok(Kind::Placeholder, start, i, true);
        }
        if self.at(i).is_some_and(|c| class(c) & ID_START != 0) {
            i += 1;
            while self.at(i).is_some_and(|c| class(c) & TAG != 0) {
                i += 1;
            }
        }
        if self.at(i) != Some(b'$') {
            self.pos = start + 1;
            return self.tok(Kind::Op, start, start + 1, false);
        }
        let delim = &sql[start..=i];
        match find(&sql[i + 1..], delim) {
            Some(n) => {
                self.pos = i + 1 + n + delim.len();
                self.tok(Kind::Placeholder, start, self.pos, false)
            }
            None => self.fail(),
        }
    }
}

/// A key for the per-session cache of fingerprints: a hash of the text with every run of
/// digits that does not continue a word (a number, or the digits of `$1`) replaced by one mark.
/// Two texts with the same key differ at most in the values of such numbers, so they have the
/// same fingerprint: a run like that can only be a number or a parameter (which become `?`),
/// or lie inside a string, a dollar quote or a comment (gone from the fingerprint). Inside a
/// quoted identifier it would matter (`"1"` and `"2"` are different columns), so a text with a
/// `"` has no key (None). pgbench's `WHERE aid = 12345`, with a new number every time, keeps one
/// key, so its statements skip [`id`].
///
/// Eight bytes at a time where they hold no digit and no `"`; after a run of digits the words
/// start again at its end, so the key does not depend on the run's length.
pub fn shape(sql: &[u8]) -> Option<u64> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    /// Bytes of `w` in `lo..=hi` (ASCII), as their high bits.
    #[inline(always)]
    fn in_range(w: u64, lo: u8, hi: u8) -> u64 {
        let x = w & !HIGH;
        (x + (0x80 - lo as u64) * ONES) & !(x + (0x7f - hi as u64) * ONES) & !w & HIGH
    }
    let mut h: u64 = 0x6a09_e667_f3bc_c908;
    let mut i = 0;
    while i < sql.len() {
        if let Some(c) = sql.get(i..i + 8) {
            let w = u64::from_le_bytes(c.try_into().expect("8 bytes"));
            if in_range(w, b'0', b'9') | in_range(w, b'"', b'"') == 0 {
                h = (h ^ w).wrapping_mul(K).rotate_left(29);
                i += 8;
                continue;
            }
        }
        // Byte by byte for the next 8 bytes, or up to a run of digits.
        let stop = (i + 8).min(sql.len());
        while i < stop {
            let b = sql[i];
            if b == b'"' {
                return None;
            }
            if b.is_ascii_digit() && (i == 0 || class(sql[i - 1]) & ID_CONT == 0) {
                while i < sql.len() && sql[i].is_ascii_digit() {
                    i += 1;
                }
                h = (h ^ 0x100)
                    .wrapping_mul(0xff51_afd7_ed55_8ccd)
                    .rotate_left(31);
                // Words again from the end of the run, whatever its length.
                break;
            }
            h = (h ^ b as u64)
                .wrapping_mul(0xff51_afd7_ed55_8ccd)
                .rotate_left(31);
            i += 1;
        }
    }
    Some(h ^ (h >> 29))
}

/// Where `needle` (a dollar-quote delimiter, at least `$$`) first occurs in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, rest) = needle.split_first()?;
    let mut from = 0;
    while let Some(n) = hay[from..].iter().position(|&b| b == first) {
        let at = from + n;
        if hay[at + 1..].starts_with(rest) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// The identity of `sql`'s fingerprint: `Fingerprint::of(sql).id`, in one pass.
pub fn id(sql: &[u8]) -> u64 {
    if sql.len() > u32::MAX as usize {
        return super::Fingerprint::of(sql).id;
    }
    let mut r = Reader::new(sql);
    let mut h = IdHasher::new();
    // `;` between statements count; trailing ones do not.
    let mut seps = 0usize;
    while let Some(t) = r.next() {
        if t.kind == Kind::Sep {
            seps += 1;
            continue;
        }
        for _ in 0..seps {
            h.token(Kind::Sep, b";");
        }
        seps = 0;
        h.tok(&t, sql);
        if t.kind != Kind::Word {
            continue;
        }
        let w = t.bytes(sql);
        if w.len() == 2 && w.eq_ignore_ascii_case(b"in") {
            list(&mut r, &mut h, b"(", b")");
        } else if w.len() == 5 && w.eq_ignore_ascii_case(b"array") {
            list(&mut r, &mut h, b"[", b"]");
        } else if w.len() == 6 && w.eq_ignore_ascii_case(b"values") {
            values(&mut r, &mut h);
        }
    }
    h.finish()
}

/// After `IN` / `ARRAY`: a list of literals becomes `(...)` / `[...]`; anything else is read
/// again as it is.
fn list(r: &mut Reader<'_>, h: &mut IdHasher, open: &[u8], close: &[u8]) {
    let saved = r.clone();
    let sql = r.sql;
    let ok = r.next().is_some_and(|o| o.is_op(sql, open)) && literals(r, close, None).is_some();
    if ok {
        h.token(Kind::Op, open);
        h.token(Kind::Ellipsis, b"...");
        h.token(Kind::Op, close);
    } else {
        *r = saved;
    }
}

/// After `VALUES`: rows of literals of the same arity become the first row and `, ...`.
fn values(r: &mut Reader<'_>, h: &mut IdHasher) {
    let saved = r.clone();
    let sql = r.sql;
    let mut first = h.clone();
    let arity = match r.next() {
        Some(o) if o.is_op(sql, b"(") => {
            first.token(Kind::Op, b"(");
            literals(r, b")", Some(&mut first))
        }
        _ => None,
    };
    let Some(arity) = arity else {
        *r = saved;
        return;
    };
    loop {
        let before = r.clone();
        let row = r.next().is_some_and(|c| c.is_op(sql, b","))
            && r.next().is_some_and(|o| o.is_op(sql, b"("))
            && literals(r, b")", None) == Some(arity);
        if !row {
            *r = before;
            break;
        }
    }
    first.token(Kind::Op, b",");
    first.token(Kind::Ellipsis, b"...");
    *h = first;
}

/// Just past an opening bracket: literals (each with optional `::type` / `::type[]` casts)
/// separated by `,`, up to `close`, which is read too. Returns how many; with `h`, hashes what
/// it reads.
fn literals(r: &mut Reader<'_>, close: &[u8], mut h: Option<&mut IdHasher>) -> Option<usize> {
    let sql = r.sql;
    let mut feed = |t: &Tok| {
        if let Some(h) = h.as_deref_mut() {
            h.tok(t, sql);
        }
    };
    let mut n = 0;
    loop {
        let v = r.next()?;
        if v.kind != Kind::Placeholder {
            return None;
        }
        feed(&v);
        n += 1;
        let mut t = r.next()?;
        while t.is_op(sql, b"::") {
            feed(&t);
            let ty = r.next()?;
            if !matches!(ty.kind, Kind::Word | Kind::Quoted) {
                return None;
            }
            feed(&ty);
            t = r.next()?;
            while t.is_op(sql, b"[") {
                let c = r.next()?;
                if !c.is_op(sql, b"]") {
                    return None;
                }
                feed(&t);
                feed(&c);
                t = r.next()?;
            }
        }
        if t.is_op(sql, close) {
            feed(&t);
            return Some(n);
        }
        if !t.is_op(sql, b",") {
            return None;
        }
        feed(&t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::Fingerprint;
    use proptest::prelude::*;

    fn check(sql: &[u8]) {
        let f = Fingerprint::of(sql);
        assert_eq!(
            id(sql),
            f.id,
            "{:?} -> {:?}",
            String::from_utf8_lossy(sql),
            f.text
        );
    }

    #[test]
    fn agrees_with_the_full_fingerprint() {
        for sql in [
            "SELECT abalance FROM pgbench_accounts WHERE aid = 12345;",
            "select  a\n from t -- trailing\n where /* c /* n */ */ id=2;",
            "SELECT a FROM t WHERE x=-1",
            "SELECT (a)-1 FROM t",
            "SELECT a - -1, b+-2, c *-3, d IN (-1, +2), e = - 1",
            "SELECT * FROM t WHERE id IN (1::int, -2)",
            "SELECT * FROM t WHERE id IN (SELECT id FROM u)",
            "INSERT INTO t (a, b) VALUES (1, 'x'), (2, 'y'), (3, 'z')",
            "INSERT INTO t VALUES (1), (2, 3)",
            "INSERT INTO t VALUES (1, now())",
            "SELECT ARRAY[1::int[], 2], ARRAY[x]",
            "SELECT $$it's$$, $tag$ a $$ b $tag$, $1, $ a",
            "SELECT E'a\\'b\\n', U&'d\\0061t', U&\"x\", \"Q\"\"q\"",
            "SELECT * FROM t WHERE a IS NOT NULL AND b = NULL AND c IS TRUE",
            "SELECT 'unterminated",
            "SELECT /* unterminated",
            "SELECT 'a\\'b' FROM t",
            "BEGIN; SELECT 1;; COMMIT;;",
            "",
            ";;",
            "SELECT 1.5e10, .5, 1e-3, 1.., 1e+, 1.",
            "SELECT d->>'k', a>=-1, b::-1, c*/2",
        ] {
            check(sql.as_bytes());
        }
    }

    #[test]
    fn shape_keeps_what_the_fingerprint_keeps() {
        let k = |s: &str| shape(s.as_bytes());
        assert_eq!(
            k("SELECT abalance FROM pgbench_accounts WHERE aid = 12345;"),
            k("SELECT abalance FROM pgbench_accounts WHERE aid = 7;")
        );
        assert_eq!(
            k("SELECT $1, 'a1', /* 2 */ 3"),
            k("SELECT $1, 'a1', /* 9 */ 44")
        );
        // `$1` is read like a word here (`a$1` is one): no mark, so `$1` and `$2` differ.
        assert_ne!(k("SELECT $1"), k("SELECT $2"));
        assert_ne!(k("SELECT c1 FROM t"), k("SELECT c2 FROM t"));
        assert_ne!(k("SELECT a$1 FROM t"), k("SELECT a$2 FROM t"));
        assert_ne!(k("SELECT 1e5"), k("SELECT 1e6"));
        assert_eq!(k("SELECT \"1\" FROM t"), None);
    }

    #[test]
    fn lower8_lowers_ascii_letters_only() {
        for b in 0..=255u8 {
            let w = u64::from_le_bytes([b; 8]);
            let want = u64::from_le_bytes([b.to_ascii_lowercase(); 8]);
            assert_eq!(lower8(w), want, "byte {b:#x}");
        }
    }

    /// Pieces of SQL that exercise every rule: lists, casts, signs, operators, literals of each
    /// kind, comments, separators, and text that stops the lexer.
    const PIECES: &[&str] = &[
        "SELECT", "select", "in", "IN", "array", "ARRAY", "values", "VALUES", "is", "NOT", "null",
        "True", "false", "limit", "x", "int", "\"Q\"", "\"1\"", "\"c 2\"", "U&\"u\"", "(", ")",
        "[", "]", ",", ";", ".", "::", ":", "-", "+", "=", "=-", "*-", "+-", "<>", "->>", "|", "?",
        "/", "*", "1", "2.5", ".5", "1e3", "1.", "$1", "$", "$$d$$", "$t$x$t$", "'s'", "'a''b'",
        "E'\\''", "e'x'", "U&'u'", "'bad\\'", "'open", "\"open", "$$open", "-- c\n", "/* c */",
        "/* open", "{", "\\", "é",
    ];

    fn pieces() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            (
                proptest::sample::select(PIECES),
                proptest::sample::select(&["", " ", "\n"][..]),
            ),
            0..24,
        )
        .prop_map(|v| v.into_iter().flat_map(|(p, s)| [p, s]).collect())
    }

    /// `IN`, `ARRAY` or `VALUES` lists, rows of different arities, elements literal or not,
    /// between pieces.
    fn lists() -> impl Strategy<Value = String> {
        const ELEMENTS: &[&str] = &[
            "1",
            "-2",
            "+ 3",
            "'x'",
            "$1",
            "1::int",
            "2::int[]",
            "'a'::\"T\"[][]",
            "x",
            "now()",
            "true",
            "NULL",
            "(1)",
            "1::",
            "1::2",
            "[",
            "",
        ];
        let row = proptest::collection::vec(proptest::sample::select(ELEMENTS), 0..4)
            .prop_map(|e| e.join(", "));
        (
            pieces(),
            proptest::sample::select(&["IN", "array", "VALUES", "in"][..]),
            proptest::sample::select(&[("(", ")"), ("[", "]"), ("(", "]")][..]),
            proptest::collection::vec(row, 1..4),
            pieces(),
        )
            .prop_map(|(pre, kw, (o, c), rows, post)| {
                let rows: Vec<String> = rows.iter().map(|r| format!("{o}{r}{c}")).collect();
                format!("{pre} {kw} {} {post}", rows.join(", "))
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]
        #[test]
        fn same_identity_as_the_full_fingerprint_on_lists(sql in lists()) {
            prop_assert_eq!(id(sql.as_bytes()), Fingerprint::of(sql.as_bytes()).id, "{:?}", sql);
        }

        #[test]
        fn same_identity_as_the_full_fingerprint_on_sql_pieces(sql in pieces()) {
            prop_assert_eq!(id(sql.as_bytes()), Fingerprint::of(sql.as_bytes()).id, "{:?}", sql);
        }
    }

    /// `sql` with every run of digits that `shape` ignores replaced by `digits`.
    fn renumber(sql: &str, digits: &str) -> String {
        let b = sql.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i].is_ascii_digit() && (i == 0 || class(b[i - 1]) & ID_CONT == 0) {
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
                out.extend_from_slice(digits.as_bytes());
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        String::from_utf8(out).expect("ASCII digits replaced")
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5000))]
        /// The same shape means the same fingerprint: renumbering changes neither.
        #[test]
        fn one_shape_one_fingerprint(sql in prop_oneof![pieces(), lists()], digits in "[0-9]{1,6}") {
            let other = renumber(&sql, &digits);
            prop_assert_eq!(shape(sql.as_bytes()), shape(other.as_bytes()), "{:?} / {:?}", sql, other);
            if shape(sql.as_bytes()).is_some() {
                prop_assert_eq!(
                    Fingerprint::of(sql.as_bytes()).id,
                    Fingerprint::of(other.as_bytes()).id,
                    "{:?} / {:?}", sql, other
                );
            }
        }

        #[test]
        fn same_identity_on_arbitrary_bytes(sql in proptest::collection::vec(any::<u8>(), 0..200)) {
            prop_assert_eq!(id(&sql), Fingerprint::of(&sql).id);
        }

        #[test]
        fn same_identity_on_sql_like_text(sql in "[a-zA-Z0-9 '\"$().,:;=<>+*/#!?&|~@%^`\\\\\\[\\]-]{0,120}") {
            prop_assert_eq!(id(sql.as_bytes()), Fingerprint::of(sql.as_bytes()).id);
        }
    }
}
