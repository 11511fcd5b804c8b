//! Writing answers to the client, reading its body, and noticing when it hangs up.

use super::Session;
use bytes::Bytes;
use pingora::http::ResponseHeader;

use super::Stop;
use crate::api::ClientApi;
use crate::error::{ErrorKind, GatewayError};
use crate::http_app::{self, BodyError};

/// Groups of extra response headers (CORS, rate limits, an error's own).
pub(crate) type HeaderGroups<'a> = [&'a [(&'static str, String)]];

/// A JSON document the gateway made itself (compare, apps, workflows), written whole.
pub(crate) async fn write_value(
    session: &mut Session,
    status: u16,
    reply: &serde_json::Value,
    extra: &HeaderGroups<'_>,
) -> pingora::Result<()> {
    let body = Bytes::from(serde_json::to_vec(reply).expect("a Value always serializes"));
    write_json(session, status, body, extra).await
}

/// A response header sized for `own` headers, the extra ones and the two Pingora adds (date,
/// connection), so that it never grows, and without a second map keeping the names' case
/// (HTTP header names are case-insensitive): Pingora keeps the header for the whole response,
/// which for a stream is its whole life.
fn response_header(
    status: u16,
    own: usize,
    extra: &HeaderGroups<'_>,
) -> pingora::Result<ResponseHeader> {
    let count = own + 2 + extra.iter().map(|g| g.len()).sum::<usize>();
    ResponseHeader::build_no_case(status, Some(count))
}

pub(crate) async fn write_json(
    session: &mut Session,
    status: u16,
    body: Bytes,
    extra: &HeaderGroups<'_>,
) -> pingora::Result<()> {
    let mut h = response_header(status, 2, extra)?;
    h.insert_header("content-type", "application/json")?;
    h.insert_header("content-length", body.len().to_string())?;
    for (k, v) in extra.iter().flat_map(|g| g.iter()) {
        h.insert_header(*k, v.as_str())?;
    }
    session.write_response_header(Box::new(h)).await?;
    session.write_response_body(body, true).await
}

pub(crate) async fn write_empty(
    session: &mut Session,
    status: u16,
    extra: &[(&'static str, String)],
) -> pingora::Result<()> {
    let mut h = response_header(status, 1, &[extra])?;
    h.insert_header("content-length", "0")?;
    for (k, v) in extra {
        h.insert_header(*k, v.as_str())?;
    }
    session.write_response_header(Box::new(h)).await?;
    session.finish_body().await
}

pub(crate) async fn write_stream_header(
    session: &mut Session,
    extra: &HeaderGroups<'_>,
) -> pingora::Result<()> {
    let mut h = response_header(200, 3, extra)?;
    h.insert_header("content-type", "text/event-stream")?;
    h.insert_header("cache-control", "no-cache")?;
    h.insert_header("transfer-encoding", "chunked")?;
    for (k, v) in extra.iter().flat_map(|g| g.iter()) {
        h.insert_header(*k, v.as_str())?;
    }
    session.write_response_header(Box::new(h)).await
}

/// An error in the client's API shape, with its own headers and the CORS ones.
pub(crate) async fn write_error(
    session: &mut Session,
    api: ClientApi,
    cors: &[(&'static str, String)],
    e: &GatewayError,
) -> pingora::Result<()> {
    let retry_after: Vec<(&'static str, String)> = e
        .retry_after_secs
        .map(|secs| ("retry-after", secs.to_string()))
        .into_iter()
        .collect();
    write_json(
        session,
        e.status(),
        api.error_body(e),
        &[cors, &e.headers, &retry_after],
    )
    .await
}

/// Reads the request body up to `limit` within `deadline`, answering 413 (and closing the
/// connection, since the rest of the body is not read) when it is larger, 408 when it is late.
pub(crate) async fn read_body(
    session: &mut Session,
    limit: usize,
    deadline: std::time::Duration,
) -> Result<Bytes, Stop> {
    let read = http_app::read_body_within(session, limit, deadline).await;
    read.map_err(|e| match e {
        BodyError::Late => Stop::Reply(GatewayError::new(
            ErrorKind::RequestTimeout,
            format!("The request body did not arrive within {deadline:?}."),
        )),
        BodyError::TooLarge { limit } => Stop::Reply(
            GatewayError::new(
                ErrorKind::BodyTooLarge,
                format!("The request body is larger than the {limit} bytes this gateway accepts."),
            )
            .with_code("request_too_large"),
        ),
        BodyError::Read(e) => Stop::Downstream(e),
    })
}

/// Resolves when the client closes its connection; the upstream leg is then dropped, which
/// closes the vendor's connection and so cancels its work.
pub(crate) async fn client_gone(session: &mut Session) -> Box<pingora::Error> {
    session.set_abort_on_close(true);
    loop {
        match session.read_body_or_idle(true).await {
            Err(e) => return e,
            // Bytes of a next request (pipelining): nothing to watch for until this one ends.
            Ok(_) => std::future::pending::<()>().await,
        }
    }
}
