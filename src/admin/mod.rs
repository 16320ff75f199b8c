//! The admin console: a client that logs in to the virtual database `sluice` (or `pgbouncer`, for
//! tools written for PgBouncer) as one of `[pooler] admin_users` or `stats_users` gets a small SQL
//! console speaking the simple query protocol.
//!
//! - Everyone allowed in: `SHOW POOLS | STATS | STATS_TOTALS | STATS_AVERAGES | CLIENTS | SERVERS |
//!   DATABASES | USERS | LISTS | CONFIG | VERSION | REPLICAS | QUERIES | HELP` (see `show.rs`,
//!   and `queries.rs` for SHOW QUERIES; column names and order follow PgBouncer's where
//!   PgBouncer has the command, sluice's extras come last).
//! - Admin users only (others get 42501): `PAUSE [db]`, `RESUME [db]`, `KILL [db]`,
//!   `RECONNECT [db]`, `RELOAD` (see [`crate::reload`]), `RESET QUERIES`, `SHUTDOWN`; `SET` answers
//!   0A000 (not supported yet).
//!
//! Users not in either list are refused at login with 28000. Console users authenticate like any
//! other user, so they must also be listed in `[users]`.

mod queries;
pub mod show;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use sluice_proto::backend::{self, ErrorResponse};
use sluice_proto::frontend::FrontendTag;
use sluice_proto::sqlstate;
use tokio::io::AsyncReadExt;

use crate::clients::{ClientList, NewClient};
use crate::metrics::CloseReason;
use crate::net::Stream;
use crate::pool::Pool;
use crate::shared::Shared;

/// Names of the console's virtual database.
pub const DATABASES: [&str; 2] = ["sluice", "pgbouncer"];

/// The largest query the console reads.
const MAX_QUERY: usize = 64 * 1024;

pub fn is_console(database: &str) -> bool {
    DATABASES.contains(&database)
}

/// What a console user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Every command.
    Admin,
    /// SHOW commands only.
    Stats,
}

/// A console session about to start.
#[derive(Debug, Clone)]
pub struct AdminLogin {
    pub user: String,
    pub database: String,
    pub role: Role,
    pub application_name: String,
}

/// Whether `user` may use the console; an error to refuse the login with if not.
pub fn authorize(
    shared: &Shared,
    user: &str,
    database: &str,
    application_name: Option<&str>,
) -> Result<AdminLogin, ErrorResponse> {
    let config = shared.config();
    let p = &config.pooler;
    let role = if p.admin_users.iter().any(|u| u == user) {
        Role::Admin
    } else if p.stats_users.iter().any(|u| u == user) {
        Role::Stats
    } else {
        return Err(ErrorResponse::fatal(
            sqlstate::INVALID_AUTHORIZATION_SPECIFICATION,
            format!("user \"{user}\" is not allowed to use the admin console"),
        )
        .hint("list the user in [pooler] admin_users or stats_users"));
    };
    Ok(AdminLogin {
        user: user.to_owned(),
        database: database.to_owned(),
        role,
        application_name: application_name.unwrap_or("").to_owned(),
    })
}

/// Runs a console session on a client that has just authenticated (AuthenticationOk is already
/// written).
pub async fn serve(
    shared: Arc<Shared>,
    mut stream: Stream,
    mut buf: BytesMut,
    login: AdminLogin,
    peer: SocketAddr,
) {
    let cancel = shared.cancels.register();
    let entry = shared.clients.register(NewClient {
        database: login.database.as_str().into(),
        user: login.user.as_str().into(),
        pool: None,
        addr: peer,
        local: stream.local_addr().ok(),
        application_name: &login.application_name,
        remote_pid: cancel.pid,
        tls: stream.tls_description(),
    });
    let mut out = BytesMut::with_capacity(4096);
    for (k, v) in [
        (
            "server_version",
            concat!(env!("CARGO_PKG_VERSION"), "/sluice"),
        ),
        ("server_encoding", "UTF8"),
        ("client_encoding", "UTF8"),
        ("DateStyle", "ISO, MDY"),
        ("TimeZone", "UTC"),
        ("integer_datetimes", "on"),
        ("standard_conforming_strings", "on"),
        ("application_name", &login.application_name),
    ] {
        backend::parameter_status(k, v, &mut out);
    }
    backend::backend_key_data(cancel.pid, cancel.secret, &mut out);
    backend::ready_for_query(b'I', &mut out);
    // Extended-protocol messages are refused once per batch, then skipped up to Sync.
    let mut skipping = false;
    loop {
        if !out.is_empty() {
            if stream.send(&out).await.is_err() {
                return;
            }
            out.clear();
        }
        let message = match sluice_proto::split_message(&mut buf, MAX_QUERY) {
            Ok(Some(m)) => m,
            Ok(None) => {
                buf.reserve(4096);
                tokio::select! {
                    r = stream.read_buf(&mut buf) => match r {
                        Ok(0) | Err(_) => return,
                        Ok(_) => continue,
                    },
                    // The pooler is draining (the console has no transaction to finish).
                    _ = entry.info.killed() => {
                        ErrorResponse::fatal(sqlstate::ADMIN_SHUTDOWN, "terminating connection due to administrator command").write(&mut out);
                        let _ = stream.send(&out).await;
                        return;
                    }
                }
            }
            Err(e) => {
                ErrorResponse::fatal(
                    sqlstate::PROTOCOL_VIOLATION,
                    format!("invalid message: {e}"),
                )
                .write(&mut out);
                let _ = stream.send(&out).await;
                return;
            }
        };
        match FrontendTag::from_u8(message.tag) {
            Some(FrontendTag::Query) => {
                let sql = message.body.strip_suffix(&[0]).unwrap_or(&message.body);
                let sql = String::from_utf8_lossy(sql);
                execute(&shared, &login, &sql, &mut out).await;
                backend::ready_for_query(b'I', &mut out);
            }
            Some(FrontendTag::Terminate) => return,
            Some(FrontendTag::Sync) => {
                skipping = false;
                backend::ready_for_query(b'I', &mut out);
            }
            Some(
                FrontendTag::Parse
                | FrontendTag::Bind
                | FrontendTag::Describe
                | FrontendTag::Execute
                | FrontendTag::Close
                | FrontendTag::Flush
                | FrontendTag::FunctionCall,
            ) => {
                if !skipping {
                    ErrorResponse::error(
                        sqlstate::FEATURE_NOT_SUPPORTED,
                        "the admin console speaks the simple query protocol only",
                    )
                    .write(&mut out);
                    skipping = true;
                }
            }
            _ => {
                ErrorResponse::fatal(
                    sqlstate::PROTOCOL_VIOLATION,
                    format!("invalid frontend message type {}", message.tag),
                )
                .write(&mut out);
                let _ = stream.send(&out).await;
                return;
            }
        }
    }
}

/// Runs every `;`-separated command of one Query, stopping at the first error.
async fn execute(shared: &Shared, login: &AdminLogin, sql: &str, out: &mut BytesMut) {
    let commands: Vec<&str> = sql
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if commands.is_empty() {
        backend::empty_query_response(out);
        return;
    }
    for command in commands {
        if let Err(e) = run_command(shared, login, command, out).await {
            e.write(out);
            return;
        }
    }
}

fn unquote(word: &str) -> String {
    let w = word.trim();
    match w.strip_prefix('"').and_then(|w| w.strip_suffix('"')) {
        Some(inner) => inner.replace("\"\"", "\""),
        None => w.to_owned(),
    }
}

fn syntax_error(command: &str) -> ErrorResponse {
    ErrorResponse::error(
        sqlstate::SYNTAX_ERROR,
        format!("invalid command \"{command}\"; SHOW HELP lists the commands"),
    )
}

async fn run_command(
    shared: &Shared,
    login: &AdminLogin,
    command: &str,
    out: &mut BytesMut,
) -> Result<(), ErrorResponse> {
    let words: Vec<&str> = command.split_whitespace().collect();
    let verb = words[0].to_ascii_uppercase();
    let writes = [
        "PAUSE",
        "RESUME",
        "KILL",
        "RECONNECT",
        "SHUTDOWN",
        "RELOAD",
        "RESET",
        "SET",
        "SUSPEND",
        "ENABLE",
        "DISABLE",
        "WAIT_CLOSE",
        "KILL_CLIENT",
    ];
    if writes.contains(&verb.as_str()) && login.role != Role::Admin {
        return Err(ErrorResponse::error(
            sqlstate::INSUFFICIENT_PRIVILEGE,
            format!("permission denied: {verb} needs an admin user"),
        )
        .detail(format!(
            "user \"{}\" is a stats user: SHOW commands only",
            login.user
        ))
        .hint("list the user in [pooler] admin_users"));
    }
    if verb == "SET" {
        return Err(ErrorResponse::error(
            sqlstate::FEATURE_NOT_SUPPORTED,
            "SET is not supported: settings change by restarting sluice with a new config",
        ));
    }
    if words.len() > 2 {
        return Err(syntax_error(command));
    }
    let arg = words.get(1).map(|w| unquote(w));
    match verb.as_str() {
        "SHOW" => {
            let what = arg.ok_or_else(|| syntax_error(command))?;
            show::show(shared, &what.to_ascii_uppercase(), out)
        }
        "PAUSE" => {
            pause_database(shared, arg.as_deref()).await?;
            backend::command_complete("PAUSE", out);
            Ok(())
        }
        "RESUME" => {
            resume_database(shared, arg.as_deref())?;
            backend::command_complete("RESUME", out);
            Ok(())
        }
        "KILL" => {
            let pools = pools_of(shared, arg.as_deref())?;
            // As PgBouncer does: the database stays paused until RESUME.
            pause(shared, arg.as_deref(), &pools);
            let killed = shared.clients.kill(arg.as_deref());
            for p in &pools {
                p.reconnect();
                p.close_idle(CloseReason::Admin);
            }
            tracing::info!(database = arg.as_deref().unwrap_or("*"), clients = killed, user = %login.user, "KILL from the admin console");
            backend::command_complete("KILL", out);
            Ok(())
        }
        "RECONNECT" => {
            let pools = pools_of(shared, arg.as_deref())?;
            for p in &pools {
                p.reconnect();
                p.close_idle(CloseReason::Admin);
            }
            backend::command_complete("RECONNECT", out);
            Ok(())
        }
        "SHUTDOWN" if arg.is_none() => {
            tracing::info!(user = %login.user, "SHUTDOWN from the admin console");
            shared.console.request_shutdown();
            backend::command_complete("SHUTDOWN", out);
            Ok(())
        }
        "RELOAD" if arg.is_none() => match crate::reload::apply(shared) {
            Ok(notes) => {
                tracing::info!(user = %login.user, "RELOAD from the admin console");
                for note in notes {
                    ErrorResponse::new(
                        backend::Severity::Notice,
                        sqlstate::SUCCESSFUL_COMPLETION,
                        note,
                    )
                    .write_notice(out);
                }
                backend::command_complete("RELOAD", out);
                Ok(())
            }
            Err(why) => Err(ErrorResponse::error(
                sqlstate::CONFIG_FILE_ERROR,
                format!("RELOAD: {why}"),
            )
            .hint("nothing was changed; fix the file and RELOAD again")),
        },
        "RESET"
            if arg
                .as_deref()
                .is_some_and(|a| a.eq_ignore_ascii_case("QUERIES")) =>
        {
            shared.query_stats.reset();
            tracing::info!(user = %login.user, "RESET QUERIES from the admin console");
            backend::command_complete("RESET", out);
            Ok(())
        }
        "SUSPEND" | "ENABLE" | "DISABLE" | "WAIT_CLOSE" | "KILL_CLIENT" => {
            Err(ErrorResponse::error(
                sqlstate::FEATURE_NOT_SUPPORTED,
                format!("{verb} is not supported by sluice"),
            ))
        }
        _ => Err(syntax_error(command)),
    }
}

/// PAUSE `database` (every database with `None`; SIGUSR1 too): new checkouts wait; returns once
/// the transactions under way have finished, their server connections closed.
pub async fn pause_database(shared: &Shared, database: Option<&str>) -> Result<(), ErrorResponse> {
    let pools = pools_of(shared, database)?;
    pause(shared, database, &pools);
    wait_released(&pools, &shared.clients).await;
    for p in &pools {
        p.close_idle(CloseReason::Admin);
    }
    Ok(())
}

/// RESUME `database` (every database with `None`; SIGUSR2 too).
pub fn resume_database(shared: &Shared, database: Option<&str>) -> Result<(), ErrorResponse> {
    let pools = pools_of(shared, database)?;
    if !shared.console.resume(database) {
        let db = database.unwrap_or_default();
        return Err(ErrorResponse::error(
            "55000", // object_not_in_prerequisite_state
            format!("cannot resume \"{db}\" alone: every database is paused"),
        )
        .hint("RESUME without a database resumes all"));
    }
    for p in &pools {
        p.pause.set(false);
    }
    Ok(())
}

/// The pools of `database` (every pool with `None`); 3D000 if no such database is configured.
fn pools_of(shared: &Shared, database: Option<&str>) -> Result<Vec<Arc<Pool>>, ErrorResponse> {
    if let Some(db) = database {
        if !shared.config().databases.contains_key(db) {
            return Err(ErrorResponse::error(
                sqlstate::INVALID_CATALOG_NAME,
                format!("database \"{db}\" does not exist"),
            ));
        }
    }
    Ok(shared
        .pool_list()
        .into_iter()
        .filter(|p| database.is_none_or(|d| p.key.database == d))
        .collect())
}

/// Marks `database` (all with `None`) paused: new checkouts wait, pools made later start paused.
fn pause(shared: &Shared, database: Option<&str>, pools: &[Arc<Pool>]) {
    shared.console.pause(database);
    for p in pools {
        p.pause.set(true);
    }
}

/// Waits until no server connection of `pools` is lent out or being opened (transactions that
/// were running finish), or sluice starts shutting down.
async fn wait_released(pools: &[Arc<Pool>], clients: &ClientList) {
    loop {
        let busy = pools.iter().any(|p| {
            let g = p.gauges();
            g.servers_active + g.servers_connecting > 0
        });
        if !busy || clients.is_draining() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
