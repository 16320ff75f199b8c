//! The command line's tools beside running the pooler: `sluice demo`, `sluice import-pgbouncer`,
//! `sluice hash-password`, and `--print-config`. Part of the binary, not of the library: each uses the library the way
//! any program could. `main.rs` parses the command line and hands over here.

pub mod demo;
pub mod hash_password;
pub mod import;
pub mod print_config;

use std::process::ExitCode;

use clap::Subcommand;

/// EX_USAGE from sysexits.h, for a bad command line or config.
pub const EXIT_USAGE: u8 = 64;
/// EX_UNAVAILABLE from sysexits.h: something the command needs is not there.
pub const EXIT_UNAVAILABLE: u8 = 69;

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Start a throwaway PostgreSQL primary and streaming replica with sluice in front
    /// (read/write splitting, metrics, admin console), print how to connect, run a short
    /// pgbench, and clean everything up on Ctrl-C.
    Demo(demo::DemoArgs),
    /// Write a sluice.toml equivalent to a pgbouncer.ini (and its userlist.txt), and list every
    /// setting that could not be carried over and why.
    ImportPgbouncer(import::ImportArgs),
    /// GET URL (default: /healthz on the config's metrics_listen); exit 0 on a 2xx answer, 1
    /// otherwise. For container health checks where there is no curl.
    Healthcheck {
        /// http://HOST:PORT/PATH
        url: Option<String>,
    },
    /// Print a SCRAM-SHA-256 secret for a [users] password. The password is read from a
    /// prompt (no echo) or from stdin, never from the command line.
    HashPassword(hash_password::HashArgs),
}

impl Command {
    /// The log level when `SLUICE_LOG` does not say: the demo keeps its terminal for its own
    /// output.
    pub fn default_log_level(&self) -> &'static str {
        match self {
            Command::Demo(_) => "warn",
            Command::ImportPgbouncer(_) => "warn",
            Command::Healthcheck { .. } => "warn",
            Command::HashPassword(_) => "warn",
        }
    }

    /// `config`: the `--config` path (the health check's default URL comes from it).
    pub fn run(self, config: &std::path::Path) -> ExitCode {
        match self {
            Command::Demo(args) => demo::main(args),
            Command::ImportPgbouncer(args) => import::main(args),
            Command::Healthcheck { url } => healthcheck(url.as_deref(), config),
            Command::HashPassword(args) => hash_password::main(args),
        }
    }
}

/// `sluice healthcheck [URL]`; without a URL, `/healthz` on the metrics_listen of `config`.
fn healthcheck(url: Option<&str>, config: &std::path::Path) -> ExitCode {
    let url = match url {
        Some(u) => u.to_owned(),
        None => {
            let config = match sluice::Config::load(config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("sluice: healthcheck: invalid config: {e}");
                    return ExitCode::from(EXIT_USAGE);
                }
            };
            match sluice::healthcheck::default_url(&config) {
                Some(u) => u,
                None => {
                    eprintln!("sluice: healthcheck: metrics_listen is not set; give a URL");
                    return ExitCode::from(EXIT_USAGE);
                }
            }
        }
    };
    match sluice::healthcheck::check(&url, sluice::healthcheck::TIMEOUT) {
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
