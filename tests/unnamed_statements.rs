//! `cache_unnamed_statements`: repeated unnamed Parse/Bind/Execute (tokio-postgres
//! `query_typed`, pgbench `-M extended`, node-postgres, psycopg 3 without its prepare threshold)
//! run as sluice's server-side statements. Pools of one server connection, so that
//! `pg_prepared_statements` asked through sluice shows what that connection holds.

mod common;

use common::*;
use sluice::config::PoolMode;
use tokio_postgres::Client;
use tokio_postgres::types::Type;

const QUERY: &str = "SELECT * FROM t WHERE id = $1";

fn config(pg: &PgCluster, cache: bool) -> String {
    let c = config_for(pg, 1, PoolMode::Transaction);
    set_config(&c, "pooler.cache_unnamed_statements", cache)
}

/// A table `t` (id, v) with three rows, made straight in PostgreSQL.
async fn make_table(pg: &PgCluster, name: &str) {
    let su = pg.superuser(APP_DB).await;
    su.batch_execute(&format!(
        "DROP TABLE IF EXISTS {name}; CREATE TABLE {name} (id int PRIMARY KEY, v text);
         INSERT INTO {name} VALUES (1, 'one'), (2, 'two'), (3, 'three');
         ALTER TABLE {name} OWNER TO {APP_USER};"
    ))
    .await
    .expect("create the table");
}

/// The texts of sluice's statements on the (only) server connection, asked through sluice with
/// a simple query (which prepares nothing).
async fn sluice_statements(c: &Client) -> Vec<String> {
    let sql = "SELECT statement FROM pg_prepared_statements WHERE name LIKE 'sluice\\_%' ORDER BY statement";
    let msgs = within(STEP, sql, c.simple_query(sql))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {}", describe_error(&e)));
    msgs.into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .collect()
}

/// `query_typed`: an unnamed Parse (with the parameter's type), Bind, Describe, Execute, Sync.
/// Each row as text, column by column.
async fn unnamed(c: &Client, sql: &str, id: i32) -> Vec<Vec<Option<String>>> {
    let rows = within(STEP, sql, c.query_typed(sql, &[(&id, Type::INT4)]))
        .await
        .unwrap_or_else(|e| panic!("{sql} ({id}): {}", describe_error(&e)));
    rows_text(&rows)
}

fn rows_text(rows: &[tokio_postgres::Row]) -> Vec<Vec<Option<String>>> {
    rows.iter()
        .map(|r| {
            (0..r.len())
                .map(|i| match r.columns()[i].type_() {
                    &Type::INT4 => r.get::<_, Option<i32>>(i).map(|v| v.to_string()),
                    _ => r.get::<_, Option<String>>(i),
                })
                .collect()
        })
        .collect()
}

/// Key on: the second sighting of an unnamed statement prepares it once on the connection; every
/// answer is PostgreSQL's own (compared with a direct connection). Key off: nothing prepared.
#[tokio::test]
async fn repeated_unnamed_statements_run_prepared_with_the_same_answers() {
    let pg = PgCluster::start();
    make_table(&pg, "t").await;
    let direct = pg.connect_direct(APP_DB, APP_USER, APP_PASSWORD).await;
    let on = Sluice::start(config(&pg, true));
    let c = on.connect_app().await;
    for round in 0..6 {
        for id in 1..=4 {
            assert_eq!(
                unnamed(&c, QUERY, id).await,
                unnamed(&direct, QUERY, id).await,
                "round {round}, id {id}"
            );
        }
    }
    assert_eq!(sluice_statements(&c).await, vec![QUERY.to_owned()]);
    drop(c);
    drop(on);

    let off = Sluice::start(config(&pg, false));
    let c = off.connect_app().await;
    for id in 1..=4 {
        assert_eq!(
            unnamed(&c, QUERY, id).await,
            unnamed(&direct, QUERY, id).await
        );
        assert_eq!(
            unnamed(&c, QUERY, id).await,
            unnamed(&direct, QUERY, id).await
        );
    }
    assert!(
        sluice_statements(&c).await.is_empty(),
        "key off: no server-side statement"
    );
}

/// A statement sent once is never prepared; the second time it is.
#[tokio::test]
async fn one_off_statements_are_not_prepared() {
    let pg = PgCluster::start();
    make_table(&pg, "t").await;
    let sluice = Sluice::start(config(&pg, true));
    let c = sluice.connect_app().await;
    unnamed(&c, QUERY, 1).await;
    unnamed(&c, "SELECT v FROM t WHERE id = $1", 2).await;
    assert!(sluice_statements(&c).await.is_empty(), "first sightings");
    unnamed(&c, QUERY, 3).await;
    assert_eq!(sluice_statements(&c).await, vec![QUERY.to_owned()]);
}

/// A client that connects per request finds the statement a client before it made: one
/// server-side statement for the text, not one per session (the pool keeps it alive).
#[tokio::test]
async fn sessions_one_after_another_share_one_statement() {
    let pg = PgCluster::start();
    make_table(&pg, "t").await;
    let sluice = Sluice::start(config(&pg, true));
    for _ in 0..3 {
        let c = sluice.connect_app().await;
        unnamed(&c, QUERY, 1).await;
        unnamed(&c, QUERY, 2).await;
        assert_eq!(sluice_statements(&c).await, vec![QUERY.to_owned()]);
    }
}

/// Utility statements are never rewritten, however often they come.
#[tokio::test]
async fn utility_statements_are_never_prepared() {
    let pg = PgCluster::start();
    let sluice = Sluice::start(config(&pg, true));
    let c = sluice.connect_app().await;
    for _ in 0..4 {
        within(STEP, "SET", c.query_typed("SET statement_timeout = 0", &[]))
            .await
            .expect("SET");
        within(STEP, "SHOW", c.query_typed("SHOW statement_timeout", &[]))
            .await
            .expect("SHOW");
    }
    // The control: a plannable statement sent as often is.
    for _ in 0..2 {
        within(STEP, "SELECT", c.query_typed("SELECT 1", &[]))
            .await
            .expect("SELECT");
    }
    assert_eq!(sluice_statements(&c).await, vec!["SELECT 1".to_owned()]);
}

/// Inside a transaction block the unnamed statement goes to the server as sent.
#[tokio::test]
async fn inside_a_transaction_block_nothing_is_rewritten() {
    let pg = PgCluster::start();
    make_table(&pg, "t").await;
    let sluice = Sluice::start(config(&pg, true));
    let c = sluice.connect_app().await;
    c.batch_execute("BEGIN").await.expect("BEGIN");
    for id in 1..=4 {
        unnamed(&c, QUERY, id).await;
    }
    assert!(
        sluice_statements(&c).await.is_empty(),
        "nothing prepared inside the block"
    );
    c.batch_execute("COMMIT").await.expect("COMMIT");
    // At rest again, the same text (seen before) is prepared at once.
    unnamed(&c, QUERY, 1).await;
    assert_eq!(sluice_statements(&c).await, vec![QUERY.to_owned()]);
}

/// Another client's `ALTER TABLE … ADD COLUMN` between executions of a cached `SELECT *`: the
/// client gets the new column, never PostgreSQL's 0A000 `cached plan must not change result type`
/// (sluice closes its stale statement and replays the batch).
#[tokio::test]
async fn a_changed_result_type_is_replayed_not_reported() {
    let pg = PgCluster::start();
    make_table(&pg, "t").await;
    let direct = pg.connect_direct(APP_DB, APP_USER, APP_PASSWORD).await;
    let sluice = Sluice::start(config(&pg, true));
    let c = sluice.connect_app().await;
    for id in 1..=3 {
        unnamed(&c, QUERY, id).await;
    }
    assert_eq!(sluice_statements(&c).await, vec![QUERY.to_owned()]);
    let su = pg.superuser(APP_DB).await;
    su.batch_execute("ALTER TABLE t ADD COLUMN extra int DEFAULT 7")
        .await
        .expect("ALTER");
    for id in 1..=3 {
        let got = unnamed(&c, QUERY, id).await;
        assert_eq!(got, unnamed(&direct, QUERY, id).await, "id {id}");
        assert_eq!(got[0].len(), 3, "the new column is there");
        assert_eq!(got[0][2].as_deref(), Some("7"));
    }
    // And once more the other way: the column goes.
    su.batch_execute("ALTER TABLE t DROP COLUMN extra")
        .await
        .expect("ALTER");
    assert_eq!(
        unnamed(&c, QUERY, 2).await,
        unnamed(&direct, QUERY, 2).await
    );
    assert_eq!(unnamed(&c, QUERY, 2).await[0].len(), 2);
    // The statement was prepared afresh on the connection, not dropped for good.
    assert_eq!(sluice_statements(&c).await, vec![QUERY.to_owned()]);
}

/// The divergence docs/unnamed-statements.md describes: the client's unnamed Parse at rest, then,
/// after another session added a column, its Bind inside a transaction block. PostgreSQL answers
/// 0A000 there (its unnamed statement keeps its result type); through sluice the Bind re-parses
/// the text as the server's unnamed statement first and gets the table as it is now: never a
/// 0A000 from sluice's own (stale) statement.
#[tokio::test]
async fn a_bind_inside_a_block_after_ddl_never_meets_a_stale_statement() {
    let pg = PgCluster::start();
    make_table(&pg, "t").await;
    let sluice = Sluice::start(config(&pg, true));
    let mut pooled = RawConn::connect_app(sluice.addr()).await;
    let mut direct = RawConn::connect_app(pg.addr()).await;
    let run = Batch::new().parse("", QUERY).run("", &["1"]).sync();
    let parse = Batch::new().parse("", QUERY).sync();
    let begin = Batch::new().parse("b", "BEGIN").run("b", &[]).sync();
    for conn in [&mut pooled, &mut direct] {
        // Twice at rest: cached (through sluice), then the Parse alone, then BEGIN by a named
        // statement (a simple Query would destroy the unnamed statement).
        exchange(conn, &run).await;
        exchange(conn, &run).await;
        exchange(conn, &parse).await;
        exchange(conn, &begin).await;
    }
    let su = pg.superuser(APP_DB).await;
    su.batch_execute("ALTER TABLE t ADD COLUMN extra int DEFAULT 7")
        .await
        .expect("ALTER");
    let bind = Batch::new().run("", &["1"]).sync();
    let from_pg = exchange(&mut direct, &bind).await;
    assert!(
        from_pg[0].starts_with("Error 0A000"),
        "PostgreSQL's own answer: {from_pg:?}"
    );
    let through_sluice = exchange(&mut pooled, &bind).await;
    assert_eq!(
        through_sluice,
        [
            "BindComplete",
            "DataRow 1,one,7",
            "CommandComplete SELECT 1",
            "ReadyForQuery T"
        ]
    );
}

/// The cached statements count under `max_prepared_statements`, least recently used closed.
#[tokio::test]
async fn the_bound_is_max_prepared_statements() {
    let pg = PgCluster::start();
    let c = set_config(&config(&pg, true), "pooler.max_prepared_statements", 2);
    let sluice = Sluice::start(c);
    let c = sluice.connect_app().await;
    for n in 0..5 {
        let sql = format!("SELECT $1::int + {n}");
        for _ in 0..2 {
            let rows = within(STEP, &sql, c.query_typed(&sql, &[(&1i32, Type::INT4)]))
                .await
                .expect("query");
            assert_eq!(rows[0].get::<_, i32>(0), 1 + n);
        }
    }
    assert_eq!(
        sluice_statements(&c).await,
        vec![
            "SELECT $1::int + 3".to_owned(),
            "SELECT $1::int + 4".to_owned()
        ],
        "the two most recent"
    );
}

/// The database's own `cache_unnamed_statements` wins over `[pooler]`'s.
#[tokio::test]
async fn the_database_setting_overrides_the_pooler() {
    let pg = PgCluster::start();
    make_table(&pg, "t").await;
    let on = set_config(
        &config(&pg, false),
        "databases.app.cache_unnamed_statements",
        true,
    );
    let sluice = Sluice::start(on);
    let c = sluice.connect_app().await;
    unnamed(&c, QUERY, 1).await;
    unnamed(&c, QUERY, 2).await;
    assert_eq!(sluice_statements(&c).await, vec![QUERY.to_owned()]);
    drop(c);
    drop(sluice);

    let off = set_config(
        &config(&pg, true),
        "databases.app.cache_unnamed_statements",
        false,
    );
    let sluice = Sluice::start(off);
    let c = sluice.connect_app().await;
    unnamed(&c, QUERY, 1).await;
    unnamed(&c, QUERY, 2).await;
    assert!(sluice_statements(&c).await.is_empty());
}

/// pgbench `-M extended` (unnamed statements through libpq) runs its transactions through a
/// prepared statement with the key on.
#[tokio::test]
async fn pgbench_extended_runs_prepared() {
    let pg = PgCluster::start();
    pg.pgbench_init().await;
    let sluice = Sluice::start(config(&pg, true));
    let out = sluice
        .pgbench(&["-n", "-S", "-M", "extended", "-c", "1", "-t", "50"])
        .await;
    assert_pgbench_ok("pgbench -S -M extended", &out, 50);
    let c = sluice.connect_app().await;
    let statements = sluice_statements(&c).await;
    assert!(
        statements
            .iter()
            .any(|s| s.contains("SELECT abalance FROM pgbench_accounts WHERE aid = $1")),
        "{statements:?}"
    );
}

/// node-postgres and psycopg 3 (prepare_threshold None: every query unnamed) through the key:
/// repeated parameterised queries, a column added by another client in between, checked answers,
/// and a server-side statement made for them.
async fn driver_through_the_key(driver: Driver, script: &str) {
    if !driver.available() {
        return;
    }
    let pg = PgCluster::start();
    make_table(&pg, "drv_unnamed").await;
    let sluice = Sluice::start(config(&pg, true));
    let target = DriverTarget::new(sluice.port(), APP_DB, APP_USER, APP_PASSWORD);
    let passed = driver.checks(&drivers_dir().join(script), &target).await;
    assert_eq!(passed, ["repeated", "altered", "prepared"], "{script}");
}

#[tokio::test]
async fn node_postgres_unnamed_statements_through_the_key() {
    driver_through_the_key(Driver::NodePostgres, "unnamed_node.js").await;
}

#[tokio::test]
async fn psycopg_unnamed_statements_through_the_key() {
    driver_through_the_key(Driver::Psycopg, "unnamed_psycopg.py").await;
}
