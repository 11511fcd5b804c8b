//! The Pingora proxy service. Its phases stay thin: `request_filter` hands the request to the
//! router, which answers every request itself (the upstream leg included, see `upstream.rs`),
//! and `logging` settles rate limits and budgets with the real usage and records metrics.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::ErrorSource;

use crate::api::ClientApi;
use crate::config::{Config, LiveConfig};
use crate::error::{ErrorKind, GatewayError};
use crate::metrics;
use crate::providers::qianfan::TokenCache;
use crate::providers::Usage;
use crate::traffic::breaker::Breakers;
use crate::traffic::budget::{Budgets, Reservation};
use crate::traffic::inflight::InFlight;
use crate::traffic::limits::{Admission, Limiter};
use crate::traffic::store::Store;
use upstream::Upstreams;

mod attempt;
mod cors;
mod handlers;
pub(crate) mod relay;
mod respond;
mod router;
pub(crate) mod upstream;

/// The proxy service: the live config and the state that outlives any one config (connection
/// pools, vendor tokens, breakers, limit buckets, budgets).
pub(crate) struct Gateway {
    config: LiveConfig,
    upstreams: Upstreams,
    tokens: TokenCache,
    breakers: Breakers,
    in_flight: InFlight,
    limiter: Limiter,
    budgets: Budgets,
}

/// Per-request state. Labels are set only from configured names.
pub(crate) struct RequestCtx {
    start: Instant,
    /// The config snapshot this request started with; it finishes on it.
    config: Arc<Config>,
    /// The API the client called; errors are written in its shape.
    api: ClientApi,
    model: Option<String>,
    provider: Option<String>,
    /// What the vendor reported the request used.
    usage: Option<Usage>,
    /// Tokens estimated from what reached the client, for a stream whose usage never came.
    received_tokens: u64,
    /// The prompt's size in tokens, estimated from the body at admission.
    prompt_estimate: u64,
    upstream_error: Option<ErrorKind>,
    /// The caller's key (index into the snapshot's keys), once authenticated.
    key: Option<usize>,
    /// What the rate limits reserved for this request, settled with the real usage.
    admission: Option<Admission>,
    /// What the key's budget holds for this request until it is settled.
    reservation: Option<Reservation>,
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
    pub(crate) fn new(config: Arc<Config>, upstreams: Upstreams) -> Self {
        let breakers = Breakers::new(config.breaker.clone());
        let store = Arc::new(Store::new(&config.limits_backend));
        Gateway {
            config: LiveConfig::new(config),
            upstreams,
            tokens: TokenCache::default(),
            breakers,
            in_flight: InFlight::new(),
            limiter: Limiter::new(store.clone()),
            budgets: Budgets::new(store),
        }
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            start: Instant::now(),
            config: self.config.current(),
            api: ClientApi::OpenAi,
            model: None,
            provider: None,
            usage: None,
            received_tokens: 0,
            prompt_estimate: 0,
            upstream_error: None,
            key: None,
            admission: None,
            reservation: None,
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
                respond::write_error(session, ctx.api, &ctx.cors, &e).await?;
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
            if let Err(write) = respond::write_error(session, ctx.api, &ctx.cors, &error).await {
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
        // What the request used: the vendor's count, or, for a stream cut before its usage
        // came, what reached the client; so hanging up early is not a way around the budget.
        let used = ctx.usage.or_else(|| {
            (ctx.received_tokens > 0).then(|| Usage::new(ctx.prompt_estimate, ctx.received_tokens))
        });
        if let Some(admission) = &ctx.admission {
            self.limiter
                .settle(admission, used.map(|u| u.total_tokens))
                .await;
        }
        if let Some(reservation) = &ctx.reservation {
            let price = ctx
                .model
                .as_deref()
                .and_then(|m| ctx.config.model(m))
                .and_then(|m| m.price.as_ref());
            self.budgets
                .settle(reservation, &used.unwrap_or_default(), price)
                .await;
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
