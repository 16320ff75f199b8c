//! Session mode: a client logs in at once, whatever the pool's connections are doing; its first
//! query waits for a server connection, which it then keeps for its whole session.

mod common;

use std::time::{Duration, Instant};

use common::*;
use sluice::config::PoolMode;

/// A login that waits for nothing takes milliseconds (two SCRAM exchanges); this bound only
/// leaves room for a loaded machine. A login that waited for a server connection would take
/// query_wait_timeout (10 s in the test config) and fail.
const LOGIN: Duration = Duration::from_secs(3);

#[tokio::test]
async fn six_clients_log_in_at_once_to_a_pool_of_two_and_all_get_served() {
    let pg = PgCluster::start();
    let pooler = Sluice::start(config_for(&pg, 2, PoolMode::Session));
    let cfg = pooler.pg_config(APP_DB, APP_USER, APP_PASSWORD);

    // All six log in at once.
    let logins: Vec<_> = (0..6)
        .map(|i| {
            let cfg = cfg.clone();
            tokio::spawn(async move {
                let t = Instant::now();
                let r = within(LOGIN, &format!("login {i}"), connect_config(&cfg)).await;
                (r.map(|(c, _)| c), t.elapsed())
            })
        })
        .collect();
    let mut clients = Vec::new();
    for (i, l) in logins.into_iter().enumerate() {
        let (c, took) = l.await.unwrap();
        let c = c.unwrap_or_else(|e| panic!("login {i}: {}", describe_error(&e)));
        eprintln!("login {i}: {took:?}");
        clients.push(c);
    }
    let mut rest = clients.split_off(2);
    let holders = clients;
    // Two of them take the pool's two connections, for their sessions.
    let mut held = Vec::new();
    for h in &holders {
        held.push(backend_pid(h).await);
    }
    // A seventh logs in while both are taken.
    let t = Instant::now();
    let late = within(
        LOGIN,
        "a login while the pool is taken",
        connect_config(&cfg),
    )
    .await
    .unwrap_or_else(|e| panic!("late login: {}", describe_error(&e)))
    .0;
    eprintln!("login with the pool taken: {:?}", t.elapsed());
    rest.push(late);

    // The others' first queries wait their turn; each leaves when served, freeing its connection.
    let n = rest.len();
    let waiting: Vec<_> = rest
        .into_iter()
        .map(|c| {
            tokio::spawn(async move {
                let pid = backend_pid(&c).await;
                drop(c);
                pid
            })
        })
        .collect();
    let pool = pooler.pool(APP_DB, APP_USER);
    poll_until(STEP, "the other clients' queries to wait", || async {
        pool.counts().2 == n
    })
    .await;
    assert!(
        waiting.iter().all(|w| !w.is_finished()),
        "served while the pool was taken"
    );
    // Still their sessions: the holders keep their connections.
    for (h, pid) in holders.iter().zip(&held) {
        assert_eq!(backend_pid(h).await, *pid);
    }
    drop(holders);
    for w in waiting {
        let pid = within(STEP, "a waiting client to be served", w)
            .await
            .unwrap();
        assert!(pid > 0);
    }
    let su = pg.superuser(APP_DB).await;
    assert!(pg.backends_of(&su, APP_USER).await <= 2);
}

#[tokio::test]
async fn pgbench_with_more_clients_than_the_pool_in_session_mode() {
    let pg = PgCluster::start();
    pg.pgbench_init().await;
    let pooler = Sluice::start(config_for(&pg, 2, PoolMode::Session));
    // pgbench connects all its clients before it starts; each runs its transactions and leaves.
    // libpq sends application_name=pgbench, which login checks on a server once.
    let out = pooler
        .pgbench(&["-n", "-S", "-c", "8", "-j", "2", "-t", "25"])
        .await;
    assert_pgbench_ok("pgbench -c 8 in session mode, pool 2", &out, 200);
    let su = pg.superuser(APP_DB).await;
    assert!(pg.backends_of(&su, APP_USER).await <= 2);
}

#[tokio::test]
async fn login_parameters_are_normalised_as_postgresql_would_while_the_pool_is_taken() {
    let pg = PgCluster::start();
    let direct = RawConn::connect(
        pg.addr(),
        APP_USER,
        APP_DB,
        Some(APP_PASSWORD),
        &[("DateStyle", "ISO"), ("application_name", "norm")],
    )
    .await
    .unwrap();
    let pooler = Sluice::start(config_for(&pg, 1, PoolMode::Session));
    let first = RawConn::connect(
        pooler.addr(),
        APP_USER,
        APP_DB,
        Some(APP_PASSWORD),
        &[("DateStyle", "ISO"), ("application_name", "norm")],
    )
    .await
    .unwrap();
    // The pool's one connection is taken for this session.
    let holder = pooler.connect_app().await;
    backend_pid(&holder).await;
    let second = within(
        LOGIN,
        "a login with the same parameters while the pool is taken",
        RawConn::connect(
            pooler.addr(),
            APP_USER,
            APP_DB,
            Some(APP_PASSWORD),
            &[("DateStyle", "ISO"), ("application_name", "norm")],
        ),
    )
    .await
    .unwrap();
    for (who, got) in [("first", &first), ("second", &second)] {
        for p in [
            "DateStyle",
            "application_name",
            "client_encoding",
            "TimeZone",
        ] {
            assert_eq!(
                got.params.get(p),
                direct.params.get(p),
                "{who} login: ParameterStatus {p}"
            );
        }
    }
    assert_eq!(
        second.params.get("DateStyle").map(String::as_str),
        Some("ISO, MDY")
    );
}

/// A startup list is learnt also from a server connection that is not at the pool's defaults
/// any more, when it already reports exactly the values asked for (once every connection has
/// served an application, none is): later logins with that list need no server connection,
/// in transaction mode too, and still see what PostgreSQL itself reports.
#[tokio::test]
async fn a_startup_list_the_server_already_reports_is_learnt_from_a_used_connection() {
    let pg = PgCluster::start();
    let list = [("application_name", "second")];
    let direct = RawConn::connect(pg.addr(), APP_USER, APP_DB, Some(APP_PASSWORD), &list)
        .await
        .unwrap();
    let pooler = Sluice::start(config_for(&pg, 1, PoolMode::Transaction));
    let login = |extra: &'static [(&'static str, &'static str)]| {
        RawConn::connect(pooler.addr(), APP_USER, APP_DB, Some(APP_PASSWORD), extra)
    };
    // The pool's one connection leaves the defaults: application_name "first", then "second"
    // (set by sluice for that login), then a login that finds "second" already there.
    drop(login(&[("application_name", "first")]).await.unwrap());
    drop(login(&[("application_name", "second")]).await.unwrap());
    drop(login(&[("application_name", "second")]).await.unwrap());
    // The one connection is taken by an open transaction.
    let holder = pooler.connect_app().await;
    holder.batch_execute("BEGIN; SELECT 1").await.unwrap();
    let late = within(
        LOGIN,
        "a login with the learnt list while the pool is taken",
        login(&[("application_name", "second")]),
    )
    .await
    .unwrap();
    for p in [
        "application_name",
        "DateStyle",
        "client_encoding",
        "TimeZone",
        "IntervalStyle",
    ] {
        assert_eq!(
            late.params.get(p),
            direct.params.get(p),
            "ParameterStatus {p}"
        );
    }
    assert_eq!(
        late.params.get("application_name").map(String::as_str),
        Some("second")
    );
    holder.batch_execute("COMMIT").await.unwrap();
}
