//! `POST /v1/compare`: one chat request run on several models at once, side by side. Each
//! model's request goes back into this gateway over its own Unix socket, so it gets everything
//! a request to that model gets (routing, failover, limits and budgets per model, the cache,
//! metrics, an access-log line), and one model's failure is only that model's result.

use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Value};

use super::respond::{client_gone, write_stream_header, write_value};
use super::upstream::Exchange;
use super::{Gateway, Handled, RequestCtx, Session, Stop};
use crate::api::ClientApi;
use crate::config::Timeouts;
use crate::error::GatewayError;
use crate::providers::openai::ChatRequest;
use crate::providers::sse::SseSplitter;
use crate::providers::UpstreamRequest;

/// The most models one compare request may name.
pub(crate) const MAX_MODELS: usize = 8;
/// Marks a request that came from a compare over the gateway's socket; its value is a secret
/// of this process, so only such requests may name their client's address.
pub(crate) const COMPARE_HEADER: &str = "x-modelmux-compare";

/// Where a compare sends its per-model requests: this process's Unix socket.
pub(crate) struct LocalRoute {
    pub(crate) socket: String,
    pub(crate) secret: String,
}

impl LocalRoute {
    pub(crate) fn new(socket: String) -> Self {
        LocalRoute {
            socket,
            secret: crate::random::token(),
        }
    }
}

/// Backstops only: each model's request is bounded by its own route's deadline.
const INNER: Timeouts = Timeouts {
    connect: Duration::from_secs(2),
    first_byte: Duration::from_secs(900),
    idle: Duration::from_secs(900),
    total: Duration::from_secs(1800),
};

impl Gateway {
    pub(super) async fn compare(&self, session: &mut Session, ctx: &mut RequestCtx) -> Handled {
        let (_, _, body) = self.accept(session, ctx, ClientApi::OpenAi).await?;
        let (models, stream, bodies) = ChatRequest::parse_compare(&body, MAX_MODELS)?;
        ctx.bytes_in = body.len();
        ctx.stream = stream;
        let headers = self.inner_headers(session, ctx);
        let calls: Vec<UpstreamRequest> = bodies
            .into_iter()
            .enumerate()
            .map(|(i, body)| {
                let mut headers = headers.clone();
                headers.push(("x-request-id", format!("{}.{}", ctx.request_id, i + 1)));
                UpstreamRequest {
                    path_and_query: "/v1/chat/completions".into(),
                    headers,
                    body: Bytes::from(body),
                }
            })
            .collect();
        if stream {
            return self.compare_streams(session, ctx, &models, &calls).await;
        }
        let all = futures::future::join_all(
            models
                .iter()
                .zip(&calls)
                .map(|(model, call)| self.compare_one(model, call)),
        );
        // A client that hangs up drops the per-model requests, which cancels them in turn.
        let results = tokio::select! {
            results = all => results,
            gone = client_gone(session) => return Err(Stop::Downstream(gone)),
        };
        let reply = json!({"object": "compare", "results": results});
        ctx.first_byte = Some(Instant::now());
        write_value(session, 200, &reply, &ctx.success_headers()).await?;
        Ok(())
    }

    /// One request to this gateway itself, over its socket.
    pub(super) async fn send_self(
        &self,
        request: &UpstreamRequest,
    ) -> crate::error::GwResult<Exchange> {
        self.upstreams
            .send_local(&self.local.socket, &INNER, request)
            .await
    }

    /// A chat or compare request to this gateway's own API as the client key `key` (the
    /// console's playground), from loopback.
    pub(crate) async fn call_self(
        &self,
        path: &str,
        key: &str,
        body: Bytes,
    ) -> crate::error::GwResult<Exchange> {
        let request = UpstreamRequest {
            path_and_query: path.to_string(),
            headers: vec![
                (COMPARE_HEADER, self.local.secret.clone()),
                ("authorization", format!("Bearer {key}")),
                ("x-forwarded-for", "127.0.0.1".into()),
            ],
            body,
        };
        self.send_self(&request).await
    }

    /// One request to this gateway's own API with `headers` (from [`Self::inner_headers`]):
    /// its JSON answer, or its error with the status and message it had.
    pub(crate) async fn call_local(
        &self,
        path: &str,
        headers: Vec<(&'static str, String)>,
        body: &Value,
    ) -> crate::error::GwResult<Value> {
        let request = UpstreamRequest {
            path_and_query: path.to_string(),
            headers,
            body: Bytes::from(serde_json::to_vec(body).expect("json serializes")),
        };
        let mut exchange = self.send_self(&request).await?;
        let status = exchange.status();
        let reply = exchange
            .read_all(super::upstream::MAX_UPSTREAM_BODY)
            .await?;
        self.upstreams.release(exchange);
        let v: Value = serde_json::from_slice(&reply).unwrap_or(Value::Null);
        if (200..300).contains(&status) {
            return Ok(v);
        }
        let message = v
            .pointer("/error/message")
            .and_then(Value::as_str)
            .unwrap_or("the request failed")
            .to_string();
        Err(GatewayError::new(crate::error::ErrorKind::UpstreamError, message).with_status(status))
    }

    /// What each per-model request carries: the caller's key as it was presented, its
    /// address, and this process's mark that lets the address be believed.
    pub(super) fn inner_headers(
        &self,
        session: &Session,
        ctx: &RequestCtx,
    ) -> Vec<(&'static str, String)> {
        let h = &session.req_header().headers;
        let mut headers = vec![(COMPARE_HEADER, self.local.secret.clone())];
        for name in ["authorization", "x-api-key", "x-session-id"] {
            if let Some(v) = h.get(name).and_then(|v| v.to_str().ok()) {
                headers.push((name, v.to_string()));
            }
        }
        if let Some(ip) = ctx.client_ip {
            headers.push(("x-forwarded-for", ip.to_string()));
        }
        headers
    }

    /// One model's whole answer, or its error, as a result entry.
    async fn compare_one(&self, model: &str, call: &UpstreamRequest) -> Value {
        let began = Instant::now();
        let mut result = ModelResult::new(model);
        match self.send_self(call).await {
            Err(e) => result.error = Some(error_json(&e)),
            Ok(mut exchange) => {
                let header_at = began.elapsed();
                let status = exchange.status();
                match exchange.read_all(super::upstream::MAX_UPSTREAM_BODY).await {
                    Ok(body) => {
                        self.upstreams.release(exchange);
                        result.read_reply(status, &body);
                        if result.error.is_none() {
                            result.ttft = Some(header_at);
                        }
                    }
                    Err(e) => result.error = Some(error_json(&e)),
                }
            }
        }
        result.into_json(began.elapsed())
    }

    /// Every model's stream interleaved as its chunks come (each chunk names its model), then
    /// one `compare.result` event per model, then `[DONE]`.
    async fn compare_streams(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        models: &[String],
        calls: &[UpstreamRequest],
    ) -> Handled {
        write_stream_header(session, &ctx.success_headers()).await?;
        ctx.first_byte = Some(Instant::now());
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(64);
        let producers = futures::future::join_all(
            models
                .iter()
                .zip(calls)
                .map(|(model, call)| self.stream_one(model, call, tx.clone())),
        );
        drop(tx);
        let writer = async {
            while let Some(event) = rx.recv().await {
                ctx.first_token.get_or_insert_with(Instant::now);
                session.write_response_body(event, false).await?;
            }
            let done = Bytes::from_static(b"data: [DONE]\n\n");
            session.write_response_body(done, false).await?;
            session.finish_body().await
        };
        // A client that hangs up ends the writer, and with it the channel: each producer stops
        // at its next event and drops its model's request.
        let (_, written) = tokio::join!(producers, writer);
        written?;
        Ok(())
    }

    async fn stream_one(&self, model: &str, call: &UpstreamRequest, tx: Sender) {
        let began = Instant::now();
        let mut result = ModelResult::new(model);
        match self.send_self(call).await {
            Err(e) => result.error = Some(error_json(&e)),
            Ok(exchange) if !(200..300).contains(&exchange.status()) => {
                let status = exchange.status();
                let mut exchange = exchange;
                let body = exchange.read_all(1024 * 1024).await.unwrap_or_default();
                result.read_reply(status, &body);
            }
            Ok(exchange) => {
                if self
                    .relay_events(exchange, &mut result, began, &tx)
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
        let mut summary = result.into_json(began.elapsed());
        summary["object"] = json!("compare.result");
        let _ = tx.send(sse(&summary)).await;
    }

    /// Passes one model's chunks on, noting its first token, usage and in-band error. Err when
    /// the client is gone.
    async fn relay_events(
        &self,
        mut exchange: Exchange,
        result: &mut ModelResult<'_>,
        began: Instant,
        tx: &Sender,
    ) -> Result<(), ()> {
        let mut splitter = SseSplitter::new();
        loop {
            let chunk = match exchange.next_chunk().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(e) => {
                    result.error = Some(error_json(&e));
                    break;
                }
            };
            let mut events = Vec::new();
            if splitter
                .push(&chunk, |e| events.push(e.data.into_owned()))
                .is_err()
            {
                break;
            }
            for data in events {
                if data == "[DONE]" {
                    continue;
                }
                let Ok(v) = serde_json::from_str::<Value>(&data) else {
                    continue;
                };
                if let Some(err) = v.get("error") {
                    result.error = Some(err.clone());
                    continue;
                }
                if let Some(u) = v.get("usage").filter(|u| !u.is_null()) {
                    result.usage = Some(u.clone());
                }
                let has_choices = v
                    .get("choices")
                    .and_then(Value::as_array)
                    .is_some_and(|c| !c.is_empty());
                if !has_choices {
                    continue;
                }
                result.ttft.get_or_insert_with(|| began.elapsed());
                tx.send(sse(&v)).await.map_err(|_| ())?;
            }
        }
        Ok(())
    }
}

type Sender = tokio::sync::mpsc::Sender<Bytes>;

pub(super) fn sse(v: &Value) -> Bytes {
    let mut out = b"data: ".to_vec();
    serde_json::to_writer(&mut out, v).expect("json serializes");
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// One model's result as it builds up.
struct ModelResult<'m> {
    model: &'m str,
    choices: Value,
    usage: Option<Value>,
    ttft: Option<Duration>,
    error: Option<Value>,
}

impl<'m> ModelResult<'m> {
    fn new(model: &'m str) -> Self {
        ModelResult {
            model,
            choices: json!([]),
            usage: None,
            ttft: None,
            error: None,
        }
    }

    /// A whole reply: the model's choices and usage, or the error it answered with.
    fn read_reply(&mut self, status: u16, body: &[u8]) {
        let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        if (200..300).contains(&status) {
            self.choices = v.get("choices").cloned().unwrap_or(json!([]));
            self.usage = v.get("usage").cloned();
            return;
        }
        let mut error = v
            .get("error")
            .cloned()
            .unwrap_or_else(|| json!({"message": format!("HTTP {status}")}));
        error["status"] = json!(status);
        self.error = Some(error);
    }

    fn into_json(self, latency: Duration) -> Value {
        let ms = |d: Duration| d.as_millis() as u64;
        json!({"model": self.model, "choices": self.choices, "usage": self.usage,
               "latency_ms": ms(latency), "ttft_ms": self.ttft.map(ms), "error": self.error})
    }
}

fn error_json(e: &GatewayError) -> Value {
    json!({"message": e.message, "type": e.kind.as_str(), "status": e.status()})
}
