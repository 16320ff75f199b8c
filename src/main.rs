//! `sluice --config FILE`: run the pooler. `sluice --check --config FILE`: validate and exit;
//! `--print-config`: print the effective config. `sluice demo`, `sluice import-pgbouncer`: see
//! `cli/`.

mod cli;

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
    /// Validate, print the effective config (the file, then SLUICE_<KEY> environment overrides,
    /// defaults filled in, secrets masked) and exit.
    #[arg(long)]
    print_config: bool,
    #[command(subcommand)]
    command: Option<cli::Command>,
}

const EXIT_USAGE: u8 = cli::EXIT_USAGE;

fn main() -> ExitCode {
    let args = Args::parse();
    let default_level = args
        .command
        .as_ref()
        .map_or("info", |c| c.default_log_level());
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Some(command) = args.command {
        return command.run();
    }
    let config = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sluice: invalid config: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if args.print_config {
        return cli::print_config::print(&config, &args.config);
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

async fn serve(config: Config) -> std::io::Result<()> {
    let addr = config.listen_addr();
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
    tracing::info!(%addr, databases = config.databases.len(), "sluice listening");
    sluice::run(config, listener, shutdown_signal()).await
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down: draining clients");
}
