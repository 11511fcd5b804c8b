//! Opening the byte stream under one vendor connection: TCP, TLS over TCP, or the gateway's own
//! Unix socket, each within its connect timeout.

use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use pingora::tls::{ClientTlsStream, ServerName, TlsConnector};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

use crate::config::TrustedCa;
use crate::error::{ErrorKind, GatewayError, GwResult};

/// Where a connection goes; also the key its idle connections are pooled under.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub(super) enum Dial {
    Tcp(SocketAddr),
    /// TLS to the address, naming and verifying the host, against the provider's roots.
    Tls(SocketAddr, String, TrustedCa),
    Unix(String),
}

impl Dial {
    /// A new connection. TCP has `connect` to be established, and a TLS handshake as long again.
    pub(super) async fn open(&self, connect: Duration) -> GwResult<Transport> {
        match self {
            Dial::Tcp(addr) => Ok(Transport::Tcp(tcp(*addr, connect).await?)),
            Dial::Tls(addr, host, ca) => {
                let tcp = tcp(*addr, connect).await?;
                let name = ServerName::try_from(host.clone()).map_err(|_| {
                    connect_error(format_args!("{host} is not a valid TLS server name"))
                })?;
                let handshake = TlsConnector::from(ca.0.clone()).connect(name, tcp);
                match tokio::time::timeout(connect, handshake).await {
                    Ok(Ok(tls)) => Ok(Transport::Tls(Box::new(tls))),
                    Ok(Err(e)) => Err(connect_error(format_args!("TLS with {host} failed: {e}"))),
                    Err(_) => Err(timeout()),
                }
            }
            Dial::Unix(path) => {
                match tokio::time::timeout(connect, UnixStream::connect(path)).await {
                    Ok(Ok(s)) => Ok(Transport::Unix(s)),
                    Ok(Err(e)) => Err(connect_error(format_args!("{path}: {e}"))),
                    Err(_) => Err(timeout()),
                }
            }
        }
    }
}

async fn tcp(addr: SocketAddr, connect: Duration) -> GwResult<TcpStream> {
    match tokio::time::timeout(connect, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => {
            // Stream chunks are small and must not wait for Nagle's algorithm.
            let _ = s.set_nodelay(true);
            Ok(s)
        }
        Ok(Err(e)) => Err(connect_error(format_args!("{addr}: {e}"))),
        Err(_) => Err(timeout()),
    }
}

fn timeout() -> GatewayError {
    log::warn!("upstream connect timed out");
    GatewayError::new(
        ErrorKind::UpstreamTimeout,
        "The gateway could not connect to the upstream provider.",
    )
}

/// The detail goes to the log only: the client learns that the connection failed.
fn connect_error(detail: std::fmt::Arguments<'_>) -> GatewayError {
    log::warn!("upstream connect failed: {detail}");
    GatewayError::new(
        ErrorKind::UpstreamConnect,
        "The gateway could not connect to the upstream provider.",
    )
}

/// One vendor connection's byte stream.
pub(super) enum Transport {
    Tcp(TcpStream),
    // Boxed: a TLS session is about 1 KB, and most connections in tests and benches are plain.
    Tls(Box<ClientTlsStream<TcpStream>>),
    Unix(UnixStream),
}

impl Transport {
    /// Reads into `buf` with room for `want` more bytes. With `let_go`, on a plain socket that
    /// has nothing to read yet, an empty `buf` is let go while waiting, so that an open stream
    /// between its events holds no read buffer. (A TLS session may hold decrypted bytes its
    /// socket no longer shows, so it is read directly.)
    pub(super) async fn read_into(
        &mut self,
        buf: &mut BytesMut,
        want: usize,
        let_go: bool,
    ) -> io::Result<usize> {
        if let_go && buf.is_empty() {
            // Readiness as tokio last saw it: no syscall, and a short read cleared it.
            poll_fn(|cx| {
                let ready = match self {
                    Transport::Tcp(s) => s.poll_read_ready(cx),
                    Transport::Unix(s) => s.poll_read_ready(cx),
                    Transport::Tls(_) => Poll::Ready(Ok(())),
                };
                if ready.is_pending() {
                    *buf = BytesMut::new();
                }
                ready
            })
            .await?;
        }
        if buf.capacity() - buf.len() < want {
            buf.reserve(want);
        }
        self.read_buf(buf).await
    }
}

macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Transport::Tcp($s) => $e,
            Transport::Tls($s) => $e,
            Transport::Unix($s) => $e,
        }
    };
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        each!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        each!(self, s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        each!(self, s => Pin::new(s).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Transport::Tcp(s) => s.is_write_vectored(),
            Transport::Tls(s) => s.is_write_vectored(),
            Transport::Unix(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => Pin::new(s).poll_shutdown(cx))
    }
}
