//! Helpers for the plain HTTP apps that run beside the proxy (metrics listener, mock vendors).

use bytes::Bytes;
use pingora::apps::{HttpPersistentSettings, ReusedHttpStream};
use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession;
use pingora::server::ShutdownWatch;

/// Reads the request header; false when the client sent none (closed or garbage).
pub async fn begin(http: &mut ServerSession, shutdown: &ShutdownWatch) -> bool {
    if !matches!(http.read_request().await, Ok(true)) {
        return false;
    }
    http.set_keepalive(if *shutdown.borrow() { None } else { Some(60) });
    true
}

/// Hands the connection back for the next request when the exchange ended cleanly.
pub async fn end(http: ServerSession) -> Option<ReusedHttpStream> {
    let settings = HttpPersistentSettings::for_session(&http);
    match http.finish().await {
        Ok(reusable) => reusable.map(|s| ReusedHttpStream::from_reusable_stream(s, settings)),
        Err(_) => None,
    }
}

pub async fn respond(
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

/// Reads the whole request body up to `limit` bytes; None when it is larger or the read fails.
pub async fn read_body(http: &mut ServerSession, limit: usize) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        match http.read_request_body().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > limit {
                    return None;
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Some(body),
            Err(_) => return None,
        }
    }
}
