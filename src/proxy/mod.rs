//! The Pingora proxy service. Its phases stay thin: `request_filter` dispatches on method and
//! path and answers every request itself (the upstream leg included, see `upstream.rs`), and
//! `logging` settles rate limits and budgets with the real usage and records metrics.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::ErrorSource;
use serde::Serialize;

use crate::api::anthropic;
use crate::config::{ClientKey, Config, PublicModel, Target, Timeouts};
use crate::error::{ErrorKind, GatewayError, GwResult};
use crate::metrics;
use crate::providers::openai::wire::ChatRequest;
use crate::providers::{self, ClientRequest, StreamState, Usage, VendorTarget};
use crate::traffic::auth;
use crate::traffic::breaker::Breakers;
use crate::traffic::budget::Budgets;
use crate::traffic::failover;
use crate::traffic::limits::{Admission, Backend, Limiter};
use crate::traffic::routing;
use relay::{ClientApi, Relay};
use upstream::{Exchange, Upstreams, MAX_UPSTREAM_BODY};
use vendor_token::TokenCache;

pub mod edge;
pub mod relay;
pub mod upstream;
pub mod vendor_token;

pub struct Gateway {
    config: Arc<Config>,
    upstreams: Upstreams,
    tokens: TokenCache,
    breakers: Breakers,
    limiter: Limiter,
    budgets: Budgets,
    /// `created` for `/v1/models`: the time this config went live.
    started: u64,
}

/// Per-request state. Labels are set only from configured names.
pub struct RequestCtx {
    start: Instant,
    /// The API the client called; errors are written in its shape.
    api: ClientApi,
    model: Option<String>,
    provider: Option<String>,
    usage: Option<Usage>,
    upstream_error: Option<ErrorKind>,
    /// The caller's key (index into the config's keys), once authenticated.
    key: Option<usize>,
    /// What the rate limits reserved for this request, settled with the real usage.
    admission: Option<Admission>,
    /// CORS headers for the caller's origin, on every response and error.
    cors: Vec<(&'static str, String)>,
}

impl RequestCtx {
    /// What a successful reply carries: CORS and, once admitted, the `x-ratelimit-*` headers.
    fn success_headers(&self) -> [&[(&'static str, String)]; 2] {
        let limits = self.admission.as_ref().map_or(&[][..], |a| &a.headers[..]);
        [&self.cors, limits]
    }
}

/// Why a handler stopped early: an error to send the client, or a client that went away.
enum Stop {
    Reply(GatewayError),
    Downstream(Box<pingora::Error>),
}

impl From<GatewayError> for Stop {
    fn from(e: GatewayError) -> Self {
        Stop::Reply(e)
    }
}

impl From<Box<pingora::Error>> for Stop {
    fn from(e: Box<pingora::Error>) -> Self {
        Stop::Downstream(e)
    }
}

type Handled = Result<(), Stop>;

impl Gateway {
    pub fn new(config: Arc<Config>, upstreams: Upstreams) -> Self {
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let breakers = Breakers::new(config.breaker.clone());
        let backend = Arc::new(Backend::new(&config.limits_backend));
        Gateway {
            config,
            upstreams,
            tokens: TokenCache::default(),
            breakers,
            limiter: Limiter::new(backend.clone()),
            budgets: Budgets::new(backend),
            started,
        }
    }

    async fn dispatch(&self, session: &mut Session, ctx: &mut RequestCtx) -> Handled {
        let method = session.req_header().method.clone();
        let path = session.req_header().uri.path().to_string();
        let origin = session
            .req_header()
            .headers
            .get("origin")
            .and_then(|v| v.to_str().ok());
        ctx.cors = edge::cors_headers(&self.config.cors, origin);
        if method == "OPTIONS" {
            let headers = edge::preflight_headers(&self.config.cors, origin);
            write_empty(session, 204, &headers).await?;
            return Ok(());
        }
        let header_bytes: usize = session
            .req_header()
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 4)
            .sum();
        if header_bytes > self.config.server.max_header_bytes {
            session.set_keepalive(None);
            return Err(GatewayError::new(
                ErrorKind::HeadersTooLarge,
                format!(
                    "The request headers are larger than the {} bytes this gateway accepts.",
                    self.config.server.max_header_bytes
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
                let key = self.authenticate(session, ctx)?;
                let body = self.model_list(key);
                write_json(session, 200, body, &[&ctx.cors]).await?;
                Ok(())
            }
            ("GET", p) if p.starts_with("/v1/models/") => {
                let key = self.authenticate(session, ctx)?;
                let id = &p["/v1/models/".len()..];
                let model = self.allowed_model(key, id)?;
                let body = self.model_object(&model.name, model.targets.first());
                write_json(session, 200, body, &[&ctx.cors]).await?;
                Ok(())
            }
            ("POST", "/v1/chat/completions") => self.chat(session, ctx).await,
            ("POST", "/v1/messages") => self.messages(session, ctx).await,
            (_, "/v1/chat/completions" | "/v1/messages" | "/v1/models" | "/health") => {
                Err(GatewayError::new(
                    ErrorKind::MethodNotAllowed,
                    format!("{method} is not allowed on {path}."),
                )
                .into())
            }
            _ => Err(GatewayError::new(
                ErrorKind::NotFound,
                format!("Invalid URL ({method} {path})"),
            )
            .with_code("unknown_url")
            .into()),
        }
    }

    /// The caller's key; its position is kept in the context for settling limits and budgets.
    fn authenticate(&self, session: &Session, ctx: &mut RequestCtx) -> GwResult<&ClientKey> {
        let h = session.req_header();
        let presented = auth::presented_key(
            h.headers.get("authorization").map(|v| v.as_bytes()),
            h.headers.get("x-api-key").map(|v| v.as_bytes()),
        );
        let index = auth::authenticate_index(&self.config.keys, presented)?;
        ctx.key = Some(index);
        Ok(&self.config.keys[index])
    }

    fn allowed_model(&self, key: &ClientKey, name: &str) -> GwResult<&PublicModel> {
        let model = self.config.model(name).ok_or_else(|| {
            GatewayError::new(
                ErrorKind::UnknownModel,
                format!("The model `{name}` does not exist or you do not have access to it."),
            )
            .with_param(Some("model"))
            .with_code("model_not_found")
        })?;
        if !key.may_use(&model.name) {
            return Err(GatewayError::new(
                ErrorKind::ModelNotAllowed,
                format!("This API key is not allowed to use the model `{name}`."),
            )
            .with_param(Some("model"))
            .with_code("model_not_allowed"));
        }
        Ok(model)
    }

    fn model_list(&self, key: &ClientKey) -> Bytes {
        #[derive(Serialize)]
        struct List<'a> {
            object: &'static str,
            data: Vec<ModelObject<'a>>,
        }
        let data = self
            .config
            .models
            .iter()
            .filter(|m| key.may_use(&m.name))
            .map(|m| self.model_entry(&m.name, m.targets.first()))
            .collect();
        Bytes::from(
            serde_json::to_vec(&List {
                object: "list",
                data,
            })
            .expect("serializable"),
        )
    }

    fn model_object(&self, name: &str, first: Option<&Target>) -> Bytes {
        Bytes::from(serde_json::to_vec(&self.model_entry(name, first)).expect("serializable"))
    }

    fn model_entry<'a>(&self, name: &'a str, first: Option<&Target>) -> ModelObject<'a> {
        ModelObject {
            id: name,
            object: "model",
            created: self.started,
            owned_by: first.map_or("modelmux", |t| t.provider.kind.as_str()),
        }
    }

    async fn chat(&self, session: &mut Session, ctx: &mut RequestCtx) -> Handled {
        let key = self.authenticate(session, ctx)?;
        let body = read_body(session, self.config.server.max_body_bytes).await?;
        let request = ChatRequest::parse(&body)?;
        let model = self.allowed_model(key, &request.model)?;
        let max_tokens = ["max_completion_tokens", "max_tokens"]
            .iter()
            .find_map(|m| {
                request
                    .body
                    .get(m)
                    .and_then(|v| v.get().parse::<u64>().ok())
            });
        self.admit(ctx, key, model, body.len(), max_tokens).await?;
        let mut client_request = ClientRequest::openai(&request);
        self.complete(session, ctx, &mut client_request, model)
            .await
    }

    /// `POST /v1/messages`: Anthropic's API in front of any routed model.
    async fn messages(&self, session: &mut Session, ctx: &mut RequestCtx) -> Handled {
        ctx.api = ClientApi::Anthropic;
        let key = self.authenticate(session, ctx)?;
        let body = read_body(session, self.config.server.max_body_bytes).await?;
        let (model_name, request) = anthropic::parse_request(&body)?;
        let model = self.allowed_model(key, &model_name)?;
        self.admit(ctx, key, model, body.len(), request.max_tokens)
            .await?;
        let mut client_request = ClientRequest::typed(request);
        self.complete(session, ctx, &mut client_request, model)
            .await
    }

    /// Budget and rate limits, before anything goes upstream. Tokens are estimated from the
    /// body (about 4 bytes a token) plus the completion the client allows.
    async fn admit(
        &self,
        ctx: &mut RequestCtx,
        key: &ClientKey,
        model: &PublicModel,
        body_len: usize,
        max_tokens: Option<u64>,
    ) -> GwResult<()> {
        ctx.model = Some(model.name.clone());
        self.budgets.check(key).await?;
        let estimate = (body_len / 4) as u64 + max_tokens.unwrap_or(0);
        let admission = self.limiter.admit(key, model, estimate).await?;
        ctx.admission = Some(admission);
        Ok(())
    }

    /// Sends the request to the model's targets in their configured order and relays the reply
    /// in the client's API. Before any byte has reached the client, a failed attempt (connect
    /// error, timeout, 5xx, 429, no first byte in time) moves on to the next healthy target,
    /// with exponential backoff and jitter, honouring `Retry-After`, within the route's deadline.
    async fn complete(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        request: &mut ClientRequest<'_>,
        model: &PublicModel,
    ) -> Handled {
        if model.redact_pii {
            request.rewrite_text(edge::redact)?;
        }
        let policy = &model.retry;
        let deadline = ctx.start + policy.deadline;
        let order = routing::attempt_order(model);
        let mut plan = failover::Plan::new(order.len());
        let mut last: Option<GatewayError> = None;
        for attempt in 0..policy.attempts {
            let available: Vec<bool> = order
                .iter()
                .map(|t| self.breakers.get(&t.provider.name, &t.model).available())
                .collect();
            let Some(index) = plan.next(&available) else {
                break;
            };
            let target = order[index];
            if attempt > 0 {
                let moved = plan.previous() != Some(index);
                let wait = failover::backoff(policy, attempt, last.as_ref(), moved);
                if Instant::now() + wait >= deadline {
                    break;
                }
                metrics::RETRIES
                    .with_label_values(&[
                        model.name.as_str(),
                        if moved { "failover" } else { "retry" },
                    ])
                    .inc();
                log::info!(
                    "retrying {} on {}/{} in {wait:?} after: {}",
                    model.name,
                    target.provider.name,
                    target.model,
                    last.as_ref().map_or(String::new(), |e| e.to_string())
                );
                tokio::time::sleep(wait).await;
            }
            plan.mark(index);
            let breaker = self.breakers.get(&target.provider.name, &target.model);
            if !breaker.allow() {
                continue;
            }
            ctx.provider = Some(target.provider.name.clone());
            let timeouts = model.timeouts.apply(&target.provider.timeouts);
            let result = self
                .attempt_with_token(session, ctx, request, target, &timeouts, &model.name)
                .await;
            match result {
                Err(Stop::Reply(e)) if failover::counts_against_target(&e) => {
                    breaker.record(false);
                    metrics::ATTEMPTS
                        .with_label_values(&[&target.provider.name, e.kind.as_str()])
                        .inc();
                    if session.response_written().is_some() {
                        return Err(Stop::Reply(e));
                    }
                    last = Some(e);
                }
                other => {
                    breaker.record(true);
                    metrics::ATTEMPTS
                        .with_label_values(&[&target.provider.name, "ok"])
                        .inc();
                    return other;
                }
            }
        }
        Err(last
            .unwrap_or_else(|| {
                GatewayError::new(
                    ErrorKind::UpstreamOverloaded,
                    "Every target for this model is unavailable right now; try again shortly.",
                )
                .with_retry_after(Some(1))
            })
            .into())
    }

    /// One attempt at one target; a Qianfan access token the vendor rejects is refreshed and
    /// the attempt repeated once.
    async fn attempt_with_token(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        request: &mut ClientRequest<'_>,
        target: &Target,
        timeouts: &Timeouts,
        public_model: &str,
    ) -> Handled {
        let provider = &target.provider;
        let mut refreshed = false;
        loop {
            let token = if providers::needs_access_token(provider) {
                Some(
                    self.tokens
                        .token(provider, &self.upstreams)
                        .await
                        .inspect_err(|e| ctx.upstream_error = Some(e.kind))?,
                )
            } else {
                None
            };
            let vendor_target = VendorTarget {
                provider,
                vendor_model: &target.model,
                access_token: token.as_deref(),
            };
            match self
                .attempt(
                    session,
                    ctx,
                    request,
                    &vendor_target,
                    timeouts,
                    public_model,
                )
                .await
            {
                Err(Stop::Reply(e)) if e.kind == ErrorKind::UpstreamTokenExpired && !refreshed => {
                    refreshed = true;
                    if let Some(t) = &token {
                        self.tokens.invalidate(provider, t).await;
                    }
                }
                other => return other,
            }
        }
    }

    async fn attempt(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        request: &mut ClientRequest<'_>,
        target: &VendorTarget<'_>,
        timeouts: &Timeouts,
        public_model: &str,
    ) -> Handled {
        let provider = target.provider;
        let upstream_request = providers::encode_chat(request, target)?;
        // A client that hangs up while the vendor thinks cancels the vendor's request. Watching
        // costs a syscall, so only replies slower than a few milliseconds are watched.
        let watch = async {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            client_gone(session).await
        };
        let sent = tokio::select! {
            sent = self.upstreams.send(&provider.endpoint, timeouts, provider.ca.as_ref(), "POST", &upstream_request) => sent,
            gone = watch => return Err(Stop::Downstream(gone)),
        };
        let mut exchange = sent.inspect_err(|e| ctx.upstream_error = Some(e.kind))?;

        let status = exchange.status();
        if !(200..300).contains(&status) {
            let retry_after = exchange
                .header_str("retry-after")
                .and_then(|v| v.trim().parse::<u64>().ok());
            let body = exchange.read_all(1024 * 1024).await;
            let e = providers::map_error(
                provider,
                status,
                retry_after,
                body.as_deref().unwrap_or_default(),
            );
            ctx.upstream_error = Some(e.kind);
            // Only a connection whose error body was read to the end can be reused.
            if body.is_ok() {
                self.upstreams.release(exchange).await;
            }
            return Err(e.into());
        }
        // Servers that omit the content type on a stream are taken at their word.
        let is_sse = exchange
            .header_str("content-type")
            .is_none_or(|c| c.contains("event-stream"));
        if request.stream() && is_sse {
            let relay = Relay::new(ctx.api, provider, public_model, request.include_usage());
            return self.relay_stream(session, ctx, exchange, relay).await;
        }
        let body = exchange
            .read_all(MAX_UPSTREAM_BODY)
            .await
            .inspect_err(|e| ctx.upstream_error = Some(e.kind))?;
        self.upstreams.release(exchange).await;
        if request.stream() {
            // One JSON body for a stream request: an error in a 200 (Qianfan v1), or a vendor
            // that had nothing to stream. Errors still get a status; a reply is replayed.
            let completion = providers::decode_chat(provider, &body)
                .inspect_err(|e| ctx.upstream_error = Some(e.kind))?;
            let mut out = Vec::new();
            ctx.usage = relay::replay_as_stream(
                ctx.api,
                public_model,
                request.include_usage(),
                &completion,
                &mut out,
            );
            write_stream_header(session, &ctx.success_headers()).await?;
            session
                .write_response_body(Some(Bytes::from(out)), true)
                .await?;
            return Ok(());
        }
        let (reply, usage) = relay::render_reply(ctx.api, provider, public_model, &body)
            .inspect_err(|e| ctx.upstream_error = Some(e.kind))?;
        ctx.usage = usage;
        write_json(session, 200, reply, &ctx.success_headers()).await?;
        Ok(())
    }

    /// Relays a stream event by event as the vendor sends it; never buffers it whole. Once the
    /// header is out, failures can only be reported in-band, as a final error event.
    async fn relay_stream(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        mut exchange: Exchange,
        mut relay: Relay,
    ) -> Handled {
        write_stream_header(session, &ctx.success_headers()).await?;
        let mut out = Vec::with_capacity(4096);
        let state = loop {
            out.clear();
            // Mid-stream, a client that hung up fails the next write, which drops the vendor's
            // connection; only the wait for the first byte needs watching (`client_gone`).
            let state = match exchange.next_chunk().await {
                Ok(Some(chunk)) => relay.push(&chunk, &mut out),
                Ok(None) => relay.finish(&mut out),
                Err(e) => {
                    ctx.upstream_error = Some(e.kind);
                    relay.fail(e, &mut out)
                }
            };
            // Kept as it arrives, so a client that leaves early is still charged what it used.
            ctx.usage = relay.usage();
            if !out.is_empty() {
                session
                    .write_response_body(Some(Bytes::copy_from_slice(&out)), false)
                    .await?;
            }
            if state != StreamState::Open {
                break state;
            }
        };
        session.write_response_body(None, true).await?;
        if state == StreamState::Done && exchange_drained(&mut exchange).await {
            self.upstreams.release(exchange).await;
        } else if state == StreamState::Failed && ctx.upstream_error.is_none() {
            ctx.upstream_error = Some(ErrorKind::UpstreamBadResponse);
        }
        Ok(())
    }
}

/// Resolves when the client closes its connection; the upstream leg is then dropped, which
/// closes the vendor's connection and so cancels its work.
async fn client_gone(session: &mut Session) -> Box<pingora::Error> {
    session.set_abort_on_close(true);
    loop {
        match session.read_body_or_idle(true).await {
            Err(e) => return e,
            // Bytes of a next request (pipelining): nothing to watch for until this one ends.
            Ok(_) => std::future::pending::<()>().await,
        }
    }
}

async fn write_stream_header(
    session: &mut Session,
    extra: &HeaderGroups<'_>,
) -> pingora::Result<()> {
    let mut h = ResponseHeader::build(200, Some(8))?;
    h.insert_header("content-type", "text/event-stream")?;
    h.insert_header("cache-control", "no-cache")?;
    h.insert_header("transfer-encoding", "chunked")?;
    for (k, v) in extra.iter().flat_map(|g| g.iter()) {
        h.insert_header(*k, v.as_str())?;
    }
    session.write_response_header(Box::new(h), false).await
}

/// After `[DONE]` the vendor's body should be at its end; only then may the connection be
/// reused. A vendor that keeps it open longer is not waited for.
async fn exchange_drained(exchange: &mut Exchange) -> bool {
    let end = tokio::time::timeout(std::time::Duration::from_millis(100), exchange.next_chunk());
    matches!(end.await, Ok(Ok(None)))
}

#[derive(Serialize)]
struct ModelObject<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    owned_by: &'static str,
}

/// Reads the request body up to `limit`, answering 413 (and closing the connection, since the
/// rest of the body is not read) when it is larger.
async fn read_body(session: &mut Session, limit: usize) -> Result<Bytes, Stop> {
    let too_large = || {
        GatewayError::new(
            ErrorKind::BodyTooLarge,
            format!("The request body is larger than the {limit} bytes this gateway accepts."),
        )
        .with_code("request_too_large")
    };
    let declared = session
        .req_header()
        .headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        session.set_keepalive(None);
        return Err(too_large().into());
    }
    let mut buf = BytesMut::with_capacity(declared.unwrap_or(16 * 1024));
    while let Some(chunk) = session.read_request_body().await? {
        if buf.len() + chunk.len() > limit {
            session.set_keepalive(None);
            return Err(too_large().into());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// Groups of extra response headers (CORS, rate limits, an error's own).
type HeaderGroups<'a> = [&'a [(&'static str, String)]];

async fn write_json(
    session: &mut Session,
    status: u16,
    body: Bytes,
    extra: &HeaderGroups<'_>,
) -> pingora::Result<()> {
    let mut h = ResponseHeader::build(status, Some(8))?;
    h.insert_header("content-type", "application/json")?;
    h.insert_header("content-length", body.len().to_string())?;
    for (k, v) in extra.iter().flat_map(|g| g.iter()) {
        h.insert_header(*k, v.as_str())?;
    }
    session.write_response_header(Box::new(h), false).await?;
    session.write_response_body(Some(body), true).await
}

async fn write_empty(
    session: &mut Session,
    status: u16,
    extra: &[(&'static str, String)],
) -> pingora::Result<()> {
    let mut h = ResponseHeader::build(status, Some(1 + extra.len()))?;
    h.insert_header("content-length", "0")?;
    for (k, v) in extra {
        h.insert_header(*k, v.as_str())?;
    }
    session.write_response_header(Box::new(h), true).await
}

/// An error in the client's API shape, with its own headers and the CORS ones.
async fn write_error(
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

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            start: Instant::now(),
            api: ClientApi::OpenAi,
            model: None,
            provider: None,
            usage: None,
            upstream_error: None,
            key: None,
            admission: None,
            cors: Vec::new(),
        }
    }

    /// Answers every request; `Ok(true)` tells Pingora the response is already written.
    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        match self.dispatch(session, ctx).await {
            Ok(()) => Ok(true),
            Err(Stop::Reply(e)) => {
                if session.response_written().is_some() {
                    // Too late for a status code; the stream relay already reported in-band.
                    return Ok(true);
                }
                write_error(session, ctx.api, &ctx.cors, &e).await?;
                Ok(true)
            }
            Err(Stop::Downstream(e)) => Err(e),
        }
    }

    /// Errors Pingora reports itself (a client's malformed body framing, say): answered as
    /// OpenAI-shaped JSON like every other error, when the connection can still take it.
    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &pingora::Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        // Only the request body is read through Pingora here (the upstream leg is ours), so its
        // framing errors, which Pingora leaves without a source, are the client's.
        let body_framing = matches!(e.etype(), ErrorType::Custom(t) if t.starts_with("Invalid"))
            || matches!(e.etype(), ErrorType::InvalidHTTPHeader);
        let kind = match (e.esource(), e.etype()) {
            (_, ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed) => None,
            (ErrorSource::Downstream, _) => Some(ErrorKind::InvalidRequest),
            _ if body_framing => Some(ErrorKind::InvalidRequest),
            (ErrorSource::Upstream, _) => Some(ErrorKind::UpstreamBadResponse),
            _ => Some(ErrorKind::Internal),
        };
        let mut code = 0;
        if let (Some(kind), None) = (kind, session.response_written()) {
            let error = GatewayError::new(kind, "The request could not be processed.");
            code = error.status();
            if let Err(write) = write_error(session, ctx.api, &ctx.cors, &error).await {
                log::debug!("could not answer a failed request: {write}");
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    /// Never reached: `request_filter` answers every request.
    async fn upstream_peer(&self, _: &mut Session, _: &mut RequestCtx) -> Result<Box<HttpPeer>> {
        Err(Error::explain(
            ErrorType::InternalError,
            "modelmux answers every request in request_filter",
        ))
    }

    async fn logging(
        &self,
        session: &mut Session,
        _e: Option<&pingora::Error>,
        ctx: &mut RequestCtx,
    ) {
        let status = session.response_written().map_or(0, |h| h.status.as_u16());
        let model = ctx.model.as_deref().unwrap_or("-");
        let provider = ctx.provider.as_deref().unwrap_or("-");
        metrics::REQUESTS
            .with_label_values(&[model, provider, status.to_string().as_str()])
            .inc();
        if ctx.model.is_some() {
            metrics::REQUEST_DURATION
                .with_label_values(&[model, provider])
                .observe(ctx.start.elapsed().as_secs_f64());
        }
        if let Some(kind) = ctx.upstream_error {
            metrics::UPSTREAM_ERRORS
                .with_label_values(&[provider, kind.as_str()])
                .inc();
        }
        if let Some(admission) = &ctx.admission {
            self.limiter
                .settle(admission, ctx.usage.map(|u| u.total_tokens))
                .await;
        }
        if let (Some(key), Some(u)) = (ctx.key.and_then(|i| self.config.keys.get(i)), ctx.usage) {
            let price = ctx
                .model
                .as_deref()
                .and_then(|m| self.config.model(m))
                .and_then(|m| m.price.as_ref());
            self.budgets.record(key, &u, price).await;
        }
        if let Some(u) = ctx.usage {
            metrics::TOKENS
                .with_label_values(&[model, provider, "prompt"])
                .inc_by(u.prompt_tokens);
            metrics::TOKENS
                .with_label_values(&[model, provider, "completion"])
                .inc_by(u.completion_tokens);
        }
    }
}
