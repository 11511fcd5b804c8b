//! Prometheus metrics. Labels take only configured names and closed enums, never raw client
//! input, so a client cannot blow up the series count.

use std::sync::{Arc, RwLock};

use once_cell::sync::{Lazy, OnceCell};
use prometheus::{
    register_histogram_vec_with_registry, register_int_counter_vec_with_registry,
    register_int_gauge_vec_with_registry, Encoder, Histogram, HistogramVec, IntCounter,
    IntCounterVec, IntGaugeVec, Registry, TextEncoder,
};

pub(crate) static REGISTRY: Lazy<Registry> = Lazy::new(Registry::new);

pub(crate) static REQUESTS: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec_with_registry!(
        "modelmux_requests_total",
        "Client requests by public model, provider, target (provider/vendor model) and HTTP status.",
        &["model", "provider", "target", "status"],
        REGISTRY
    )
    .expect("metric registers once")
});

pub(crate) static REQUEST_DURATION: Lazy<HistogramVec> = Lazy::new(|| {
    register_histogram_vec_with_registry!(
        "modelmux_request_duration_seconds",
        "Time from request start to the last byte sent to the client.",
        &["model", "provider", "target"],
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
        "Tokens reported by vendors, by public model, provider, target and type (prompt, completion).",
        &["model", "provider", "target", "type"],
        REGISTRY
    )
    .expect("metric registers once")
});

pub(crate) static BREAKER_STATE: Lazy<IntGaugeVec> = Lazy::new(|| {
    register_int_gauge_vec_with_registry!(
        "modelmux_breaker_state",
        "Circuit breaker state per target: 0 closed, 1 open, 2 half-open.",
        &["provider", "vendor_model"],
        REGISTRY
    )
    .expect("metric registers once")
});

pub(crate) static BREAKER_TRANSITIONS: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec_with_registry!(
        "modelmux_breaker_transitions_total",
        "Circuit breaker state changes per target, by the state entered.",
        &["provider", "vendor_model", "to"],
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

pub(crate) static COST: Lazy<prometheus::CounterVec> = Lazy::new(|| {
    prometheus::register_counter_vec_with_registry!(
        "modelmux_cost_total",
        "What requests cost, in the currency of the models' prices.",
        &["model", "provider"],
        REGISTRY
    )
    .expect("metric registers once")
});

pub(crate) static CACHE: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec_with_registry!(
        "modelmux_cache_total",
        "Response cache events: hit, miss, bypass, write, eviction.",
        &["event"],
        REGISTRY
    )
    .expect("metric registers once")
});

pub(crate) static CACHE_BYTES: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec_with_registry!(
        "modelmux_cache_bytes_total",
        "Bytes written to and evicted from the response cache.",
        &["event"],
        REGISTRY
    )
    .expect("metric registers once")
});

pub(crate) static UPSTREAM_CONNECTIONS: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec_with_registry!(
        "modelmux_upstream_connections_total",
        "Vendor connections used for a request: opened (new) or reused (from the idle pool).",
        &["kind"],
        REGISTRY
    )
    .expect("metric registers once")
});

pub(crate) static RELOADS: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec_with_registry!(
        "modelmux_config_reloads_total",
        "Config reloads, by result (ok, rejected).",
        &["result"],
        REGISTRY
    )
    .expect("metric registers once")
});

pub(crate) static ADMIN_AUTH_FAILURES: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec_with_registry!(
        "modelmux_admin_auth_failures_total",
        "Wrong admin keys presented to the admin listener (sign-in or API), and requests refused while their address was locked out.",
        &["result"],
        REGISTRY
    )
    .expect("metric registers once")
});

/// Buckets for model latencies: from a fast first token to a long reasoning answer.
const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

pub(crate) static TIME_TO_FIRST_TOKEN: Lazy<HistogramVec> = Lazy::new(|| {
    register_histogram_vec_with_registry!(
        "modelmux_time_to_first_token_seconds",
        "From the request's arrival to the first byte of the answer reaching the client (gen_ai.server.time_to_first_token).",
        &["model", "provider"],
        LATENCY_BUCKETS.to_vec(),
        REGISTRY
    )
    .expect("metric registers once")
});

pub(crate) static TIME_PER_OUTPUT_TOKEN: Lazy<HistogramVec> = Lazy::new(|| {
    register_histogram_vec_with_registry!(
        "modelmux_time_per_output_token_seconds",
        "After the first token, the time per further output token (gen_ai.server.time_per_output_token).",
        &["model", "provider"],
        vec![0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0],
        REGISTRY
    )
    .expect("metric registers once")
});

pub(crate) static TARGET_IN_FLIGHT: Lazy<IntGaugeVec> = Lazy::new(|| {
    register_int_gauge_vec_with_registry!(
        "modelmux_target_in_flight",
        "Requests in flight to a target (provider, vendor model).",
        &["provider", "vendor_model"],
        REGISTRY
    )
    .expect("metric registers once")
});

pub(crate) static REQUEST_SIZE: Lazy<HistogramVec> = Lazy::new(|| {
    register_histogram_vec_with_registry!(
        "modelmux_request_size_bytes",
        "Request body sizes, by client API.",
        &["api"],
        vec![256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0],
        REGISTRY
    )
    .expect("metric registers once")
});

pub(crate) static BUDGET_USED: Lazy<prometheus::GaugeVec> = Lazy::new(|| {
    prometheus::register_gauge_vec_with_registry!(
        "modelmux_budget_used_ratio",
        "How much of its budget for the period a client key has used (0 to 1), as of its last request.",
        &["key"],
        REGISTRY
    )
    .expect("metric registers once")
});

pub(crate) static LOG_ROWS_DROPPED: Lazy<prometheus::IntCounter> = Lazy::new(|| {
    prometheus::register_int_counter_with_registry!(
        "modelmux_log_rows_dropped_total",
        "Request log rows dropped: the writer's queue was full, or the log store failed a write.",
        REGISTRY
    )
    .expect("metric registers once")
});

pub(crate) static TRACE_SPANS: Lazy<prometheus::IntCounterVec> = Lazy::new(|| {
    prometheus::register_int_counter_vec_with_registry!(
        "modelmux_trace_spans_total",
        "Spans for the OTLP collector: exported, or dropped (queue_full: the export queue was full; export_failed: the collector failed or did not answer in time).",
        &["outcome"],
        REGISTRY
    )
    .expect("metric registers once")
});

/// One target's series of the families every answered request adds to (model, provider,
/// target), each made on its first use: `with_label_values` hashes every label at each call,
/// and six calls cost every request some 2,000 instructions.
#[derive(Default)]
pub(crate) struct TargetSeries {
    labels: [String; 3],
    ok: OnceCell<IntCounter>,
    duration: OnceCell<Histogram>,
    time_to_first_token: OnceCell<Histogram>,
    time_per_output_token: OnceCell<Histogram>,
    prompt_tokens: OnceCell<IntCounter>,
    completion_tokens: OnceCell<IntCounter>,
}

impl TargetSeries {
    fn labels(&self) -> [&str; 3] {
        let [m, p, t] = &self.labels;
        [m, p, t]
    }

    /// A request answered with `status` (200s kept at hand, others looked up).
    pub(crate) fn count_request(&self, status: u16) {
        let [m, p, t] = self.labels();
        match status {
            200 => self
                .ok
                .get_or_init(|| REQUESTS.with_label_values(&[m, p, t, "200"]))
                .inc(),
            _ => REQUESTS
                .with_label_values(&[m, p, t, status.to_string().as_str()])
                .inc(),
        }
    }

    pub(crate) fn duration(&self) -> &Histogram {
        self.duration
            .get_or_init(|| REQUEST_DURATION.with_label_values(&self.labels()))
    }

    pub(crate) fn time_to_first_token(&self) -> &Histogram {
        let [m, p, _] = self.labels();
        self.time_to_first_token
            .get_or_init(|| TIME_TO_FIRST_TOKEN.with_label_values(&[m, p]))
    }

    pub(crate) fn time_per_output_token(&self) -> &Histogram {
        let [m, p, _] = self.labels();
        self.time_per_output_token
            .get_or_init(|| TIME_PER_OUTPUT_TOKEN.with_label_values(&[m, p]))
    }

    pub(crate) fn count_tokens(&self, prompt: u64, completion: u64) {
        let [m, p, t] = self.labels();
        self.prompt_tokens
            .get_or_init(|| TOKENS.with_label_values(&[m, p, t, "prompt"]))
            .inc_by(prompt);
        self.completion_tokens
            .get_or_init(|| TOKENS.with_label_values(&[m, p, t, "completion"]))
            .inc_by(completion);
    }
}

/// Each (model, provider, target)'s series; names come from the config only, so the map grows
/// no faster than Prometheus's own children do.
type SeriesMap = hashbrown::HashMap<(String, String, String), Arc<TargetSeries>>;
static SERIES: Lazy<RwLock<SeriesMap>> = Lazy::new(Default::default);

/// The map's key, borrowed: it hashes as the owned tuple does (fields in order).
#[derive(Hash)]
struct SeriesKey<'a>(&'a str, &'a str, &'a str);

impl hashbrown::Equivalent<(String, String, String)> for SeriesKey<'_> {
    fn equivalent(&self, key: &(String, String, String)) -> bool {
        (self.0, self.1, self.2) == (&*key.0, &*key.1, &*key.2)
    }
}

pub(crate) fn target_series(model: &str, provider: &str, target: &str) -> Arc<TargetSeries> {
    let key = SeriesKey(model, provider, target);
    let lock = "the series map lock is never poisoned";
    if let Some(found) = SERIES.read().expect(lock).get(&key) {
        return Arc::clone(found);
    }
    let mut map = SERIES.write().expect(lock);
    let owned = (model.to_string(), provider.to_string(), target.to_string());
    let series = map.entry(owned).or_insert_with(|| {
        Arc::new(TargetSeries {
            labels: [model.into(), provider.into(), target.into()],
            ..Default::default()
        })
    });
    Arc::clone(series)
}

/// Every metric family the gateway exports (a family shows in a scrape once it has a sample).
fn families() -> Vec<&'static dyn prometheus::core::Collector> {
    vec![
        &*REQUESTS,
        &*REQUEST_DURATION,
        &*UPSTREAM_ERRORS,
        &*TOKENS,
        &*BREAKER_STATE,
        &*BREAKER_TRANSITIONS,
        &*RETRIES,
        &*ATTEMPTS,
        &*REJECTIONS,
        &*LIMIT_REMAINING,
        &*STORE_UP,
        &*STORE_ERRORS,
        &*TIME_TO_FIRST_TOKEN,
        &*TIME_PER_OUTPUT_TOKEN,
        &*TARGET_IN_FLIGHT,
        &*REQUEST_SIZE,
        &*RELOADS,
        &*ADMIN_AUTH_FAILURES,
        &*COST,
        &*CACHE,
        &*CACHE_BYTES,
        &*UPSTREAM_CONNECTIONS,
        &*LOG_ROWS_DROPPED,
        &*TRACE_SPANS,
        &*BUDGET_USED,
    ]
}

/// What the last admission left of a limit, or None when nothing has been admitted under it
/// yet (an unused key has no "0 remaining").
pub(crate) fn limit_remaining(scope: &str, name: &str, kind: &str) -> Option<i64> {
    use prometheus::core::Collector;
    let wanted = [("kind", kind), ("name", name), ("scope", scope)];
    LIMIT_REMAINING.collect().iter().find_map(|family| {
        family.get_metric().iter().find_map(|m| {
            let labels = m.get_label();
            let matches = wanted
                .iter()
                .all(|(k, v)| labels.iter().any(|l| l.name() == *k && l.value() == *v));
            matches.then(|| m.get_gauge().get_value() as i64)
        })
    })
}

/// Drops the series whose labels name what the config no longer has (a target, model,
/// provider or key removed by a reload): `known(label, value)` says whether a value is still
/// configured. A dashboard then shows what runs, not what ran once.
pub(crate) fn forget(known: &dyn Fn(&str, &str) -> bool) {
    prune(&REQUESTS, known);
    prune(&REQUEST_DURATION, known);
    prune(&UPSTREAM_ERRORS, known);
    prune(&TOKENS, known);
    prune(&BREAKER_STATE, known);
    prune(&BREAKER_TRANSITIONS, known);
    prune(&RETRIES, known);
    prune(&ATTEMPTS, known);
    prune(&LIMIT_REMAINING, known);
    prune(&COST, known);
    prune(&TIME_TO_FIRST_TOKEN, known);
    prune(&TIME_PER_OUTPUT_TOKEN, known);
    prune(&TARGET_IN_FLIGHT, known);
}

fn prune<T: prometheus::core::MetricVecBuilder>(
    vec: &prometheus::core::MetricVec<T>,
    known: &dyn Fn(&str, &str) -> bool,
) {
    use prometheus::core::Collector;
    for family in vec.collect() {
        for metric in family.get_metric() {
            let labels: std::collections::HashMap<&str, &str> = metric
                .get_label()
                .iter()
                .map(|l| (l.name(), l.value()))
                .collect();
            if !labels.iter().all(|(name, value)| known(name, value)) {
                let _ = vec.remove(&labels);
            }
        }
    }
}

/// Registers every metric so that the first scrape lists them all, even at zero.
pub(crate) fn init() {
    for family in families() {
        // Forcing the lazy statics registers them.
        let _ = family.desc();
    }
}

pub(crate) fn render() -> Vec<u8> {
    let mut out = Vec::with_capacity(8192);
    TextEncoder::new()
        .encode(&REGISTRY.gather(), &mut out)
        .expect("text encoding into a Vec cannot fail");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Grafana dashboard (deploy/grafana/modelmux.json) queries only metrics that exist.
    #[test]
    fn the_dashboard_names_only_exported_metrics() {
        let names: Vec<String> = families()
            .iter()
            .flat_map(|f| f.desc())
            .map(|d| d.fq_name.clone())
            .collect();
        let dashboard = include_str!("../deploy/grafana/modelmux.json");
        let json: serde_json::Value = serde_json::from_str(dashboard).expect("valid JSON");
        let mut used = Vec::new();
        let text = json.to_string();
        let mut rest = text.as_str();
        while let Some(at) = rest.find("modelmux_") {
            let name: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            rest = &rest[at + name.len()..];
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(&name)
                .to_string();
            used.push(base);
        }
        assert!(used.len() > 10);
        for name in used {
            assert!(
                names.contains(&name),
                "{name} is not a metric the gateway exports"
            );
        }
    }

    #[test]
    fn a_target_series_is_found_by_borrowed_names() {
        use std::hash::BuildHasher;
        let hasher = hashbrown::DefaultHashBuilder::default();
        let owned = ("m".to_string(), "p".to_string(), "p/v".to_string());
        assert_eq!(
            hasher.hash_one(SeriesKey("m", "p", "p/v")),
            hasher.hash_one(&owned)
        );
        let first = target_series("m-test", "p", "p/v");
        assert!(Arc::ptr_eq(&first, &target_series("m-test", "p", "p/v")));
        assert!(!Arc::ptr_eq(&first, &target_series("m-test", "p2", "p/v")));
    }
}
