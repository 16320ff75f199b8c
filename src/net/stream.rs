//! [`Stream`]: the byte stream under a server connection and the admin console (and, later, a
//! client session): plain TCP now, TLS next.
//!
//! An enum rather than a boxed trait object: the relay polls `poll_write` and `poll_read` on it
//! for every message, and a `match` on a one- or two-variant enum costs nothing there, where a
//! box would cost a pointer chase and an allocation per connection. Each method passes straight
//! through to the variant's socket.
//!
//! Owns: the socket and the calls the relay, the login and the console make on it. Must not:
//! buffer, frame messages or know the protocol (that is `proto` and the relay's business).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A connected socket.
#[derive(Debug)]
pub enum Stream {
    /// Plain TCP.
    Tcp(TcpStream),
}

impl From<TcpStream> for Stream {
    fn from(s: TcpStream) -> Self {
        Stream::Tcp(s)
    }
}

impl Stream {
    /// Disables Nagle's algorithm: the relay writes whole messages and wants them sent at once.
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_nodelay(nodelay),
        }
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Stream::Tcp(s) => s.local_addr(),
        }
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Stream::Tcp(s) => s.peer_addr(),
        }
    }

    /// Ready once the socket has something to read (or is closed), without reading it: an idle
    /// client waits here holding no read buffer.
    #[inline]
    pub fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Stream::Tcp(s) => s.poll_read_ready(cx),
        }
    }

    /// Writes what the socket takes now without waiting; `WouldBlock` when it takes nothing.
    #[inline]
    pub fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.try_write(buf),
        }
    }

    /// Reads what is there now without waiting; `WouldBlock` when nothing is, `Ok(0)` at the end.
    #[inline]
    pub fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.try_read(buf),
        }
    }
}

impl AsyncRead for Stream {
    #[inline]
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    #[inline]
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    #[inline]
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Tcp(s) => s.is_write_vectored(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn pair() -> (Stream, Stream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (b, _) = listener.accept().await.unwrap();
        (Stream::from(a), Stream::from(b))
    }

    #[tokio::test]
    async fn passes_bytes_and_readiness_through() {
        let (mut a, mut b) = pair().await;
        a.set_nodelay(true).unwrap();
        assert_eq!(a.local_addr().unwrap(), b.peer_addr().unwrap());
        let mut probe = [0u8; 4];
        assert_eq!(
            b.try_read(&mut probe).unwrap_err().kind(),
            io::ErrorKind::WouldBlock,
            "nothing sent yet"
        );
        a.write_all(b"ping").await.unwrap();
        std::future::poll_fn(|cx| b.poll_read_ready(cx))
            .await
            .unwrap();
        let mut got = [0u8; 4];
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");
        // try_write takes &self, as the relay uses it between polls.
        let n = b.try_write(b"pong").unwrap();
        assert_eq!(n, 4);
        a.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"pong");
        a.shutdown().await.unwrap();
        assert_eq!(b.read(&mut got).await.unwrap(), 0, "end of stream");
    }
}
