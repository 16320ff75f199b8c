//! Sockets: the byte stream every connection runs over ([`Stream`]), and the listening sockets
//! ([`listen::bind_shared`]).

pub mod listen;
pub mod stream;

pub use stream::Stream;
