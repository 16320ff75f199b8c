//! Sockets: the byte stream every connection runs over ([`Stream`]).

pub mod stream;

pub use stream::Stream;
