//! A raw wire-protocol client for what tokio-postgres hides or never sends: which authentication
//! request came first, the BackendKeyData, hand-made CancelRequests and malformed packets.
//!
//! Messages are written with postgres-protocol's frontend writers (the oracle) and read with a
//! few lines of framing here. Scripts of whole batches, compared as text with what PostgreSQL
//! answers, are in `script.rs`.

use std::collections::HashMap;
use std::net::SocketAddr;

use bytes::{Buf, BytesMut};
use postgres_protocol::authentication::sasl::{ChannelBinding, SCRAM_SHA_256, ScramSha256};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{APP_DB, APP_PASSWORD, APP_USER, STEP, within};

/// The first authentication request the server (or pooler) sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthRequest {
    /// AuthenticationOk straight away: trust.
    Ok,
    Cleartext,
    Md5,
    /// AuthenticationSASL with these mechanisms.
    Sasl(Vec<String>),
    Other(i32),
}

/// An ErrorResponse (or NoticeResponse) as field code → value.
#[derive(Debug, Clone)]
pub struct ErrorFields(pub HashMap<u8, String>);

impl ErrorFields {
    pub fn parse(body: &[u8]) -> ErrorFields {
        let mut fields = HashMap::new();
        let mut rest = body;
        while let Some((&code, tail)) = rest.split_first() {
            if code == 0 {
                break;
            }
            let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
            fields.insert(code, String::from_utf8_lossy(&tail[..end]).into_owned());
            rest = tail.get(end + 1..).unwrap_or(&[]);
        }
        ErrorFields(fields)
    }

    pub fn code(&self) -> Option<&str> {
        self.0.get(&b'C').map(String::as_str)
    }

    pub fn message(&self) -> Option<&str> {
        self.0.get(&b'M').map(String::as_str)
    }
}

/// Why a raw session failed.
#[derive(Debug)]
pub enum RawError {
    Io(std::io::Error),
    /// The server sent an ErrorResponse.
    Server(ErrorFields),
    /// The server sent something this client did not expect.
    Unexpected(String),
}

impl From<std::io::Error> for RawError {
    fn from(e: std::io::Error) -> Self {
        RawError::Io(e)
    }
}

/// One backend message: its tag and body.
pub type RawMessage = (u8, BytesMut);

/// A logged-in raw session.
pub struct RawConn {
    stream: TcpStream,
    buf: BytesMut,
    /// The first authentication request.
    pub auth: AuthRequest,
    /// (process id, secret key) from BackendKeyData.
    pub backend_key: Option<(i32, i32)>,
    /// ParameterStatus values from start-up.
    pub params: HashMap<String, String>,
}

/// Reads one backend message from `stream` into `buf`; `Ok(None)` on a clean EOF between messages.
pub async fn read_message(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
) -> std::io::Result<Option<RawMessage>> {
    loop {
        if buf.len() >= 5 {
            let len = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
            if len < 4 {
                return Err(std::io::Error::other(format!("message length {len} < 4")));
            }
            let total = 1 + len as usize;
            if buf.len() >= total {
                let mut msg = buf.split_to(total);
                let tag = msg[0];
                msg.advance(5);
                return Ok(Some((tag, msg)));
            }
        }
        if stream.read_buf(buf).await? == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "EOF inside a message",
                ))
            };
        }
    }
}

/// The big-endian i16 at `at` of a message body.
pub(super) fn i16_at(body: &[u8], at: usize) -> i16 {
    i16::from_be_bytes(body[at..at + 2].try_into().expect("2 bytes"))
}

/// The big-endian i32 at `at` of a message body.
pub(super) fn i32_at(body: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(body[at..at + 4].try_into().expect("4 bytes"))
}

/// The NUL-terminated string at `at` of a message body, and where the next field starts.
pub(super) fn cstr_at(body: &[u8], at: usize) -> (String, usize) {
    let end = at + body[at..].iter().position(|&c| c == 0).expect("NUL");
    (
        String::from_utf8_lossy(&body[at..end]).into_owned(),
        end + 1,
    )
}

impl RawConn {
    /// Opens a session: startup with `user`, `database` and `extra` parameters, answering
    /// cleartext, md5 or SCRAM-SHA-256 with `password`, up to the first ReadyForQuery.
    pub async fn connect(
        addr: SocketAddr,
        user: &str,
        database: &str,
        password: Option<&str>,
        extra: &[(&str, &str)],
    ) -> Result<RawConn, RawError> {
        within(
            STEP,
            "raw connect",
            Self::connect_inner(addr, user, database, password, extra),
        )
        .await
    }

    /// `app` to database `app` with its password; panics on failure.
    pub async fn connect_app(addr: SocketAddr) -> RawConn {
        RawConn::connect(addr, APP_USER, APP_DB, Some(APP_PASSWORD), &[])
            .await
            .unwrap_or_else(|e| panic!("raw connection to {addr} as {APP_USER}: {e:?}"))
    }

    async fn connect_inner(
        addr: SocketAddr,
        user: &str,
        database: &str,
        password: Option<&str>,
        extra: &[(&str, &str)],
    ) -> Result<RawConn, RawError> {
        let mut stream = TcpStream::connect(addr).await?;
        let mut out = BytesMut::new();
        let mut params = vec![("user", user), ("database", database)];
        params.extend_from_slice(extra);
        frontend::startup_message(params, &mut out)?;
        stream.write_all(&out).await?;

        let mut buf = BytesMut::new();
        let mut auth = None;
        let mut scram: Option<ScramSha256> = None;
        let mut backend_key = None;
        let mut server_params = HashMap::new();
        loop {
            let Some((tag, body)) = read_message(&mut stream, &mut buf).await? else {
                return Err(RawError::Unexpected("EOF during start-up".into()));
            };
            out.clear();
            match tag {
                b'R' => {
                    let kind = i32_at(&body, 0);
                    let request = match kind {
                        0 => AuthRequest::Ok,
                        3 => AuthRequest::Cleartext,
                        5 => AuthRequest::Md5,
                        10 => AuthRequest::Sasl(
                            body[4..]
                                .split(|&b| b == 0)
                                .filter(|s| !s.is_empty())
                                .map(|s| String::from_utf8_lossy(s).into_owned())
                                .collect(),
                        ),
                        other => AuthRequest::Other(other),
                    };
                    if auth.is_none() {
                        auth = Some(request.clone());
                    }
                    let pw = || {
                        password.ok_or_else(|| {
                            RawError::Unexpected("password asked for but none given".into())
                        })
                    };
                    match kind {
                        0 => continue,
                        3 => frontend::password_message(pw()?.as_bytes(), &mut out)?,
                        5 => {
                            let salt: [u8; 4] = body[4..8].try_into().expect("salt");
                            let hash = postgres_protocol::authentication::md5_hash(
                                user.as_bytes(),
                                pw()?.as_bytes(),
                                salt,
                            );
                            frontend::password_message(hash.as_bytes(), &mut out)?;
                        }
                        10 => {
                            let AuthRequest::Sasl(mechs) = &request else {
                                unreachable!()
                            };
                            if !mechs.iter().any(|m| m == SCRAM_SHA_256) {
                                return Err(RawError::Unexpected(format!(
                                    "SASL mechanisms {mechs:?}"
                                )));
                            }
                            let s =
                                ScramSha256::new(pw()?.as_bytes(), ChannelBinding::unsupported());
                            frontend::sasl_initial_response(SCRAM_SHA_256, s.message(), &mut out)?;
                            scram = Some(s);
                        }
                        11 => {
                            let s = scram.as_mut().ok_or_else(|| {
                                RawError::Unexpected("SASLContinue before SASL".into())
                            })?;
                            s.update(&body[4..])?;
                            frontend::sasl_response(s.message(), &mut out)?;
                        }
                        12 => {
                            let s = scram.as_mut().ok_or_else(|| {
                                RawError::Unexpected("SASLFinal before SASL".into())
                            })?;
                            s.finish(&body[4..])?;
                            continue;
                        }
                        other => {
                            return Err(RawError::Unexpected(format!(
                                "authentication request {other}"
                            )));
                        }
                    }
                    stream.write_all(&out).await?;
                }
                b'E' => return Err(RawError::Server(ErrorFields::parse(&body))),
                b'K' => backend_key = Some((i32_at(&body, 0), i32_at(&body, 4))),
                b'S' => {
                    let (k, next) = cstr_at(&body, 0);
                    server_params.insert(k, cstr_at(&body, next).0);
                }
                b'N' => {}
                b'Z' => {
                    return Ok(RawConn {
                        stream,
                        buf,
                        auth: auth.ok_or_else(|| {
                            RawError::Unexpected("ReadyForQuery without authentication".into())
                        })?,
                        backend_key,
                        params: server_params,
                    });
                }
                other => {
                    return Err(RawError::Unexpected(format!(
                        "message {:?} during start-up",
                        other as char
                    )));
                }
            }
        }
    }

    /// Sends a simple Query.
    pub async fn send_query(&mut self, sql: &str) -> std::io::Result<()> {
        let mut out = BytesMut::new();
        frontend::query(sql, &mut out)?;
        self.stream.write_all(&out).await
    }

    /// Reads up to ReadyForQuery: `Ok(command tags)`, or the first ErrorResponse.
    pub async fn finish_query(&mut self) -> Result<Vec<String>, RawError> {
        let mut tags = Vec::new();
        let mut error = None;
        loop {
            let Some((tag, body)) = read_message(&mut self.stream, &mut self.buf).await? else {
                return Err(RawError::Unexpected("EOF before ReadyForQuery".into()));
            };
            match tag {
                b'C' => tags.push(cstr_at(&body, 0).0),
                b'E' => {
                    error.get_or_insert(ErrorFields::parse(&body));
                }
                b'Z' => return error.map_or(Ok(tags), |e| Err(RawError::Server(e))),
                _ => {}
            }
        }
    }

    /// The socket, for a test that writes and reads on its own terms (nothing is left unread
    /// after the login's ReadyForQuery).
    pub fn into_stream(self) -> TcpStream {
        self.stream
    }

    /// Writes `bytes` as they are (frontend messages made with postgres-protocol's writers), so a
    /// whole pipeline goes out in one write.
    pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// The next backend message. EOF is an error; panics if nothing comes within [`STEP`].
    pub async fn recv(&mut self) -> Result<RawMessage, RawError> {
        let next = within(
            STEP,
            "a backend message",
            read_message(&mut self.stream, &mut self.buf),
        )
        .await?;
        next.ok_or_else(|| RawError::Unexpected("EOF while waiting for a message".into()))
    }

    /// Every message up to and including the `count`-th ReadyForQuery.
    pub async fn recv_until_ready(&mut self, count: usize) -> Result<Vec<RawMessage>, RawError> {
        let mut msgs = Vec::new();
        let mut seen = 0;
        while seen < count {
            let msg = self.recv().await?;
            if msg.0 == b'Z' {
                seen += 1;
            }
            msgs.push(msg);
        }
        Ok(msgs)
    }

    /// `send_query` then `finish_query`.
    pub async fn simple_query(&mut self, sql: &str) -> Result<Vec<String>, RawError> {
        self.send_query(sql).await?;
        self.finish_query().await
    }

    /// Sends Terminate and waits for the other side to close.
    pub async fn terminate(mut self) {
        let mut out = BytesMut::new();
        frontend::terminate(&mut out);
        let _ = self.stream.write_all(&out).await;
        let mut sink = [0u8; 256];
        let _ = within(STEP, "close after Terminate", async {
            while matches!(self.stream.read(&mut sink).await, Ok(n) if n > 0) {}
        })
        .await;
    }
}

/// Sends a CancelRequest for (`pid`, `key`) on a new connection to `addr`, then waits for the
/// other side to close it (a CancelRequest gets no reply).
pub async fn send_cancel_request(addr: SocketAddr, pid: i32, key: i32) {
    within(STEP, "CancelRequest", async {
        let mut stream = TcpStream::connect(addr)
            .await
            .expect("connect for CancelRequest");
        let mut out = BytesMut::new();
        frontend::cancel_request(pid, key, &mut out);
        stream.write_all(&out).await.expect("send CancelRequest");
        let mut sink = [0u8; 64];
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await
}

/// Writes `bytes` on a fresh connection and reads until the other side closes (or resets).
/// Returns what was read. Panics if the connection stays open past [`STEP`].
pub async fn exchange_until_closed(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    within(STEP, "the pooler to answer and close", async {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        // The pooler may close before reading everything; a failed write is fine.
        let _ = stream.write_all(bytes).await;
        let mut got = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
            }
        }
        got
    })
    .await
}
