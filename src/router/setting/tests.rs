//! Unit tests of `router/setting.rs`.

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
        "SET search_path = U&'x'",
        "SET statement_timeout = $1",
        "DO $$ BEGIN SET search_path = x; END $$",
        "DO LANGUAGE plpgsql 'BEGIN PERFORM set_config(''a.b'', ''x'', false); END'",
    ] {
        assert_eq!(one(sql), Effect::Untracked, "{sql}");
    }
}

#[test]
fn session_characteristics_set_the_transaction_defaults() {
    let set = |name: &str, value: &str| Change::Set {
        name: name.into(),
        value: value.into(),
    };
    assert_eq!(
        one(
            "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY, ISOLATION LEVEL REPEATABLE READ NOT DEFERRABLE"
        ),
        Effect::Changes(vec![
            set("default_transaction_read_only", "on"),
            set("default_transaction_isolation", "repeatable read"),
            set("default_transaction_deferrable", "off"),
        ])
    );
    assert_eq!(
        one("set session characteristics as transaction isolation level read committed"),
        Effect::Changes(vec![set("default_transaction_isolation", "read committed")])
    );
    assert_eq!(
        one("SET SESSION CHARACTERISTICS AS TRANSACTION SOMETHING"),
        Effect::Untracked
    );
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

/// The prefilter as first written, one byte at a time: the eight-byte scan must agree with it.
fn might_matter_bytewise(sql: &[u8], in_transaction_work: bool) -> bool {
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

#[test]
fn the_prefilter_scans_eight_bytes_at_a_time_like_one_at_a_time() {
    let words: &[&[u8]] = &[
        b"set",
        b"SeT",
        b"se",
        b"savepoint",
        b"SAVEPOIN",
        b"discard",
        b"DISCAR",
        b"release",
        b"rollback",
        b"ROLLBAC",
        b"select",
        b"s",
        b"d",
        b"r",
        b"x",
        b" ",
        b";",
        b"\xd3\xf3",
        b"\xc4",
        b"S\0T",
        b"\x73\x45\x54",
    ];
    // Every word at every offset 0..16 (so across the eight-byte chunks and in the tail), and
    // a few pseudo-random concatenations.
    let mut cases: Vec<Vec<u8>> = Vec::new();
    for w in words {
        for pad in 0..17 {
            let mut v = vec![b'a'; pad];
            v.extend_from_slice(w);
            cases.push(v.clone());
            v.extend_from_slice(b"aaaaaaa");
            cases.push(v);
        }
    }
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..2000 {
        let mut v = Vec::new();
        for _ in 0..(seed % 7) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            v.extend_from_slice(words[(seed % words.len() as u64) as usize]);
        }
        cases.push(v);
    }
    for case in &cases {
        for tx in [false, true] {
            assert_eq!(
                might_matter(case, tx),
                might_matter_bytewise(case, tx),
                "{:?} (transaction work: {tx})",
                String::from_utf8_lossy(case)
            );
        }
    }
}
