//! `sluice demo`: sluice working, on a machine that has nothing set up.
//!
//! 1. Finds PostgreSQL's programs ([`postgres::find`]); with none, says which package to install
//!    and exits 69.
//! 2. In one temp directory: `initdb` a primary, create the role and database `demo`, load
//!    pgbench's tables, clone a streaming replica with `pg_basebackup`, wait until it streams.
//!    (As `nobody` when run as root: PostgreSQL refuses root.)
//! 3. Starts sluice in this process in front of them: transaction pooling, reads to the
//!    replica, `/metrics` and the admin console on, on 127.0.0.1 only (port 6432 and 9930 when
//!    free, else any free port), and prints how to connect.
//! 4. Runs pgbench through it for `--load-seconds` (reads and writes at once) and prints the
//!    results.
//! 5. On Ctrl-C or SIGTERM (or the console's SHUTDOWN): stops pgbench, drains sluice, stops the
//!    replica and the primary, removes the directory, exits 0. A signal during step 2 stops
//!    what was started and cleans up the same way.

pub mod load;
pub mod postgres;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use postgres::{DemoDir, PgBin, RunAs, Server};
use tokio::signal::unix::{Signal, SignalKind, signal};

use super::EXIT_UNAVAILABLE;

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// The port clients connect to sluice on (127.0.0.1); when taken, any free port. 0: any.
    #[arg(long, default_value_t = 6432)]
    pub port: u16,
    /// The port of /metrics, /healthz and /readyz (127.0.0.1); when taken, any free port. 0: any.
    #[arg(long, default_value_t = 9930)]
    pub metrics_port: u16,
    /// How long pgbench runs through sluice after start-up; 0: no pgbench.
    #[arg(long, default_value_t = 30)]
    pub load_seconds: u64,
}

/// The role, its password and its database, on the servers and in sluice.
const USER: &str = "demo";
const PASSWORD: &str = "demo";
const DB: &str = "demo";

pub fn main(args: DemoArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sluice demo: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(demo(args))
}

/// SIGINT and SIGTERM, installed before anything is started: from then on a Ctrl-C is the
/// demo's to handle (the default action would end the process before it cleans up).
struct Stop {
    int: Signal,
    term: Signal,
}

impl Stop {
    fn install() -> std::io::Result<Stop> {
        Ok(Stop {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
    }
}

async fn demo(args: DemoArgs) -> ExitCode {
    let mut stop = match Stop::install() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("sluice demo: cannot handle signals: {e}");
            return ExitCode::FAILURE;
        }
    };
    let bin = match postgres::find().await {
        Ok(b) => b,
        Err(e) => {
            eprintln!("sluice demo: {e}");
            return ExitCode::from(EXIT_UNAVAILABLE);
        }
    };
    let run_as = match RunAs::detect() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sluice demo: {e}");
            return ExitCode::from(EXIT_UNAVAILABLE);
        }
    };
    let mut dir = match DemoDir::create(&bin, &run_as) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("sluice demo: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "sluice demo: {} from {}{}",
        bin.version,
        bin.dir.display(),
        if run_as.switch {
            format!(", run as {} (PostgreSQL refuses root)", run_as.name)
        } else {
            String::new()
        }
    );
    println!(
        "Starting a primary and a streaming replica in {} ...",
        dir.path.display()
    );

    let servers = tokio::select! {
        r = set_up(&dir, &bin) => Some(r),
        _ = stop.recv() => None,
    };
    let outcome = match servers {
        Some(Ok(servers)) => serve(&args, &bin, &dir, servers, &mut stop).await,
        Some(Err(e)) => Err(e),
        None => {
            println!("Interrupted during set-up.");
            Ok(())
        }
    };
    // Whatever happened: stop the servers and remove the directory.
    let cleaned = dir.clean_up();
    match &cleaned {
        Ok(()) => println!(
            "Cleaned up: PostgreSQL stopped, {} removed.",
            dir.path.display()
        ),
        Err(e) => eprintln!("sluice demo: clean-up: {e}"),
    }
    match (outcome, cleaned) {
        (Ok(()), Ok(())) => ExitCode::SUCCESS,
        (Err(e), _) => {
            eprintln!("sluice demo: {e}");
            ExitCode::FAILURE
        }
        (Ok(()), Err(_)) => ExitCode::FAILURE,
    }
}

/// The two servers, ready: the primary with the demo database and pgbench's tables, the replica
/// streaming from it.
struct Servers {
    primary: Server,
    replica: Server,
}

async fn set_up(dir: &DemoDir, bin: &PgBin) -> Result<Servers, String> {
    let su_password = format!("{:032x}", rand::random::<u128>());
    let data = postgres::init_primary(dir, &su_password).await?;
    let primary = postgres::start(dir, &data, "primary").await?;
    let su = postgres::superuser(&primary, &su_password).await?;
    // Two queries: CREATE DATABASE cannot run in the implicit transaction of a multi-statement
    // query.
    for sql in [
        format!("CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}'"),
        format!("CREATE DATABASE {DB} OWNER {USER}"),
    ] {
        su.batch_execute(&sql)
            .await
            .map_err(|e| format!("{sql}: {}", postgres::describe(&e)))?;
    }
    drop(su);
    if let Some(pgbench) = &bin.pgbench {
        load::init(pgbench, primary.port, USER, PASSWORD, DB).await?;
    }
    let data = postgres::clone_replica(dir, &primary, &su_password).await?;
    let replica = postgres::start(dir, &data, "replica").await?;
    postgres::wait_streaming(&primary, &su_password).await?;
    Ok(Servers { primary, replica })
}

/// Binds 127.0.0.1:`preferred`, or any free port when that is taken (or `preferred` is 0).
fn bind_loopback(preferred: u16) -> Result<std::net::TcpListener, String> {
    let any =
        || std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind 127.0.0.1:0: {e}"));
    if preferred == 0 {
        return any();
    }
    std::net::TcpListener::bind(("127.0.0.1", preferred)).or_else(|_| any())
}

fn config_text(listen: SocketAddr, metrics: SocketAddr, servers: &Servers) -> String {
    format!(
        "# Written by `sluice demo`; removed with everything else when the demo stops.
[pooler]
listen = \"{listen}\"
metrics_listen = \"{metrics}\"
pool_mode = \"transaction\"
default_pool_size = 10
admin_users = [\"{USER}\"]
shutdown_timeout = \"5s\"

[users.{USER}]
password = \"{PASSWORD}\"

[databases.{DB}]
host = \"127.0.0.1\"
port = {primary}

[[databases.{DB}.replicas]]
host = \"127.0.0.1\"
port = {replica}
",
        primary = servers.primary.port,
        replica = servers.replica.port,
    )
}

/// Runs sluice (and the load) until a signal, or until sluice ends by itself (the console's
/// SHUTDOWN).
async fn serve(
    args: &DemoArgs,
    bin: &PgBin,
    dir: &DemoDir,
    servers: Servers,
    stop: &mut Stop,
) -> Result<(), String> {
    let listener = bind_loopback(args.port)?;
    let listen = listener.local_addr().map_err(|e| e.to_string())?;
    let metrics = {
        // Found free now, bound by sluice a moment later.
        let probe = bind_loopback(args.metrics_port)?;
        probe.local_addr().map_err(|e| e.to_string())?
    };
    let path = dir.path.join("sluice.toml");
    dir.write(&path, &config_text(listen, metrics, &servers))?;
    // The demo's own file, not the environment's SLUICE_LISTEN and friends.
    let config = sluice::Config::load_with(&path, &sluice::config::env::Overrides::none())
        .map_err(|e| format!("the demo's config: {e}"))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("listen on {listen}: {e}"))?;
    let listener = tokio::net::TcpListener::from_std(listener)
        .map_err(|e| format!("listen on {listen}: {e}"))?;

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let pooler = sluice::run(config, listener, async {
        let _ = stop_rx.await;
    });
    tokio::pin!(pooler);

    print_welcome(dir, &servers, listen, metrics, args, bin);

    let load = async {
        match (&bin.pgbench, args.load_seconds) {
            (Some(p), secs) if secs > 0 => {
                load::run(p.clone(), listen.port(), USER, PASSWORD, DB, secs).await
            }
            _ => Vec::new(),
        }
    };
    tokio::pin!(load);
    let mut load_done = false;
    loop {
        tokio::select! {
            r = &mut pooler => {
                println!("sluice stopped (SHUTDOWN from the console).");
                return r.map_err(|e| format!("sluice: {e}"));
            }
            summaries = &mut load, if !load_done => {
                load_done = true;
                for s in summaries {
                    println!("pgbench {}: {}", s.name, s.line);
                }
                if bin.pgbench.is_some() && args.load_seconds > 0 {
                    println!("pgbench done. sluice keeps running; press Ctrl-C to stop.");
                }
            }
            _ = stop.recv() => break,
        }
    }
    println!("Stopping: pgbench, then sluice (draining), then the servers ...");
    // Dropping the load ends pgbench (its processes are killed on drop).
    let _ = stop_tx.send(());
    match tokio::time::timeout(Duration::from_secs(30), &mut pooler).await {
        Ok(r) => r.map_err(|e| format!("sluice: {e}")),
        Err(_) => Err("sluice did not finish draining within 30 s".into()),
    }
}

fn print_welcome(
    dir: &DemoDir,
    servers: &Servers,
    listen: SocketAddr,
    metrics: SocketAddr,
    args: &DemoArgs,
    bin: &PgBin,
) {
    let port = listen.port();
    println!();
    println!(
        "  primary   127.0.0.1:{}  pid {}",
        servers.primary.port, servers.primary.pid
    );
    println!(
        "  replica   127.0.0.1:{}  pid {}  (streaming from the primary)",
        servers.replica.port, servers.replica.pid
    );
    println!(
        "  sluice    {listen}  transaction pooling; provably read-only queries go to the replica"
    );
    println!(
        "  files     {}  (sluice.toml, server logs; removed on exit)",
        dir.path.display()
    );
    println!();
    println!("Connect:   psql \"postgresql://{USER}:{PASSWORD}@127.0.0.1:{port}/{DB}\"");
    println!(
        "Try:       SELECT pg_is_in_recovery();   -- t: the replica answered (after its first health check, ~1 s)"
    );
    println!(
        "Console:   psql \"postgresql://{USER}:{PASSWORD}@127.0.0.1:{port}/sluice\" -c 'SHOW POOLS'   (also SHOW REPLICAS, SHOW STATS, SHOW CLIENTS)"
    );
    println!(
        "Metrics:   http://{metrics}/metrics   (and /healthz, /readyz; there is no web page yet)"
    );
    println!();
    match (&bin.pgbench, args.load_seconds) {
        (None, _) => println!(
            "pgbench is not installed (it comes with the PostgreSQL server or contrib package): no load is run."
        ),
        (Some(_), 0) => {}
        (Some(_), secs) => println!(
            "Running pgbench through sluice for {secs} s: 4 clients reading (to the replica), 2 writing (to the primary) ..."
        ),
    }
    println!("Press Ctrl-C to stop: sluice drains, both servers stop, and the files are removed.");
}
