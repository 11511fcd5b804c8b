//! The gateway's HTTP service on Pingora's server (`HttpServerApp`): per connection, the
//! request header is read within its bound, the router answers every request itself (the
//! upstream leg included, see `upstream.rs`), and `logging` settles rate limits and budgets
//! with the real usage and records metrics. The connection is then kept alive or closed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ReusedHttpStream};
use pingora::protocols::http::ServerSession as Session;
use pingora::server::ShutdownWatch;
use pingora::ErrorType;

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

impl Gateway {
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

    /// Answers one request whose header has been read; false when the connection must close.
    async fn serve(&self, session: &mut Session, ctx: &mut RequestCtx) -> bool {
        let limits = &ctx.config.server.clients;
        session.set_write_timeout(Some(limits.write_timeout));
        session.set_total_drain_timeout(Some(limits.drain_timeout));
        let keep = match self.dispatch(session, ctx).await {
            Ok(()) => true,
            // Too late for a status code: a stream already reported its failure in-band.
            Err(Stop::Reply(_)) if session.response_written().is_some() => false,
            Err(Stop::Reply(e)) => respond::write_error(session, ctx.api, &ctx.cors, &e)
                .await
                .is_ok(),
            Err(Stop::Downstream(e)) => {
                self.answer_broken_request(session, ctx, &e).await;
                false
            }
        };
        self.logging(session, ctx).await;
        keep
    }

    /// The client's connection failed under a read or write. A body whose framing is broken
    /// (a malformed chunk) still gets an OpenAI-shaped 400 when the connection can take it.
    async fn answer_broken_request(
        &self,
        session: &mut Session,
        ctx: &RequestCtx,
        e: &pingora::Error,
    ) {
        let framing = matches!(e.etype(), ErrorType::Custom(t) if t.starts_with("Invalid"))
            || matches!(e.etype(), ErrorType::InvalidHTTPHeader);
        if framing && session.response_written().is_none() {
            let error = GatewayError::new(
                ErrorKind::InvalidRequest,
                "The request could not be processed.",
            );
            if let Err(write) = respond::write_error(session, ctx.api, &ctx.cors, &error).await {
                log::debug!("could not answer a broken request: {write}");
            }
        }
    }

    /// After the answer: metrics, and rate limits and budgets settled with the real usage.
    async fn logging(&self, session: &Session, ctx: &mut RequestCtx) {
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

/// Connections held open right now, for `server.clients.max_connections`.
static CONNECTIONS: AtomicUsize = AtomicUsize::new(0);

struct ConnectionSlot;

impl ConnectionSlot {
    fn take(max: usize) -> Option<ConnectionSlot> {
        let held = CONNECTIONS.fetch_add(1, Ordering::AcqRel);
        if held >= max {
            CONNECTIONS.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(ConnectionSlot)
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        CONNECTIONS.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The gateway serves HTTP itself: every request is answered by the router, so Pingora's
/// proxy state machine (and its per-request buffers) is not needed.
#[async_trait]
impl HttpServerApp for Gateway {
    async fn process_new_http(
        self: &Arc<Self>,
        mut session: Session,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        let limits = self.config.current().server.clients.clone();
        let Some(_slot) = ConnectionSlot::take(limits.max_connections) else {
            metrics::REJECTIONS
                .with_label_values(&["max_connections"])
                .inc();
            return None;
        };
        // The whole header within the bound, however slowly it trickles in.
        match tokio::time::timeout(limits.header_timeout, session.read_request()).await {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => return None,
            Ok(Err(e)) => {
                log::debug!("unreadable request header: {e}");
                return None;
            }
            Err(_) => {
                metrics::REJECTIONS
                    .with_label_values(&["header_timeout"])
                    .inc();
                return None;
            }
        }
        let keepalive = (!*shutdown.borrow()).then_some(limits.keepalive.as_secs());
        session.set_keepalive(keepalive);
        let mut ctx = self.new_ctx();
        if !self.serve(&mut session, &mut ctx).await {
            return None;
        }
        let settings = HttpPersistentSettings::for_session(&session);
        match session.finish().await {
            Ok(reusable) => reusable.map(|s| ReusedHttpStream::from_reusable_stream(s, settings)),
            Err(_) => None,
        }
    }
}
