//! The pooler in process: `sluice::run_shared` on its own thread and tokio runtime, listening on a
//! loopback port the kernel picks.
//!
//! Owns: that thread and runtime, the shutdown signal, and a handle on the pooler's
//! [`sluice::Shared`] (its pools and their counters, for tests that look inside). Does not own
//! PostgreSQL: the [`super::PgCluster`] a config points at must outlive the `Sluice` (declare it
//! first).

use std::net::SocketAddr;
use std::process::Output;
use std::sync::{Arc, mpsc};
use std::time::Duration;

use sluice::config::PoolMode;
use tokio_postgres::Client;
use tokio_postgres::error::DbError;

use super::{
    APP_DB, APP_PASSWORD, APP_USER, MD5_PASSWORD, MD5_USER, PgCluster, STEP, TRUST_PASSWORD,
    TRUST_USER,
};

/// How long `Drop` waits for `sluice::run` to return after the shutdown signal. The configs from
/// [`config_for`] set `shutdown_timeout = "1s"`, so this is generous.
const SHUTDOWN_BOUND: Duration = Duration::from_secs(20);

/// A typical config: users `app`, `md5user` and `trustuser` with their plain passwords (client
/// auth SCRAM-SHA-256), and database `app` pointing at `pg` with `pool_size`. `[pooler]` comes
/// last; change any key with [`set_config`].
pub fn config_for(pg: &PgCluster, pool_size: usize, mode: PoolMode) -> String {
    format!(
        r#"[users.{APP_USER}]
password = "{APP_PASSWORD}"

[users.{MD5_USER}]
password = "{MD5_PASSWORD}"

[users.{TRUST_USER}]
password = "{TRUST_PASSWORD}"

[databases.{APP_DB}]
host = "127.0.0.1"
port = {port}
dbname = "{APP_DB}"
pool_size = {pool_size}

[pooler]
listen = "127.0.0.1:6432"
pool_mode = "{mode}"
default_pool_size = {pool_size}
max_client_conn = 10000
auth_type = "scram-sha-256"
query_wait_timeout = "10s"
server_connect_timeout = "3s"
server_login_retry = "200ms"
server_idle_timeout = "10m"
server_lifetime = "1h"
server_reset_query = "DISCARD ALL"
shutdown_timeout = "1s"
"#,
        port = pg.port()
    )
}

/// Returns `config` with the dotted `key` (e.g. `pooler.query_wait_timeout`,
/// `users.app.auth_type`) set to `value`, creating tables on the way.
pub fn set_config(config: &str, key: &str, value: impl Into<toml::Value>) -> String {
    let mut doc: toml::Table = config
        .parse()
        .unwrap_or_else(|e| panic!("test config is not TOML: {e}\n{config}"));
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts.pop().expect("non-empty key");
    let mut table = &mut doc;
    for part in parts {
        table = table
            .entry(part)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .unwrap_or_else(|| panic!("{part} in {key} is not a table"));
    }
    table.insert(last.to_owned(), value.into());
    toml::to_string(&doc).expect("serialise config")
}

/// Returns `config` without the dotted `key`, so that sluice uses its default.
pub fn unset_config(config: &str, key: &str) -> String {
    let mut doc: toml::Table = config
        .parse()
        .unwrap_or_else(|e| panic!("test config is not TOML: {e}\n{config}"));
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts.pop().expect("non-empty key");
    let mut table = &mut doc;
    for part in parts {
        table = table
            .get_mut(part)
            .and_then(|t| t.as_table_mut())
            .unwrap_or_else(|| panic!("no table {part} in {key}"));
    }
    assert!(table.remove(last).is_some(), "{key} was not set");
    toml::to_string(&doc).expect("serialise config")
}

/// With `SLUICE_TEST_LOG` set (an EnvFilter such as `sluice=debug`), the pooler's tracing output
/// goes to the test's captured output. Off by default.
fn init_logging() {
    if let Ok(filter) = std::env::var("SLUICE_TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_ansi(false)
            .with_test_writer()
            .try_init();
    }
}

/// A running pooler. Dropping it signals shutdown and waits (bounded) for `sluice::run` to return.
pub struct Sluice {
    addr: SocketAddr,
    shared: Arc<sluice::Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    done: mpsc::Receiver<std::io::Result<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sluice {
    /// Validates `config_toml` with `sluice::Config::from_toml` (panicking on errors), binds
    /// `127.0.0.1:0` and starts `sluice::run_shared` on a thread of its own, on the runtime the config asks
    /// for (`pooler.workers`, default one thread).
    pub fn start(config_toml: String) -> Sluice {
        let config = sluice::Config::from_toml(&config_toml)
            .unwrap_or_else(|e| panic!("sluice rejected the test config: {e}\n{config_toml}"));
        Sluice::start_config(config)
    }

    /// Like [`Sluice::start`], with the config read from `path` (so RELOAD can read it again).
    pub fn start_file(path: &std::path::Path) -> Sluice {
        let config = sluice::Config::load(path)
            .unwrap_or_else(|e| panic!("sluice rejected {}: {e}", path.display()));
        Sluice::start_config(config)
    }

    fn start_config(config: sluice::Config) -> Sluice {
        init_logging();
        let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        type Started = std::io::Result<(SocketAddr, Arc<sluice::Shared>)>;
        let (started_tx, started_rx) = mpsc::channel::<Started>();
        let (done_tx, done) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("sluice".into())
            .spawn(move || {
                // The runtime the config asks for, as `sluice` itself builds it.
                let rt = sluice::runtime(&config).expect("build the pooler's runtime");
                let result = rt.block_on(async move {
                    // A deep accept backlog: some tests open hundreds of connections at once.
                    let bound = tokio::net::TcpSocket::new_v4().and_then(|s| {
                        s.bind("127.0.0.1:0".parse().expect("loopback"))?;
                        s.listen(1024)
                    });
                    let listener = match bound.and_then(|l| l.local_addr().map(|a| (l, a))) {
                        Ok(l) => l,
                        Err(e) => {
                            let copy = std::io::Error::new(e.kind(), e.to_string());
                            let _ = started_tx.send(Err(copy));
                            return Err(e);
                        }
                    };
                    let (listener, addr) = listener;
                    // What `sluice::run` does, keeping a handle on the state it serves from.
                    let shared = sluice::Shared::new(config);
                    let _ = started_tx.send(Ok((addr, shared.clone())));
                    sluice::run_shared(shared, listener, async {
                        let _ = shutdown_rx.await;
                    })
                    .await
                });
                rt.shutdown_timeout(Duration::from_secs(2));
                let _ = done_tx.send(result);
            })
            .expect("spawn the pooler thread");
        let (addr, shared) = started_rx
            .recv_timeout(STEP)
            .expect("pooler thread did not report its address")
            .unwrap_or_else(|e| panic!("bind 127.0.0.1:0 for the pooler: {e}"));
        Sluice {
            addr,
            shared,
            shutdown: Some(shutdown_tx),
            done,
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The state the pooler serves from: its pools, clients and configuration.
    pub fn shared(&self) -> &Arc<sluice::Shared> {
        &self.shared
    }

    /// The primary pool of `user` to `db`; panics if no client has made it yet (pools are made
    /// on first login).
    pub fn pool(&self, db: &str, user: &str) -> Arc<sluice::pool::Pool> {
        let key = sluice::pool::PoolKey::primary(db, user);
        self.shared
            .pools
            .get(&key)
            .unwrap_or_else(|| panic!("no pool for {user} to {db}: has a client logged in?"))
            .clone()
    }

    /// A tokio-postgres config for a connection through the pooler.
    pub fn pg_config(&self, db: &str, user: &str, password: &str) -> tokio_postgres::Config {
        super::client_config(self.port(), db, user, password)
    }

    /// Connects through the pooler; `Err` is what the client saw (panics after [`STEP`]).
    pub async fn try_connect(
        &self,
        db: &str,
        user: &str,
        password: &str,
    ) -> Result<Client, tokio_postgres::Error> {
        super::connect_config(&self.pg_config(db, user, password))
            .await
            .map(|(c, _)| c)
    }

    /// Connects through the pooler; panics on failure.
    pub async fn connect(&self, db: &str, user: &str, password: &str) -> Client {
        self.try_connect(db, user, password)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "connect through sluice as {user} to {db}: {}",
                    super::describe_error(&e)
                )
            })
    }

    /// `app` to database `app` with the right password.
    pub async fn connect_app(&self) -> Client {
        self.connect(APP_DB, APP_USER, APP_PASSWORD).await
    }

    /// Like [`Self::connect`] with `cfg`, also returning the notices the connection receives.
    pub async fn connect_with_notices(
        &self,
        cfg: &tokio_postgres::Config,
    ) -> (Client, tokio::sync::mpsc::UnboundedReceiver<DbError>) {
        super::connect_config(cfg)
            .await
            .unwrap_or_else(|e| panic!("connect through sluice: {}", super::describe_error(&e)))
    }

    /// psql through the pooler as `app` to `app` (`-X -v ON_ERROR_STOP=1` first, then `args`;
    /// `-U`/`-d` in `args` override the user and database, PGPASSWORD stays app's).
    pub async fn psql(&self, args: &[&str]) -> Output {
        super::psql_at(self.port(), APP_DB, APP_USER, APP_PASSWORD, args).await
    }

    /// pgbench through the pooler as `app` to `app`.
    pub async fn pgbench(&self, args: &[&str]) -> Output {
        super::pgbench_at(self.port(), APP_DB, APP_USER, APP_PASSWORD, args).await
    }

    /// Signals shutdown and waits (bounded) for `sluice::run`'s result.
    pub fn shutdown(mut self) -> std::io::Result<()> {
        self.stop()
            .expect("sluice::run did not return after shutdown")
    }

    fn stop(&mut self) -> Option<std::io::Result<()>> {
        let tx = self.shutdown.take()?;
        let _ = tx.send(());
        match self.done.recv_timeout(SHUTDOWN_BOUND) {
            Ok(result) => {
                if let Some(t) = self.thread.take() {
                    let _ = t.join();
                }
                Some(result)
            }
            // The thread panicked (its sender is gone): join to surface the panic message.
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let panic = self.thread.take().map(|t| t.join());
                Some(Err(std::io::Error::other(format!(
                    "the pooler thread panicked: {panic:?}"
                ))))
            }
            Err(mpsc::RecvTimeoutError::Timeout) => None,
        }
    }
}

impl Drop for Sluice {
    fn drop(&mut self) {
        if self.shutdown.is_none() {
            return;
        }
        let outcome = self.stop();
        if std::thread::panicking() {
            return;
        }
        match outcome {
            Some(Ok(())) => {}
            Some(Err(e)) => panic!("sluice::run failed: {e}"),
            None => panic!(
                "sluice::run did not return within {SHUTDOWN_BOUND:?} of the shutdown signal"
            ),
        }
    }
}
