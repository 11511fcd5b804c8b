//! Helpers for every HTTP listener: the plain apps beside the proxy (metrics, mock vendors)
//! and the proxy itself (its session derefs to the same `ServerSession`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ReusedHttpStream};
use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession;
use pingora::server::ShutdownWatch;

/// A plain HTTP listener's request handling, without Pingora's proxy machinery.
#[async_trait]
pub(crate) trait Handler: Send + Sync + 'static {
    /// Answers one request whose header has been read; false when the connection must not be
    /// reused.
    async fn handle(&self, http: &mut ServerSession) -> bool;
}

/// What a listener without the proxy bounds, as the public listener does: the header must
/// arrive whole within `header_timeout` (a kept-alive connection waits that long for its next
/// request) and at most `max_connections` are served at once. Handlers read bodies within a
/// deadline of their own ([`read_body_within`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bounds {
    pub(crate) header_timeout: Duration,
    pub(crate) keepalive: Duration,
    pub(crate) max_connections: usize,
}

impl From<&crate::config::ClientLimits> for Bounds {
    fn from(c: &crate::config::ClientLimits) -> Self {
        Bounds {
            header_timeout: c.header_timeout,
            keepalive: c.keepalive,
            max_connections: c.max_connections,
        }
    }
}

/// Serves a [`Handler`] on Pingora's HTTP server: one request at a time per connection, kept
/// alive between requests unless the server is shutting down, within its [`Bounds`].
pub(crate) struct PlainHttp<H> {
    handler: H,
    bounds: Bounds,
    /// Requests being read or answered now.
    busy: AtomicUsize,
}

impl<H> PlainHttp<H> {
    pub(crate) fn new(handler: H, bounds: Bounds) -> Self {
        PlainHttp {
            handler,
            bounds,
            busy: AtomicUsize::new(0),
        }
    }
}

/// Marks a connection that has been kept alive after an answer.
struct KeptAlive;

/// One of a listener's connection slots, given back when dropped.
struct Slot<'a>(&'a AtomicUsize);

impl<'a> Slot<'a> {
    fn take(count: &'a AtomicUsize, max: usize) -> Option<Slot<'a>> {
        if count.fetch_add(1, Ordering::AcqRel) >= max {
            count.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Slot(count))
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[async_trait]
impl<H: Handler> HttpServerApp for PlainHttp<H> {
    async fn process_new_http(
        self: &Arc<Self>,
        mut http: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        let _slot = Slot::take(&self.busy, self.bounds.max_connections)?;
        // No header in time (closed, garbage, or trickled): nothing to answer. A connection
        // kept alive after an answer (marked so below) may first wait idle for `keepalive`:
        // browsers keep the console's open.
        let kept_alive = http.take_connection_user_context().is_some();
        let wait = if kept_alive {
            self.bounds.keepalive + self.bounds.header_timeout
        } else {
            self.bounds.header_timeout
        };
        let header = tokio::time::timeout(wait, http.read_request()).await;
        if !matches!(header, Ok(Ok(true))) {
            return None;
        }
        let keepalive = self.bounds.keepalive.as_secs().max(1);
        http.set_keepalive(if *shutdown.borrow() {
            None
        } else {
            Some(keepalive)
        });
        if !self.handler.handle(&mut http).await {
            return None;
        }
        let mut settings = HttpPersistentSettings::for_session(&http);
        settings.set_user_context(Box::new(KeptAlive));
        match http.finish().await {
            Ok(reusable) => reusable.map(|s| ReusedHttpStream::from_reusable_stream(s, settings)),
            Err(_) => None,
        }
    }
}

pub(crate) async fn respond(
    http: &mut ServerSession,
    status: u16,
    headers: &[(String, String)],
    body: Bytes,
) -> pingora::Result<()> {
    let mut h = ResponseHeader::build(status, Some(2 + headers.len()))?;
    h.insert_header("content-length", body.len().to_string())?;
    for (k, v) in headers {
        h.insert_header(k.clone(), v.as_str())?;
    }
    http.write_response_header(Box::new(h)).await?;
    if !body.is_empty() {
        http.write_response_body(body, true).await?;
    }
    Ok(())
}

/// Why a request body could not be read whole.
pub(crate) enum BodyError {
    /// Over the limit; the connection is marked not to be reused, since the rest is unread.
    TooLarge { limit: usize },
    /// The client's connection failed or its framing was invalid.
    Read(Box<pingora::Error>),
    /// Not all there within the deadline; the connection is not reused.
    Late,
}

/// [`read_body`] within `deadline`.
pub(crate) async fn read_body_within(
    http: &mut ServerSession,
    limit: usize,
    deadline: Duration,
) -> Result<Bytes, BodyError> {
    match tokio::time::timeout(deadline, read_body(http, limit)).await {
        Ok(read) => read,
        Err(_) => {
            http.set_keepalive(None);
            Err(BodyError::Late)
        }
    }
}

/// Reads the whole request body up to `limit` bytes. A declared `Content-Length` over the
/// limit is refused before anything is read.
pub(crate) async fn read_body(http: &mut ServerSession, limit: usize) -> Result<Bytes, BodyError> {
    let declared = http
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let too_large = |http: &mut ServerSession| {
        http.set_keepalive(None);
        BodyError::TooLarge { limit }
    };
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large(http));
    }
    let mut buf = BytesMut::with_capacity(declared.unwrap_or(16 * 1024));
    while let Some(chunk) = http.read_request_body().await.map_err(BodyError::Read)? {
        if buf.len() + chunk.len() > limit {
            return Err(too_large(http));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}
