//! Method and path to handler. Every request is answered here or by the handler it picks.

use super::Session;
use bytes::Bytes;

use super::respond::{write_empty, write_json};
use super::{cors, Gateway, Handled, RequestCtx};
use crate::api::models;
use crate::error::{ErrorKind, GatewayError};

const KNOWN_PATHS: [&str; 4] = [
    "/v1/chat/completions",
    "/v1/messages",
    "/v1/models",
    "/health",
];

impl Gateway {
    pub(super) async fn dispatch(&self, session: &mut Session, ctx: &mut RequestCtx) -> Handled {
        let config = ctx.config.clone();
        let method = session.req_header().method.clone();
        let path = session.req_header().uri.path().to_string();
        let origin = session
            .req_header()
            .headers
            .get("origin")
            .and_then(|v| v.to_str().ok());
        ctx.cors = cors::cors_headers(&config.cors, origin);
        if method == "OPTIONS" {
            let headers = cors::preflight_headers(&config.cors, origin);
            write_empty(session, 204, &headers).await?;
            return Ok(());
        }
        let header_bytes: usize = session
            .req_header()
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 4)
            .sum();
        if header_bytes > config.server.max_header_bytes {
            session.set_keepalive(None);
            return Err(GatewayError::new(
                ErrorKind::HeadersTooLarge,
                format!(
                    "The request headers are larger than the {} bytes this gateway accepts.",
                    config.server.max_header_bytes
                ),
            )
            .into());
        }
        match (method.as_str(), path.as_str()) {
            ("GET", "/health") => {
                let body = Bytes::from_static(b"{\"status\":\"ok\"}");
                write_json(session, 200, body, &[&ctx.cors]).await?;
                Ok(())
            }
            ("GET", "/v1/models") => {
                let key = self.authenticate(&config, session, ctx)?;
                let body = models::list(&config, key, config.loaded_at);
                write_json(session, 200, body, &[&ctx.cors]).await?;
                Ok(())
            }
            ("GET", p) if p.starts_with("/v1/models/") => {
                let key = self.authenticate(&config, session, ctx)?;
                let model = self.allowed_model(&config, key, &p["/v1/models/".len()..])?;
                let body = models::object(model, config.loaded_at);
                write_json(session, 200, body, &[&ctx.cors]).await?;
                Ok(())
            }
            ("POST", "/v1/chat/completions") => self.chat(session, ctx).await,
            ("POST", "/v1/messages") => self.messages(session, ctx).await,
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
