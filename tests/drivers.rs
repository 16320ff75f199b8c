//! The drivers applications run in production, through a transaction-mode pool of 5 with more
//! clients than servers: psycopg 3 (server-side prepared statements, pipeline mode, COPY),
//! asyncpg (its default statement cache: every query a named statement), node-postgres (named
//! statements, multi-statement simple queries) and pgJDBC (server-prepared after the threshold,
//! batches). Each script checks its answers; the test checks every script ran all its checks.

mod common;

use common::*;
use sluice::config::PoolMode;

async fn check_through_pool(driver: Driver, expected: &[&str]) {
    if !driver.available() {
        return;
    }
    let pg = PgCluster::start();
    let sluice = Sluice::start(config_for(&pg, 5, PoolMode::Transaction));
    let target = DriverTarget::new(sluice.port(), APP_DB, APP_USER, APP_PASSWORD);
    let passed = driver.check(&target).await;
    assert_eq!(passed, expected, "{} checks passed", driver.name());
}

#[tokio::test]
async fn psycopg_through_a_pool_of_5() {
    check_through_pool(
        Driver::Psycopg,
        &[
            "select",
            "params",
            "prepared",
            "transactions",
            "error recovery",
            "executemany",
            "copy",
            "pipeline",
            "concurrent",
        ],
    )
    .await;
}

#[tokio::test]
async fn asyncpg_through_a_pool_of_5() {
    check_through_pool(
        Driver::Asyncpg,
        &[
            "select",
            "params",
            "prepared",
            "transactions",
            "error recovery",
            "executemany",
            "copy",
            "concurrent",
        ],
    )
    .await;
}

#[tokio::test]
async fn node_postgres_through_a_pool_of_5() {
    check_through_pool(
        Driver::NodePostgres,
        &[
            "select",
            "params",
            "prepared",
            "transactions",
            "error recovery",
            "multi-statement",
            "concurrent",
        ],
    )
    .await;
}

#[tokio::test]
async fn pgjdbc_through_a_pool_of_5() {
    check_through_pool(
        Driver::Jdbc,
        &[
            "select",
            "prepared",
            "transactions",
            "error recovery",
            "batch",
            "concurrent",
        ],
    )
    .await;
}
