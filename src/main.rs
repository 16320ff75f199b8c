//! `sluice --config FILE`: run the pooler. `sluice --check --config FILE`: validate and exit;
//! `--print-config`: print the effective config. `sluice demo`, `sluice import-pgbouncer`: see
//! `cli/`. Signals: SIGHUP reloads the config, SIGUSR1 pauses, SIGUSR2 resumes, SIGTERM/SIGINT
//! shut down (`sluice::signals`). `sluice healthcheck [URL]`: GET sluice's `/healthz` (container
//! health checks).

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use sluice::Config;
use sluice::config::LogFormat;

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

/// jemalloc (the default, bench/README.md "Memory and allocators"): glibc's malloc kept about
/// 105 MiB after a 5,000-client storm for good; jemalloc with a background thread that purges
/// freed pages gives them back to the system.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's settings, read once at start (its `malloc_conf`; the environment variable
/// `_RJEM_MALLOC_CONF` still overrides them): freed pages go back to the system at once
/// (`dirty_decay_ms:0`), which in the measurements cost no throughput and also halved the peak
/// of a storm; the background thread purges whatever is left while sluice is idle.
#[cfg(feature = "jemalloc")]
#[allow(non_upper_case_globals)]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static malloc_conf: &[u8; 57] = b"background_thread:true,dirty_decay_ms:0,muzzy_decay_ms:0\0";

#[cfg(all(feature = "mimalloc", not(feature = "jemalloc")))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const EXIT_USAGE: u8 = cli::EXIT_USAGE;

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(command) = args.command {
        let filter = tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(command.default_log_level()));
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
        return command.run(&args.config);
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
    init_logging(config.pooler.log_format);
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

/// Log lines on stderr, as text or one JSON object per line; `SLUICE_LOG` filters (default
/// `info`).
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn serve(config: Config) -> std::io::Result<()> {
    // Before listening: until the handlers are in, SIGHUP would end the process.
    let (control, shutdown) = sluice::signals::install()?;
    let addr = config.listen_addr();
    // SO_REUSEPORT: a new sluice binds beside this one for an online restart (net/listen.rs).
    let listener = sluice::net::listen::bind_shared(addr)
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
    let shared = sluice::Shared::new(config);
    tokio::spawn(control.serve(shared.clone()));
    // The bound address: with port 0 in the config, the one the kernel chose.
    let addr = listener.local_addr()?;
    tracing::info!(%addr, databases = shared.config().databases.len(), "sluice listening");
    sluice::run_until(shared, listener, shutdown.wait()).await
}
