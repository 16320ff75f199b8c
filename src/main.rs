//! `sluice --config FILE`: run the pooler. `sluice --check --config FILE`: validate and exit.
//! `sluice healthcheck [URL]`: GET sluice's `/healthz` (container health checks).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use sluice::Config;

/// A PostgreSQL connection pooler.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// The TOML config file.
    #[arg(short, long, default_value = "config/sluice.toml")]
    config: PathBuf,
    /// Validate the config and exit: 0 if it is good, 64 with the key at fault if not.
    #[arg(long)]
    check: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// GET URL (default: /healthz on the config's metrics_listen); exit 0 on a 2xx answer, 1
    /// otherwise. For container health checks where there is no curl.
    Healthcheck {
        /// http://HOST:PORT/PATH
        url: Option<String>,
    },
}

/// EX_USAGE from sysexits.h, for a bad command line or config.
const EXIT_USAGE: u8 = 64;

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Some(Command::Healthcheck { url: Some(url) }) = &args.command {
        return healthcheck(url);
    }
    let config = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sluice: invalid config: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if let Some(Command::Healthcheck { url: None }) = &args.command {
        let Some(url) = sluice::healthcheck::default_url(&config) else {
            eprintln!("sluice: healthcheck: metrics_listen is not set; give a URL");
            return ExitCode::from(EXIT_USAGE);
        };
        return healthcheck(&url);
    }
    if args.check {
        println!("sluice: {} is valid", args.config.display());
        return ExitCode::SUCCESS;
    }
    let runtime = match sluice::runtime(&config) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sluice: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sluice: {e}");
            ExitCode::FAILURE
        }
    }
}

fn healthcheck(url: &str) -> ExitCode {
    match sluice::healthcheck::check(url, sluice::healthcheck::TIMEOUT) {
        Ok(status) => {
            println!("{url}: {status}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sluice: healthcheck: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> std::io::Result<()> {
    let addr = config.listen_addr();
    // SO_REUSEPORT: a new sluice binds beside this one for an online restart (net/listen.rs).
    let listener = sluice::net::listen::bind_shared(addr)
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
    tracing::info!(%addr, databases = config.databases.len(), "sluice listening");
    sluice::run_until(sluice::Shared::new(config), listener, stop_signal()).await
}

/// SIGTERM: stop accepting and wait for the clients to leave (online restart, rolling deploys);
/// SIGINT (Ctrl-C): drain, each client ending at its next clean point. See shutdown.rs.
async fn stop_signal() -> sluice::Stop {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {
            tracing::info!("SIGINT: shutting down: draining clients");
            sluice::Stop::Drain
        }
        _ = term.recv() => {
            tracing::info!("SIGTERM: shutting down: no new clients, waiting for connected ones to leave");
            sluice::Stop::WaitForClients
        }
    }
}
