//! Prometheus metrics. Labels take only configured names and closed enums, never raw client
//! input, so a client cannot blow up the series count.

use once_cell::sync::Lazy;
use prometheus::{
    register_histogram_vec_with_registry, register_int_counter_vec_with_registry,
    register_int_gauge_vec_with_registry, Encoder, HistogramVec, IntCounterVec, IntGaugeVec,
    Registry, TextEncoder,
};

pub(crate) static REGISTRY: Lazy<Registry> = Lazy::new(Registry::new);

pub(crate) static REQUESTS: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec_with_registry!(
        "modelmux_requests_total",
        "Client requests by public model, provider and HTTP status.",
        &["model", "provider", "status"],
        REGISTRY
    )
    .expect("metric registers once")
});

pub(crate) static REQUEST_DURATION: Lazy<HistogramVec> = Lazy::new(|| {
    register_histogram_vec_with_registry!(
        "modelmux_request_duration_seconds",
        "Time from request start to the last byte sent to the client.",
        &["model", "provider"],
        vec![0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0],
        REGISTRY
    )
    .expect("metric registers once")
});

pub(crate) static UPSTREAM_ERRORS: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec_with_registry!(
        "modelmux_upstream_errors_total",
        "Failed upstream attempts by provider and error kind.",
        &["provider", "kind"],
        REGISTRY
    )
    .expect("metric registers once")
});

pub(crate) static TOKENS: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec_with_registry!(
        "modelmux_tokens_total",
        "Tokens reported by vendors, by public model, provider and type (prompt, completion).",
        &["model", "provider", "type"],
        REGISTRY
    )
    .expect("metric registers once")
});

pub(crate) static BREAKER_STATE: Lazy<IntGaugeVec> = Lazy::new(|| {
    register_int_gauge_vec_with_registry!(
        "modelmux_breaker_state",
        "Circuit breaker state per target: 0 closed, 1 open, 2 half-open.",
        &["provider", "model"],
        REGISTRY
    )
    .expect("metric registers once")
});

pub(crate) static BREAKER_TRANSITIONS: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec_with_registry!(
        "modelmux_breaker_transitions_total",
        "Circuit breaker state changes per target, by the state entered.",
        &["provider", "model", "to"],
        REGISTRY
    )
    .expect("metric registers once")
});

pub(crate) static RETRIES: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec_with_registry!(
        "modelmux_retries_total",
        "Attempts after the first, by public model and whether they moved to another target.",
        &["model", "kind"],
        REGISTRY
    )
    .expect("metric registers once")
});

pub(crate) static ATTEMPTS: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec_with_registry!(
        "modelmux_upstream_attempts_total",
        "Upstream attempts by provider and outcome (ok, or the error kind).",
        &["provider", "outcome"],
        REGISTRY
    )
    .expect("metric registers once")
});

pub(crate) static REJECTIONS: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec_with_registry!(
        "modelmux_rejections_total",
        "Requests the gateway refused itself, by reason.",
        &["reason"],
        REGISTRY
    )
    .expect("metric registers once")
});

pub(crate) static LIMIT_REMAINING: Lazy<IntGaugeVec> = Lazy::new(|| {
    register_int_gauge_vec_with_registry!(
        "modelmux_limit_remaining",
        "What the last admission left in a rate-limit bucket, by scope (key, model), its configured name and kind.",
        &["scope", "name", "kind"],
        REGISTRY
    )
    .expect("metric registers once")
});

pub(crate) static STORE_UP: Lazy<IntGaugeVec> = Lazy::new(|| {
    register_int_gauge_vec_with_registry!(
        "modelmux_store_up",
        "Whether the shared store (Redis) for limits and budgets answers: 1 up, 0 down (this replica's own buckets serve meanwhile).",
        &["store"],
        REGISTRY
    )
    .expect("metric registers once")
});

pub(crate) static STORE_ERRORS: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec_with_registry!(
        "modelmux_store_errors_total",
        "Calls to the shared store that failed or took too long, by kind (error, timeout).",
        &["store", "kind"],
        REGISTRY
    )
    .expect("metric registers once")
});

/// Registers every metric so that the first scrape lists them all, even at zero.
pub(crate) fn init() {
    Lazy::force(&REQUESTS);
    Lazy::force(&REQUEST_DURATION);
    Lazy::force(&UPSTREAM_ERRORS);
    Lazy::force(&TOKENS);
    Lazy::force(&BREAKER_STATE);
    Lazy::force(&BREAKER_TRANSITIONS);
    Lazy::force(&RETRIES);
    Lazy::force(&ATTEMPTS);
    Lazy::force(&REJECTIONS);
    Lazy::force(&LIMIT_REMAINING);
    Lazy::force(&STORE_UP);
    Lazy::force(&STORE_ERRORS);
}

pub(crate) fn render() -> Vec<u8> {
    let mut out = Vec::with_capacity(8192);
    TextEncoder::new()
        .encode(&REGISTRY.gather(), &mut out)
        .expect("text encoding into a Vec cannot fail");
    out
}
