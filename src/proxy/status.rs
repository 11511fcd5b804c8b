//! What the gateway is doing right now, for the admin listener's `/admin/status`.

use serde::Serialize;

use super::Gateway;
use crate::config::{Config, Limits};
use crate::metrics;
use crate::timeline::TargetTimeline;

#[derive(Serialize)]
pub(crate) struct Status {
    config_loaded_at: u64,
    providers: Vec<ProviderStatus>,
    store: StoreStatus,
    keys: Vec<LimitStatus>,
    models: Vec<LimitStatus>,
}

#[derive(Serialize)]
struct ProviderStatus {
    name: String,
    kind: &'static str,
    max_in_flight: u32,
    targets: Vec<TargetStatus>,
}

#[derive(Serialize)]
struct TargetStatus {
    model: String,
    /// Public models routed here.
    serves: Vec<String>,
    breaker: &'static str,
    in_flight: i64,
    /// Over the breaker's sliding window.
    requests: u64,
    failures: u64,
    error_rate: f64,
    latency_ms: f64,
    /// The last five minutes: percentiles, sparkline points, the last error.
    recent: TargetTimeline,
}

#[derive(Serialize)]
struct StoreStatus {
    backend: &'static str,
    up: bool,
}

#[derive(Serialize)]
struct LimitStatus {
    name: String,
    rpm: Option<u64>,
    tpm: Option<u64>,
    /// What the last admission left in each bucket.
    remaining_requests: Option<i64>,
    remaining_tokens: Option<i64>,
}

fn limit_status(scope: &str, name: &str, limits: &Limits) -> LimitStatus {
    let remaining = |set: Option<u64>, kind: &str| {
        set.and_then(|_| metrics::limit_remaining(scope, name, kind))
    };
    LimitStatus {
        name: name.to_string(),
        rpm: limits.rpm,
        tpm: limits.tpm,
        remaining_requests: remaining(limits.rpm, "requests"),
        remaining_tokens: remaining(limits.tpm, "tokens"),
    }
}

impl Gateway {
    pub(crate) fn status(&self) -> Status {
        let config: std::sync::Arc<Config> = self.config.current();
        let providers = config
            .providers
            .iter()
            .map(|p| {
                let mut targets: Vec<TargetStatus> = Vec::new();
                for m in &config.models {
                    for t in m.targets.iter().filter(|t| t.provider.name == p.name) {
                        if let Some(existing) = targets.iter_mut().find(|x| x.model == t.model) {
                            existing.serves.push(m.name.clone());
                            continue;
                        }
                        let b = self.breakers.get(&p.name, &t.model).snapshot();
                        let requests = b.ok + b.failed;
                        targets.push(TargetStatus {
                            model: t.model.clone(),
                            serves: vec![m.name.clone()],
                            breaker: b.state.as_str(),
                            in_flight: self.in_flight.count(&p.name, &t.model).max(0) as i64,
                            requests,
                            failures: b.failed,
                            error_rate: if requests == 0 {
                                0.0
                            } else {
                                b.failed as f64 / requests as f64
                            },
                            latency_ms: (b.latency_ms * 10.0).round() / 10.0,
                            recent: self.timeline.snapshot(&format!("{}/{}", p.name, t.model)),
                        });
                    }
                }
                ProviderStatus {
                    name: p.name.clone(),
                    kind: p.vendor.kind(),
                    max_in_flight: p.max_in_flight,
                    targets,
                }
            })
            .collect();
        Status {
            config_loaded_at: config.loaded_at,
            providers,
            store: StoreStatus {
                backend: self.store.backend(),
                up: self.store.is_up(),
            },
            keys: config
                .keys
                .iter()
                .map(|k| limit_status("key", &k.name, &k.limits))
                .collect(),
            models: config
                .models
                .iter()
                .map(|m| limit_status("model", &m.name, &m.limits))
                .collect(),
        }
    }
}
