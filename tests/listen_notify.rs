//! LISTEN / NOTIFY through a transaction-mode pool (docs/listen-notify.md): a client's LISTEN is
//! answered by sluice, one dedicated connection per pool listens to the union of the channels,
//! and each notification reaches every subscribed client, unchanged, when it is idle; through a
//! pool of 1 that other clients keep busy. With tokio-postgres (its connection stream), psycopg 3
//! (`notifies()`) and node-postgres (the `notification` event).

mod common;

use std::future::poll_fn;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;
use sluice::config::PoolMode;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_postgres::{AsyncMessage, Client, NoTls, Notification};

/// What a client's connection stream yields: a notification, or the error that ended it.
type Inbound = Result<Notification, tokio_postgres::Error>;

/// Connects with `cfg` and forwards the connection's notifications (and the error that ends it).
async fn listener(cfg: &tokio_postgres::Config) -> (Client, UnboundedReceiver<Inbound>) {
    let (client, mut conn) = within(STEP, "connect", cfg.connect(NoTls))
        .await
        .unwrap_or_else(|e| panic!("connect: {}", describe_error(&e)));
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(msg) = poll_fn(|cx| conn.poll_message(cx)).await {
            match msg {
                Ok(AsyncMessage::Notification(n)) => {
                    let _ = tx.send(Ok(n));
                }
                Ok(_) => {}
                Err(e) => {
                    let _ = tx.send(Err(e));
                    break;
                }
            }
        }
    });
    (client, rx)
}

/// The next notification, within [`STEP`].
async fn next(rx: &mut UnboundedReceiver<Inbound>, what: &str) -> Notification {
    match within(STEP, what, rx.recv()).await {
        Some(Ok(n)) => n,
        Some(Err(e)) => panic!("{what}: the connection ended: {}", describe_error(&e)),
        None => panic!("{what}: the connection ended"),
    }
}

fn seen(n: &Notification) -> (String, String) {
    (n.channel().to_owned(), n.payload().to_owned())
}

/// Sends `NOTIFY channel, payload` through `client` and returns the pid of the server backend
/// that sent it (pg_notify and pg_backend_pid in one statement, so on the same connection).
async fn notify(client: &Client, channel: &str, payload: &str) -> i32 {
    client
        .query_one(
            "SELECT pg_backend_pid(), pg_notify($1, $2)",
            &[&channel, &payload],
        )
        .await
        .unwrap_or_else(|e| panic!("notify: {}", describe_error(&e)))
        .get(0)
}

/// Clients that keep a pool busy with short transactions until dropped.
struct Busy {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<u64>>,
}

impl Busy {
    async fn start(sluice: &Sluice, clients: usize) -> Busy {
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let c = sluice.connect_app().await;
            let stop = stop.clone();
            tasks.push(tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    c.batch_execute("BEGIN; SELECT pg_sleep(0.005); COMMIT")
                        .await
                        .expect("busy transaction");
                    n += 1;
                }
                n
            }));
        }
        Busy { stop, tasks }
    }

    /// Stops the clients; how many transactions they ran.
    async fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let mut total = 0;
        for t in self.tasks {
            total += within(STEP, "busy clients to stop", t)
                .await
                .expect("busy task");
        }
        total
    }
}

fn tx_config(pg: &PgCluster, size: usize) -> String {
    config_for(pg, size, PoolMode::Transaction)
}

/// LISTEN, UNLISTEN and UNLISTEN * as simple and extended queries, inside and outside a
/// transaction, in a failed one: sluice answers message for message as PostgreSQL does.
#[tokio::test]
async fn answers_are_postgres_answers() {
    let pg = PgCluster::start();
    let sluice = Sluice::start(tx_config(&pg, 1));
    let mut direct = RawConn::connect_app(pg.addr()).await;
    let mut pooled = RawConn::connect_app(sluice.addr()).await;
    let steps = [
        step(
            "listen",
            Batch::new().query("LISTEN a"),
            &["CommandComplete LISTEN", "ReadyForQuery I"],
        ),
        step(
            "two in one query",
            Batch::new().query("LISTEN \"B\"; unlisten a;"),
            &[
                "CommandComplete LISTEN",
                "CommandComplete UNLISTEN",
                "ReadyForQuery I",
            ],
        ),
        step(
            "unlisten all",
            Batch::new().query("UNLISTEN *"),
            &["CommandComplete UNLISTEN", "ReadyForQuery I"],
        ),
        step(
            "extended",
            Batch::new()
                .parse("", "LISTEN c")
                .describe_statement("")
                .bind("", &[])
                .execute()
                .sync(),
            &[
                "ParseComplete",
                "ParameterDescription []",
                "NoData",
                "BindComplete",
                "CommandComplete LISTEN",
                "ReadyForQuery I",
            ],
        ),
        step(
            "in a transaction",
            Batch::new()
                .query("BEGIN")
                .query("LISTEN d")
                .query("COMMIT"),
            &[
                "CommandComplete BEGIN",
                "ReadyForQuery T",
                "CommandComplete LISTEN",
                "ReadyForQuery T",
                "CommandComplete COMMIT",
                "ReadyForQuery I",
            ],
        ),
        step(
            "extended in a transaction",
            Batch::new()
                .query("BEGIN")
                .parse("", "UNLISTEN d")
                .bind("", &[])
                .execute()
                .sync()
                .query("ROLLBACK"),
            &[
                "CommandComplete BEGIN",
                "ReadyForQuery T",
                "ParseComplete",
                "BindComplete",
                "CommandComplete UNLISTEN",
                "ReadyForQuery T",
                "CommandComplete ROLLBACK",
                "ReadyForQuery I",
            ],
        ),
        step(
            "in a failed transaction",
            Batch::new()
                .query("BEGIN")
                .query("SELECT 1/0")
                .query("LISTEN e")
                .query("ROLLBACK"),
            &[
                "CommandComplete BEGIN",
                "ReadyForQuery T",
                "Error 22012 division by zero",
                "ReadyForQuery E",
                "Error 25P02 current transaction is aborted, commands ignored until end of transaction block",
                "ReadyForQuery E",
                "CommandComplete ROLLBACK",
                "ReadyForQuery I",
            ],
        ),
        step(
            "behind a pipelined query",
            Batch::new().query("SELECT 1").query("UNLISTEN c"),
            &[
                "RowDescription ?column?",
                "DataRow 1",
                "CommandComplete SELECT 1",
                "ReadyForQuery I",
                "CommandComplete UNLISTEN",
                "ReadyForQuery I",
            ],
        ),
        step(
            "notify passes through",
            Batch::new().query("NOTIFY nobody, 'x'"),
            &["CommandComplete NOTIFY", "ReadyForQuery I"],
        ),
    ];
    check_script(&mut direct, &mut pooled, &steps).await;

    // LISTEN among other statements is refused (through the server, in its turn).
    let answer = exchange(&mut pooled, &Batch::new().query("SELECT 1; LISTEN g")).await;
    assert!(
        answer[0]
            .starts_with("Error 0A000 LISTEN and UNLISTEN must be sent as queries of their own"),
        "{answer:?}"
    );
    assert_eq!(answer.last().map(String::as_str), Some("ReadyForQuery I"));
    // An extended-protocol LISTEN in a batch the server is working on: refused in its turn.
    let answer = exchange(
        &mut pooled,
        &Batch::new()
            .parse("", "SELECT 2")
            .run("", &[])
            .parse("", "LISTEN h")
            .run("", &[])
            .sync(),
    )
    .await;
    assert_eq!(
        answer[..4],
        [
            "ParseComplete",
            "BindComplete",
            "DataRow 2",
            "CommandComplete SELECT 1"
        ]
    );
    // The Parse the server got raises this error when executed, so the statement's own
    // ParseComplete and BindComplete come first.
    assert_eq!(
        answer[4..6],
        ["ParseComplete", "BindComplete"],
        "{answer:?}"
    );
    assert!(
        answer[6].starts_with("Error 0A000 LISTEN and UNLISTEN cannot be pipelined"),
        "{answer:?}"
    );
    assert_eq!(answer[7..], ["ReadyForQuery I"]);

    // No pooled server connection ever listened.
    let su = pg.superuser(APP_DB).await;
    let pooled_listening: i64 = su
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = $1 AND query ILIKE 'listen%' \
             AND query NOT LIKE 'LISTEN \"%'",
            &[&APP_USER],
        )
        .await
        .expect("pg_stat_activity")
        .get(0);
    assert_eq!(pooled_listening, 0, "a client's LISTEN reached a server");
}

/// A listener gets what other clients notify, at once while it is idle, through a pool of 1 that
/// three other clients keep busy; with the notifying backend's pid, as a direct listener sees it.
#[tokio::test]
async fn notifications_reach_an_idle_listener_through_a_busy_pool_of_1() {
    let pg = PgCluster::start();
    let (config, metrics_port) = with_metrics(tx_config(&pg, 1));
    let sluice = Sluice::start(config);
    let cfg = sluice.pg_config(APP_DB, APP_USER, APP_PASSWORD);
    let (l, mut inbox) = listener(&cfg).await;
    l.batch_execute("LISTEN jobs").await.expect("LISTEN");
    let (direct, mut direct_inbox) = listener(&pg.pg_config(APP_DB, APP_USER, APP_PASSWORD)).await;
    direct
        .batch_execute("LISTEN jobs")
        .await
        .expect("LISTEN direct");

    let busy = Busy::start(&sluice, 3).await;
    let notifier = sluice.connect_app().await;
    let mut pids = Vec::new();
    for i in 0..20 {
        pids.push(notify(&notifier, "jobs", &format!("job {i}")).await);
    }
    notifier
        .batch_execute("NOTIFY jobs, 'last'")
        .await
        .expect("NOTIFY");
    for (i, pid) in pids.iter().enumerate() {
        let n = next(&mut inbox, "a notification through sluice").await;
        let d = next(&mut direct_inbox, "a notification on the direct connection").await;
        assert_eq!(
            seen(&n),
            ("jobs".to_owned(), format!("job {i}")),
            "in order"
        );
        assert_eq!(seen(&n), seen(&d));
        assert_eq!(n.process_id(), *pid, "the notifying backend's pid");
        assert_eq!(n.process_id(), d.process_id(), "as PostgreSQL sends it");
    }
    let n = next(&mut inbox, "NOTIFY's notification").await;
    assert_eq!(seen(&n), ("jobs".to_owned(), "last".to_owned()));
    let transactions = busy.finish().await;
    assert!(transactions > 0, "the pool was kept busy");

    let page = scrape(metrics_port).await;
    let labels = [("database", APP_DB), ("user", APP_USER)];
    assert_eq!(
        sample(&page, "sluice_listen_subscriptions", &labels),
        Some(1.0)
    );
    assert_eq!(
        sample(&page, "sluice_listen_deliveries_total", &labels),
        Some(21.0)
    );
    assert_eq!(
        sample(&page, "sluice_listen_drops_total", &labels),
        Some(0.0)
    );
    assert_eq!(sample(&page, "sluice_listen_connected", &labels), Some(1.0));
}

/// A client busy in a transaction gets the notifications after it; a LISTEN inside a transaction
/// takes effect at COMMIT (what was sent before is not delivered) and is undone by ROLLBACK.
#[tokio::test]
async fn transactions_decide_when_and_whether() {
    let pg = PgCluster::start();
    let sluice = Sluice::start(tx_config(&pg, 2));
    let cfg = sluice.pg_config(APP_DB, APP_USER, APP_PASSWORD);
    let (l, mut inbox) = listener(&cfg).await;
    let notifier = sluice.connect_app().await;

    // Busy in a transaction: held back until it ends.
    l.batch_execute("LISTEN a").await.expect("LISTEN a");
    l.batch_execute("BEGIN").await.expect("BEGIN");
    notify(&notifier, "a", "during").await;
    l.batch_execute("SELECT 1")
        .await
        .expect("in the transaction");
    assert!(inbox.try_recv().is_err(), "delivered inside a transaction");
    l.batch_execute("COMMIT").await.expect("COMMIT");
    assert_eq!(seen(&next(&mut inbox, "after COMMIT").await).1, "during");

    // LISTEN in a transaction: in effect at COMMIT. Not delivered while the transaction is open;
    // what is sent after the COMMIT arrives. (A notification committed just before the COMMIT
    // may arrive too: sluice sees the two on different connections; docs/listen-notify.md.)
    l.batch_execute("BEGIN; ").await.expect("BEGIN");
    l.batch_execute("LISTEN b").await.expect("LISTEN b");
    notify(&notifier, "b", "before commit").await;
    l.batch_execute("SELECT 1")
        .await
        .expect("in the transaction");
    assert!(inbox.try_recv().is_err(), "delivered before the COMMIT");
    l.batch_execute("COMMIT").await.expect("COMMIT");
    notify(&notifier, "b", "after commit").await;
    let mut n = next(&mut inbox, "after the LISTEN's COMMIT").await;
    if n.payload() == "before commit" {
        n = next(&mut inbox, "after the LISTEN's COMMIT").await;
    }
    assert_eq!(seen(&n), ("b".to_owned(), "after commit".to_owned()));

    // Rolled back: never listened. The notification on `a` after it shows nothing on `c` came.
    l.batch_execute("BEGIN").await.expect("BEGIN");
    l.batch_execute("LISTEN c").await.expect("LISTEN c");
    l.batch_execute("ROLLBACK").await.expect("ROLLBACK");
    notify(&notifier, "c", "rolled back").await;
    notify(&notifier, "a", "sentinel").await;
    assert_eq!(
        seen(&next(&mut inbox, "the sentinel").await),
        ("a".to_owned(), "sentinel".to_owned())
    );

    // tokio-postgres's own transaction (BEGIN, statement, COMMIT through its API).
    let mut l = l;
    let tx = l.transaction().await.expect("transaction");
    tx.batch_execute("LISTEN d").await.expect("LISTEN d");
    tx.commit().await.expect("commit");
    notify(&notifier, "d", "tokio-postgres").await;
    assert_eq!(seen(&next(&mut inbox, "d").await).1, "tokio-postgres");
}

/// UNLISTEN stops delivery; UNLISTEN * stops it all; two clients on one channel both get it.
#[tokio::test]
async fn unlisten_and_two_listeners() {
    let pg = PgCluster::start();
    let sluice = Sluice::start(tx_config(&pg, 1));
    let cfg = sluice.pg_config(APP_DB, APP_USER, APP_PASSWORD);
    let (one, mut one_inbox) = listener(&cfg).await;
    let (two, mut two_inbox) = listener(&cfg).await;
    let notifier = sluice.connect_app().await;

    one.batch_execute("LISTEN shared; LISTEN mine")
        .await
        .expect("LISTEN");
    two.batch_execute("LISTEN shared").await.expect("LISTEN");
    notify(&notifier, "shared", "both").await;
    assert_eq!(seen(&next(&mut one_inbox, "one").await).1, "both");
    assert_eq!(seen(&next(&mut two_inbox, "two").await).1, "both");
    let pool = sluice.pool(APP_DB, APP_USER);
    assert_eq!(pool.pubsub().sample().subscriptions, 3);
    assert_eq!(pool.pubsub().sample().channels, 2);

    one.batch_execute("UNLISTEN shared")
        .await
        .expect("UNLISTEN");
    notify(&notifier, "shared", "two only").await;
    notify(&notifier, "mine", "one's").await;
    assert_eq!(
        seen(&next(&mut one_inbox, "one").await).1,
        "one's",
        "no `shared` before it"
    );
    assert_eq!(seen(&next(&mut two_inbox, "two").await).1, "two only");

    two.batch_execute("UNLISTEN *").await.expect("UNLISTEN *");
    one.batch_execute("UNLISTEN *").await.expect("UNLISTEN *");
    // The dedicated connection follows the union: it listens to nothing now.
    poll_until(STEP, "the union to be empty", || async {
        pool.pubsub().sample().channels == 0
    })
    .await;
    notify(&notifier, "shared", "nobody").await;
    two.batch_execute("LISTEN other").await.expect("LISTEN");
    notify(&notifier, "other", "after").await;
    assert_eq!(seen(&next(&mut two_inbox, "two").await).1, "after");
    assert!(one_inbox.try_recv().is_err(), "one unlistened everything");
    two.batch_execute("UNLISTEN other").await.expect("UNLISTEN");
    // Nobody listens: the dedicated connection is closed.
    poll_until(STEP, "the listening connection to close", || async {
        !pool.pubsub().sample().connected
    })
    .await;
    let su = pg.superuser(APP_DB).await;
    poll_until(STEP, "its backend to go", || async {
        let n: i64 = su
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE usename = $1 AND query LIKE 'LISTEN \"%' \
                 OR query LIKE 'UNLISTEN \"%'",
                &[&APP_USER],
            )
            .await
            .expect("pg_stat_activity")
            .get(0);
        n == 0
    })
    .await;
    two.batch_execute("LISTEN again")
        .await
        .expect("LISTEN again");
    notify(&notifier, "again", "reopened").await;
    assert_eq!(seen(&next(&mut two_inbox, "two").await).1, "reopened");

    // A client that leaves takes its subscriptions with it.
    drop(two);
    poll_until(STEP, "the leaver's subscriptions to go", || async {
        pool.pubsub().sample().subscriptions == 0
    })
    .await;
}

/// The dedicated connection is terminated: it comes back, listens again, and later
/// notifications arrive.
#[tokio::test]
async fn the_listening_connection_comes_back() {
    let pg = PgCluster::start();
    let sluice = Sluice::start(tx_config(&pg, 1));
    let cfg = sluice.pg_config(APP_DB, APP_USER, APP_PASSWORD);
    let (l, mut inbox) = listener(&cfg).await;
    l.batch_execute("LISTEN survive").await.expect("LISTEN");
    let notifier = sluice.connect_app().await;
    notify(&notifier, "survive", "before").await;
    assert_eq!(seen(&next(&mut inbox, "before").await).1, "before");

    let su = pg.superuser(APP_DB).await;
    let pid: i32 = su
        .query_one(
            "SELECT pid FROM pg_stat_activity WHERE usename = $1 AND query = 'LISTEN \"survive\";'",
            &[&APP_USER],
        )
        .await
        .expect("the listening connection")
        .get(0);
    terminate_backend(&su, pid).await;
    wait_backend_gone(&su, pid).await;
    let pool = sluice.pool(APP_DB, APP_USER);

    // Notifications sent while it is down are lost (documented): notify until one arrives.
    let mut i = 0;
    let got = within(STEP, "a notification after the reconnect", async {
        loop {
            i += 1;
            notify(&notifier, "survive", &format!("after {i}")).await;
            if let Ok(Some(n)) =
                tokio::time::timeout(Duration::from_millis(200), inbox.recv()).await
            {
                break n.expect("notification");
            }
        }
    })
    .await;
    assert!(got.payload().starts_with("after "), "{}", got.payload());
    let new_pid: i32 = su
        .query_one(
            "SELECT pid FROM pg_stat_activity WHERE usename = $1 AND query = 'LISTEN \"survive\";'",
            &[&APP_USER],
        )
        .await
        .expect("a new listening connection")
        .get(0);
    assert_ne!(new_pid, pid);
    assert!(pool.pubsub().sample().connected);
    // And the client's own connection never noticed.
    assert_eq!(
        simple_scalar(&l, "SELECT 'still here'").await.as_deref(),
        Some("still here")
    );
}

/// A client busy in a transaction while more than listen_queue_size notifications arrive is
/// cut off with 54000; another listener is not affected.
#[tokio::test]
async fn the_queue_bound() {
    let pg = PgCluster::start();
    let config = set_config(&tx_config(&pg, 2), "pooler.listen_queue_size", 5);
    let sluice = Sluice::start(config);
    let cfg = sluice.pg_config(APP_DB, APP_USER, APP_PASSWORD);
    let (slow, mut slow_inbox) = listener(&cfg).await;
    let (fine, mut fine_inbox) = listener(&cfg).await;
    slow.batch_execute("LISTEN flood").await.expect("LISTEN");
    fine.batch_execute("LISTEN flood").await.expect("LISTEN");
    slow.batch_execute("BEGIN").await.expect("BEGIN");
    let notifier = sluice.connect_app().await;
    for i in 0..6 {
        notify(&notifier, "flood", &i.to_string()).await;
        assert_eq!(seen(&next(&mut fine_inbox, "fine").await).1, i.to_string());
    }
    match within(STEP, "the slow client to be cut off", slow_inbox.recv()).await {
        Some(Err(e)) => assert_eq!(sqlstate(&e), Some("54000"), "{}", describe_error(&e)),
        other => panic!("expected the connection to end with 54000, got {other:?}"),
    }
    assert!(slow.batch_execute("SELECT 1").await.is_err());
    let s = sluice.pool(APP_DB, APP_USER).pubsub().sample();
    assert_eq!((s.overflows, s.drops, s.deliveries), (1, 6, 11));
    // The pool is not left short: the cut-off client's server connection was closed.
    let c = sluice.connect_app().await;
    c.batch_execute("SELECT 1")
        .await
        .expect("the pool still serves");
}

/// Session mode is unchanged: the client's LISTEN goes to its own server connection, and sluice
/// keeps no subscriptions.
#[tokio::test]
async fn session_mode_listens_on_the_clients_own_connection() {
    let pg = PgCluster::start();
    let sluice = Sluice::start(config_for(&pg, 2, PoolMode::Session));
    let cfg = sluice.pg_config(APP_DB, APP_USER, APP_PASSWORD);
    let (l, mut inbox) = listener(&cfg).await;
    l.batch_execute("LISTEN own").await.expect("LISTEN");
    let channels = simple_scalar(
        &l,
        "SELECT string_agg(c, ',') FROM pg_listening_channels() c",
    )
    .await;
    assert_eq!(
        channels.as_deref(),
        Some("own"),
        "the server itself listens"
    );
    let notifier = sluice.connect_app().await;
    notify(&notifier, "own", "direct").await;
    assert_eq!(seen(&next(&mut inbox, "session mode").await).1, "direct");
    assert!(sluice.pool(APP_DB, APP_USER).sample().pubsub.is_none());
}

/// psycopg 3 (everything as extended protocol; `conn.notifies()`) and node-postgres (simple
/// queries; the `notification` event), through a pool of 1 kept busy by other clients.
async fn driver_listens(driver: Driver, script: &str, expected: &[&str]) {
    if !driver.available() {
        return;
    }
    let pg = PgCluster::start();
    let sluice = Sluice::start(tx_config(&pg, 1));
    let busy = Busy::start(&sluice, 2).await;
    let target = DriverTarget::new(sluice.port(), APP_DB, APP_USER, APP_PASSWORD);
    let passed = driver.checks(&drivers_dir().join(script), &target).await;
    assert_eq!(passed, expected);
    assert!(busy.finish().await > 0, "the pool was kept busy");
}

#[tokio::test]
async fn psycopg_notifies() {
    driver_listens(
        Driver::Psycopg,
        "listen_psycopg.py",
        &["listen", "in order", "transaction", "unlisten"],
    )
    .await;
}

#[tokio::test]
async fn node_postgres_notification_event() {
    driver_listens(
        Driver::NodePostgres,
        "listen_node.js",
        &["listen", "in order", "transaction", "unlisten"],
    )
    .await;
}
