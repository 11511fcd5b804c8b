//! The admin JSON API: `POST /admin/reload`, `GET /admin/status`, `GET /admin/config`, and the
//! request log store's `GET /admin/logs`, `GET /admin/logs/{request_id}`, `GET /admin/usage`.

use serde_json::{json, Value};

use super::{error, problems_json, Admin};
use crate::config::{Config, LimitsBackend, ModelAccess, OtlpProtocol, Period};

impl Admin {
    /// Reloads the config file; its problems, with their paths, when it is invalid.
    pub(super) async fn reload(&self) -> (u16, Value) {
        let reloader = self.reloader.clone();
        match tokio::task::spawn_blocking(move || reloader.reload()).await {
            Ok(Ok(done)) => (
                200,
                json!({
                    "status": "reloaded",
                    "providers": done.config.providers.len(),
                    "models": done.config.models.len(),
                    "keys": done.config.keys.len(),
                    "warnings": done.warnings,
                }),
            ),
            Ok(Err(problems)) => (
                400,
                json!({"error": {
                    "type": "invalid_config",
                    "message": "The config file has problems; the running config is unchanged.",
                    "problems": problems_json(&problems),
                }}),
            ),
            Err(_) => error(500, "server_error", "The reload failed."),
        }
    }

    pub(super) async fn api(&self, method: &str, path: &str, query: &str) -> (u16, Value) {
        match (method, path) {
            ("GET", "/admin/logs") => self.logs(query_log(query)).await,
            ("GET", p) if p.starts_with("/admin/logs/") => {
                let q = crate::log_store::LogQuery {
                    request_id: Some(p["/admin/logs/".len()..].to_string()),
                    limit: Some(1),
                    ..Default::default()
                };
                match self.logs(q).await {
                    (200, v) => match v["data"].get(0) {
                        Some(row) => (200, row.clone()),
                        None => error(
                            404,
                            "invalid_request_error",
                            "No logged request with that id.",
                        ),
                    },
                    other => other,
                }
            }
            ("GET", "/admin/usage") => self.usage(query_usage(query)).await,
            ("GET", "/admin/budgets") => (
                200,
                json!({"object": "list", "data": self.gateway.budget_spend().await}),
            ),
            ("POST", "/admin/reload") => self.reload().await,
            ("GET", "/admin/status") => (
                200,
                serde_json::to_value(self.gateway.status()).unwrap_or(Value::Null),
            ),
            ("GET", "/admin/config") => (200, effective_config(&self.gateway.config())),
            (
                _,
                "/admin/reload" | "/admin/status" | "/admin/config" | "/admin/logs"
                | "/admin/usage" | "/admin/budgets",
            ) => error(405, "invalid_request_error", "Method not allowed."),
            _ => error(404, "invalid_request_error", "Unknown admin path."),
        }
    }
}

impl Admin {
    fn store(&self) -> Result<&crate::log_store::LogStore, (u16, Value)> {
        self.gateway.log_store().ok_or_else(|| {
            error(404, "invalid_request_error", "No log store: logs are off, or the store could not be opened (see the gateway's log).")
        })
    }

    /// A page of logged requests, newest first, and the cursor for the next one.
    async fn logs(&self, q: crate::log_store::LogQuery) -> (u16, Value) {
        let store = match self.store() {
            Ok(s) => s,
            Err(e) => return e,
        };
        let limit = q.limit.unwrap_or(crate::log_store::DEFAULT_PAGE);
        match store.logs(q).await {
            Ok(rows) => {
                let next = (rows.len() >= limit)
                    .then(|| rows.last().map(|(id, _)| *id))
                    .flatten();
                let data: Vec<&crate::log_store::LogRow> = rows.iter().map(|(_, r)| r).collect();
                (200, json!({"object": "list", "data": data, "next": next}))
            }
            Err(e) => error(
                503,
                "server_error",
                &format!("The log store did not answer: {e}"),
            ),
        }
    }

    async fn usage(&self, q: crate::log_store::UsageQuery) -> (u16, Value) {
        if let Err(e) = q.columns() {
            return error(400, "invalid_request_error", &e);
        }
        let store = match self.store() {
            Ok(s) => s,
            Err(e) => return e,
        };
        match store.usage(q).await {
            Ok(rows) => (200, json!({"object": "list", "data": rows})),
            Err(e) => error(
                503,
                "server_error",
                &format!("The log store did not answer: {e}"),
            ),
        }
    }
}

/// A query string's pairs, percent-decoded (`+` is a space).
/// A model's price as the admin API and console show it: per million tokens, in the reporting
/// currency (the currency it was written in, and the tiers, beside).
pub(super) fn price_json(p: &crate::config::Price) -> Value {
    let b = &p.base;
    json!({
        "prompt": b.prompt, "completion": b.completion, "cached_prompt": b.cached_prompt,
        "cache_write": b.cache_write, "currency": p.currency, "rate": p.rate,
        "per_image": p.per_image.iter().map(|(px, v)| json!({"pixels": px, "price": v})).collect::<Vec<_>>(),
        "tiers": p.tiers.iter().map(|(up_to, r)| json!({
            "up_to": up_to, "prompt": r.prompt, "completion": r.completion,
        })).collect::<Vec<_>>(),
    })
}

fn pairs(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

fn query_log(query: &str) -> crate::log_store::LogQuery {
    let mut q = crate::log_store::LogQuery::default();
    for (k, v) in pairs(query) {
        match k.as_str() {
            "key" => q.key = Some(v),
            "model" => q.model = Some(v),
            "provider" => q.provider = Some(v),
            "status" => q.status = Some(v),
            "error" => q.error = Some(v),
            "request_id" => q.request_id = Some(v),
            "since" => q.since = v.parse().ok(),
            "until" => q.until = v.parse().ok(),
            "before" => q.before = v.parse().ok(),
            "limit" => q.limit = v.parse().ok(),
            _ => {}
        }
    }
    q
}

fn query_usage(query: &str) -> crate::log_store::UsageQuery {
    let mut q = crate::log_store::UsageQuery::default();
    for (k, v) in pairs(query) {
        match k.as_str() {
            "group" => q.group = Some(v),
            "stack" => q.stack = Some(v),
            "since" => q.since = v.parse().ok(),
            "until" => q.until = v.parse().ok(),
            _ => {}
        }
    }
    q
}

const MASKED: &str = "***";

/// The config in force, as JSON, with every credential masked.
fn effective_config(c: &Config) -> Value {
    let d = |d: std::time::Duration| humantime::format_duration(d).to_string();
    json!({
        "server": {
            "listen": c.server.listen,
            "threads": c.server.threads,
            "max_body_bytes": c.server.max_body_bytes,
            "max_header_bytes": c.server.max_header_bytes,
            "watch_config": c.server.watch_config,
            "trusted_proxies": c.server.trusted_proxies.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
            "tls": c.server.tls.as_ref().map(|t| json!({"cert": t.cert, "key": t.key})),
            "clients": {
                "header_timeout": d(c.server.clients.header_timeout),
                "body_timeout": d(c.server.clients.body_timeout),
                "write_timeout": d(c.server.clients.write_timeout),
                "drain_timeout": d(c.server.clients.drain_timeout),
                "keepalive": d(c.server.clients.keepalive),
                "max_connections": c.server.clients.max_connections,
            },
        },
        "metrics": {"listen": c.metrics_listen},
        "admin": c.admin.as_ref().map(|a| json!({"listen": a.listen, "key": MASKED})),
        "providers": c.providers.iter().map(|p| json!({
            "name": p.name,
            "kind": p.vendor.kind(),
            "base_url": format!("{}://{}{}", if p.endpoint.tls { "https" } else { "http" }, p.endpoint.authority(), p.endpoint.path_prefix),
            "api_key": p.api_key.as_ref().map(|_| MASKED),
            "max_in_flight": p.max_in_flight,
            "timeouts": {
                "connect": d(p.timeouts.connect),
                "first_byte": d(p.timeouts.first_byte),
                "idle": d(p.timeouts.idle),
                "total": d(p.timeouts.total),
            },
        })).collect::<Vec<_>>(),
        "models": c.models.iter().map(|m| (m.name.clone(), json!({
            "targets": m.targets.iter().map(|t| json!({
                "provider": t.provider.name, "model": t.model, "weight": t.weight, "priority": t.priority,
            })).collect::<Vec<_>>(),
            "retry": {"attempts": m.retry.attempts, "deadline": d(m.retry.deadline)},
            "limits": {"rpm": m.limits.rpm, "tpm": m.limits.tpm},
            "price": m.price.as_ref().map(price_json),
            "redact_pii": m.redact_pii,
            "log_bodies": m.log_bodies,
        }))).collect::<serde_json::Map<_, _>>(),
        "keys": c.keys.iter().map(|k| json!({
            "name": k.name,
            "key": MASKED,
            "models": match &k.models {
                ModelAccess::All => json!(["*"]),
                ModelAccess::Only(set) => { let mut v: Vec<_> = set.iter().collect(); v.sort(); json!(v) }
            },
            "limits": {"rpm": k.limits.rpm, "tpm": k.limits.tpm},
            "budget": k.budgets.first().map(|b| json!({
                "tokens": b.tokens, "cost": b.cost,
                "period": match b.period { Period::Day => "day", Period::Month => "month", Period::Total => "total" },
            })),
            "allow_ips": k.allow_ips.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
            "expires_at": k.expires_at,
        })).collect::<Vec<_>>(),
        "limits": match &c.limits_backend {
            LimitsBackend::Local => json!({"backend": "local"}),
            LimitsBackend::Redis { prefix, .. } => json!({"backend": "redis", "redis_url": MASKED, "prefix": prefix}),
        },
        "log": {"format": format!("{:?}", c.log.format).to_lowercase(), "path": c.log.path},
        "cors": {"allow_origins": c.cors.allow_origins, "max_age": c.cors.max_age_secs},
        "telemetry": c.telemetry.as_ref().map(|t| json!({"otlp": {
            "endpoint": t.endpoint,
            "protocol": match t.protocol { OtlpProtocol::HttpProtobuf => "http/protobuf", OtlpProtocol::Grpc => "grpc" },
            "headers": t.headers.iter().map(|(k, _)| (k.clone(), json!(MASKED))).collect::<serde_json::Map<_, _>>(),
            "sample_ratio": t.sample_ratio,
            "capture_content": t.capture_content,
            "service_name": t.service_name,
        }})),
    })
}
