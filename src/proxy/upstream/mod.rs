//! The upstream leg: one HTTP/1.1 exchange with a vendor over a pooled connection, within the
//! provider's timeouts.
//!
//! The gateway drives this leg itself from its router (see docs/architecture.md), over its own
//! lean HTTP/1.1 client (`http1`) rather than Pingora's: an open stream's memory is mostly
//! what its two connections keep while they wait (docs/performance.md).

mod http1;
mod pool;
mod resolve;
mod transport;

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use once_cell::sync::Lazy;
use prometheus::IntCounter;

use crate::config::{Endpoint, Timeouts, TrustedCa};
use crate::error::{ErrorKind, GatewayError, GwResult};
use crate::metrics;
use crate::providers::UpstreamRequest;
use http1::{Connection, Failure, Response};
use pool::Pool;
use resolve::Resolver;
use transport::Dial;

static OPENED: Lazy<IntCounter> =
    Lazy::new(|| metrics::UPSTREAM_CONNECTIONS.with_label_values(&["opened"]));
static REUSED: Lazy<IntCounter> =
    Lazy::new(|| metrics::UPSTREAM_CONNECTIONS.with_label_values(&["reused"]));

/// The most the gateway reads of a non-streaming upstream body or error body.
pub(crate) const MAX_UPSTREAM_BODY: usize = 64 * 1024 * 1024;

#[derive(Default)]
pub(crate) struct Upstreams {
    pool: Pool,
    resolver: Resolver,
}

/// A sent request whose response header has arrived.
pub(crate) struct Exchange {
    connection: Connection,
    response: Response,
    /// Where the connection goes back to in the pool once the body was read to the end.
    dial: Dial,
    deadline: Instant,
    idle: Duration,
    /// The body reads' timer, kept from one read to the next: armed no later than a waiting
    /// read would time out, and moved on only when it fires early (data came meanwhile). A
    /// timer armed and dropped at every read cost ~700 instructions a streamed chunk.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Upstreams {
    /// Sends one request and waits for the response header within the first-byte timeout.
    pub(crate) async fn send(
        &self,
        endpoint: &Endpoint,
        timeouts: &Timeouts,
        ca: Option<&TrustedCa>,
        method: &str,
        req: &UpstreamRequest,
    ) -> GwResult<Exchange> {
        let addr = self.resolver.resolve(&endpoint.host, endpoint.port).await?;
        let dial = if endpoint.tls {
            let ca = ca.unwrap_or_else(|| TrustedCa::system());
            Dial::Tls(addr, endpoint.host.clone(), ca.clone())
        } else {
            Dial::Tcp(addr)
        };
        self.exchange(dial, endpoint.authority(), timeouts, method, req)
            .await
    }

    /// Sends one request to this gateway itself over its Unix socket (side-by-side compare).
    pub(crate) async fn send_local(
        &self,
        socket: &str,
        timeouts: &Timeouts,
        req: &UpstreamRequest,
    ) -> GwResult<Exchange> {
        let dial = Dial::Unix(socket.to_string());
        self.exchange(dial, "localhost", timeouts, "POST", req)
            .await
    }

    async fn exchange(
        &self,
        dial: Dial,
        authority: &str,
        timeouts: &Timeouts,
        method: &str,
        req: &UpstreamRequest,
    ) -> GwResult<Exchange> {
        let deadline = Instant::now() + timeouts.total;
        let head = http1::request_head(
            method,
            &req.path_and_query,
            authority,
            req.body.len(),
            &req.headers,
        )
        .ok_or_else(|| {
            // The text may hold a vendor credential: neither the client nor the log gets it.
            log::warn!("an upstream request line or header held a line break");
            GatewayError::new(
                ErrorKind::Internal,
                "The gateway could not build the request for the upstream provider.",
            )
        })?;
        let mut pooled = self.pool.take(&dial);
        loop {
            let reused = pooled.is_some();
            let mut connection = match pooled.take() {
                Some(connection) => {
                    REUSED.inc();
                    connection
                }
                None => {
                    let connection = Connection::new(dial.open(timeouts.connect).await?);
                    OPENED.inc();
                    connection
                }
            };
            let first_byte = timeouts.first_byte.min(remaining(deadline));
            let sent = tokio::time::timeout(first_byte, async {
                if let Err(e) = connection.write_request(&head, &req.body).await {
                    return Err((true, Failure::Io(e)));
                }
                connection.read_response().await.map_err(|e| (false, e))
            })
            .await
            .map_err(|_| response_timeout())?;
            match sent {
                Ok(response) => {
                    return Ok(Exchange {
                        connection,
                        response,
                        dial,
                        deadline,
                        idle: timeouts.idle,
                        timer: None,
                    })
                }
                // The vendor closed a pooled connection while it sat idle and the request
                // could not even be written: nothing reached it, so it goes again on a new
                // connection. Once the request is out it is never replayed here: the vendor
                // may be working on it (and billing it).
                Err((true, _)) if reused => continue,
                Err((_, e)) => return Err(exchange_error(&e)),
            }
        }
    }

    /// Hands a connection back to the pool after a complete, clean response.
    pub(crate) fn release(&self, ex: Exchange) {
        if ex.connection.reusable(&ex.response) {
            self.pool.put(ex.dial, ex.connection);
        }
    }
}

impl Exchange {
    pub(crate) fn status(&self) -> u16 {
        self.response.status
    }

    pub(crate) fn header_str(&self, name: &str) -> Option<&str> {
        self.response.field(name)
    }

    pub(crate) fn content_type(&self) -> Option<&str> {
        self.response.content_type()
    }

    /// The next piece of the body within the idle and total timeouts; None at the end.
    pub(crate) async fn next_chunk(&mut self) -> GwResult<Option<Bytes>> {
        let now = Instant::now();
        if now >= self.deadline {
            return Err(total_timeout());
        }
        // Only later as the body goes on: a timer armed for an earlier read is early, never late.
        let due = (now + self.idle).min(self.deadline);
        let timer = &mut self.timer;
        let mut read = std::pin::pin!(self.connection.read_body(&mut self.response));
        let read = std::future::poll_fn(|cx| {
            if let Poll::Ready(piece) = read.as_mut().poll(cx) {
                return Poll::Ready(Some(piece));
            }
            loop {
                let timer =
                    timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due.into())));
                if timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                if Instant::now() >= due {
                    return Poll::Ready(None);
                }
                timer.as_mut().reset(due.into());
            }
        });
        match read.await {
            Some(Ok(piece)) => Ok(piece),
            Some(Err(e)) => Err(exchange_error(&e)),
            None if remaining(self.deadline).is_zero() => Err(total_timeout()),
            None => Err(response_timeout()),
        }
    }

    /// Reads the whole body, up to `limit` bytes.
    pub(crate) async fn read_all(&mut self, limit: usize) -> GwResult<Bytes> {
        let mut buf = BytesMut::new();
        while let Some(chunk) = self.next_chunk().await? {
            if buf.len() + chunk.len() > limit {
                return Err(GatewayError::new(
                    ErrorKind::UpstreamBadResponse,
                    "The upstream response was larger than the gateway accepts.",
                ));
            }
            if buf.is_empty() && self.response.is_done() {
                // The whole body in one piece, the usual case: no copy.
                return Ok(chunk);
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf.freeze())
    }
}

fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

fn response_timeout() -> GatewayError {
    GatewayError::new(
        ErrorKind::UpstreamTimeout,
        "The upstream provider did not respond in time.",
    )
}

fn total_timeout() -> GatewayError {
    GatewayError::new(
        ErrorKind::UpstreamTimeout,
        "The upstream provider did not finish within the total timeout.",
    )
}

fn bad_response(detail: &str) -> GatewayError {
    log::warn!("upstream exchange failed: {detail}");
    GatewayError::new(
        ErrorKind::UpstreamBadResponse,
        "The upstream provider closed the connection or sent an invalid response.",
    )
}

fn exchange_error(e: &Failure) -> GatewayError {
    match e {
        Failure::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => response_timeout(),
        _ => bad_response(&e.to_string()),
    }
}
