//! The gateway's listening sockets and accept loop, as a service on Pingora's server (which
//! still owns the runtime, the signals, shutdown and the hand-over of these sockets on a
//! graceful upgrade).
//!
//! Why not Pingora's listening `Service`: its task per connection keeps the accept-time TLS
//! handshake's state (8 KB, TLS or not) for the connection's whole life and boxes the HTTP
//! app's future once per connection and once per request, about 12 KB of the 31 KB an open
//! stream cost (docs/performance.md). Here the handshake is boxed only while it runs and each
//! HTTP/1 request is served inline in the connection's task. HTTP/2 (chosen by ALPN on TLS)
//! goes to Pingora's own HTTP/2 server.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Poll};
use std::time::Duration;

use async_trait::async_trait;
use bytes::BytesMut;
use pingora::apps::{HttpPersistentSettings, ServerApp};
use pingora::listeners::tls::Acceptor;
use pingora::protocols::http::ServerSession;
use pingora::protocols::l4::socket::SocketAddr as PeerAddr;
use pingora::protocols::l4::stream::Stream as TcpConnection;
use pingora::protocols::{GetSocketDigest, SocketDigest, Stream, ALPN};
use pingora::server::{ListenFds, ShutdownWatch};
use pingora::services::Service;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::net::{TcpListener, TcpSocket};

use super::corked::Corked;
use crate::proxy::Served;
use crate::traffic::auth::KeyDigestMemo;

/// As Pingora's: connections the kernel queues while the loop is busy.
const BACKLOG: u32 = 65535;
/// The most a request's first read takes. What it reads is moved into a buffer of its size,
/// which the session keeps (the header's bytes, the body's first) while the request is served:
/// Pingora's own first read keeps 4 KiB for the session's life, a fifth of an open stream.
const START_READ: usize = 8 * 1024;
/// A TLS handshake that has not finished by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a draining process still looks for a request on an idle kept-alive connection.
const LAST_LOOK: Duration = Duration::from_millis(50);
/// After "too many open files" (EMFILE), accepting again at once would spin.
const PAUSE_WHEN_OUT_OF_FILES: Duration = Duration::from_secs(1);
const EMFILE: i32 = 24;

/// One listen address, over TLS when it has an acceptor.
pub(crate) struct Endpoint {
    pub(crate) addr: String,
    pub(crate) tls: Option<Arc<Acceptor>>,
}

/// The gateway's service: its listen addresses and the app that answers them.
pub(crate) struct GatewayListeners {
    pub(crate) served: Arc<Served>,
    pub(crate) endpoints: Vec<Endpoint>,
    /// Where the server's table of listening sockets is left for the upgrade's hand-over.
    pub(crate) fds_out: Arc<std::sync::OnceLock<ListenFds>>,
}

#[async_trait]
impl Service for GatewayListeners {
    async fn start_service(
        &mut self,
        fds: Option<ListenFds>,
        shutdown: ShutdownWatch,
        _listeners_per_fd: usize,
    ) {
        if let Some(fds) = &fds {
            let _ = self.fds_out.set(fds.clone());
        }
        let mut loops = Vec::new();
        for endpoint in self.endpoints.drain(..) {
            let listener = match listen(&endpoint.addr, fds.as_ref()).await {
                Ok(listener) => listener,
                Err(e) => {
                    log::error!("cannot listen on {}: {e}", endpoint.addr);
                    std::process::exit(1);
                }
            };
            loops.push(tokio::spawn(accept_loop(
                listener,
                endpoint.tls,
                Arc::clone(&self.served),
                shutdown.clone(),
            )));
        }
        for accepting in loops {
            let _ = accepting.await;
        }
    }

    fn name(&self) -> &str {
        "modelmux"
    }
}

/// The socket for `addr`: the one a gateway being upgraded handed over, or a new one, which is
/// then recorded so that it can be handed over in turn.
async fn listen(addr: &str, fds: Option<&ListenFds>) -> std::io::Result<TcpListener> {
    if let Some(fd) = fds.and_then(|fds| fds.lock().get(addr).copied()) {
        // SAFETY: the fd came from the previous gateway as this address's listening socket and
        // nothing else in this process owns it.
        let listener = unsafe { std::net::TcpListener::from_raw_fd(fd) };
        listener.set_nonblocking(true)?;
        return TcpListener::from_std(listener);
    }
    let sock_addr = tokio::net::lookup_host(addr)
        .await?
        .next()
        .ok_or_else(|| std::io::Error::other("the address resolves to nothing"))?;
    let socket = match sock_addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(sock_addr)?;
    let listener = socket.listen(BACKLOG)?;
    if let Some(fds) = fds {
        fds.lock().add(addr.to_string(), listener.as_raw_fd());
    }
    Ok(listener)
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<Arc<Acceptor>>,
    served: Arc<Served>,
    mut shutdown: ShutdownWatch,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            // Draining: the new process (after an upgrade) takes the connections from here.
            () = crate::drain::reached(crate::drain::Phase::Draining) => return,
            changed = shutdown.changed() => match changed {
                Ok(()) if *shutdown.borrow() => return,
                Ok(()) => continue,
                Err(_) => return,
            },
        };
        match accepted {
            Ok((tcp, peer)) => {
                let _ = tcp.set_nodelay(true);
                tokio::spawn(serve_connection(
                    tcp,
                    peer,
                    tls.clone(),
                    Arc::clone(&served),
                    shutdown.clone(),
                ));
            }
            Err(e) => {
                log::error!("accept() failed: {e}");
                if e.raw_os_error() == Some(EMFILE) {
                    tokio::time::sleep(PAUSE_WHEN_OUT_OF_FILES).await;
                }
            }
        }
    }
}

async fn serve_connection(
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    tls: Option<Arc<Acceptor>>,
    served: Arc<Served>,
    shutdown: ShutdownWatch,
) {
    // An accepted connection's first request counts as in flight from the accept (and is
    // counted once, by `serve_one`, from then on): a drain that found nothing else to wait for
    // would otherwise end the process with that request unread in the socket, and the
    // client's connection reset.
    let first = crate::drain::busy();
    let Some(mut stream) = client_stream(tcp, peer, tls).await else {
        return;
    };
    if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
        // HTTP/2 tells its client to go (GOAWAY) and counts its own streams.
        drop(first);
        served.process_new(stream, &shutdown).await;
        return;
    }
    let Some(arrival) = served.arrive(first) else {
        return;
    };
    let start = match tokio::time::timeout_at(arrival.header_due, read_start(&mut stream)).await {
        Ok(Ok(start)) if !start.is_empty() => start,
        Ok(_) => return,
        Err(_) => {
            Served::header_late();
            return;
        }
    };
    let mut session = ServerSession::new_http1(stream);
    // Requests a client pipelines are answered in order (RFC 9112 §9.3.2), one after another;
    // the setting carries over to each next request on the connection.
    session.set_pipelining_enabled(true);
    session.set_pipelined_prefix(start);
    let mut arrival = Some(arrival);
    let mut key_digest = KeyDigestMemo::default();
    while served
        .serve_one(&mut session, &shutdown, arrival.take(), &mut key_digest)
        .await
    {
        let settings = HttpPersistentSettings::for_session(&session);
        let Ok(Some(reusable)) = session.finish().await else {
            return;
        };
        let (mut stream, pipelined) = reusable.into_parts();
        // An idle kept-alive connection waits up to `keepalive` for its next request; only
        // once that has begun does the header deadline run (as nginx's keepalive_timeout and
        // client_header_timeout).
        let start = match pipelined.filter(|p| !p.is_empty()) {
            Some(bytes) => bytes,
            None => match next_request(&mut stream, served.keepalive()).await {
                Some(bytes) => bytes,
                None => return,
            },
        };
        session = ServerSession::new_http1(stream);
        settings.apply_to_session(&mut session);
        session.set_pipelined_prefix(start);
    }
}

/// The first bytes of a kept-alive connection's next request, read within `idle`; None when
/// the client closes, stays silent, or the gateway is draining.
async fn next_request(stream: &mut Stream, idle: Duration) -> Option<BytesMut> {
    let read = tokio::select! {
        biased;
        read = tokio::time::timeout(idle, read_start(stream)) => read,
        () = crate::drain::reached(crate::drain::Phase::Draining) => {
            // A request the client sent as the drain began (it cannot know) is answered, its
            // reply closing the connection: closing with it unread would reset the connection
            // under it. One that has not come within `LAST_LOOK` is not waited for.
            tokio::time::timeout(LAST_LOOK, read_start(stream)).await
        }
    };
    match read {
        Ok(Ok(start)) if !start.is_empty() => Some(start),
        _ => None,
    }
}

thread_local! {
    /// Where a request's first read lands before it is moved into a buffer of its size: one
    /// per thread, borrowed only within a poll, so no connection's task holds it.
    static START_SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; START_READ].into_boxed_slice());
}

/// A request's first bytes (up to `START_READ`), in a buffer of their size; empty when the
/// client closed.
async fn read_start(stream: &mut Stream) -> std::io::Result<BytesMut> {
    std::future::poll_fn(|cx| {
        START_SCRATCH.with_borrow_mut(|scratch| {
            let mut read = ReadBuf::new(scratch);
            ready!(Pin::new(&mut *stream).poll_read(cx, &mut read))?;
            Poll::Ready(Ok(BytesMut::from(read.filled())))
        })
    })
    .await
}

/// The accepted connection as Pingora's stream, after the TLS handshake if the listener has
/// one. Its own future, so that its state is not kept in the connection's task.
async fn client_stream(
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    tls: Option<Arc<Acceptor>>,
) -> Option<Stream> {
    let mut connection = TcpConnection::from(tcp);
    let digest = SocketDigest::from_raw_fd(connection.as_raw_fd());
    let _ = digest.peer_addr.set(Some(PeerAddr::Inet(peer)));
    connection.set_socket_digest(digest);
    let connection = Corked::new(connection);
    let Some(acceptor) = tls else {
        return Some(Box::new(connection));
    };
    // Boxed so that its state is freed once the handshake is done.
    let handshake = Box::pin(tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        acceptor.tls_handshake(connection),
    ));
    match handshake.await {
        Ok(Ok(tls)) => Some(Box::new(tls)),
        Ok(Err(e)) => {
            log::debug!("TLS handshake with {peer} failed: {e}");
            None
        }
        Err(_) => {
            log::debug!("TLS handshake with {peer} timed out");
            None
        }
    }
}
