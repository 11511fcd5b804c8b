//! A client connection whose writes are held until a flush, so that a reply's header and body
//! leave in one send instead of two.
//!
//! Pingora writes the response header and each body piece with separate writes and flushes
//! after the last; its own listener gives every connection a fixed 1.4 KiB write buffer for
//! this. Here the buffer exists only between a write and its flush, so an open stream waiting
//! for its next chunk holds none.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use pingora::protocols::l4::stream::Stream as TcpConnection;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl,
    TimingDigest, UniqueID, UniqueIDType,
};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

/// Writes of at least this size go straight to the socket; held bytes are sent before they
/// grow past it.
const HOLD_AT_MOST: usize = 16 * 1024;

#[derive(Debug)]
pub(crate) struct Corked {
    connection: TcpConnection,
    held: Vec<u8>,
    /// How much of `held` the socket has taken.
    sent: usize,
}

impl Corked {
    pub(crate) fn new(connection: TcpConnection) -> Corked {
        Corked {
            connection,
            held: Vec::new(),
            sent: 0,
        }
    }

    /// Sends what is held, then lets the buffer go.
    fn poll_send_held(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.held.len() {
            let n = ready!(Pin::new(&mut self.connection).poll_write(cx, &self.held[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.held = Vec::new();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for Corked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.connection).poll_read(cx, buf)
    }
}

impl AsyncWrite for Corked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.held.len() + buf.len() > HOLD_AT_MOST {
            ready!(this.poll_send_held(cx))?;
        }
        if buf.len() >= HOLD_AT_MOST {
            return Pin::new(&mut this.connection).poll_write(cx, buf);
        }
        if this.held.capacity() == 0 {
            // Room for a usual header and a small body: one allocation per reply.
            this.held.reserve(buf.len().max(1024));
        }
        this.held.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_send_held(cx))?;
        Pin::new(&mut self.connection).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_send_held(cx))?;
        Pin::new(&mut self.connection).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for Corked {
    async fn shutdown(&mut self) {
        if let Err(e) = AsyncWriteExt::shutdown(self).await {
            log::debug!("closing a client connection: {e}");
        }
    }
}

impl UniqueID for Corked {
    fn id(&self) -> UniqueIDType {
        self.connection.id()
    }
}

impl Ssl for Corked {}

impl GetTimingDigest for Corked {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.connection.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.connection.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.connection.get_write_pending_time()
    }
}

impl GetProxyDigest for Corked {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.connection.get_proxy_digest()
    }
}

impl GetSocketDigest for Corked {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.connection.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.connection.set_socket_digest(digest)
    }
}

#[async_trait]
impl Peek for Corked {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.connection.try_peek(buf).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    async fn pair() -> (Corked, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (Corked::new(accepted.unwrap().0.into()), client.unwrap())
    }

    #[tokio::test]
    async fn writes_leave_together_at_the_flush() {
        let (mut corked, mut peer) = pair().await;
        corked.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
        corked.write_all(b"body").await.unwrap();
        let mut probe = [0u8; 64];
        let early = tokio::time::timeout(Duration::from_millis(50), peer.read(&mut probe)).await;
        assert!(early.is_err(), "nothing is sent before the flush");
        corked.flush().await.unwrap();
        assert_eq!(corked.held.capacity(), 0, "the buffer is let go");
        let mut got = vec![0u8; 23];
        peer.read_exact(&mut got).await.unwrap();
        assert_eq!(got, b"HTTP/1.1 200 OK\r\n\r\nbody");
    }

    #[tokio::test]
    async fn large_writes_keep_their_order_and_are_not_held() {
        let (mut corked, mut peer) = pair().await;
        let big = vec![7u8; HOLD_AT_MOST * 2];
        corked.write_all(b"head").await.unwrap();
        corked.write_all(&big).await.unwrap();
        corked.write_all(b"tail").await.unwrap();
        AsyncWriteExt::shutdown(&mut corked).await.unwrap();
        let mut got = Vec::new();
        peer.read_to_end(&mut got).await.unwrap();
        assert_eq!(got.len(), 8 + big.len());
        assert!(got.starts_with(b"head") && got.ends_with(b"tail"));
        assert!(got[4..4 + big.len()].iter().all(|&b| b == 7));
    }
}
