//! `sluice hash-password [--user NAME]`: prints a SCRAM-SHA-256 secret (random salt, 4096
//! iterations, as PostgreSQL makes them) for `[users.NAME] password`. The password is read from
//! a prompt without echo when stdin is a terminal, else as the first line of stdin; never from
//! the command line (argv is visible to every user of the machine, and kept in shell history).

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use clap::Args;
use sluice_proto::auth::ScramVerifier;

#[derive(Args, Debug)]
pub struct HashArgs {
    /// Print a whole `[users.NAME]` table instead of the secret alone.
    #[arg(long)]
    user: Option<String>,
}

pub fn main(args: HashArgs) -> ExitCode {
    let password = match read_password() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("sluice: hash-password: {e}");
            return ExitCode::from(super::EXIT_USAGE);
        }
    };
    if password.is_empty() {
        eprintln!("sluice: hash-password: empty password");
        return ExitCode::from(super::EXIT_USAGE);
    }
    let secret = ScramVerifier::from_password(&password).to_secret_string();
    match args.user {
        Some(user) => {
            let table = toml::Table::from_iter([(
                "users".to_owned(),
                toml::Value::Table(toml::Table::from_iter([(
                    user,
                    toml::Value::Table(toml::Table::from_iter([(
                        "password".to_owned(),
                        toml::Value::String(secret),
                    )])),
                )])),
            )]);
            print!("{}", toml::to_string(&table).expect("a table serialises"));
        }
        None => println!("{secret}"),
    }
    ExitCode::SUCCESS
}

/// From a prompt without echo on a terminal (asked twice), else the first line of stdin.
fn read_password() -> Result<String, String> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .map_err(|e| format!("cannot read stdin: {e}"))?;
        return Ok(line.trim_end_matches(['\n', '\r']).to_owned());
    }
    let first = prompt("Password: ")?;
    let again = prompt("Again: ")?;
    if first != again {
        return Err("the passwords differ".into());
    }
    Ok(first)
}

/// One line from the terminal with echo off (restored afterwards).
fn prompt(text: &str) -> Result<String, String> {
    use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
    let stdin = std::io::stdin();
    eprint!("{text}");
    let _ = std::io::stderr().flush();
    let saved = tcgetattr(&stdin).map_err(|e| format!("cannot read terminal settings: {e}"))?;
    let mut quiet = saved.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    tcsetattr(&stdin, OptionalActions::Now, &quiet)
        .map_err(|e| format!("cannot turn echo off: {e}"))?;
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    let _ = tcsetattr(&stdin, OptionalActions::Now, &saved);
    eprintln!();
    read.map_err(|e| format!("cannot read the terminal: {e}"))?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}
