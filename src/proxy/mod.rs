//! The gateway's HTTP service on Pingora's server (`HttpServerApp`): per connection, the
//! request header is read within its bound, the router answers every request itself (the
//! upstream leg included, see `upstream.rs`), and `logging` settles rate limits and budgets
//! with the real usage and records metrics. The connection is then kept alive or closed.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use futures::FutureExt;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ReusedHttpStream};
use pingora::protocols::http::ServerSession as Session;
use pingora::server::ShutdownWatch;
use pingora::ErrorType;

use crate::api::responses::Turn;
use crate::api::ClientApi;
use crate::config::{CacheBackend, ClientLimits, Config, LimitsBackend, LiveConfig, LogFormat};
use crate::error::{ErrorKind, GatewayError};
use crate::metrics;
use crate::providers::jwt::JwtTokens;
use crate::providers::qianfan::TokenCache;
use crate::providers::Usage;
use crate::response_store::{ResponseStore, Stored};
use crate::traffic::auth::KeyDigestMemo;
use crate::traffic::breaker::Breakers;
use crate::traffic::budget::{Budgets, Reservation};
use crate::traffic::cache::{Cache, Cached};
use crate::traffic::inflight::InFlight;
use crate::traffic::limits::{Admission, Limiter};
use crate::traffic::shared::SharedRedis;
use crate::traffic::store::Store;
use access_log::AccessLog;
use upstream::Upstreams;

mod access_log;
mod attempt;
mod cached;
pub(crate) mod compare;
mod cors;
mod finish;
mod flows;
pub(crate) use flows::UnifiedCall;
mod handlers;
mod jobs;
pub(crate) mod relay;
mod respond;
mod responses;
mod router;
mod status;
pub(crate) mod upstream;

/// The proxy service: the live config and the state that outlives any one config (connection
/// pools, vendor tokens, breakers, limit buckets, budgets).
pub(crate) struct Gateway {
    config: Arc<LiveConfig>,
    upstreams: Upstreams,
    tokens: TokenCache,
    jwt_tokens: JwtTokens,
    breakers: Breakers,
    in_flight: InFlight,
    limiter: Limiter,
    budgets: Budgets,
    store: Arc<Store>,
    cache: Cache,
    /// The Responses API's stored responses.
    responses: ResponseStore,
    /// The request log store, when one is configured and could be opened.
    log_store: Option<crate::log_store::LogStore>,
    /// Runtime keys and the audit trail, in the log store's database.
    key_store: Option<crate::key_store::KeyStore>,
    /// None when the access log could not be opened (logged at start).
    access_log: Option<AccessLog>,
    /// This process's own socket, for side-by-side compare.
    local: compare::LocalRoute,
    /// Each target's last minutes, for the console.
    timeline: crate::timeline::Timeline,
    /// Spans to the OTLP collector, when `telemetry.otlp` was configured at start.
    telemetry: Option<crate::telemetry::Exporter>,
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
    /// The connection's last key digest, lent to this request (`Served::serve_one`).
    key_digest: KeyDigestMemo,
    /// What the rate limits reserved for this request, settled with the real usage.
    admission: Option<Admission>,
    /// What the key's budget holds for this request until it is settled.
    reservation: Option<Reservation>,
    /// Headers on every response and error: `x-request-id`, CORS for the caller's origin.
    common_headers: Vec<(&'static str, String)>,
    /// The client's `x-request-id`, or one made up; sent to the vendor and back.
    request_id: String,
    client_ip: Option<IpAddr>,
    /// A Responses API request: what its reply repeats, and (when it is to be stored) the
    /// record its finished Response object completes.
    turn: Option<Arc<Turn>>,
    keep: Option<Box<Stored>>,
    /// Each attempt: target, outcome, status, duration.
    attempts: Vec<crate::log_store::Attempt>,
    vendor_model: Option<String>,
    /// `x-modelmux-target`: the provider and vendor model that answered.
    target_header: [(&'static str, String); 1],
    stream: bool,
    /// When the response header went out, and when the first answer bytes did.
    first_byte: Option<Instant>,
    first_token: Option<Instant>,
    bytes_in: usize,
    /// `hit`, `miss` or `bypass` for models with a cache.
    cache_status: Option<&'static str>,
    /// Whether the answer is to be put back together for the cache, and the answer.
    capture: bool,
    captured: Option<Cached>,
    /// The request body, kept only for models with `log_bodies: true`.
    logged_prompt: Option<Bytes>,
    logged_reply: Option<Bytes>,
    /// The request's trace context, when traces are exported.
    trace: Option<Box<crate::telemetry::RequestTrace>>,
}

impl RequestCtx {
    /// What a successful reply carries: CORS and, once admitted, the `x-ratelimit-*` headers.
    fn success_headers(&self) -> [&[(&'static str, String)]; 3] {
        let limits = self.admission.as_ref().map_or(&[][..], |a| &a.headers[..]);
        let target = if self.target().is_some() {
            &self.target_header[..]
        } else {
            &[][..]
        };
        [&self.common_headers, limits, target]
    }

    /// What failed, for the log row and the trace: the upstream error, or the last attempt's
    /// failure.
    fn failure(&self) -> Option<&str> {
        self.upstream_error.map(|k| k.as_str()).or_else(|| {
            let last = self.attempts.last().filter(|a| a.outcome != "ok")?;
            Some(&*last.outcome)
        })
    }

    /// `provider/vendor model` of the target that was tried last, once one was.
    fn target(&self) -> Option<&str> {
        Some(self.target_header[0].1.as_str()).filter(|t| !t.is_empty())
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

fn limits_url(config: &Config) -> Option<&crate::config::Secret> {
    match &config.limits_backend {
        LimitsBackend::Redis { url, .. } => Some(url),
        LimitsBackend::Local => None,
    }
}

impl Gateway {
    /// `local_socket`: the Unix socket this gateway also listens on, for its own requests.
    pub(crate) fn new(config: Arc<Config>, upstreams: Upstreams, local_socket: String) -> Self {
        let breakers = Breakers::new(config.breaker.clone());
        let limits_redis = limits_url(&config);
        let shared = limits_redis.and_then(SharedRedis::open);
        let store = Arc::new(Store::new(&config.limits_backend, shared.clone()));
        let cache_redis = match &config.cache {
            // The same Redis as the limits: one connection and one health state for both.
            CacheBackend::Redis { url, .. } if Some(url) == limits_redis => shared.clone(),
            CacheBackend::Redis { url, .. } => SharedRedis::open(url),
            CacheBackend::Memory { .. } => None,
        };
        let responses_redis = match &config.responses.redis_url {
            Some(url) if Some(url) == limits_redis => shared,
            Some(url) => SharedRedis::open(url),
            None => None,
        };
        let live = Arc::new(LiveConfig::new(config.clone()));
        let key_store = config
            .logs
            .as_ref()
            .and_then(|l| crate::key_store::KeyStore::open(l, live.clone()));
        Gateway {
            config: live,
            key_store,
            upstreams,
            tokens: TokenCache::default(),
            jwt_tokens: JwtTokens::default(),
            breakers,
            in_flight: InFlight::new(),
            limiter: Limiter::new(store.clone()),
            budgets: Budgets::new(store.clone()),
            store,
            cache: Cache::new(&config.cache, cache_redis),
            responses: ResponseStore::new(&config.responses, responses_redis),
            log_store: config
                .logs
                .as_ref()
                .and_then(crate::log_store::LogStore::open),
            access_log: (config.log.format != LogFormat::Off)
                .then(|| {
                    AccessLog::open(&config.log)
                        .inspect_err(|e| log::error!("cannot open the access log: {e}"))
                        .ok()
                })
                .flatten(),
            local: compare::LocalRoute::new(local_socket),
            timeline: Default::default(),
            telemetry: config
                .telemetry
                .as_deref()
                .and_then(crate::telemetry::Exporter::start),
        }
    }
}

impl Gateway {
    /// The config snapshot in force.
    pub(crate) fn config(&self) -> Arc<Config> {
        self.config.current()
    }

    /// Each budgeted team's and key's budget, and what it has spent in the current period.
    pub(crate) async fn budget_spend(&self) -> Vec<serde_json::Value> {
        let config = self.config();
        // A team's row names no key; a key's names its team, if any.
        let row = |key: Option<&str>,
                   team: Option<&str>,
                   budget: &crate::config::Budget,
                   (tokens, cost): (i64, f64)| {
            serde_json::json!({
                "key": key,
                "team": team,
                "period": format!("{:?}", budget.period).to_lowercase(),
                "tokens": {"limit": budget.tokens, "spent": tokens},
                "cost": {"limit": budget.cost, "spent": cost},
            })
        };
        let mut out = Vec::new();
        let mut teams: Vec<_> = config.teams.values().collect();
        teams.sort_by(|a, b| a.name.cmp(&b.name));
        for team in teams {
            if let (Some(budget), Some(spent)) = (&team.budget, self.budgets.team_spent(team).await)
            {
                out.push(row(None, Some(&team.name), budget, spent));
            }
        }
        for key in &config.keys {
            let team = key.team.as_ref().map(|t| t.name.as_str());
            let spent = self.budgets.spent(key).await;
            for (budget, spent) in key.budgets.iter().zip(spent) {
                out.push(row(Some(&key.name), team, budget, spent));
            }
        }
        out
    }

    /// Runtime keys and the audit trail, when there is a database for them.
    pub(crate) fn key_store(&self) -> Option<&crate::key_store::KeyStore> {
        self.key_store.as_ref()
    }

    /// The request log store, when there is one.
    pub(crate) fn log_store(&self) -> Option<&crate::log_store::LogStore> {
        self.log_store.as_ref()
    }

    /// The live config, for whoever reloads it.
    pub(crate) fn live_config(&self) -> Arc<LiveConfig> {
        self.config.clone()
    }

    fn new_ctx(&self, config: Arc<Config>) -> RequestCtx {
        RequestCtx {
            start: Instant::now(),
            config,
            api: ClientApi::OpenAi,
            model: None,
            provider: None,
            usage: None,
            received_tokens: 0,
            prompt_estimate: 0,
            upstream_error: None,
            key: None,
            key_digest: KeyDigestMemo::default(),
            admission: None,
            reservation: None,
            common_headers: Vec::new(),
            request_id: String::new(),
            client_ip: None,
            attempts: Vec::new(),
            vendor_model: None,
            target_header: [("x-modelmux-target", String::new())],
            stream: false,
            first_byte: None,
            first_token: None,
            bytes_in: 0,
            logged_prompt: None,
            logged_reply: None,
            cache_status: None,
            capture: false,
            captured: None,
            turn: None,
            keep: None,
            trace: None,
        }
    }

    /// Answers one request whose header has been read; false when the connection must close.
    async fn serve(&self, session: &mut Session, ctx: &mut RequestCtx) -> bool {
        let limits = &ctx.config.server.clients;
        session.set_write_timeout(Some(limits.write_timeout));
        session.set_total_drain_timeout(Some(limits.drain_timeout));
        // The gateway's own deadlines bound every read of the request: its header's
        // (`serve_one`), its body's (`http_app::read_body_within`), an unread body's drain (the
        // line above). Pingora's own 60 s timer around each body read only added a timer
        // (~200 instructions a request under callgrind).
        session.set_read_timeout(None);
        // A bug must cost one request, never the connection's task silently: a panic is
        // answered as a 500 (if nothing was written yet) and the request still settled below.
        let dispatched = std::panic::AssertUnwindSafe(self.dispatch(session, ctx))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| {
                log::error!("request {} panicked; answered 500", ctx.request_id);
                metrics::REJECTIONS.with_label_values(&["panic"]).inc();
                Err(Stop::Reply(GatewayError::new(
                    ErrorKind::Internal,
                    "The gateway failed to process this request.",
                )))
            });
        let keep = match dispatched {
            Ok(()) => true,
            // Too late for a status code: a stream already reported its failure in-band.
            Err(Stop::Reply(_)) if session.response_written().is_some() => false,
            Err(Stop::Reply(mut e)) => {
                // An error after a vendor was tried names it too (`x-modelmux-target`).
                if let Some(target) = ctx.target() {
                    e.headers.push(("x-modelmux-target", target.to_string()));
                }
                respond::write_error(session, ctx.api, &ctx.common_headers, &e)
                    .await
                    .is_ok()
            }
            Err(Stop::Downstream(e)) => {
                self.answer_broken_request(session, ctx, &e).await;
                false
            }
        };
        self.finish(session, ctx).await;
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
            if let Err(write) =
                respond::write_error(session, ctx.api, &ctx.common_headers, &error).await
            {
                log::debug!("could not answer a broken request: {write}");
            }
        }
    }
}

/// What RFC 9112 makes a 400 that the parser lets through: an HTTP/1.1 request without exactly
/// one `Host` (§3.2), and a line ended by a bare LF (§2.2 allows refusing it; a proxy in front
/// that reads it otherwise would see other requests than we do).
fn framing_problem(session: &Session) -> Option<&'static str> {
    let h1 = session.as_http1()?;
    let header = session.req_header();
    let hosts = header.headers.get_all(http::header::HOST).iter().count();
    if hosts > 1 || (hosts == 0 && header.version == http::Version::HTTP_11) {
        return Some("An HTTP/1.1 request must carry exactly one Host header.");
    }
    let raw = h1.get_headers_raw_bytes();
    let bare_lf = memchr::memchr_iter(b'\n', &raw).any(|i| i == 0 || raw[i - 1] != b'\r');
    bare_lf.then_some("Header lines must end with CRLF.")
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

/// A fresh connection's place, taken before its first byte is read: its count against
/// `max_connections` and in the drain, and when its whole first header is due.
pub(crate) struct Arrival {
    _slot: ConnectionSlot,
    busy: Option<crate::drain::Busy>,
    pub(crate) header_due: tokio::time::Instant,
}

impl Arrival {
    /// A slot of `limits.max_connections` and the header's deadline; None past the cap.
    fn take(limits: &ClientLimits, busy: Option<crate::drain::Busy>) -> Option<Arrival> {
        let Some(slot) = ConnectionSlot::take(limits.max_connections) else {
            metrics::REJECTIONS
                .with_label_values(&["max_connections"])
                .inc();
            return None;
        };
        Some(Arrival {
            _slot: slot,
            busy,
            header_due: tokio::time::Instant::now() + limits.header_timeout,
        })
    }
}

/// The gateway as Pingora's HTTP app. It serves HTTP itself: every request is answered by the
/// router, so Pingora's proxy state machine (and its per-request buffers) is not needed.
pub(crate) struct Served(pub(crate) Arc<Gateway>);

#[async_trait]
impl HttpServerApp for Served {
    async fn process_new_http(
        self: &Arc<Self>,
        mut session: Session,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        let mut memo = KeyDigestMemo::default();
        if !self
            .serve_one(&mut session, shutdown, None, &mut memo)
            .await
        {
            return None;
        }
        Served::reuse(session).await
    }
}

impl Served {
    /// A connection just accepted (and through its TLS handshake) waits for its first request
    /// in a slot of `max_connections`; None past the cap. `busy`: its count in the drain since
    /// the accept (a later request is counted from its header).
    pub(crate) fn arrive(&self, busy: crate::drain::Busy) -> Option<Arrival> {
        Arrival::take(&self.0.config.current().server.clients, Some(busy))
    }

    /// A request header that did not come whole in time.
    pub(crate) fn header_late() {
        metrics::REJECTIONS
            .with_label_values(&["header_timeout"])
            .inc();
    }

    /// Answers one request; whether the connection may take another. Not boxed, unlike
    /// `process_new_http`, and the session borrowed, not moved in, so that the accept loop
    /// (`server/listen.rs`) serves HTTP/1 inline with one copy of the session in its task.
    /// `arrived`: a first request's place, taken at the connection's accept (later ones take
    /// theirs when their header begins). `key_digest`: the connection's memo of its client
    /// key's digest.
    pub(crate) async fn serve_one(
        &self,
        session: &mut Session,
        shutdown: &ShutdownWatch,
        arrived: Option<Arrival>,
        key_digest: &mut KeyDigestMemo,
    ) -> bool {
        let gateway = &self.0;
        let config = gateway.config.current();
        let limits = &config.server.clients;
        // A later request's place is taken under the request's own snapshot, not a second load.
        let Some(arrival) = arrived.or_else(|| Arrival::take(limits, None)) else {
            return false;
        };
        // The whole header within the bound, however slowly it trickles in. (A kept-alive
        // connection's wait for its next request is the accept loop's: `listen.rs`.)
        match tokio::time::timeout_at(arrival.header_due, session.read_request()).await {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => return false,
            Ok(Err(e)) => {
                log::debug!("unreadable request header: {e}");
                // A header that is there but malformed (two Hosts, a bad line) gets its 400
                // (RFC 9112) before the connection closes.
                if matches!(e.etype(), ErrorType::InvalidHTTPHeader) {
                    let body = Bytes::from_static(br#"{"error":{"message":"The request header is malformed.","type":"invalid_request_error","param":null,"code":null}}"#);
                    let _ = session.respond_error_with_body(400, body).await;
                }
                return false;
            }
            Err(_) => {
                Served::header_late();
                return false;
            }
        }
        if let Some(problem) = framing_problem(session) {
            session.set_keepalive(None);
            let error = GatewayError::new(ErrorKind::InvalidRequest, problem);
            let _ = respond::write_error(session, ClientApi::OpenAi, &[], &error).await;
            return false;
        }
        let _busy = arrival.busy.unwrap_or_else(crate::drain::busy);
        let last = *shutdown.borrow() || crate::drain::draining();
        session.set_keepalive((!last).then_some(limits.keepalive.as_secs()));
        // The snapshot in force when this request's header arrived, not when its connection
        // began to wait: a reload holds for requests on connections opened before it.
        let mut ctx = gateway.new_ctx(gateway.config.current());
        ctx.key_digest = std::mem::take(key_digest);
        // A reply in flight when the drain began is its connection's last.
        let keep = gateway.serve(session, &mut ctx).await && !crate::drain::draining();
        *key_digest = std::mem::take(&mut ctx.key_digest);
        keep
    }

    /// How long an idle kept-alive connection waits for its next request.
    pub(crate) fn keepalive(&self) -> std::time::Duration {
        self.0.config.current().server.clients.keepalive
    }

    /// Ends an answered request: the connection back when it is kept alive.
    pub(crate) async fn reuse(session: Session) -> Option<ReusedHttpStream> {
        let settings = HttpPersistentSettings::for_session(&session);
        let reusable = session.finish().await.ok()??;
        Some(ReusedHttpStream::from_reusable_stream(reusable, settings))
    }
}
