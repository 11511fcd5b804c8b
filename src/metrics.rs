//! Prometheus metrics. Labels take only configured names and closed enums, never raw client
//! input, so a client cannot blow up the series count.

use once_cell::sync::Lazy;
use prometheus::{
    register_histogram_vec_with_registry, register_int_counter_vec_with_registry, Encoder,
    HistogramVec, IntCounterVec, Registry, TextEncoder,
};

pub static REGISTRY: Lazy<Registry> = Lazy::new(Registry::new);

pub static REQUESTS: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec_with_registry!(
        "modelmux_requests_total",
        "Client requests by public model, provider and HTTP status.",
        &["model", "provider", "status"],
        REGISTRY
    )
    .expect("metric registers once")
});

pub static REQUEST_DURATION: Lazy<HistogramVec> = Lazy::new(|| {
    register_histogram_vec_with_registry!(
        "modelmux_request_duration_seconds",
        "Time from request start to the last byte sent to the client.",
        &["model", "provider"],
        vec![0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0],
        REGISTRY
    )
    .expect("metric registers once")
});

pub static UPSTREAM_ERRORS: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec_with_registry!(
        "modelmux_upstream_errors_total",
        "Failed upstream attempts by provider and error kind.",
        &["provider", "kind"],
        REGISTRY
    )
    .expect("metric registers once")
});

pub static TOKENS: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec_with_registry!(
        "modelmux_tokens_total",
        "Tokens reported by vendors, by public model, provider and type (prompt, completion).",
        &["model", "provider", "type"],
        REGISTRY
    )
    .expect("metric registers once")
});

/// Registers every metric so that the first scrape lists them all, even at zero.
pub fn init() {
    Lazy::force(&REQUESTS);
    Lazy::force(&REQUEST_DURATION);
    Lazy::force(&UPSTREAM_ERRORS);
    Lazy::force(&TOKENS);
}

pub fn render() -> Vec<u8> {
    let mut out = Vec::with_capacity(8192);
    TextEncoder::new()
        .encode(&REGISTRY.gather(), &mut out)
        .expect("text encoding into a Vec cannot fail");
    out
}
