//! psql and pgbench, unmodified, through the pooler.

mod common;

use common::*;
use sluice::config::PoolMode;

#[tokio::test]
async fn psql_runs_a_script() {
    let pg = PgCluster::start();
    let pooler = Sluice::start(config_for(&pg, 2, PoolMode::Transaction));
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("fruit.csv");
    std::fs::write(&csv, "4,durian\n5,elderberry\n").unwrap();
    let script = format!(
        "CREATE TABLE fruit(id int PRIMARY KEY, name text);\n\
         INSERT INTO fruit VALUES (1, 'apple'), (2, 'banana'), (3, 'cherry');\n\
         \\copy fruit FROM '{csv}' WITH (FORMAT csv)\n\
         BEGIN;\n\
         UPDATE fruit SET name = upper(name) WHERE id = 2;\n\
         COMMIT;\n\
         SELECT id || '=' || name FROM fruit ORDER BY id;\n\
         \\echo done\n",
        csv = csv.display()
    );
    let path = dir.path().join("script.sql");
    std::fs::write(&path, script).unwrap();
    let out = pooler.psql(&["-At", "-f", path.to_str().unwrap()]).await;
    assert!(out.status.success(), "{}", describe_output(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    let expected = [
        "1=apple",
        "2=BANANA",
        "3=cherry",
        "4=durian",
        "5=elderberry",
        "done",
    ];
    assert!(lines.ends_with(&expected), "{stdout}");

    // A failing statement makes psql exit non-zero with the server's message.
    let out = pooler.psql(&["-c", "SELECT * FROM no_such_table"]).await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("relation \"no_such_table\" does not exist"),
        "{}",
        describe_output(&out)
    );
}

async fn pgbench_through_sluice(pg: &PgCluster, pooler: &Sluice, mode: &str) {
    let su = pg.superuser(APP_DB).await;
    let history_before: i64 = su
        .query_one("SELECT count(*) FROM pgbench_history", &[])
        .await
        .unwrap()
        .get(0);
    let out = pooler
        .pgbench(&["-n", "-M", mode, "-c", "8", "-j", "2", "-t", "200"])
        .await;
    assert_pgbench_ok(&format!("pgbench -M {mode}"), &out, 1600);

    // TPC-B bookkeeping holds: no update was lost or applied twice.
    let history_after: i64 = su
        .query_one("SELECT count(*) FROM pgbench_history", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(history_after - history_before, 1600);
    let row = su
        .query_one(
            "SELECT (SELECT sum(abalance) FROM pgbench_accounts)::int8, (SELECT sum(bbalance) FROM pgbench_branches)::int8,
                    (SELECT sum(tbalance) FROM pgbench_tellers)::int8, (SELECT coalesce(sum(delta), 0) FROM pgbench_history)::int8",
            &[],
        )
        .await
        .unwrap();
    let (a, b, t, h): (i64, i64, i64, i64) = (row.get(0), row.get(1), row.get(2), row.get(3));
    assert!(
        a == h && b == h && t == h,
        "balances disagree: accounts {a}, branches {b}, tellers {t}, history {h}"
    );
}

#[tokio::test]
async fn pgbench_simple_and_extended_through_a_pool_of_4() {
    let pg = PgCluster::start();
    pg.pgbench_init().await;

    let pooler = Sluice::start(config_for(&pg, 4, PoolMode::Transaction));
    pgbench_through_sluice(&pg, &pooler, "simple").await;
    pgbench_through_sluice(&pg, &pooler, "extended").await;
    let su = pg.superuser(APP_DB).await;
    assert!(pg.backends_of(&su, APP_USER).await <= 4);
}
