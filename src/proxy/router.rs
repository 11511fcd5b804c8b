//! Method and path to handler. Every request is answered here or by the handler it picks.

use super::Session;
use bytes::Bytes;

use super::respond::{write_empty, write_json};
use super::{compare, cors, Gateway, Handled, RequestCtx};
use crate::api::models;
use crate::error::{ErrorKind, GatewayError};
use crate::traffic::auth;

const KNOWN_PATHS: [&str; 11] = [
    "/v1/messages/count_tokens",
    "/v1/responses",
    "/v1/chat/completions",
    "/v1/unified",
    "/v1/compare",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/images/generations",
    "/v1/messages",
    "/v1/models",
    "/health",
];

/// Made once: a header name given as text is parsed at every lookup (~300 instructions for
/// this one under callgrind).
static X_FORWARDED_FOR: http::HeaderName = http::HeaderName::from_static("x-forwarded-for");

impl Gateway {
    /// For a compare's per-model request (on this process's socket, with its secret): the
    /// address of the client that asked for the compare.
    fn compared_client(&self, session: &Session) -> Option<std::net::IpAddr> {
        session.server_addr()?.as_unix()?;
        let h = &session.req_header().headers;
        let secret = h.get(compare::COMPARE_HEADER)?.as_bytes();
        if secret != self.local.secret.as_bytes() {
            return None;
        }
        h.get(&X_FORWARDED_FOR)?.to_str().ok()?.trim().parse().ok()
    }

    pub(super) async fn dispatch(&self, session: &mut Session, ctx: &mut RequestCtx) -> Handled {
        let config = ctx.config.clone();
        let method = session.req_header().method.clone();
        let path = session.req_header().uri.path().to_string();
        let origin = session
            .req_header()
            .headers
            .get(http::header::ORIGIN)
            .and_then(|v| v.to_str().ok());
        let header = session.req_header();
        static X_REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");
        ctx.request_id = request_id(header.headers.get(&X_REQUEST_ID).map(|v| v.as_bytes()));
        if let (Some(_), Some(settings)) = (&self.telemetry, &config.telemetry) {
            // Names made once: a name given as text is parsed at every lookup.
            static TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");
            static TRACESTATE: http::HeaderName = http::HeaderName::from_static("tracestate");
            let h = |name: &http::HeaderName| header.headers.get(name).map(|v| v.as_bytes());
            ctx.trace = Some(Box::new(crate::telemetry::RequestTrace::begin(
                settings,
                h(&TRACEPARENT),
                h(&TRACESTATE),
            )));
        }
        ctx.client_ip = auth::client_ip(
            session
                .client_addr()
                .and_then(|a| a.as_inet())
                .map(|a| a.ip()),
            header
                .headers
                .get_all(&X_FORWARDED_FOR)
                .iter()
                .map(|v| v.as_bytes()),
            &config.server.trusted_proxies,
        );
        if let Some(ip) = self.compared_client(session) {
            ctx.client_ip = Some(ip);
        }
        ctx.common_headers = cors::cors_headers(&config.cors, origin);
        ctx.common_headers
            .push(("x-request-id", ctx.request_id.clone()));
        if method == "OPTIONS" {
            let headers = cors::preflight_headers(&config.cors, origin);
            write_empty(session, 204, &headers).await?;
            return Ok(());
        }
        check_header_size(session, config.server.max_header_bytes)?;
        match (method.as_str(), path.as_str()) {
            ("GET", "/health") => {
                let body = Bytes::from_static(b"{\"status\":\"ok\"}");
                write_json(session, 200, body, &[&ctx.common_headers]).await?;
                Ok(())
            }
            ("GET", "/v1/models") => {
                let key = self.authenticate(&config, session, ctx)?;
                let body = if anthropic_client(session) {
                    models::anthropic_list(&config, key, config.loaded_at)
                } else {
                    models::list(&config, key, config.loaded_at)
                };
                write_json(session, 200, body, &[&ctx.common_headers]).await?;
                Ok(())
            }
            ("GET", p) if p.starts_with("/v1/models/") => {
                let key = self.authenticate(&config, session, ctx)?;
                let model = self.allowed_model(&config, key, &p["/v1/models/".len()..])?;
                let body = if anthropic_client(session) {
                    models::anthropic_object(model, config.loaded_at)
                } else {
                    models::object(model, config.loaded_at)
                };
                write_json(session, 200, body, &[&ctx.common_headers]).await?;
                Ok(())
            }
            ("POST", "/v1/chat/completions") => self.chat(session, ctx).await,
            ("POST", "/v1/messages") => self.messages(session, ctx).await,
            ("POST", "/v1/messages/count_tokens") => {
                Box::pin(self.count_tokens(session, ctx)).await
            }
            ("POST", "/v1/responses") => Box::pin(self.responses(session, ctx)).await,
            (_, p) if p.starts_with("/v1/responses/") => {
                let rest = &p["/v1/responses/".len()..];
                Box::pin(self.stored_response(session, ctx, rest)).await
            }
            ("POST", "/v1/completions") => self.completions(session, ctx).await,
            ("POST", "/v1/embeddings") => self.embeddings(session, ctx).await,
            ("POST", "/v1/images/generations") => self.images(session, ctx).await,
            // The rarer endpoints are boxed so that the chat path's future stays small.
            ("POST", "/v1/compare") => Box::pin(self.compare(session, ctx)).await,
            ("POST", "/v1/unified") => Box::pin(self.unified(session, ctx)).await,
            ("POST", p) if p.starts_with("/v1/apps/") && p.ends_with("/completions") => {
                let name = &p["/v1/apps/".len()..p.len() - "/completions".len()];
                Box::pin(self.app(session, ctx, name)).await
            }
            ("POST", p) if p.starts_with("/v1/workflows/") => {
                let rest = &p["/v1/workflows/".len()..];
                match rest.split('/').collect::<Vec<_>>().as_slice() {
                    [name, "run"] => Box::pin(self.run_workflow(session, ctx, name)).await,
                    [name, "nodes", id, "run"] => {
                        Box::pin(self.run_node(session, ctx, name, id)).await
                    }
                    _ => Err(GatewayError::new(
                        ErrorKind::NotFound,
                        format!("Unknown path {path}."),
                    )
                    .into()),
                }
            }
            (_, p) if KNOWN_PATHS.contains(&p) => Err(GatewayError::new(
                ErrorKind::MethodNotAllowed,
                format!("{method} is not allowed on {path}."),
            )
            .into()),
            _ => Err(GatewayError::new(
                ErrorKind::NotFound,
                format!("Invalid URL ({method} {path})"),
            )
            .with_code("unknown_url")
            .into()),
        }
    }
}

/// The client's request id when it is a sane one (visible ASCII, at most 128 bytes), else a
/// new one.
fn request_id(given: Option<&[u8]>) -> String {
    match given {
        Some(id)
            if !id.is_empty() && id.len() <= 128 && id.iter().all(|b| b.is_ascii_graphic()) =>
        {
            String::from_utf8_lossy(id).into_owned()
        }
        _ => crate::api::random_id("req_"),
    }
}

/// Headers over the limit are refused (431) and the connection is not kept.
fn check_header_size(session: &mut Session, limit: usize) -> Result<(), GatewayError> {
    let header_bytes: usize = session
        .req_header()
        .headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    if header_bytes > limit {
        session.set_keepalive(None);
        return Err(GatewayError::new(
            ErrorKind::HeadersTooLarge,
            format!("The request headers are larger than the {limit} bytes this gateway accepts."),
        ));
    }
    Ok(())
}

/// A request from Anthropic's SDK (or Claude Code): it names the API version it speaks.
fn anthropic_client(session: &Session) -> bool {
    session
        .req_header()
        .headers
        .contains_key("anthropic-version")
}
