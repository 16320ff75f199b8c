//! Login: the startup packet (and SSLRequest, CancelRequest), authentication, the choice of pool,
//! the client's startup parameters, and the greeting (ParameterStatus, BackendKeyData,
//! ReadyForQuery).

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use sluice_proto::backend;
use sluice_proto::sqlstate;
use sluice_proto::startup::{StartupPacket, split_startup};
use tokio::io::AsyncReadExt;

use super::access::{self, Peer};
use super::auth::{authenticate, password_failed};
use super::tls::ClientTls;
use super::{Fatal, checkout_error};
use crate::Shared;
use crate::cancel::CancelRegistration;
use crate::net::Stream;
use crate::params::{self, Params};
use crate::pool::{CheckoutError, Pool};

/// Read at least this much at a time.
pub(super) const READ_CHUNK: usize = 8 * 1024;

/// A client that logged in to a pool.
pub(super) struct LoggedIn {
    pub pool: Arc<Pool>,
    pub wanted: Params,
    pub cancel: CancelRegistration,
    /// This client, counted under max_db/user_client_connections while it stays.
    pub caps: Option<crate::shared::CapGuard>,
}

async fn read_more(stream: &mut Stream, buf: &mut BytesMut) -> Result<bool, Fatal> {
    buf.reserve(READ_CHUNK);
    Ok(stream.read_buf(buf).await? > 0)
}

/// Reads one whole tagged message during login.
pub(super) async fn read_message(
    stream: &mut Stream,
    buf: &mut BytesMut,
    max: usize,
) -> Result<Option<sluice_proto::RawMessage>, Fatal> {
    loop {
        match sluice_proto::split_message(buf, max) {
            Ok(Some(m)) => return Ok(Some(m)),
            Ok(None) => {}
            Err(e) => return Err(Fatal::invalid_message(e)),
        }
        if !read_more(stream, buf).await? {
            return Ok(None);
        }
    }
}

/// Startup packet, authentication, pool choice, and the greeting. `Ok(None)`: the connection ended
/// without a session (a cancel request, or the client left).
/// A client of the admin console's virtual database gets `Ok(None)` with `admin` set.
/// `tls`: the connection is TLS (client/tls.rs negotiated it), with what it tells. `peer`: the
/// client's address as accept() gave it (no getpeername per login).
pub(super) async fn login(
    shared: &Arc<Shared>,
    stream: &mut Stream,
    buf: &mut BytesMut,
    admin: &mut Option<crate::admin::AdminLogin>,
    tls: Option<&ClientTls>,
    peer: std::net::SocketAddr,
) -> Result<Option<LoggedIn>, Fatal> {
    let mut out = BytesMut::with_capacity(512);
    let (minor, startup) = loop {
        let packet = match split_startup(buf) {
            Ok(Some(p)) => p,
            Ok(None) => {
                if !read_more(stream, buf).await? {
                    return Ok(None);
                }
                continue;
            }
            Err(e) => {
                return Err(Fatal::new(
                    sqlstate::PROTOCOL_VIOLATION,
                    format!("invalid startup packet: {e}"),
                ));
            }
        };
        match packet {
            StartupPacket::SslRequest if tls.is_some() => {
                // A second SSLRequest inside TLS: PostgreSQL takes it for a startup packet of an
                // unknown protocol version.
                return Err(Fatal::new(
                    sqlstate::PROTOCOL_VIOLATION,
                    "unsupported frontend protocol 1234.5679: server supports 3.0 to 3.0",
                ));
            }
            StartupPacket::SslRequest | StartupPacket::GssEncRequest => {
                if !buf.is_empty() {
                    return Err(Fatal::new(
                        sqlstate::PROTOCOL_VIOLATION,
                        "received unencrypted data after SSL request",
                    ));
                }
                stream.send(b"N").await?;
            }
            StartupPacket::Cancel { pid, key } => {
                if let Some(t) = shared.cancels.lookup(pid, key) {
                    crate::cancel::send_cancel(&t.server, t.pid, t.key, Duration::from_secs(5))
                        .await;
                }
                return Ok(None);
            }
            StartupPacket::Startup { minor, params, .. } => break (minor, params),
        }
    };

    let get = |name: &str| {
        startup
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let user = match get("user") {
        Some(u) if !u.is_empty() => u.to_owned(),
        _ => {
            return Err(Fatal::new(
                sqlstate::INVALID_AUTHORIZATION_SPECIFICATION,
                "no PostgreSQL user name specified in startup packet",
            ));
        }
    };
    let database = get("database")
        .filter(|d| !d.is_empty())
        .unwrap_or(&user)
        .to_owned();

    let unknown_options: Vec<&str> = startup
        .iter()
        .filter(|(k, _)| k.starts_with("_pq_."))
        .map(|(k, _)| k.as_str())
        .collect();
    if minor > 0 || !unknown_options.is_empty() {
        sluice_proto::startup::write_negotiate_protocol_version(0, &unknown_options, &mut out);
    }

    let config = shared.config();
    if tls.is_none() && config.pooler.client_tls_mode.requires_tls() {
        // PostgreSQL's answer when only hostssl lines would match.
        let host = peer.ip();
        return Err(Fatal(
            backend::ErrorResponse::fatal(
                sqlstate::INVALID_AUTHORIZATION_SPECIFICATION,
                format!("no pg_hba.conf entry for host \"{host}\", user \"{user}\", database \"{database}\", no encryption"),
            )
            .hint("sluice's client_tls_mode requires TLS: connect with sslmode=require or stronger"),
        ));
    }
    let db_config = config.databases.get(&database);
    // What the access rules and the `cert` method see of the connection (client/tls.rs).
    let peer = Peer {
        addr: peer.ip(),
        tls: tls.is_some(),
        cert_cn: tls.and_then(|t| t.cert_cn.as_deref()),
    };
    let refused = |r: crate::hba::Refused| {
        Fatal::new(sqlstate::INVALID_AUTHORIZATION_SPECIFICATION, r.message)
    };
    // Access rules first: a connection they refuse costs no auth_query lookup.
    let rules_method = match config.hba.as_deref() {
        Some(rules) => Some(
            access::choose(Some(rules), peer, &database, &user, config.pooler.auth_type)
                .map_err(refused)?,
        ),
        None => None,
    };
    // A user not in [users] may be looked up with auth_query (shared/lookup.rs).
    let user_auth = match shared.find_user(&database, &user).await {
        Ok(u) => u,
        Err(why) => {
            shared
                .limits
                .incidents
                .note(crate::metrics::Incident::ConnectFailed, || why.clone());
            tracing::warn!(%user, %database, error = %why, "auth_query lookup failed");
            return Err(Fatal::new(
                sqlstate::SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION,
                format!("could not look up user \"{user}\" (auth_query failed; see sluice's log)"),
            ));
        }
    };
    let looked_up = user_auth.is_some() && shared.user(&user).is_none();
    let auth_type = user_auth
        .as_ref()
        .and_then(|u| u.auth_type)
        .or_else(|| db_config.and_then(|d| d.auth_type))
        .unwrap_or(config.pooler.auth_type);
    let method = match rules_method {
        Some(m) => m,
        None => access::choose(None, peer, &database, &user, auth_type).map_err(refused)?,
    };
    let client_key = authenticate(
        shared,
        stream,
        buf,
        &mut out,
        &user,
        user_auth.as_deref(),
        method,
        peer.cert_cn,
        tls.and_then(|t| t.end_point.as_deref()),
    )
    .await
    .inspect_err(|e| {
        // A looked-up secret that failed may be stale: the next login asks PostgreSQL again.
        if looked_up && e.0.code == sqlstate::INVALID_PASSWORD {
            shared.forget_user(&database, &user);
        }
    })?;
    let Some(user_auth) = user_auth else {
        return Err(password_failed(&user));
    };
    backend::authentication_ok(&mut out);

    if crate::admin::is_console(&database) {
        *admin = Some(
            crate::admin::authorize(shared, &user, &database, get("application_name"))
                .map_err(Fatal)?,
        );
        stream.send(&out).await?;
        return Ok(None);
    }
    if db_config.is_none() {
        return Err(Fatal::new(
            sqlstate::INVALID_CATALOG_NAME,
            format!("database \"{database}\" does not exist"),
        ));
    }
    if get("replication").is_some_and(|r| r != "false" && r != "0" && r != "off" && r != "no") {
        return Err(Fatal::new(
            sqlstate::FEATURE_NOT_SUPPORTED,
            "replication connections are not supported by sluice",
        ));
    }
    let caps = admit(shared, &config, &database, &user)?;
    let pool = shared
        .pool_for(&database, &user, &user_auth)
        .map_err(|why| Fatal::new(sqlstate::INVALID_AUTHORIZATION_SPECIFICATION, why))?;
    // SCRAM pass-through: with only a SCRAM secret for this user, server logins use the key the
    // client just proved.
    if let (Some(key), Some(verifier)) = (client_key, user_auth.scram.as_ref())
        && user_auth.secret.as_ref().and_then(|s| s.plain()).is_none()
        && let Some(keys) = sluice_proto::auth::ScramKeys::new(verifier, key)
    {
        pool.learn_scram_keys(keys);
    }
    let wait = config.pooler.query_wait_timeout;

    // Parameters the client asked for at startup.
    let mut requested: Vec<(String, String)> = Vec::new();
    for (k, v) in &startup {
        match k.as_str() {
            "user" | "database" | "replication" => {}
            "options" => {
                let opts = params::parse_options(v).map_err(|why| {
                    Fatal::new(sqlstate::FEATURE_NOT_SUPPORTED, format!("options: {why}"))
                })?;
                requested.extend(opts);
            }
            k if k.starts_with("_pq_.") => {}
            _ => requested.push((k.clone(), v.clone())),
        }
    }

    // A list this pool's clients logged in with before: its outcome and ParameterStatus
    // messages as they were then (params::GreetingMemo), without a lookup per parameter.
    let (wanted, greeting) = if let Some(known) = pool.greetings.get(&requested) {
        known
    } else {
        let incidents = &shared.limits.incidents;
        // A server login that fails here ends the client's login: FATAL, with its SQLSTATE.
        let checkout_err = |e: CheckoutError| {
            // PostgreSQL refused a looked-up user's secret: ask it again at the next login.
            if looked_up
                && let CheckoutError::Connect(crate::server::ConnectError::Refused { code, .. }) =
                    &e
                && code == sqlstate::INVALID_PASSWORD
            {
                shared.forget_user(&database, &user);
            }
            Fatal::ending(checkout_error(&e, &pool, incidents))
        };
        // The pool's first login learns the server's parameters: every greeting is made of them.
        let mut server = None;
        if pool.startup_params().is_none() {
            server = Some(pool.checkout(wait).await.map_err(checkout_err)?);
        }
        let defaults = pool.startup_params().expect("a login has been made");
        let mut wanted = pool.client_defaults().expect("a login has been made");
        // Values PostgreSQL would normalise (DateStyle=ISO reports "ISO, MDY") or reject are sent to a
        // server once, so the client sees exactly what PostgreSQL would have said; a list sent before
        // is known (StartupMemo).
        let needs_server = requested
            .iter()
            .any(|(k, v)| defaults.get(k) != Some(v.as_str()));
        // Without a server asked, the same list always ends the same way: its greeting is kept.
        let settled = !needs_server || pool.startup_memo.apply(&requested, &mut wanted);
        if !settled {
            let mut guard = match server.take() {
                Some(g) => g,
                None => pool.checkout(wait).await.map_err(checkout_err)?,
            };
            let mut target = Params::default();
            for (k, v) in &requested {
                if defaults.get(k).is_some() {
                    target.set(k, v);
                } else {
                    target.set_extra(k, v);
                }
            }
            let conn = guard.conn_mut();
            // Where a fresh PostgreSQL login would start from: what comes out is worth remembering.
            let from_defaults = requested
                .iter()
                .all(|(k, _)| conn.params.get(k) == defaults.get(k));
            let sql = conn.params.sync_sql(&target);
            // Nothing to send: the server already reports exactly the values asked for, so they
            // are PostgreSQL's own spelling of them and a fresh login would report them too.
            // Worth remembering as well (once every server connection has served this
            // application, none starts from the defaults any more).
            let known = from_defaults || sql.is_none();
            if let Some(sql) = sql {
                conn.dirty = true;
                match crate::server::run_simple(conn, &sql, pool.settings.max_message_size).await {
                    Ok(Ok(())) => {
                        conn.dirty = false;
                        conn.params.note_synced(&target);
                    }
                    Ok(Err((code, message))) => {
                        conn.dirty = false;
                        // Put the connection back as it was for the next client.
                        return Err(Fatal::new(&code, message));
                    }
                    Err(e) => {
                        return Err(Fatal::new(
                            sqlstate::CONNECTION_FAILURE,
                            format!("server connection lost: {e}"),
                        ));
                    }
                }
            }
            let mut became = Params::default();
            for (k, _) in &requested {
                match conn.params.get(k) {
                    Some(v) if defaults.get(k).is_some() => became.set(k, v),
                    Some(v) => became.set_extra(k, v),
                    None => {}
                }
            }
            wanted.set_all(&became);
            if known {
                pool.startup_memo.remember(&requested, became);
            }
        }
        // In either mode the client gets a server connection with its first query, not here: a
        // session-mode login does not wait for one (the pool's connections may all be taken by
        // sessions for as long as they last).
        drop(server);

        let mut greeting = BytesMut::with_capacity(512);
        for (k, v) in defaults.iter() {
            backend::parameter_status(k, wanted.get(k).unwrap_or(v), &mut greeting);
        }
        let greeting = greeting.freeze();
        let wanted = pool.shared_params(wanted);
        if settled {
            pool.greetings
                .remember(&requested, wanted.clone(), greeting.clone());
        }
        (wanted, greeting)
    };
    out.extend_from_slice(&greeting);
    let cancel = shared.cancels.register();
    backend::backend_key_data(cancel.pid, cancel.secret, &mut out);
    backend::ready_for_query(b'I', &mut out);
    stream.send(&out).await?;
    Ok(Some(LoggedIn {
        pool,
        wanted,
        cancel,
        caps: Some(caps),
    }))
}

/// Counts the client under `max_db_client_connections` / `max_user_client_connections` (per
/// database / per user, else `[pooler]`), or refuses it with 53300.
fn admit(
    shared: &Shared,
    config: &crate::Config,
    database: &str,
    user: &str,
) -> Result<crate::shared::CapGuard, Fatal> {
    let max_db = config
        .databases
        .get(database)
        .and_then(|d| d.max_db_client_connections)
        .unwrap_or(config.pooler.max_db_client_connections);
    let max_user = config
        .users
        .get(user)
        .and_then(|u| u.max_user_client_connections)
        .unwrap_or(config.pooler.max_user_client_connections);
    shared
        .client_caps
        .admit(database, user, max_db, max_user)
        .map_err(|r| {
            Fatal(
                sluice_proto::backend::ErrorResponse::fatal(
                    sqlstate::TOO_MANY_CONNECTIONS,
                    r.message(),
                )
                .detail(r.detail()),
            )
        })
}
