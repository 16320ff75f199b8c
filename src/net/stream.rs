//! [`Stream`]: the byte stream under every connection: a client session, a server connection,
//! the admin console. Plain TCP, or TLS over TCP (rustls, either side of the handshake).
//!
//! An enum rather than a boxed trait object: the relay polls `poll_write` and `poll_read` on it
//! for every message, and a `match` on a two-variant enum costs nothing there. The TLS variant is
//! boxed: rustls's connection state is about a kilobyte, and the plain variant, which most
//! connections use, stays the size of a TCP socket.
//!
//! TLS and the relay: rustls takes plaintext whole and sends records as the socket allows, so a
//! write can be "done" with records still queued inside rustls. [`Stream::wants_flush`] says so;
//! the relay then polls [`AsyncWrite::poll_flush`] until they are out, and every other writer
//! (login, console, server login) uses [`Stream::send`], which flushes. Reading: an idle client waits on
//! [`Stream::poll_read_ready`], which for TLS is also ready when rustls already holds plaintext.
//!
//! Owns: the socket and the calls the relay, the login and the console make on it. Must not:
//! buffer, frame messages or know the protocol (that is `proto` and the relay's business).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsStream;
use tokio_rustls::rustls::pki_types::CertificateDer;

/// A connected socket.
#[derive(Debug)]
pub enum Stream {
    /// Plain TCP.
    Tcp(TcpStream),
    /// TLS over TCP: a client connection sluice accepted, or a server connection it made.
    Tls(Box<TlsStream<TcpStream>>),
}

impl From<TlsStream<TcpStream>> for Stream {
    fn from(s: TlsStream<TcpStream>) -> Self {
        Stream::Tls(Box::new(s))
    }
}

impl From<TcpStream> for Stream {
    fn from(s: TcpStream) -> Self {
        Stream::Tcp(s)
    }
}

impl Stream {
    /// The TCP socket under the stream.
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Tcp(s) => s,
            Stream::Tls(s) => s.get_ref().0,
        }
    }

    /// Disables Nagle's algorithm: the relay writes whole messages and wants them sent at once.
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.tcp().set_nodelay(nodelay)
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp().local_addr()
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.tcp().peer_addr()
    }

    /// True for TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    /// The certificate chain the peer presented (TLS only; a client's only when it was asked).
    pub fn peer_certificates(&self) -> Option<&[CertificateDer<'static>]> {
        match self {
            Stream::Tcp(_) => None,
            Stream::Tls(s) => s.get_ref().1.peer_certificates(),
        }
    }

    /// The ALPN protocol agreed in the handshake (TLS only).
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        match self {
            Stream::Tcp(_) => None,
            Stream::Tls(s) => s.get_ref().1.alpn_protocol(),
        }
    }

    /// TLS records are queued inside rustls, waiting for room in the socket: poll
    /// [`AsyncWrite::poll_flush`] until they are out. Always false for plain TCP.
    #[inline]
    pub fn wants_flush(&self) -> bool {
        match self {
            Stream::Tcp(_) => false,
            Stream::Tls(s) => s.get_ref().1.wants_write(),
        }
    }

    /// Writes all of `buf` and, over TLS, flushes the records out: what every writer other than
    /// the relay (which polls a flush itself) uses.
    pub async fn send(&mut self, buf: &[u8]) -> io::Result<()> {
        use tokio::io::AsyncWriteExt;
        self.write_all(buf).await?;
        if self.wants_flush() {
            self.flush().await?;
        }
        Ok(())
    }

    /// Ready once there is something to read (or the socket is closed), without reading it: an
    /// idle client waits here holding no read buffer. Over TLS, also ready when rustls already
    /// holds decrypted bytes that a read would return (the socket itself may have nothing more).
    #[inline]
    pub fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Stream::Tcp(s) => s.poll_read_ready(cx),
            Stream::Tls(s) => {
                let buffered = match s.as_mut() {
                    TlsStream::Server(s) => s.get_mut().1.process_new_packets(),
                    TlsStream::Client(s) => s.get_mut().1.process_new_packets(),
                };
                match buffered {
                    // An error or the peer's close_notify: the next read reports it.
                    Ok(st) if st.plaintext_bytes_to_read() == 0 && !st.peer_has_closed() => {
                        s.get_ref().0.poll_read_ready(cx)
                    }
                    _ => Poll::Ready(Ok(())),
                }
            }
        }
    }

    /// Writes what the socket takes now without waiting; `WouldBlock` when it takes nothing.
    /// Over TLS the plaintext is taken by rustls, which sends what the socket takes now; the rest
    /// waits for a flush ([`Stream::wants_flush`]).
    #[inline]
    pub fn try_write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.try_write(buf),
            Stream::Tls(s) => {
                let mut cx = Context::from_waker(std::task::Waker::noop());
                match Pin::new(s.as_mut()).poll_write(&mut cx, buf) {
                    Poll::Ready(r) => r,
                    Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
                }
            }
        }
    }

    /// True when the peer has closed the connection or sent something, without waiting. Used on
    /// idle server connections, which must have neither; a byte read here is lost (the
    /// connection is dropped anyway).
    pub fn closed_or_spoke(&mut self) -> bool {
        let mut probe = [0u8; 1];
        match self {
            Stream::Tcp(s) => match s.try_read(&mut probe) {
                Err(e) => e.kind() != io::ErrorKind::WouldBlock,
                Ok(_) => true,
            },
            Stream::Tls(s) => {
                let mut cx = Context::from_waker(std::task::Waker::noop());
                let mut buf = ReadBuf::new(&mut probe);
                Pin::new(s.as_mut()).poll_read(&mut cx, &mut buf).is_ready()
            }
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
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
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
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    #[inline]
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Tcp(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
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
        assert!(!a.is_tls() && !a.wants_flush());
        a.set_nodelay(true).unwrap();
        assert_eq!(a.local_addr().unwrap(), b.peer_addr().unwrap());
        assert!(!b.closed_or_spoke(), "nothing sent yet");
        a.write_all(b"ping").await.unwrap();
        std::future::poll_fn(|cx| b.poll_read_ready(cx))
            .await
            .unwrap();
        let mut got = [0u8; 4];
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");
        // try_write does not wait, as the relay uses it between polls.
        let n = b.try_write(b"pong").unwrap();
        assert_eq!(n, 4);
        a.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"pong");
        a.shutdown().await.unwrap();
        assert_eq!(b.read(&mut got).await.unwrap(), 0, "end of stream");
    }
}
