//! Helpers for every HTTP listener: the plain apps beside the proxy (metrics, mock vendors)
//! and the proxy itself (its session derefs to the same `ServerSession`).

use std::sync::Arc;

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

/// Serves a [`Handler`] on Pingora's HTTP server: one request at a time per connection, kept
/// alive between requests unless the server is shutting down.
pub(crate) struct PlainHttp<H>(pub(crate) H);

#[async_trait]
impl<H: Handler> HttpServerApp for PlainHttp<H> {
    async fn process_new_http(
        self: &Arc<Self>,
        mut http: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        // No header (closed or garbage): nothing to answer.
        if !matches!(http.read_request().await, Ok(true)) {
            return None;
        }
        http.set_keepalive(if *shutdown.borrow() { None } else { Some(60) });
        if !self.0.handle(&mut http).await {
            return None;
        }
        let settings = HttpPersistentSettings::for_session(&http);
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
}

/// Reads the whole request body up to `limit` bytes. A declared `Content-Length` over the
/// limit is refused before anything is read.
pub(crate) async fn read_body(http: &mut ServerSession, limit: usize) -> Result<Bytes, BodyError> {
    let declared = http
        .req_header()
        .headers
        .get("content-length")
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
