//! After the answer: metrics, rate limits and budgets settled with what the request really
//! used, and the access-log line.

use std::time::{Duration, Instant};

use super::access_log::{Line, Outcomes};
use super::{Gateway, RequestCtx, Session};
use crate::api::ClientApi;
use crate::metrics;
use crate::providers::Usage;
use crate::traffic::budget::cost_of;

fn ms_since(start: Instant, at: Option<Instant>) -> Option<f64> {
    at.map(|t| t.duration_since(start).as_secs_f64() * 1000.0)
}

impl Gateway {
    pub(super) async fn finish(&self, session: &Session, ctx: &mut RequestCtx) {
        let status = session.response_written().map_or(0, |h| h.status.as_u16());
        let elapsed = ctx.start.elapsed();
        record_metrics(ctx, status, elapsed);
        if let Some(target) = ctx.target() {
            let failure =
                (status >= 500 || ctx.upstream_error.is_some()).then(|| match ctx.upstream_error {
                    Some(kind) => format!("{} (HTTP {status})", kind.as_str()),
                    None => format!("HTTP {status}"),
                });
            let ttft = ctx.first_token.map(|t| t.duration_since(ctx.start));
            self.timeline
                .record(target, failure.as_deref(), elapsed, ttft);
        }
        // What the request used: the vendor's count, or, for a stream cut before its usage
        // came, what reached the client; so hanging up early is not a way around the budget.
        let used = ctx.usage.or_else(|| {
            (ctx.received_tokens > 0).then(|| Usage::new(ctx.prompt_estimate, ctx.received_tokens))
        });
        let config = ctx.config.clone();
        let price = ctx
            .model
            .as_deref()
            .and_then(|m| config.model(m))
            .and_then(|m| m.price.as_ref());
        if let Some(admission) = &ctx.admission {
            self.limiter
                .settle(admission, used.map(|u| u.total_tokens))
                .await;
        }
        if let Some(reservation) = &ctx.reservation {
            self.budgets
                .settle(reservation, &used.unwrap_or_default(), price)
                .await;
        }
        let cost = used.zip(price).map(|(u, p)| cost_of(&u, Some(p)));
        if let Some(cost) = cost {
            metrics::COST
                .with_label_values(&[label(&ctx.model), label(&ctx.provider)])
                .inc_by(cost);
        }
        self.export_spans(session, ctx, status, elapsed, used);
        if self.access_log.is_none() && self.log_store.is_none() {
            return;
        }
        let mut line = access_line(session, ctx, status, elapsed, used, cost);
        if let Some(log) = &self.access_log {
            log.write(&line);
        }
        // Health checks are not requests anyone asks about.
        if let Some(store) = self.log_store.as_ref().filter(|_| line.path != "/health") {
            let mut row = log_row(&mut line, ctx, used);
            drop(line);
            // The request is over: the row takes what it holds rather than copies.
            row.request_id = std::mem::take(&mut ctx.request_id);
            row.attempts = std::mem::take(&mut ctx.attempts);
            row.model = ctx.model.take();
            row.provider = ctx.provider.take();
            row.vendor_model = ctx.vendor_model.take();
            store.push(row);
        }
    }
}

impl Gateway {
    /// A sampled request's spans, handed to the exporter.
    fn export_spans(
        &self,
        session: &Session,
        ctx: &RequestCtx,
        status: u16,
        elapsed: Duration,
        used: Option<Usage>,
    ) {
        let (Some(exporter), Some(trace)) = (&self.telemetry, &ctx.trace) else {
            return;
        };
        if !trace.sampled {
            return;
        }
        let header = session.req_header();
        // A failed request names what failed, or failing that its status.
        let code = status.to_string();
        let error =
            (status >= 400 || ctx.upstream_error.is_some()).then(|| ctx.failure().unwrap_or(&code));
        let spans = crate::telemetry::request_spans(&crate::telemetry::Finished {
            trace,
            duration: elapsed,
            method: header.method.as_str(),
            path: header.uri.path(),
            host: header.headers.get("host").and_then(|h| h.to_str().ok()),
            status,
            request_id: &ctx.request_id,
            model: ctx.model.as_deref(),
            provider: ctx.provider.as_deref(),
            vendor_model: ctx.vendor_model.as_deref(),
            key: ctx
                .key
                .and_then(|i| ctx.config.keys.get(i))
                .map(|k| k.name.as_str()),
            cache: ctx.cache_status,
            time_to_first_token: ctx.first_token.map(|t| t.duration_since(ctx.start)),
            usage: used,
            error,
            attempts: &ctx.attempts,
            providers: &ctx.config.providers,
            prompt: ctx.logged_prompt.as_deref(),
        });
        exporter.send(spans);
    }
}

/// The log store's row: the access line's facts (its client address taken), and the token
/// details; the request id, attempts, model, provider and vendor model are the caller's to
/// move in.
fn log_row(line: &mut Line, ctx: &RequestCtx, used: Option<Usage>) -> crate::log_store::LogRow {
    let owned = |s: Option<&str>| s.map(str::to_string);
    crate::log_store::LogRow {
        request_id: String::new(),
        time_ms: line.time_ms,
        key: owned(line.key),
        client_ip: line.client_ip.take(),
        api: line.api.into(),
        method: static_method(line.method),
        path: line.path.to_string(),
        model: None,
        provider: None,
        vendor_model: None,
        attempts: Vec::new(),
        status: line.status,
        error: ctx.failure().map(str::to_string),
        stream: line.stream,
        cache: owned(line.cache),
        ttfb_ms: line.ttfb_ms,
        ttft_ms: line.ttft_ms,
        duration_ms: line.duration_ms,
        prompt_tokens: used.map(|u| u.prompt_tokens),
        cached_tokens: used.map(|u| u.cached_tokens),
        cache_write_tokens: used.map(|u| u.cache_write_tokens),
        completion_tokens: used.map(|u| u.completion_tokens),
        reasoning_tokens: used.map(|u| u.reasoning_tokens),
        cost: line.cost,
        bytes_in: line.bytes_in as u64,
        bytes_out: line.bytes_out as u64,
        request_body: stored_body(ctx, &ctx.logged_prompt),
        response_body: stored_body(ctx, &ctx.logged_reply),
    }
}

/// Whether the model logs bodies to the access log (`log_bodies: true`).
fn logs_bodies(ctx: &RequestCtx) -> bool {
    ctx.model
        .as_deref()
        .and_then(|m| ctx.config.model(m))
        .is_some_and(|m| m.log_bodies)
}

/// A body for the log store, where `logs.bodies` asks for it: redacted for models with
/// `redact_pii` (as their vendors saw it), cut to `logs.bodies.max_bytes`.
fn stored_body(ctx: &RequestCtx, body: &Option<bytes::Bytes>) -> Option<String> {
    let body = body.as_ref()?;
    let bodies = &ctx.config.logs.as_ref()?.bodies;
    let model = ctx.model.as_deref().and_then(|m| ctx.config.model(m));
    let key = ctx
        .key
        .and_then(|i| ctx.config.keys.get(i))
        .map(|k| k.name.as_str());
    if !bodies.wanted(model.map(|m| m.name.as_str()), key) {
        return None;
    }
    let text = String::from_utf8_lossy(body);
    let mut text = match model.is_some_and(|m| m.redact_pii) {
        true => crate::traffic::redact::redact(&text).into_owned(),
        false => text.into_owned(),
    };
    if text.len() > bodies.max_bytes {
        text.truncate(text.floor_char_boundary(bodies.max_bytes));
        text.push_str("…[truncated]");
    }
    Some(text)
}

fn label(name: &Option<String>) -> &str {
    name.as_deref().unwrap_or("-")
}

fn record_metrics(ctx: &RequestCtx, status: u16, elapsed: Duration) {
    let (model, provider) = (label(&ctx.model), label(&ctx.provider));
    let target = ctx.target().unwrap_or("-");
    let series = metrics::target_series(model, provider, target);
    series.count_request(status);
    if ctx.model.is_some() {
        series.duration().observe(elapsed.as_secs_f64());
        metrics::REQUEST_SIZE
            .with_label_values(&[api_name(ctx.api)])
            .observe(ctx.bytes_in as f64);
    }
    if let (Some(first), true) = (ctx.first_token, (200..300).contains(&status)) {
        let ttft = first.duration_since(ctx.start).as_secs_f64();
        series.time_to_first_token().observe(ttft);
        if let Some(u) = ctx.usage.filter(|u| u.completion_tokens > 1) {
            let per_token = (elapsed.as_secs_f64() - ttft) / (u.completion_tokens - 1) as f64;
            series.time_per_output_token().observe(per_token.max(0.0));
        }
    }
    if let Some(u) = ctx.usage {
        series.count_tokens(u.prompt_tokens, u.completion_tokens);
    }
}

fn access_line<'a>(
    session: &'a Session,
    ctx: &'a RequestCtx,
    status: u16,
    elapsed: Duration,
    used: Option<Usage>,
    cost: Option<f64>,
) -> Line<'a> {
    let header = session.req_header();
    let text =
        |b: &Option<bytes::Bytes>| b.as_ref().map(|b| String::from_utf8_lossy(b).into_owned());
    // Bodies are kept only when asked: the model is looked up only then.
    let bodies = ctx.logged_prompt.is_some() && logs_bodies(ctx);
    Line {
        time_ms: crate::clock::unix_millis(),
        request_id: &ctx.request_id,
        key: ctx
            .key
            .and_then(|i| ctx.config.keys.get(i))
            .map(|k| k.name.as_str()),
        client_ip: ctx.client_ip.map(super::access_log::ip_text),
        api: api_name(ctx.api),
        method: header.method.as_str(),
        path: header.uri.path(),
        model: ctx.model.as_deref(),
        provider: ctx.provider.as_deref(),
        vendor_model: ctx.vendor_model.as_deref(),
        attempts: Outcomes(&ctx.attempts),
        status,
        stream: ctx.stream,
        ttfb_ms: ms_since(ctx.start, ctx.first_byte),
        ttft_ms: ms_since(ctx.start, ctx.first_token),
        duration_ms: elapsed.as_secs_f64() * 1000.0,
        prompt_tokens: used.map(|u| u.prompt_tokens),
        completion_tokens: used.map(|u| u.completion_tokens),
        cost,
        bytes_in: ctx.bytes_in,
        bytes_out: session.body_bytes_sent(),
        cache: ctx.cache_status,
        prompt: bodies.then(|| text(&ctx.logged_prompt)).flatten(),
        reply: bodies.then(|| text(&ctx.logged_reply)).flatten(),
    }
}

fn api_name(api: ClientApi) -> &'static str {
    match api {
        ClientApi::OpenAi => "openai",
        ClientApi::OpenAiLegacy => "openai_legacy",
        ClientApi::Anthropic => "anthropic",
        ClientApi::Responses => "responses",
    }
}

/// The request's method as the gateway's own text when it is one of HTTP's, to borrow.
fn static_method(method: &str) -> std::borrow::Cow<'static, str> {
    const KNOWN: [&str; 7] = ["POST", "GET", "DELETE", "PUT", "PATCH", "OPTIONS", "HEAD"];
    match KNOWN.into_iter().find(|known| *known == method) {
        Some(known) => known.into(),
        None => method.to_string().into(),
    }
}
