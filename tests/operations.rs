//! sluice as operators run it: the binary as a process, signals, sd_notify, `sluice
//! healthcheck`, and the online restart (a new process takes over the port under pgbench load
//! while the old one lets its clients finish).

mod common;

use std::path::Path;

use common::*;
use sluice::config::PoolMode;

/// A config file for a sluice process on `port` with its metrics endpoint on `metrics`, users
/// `app` (trust: connecting costs no SCRAM, so pgbench -C connects as fast as it can) and
/// `trustuser` (an admin), in `dir`.
fn write_config(dir: &Path, name: &str, pg: &PgCluster, port: u16, metrics: u16) -> String {
    let config = config_for(pg, 8, PoolMode::Transaction);
    let config = set_config(&config, "pooler.listen", format!("127.0.0.1:{port}"));
    let config = set_config(
        &config,
        "pooler.metrics_listen",
        format!("127.0.0.1:{metrics}"),
    );
    let config = set_config(&config, "pooler.shutdown_timeout", "60s");
    let config = set_config(&config, "pooler.admin_users", vec![TRUST_USER.to_owned()]);
    let config = set_config(&config, "users.app.auth_type", "trust");
    let path = dir.join(name);
    std::fs::write(&path, &config).expect("write config");
    path.to_str().expect("UTF-8 path").to_owned()
}

/// The sum of `name` over all its series in a Prometheus page.
fn total(page: &str, name: &str) -> f64 {
    page.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

async fn transactions(metrics: u16) -> f64 {
    total(&scrape(metrics).await, "sluice_transactions_total")
}

async fn app_client(port: u16) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    connect_config(&client_config(port, APP_DB, APP_USER, APP_PASSWORD))
        .await
        .map(|(c, _)| c)
}

/// Checks a pgbench run that shared the pooler with a restart: success, no failed transaction,
/// no client aborted or refused (pgbench says "error" on stderr for each), some work done.
fn assert_clean_run(what: &str, out: &std::process::Output) -> u64 {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{what}: {}", describe_output(out));
    assert_eq!(
        pgbench_number(&stdout, "number of failed transactions"),
        0,
        "{what}: {}",
        describe_output(out)
    );
    assert!(
        !stderr.contains("error") && !stderr.contains("abort"),
        "{what}: {}",
        describe_output(out)
    );
    let done = pgbench_number(&stdout, "number of transactions actually processed");
    assert!(done > 0, "{what}: {}", describe_output(out));
    let tps: Vec<&str> = stdout.lines().filter(|l| l.starts_with("tps")).collect();
    eprintln!("{what}: {done} transactions; {}", tps.join("; "));
    done
}

/// The online restart: under pgbench load (persistent clients, and clients connecting for
/// every transaction), a second sluice binds the same port, the first gets SIGTERM. Nobody is
/// refused, no transaction fails, the new process takes the new connections, the old one
/// serves its connected clients until they leave and exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_restart_under_pgbench_load_fails_nobody() {
    let pg = PgCluster::start();
    pg.pgbench_init().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let (metrics_old, metrics_new) = (free_port(), free_port());
    // The same config but for the metrics port, so the test can ask each process apart.
    let old_config = write_config(dir.path(), "old.toml", &pg, port, metrics_old);
    let new_config = write_config(dir.path(), "new.toml", &pg, port, metrics_new);

    let mut old = OpsProcess::start(Path::new(&old_config), &dir.path().join("old.log"));
    old.expect_notify("READY=1").await;

    let bench =
        |args: &'static [&'static str]| pgbench_at(port, APP_DB, APP_USER, APP_PASSWORD, args);
    // Persistent clients stay on the old process for the whole run; -C clients connect for
    // every transaction, so new connections arrive all through the restart.
    let persistent = bench(&["-n", "-c", "3", "-j", "1", "-T", "8"]);
    let connecting = bench(&["-n", "-S", "-C", "-c", "4", "-j", "2", "-T", "8"]);

    let restart = async {
        poll_until(STEP, "the old process serves the load", || async {
            transactions(metrics_old).await >= 200.0
        })
        .await;
        let mut new = OpsProcess::start(Path::new(&new_config), &dir.path().join("new.log"));
        new.expect_notify("READY=1").await;
        // Both listen: the kernel spreads new connections over the two.
        poll_until(
            STEP,
            "the new process takes connections beside the old",
            || async { transactions(metrics_new).await >= 50.0 },
        )
        .await;
        old.signal("TERM");
        old.expect_notify("STOPPING=1").await;
        let at_term = transactions(metrics_new).await;
        poll_until(STEP, "the new process takes over", || async {
            transactions(metrics_new).await >= at_term + 200.0
        })
        .await;
        // The old process stays up for its connected clients.
        assert!(old.running(), "{}", old.log_text());
        new
    };
    let (persistent, connecting, mut new) = tokio::join!(persistent, connecting, restart);

    let status = old.exit_within(STEP).await;
    assert!(status.success(), "old sluice: {status}\n{}", old.log_text());
    let log = old.log_text();
    assert!(log.contains("stopped accepting clients"), "{log}");
    let queued = log
        .lines()
        .find(|l| l.contains("stopped accepting clients"))
        .unwrap_or_default();
    eprintln!("old process: {}", queued.trim());

    assert_clean_run("persistent clients", &persistent);
    assert_clean_run("pgbench -C", &connecting);
    assert!(
        transactions(metrics_new).await >= 250.0,
        "{}",
        new.log_text()
    );

    new.signal("TERM");
    new.expect_notify("STOPPING=1").await;
    let status = new.exit_within(STEP).await;
    assert!(status.success(), "new sluice: {status}\n{}", new.log_text());
}

/// SIGTERM stops accepting but leaves a connected client alone: it may go on working, in and
/// out of transactions, and the process exits once it leaves.
#[tokio::test]
async fn sigterm_waits_for_connected_clients() {
    let pg = PgCluster::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let (port, metrics) = (free_port(), free_port());
    let config = write_config(dir.path(), "sluice.toml", &pg, port, metrics);
    let mut sluice = OpsProcess::start(Path::new(&config), &dir.path().join("sluice.log"));
    sluice.expect_notify("READY=1").await;
    let client = app_client(port).await.expect("connect");
    assert_eq!(
        simple_scalar(&client, "SELECT 1").await.as_deref(),
        Some("1")
    );

    sluice.signal("TERM");
    sluice.expect_notify("STOPPING=1").await;
    let Err(e) = app_client(port).await else {
        panic!("a new client was let in after SIGTERM");
    };
    assert!(
        describe_error(&e).contains("refused"),
        "{}",
        describe_error(&e)
    );
    let (status, body) = get(metrics, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    client
        .batch_execute("BEGIN; SELECT 2; COMMIT")
        .await
        .expect("the connected client goes on");
    assert_eq!(
        simple_scalar(&client, "SELECT 3").await.as_deref(),
        Some("3")
    );
    assert!(sluice.running(), "{}", sluice.log_text());

    drop(client);
    let status = sluice.exit_within(STEP).await;
    assert!(status.success(), "{status}\n{}", sluice.log_text());
}

/// SIGINT keeps the old drain: an idle client is told 57P01 and the process exits without
/// waiting for it.
#[tokio::test]
async fn sigint_drains_idle_clients_at_once() {
    let pg = PgCluster::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let (port, metrics) = (free_port(), free_port());
    let config = write_config(dir.path(), "sluice.toml", &pg, port, metrics);
    let mut sluice = OpsProcess::start(Path::new(&config), &dir.path().join("sluice.log"));
    sluice.expect_notify("READY=1").await;
    let client = app_client(port).await.expect("connect");
    assert_eq!(
        simple_scalar(&client, "SELECT 1").await.as_deref(),
        Some("1")
    );

    sluice.signal("INT");
    sluice.expect_notify("STOPPING=1").await;
    let status = sluice.exit_within(STEP).await;
    assert!(status.success(), "{status}\n{}", sluice.log_text());
    assert!(client.simple_query("SELECT 2").await.is_err());
}

/// sd_notify: READY=1 once listening, RELOADING=1 with the monotonic time and READY=1 around a
/// RELOAD, STOPPING=1 at SIGTERM; to an abstract-namespace socket the test owns.
#[tokio::test]
async fn sd_notify_ready_reloading_stopping() {
    let pg = PgCluster::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let (port, metrics) = (free_port(), free_port());
    let config = write_config(dir.path(), "sluice.toml", &pg, port, metrics);
    let mut sluice = OpsProcess::start(Path::new(&config), &dir.path().join("sluice.log"));
    let ready = sluice.expect_notify("READY=1").await;
    assert!(ready.contains("\nSTATUS="), "{ready:?}");
    // READY=1 means listening: this connects at the first try.
    let console = connect_config(&client_config(port, "sluice", TRUST_USER, TRUST_PASSWORD))
        .await
        .expect("console")
        .0;

    let before = sluice::notify::monotonic_usec();
    console.simple_query("RELOAD").await.expect("RELOAD");
    let after = sluice::notify::monotonic_usec();
    let reloading = sluice.expect_notify("RELOADING=1").await;
    let usec: u64 = reloading
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .unwrap_or_else(|| panic!("no MONOTONIC_USEC: {reloading:?}"))
        .parse()
        .expect("a number");
    assert!(
        (before..=after).contains(&usec),
        "{before} <= {usec} <= {after}"
    );
    sluice.expect_notify("READY=1").await;

    // A file with a mistake: the reload fails, and systemd still hears READY=1 after it.
    std::fs::write(&config, "[pooler]\nno_such_key = 1\n").expect("break the config");
    console
        .simple_query("RELOAD")
        .await
        .expect_err("a bad file");
    sluice.expect_notify("RELOADING=1").await;
    sluice.expect_notify("READY=1").await;

    drop(console);
    sluice.signal("TERM");
    sluice.expect_notify("STOPPING=1").await;
    let status = sluice.exit_within(STEP).await;
    assert!(status.success(), "{status}\n{}", sluice.log_text());
}

/// `sluice healthcheck`: 0 for a 2xx answer, 1 otherwise; the URL defaults to /healthz on the
/// config's metrics_listen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_subcommand() {
    let pg = PgCluster::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config_for(&pg, 2, PoolMode::Transaction);
    // A second database nobody serves: /readyz says 503.
    let config = set_config(&config, "databases.dead.port", i64::from(free_port()));
    let (config, metrics) = with_metrics(config);
    let path = dir.path().join("sluice.toml");
    std::fs::write(&path, &config).expect("write config");
    let pooler = Sluice::start(config);
    let _ = get(metrics, "/healthz").await; // the endpoint is up

    let url = format!("http://127.0.0.1:{metrics}/healthz");
    let out = sluice_command(&["healthcheck", &url]).await;
    assert!(out.status.success(), "{}", describe_output(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("200 OK"),
        "{}",
        describe_output(&out)
    );

    let out = sluice_command(&["--config", path.to_str().unwrap(), "healthcheck"]).await;
    assert!(out.status.success(), "{}", describe_output(&out));

    let out = sluice_command(&["healthcheck", &format!("http://127.0.0.1:{metrics}/readyz")]).await;
    assert_eq!(out.status.code(), Some(1), "{}", describe_output(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("503") && stderr.contains("dead: not ready"),
        "{}",
        describe_output(&out)
    );

    drop(pooler);
    let out = sluice_command(&["healthcheck", &url]).await;
    assert_eq!(out.status.code(), Some(1), "{}", describe_output(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot connect"),
        "{}",
        describe_output(&out)
    );
}
