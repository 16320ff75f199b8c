//! Sockets: the byte stream every connection runs over ([`Stream`], plain or TLS), the listening
//! sockets ([`listen::bind_shared`]), TLS contexts from PEM files ([`tls`]) and what sluice reads
//! in a certificate ([`x509`]).

pub mod listen;
pub mod stream;
pub mod tls;
pub mod x509;

pub use stream::Stream;
