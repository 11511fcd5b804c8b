//! A finished request's spans: one SERVER span for the request, one CLIENT span for each
//! attempt, named `{operation} {model}` and attributed by the OpenTelemetry GenAI semantic
//! conventions (`gen_ai.*`), plus the gateway's own (`modelmux.*`).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::trace::{SpanContext, SpanKind, Status, TraceFlags, TraceState};
use opentelemetry::{Array, InstrumentationScope, KeyValue, StringValue, Value};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};

use super::RequestTrace;
use crate::config::{Provider, Vendor};
use crate::log_store::Attempt;
use crate::providers::Usage;

/// The most prompt text kept for `capture_content`.
const MAX_PROMPT: usize = 64 * 1024;

/// What the access log knows of a finished request, for its spans.
pub(crate) struct Finished<'a> {
    pub(crate) trace: &'a RequestTrace,
    pub(crate) duration: Duration,
    pub(crate) method: &'a str,
    pub(crate) path: &'a str,
    /// The address the client called (its `Host`).
    pub(crate) host: Option<&'a str>,
    pub(crate) status: u16,
    pub(crate) request_id: &'a str,
    /// The public model, the provider and vendor model that answered (or were tried last).
    pub(crate) model: Option<&'a str>,
    pub(crate) provider: Option<&'a str>,
    pub(crate) vendor_model: Option<&'a str>,
    pub(crate) key: Option<&'a str>,
    pub(crate) cache: Option<&'a str>,
    pub(crate) time_to_first_token: Option<Duration>,
    pub(crate) usage: Option<Usage>,
    pub(crate) error: Option<&'a str>,
    pub(crate) attempts: &'a [Attempt],
    pub(crate) providers: &'a [Arc<Provider>],
    /// The request body, with `capture_content`.
    pub(crate) prompt: Option<&'a [u8]>,
}

/// The request's span and its attempts' spans.
pub(crate) fn request_spans(f: &Finished) -> Vec<SpanData> {
    let t = f.trace;
    let operation = operation(f.path);
    let provider = |name: &str| f.providers.iter().find(|p| p.name == name);
    let scope = InstrumentationScope::builder("modelmux")
        .with_version(env!("CARGO_PKG_VERSION"))
        .build();
    let state = t
        .state
        .as_deref()
        .and_then(|s| s.parse::<TraceState>().ok())
        .unwrap_or_default();
    let context =
        |span| SpanContext::new(t.trace_id, span, TraceFlags::SAMPLED, false, state.clone());
    let name = match f.model {
        Some(model) => format!("{operation} {model}"),
        None => format!("{} {}", f.method, f.path),
    };

    let mut attrs = vec![
        KeyValue::new("http.request.method", f.method.to_string()),
        KeyValue::new("url.path", f.path.to_string()),
        KeyValue::new("http.response.status_code", i64::from(f.status)),
        KeyValue::new("modelmux.request_id", f.request_id.to_string()),
    ];
    let mut text = |k: &'static str, v: Option<&str>| {
        if let Some(v) = v {
            attrs.push(KeyValue::new(k, v.to_string()));
        }
    };
    if f.model.is_some() {
        text("gen_ai.operation.name", Some(operation));
    }
    text("gen_ai.request.model", f.model);
    let vendor = f.provider.and_then(provider).map(|p| vendor_name(p));
    text("gen_ai.provider.name", vendor.as_deref());
    let reply = &t.reply;
    text(
        "gen_ai.response.model",
        reply.model.as_deref().or(f.vendor_model),
    );
    text("gen_ai.response.id", reply.id.as_deref());
    text("modelmux.model", f.model);
    text("modelmux.key", f.key);
    text("modelmux.provider", f.provider);
    text("modelmux.cache", f.cache);
    let target = f
        .provider
        .zip(f.vendor_model)
        .map(|(p, m)| format!("{p}/{m}"));
    text("modelmux.target", target.as_deref());
    text("error.type", f.error);
    if let Some(host) = f.host {
        let (address, port) = split_host(host);
        attrs.push(KeyValue::new("server.address", address.to_string()));
        if let Some(port) = port {
            attrs.push(KeyValue::new("server.port", i64::from(port)));
        }
    }
    if !reply.finish_reasons.is_empty() {
        let reasons = reply.finish_reasons.iter().cloned().map(StringValue::from);
        attrs.push(KeyValue::new(
            "gen_ai.response.finish_reasons",
            Value::Array(Array::String(reasons.collect())),
        ));
    }
    if let Some(u) = f.usage {
        let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        attrs.push(KeyValue::new(
            "gen_ai.usage.input_tokens",
            count(u.prompt_tokens),
        ));
        attrs.push(KeyValue::new(
            "gen_ai.usage.output_tokens",
            count(u.completion_tokens),
        ));
        if u.cached_tokens > 0 {
            attrs.push(KeyValue::new(
                "gen_ai.usage.cache_read.input_tokens",
                count(u.cached_tokens),
            ));
        }
        if u.cache_write_tokens > 0 {
            attrs.push(KeyValue::new(
                "gen_ai.usage.cache_creation.input_tokens",
                count(u.cache_write_tokens),
            ));
        }
    }
    if let Some(ttft) = f.time_to_first_token {
        attrs.push(KeyValue::new(
            "modelmux.time_to_first_token_ms",
            ttft.as_secs_f64() * 1000.0,
        ));
    }
    if t.captures_content() {
        if let Some(prompt) = f.prompt {
            attrs.push(KeyValue::new("gen_ai.input.messages", prompt_text(prompt)));
        }
        if let Some(reply) = reply.text.as_ref().filter(|r| !r.is_empty()) {
            attrs.push(KeyValue::new("gen_ai.output.messages", reply.clone()));
        }
    }
    // A client's mistake (4xx) is not the server span's error; a stream cut after its 200 is.
    let failed = f.status >= 500 || (f.status < 400 && f.error.is_some());
    let mut spans = Vec::with_capacity(1 + f.attempts.len());
    spans.push(SpanData {
        span_context: context(t.span_id),
        parent_span_id: t.parent.unwrap_or(opentelemetry::trace::SpanId::INVALID),
        parent_span_is_remote: t.parent.is_some(),
        span_kind: SpanKind::Server,
        name: Cow::Owned(name),
        start_time: t.start,
        end_time: t.start + f.duration,
        attributes: attrs,
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: if failed {
            Status::error(f.error.unwrap_or("http_error").to_string())
        } else {
            Status::Unset
        },
        instrumentation_scope: scope.clone(),
    });
    for (attempt, (span_id, began)) in f.attempts.iter().zip(&t.attempts) {
        let mut attrs = vec![
            KeyValue::new("gen_ai.operation.name", operation),
            KeyValue::new("gen_ai.request.model", attempt.model.clone()),
            KeyValue::new("modelmux.provider", attempt.provider.clone()),
            KeyValue::new("modelmux.outcome", attempt.outcome.to_string()),
        ];
        if let Some(p) = provider(&attempt.provider) {
            attrs.push(KeyValue::new("gen_ai.provider.name", vendor_name(p)));
            attrs.push(KeyValue::new("server.address", p.endpoint.host.clone()));
            attrs.push(KeyValue::new("server.port", i64::from(p.endpoint.port)));
        }
        if let Some(status) = attempt.status {
            attrs.push(KeyValue::new(
                "http.response.status_code",
                i64::from(status),
            ));
        }
        let ok = attempt.outcome == "ok";
        if !ok {
            attrs.push(KeyValue::new("error.type", attempt.outcome.to_string()));
        }
        spans.push(SpanData {
            span_context: context(*span_id),
            parent_span_id: t.span_id,
            parent_span_is_remote: false,
            span_kind: SpanKind::Client,
            name: Cow::Owned(format!("{operation} {}", attempt.model)),
            start_time: *began,
            end_time: *began + Duration::from_secs_f64(attempt.duration_ms.max(0.0) / 1000.0),
            attributes: attrs,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: if ok {
                Status::Unset
            } else {
                Status::error(attempt.outcome.to_string())
            },
            instrumentation_scope: scope.clone(),
        });
    }
    spans
}

/// `gen_ai.operation.name` for the API a path belongs to.
fn operation(path: &str) -> &'static str {
    if path.ends_with("/embeddings") {
        "embeddings"
    } else if path.contains("/images/") {
        "generate_content"
    } else if path == "/v1/completions" || path == "/completions" {
        "text_completion"
    } else {
        "chat"
    }
}

/// `gen_ai.provider.name`: the conventions' name for the vendor; an OpenAI-compatible
/// server (DeepSeek, vLLM, ...) by the provider's own name.
fn vendor_name(p: &Provider) -> String {
    match p.vendor {
        Vendor::OpenAi => "openai".into(),
        Vendor::Anthropic => "anthropic".into(),
        Vendor::Gemini => "gcp.gemini".into(),
        Vendor::DashScope => "alibaba.dashscope".into(),
        Vendor::QianfanV1 { .. } | Vendor::QianfanV2 => "baidu.qianfan".into(),
        Vendor::OpenAiCompatible => p.name.clone(),
    }
}

fn split_host(host: &str) -> (&str, Option<u16>) {
    match host.rsplit_once(':') {
        Some((h, port)) if !h.ends_with(']') || h.starts_with('[') => match port.parse() {
            Ok(port) => (h, Some(port)),
            Err(_) => (host, None),
        },
        _ => (host, None),
    }
}

/// The prompt for `gen_ai.input.messages`: the body's messages (or input, or prompt) as JSON,
/// else the body; cut to `MAX_PROMPT`.
fn prompt_text(body: &[u8]) -> String {
    let parsed = serde_json::from_slice::<serde_json::Value>(body).ok();
    let part = parsed.as_ref().and_then(|v| {
        ["messages", "input", "prompt"]
            .iter()
            .find_map(|k| v.get(*k))
    });
    let mut text = match part {
        Some(p) => p.to_string(),
        None => String::from_utf8_lossy(body).into_owned(),
    };
    text.truncate(text.floor_char_boundary(MAX_PROMPT));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_and_hosts() {
        assert_eq!(operation("/v1/chat/completions"), "chat");
        assert_eq!(operation("/v1/messages"), "chat");
        assert_eq!(operation("/v1/embeddings"), "embeddings");
        assert_eq!(operation("/v1/completions"), "text_completion");
        assert_eq!(split_host("gw.example:8080"), ("gw.example", Some(8080)));
        assert_eq!(split_host("[::1]:8080"), ("[::1]", Some(8080)));
        assert_eq!(split_host("gw.example"), ("gw.example", None));
    }
}
