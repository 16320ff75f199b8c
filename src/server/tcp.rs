//! Socket options of server connections: TCP keepalive and `TCP_USER_TIMEOUT`, so that a link
//! that dies without a FIN or RST (a crashed host, a firewall dropping the flow) ends in an error
//! on the socket instead of a wait without end.
//!
//! Keepalive covers a connection with nothing unacknowledged (idle in the pool, or waiting for a
//! long query's answer); `TCP_USER_TIMEOUT` covers data sent and never acknowledged, and also
//! bounds the keepalive probing. Both need a link the kernel sees as dead: a peer whose kernel
//! still acknowledges (a stalled process, a stalled proxy) is caught by sluice's own timeouts
//! (`query_timeout`, `server_check_delay`) instead.

use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};
use tokio::net::TcpStream;

/// The options, as configured (`tcp_*` in `[pooler]`); a zero duration or count leaves the OS's
/// default in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpOptions {
    pub keepalive: bool,
    pub keepidle: Duration,
    pub keepintvl: Duration,
    pub keepcnt: u32,
    pub user_timeout: Duration,
}

impl Default for TcpOptions {
    /// Keepalive on with the OS's timings, as PgBouncer's defaults.
    fn default() -> Self {
        TcpOptions {
            keepalive: true,
            keepidle: Duration::ZERO,
            keepintvl: Duration::ZERO,
            keepcnt: 0,
            user_timeout: Duration::ZERO,
        }
    }
}

impl TcpOptions {
    /// Sets the options on a freshly connected socket.
    pub fn apply(&self, stream: &TcpStream) -> std::io::Result<()> {
        let sock = SockRef::from(stream);
        if self.keepalive {
            let mut k = TcpKeepalive::new();
            if !self.keepidle.is_zero() {
                k = k.with_time(self.keepidle);
            }
            if !self.keepintvl.is_zero() {
                k = k.with_interval(self.keepintvl);
            }
            if self.keepcnt != 0 {
                k = k.with_retries(self.keepcnt);
            }
            // SO_KEEPALIVE, then each timing given (none given: the OS's).
            sock.set_tcp_keepalive(&k)?;
        }
        if !self.user_timeout.is_zero() {
            sock.set_tcp_user_timeout(Some(self.user_timeout))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn connected() -> TcpStream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let _ = listener.accept().await.unwrap();
        stream
    }

    #[tokio::test]
    async fn options_reach_the_socket() {
        let stream = connected().await;
        let before = SockRef::from(&stream);
        let os_idle = before.tcp_keepalive_time().unwrap();
        TcpOptions {
            keepalive: true,
            keepidle: Duration::from_secs(7),
            keepintvl: Duration::from_secs(3),
            keepcnt: 4,
            user_timeout: Duration::from_millis(2500),
        }
        .apply(&stream)
        .unwrap();
        let s = SockRef::from(&stream);
        assert!(s.keepalive().unwrap());
        assert_eq!(s.tcp_keepalive_time().unwrap(), Duration::from_secs(7));
        assert_eq!(s.tcp_keepalive_interval().unwrap(), Duration::from_secs(3));
        assert_eq!(s.tcp_keepalive_retries().unwrap(), 4);
        assert_eq!(
            s.tcp_user_timeout().unwrap(),
            Some(Duration::from_millis(2500))
        );

        // The defaults: keepalive on, the OS's timings, no user timeout.
        let stream = connected().await;
        TcpOptions::default().apply(&stream).unwrap();
        let s = SockRef::from(&stream);
        assert!(s.keepalive().unwrap());
        assert_eq!(s.tcp_keepalive_time().unwrap(), os_idle);
        assert_eq!(s.tcp_user_timeout().unwrap(), None);

        // Off: nothing set.
        let stream = connected().await;
        TcpOptions {
            keepalive: false,
            ..TcpOptions::default()
        }
        .apply(&stream)
        .unwrap();
        assert!(!SockRef::from(&stream).keepalive().unwrap());
    }
}
