//! The PostgreSQL wire protocol (version 3.0) as sluice needs it: bytes in, messages out.
//!
//! This crate has no I/O and no tokio dependency. It gives
//! - [`framing`]: splitting a byte stream into whole tagged messages without copying, with a length
//!   cap ([`split_cstr`] splits one C string off a body);
//! - [`startup`]: the untagged first packets (StartupMessage, SSLRequest, GSSENCRequest, CancelRequest);
//! - [`frontend`]: the client message tags ([`frontend::FrontendTag`]), typed views of the client
//!   messages a pooler inspects, and writers for the ones it sends;
//! - [`backend`]: the server message tags ([`backend::BackendTag`]) and builders for the server
//!   messages a pooler writes itself; [`backend_view`]: typed views of the server messages it
//!   inspects;
//! - [`auth`]: server-side SCRAM-SHA-256 and md5 password checks;
//! - [`sqlstate`]: the SQLSTATE codes sluice emits.
//!
//! The pooler parses and writes every message through this crate; `postgres-protocol` serves it for
//! the client side of a server login (password and SCRAM messages) and as the oracle in tests.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod auth;
pub mod backend;
pub mod backend_view;
pub mod error;
pub mod framing;
pub mod frontend;
pub mod sqlstate;
pub mod startup;

pub use error::ProtocolError;
pub use framing::{Header, RawMessage, split_cstr, split_message, split_sql};

/// Default cap on a tagged message whose body the pooler must hold whole (1 GiB is PostgreSQL's own
/// ceiling; sluice defaults lower, see the `max_message_size` config key).
pub const MAX_MESSAGE_LEN: usize = 64 * 1024 * 1024;

/// Cap on an untagged startup-phase packet, as in PostgreSQL (`MAX_STARTUP_PACKET_LENGTH`).
pub const MAX_STARTUP_LEN: usize = 10_000;
