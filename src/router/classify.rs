//! Decides whether one query string may run on a replica.
//!
//! [`classify`] reads the SQL text with a small lexer (no parser) and answers with a
//! [`Classification`]: the [`Route`], the [`Reason`] for it, and what the statement does to the
//! transaction state. It is called for every simple Query and every Parse, so it makes one pass,
//! allocates nothing, and stops as soon as the answer can only be [`Route::Primary`].
//!
//! # The rule
//!
//! Correctness before offload: a statement goes to a replica only when the classifier has read
//! all of it, understood all of it, and found it provably read-only. Everything else goes to the
//! primary. Read-only means one statement (trailing `;` allowed) that
//!
//! * starts with `SELECT`, `VALUES`, `TABLE`, `SHOW` or `WITH` (leading parentheses allowed), or
//!   is `EXPLAIN` (without `ANALYZE`, which executes) of such a statement;
//! * names none of `INSERT`, `UPDATE`, `DELETE`, `MERGE` anywhere (this is what catches writable
//!   CTEs; a column that happens to be called `update` sends the query to the primary, which is
//!   merely a lost offload);
//! * has no `INTO` (`SELECT … INTO new_table`);
//! * has no locking clause: `FOR UPDATE`, `FOR NO KEY UPDATE`, `FOR SHARE`, `FOR KEY SHARE`;
//! * calls no function (an identifier or quoted identifier followed by `(`, possibly
//!   schema-qualified: only the last name part is compared, case-insensitively) that writes, takes
//!   locks, or depends on session state. The built-in list is [`BUILTIN_WRITING_FUNCTIONS`] plus
//!   the prefixes in [`BUILTIN_WRITING_PREFIXES`]; callers add their own (`extra_writing_functions`,
//!   from configuration; a schema-qualified entry is compared by its last part).
//!
//! Keywords are only recognised as such outside strings, quoted identifiers, dollar quotes and
//! comments, and not right after a `.` (`t.update` is a column).
//!
//! `currval` and `lastval` are read-only, but their value exists only in the session that called
//! `nextval`, which in a pooler is on the primary: they go to the primary. `pg_sleep` is harmless
//! and is allowed. Functions that cannot be told apart from read-only ones by name (a user
//! function that writes) are the reason for the configurable list; if one slips through anyway,
//! the replica refuses the write with SQLSTATE 25006 (read-only transaction) rather than doing it.
//!
//! # Lexing
//!
//! The lexer knows `--` and nested `/* */` comments, `'…'` strings with `''`, `E'…'` strings
//! with backslash escapes, `U&'…'`/`U&"…"`, dollar quotes (`$$…$$`, `$tag$…$tag$`; `$1` is a
//! parameter), quoted identifiers with `""`, numbers, words and single-byte punctuation.
//!
//! It assumes `standard_conforming_strings = on` (the default since PostgreSQL 9.1). Where a
//! session with it off would read the text differently — a backslash right before a quote inside
//! a plain `'…'` string — the answer is [`Reason::Ambiguous`] and the primary. So is a function
//! call whose name is a `U&"…"` identifier (escapes could spell any name). Text the server would
//! reject as unterminated (string, quoted identifier, dollar quote, comment) is
//! [`Reason::Malformed`] and goes to the primary, which reports the error.
//!
//! # Hints
//!
//! A comment containing `sluice:primary` or `sluice:replica` (exactly, case-sensitive, not part of
//! a longer word) is a hint:
//!
//! * `sluice:primary` always wins: the route is the primary ([`Reason::HintPrimary`]).
//! * `sluice:replica` only overrides doubt: a statement the classifier could not judge
//!   ([`Reason::Uncertain`]: `CALL`, `DO`, an unknown statement) goes to the replica
//!   ([`Reason::HintReplica`]). It does not override a detected write, locking clause, writing
//!   function, multi-statement query, transaction or session control, or text the lexer could not
//!   read with certainty: those still go to the primary. This is the safer choice: a hint in a
//!   query template must not be able to send a write or a lock to a server where it would fail
//!   or, worse (advisory locks, `set_config`), quietly take effect on the wrong server.
//!
//! Because the scan stops once the answer is the primary, a hint placed after the point that
//! decided it does not change the reported reason (the route is the primary either way). A
//! [`Route::Replica`] answer is only ever given after reading the whole text.
//!
//! # Transactions
//!
//! The flags describe the first statement: `begins_tx` for `BEGIN`/`START TRANSACTION` (any
//! mode), `begins_read_only_tx` when it also says `READ ONLY`, `ends_tx` for `COMMIT`, `END`,
//! `ROLLBACK`, `ABORT` and `PREPARE TRANSACTION` (but not `ROLLBACK TO SAVEPOINT` nor
//! `COMMIT/ROLLBACK PREPARED`), and `chains_tx` with `ends_tx` and `begins_tx` for `… AND CHAIN`
//! (the new transaction keeps the old one's mode, so `begins_read_only_tx` is false there: the
//! relay knows the old mode). A `BEGIN … READ ONLY` is routed [`Route::Replica`], so the
//! transaction can start where it will run; with `ISOLATION LEVEL SERIALIZABLE` it goes to the
//! primary, as a hot standby refuses serializable transactions. Inside a transaction the relay
//! sends every statement to the transaction's server whatever its route says, and it should take
//! the authoritative transaction status from ReadyForQuery: the flags of a multi-statement query
//! say nothing about its later statements.

/// Where a statement may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    Replica,
    Primary,
}

/// Why the classifier chose the route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Provably read-only (route: replica).
    ReadOnly,
    /// A data- or schema-modifying statement (`INSERT`, `CREATE`, `COPY`, …).
    Write,
    /// The classifier cannot tell (`CALL`, `DO`, unknown statements).
    Uncertain,
    /// Nothing but whitespace and comments.
    Empty,
    /// Unterminated string, quoted identifier, dollar quote or comment.
    Malformed,
    /// Text that could be read two ways (see the module docs).
    Ambiguous,
    /// A `sluice:primary` hint.
    HintPrimary,
    /// A `sluice:replica` hint on a statement that was otherwise [`Reason::Uncertain`].
    HintReplica,
    /// `FOR UPDATE`, `FOR NO KEY UPDATE`, `FOR SHARE`, `FOR KEY SHARE`.
    LockingClause,
    /// A call of a function that writes, locks or depends on the session.
    WritingFunction,
    /// `SELECT … INTO`.
    SelectInto,
    /// A data-modifying statement inside `WITH`.
    WritableCte,
    /// More than one statement in one query string.
    MultiStatement,
    /// `BEGIN`, `COMMIT`, `SAVEPOINT` and the like.
    TransactionControl,
    /// `SET`, `RESET`, `DISCARD`, `PREPARE`, `LISTEN`, cursors and the like: the session's state
    /// lives on the primary connection.
    SessionState,
    /// `EXPLAIN ANALYZE` executes the statement.
    ExplainAnalyze,
}

/// The classifier's answer for one query string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Classification {
    pub route: Route,
    pub reason: Reason,
    /// The first statement opens a transaction block (`BEGIN`, `START TRANSACTION`, or a
    /// `COMMIT/ROLLBACK … AND CHAIN`), of any mode.
    pub begins_tx: bool,
    /// The first statement opens a transaction block declared `READ ONLY`.
    pub begins_read_only_tx: bool,
    /// The first statement ends the transaction block (`COMMIT`, `END`, `ROLLBACK`, `ABORT`,
    /// `PREPARE TRANSACTION`).
    pub ends_tx: bool,
    /// `… AND CHAIN`: a new transaction with the same characteristics starts at once.
    pub chains_tx: bool,
}

impl Classification {
    fn new(route: Route, reason: Reason) -> Classification {
        Classification {
            route,
            reason,
            begins_tx: false,
            begins_read_only_tx: false,
            ends_tx: false,
            chains_tx: false,
        }
    }

    /// Not provably read-only, for `reason`.
    pub fn primary(reason: Reason) -> Classification {
        Classification::new(Route::Primary, reason)
    }
}

/// Functions that write, take locks, signal, or whose result depends on the session, compared
/// case-insensitively with the unqualified name of a call.
pub const BUILTIN_WRITING_FUNCTIONS: &[&str] = &[
    "nextval",
    "setval",
    "currval",
    "lastval",
    "set_config",
    "setseed",
    "pg_notify",
    "txid_current",
    "txid_current_if_assigned",
    "pg_current_xact_id",
    "pg_current_xact_id_if_assigned",
    "loread",
    "lowrite",
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_reload_conf",
    "pg_rotate_logfile",
    "pg_switch_wal",
    "pg_drop_replication_slot",
    "pg_replication_slot_advance",
    "pg_logical_emit_message",
    "pg_promote",
    "pg_walfile_name",
    "pg_walfile_name_offset",
    "pg_import_system_collations",
    "pg_log_backend_memory_contexts",
    "pg_wal_replay_pause",
    "pg_wal_replay_resume",
    "pg_start_backup",
    "pg_stop_backup",
    "pg_backup_start",
    "pg_backup_stop",
];

/// Name prefixes of function families that write, lock, or only work on a primary.
pub const BUILTIN_WRITING_PREFIXES: &[&str] = &[
    // pg_advisory_lock, _shared, _xact_, pg_advisory_unlock*, and the try variants.
    "pg_advisory_",
    "pg_try_advisory_",
    // Large objects: lo_create, lo_import, lo_unlink, lo_open, lo_put, lo_from_bytea, …
    "lo_",
    // Remote queries can do anything.
    "dblink",
    "pg_stat_reset",
    // pg_create_*_replication_slot, pg_create_restore_point.
    "pg_create_",
    "pg_copy_",
    "pg_replication_origin_",
    "pg_logical_slot_",
    // pg_current_wal_lsn and friends fail during recovery.
    "pg_current_wal",
    // adminpack's pg_file_write, pg_file_rename, pg_file_unlink, …
    "pg_file_",
];

/// Classifies one query string (a simple Query, or the statement of a Parse).
///
/// `extra_writing_functions` are the configured names of further writing functions (compared
/// case-insensitively with the unqualified called name; a qualified entry is compared by its
/// last part).
pub fn classify(sql: &str, extra_writing_functions: &[String]) -> Classification {
    let mut st = Stream::new(sql.as_bytes());
    let base = scan(&mut st, extra_writing_functions);
    let lx = &st.lx;
    if lx.hint_primary {
        return Classification {
            route: Route::Primary,
            reason: Reason::HintPrimary,
            ..base
        };
    }
    if let Some(problem) = lx.problem {
        let reason = match problem {
            Problem::Unterminated => Reason::Malformed,
            Problem::Ambiguous => Reason::Ambiguous,
        };
        return Classification::primary(reason);
    }
    if lx.hint_replica && base.reason == Reason::Uncertain {
        return Classification {
            route: Route::Replica,
            reason: Reason::HintReplica,
            ..base
        };
    }
    base
}

/// The whole decision before hints and lexing problems are applied.
fn scan(st: &mut Stream<'_>, extra: &[String]) -> Classification {
    let mut first = st.next();
    while first == Some(Tok::Punct(b';')) {
        first = st.next();
    }
    while first == Some(Tok::Punct(b'(')) {
        first = st.next();
    }
    let word = match first {
        None => return Classification::primary(Reason::Empty),
        Some(Tok::Word(w)) => w,
        Some(_) => return body(st, Body::Generic, extra),
    };
    let kw = Keyword::of(word);
    match kw {
        Keyword::Select | Keyword::Values | Keyword::Table | Keyword::Show => {
            body(st, Body::Read, extra)
        }
        Keyword::With => body(st, Body::ReadWith, extra),
        Keyword::Explain => explain(st, extra),
        Keyword::Begin => {
            let mut t = st.next();
            if let Some(Tok::Word(w)) = t
                && matches!(Keyword::of(w), Keyword::Work | Keyword::Transaction)
            {
                t = st.next();
            }
            begin(st, t)
        }
        Keyword::Start => match st.next() {
            Some(Tok::Word(w)) if Keyword::of(w) == Keyword::Transaction => {
                let t = st.next();
                begin(st, t)
            }
            _ => body(st, Body::Generic, extra),
        },
        Keyword::Commit | Keyword::End | Keyword::Rollback | Keyword::Abort => {
            finish_tx(st, kw, extra)
        }
        Keyword::Savepoint | Keyword::Release => {
            after_statement_from(st, Classification::primary(Reason::TransactionControl))
        }
        Keyword::Prepare => match st.next() {
            Some(Tok::Word(w)) if Keyword::of(w) == Keyword::Transaction => {
                let mut c = Classification::primary(Reason::TransactionControl);
                c.ends_tx = true;
                after_statement_from(st, c)
            }
            _ => Classification::primary(Reason::SessionState),
        },
        Keyword::Session => Classification::primary(Reason::SessionState),
        Keyword::Modify
        | Keyword::Analyze
        | Keyword::Insert
        | Keyword::Update
        | Keyword::Delete
        | Keyword::Merge => Classification::primary(Reason::Write),
        _ => body(st, Body::Generic, extra),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Body {
    /// A `SELECT`/`VALUES`/`TABLE`/`SHOW`: read-only unless something below says otherwise.
    Read,
    /// A `WITH …`: as `Read`, but a write inside parentheses is a writable CTE.
    ReadWith,
    /// A statement the classifier does not know: uncertain unless a write is seen.
    Generic,
}

/// Scans the rest of a statement for anything that makes it a write, then the rest of the text.
fn body(st: &mut Stream<'_>, kind: Body, extra: &[String]) -> Classification {
    let mut depth: u32 = 0;
    let mut after_dot = false;
    while let Some(t) = st.next() {
        match t {
            Tok::Punct(b';') => break,
            Tok::Punct(b'(') => depth = depth.saturating_add(1),
            Tok::Punct(b')') => depth = depth.saturating_sub(1),
            Tok::Word(w) => {
                if !after_dot {
                    match Keyword::of(w) {
                        Keyword::Insert | Keyword::Update | Keyword::Delete | Keyword::Merge => {
                            let reason = if kind == Body::ReadWith && depth > 0 {
                                Reason::WritableCte
                            } else {
                                Reason::Write
                            };
                            return Classification::primary(reason);
                        }
                        Keyword::Into => return Classification::primary(Reason::SelectInto),
                        Keyword::For => {
                            if let Some(Tok::Word(n)) = st.peek()
                                && matches!(
                                    Keyword::of(n),
                                    Keyword::Update | Keyword::Share | Keyword::No | Keyword::Key
                                )
                            {
                                return Classification::primary(Reason::LockingClause);
                            }
                        }
                        _ => {}
                    }
                }
                if st.peek() == Some(Tok::Punct(b'(')) && is_writing_function(w, extra) {
                    return Classification::primary(Reason::WritingFunction);
                }
            }
            Tok::QuotedIdent { body, unicode } if st.peek() == Some(Tok::Punct(b'(')) => {
                if unicode {
                    st.lx.problem.get_or_insert(Problem::Ambiguous);
                    return Classification::primary(Reason::Ambiguous);
                }
                if is_writing_function(body, extra) {
                    return Classification::primary(Reason::WritingFunction);
                }
            }
            _ => {}
        }
        after_dot = t == Tok::Punct(b'.');
    }
    let base = match kind {
        Body::Read | Body::ReadWith => Classification::new(Route::Replica, Reason::ReadOnly),
        Body::Generic => Classification::primary(Reason::Uncertain),
    };
    after_statement(st, base)
}

/// `EXPLAIN [ANALYZE] [VERBOSE] stmt` or `EXPLAIN (options) stmt`.
fn explain(st: &mut Stream<'_>, extra: &[String]) -> Classification {
    let mut analyze = false;
    let mut t = st.next();
    if t == Some(Tok::Punct(b'(')) {
        let mut depth = 1u32;
        while depth > 0 {
            match st.next() {
                None => return Classification::primary(Reason::Uncertain),
                Some(Tok::Punct(b'(')) => depth += 1,
                Some(Tok::Punct(b')')) => depth -= 1,
                Some(Tok::Word(w)) if Keyword::of(w) == Keyword::Analyze => analyze = true,
                Some(_) => {}
            }
        }
        t = st.next();
    } else {
        while let Some(Tok::Word(w)) = t {
            match Keyword::of(w) {
                Keyword::Analyze => analyze = true,
                Keyword::Verbose => {}
                _ => break,
            }
            t = st.next();
        }
    }
    if analyze {
        return Classification::primary(Reason::ExplainAnalyze);
    }
    match t {
        Some(Tok::Word(w)) => match Keyword::of(w) {
            Keyword::Select | Keyword::Values | Keyword::Table => body(st, Body::Read, extra),
            Keyword::With => body(st, Body::ReadWith, extra),
            Keyword::Insert
            | Keyword::Update
            | Keyword::Delete
            | Keyword::Merge
            | Keyword::Modify => Classification::primary(Reason::Write),
            _ => body(st, Body::Generic, extra),
        },
        _ => body(st, Body::Generic, extra),
    }
}

/// The transaction modes of `BEGIN`/`START TRANSACTION`, from the token after the keywords.
fn begin<'a>(st: &mut Stream<'a>, mut t: Option<Tok<'a>>) -> Classification {
    let mut read_only = false;
    let mut read_write = false;
    let mut serializable = false;
    let bad = loop {
        let Some(tok) = t else { break false };
        match tok {
            Tok::Punct(b';') => break false,
            Tok::Punct(b',') => {}
            Tok::Word(w) => match Keyword::of(w) {
                Keyword::Isolation => {
                    if !st.next_is(Keyword::Level) {
                        break true;
                    }
                    match st.next_keyword() {
                        Some(Keyword::Serializable) => serializable = true,
                        Some(Keyword::Repeatable) => {
                            if !st.next_is(Keyword::Read) {
                                break true;
                            }
                        }
                        Some(Keyword::Read) => match st.next_keyword() {
                            Some(Keyword::Committed | Keyword::Uncommitted) => {}
                            _ => break true,
                        },
                        _ => break true,
                    }
                }
                Keyword::Read => match st.next_keyword() {
                    Some(Keyword::Only) => read_only = true,
                    Some(Keyword::Write) => read_write = true,
                    _ => break true,
                },
                Keyword::Not => {
                    if !st.next_is(Keyword::Deferrable) {
                        break true;
                    }
                }
                Keyword::Deferrable => {}
                _ => break true,
            },
            _ => break true,
        }
        t = st.next();
    };
    if bad {
        // The server will reject it; no transaction starts.
        return Classification::primary(Reason::Uncertain);
    }
    let read_only = read_only && !read_write;
    let mut c = if read_only && !serializable {
        Classification::new(Route::Replica, Reason::TransactionControl)
    } else {
        Classification::primary(Reason::TransactionControl)
    };
    c.begins_tx = true;
    c.begins_read_only_tx = read_only;
    if t.is_some() {
        // Stopped at a ';': anything after it is another statement.
        return after_statement(st, c);
    }
    c
}

/// `COMMIT`, `END`, `ROLLBACK`, `ABORT` (the keyword already read).
fn finish_tx(st: &mut Stream<'_>, kw: Keyword, extra: &[String]) -> Classification {
    let mut t = st.next();
    if let Some(Tok::Word(w)) = t {
        match Keyword::of(w) {
            Keyword::Work | Keyword::Transaction => t = st.next(),
            Keyword::Prepared if matches!(kw, Keyword::Commit | Keyword::Rollback) => {
                // COMMIT/ROLLBACK PREPARED 'gid': finishes a prepared transaction, not ours.
                return after_statement_from(
                    st,
                    Classification::primary(Reason::TransactionControl),
                );
            }
            _ => {}
        }
    }
    let mut c = Classification::primary(Reason::TransactionControl);
    match t {
        None | Some(Tok::Punct(b';')) => {}
        Some(Tok::Word(w)) if Keyword::of(w) == Keyword::To && kw == Keyword::Rollback => {
            // ROLLBACK TO [SAVEPOINT] name: the transaction goes on.
            return after_statement_from(st, c);
        }
        Some(Tok::Word(w)) if Keyword::of(w) == Keyword::And => {
            let chain = match st.next_keyword() {
                Some(Keyword::Chain) => true,
                Some(Keyword::No) if st.next_is(Keyword::Chain) => false,
                _ => return body(st, Body::Generic, extra),
            };
            c.chains_tx = chain;
            c.begins_tx = chain;
            t = st.next();
        }
        Some(_) => return body(st, Body::Generic, extra),
    }
    match t {
        None => {
            c.ends_tx = true;
            c
        }
        Some(Tok::Punct(b';')) => {
            c.ends_tx = true;
            after_statement(st, c)
        }
        Some(_) => body(st, Body::Generic, extra),
    }
}

/// Skips to the end of the current statement, then checks for another.
fn after_statement_from(st: &mut Stream<'_>, c: Classification) -> Classification {
    loop {
        match st.next() {
            None => return c,
            Some(Tok::Punct(b';')) => return after_statement(st, c),
            Some(_) => {}
        }
    }
}

/// Called right after a statement's terminating `;` (or at the end): `c` stands if nothing but
/// further `;` follows.
fn after_statement(st: &mut Stream<'_>, c: Classification) -> Classification {
    loop {
        match st.next() {
            None => return c,
            Some(Tok::Punct(b';')) => {}
            Some(_) => return Classification::primary(Reason::MultiStatement),
        }
    }
}

fn is_writing_function(name: &[u8], extra: &[String]) -> bool {
    builtin_writing_function(name)
        || extra.iter().any(|f| {
            let f = f.trim();
            let last = f.rsplit('.').next().unwrap_or(f);
            name.eq_ignore_ascii_case(last.as_bytes())
        })
}

fn builtin_writing_function(name: &[u8]) -> bool {
    // Every built-in name and prefix starts with one of these letters (checked by a test).
    const FIRST: &[u8] = b"cdlnpst";
    if !name
        .first()
        .is_some_and(|b| FIRST.contains(&b.to_ascii_lowercase()))
    {
        return false;
    }
    BUILTIN_WRITING_FUNCTIONS
        .iter()
        .any(|f| name.eq_ignore_ascii_case(f.as_bytes()))
        || BUILTIN_WRITING_PREFIXES
            .iter()
            .any(|p| name.len() >= p.len() && name[..p.len()].eq_ignore_ascii_case(p.as_bytes()))
}

// ---------------------------------------------------------------------------------------------
// Keywords

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keyword {
    Select,
    Values,
    Table,
    Show,
    With,
    Explain,
    Analyze,
    Verbose,
    Begin,
    Start,
    Transaction,
    Work,
    Commit,
    End,
    Rollback,
    Abort,
    Savepoint,
    Release,
    Prepare,
    Prepared,
    To,
    And,
    Chain,
    No,
    Isolation,
    Level,
    Serializable,
    Repeatable,
    Read,
    Committed,
    Uncommitted,
    Only,
    Not,
    Deferrable,
    Insert,
    Update,
    Delete,
    Merge,
    Into,
    For,
    Share,
    Key,
    Write,
    /// A statement keyword that always writes (DDL, `COPY`, `VACUUM`, …).
    Modify,
    /// A statement keyword about session state (`SET`, `RESET`, cursors, …).
    Session,
    Other,
}

impl Keyword {
    fn of(w: &[u8]) -> Keyword {
        // Keywords are ASCII and at most 12 bytes; anything else is not one.
        if w.len() < 2 || w.len() > 12 {
            return Keyword::Other;
        }
        let mut buf = [0u8; 12];
        let buf = &mut buf[..w.len()];
        for (d, s) in buf.iter_mut().zip(w) {
            *d = s.to_ascii_lowercase();
        }
        // By length first: most words are not keywords, and each is compared with a handful
        // of candidates at most.
        match buf.len() {
            2 => match &*buf {
                b"to" => Keyword::To,
                b"no" => Keyword::No,
                _ => Keyword::Other,
            },
            3 => match &*buf {
                b"end" => Keyword::End,
                b"and" => Keyword::And,
                b"not" => Keyword::Not,
                b"for" => Keyword::For,
                b"key" => Keyword::Key,
                b"set" => Keyword::Session,
                _ => Keyword::Other,
            },
            4 => match &*buf {
                b"show" => Keyword::Show,
                b"with" => Keyword::With,
                b"work" => Keyword::Work,
                b"read" => Keyword::Read,
                b"only" => Keyword::Only,
                b"into" => Keyword::Into,
                b"drop" | b"copy" | b"lock" => Keyword::Modify,
                b"load" | b"move" => Keyword::Session,
                _ => Keyword::Other,
            },
            5 => match &*buf {
                b"table" => Keyword::Table,
                b"begin" => Keyword::Begin,
                b"start" => Keyword::Start,
                b"abort" => Keyword::Abort,
                b"chain" => Keyword::Chain,
                b"level" => Keyword::Level,
                b"merge" => Keyword::Merge,
                b"share" => Keyword::Share,
                b"write" => Keyword::Write,
                b"alter" | b"grant" => Keyword::Modify,
                b"reset" | b"fetch" | b"close" => Keyword::Session,
                _ => Keyword::Other,
            },
            6 => match &*buf {
                b"select" => Keyword::Select,
                b"values" => Keyword::Values,
                b"commit" => Keyword::Commit,
                b"insert" => Keyword::Insert,
                b"update" => Keyword::Update,
                b"delete" => Keyword::Delete,
                b"create" | b"revoke" | b"vacuum" | b"import" | b"notify" => Keyword::Modify,
                b"listen" => Keyword::Session,
                _ => Keyword::Other,
            },
            7 => match &*buf {
                b"explain" => Keyword::Explain,
                b"analyze" | b"analyse" => Keyword::Analyze,
                b"verbose" => Keyword::Verbose,
                b"release" => Keyword::Release,
                b"prepare" => Keyword::Prepare,
                b"cluster" | b"reindex" | b"comment" | b"refresh" => Keyword::Modify,
                b"discard" | b"declare" | b"execute" => Keyword::Session,
                _ => Keyword::Other,
            },
            8 => match &*buf {
                b"rollback" => Keyword::Rollback,
                b"prepared" => Keyword::Prepared,
                b"truncate" | b"security" | b"reassign" => Keyword::Modify,
                b"unlisten" => Keyword::Session,
                _ => Keyword::Other,
            },
            9 => match &*buf {
                b"savepoint" => Keyword::Savepoint,
                b"isolation" => Keyword::Isolation,
                b"committed" => Keyword::Committed,
                _ => Keyword::Other,
            },
            10 => match &*buf {
                b"repeatable" => Keyword::Repeatable,
                b"deferrable" => Keyword::Deferrable,
                b"checkpoint" => Keyword::Modify,
                b"deallocate" => Keyword::Session,
                _ => Keyword::Other,
            },
            11 => match &*buf {
                b"transaction" => Keyword::Transaction,
                b"uncommitted" => Keyword::Uncommitted,
                _ => Keyword::Other,
            },
            12 => match &*buf {
                b"serializable" => Keyword::Serializable,
                _ => Keyword::Other,
            },
            _ => Keyword::Other,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Lexer

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok<'a> {
    /// An unquoted identifier or keyword, as written.
    Word(&'a [u8]),
    /// A `"quoted identifier"`: the text between the quotes (doubled quotes left as they are).
    QuotedIdent { body: &'a [u8], unicode: bool },
    /// A string, number or parameter: its content never matters here.
    Literal,
    /// Any other single byte.
    Punct(u8),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Problem {
    Unterminated,
    Ambiguous,
}

/// Tokens with one token of lookahead.
struct Stream<'a> {
    lx: Lexer<'a>,
    peeked: Option<Option<Tok<'a>>>,
}

impl<'a> Stream<'a> {
    fn new(s: &'a [u8]) -> Stream<'a> {
        Stream {
            lx: Lexer {
                s,
                pos: 0,
                start: 0,
                hint_primary: false,
                hint_replica: false,
                problem: None,
            },
            peeked: None,
        }
    }

    fn next(&mut self) -> Option<Tok<'a>> {
        match self.peeked.take() {
            Some(t) => t,
            None => self.lx.next(),
        }
    }

    fn peek(&mut self) -> Option<Tok<'a>> {
        if self.peeked.is_none() {
            self.peeked = Some(self.lx.next());
        }
        self.peeked.flatten()
    }

    fn next_keyword(&mut self) -> Option<Keyword> {
        match self.next() {
            Some(Tok::Word(w)) => Some(Keyword::of(w)),
            _ => None,
        }
    }

    fn next_is(&mut self, kw: Keyword) -> bool {
        self.next_keyword() == Some(kw)
    }
}

struct Lexer<'a> {
    s: &'a [u8],
    pos: usize,
    /// Where the last token began.
    start: usize,
    hint_primary: bool,
    hint_replica: bool,
    /// Set when the text cannot be read with certainty; lexing stops there.
    problem: Option<Problem>,
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

fn is_ident_cont(b: u8) -> bool {
    is_ident_start(b) || b.is_ascii_digit() || b == b'$'
}

impl<'a> Lexer<'a> {
    fn at(&self, i: usize) -> Option<u8> {
        self.s.get(i).copied()
    }

    fn fail(&mut self, p: Problem) -> Option<Tok<'a>> {
        self.problem.get_or_insert(p);
        self.pos = self.s.len();
        None
    }

    fn next(&mut self) -> Option<Tok<'a>> {
        if self.problem.is_some() {
            return None;
        }
        loop {
            let b = self.at(self.pos)?;
            match b {
                b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c => self.pos += 1,
                b'-' if self.at(self.pos + 1) == Some(b'-') => {
                    let start = self.pos + 2;
                    let end = self.s[start..]
                        .iter()
                        .position(|&c| c == b'\n' || c == b'\r')
                        .map_or(self.s.len(), |n| start + n);
                    self.note_hints(start, end);
                    self.pos = end;
                }
                b'/' if self.at(self.pos + 1) == Some(b'*') => self.block_comment()?,
                _ => return self.token(b),
            }
        }
    }

    /// Skips a (nested) block comment starting at `pos`.
    fn block_comment(&mut self) -> Option<()> {
        let start = self.pos + 2;
        let mut i = start;
        let mut depth = 1u32;
        while depth > 0 {
            match self.at(i) {
                None => {
                    self.fail(Problem::Unterminated);
                    return None;
                }
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
        self.note_hints(start, i - 2);
        self.pos = i;
        Some(())
    }

    fn note_hints(&mut self, start: usize, end: usize) {
        const TAG: &[u8] = b"sluice:";
        let text = &self.s[start..end];
        let mut from = 0;
        while let Some(n) = find(&text[from..], TAG) {
            let at = from + n;
            from = at + TAG.len();
            if at > 0 && is_ident_cont(text[at - 1]) {
                continue;
            }
            let rest = &text[from..];
            for (word, primary) in [(&b"primary"[..], true), (&b"replica"[..], false)] {
                if rest.starts_with(word) && rest.get(word.len()).is_none_or(|&c| !is_ident_cont(c))
                {
                    if primary {
                        self.hint_primary = true;
                    } else {
                        self.hint_replica = true;
                    }
                }
            }
        }
    }

    fn token(&mut self, b: u8) -> Option<Tok<'a>> {
        let start = self.pos;
        self.start = start;
        match b {
            b'\'' => self.standard_string(start),
            b'"' => self.quoted_ident(start, false),
            b'$' => self.dollar(start),
            b'0'..=b'9' => {
                self.number(start);
                Some(Tok::Literal)
            }
            b'.' if self.at(start + 1).is_some_and(|c| c.is_ascii_digit()) => {
                self.number(start);
                Some(Tok::Literal)
            }
            _ if is_ident_start(b) => {
                let mut i = start + 1;
                while self.at(i).is_some_and(is_ident_cont) {
                    i += 1;
                }
                let word = &self.s[start..i];
                self.pos = i;
                match (word, self.at(i), self.at(i + 1)) {
                    (b"e" | b"E", Some(b'\''), _) => self.escape_string(i),
                    (b"u" | b"U", Some(b'&'), Some(b'\'')) => self.standard_string(i + 1),
                    (b"u" | b"U", Some(b'&'), Some(b'"')) => self.quoted_ident(i + 1, true),
                    _ => Some(Tok::Word(word)),
                }
            }
            _ => {
                self.pos = start + 1;
                Some(Tok::Punct(b))
            }
        }
    }

    /// `'…'` with `''`; a backslash right before a quote is ambiguous (see the module docs).
    fn standard_string(&mut self, quote: usize) -> Option<Tok<'a>> {
        let mut i = quote + 1;
        loop {
            match self.at(i) {
                None => return self.fail(Problem::Unterminated),
                Some(b'\'') => {
                    if self.at(i + 1) == Some(b'\'') {
                        i += 2;
                    } else {
                        self.pos = i + 1;
                        return Some(Tok::Literal);
                    }
                }
                Some(b'\\') if self.at(i + 1) == Some(b'\'') => {
                    return self.fail(Problem::Ambiguous);
                }
                Some(_) => i += 1,
            }
        }
    }

    /// `E'…'` with backslash escapes and `''`.
    fn escape_string(&mut self, quote: usize) -> Option<Tok<'a>> {
        let mut i = quote + 1;
        loop {
            match self.at(i) {
                None => return self.fail(Problem::Unterminated),
                Some(b'\\') => i += 2,
                Some(b'\'') => {
                    if self.at(i + 1) == Some(b'\'') {
                        i += 2;
                    } else {
                        self.pos = i + 1;
                        return Some(Tok::Literal);
                    }
                }
                Some(_) => i += 1,
            }
        }
    }

    fn quoted_ident(&mut self, quote: usize, unicode: bool) -> Option<Tok<'a>> {
        let mut i = quote + 1;
        loop {
            match self.at(i) {
                None => return self.fail(Problem::Unterminated),
                Some(b'"') => {
                    if self.at(i + 1) == Some(b'"') {
                        i += 2;
                    } else {
                        self.pos = i + 1;
                        return Some(Tok::QuotedIdent {
                            body: &self.s[quote + 1..i],
                            unicode,
                        });
                    }
                }
                Some(_) => i += 1,
            }
        }
    }

    /// `$1` (a parameter), `$tag$…$tag$`, or a lone `$`.
    fn dollar(&mut self, start: usize) -> Option<Tok<'a>> {
        let mut i = start + 1;
        if self.at(i).is_some_and(|c| c.is_ascii_digit()) {
            while self.at(i).is_some_and(|c| c.is_ascii_digit()) {
                i += 1;
            }
            self.pos = i;
            return Some(Tok::Literal);
        }
        if self.at(i).is_some_and(is_ident_start) {
            i += 1;
            while self
                .at(i)
                .is_some_and(|c| is_ident_start(c) || c.is_ascii_digit())
            {
                i += 1;
            }
        }
        if self.at(i) != Some(b'$') {
            self.pos = start + 1;
            return Some(Tok::Punct(b'$'));
        }
        let delim = &self.s[start..=i];
        match find(&self.s[i + 1..], delim) {
            Some(n) => {
                self.pos = i + 1 + n + delim.len();
                Some(Tok::Literal)
            }
            None => self.fail(Problem::Unterminated),
        }
    }

    /// Digits, an optional fraction and an optional exponent; what follows (even a letter) starts
    /// the next token, as older servers read `1into` as `1 into`.
    fn number(&mut self, start: usize) {
        let digits = |lx: &Self, mut i: usize| {
            while lx.at(i).is_some_and(|c| c.is_ascii_digit()) {
                i += 1;
            }
            i
        };
        let mut i = digits(self, start);
        if self.at(i) == Some(b'.') && self.at(i + 1) != Some(b'.') {
            i = digits(self, i + 1);
        }
        if matches!(self.at(i), Some(b'e' | b'E')) {
            let mut j = i + 1;
            if matches!(self.at(j), Some(b'+' | b'-')) {
                j += 1;
            }
            if self.at(j).is_some_and(|c| c.is_ascii_digit()) {
                i = digits(self, j);
            }
        }
        self.pos = i;
    }
}

/// One token of SQL text as written, for readers of SQL other than the classifier (the session
/// settings reader, `router/setting.rs`). Same lexing rules as [`classify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token<'a> {
    /// An unquoted identifier or keyword, as written.
    Word(&'a [u8]),
    /// A `"quoted identifier"`: the text between the quotes, doubled quotes left as they are.
    QuotedIdent(&'a [u8]),
    /// A `U&"…"` identifier (escapes not decoded).
    UnicodeIdent,
    /// A string, number or parameter, exactly as written (`'a''b'`, `E'\n'`, `$$x$$`, `1.5`,
    /// `$1`).
    Literal(&'a [u8]),
    /// Any other single byte.
    Punct(u8),
}

/// The tokens of SQL text; lexing stops at text it cannot read with certainty
/// ([`Tokens::failed`]).
pub struct Tokens<'a> {
    lx: Lexer<'a>,
}

impl<'a> Tokens<'a> {
    pub fn new(sql: &'a [u8]) -> Tokens<'a> {
        Tokens {
            lx: Stream::new(sql).lx,
        }
    }

    /// The text was unterminated or ambiguous: lexing stopped early.
    pub fn failed(&self) -> bool {
        self.lx.problem.is_some()
    }

    /// The next token with its byte range in the text, for callers that rewrite a statement in
    /// place (SQL-level `PREPARE`/`EXECUTE`).
    pub fn next_spanned(&mut self) -> Option<(Token<'a>, std::ops::Range<usize>)> {
        let t = self.next()?;
        Some((t, self.lx.start..self.lx.pos))
    }
}

impl<'a> Iterator for Tokens<'a> {
    type Item = Token<'a>;

    fn next(&mut self) -> Option<Token<'a>> {
        let t = self.lx.next()?;
        Some(match t {
            Tok::Word(w) => Token::Word(w),
            Tok::QuotedIdent {
                unicode: false,
                body,
            } => Token::QuotedIdent(body),
            Tok::QuotedIdent { unicode: true, .. } => Token::UnicodeIdent,
            Tok::Literal => Token::Literal(&self.lx.s[self.lx.start..self.lx.pos]),
            Tok::Punct(b) => Token::Punct(b),
        })
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    use Reason::*;
    use Route::*;

    fn check(sql: &str, route: Route, reason: Reason) {
        let extra = vec!["my_writer".to_owned(), "audit.Log_Access".to_owned()];
        let c = classify(sql, &extra);
        assert_eq!(
            (c.route, c.reason),
            (route, reason),
            "classify({sql:?}) = {c:?}"
        );
    }

    #[test]
    fn table() {
        let cases: &[(&str, Route, Reason)] = &[
            // Plain reads.
            ("SELECT 1", Replica, ReadOnly),
            ("select 1", Replica, ReadOnly),
            ("SeLeCt * from t where a = 1", Replica, ReadOnly),
            ("SELECT 1;", Replica, ReadOnly),
            ("  SELECT 1 ;  \n ; ", Replica, ReadOnly),
            ("SHOW search_path", Replica, ReadOnly),
            ("TABLE t", Replica, ReadOnly),
            ("VALUES (1), (2)", Replica, ReadOnly),
            ("(SELECT 1) UNION (SELECT 2)", Replica, ReadOnly),
            ("WITH x AS (SELECT 1) SELECT * FROM x", Replica, ReadOnly),
            (
                "WITH RECURSIVE r(n) AS (VALUES (1) UNION ALL SELECT n + 1 FROM r WHERE n < 5) \
                 SELECT * FROM r",
                Replica,
                ReadOnly,
            ),
            ("SELECT pg_sleep(0.1)", Replica, ReadOnly),
            (
                "SELECT now(), count(*) FROM t GROUP BY 1",
                Replica,
                ReadOnly,
            ),
            ("SELECT * FROM t FOR READ ONLY", Replica, ReadOnly),
            ("SELECT substring(s from 1 for 3) FROM t", Replica, ReadOnly),
            ("SELECT t.update, t.delete FROM t", Replica, ReadOnly),
            ("SELECT $1::int, $2", Replica, ReadOnly),
            ("SELECT a$b FROM t", Replica, ReadOnly),
            ("SELECT 1.5e10, .5, 1e-3", Replica, ReadOnly),
            (
                "SELECT B'1010', X'ff', N'abc', U&'d\\0061t'",
                Replica,
                ReadOnly,
            ),
            ("SELECT 'a\\b'", Replica, ReadOnly),
            ("SELECT ✓ FROM ünïcode", Replica, ReadOnly),
            // Strings, identifiers and comments hide what is inside them.
            ("SELECT 'FOR UPDATE'", Replica, ReadOnly),
            ("SELECT 'nextval(1)'", Replica, ReadOnly),
            ("SELECT \"insert\" FROM t", Replica, ReadOnly),
            ("SELECT \"a\"\"b\" FROM t", Replica, ReadOnly),
            ("SELECT $$ insert $$", Replica, ReadOnly),
            ("SELECT $fn$ delete $$ into $fn$", Replica, ReadOnly),
            ("SELECT $a$$a$", Replica, ReadOnly),
            ("SELECT * FROM t WHERE x = 'a''b'", Replica, ReadOnly),
            (
                "SELECT * FROM t WHERE x = 'a'' FOR UPDATE'",
                Replica,
                ReadOnly,
            ),
            ("SELECT E'\\' FOR UPDATE'", Replica, ReadOnly),
            ("SELECT e'\\\\'", Replica, ReadOnly),
            ("SELECT E'it''s'", Replica, ReadOnly),
            ("-- comment\nSELECT 1", Replica, ReadOnly),
            (
                "-- DELETE FROM t\nSELECT 1 -- FOR UPDATE",
                Replica,
                ReadOnly,
            ),
            ("/* a /* b */ c */ SELECT 1", Replica, ReadOnly),
            (
                "/* a /* DELETE */ FOR UPDATE */ SELECT 1",
                Replica,
                ReadOnly,
            ),
            ("SELECT 1 /* ; DELETE FROM t */", Replica, ReadOnly),
            ("SELECT 1 -- ; DELETE FROM t", Replica, ReadOnly),
            ("SELECT 2 --\r; -- \n", Replica, ReadOnly),
            // EXPLAIN.
            ("EXPLAIN SELECT 1", Replica, ReadOnly),
            ("EXPLAIN VERBOSE SELECT * FROM t", Replica, ReadOnly),
            (
                "EXPLAIN (FORMAT JSON, COSTS off) SELECT 1",
                Replica,
                ReadOnly,
            ),
            ("EXPLAIN WITH x AS (SELECT 1) TABLE x", Replica, ReadOnly),
            ("EXPLAIN ANALYZE SELECT 1", Primary, ExplainAnalyze),
            ("EXPLAIN ANALYZE DELETE FROM t", Primary, ExplainAnalyze),
            ("explain analyse select 1", Primary, ExplainAnalyze),
            ("EXPLAIN VERBOSE ANALYZE SELECT 1", Primary, ExplainAnalyze),
            (
                "EXPLAIN (ANALYZE, BUFFERS) SELECT 1",
                Primary,
                ExplainAnalyze,
            ),
            ("EXPLAIN (ANALYZE off) SELECT 1", Primary, ExplainAnalyze),
            ("EXPLAIN DELETE FROM t", Primary, Write),
            ("EXPLAIN SELECT nextval('s')", Primary, WritingFunction),
            ("EXPLAIN EXECUTE p(1)", Primary, Uncertain),
            ("EXPLAIN (FORMAT JSON", Primary, Uncertain),
            // Writes.
            ("INSERT INTO t VALUES (1)", Primary, Write),
            ("update t set a = 1", Primary, Write),
            ("DELETE FROM t", Primary, Write),
            (
                "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE",
                Primary,
                Write,
            ),
            ("CREATE TABLE t (a int)", Primary, Write),
            ("DROP TABLE t", Primary, Write),
            ("COPY t FROM STDIN", Primary, Write),
            ("TRUNCATE t", Primary, Write),
            ("VACUUM t", Primary, Write),
            ("ANALYZE t", Primary, Write),
            ("/* sluice:replica */ ANALYZE t", Primary, Write),
            ("LOCK TABLE t", Primary, Write),
            ("NOTIFY chan", Primary, Write),
            ("(INSERT INTO t VALUES (1))", Primary, Write),
            ("SELECT insert FROM t", Primary, Write),
            // Writable CTEs.
            (
                "WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x",
                Primary,
                WritableCte,
            ),
            (
                "WITH x AS (INSERT INTO t VALUES (1) RETURNING *) TABLE x",
                Primary,
                WritableCte,
            ),
            (
                "with x as (update t set a = 1 returning a) select a from x",
                Primary,
                WritableCte,
            ),
            (
                "WITH a AS (SELECT 1), b AS (MERGE INTO t USING a ON true WHEN MATCHED THEN DO NOTHING) SELECT 1",
                Primary,
                WritableCte,
            ),
            (
                "WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x",
                Primary,
                Write,
            ),
            // Locking clauses.
            ("SELECT * FROM t FOR UPDATE", Primary, LockingClause),
            ("SELECT * FROM t FOR NO KEY UPDATE", Primary, LockingClause),
            ("SELECT * FROM t FOR SHARE", Primary, LockingClause),
            ("SELECT * FROM t FOR KEY SHARE", Primary, LockingClause),
            (
                "select * from t for update of t skip locked",
                Primary,
                LockingClause,
            ),
            (
                "SELECT * FROM t /* x */ FOR -- y\n UPDATE",
                Primary,
                LockingClause,
            ),
            (
                "SELECT * FROM (SELECT * FROM t FOR UPDATE) s",
                Primary,
                LockingClause,
            ),
            ("SELECT E'\\\\' FOR UPDATE", Primary, LockingClause),
            // SELECT INTO.
            ("SELECT 1 INTO t2", Primary, SelectInto),
            ("SELECT * INTO TEMP t2 FROM t", Primary, SelectInto),
            ("SELECT 1into t2", Primary, SelectInto),
            (
                "WITH x AS (SELECT 1) SELECT * INTO t2 FROM x",
                Primary,
                SelectInto,
            ),
            // Writing functions.
            ("SELECT nextval('s')", Primary, WritingFunction),
            ("select pg_catalog.nextval('s')", Primary, WritingFunction),
            (
                "SELECT pg_catalog . NEXTVAL ('s')",
                Primary,
                WritingFunction,
            ),
            ("SELECT \"nextval\"('s')", Primary, WritingFunction),
            ("SELECT nextval /* c */ ('s')", Primary, WritingFunction),
            ("SELECT * FROM nextval('s')", Primary, WritingFunction),
            ("VALUES (setval('s', 1))", Primary, WritingFunction),
            ("SELECT currval('s')", Primary, WritingFunction),
            ("SELECT lastval()", Primary, WritingFunction),
            ("SELECT pg_advisory_lock(1)", Primary, WritingFunction),
            (
                "SELECT pg_advisory_xact_lock_shared(1)",
                Primary,
                WritingFunction,
            ),
            ("SELECT pg_try_advisory_lock(1)", Primary, WritingFunction),
            ("SELECT pg_advisory_unlock_all()", Primary, WritingFunction),
            (
                "SELECT set_config('a.b', 'c', false)",
                Primary,
                WritingFunction,
            ),
            ("SELECT pg_notify('c', 'p')", Primary, WritingFunction),
            ("SELECT txid_current()", Primary, WritingFunction),
            ("SELECT pg_current_xact_id()", Primary, WritingFunction),
            ("SELECT lo_create(0)", Primary, WritingFunction),
            ("SELECT lo_import('/tmp/x')", Primary, WritingFunction),
            ("SELECT loread(fd, 10)", Primary, WritingFunction),
            ("SELECT pg_terminate_backend(1)", Primary, WritingFunction),
            (
                "SELECT pg_create_physical_replication_slot('s')",
                Primary,
                WritingFunction,
            ),
            (
                "SELECT pg_stat_reset_shared('bgwriter')",
                Primary,
                WritingFunction,
            ),
            ("SELECT pg_current_wal_lsn()", Primary, WritingFunction),
            (
                "SELECT * FROM dblink('x', 'y') AS t(a int)",
                Primary,
                WritingFunction,
            ),
            ("SELECT my_writer()", Primary, WritingFunction),
            ("SELECT public.MY_WRITER(1)", Primary, WritingFunction),
            ("SELECT log_access(1)", Primary, WritingFunction),
            ("SELECT my_writer", Replica, ReadOnly),
            ("SELECT my_writer_not()", Replica, ReadOnly),
            (
                "WITH x AS (SELECT nextval('s')) SELECT * FROM x",
                Primary,
                WritingFunction,
            ),
            // Multiple statements.
            ("SELECT 1; DELETE FROM t", Primary, MultiStatement),
            ("SELECT 1; SELECT 2", Primary, MultiStatement),
            ("SELECT 1;;SELECT 2;", Primary, MultiStatement),
            ("BEGIN READ ONLY; SELECT 1", Primary, MultiStatement),
            ("COMMIT; SELECT 1", Primary, MultiStatement),
            ("SHOW x; SET x = 1", Primary, MultiStatement),
            // Session state and the unknown.
            ("SET search_path = a", Primary, SessionState),
            ("RESET ALL", Primary, SessionState),
            ("DISCARD ALL", Primary, SessionState),
            ("PREPARE p AS SELECT 1", Primary, SessionState),
            ("EXECUTE p", Primary, SessionState),
            ("DECLARE c CURSOR FOR SELECT 1", Primary, SessionState),
            ("LISTEN chan", Primary, SessionState),
            ("CALL proc()", Primary, Uncertain),
            ("DO $$ BEGIN END $$", Primary, Uncertain),
            ("CALL proc(nextval('s'))", Primary, WritingFunction),
            ("frobnicate", Primary, Uncertain),
            ("'SELECT 1'", Primary, Uncertain),
            ("START something", Primary, Uncertain),
            // Empty, malformed, ambiguous.
            ("", Primary, Empty),
            ("   \n\t ", Primary, Empty),
            ("-- nothing", Primary, Empty),
            ("/* nothing */ ;", Primary, Empty),
            ("SELECT 'unterminated", Primary, Malformed),
            ("SELECT \"unterminated", Primary, Malformed),
            ("SELECT $$ unterminated", Primary, Malformed),
            ("SELECT $x$ unterminated $y$", Primary, Malformed),
            ("SELECT E'unterminated\\'", Primary, Malformed),
            ("SELECT 1 /* unterminated /* */", Primary, Malformed),
            ("SELECT 'a\\' , nextval('s') --'", Primary, Ambiguous),
            ("SELECT 'a\\'' , nextval(1) --'", Primary, Ambiguous),
            ("SELECT U&\"nextv\\0061l\"('s')", Primary, Ambiguous),
            ("SELECT U&\"d\\0061t\" FROM t", Replica, ReadOnly),
            // Hints.
            ("/* sluice:primary */ SELECT 1", Primary, HintPrimary),
            ("SELECT 1 -- sluice:primary", Primary, HintPrimary),
            (
                "SELECT 1 /* app=x,sluice:primary,route=y */",
                Primary,
                HintPrimary,
            ),
            (
                "/* sluice:primary */ /* sluice:replica */ SELECT 1",
                Primary,
                HintPrimary,
            ),
            ("/* sluice:primary */ DELETE FROM t", Primary, HintPrimary),
            ("/* sluice:primary */ SELECT 'x", Primary, HintPrimary),
            ("/* sluice:primaryx */ SELECT 1", Replica, ReadOnly),
            ("/* xsluice:primary */ SELECT 1", Replica, ReadOnly),
            ("/* SLUICE:PRIMARY */ SELECT 1", Replica, ReadOnly),
            ("SELECT '/* sluice:primary */'", Replica, ReadOnly),
            ("/* sluice:replica */ SELECT 1", Replica, ReadOnly),
            (
                "/* sluice:replica */ CALL read_only_proc()",
                Replica,
                HintReplica,
            ),
            (
                "CALL read_only_proc() -- sluice:replica",
                Replica,
                HintReplica,
            ),
            ("/* sluice:replica */ DELETE FROM t", Primary, Write),
            (
                "/* sluice:replica */ SELECT nextval('s')",
                Primary,
                WritingFunction,
            ),
            (
                "/* sluice:replica */ SELECT * FROM t FOR UPDATE",
                Primary,
                LockingClause,
            ),
            (
                "/* sluice:replica */ SELECT 1; SELECT 2",
                Primary,
                MultiStatement,
            ),
            ("/* sluice:replica */ SET a = 1", Primary, SessionState),
            ("/* sluice:replica */ BEGIN", Primary, TransactionControl),
            ("/* sluice:replica */ SELECT 'x", Primary, Malformed),
            ("/* sluice:replica */", Primary, Empty),
        ];
        for &(sql, route, reason) in cases {
            check(sql, route, reason);
        }
    }

    fn tx(sql: &str) -> Classification {
        classify(sql, &[])
    }

    #[test]
    fn transaction_flags() {
        let c = tx("BEGIN READ ONLY");
        assert_eq!((c.route, c.reason), (Replica, TransactionControl));
        assert!(c.begins_tx && c.begins_read_only_tx && !c.ends_tx && !c.chains_tx);

        for sql in [
            "START TRANSACTION READ ONLY",
            "start transaction isolation level repeatable read, read only",
            "START TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY",
            "BEGIN WORK READ ONLY;",
            "BEGIN TRANSACTION READ ONLY, NOT DEFERRABLE",
            "BEGIN ISOLATION LEVEL READ COMMITTED READ ONLY",
            "BEGIN READ ONLY ISOLATION LEVEL READ UNCOMMITTED",
        ] {
            let c = tx(sql);
            assert_eq!(c.route, Replica, "{sql}: {c:?}");
            assert!(c.begins_tx && c.begins_read_only_tx, "{sql}: {c:?}");
        }

        // Serializable is refused by a hot standby.
        let c = tx("BEGIN ISOLATION LEVEL SERIALIZABLE, READ ONLY, DEFERRABLE");
        assert_eq!((c.route, c.reason), (Primary, TransactionControl));
        assert!(c.begins_tx && c.begins_read_only_tx);

        for sql in [
            "BEGIN",
            "begin;",
            "BEGIN WORK",
            "START TRANSACTION",
            "BEGIN READ WRITE",
            "BEGIN ISOLATION LEVEL REPEATABLE READ",
            "BEGIN READ ONLY, READ WRITE",
        ] {
            let c = tx(sql);
            assert_eq!((c.route, c.reason), (Primary, TransactionControl), "{sql}");
            assert!(c.begins_tx && !c.begins_read_only_tx && !c.ends_tx, "{sql}");
        }

        // Not valid: the server rejects them and no transaction starts.
        for sql in [
            "BEGIN ISOLATION LEVEL REPEATABLE READ ONLY",
            "BEGIN READ",
            "BEGIN FOO",
            "START TRANSACTION ISOLATION",
        ] {
            let c = tx(sql);
            assert_eq!((c.route, c.reason), (Primary, Uncertain), "{sql}");
            assert!(!c.begins_tx && !c.begins_read_only_tx, "{sql}");
        }

        for sql in [
            "COMMIT",
            "commit;",
            "COMMIT WORK",
            "END",
            "END TRANSACTION",
            "ROLLBACK",
            "ROLLBACK TRANSACTION",
            "ABORT",
            "COMMIT AND NO CHAIN",
            "PREPARE TRANSACTION 'gid'",
        ] {
            let c = tx(sql);
            assert_eq!((c.route, c.reason), (Primary, TransactionControl), "{sql}");
            assert!(c.ends_tx && !c.begins_tx && !c.chains_tx, "{sql}: {c:?}");
        }

        for sql in [
            "COMMIT AND CHAIN",
            "ROLLBACK WORK AND CHAIN",
            "END AND CHAIN",
        ] {
            let c = tx(sql);
            assert!(c.ends_tx && c.begins_tx && c.chains_tx, "{sql}: {c:?}");
            assert!(!c.begins_read_only_tx, "{sql}");
        }

        for sql in [
            "ROLLBACK TO SAVEPOINT s",
            "ROLLBACK TO s",
            "ROLLBACK WORK TO SAVEPOINT s",
            "SAVEPOINT s",
            "RELEASE SAVEPOINT s",
            "COMMIT PREPARED 'gid'",
            "ROLLBACK PREPARED 'gid'",
        ] {
            let c = tx(sql);
            assert_eq!((c.route, c.reason), (Primary, TransactionControl), "{sql}");
            assert!(!c.ends_tx && !c.begins_tx, "{sql}: {c:?}");
        }

        // A hint moves the route, not the facts.
        let c = tx("/* sluice:primary */ BEGIN READ ONLY");
        assert_eq!((c.route, c.reason), (Primary, HintPrimary));
        assert!(c.begins_tx && c.begins_read_only_tx);

        // Plain statements touch no transaction state.
        for sql in ["SELECT 1", "INSERT INTO t VALUES (1)", "SET a = 1", ""] {
            let c = tx(sql);
            assert!(!c.begins_tx && !c.begins_read_only_tx && !c.ends_tx && !c.chains_tx);
        }
    }

    #[test]
    fn every_builtin_writing_function_is_recognised() {
        for name in BUILTIN_WRITING_FUNCTIONS
            .iter()
            .chain(BUILTIN_WRITING_PREFIXES)
        {
            for n in [name.to_string(), name.to_ascii_uppercase()] {
                let sql = format!("SELECT {n}(1)");
                assert_eq!(classify(&sql, &[]).reason, WritingFunction, "{sql}");
            }
            if BUILTIN_WRITING_FUNCTIONS.contains(name) {
                let sql = format!("SELECT {name}x(1)");
                assert_eq!(classify(&sql, &[]).route, Replica, "{sql}");
            }
        }
    }

    #[test]
    fn every_keyword_is_recognised_in_any_case() {
        for (w, kw) in [
            ("select", Keyword::Select),
            ("SELECT", Keyword::Select),
            ("Serializable", Keyword::Serializable),
            ("UNCOMMITTED", Keyword::Uncommitted),
            ("to", Keyword::To),
            ("write", Keyword::Write),
            ("ANALYSE", Keyword::Analyze),
            ("checkpoint", Keyword::Modify),
            ("deallocate", Keyword::Session),
            ("selects", Keyword::Other),
            ("x", Keyword::Other),
            ("serializable_", Keyword::Other),
            ("sélect", Keyword::Other),
        ] {
            assert_eq!(Keyword::of(w.as_bytes()), kw, "{w}");
        }
    }

    #[test]
    fn stops_early_on_a_decided_write() {
        // A huge INSERT is decided by its first keyword; what follows is not even read (the
        // unterminated string at the end would otherwise make it Malformed).
        let mut sql = String::from("INSERT INTO t VALUES ");
        for i in 0..10_000 {
            sql.push_str(&format!("({i}, 'row {i}'),"));
        }
        sql.push_str(" 'oops");
        assert_eq!(classify(&sql, &[]).reason, Write);
    }

    #[test]
    fn hint_words_inside_literals_are_not_hints() {
        let c = classify("SELECT $$ /* sluice:primary */ $$", &[]);
        assert_eq!(c.route, Replica);
        let c = classify("SELECT \"-- sluice:primary\"", &[]);
        assert_eq!(c.route, Replica);
    }

    mod prop {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            #[test]
            fn never_panics_on_any_text(s in any::<String>()) {
                let _ = classify(&s, &["f".to_owned()]);
            }

            #[test]
            fn never_panics_on_sqlish_text(
                s in "[-/*'\"$;()., a-zA-Z0-9_\\\\&:\n\u{e9}]{0,80}"
            ) {
                let c = classify(&s, &[]);
                // A replica answer needs a clean read of the whole text.
                if c.route == Route::Replica {
                    prop_assert!(matches!(c.reason, Reason::ReadOnly | Reason::HintReplica | Reason::TransactionControl));
                }
            }

            #[test]
            fn primary_hint_always_wins(s in "[-/*'\"$;()., a-zA-Z0-9_\n]{0,60}") {
                let sql = format!("/* sluice:primary */ {s}");
                let c = classify(&sql, &[]);
                prop_assert_eq!(c.route, Route::Primary);
                prop_assert_eq!(c.reason, Reason::HintPrimary);
            }

            #[test]
            fn a_second_statement_never_reaches_a_replica(
                s in "[-/*'\"$;()., a-zA-Z0-9_\n]{0,60}"
            ) {
                // Nothing after the prefix can swallow the DELETE (a literal or comment the prefix
                // leaves open is unterminated), so this is never one read-only statement.
                let sql = format!("{s}\n; DELETE FROM t");
                let c = classify(&sql, &[]);
                prop_assert_eq!(c.route, Route::Primary, "{:?}", c);
            }
        }
    }
}
