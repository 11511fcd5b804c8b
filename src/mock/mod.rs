//! Mock vendors: one Pingora HTTP app that speaks OpenAI, Anthropic Messages, DashScope,
//! Qianfan (v1 with OAuth, v2) and Gemini, each on its own loopback port (`base_port + 1..=5`),
//! so tests, benchmarks and the offline demo run without the internet.
//!
//! Replies are deterministic (see `conversation.rs`), and a test can ask any request for a
//! fault: latency, an error status, a reset or malformed event mid-stream, garbage, a hang.
//! `/__mock/*` on every port inspects and steers the mock (see `admin`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::http_app;

pub(crate) mod anthropic;
pub(crate) mod conversation;
pub(crate) mod dashscope;
pub(crate) mod gemini;
pub(crate) mod media;
pub(crate) mod openai;
pub(crate) mod qianfan;
pub(crate) mod responses;

use conversation::{reply_to, split_directive, Conversation, Fault, Reply};

/// The credentials each mock vendor accepts; the example config passes them by default.
pub(crate) mod keys {
    pub(crate) const OPENAI: &str = "sk-mock-openai";
    pub(crate) const ANTHROPIC: &str = "sk-ant-mock";
    pub(crate) const DASHSCOPE: &str = "sk-mock-dashscope";
    pub(crate) const QIANFAN_V2: &str = "bce-v3/mock-qianfan";
    pub(crate) const QIANFAN_CLIENT_ID: &str = "mock-qianfan-ak";
    pub(crate) const QIANFAN_CLIENT_SECRET: &str = "mock-qianfan-sk";
    pub(crate) const GEMINI: &str = "mock-gemini-key";
    /// Zhipu-style signed tokens: the key id and the secret they are signed with.
    pub(crate) const JWT_KEY_ID: &str = "mock-zhipu-id";
    pub(crate) const JWT_SECRET: &str = "mock-zhipu-secret";
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Vendor {
    OpenAi,
    Anthropic,
    DashScope,
    Qianfan,
    Gemini,
}

pub(crate) const VENDORS: [Vendor; 5] = [
    Vendor::OpenAi,
    Vendor::Anthropic,
    Vendor::DashScope,
    Vendor::Qianfan,
    Vendor::Gemini,
];

impl Vendor {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Vendor::OpenAi => "openai",
            Vendor::Anthropic => "anthropic",
            Vendor::DashScope => "dashscope",
            Vendor::Qianfan => "qianfan",
            Vendor::Gemini => "gemini",
        }
    }

    pub(crate) fn port(self, base_port: u16) -> u16 {
        base_port + 1 + VENDORS.iter().position(|v| *v == self).expect("listed") as u16
    }
}

/// The wire format a chat request came in, which decides how the reply and errors look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    OpenAi,
    /// OpenAI's legacy `/v1/completions`: a prompt in, `choices[].text` out.
    OpenAiLegacy,
    Anthropic,
    DashScope,
    QianfanV1,
    Gemini,
    /// OpenAI's Responses API (`/v1/responses`), stateful.
    Responses,
}

/// A request as the mock sees it.
pub(crate) struct MockRequest {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) query: HashMap<String, String>,
    pub(crate) headers: HashMap<String, String>,
    pub(crate) body: Vec<u8>,
}

impl MockRequest {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    pub(crate) fn bearer(&self) -> Option<&str> {
        self.header("authorization").and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
    }

    pub(crate) fn json(&self) -> Result<Value, String> {
        serde_json::from_slice(&self.body).map_err(|e| e.to_string())
    }
}

/// What the mock sends back.
pub(crate) enum Outcome {
    Json {
        status: u16,
        headers: Vec<(String, String)>,
        body: Value,
    },
    Raw {
        status: u16,
        content_type: &'static str,
        body: Vec<u8>,
    },
    Stream {
        events: Vec<String>,
        /// The vendor's in-stream error event, for `error_after`.
        error_event: String,
    },
}

impl Outcome {
    pub(crate) fn json(status: u16, body: Value) -> Outcome {
        Outcome::Json {
            status,
            headers: Vec::new(),
            body,
        }
    }
}

/// A parsed chat call, ready for a reply.
pub(crate) struct ChatCall {
    pub(crate) dialect: Dialect,
    pub(crate) conversation: Conversation,
}

/// What a vendor module made of a request.
pub(crate) enum Routed {
    Chat(ChatCall),
    /// An embeddings or image call, answered unless a fault says otherwise.
    Api(ApiCall),
    Done(Outcome),
}

/// A non-chat call and its answer; `text` (the prompt or first input) may carry a directive.
pub(crate) struct ApiCall {
    pub(crate) dialect: Dialect,
    pub(crate) text: Option<String>,
    pub(crate) outcome: Outcome,
}

impl Routed {
    pub(crate) fn api(dialect: Dialect, text: Option<String>, outcome: Outcome) -> Routed {
        Routed::Api(ApiCall {
            dialect,
            text,
            outcome,
        })
    }
}

#[derive(Default)]
struct StickyFault {
    fault: Fault,
    /// How many more requests get it; None: all of them.
    remaining: Option<u64>,
}

#[derive(Default)]
pub(crate) struct VendorState {
    last: Mutex<Value>,
    requests: AtomicU64,
    client_disconnects: AtomicU64,
    sticky: Mutex<Option<StickyFault>>,
}

#[derive(Default)]
pub(crate) struct MockState {
    vendors: HashMap<Vendor, VendorState>,
    ids: AtomicU64,
    pub(crate) qianfan: qianfan::TokenStore,
    pub(crate) tasks: dashscope::Tasks,
    pub(crate) responses: responses::Stored,
}

impl MockState {
    pub(crate) fn new() -> Self {
        MockState {
            vendors: VENDORS
                .iter()
                .map(|v| (*v, VendorState::default()))
                .collect(),
            ids: AtomicU64::new(1),
            qianfan: qianfan::TokenStore::default(),
            tasks: dashscope::Tasks::default(),
            responses: responses::Stored::default(),
        }
    }

    pub(crate) fn next_id(&self) -> u64 {
        self.ids.fetch_add(1, Ordering::Relaxed)
    }

    fn vendor(&self, v: Vendor) -> &VendorState {
        &self.vendors[&v]
    }
}

pub(crate) struct MockApp {
    base_port: u16,
    pub(crate) state: Arc<MockState>,
}

impl MockApp {
    pub(crate) fn new(base_port: u16) -> Self {
        MockApp {
            base_port,
            state: Arc::new(MockState::new()),
        }
    }

    /// Plain listeners are on `base_port + 1..=5`, TLS ones (when configured) ten above.
    fn vendor_for(&self, local_port: Option<u16>) -> Option<Vendor> {
        let port = local_port?;
        VENDORS.into_iter().find(|v| {
            v.port(self.base_port) == port || v.port(self.base_port) + TLS_PORT_OFFSET == port
        })
    }
}

/// TLS listeners of the mock vendors sit this far above the plain ones.
pub(crate) const TLS_PORT_OFFSET: u16 = 10;

/// The mock listeners' addresses.
pub(crate) fn listen_addresses(bind: &str, base_port: u16) -> Vec<String> {
    VENDORS
        .iter()
        .map(|v| format!("{bind}:{}", v.port(base_port)))
        .collect()
}

#[async_trait]
impl http_app::Handler for MockApp {
    async fn handle(&self, http: &mut ServerSession) -> bool {
        let port = http
            .server_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.port());
        let Some(vendor) = self.vendor_for(port) else {
            return false;
        };
        let bounds = crate::config::ClientLimits::default();
        let Ok(body) =
            http_app::read_body_within(http, 256 * 1024 * 1024, bounds.body_timeout).await
        else {
            return false;
        };
        let req = to_mock_request(http, body.to_vec());
        self.serve(vendor, &req, http).await
    }
}

fn to_mock_request(http: &ServerSession, body: Vec<u8>) -> MockRequest {
    let h = http.req_header();
    let query = h
        .uri
        .query()
        .map(|q| {
            q.split('&')
                .map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                    (k.to_string(), v.to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    let headers = h
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    MockRequest {
        method: h.method.as_str().to_string(),
        path: h.uri.path().to_string(),
        query,
        headers,
        body,
    }
}

impl MockApp {
    /// Answers one request; false when the connection must not be reused.
    async fn serve(&self, vendor: Vendor, req: &MockRequest, http: &mut ServerSession) -> bool {
        let vstate = self.state.vendor(vendor);
        if req.path.starts_with("/__mock/") {
            let outcome = self.admin(vendor, req);
            return write_outcome(http, outcome, &Fault::default(), vstate).await;
        }
        vstate.requests.fetch_add(1, Ordering::Relaxed);
        let routed = match vendor {
            Vendor::OpenAi => openai::route(req),
            Vendor::Anthropic => anthropic::route(req),
            Vendor::DashScope => dashscope::route(req, &self.state.tasks),
            Vendor::Qianfan => qianfan::route(req, &self.state.qianfan),
            Vendor::Gemini => gemini::route(req),
        };
        let (dialect, answer) = match routed {
            Routed::Done(outcome) => {
                record(vstate, req, None);
                return write_outcome(http, outcome, &Fault::default(), vstate).await;
            }
            Routed::Chat(call) => {
                record(vstate, req, Some(&call.conversation));
                (call.dialect, Answer::Chat(call))
            }
            Routed::Api(api) => {
                record(vstate, req, None);
                (api.dialect, Answer::Api(api))
            }
        };
        let text = match &answer {
            Answer::Chat(call) => call.conversation.last_user_text(),
            Answer::Api(api) => api.text.as_deref(),
        };
        let fault = match self.fault_for(vstate, req, text) {
            Ok(f) => f,
            Err(message) => {
                let outcome = error_outcome(dialect, 400, &message, None);
                return write_outcome(http, outcome, &Fault::default(), vstate).await;
            }
        };
        if fault.hang {
            // Hold the request until the client gives up (its timeout closes the socket).
            http.set_abort_on_close(true);
            let _ =
                tokio::time::timeout(Duration::from_secs(3600), http.read_body_or_idle(true)).await;
            vstate.client_disconnects.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        if fault.reset_after == Some(0) {
            return false;
        }
        if fault.latency_ms > 0 {
            // A client that gives up while the "model thinks" is seen, as a vendor sees it.
            http.set_abort_on_close(true);
            let gone = tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(fault.latency_ms)) => false,
                r = http.read_body_or_idle(true) => r.is_err(),
            };
            if gone {
                vstate.client_disconnects.fetch_add(1, Ordering::Relaxed);
                return false;
            }
        }
        let outcome = match answer {
            Answer::Chat(call) => self.answer(vendor, &call, &fault),
            Answer::Api(api) => injected(vendor, api.dialect, false, &fault).unwrap_or(api.outcome),
        };
        write_outcome(http, outcome, &fault, vstate).await
    }

    fn fault_for(
        &self,
        vstate: &VendorState,
        req: &MockRequest,
        text: Option<&str>,
    ) -> Result<Fault, String> {
        let mut fault = Fault::default();
        {
            let mut sticky = vstate.sticky.lock().expect("mock lock");
            if let Some(s) = sticky.as_mut() {
                fault = fault.merge(&s.fault);
                if let Some(n) = s.remaining.as_mut() {
                    *n -= 1;
                    if *n == 0 {
                        *sticky = None;
                    }
                }
            }
        }
        if let Some(h) = req.header("x-mock-fault") {
            fault = fault.merge(&Fault::parse(h)?);
        }
        if let Some(text) = text {
            if let (Some(d), _) = split_directive(text) {
                fault = fault.merge(&Fault::parse(d)?);
            }
        }
        Ok(fault)
    }

    fn answer(&self, vendor: Vendor, call: &ChatCall, fault: &Fault) -> Outcome {
        if let Some(o) = injected(vendor, call.dialect, call.conversation.stream, fault) {
            return o;
        }
        let id = self.state.next_id();
        let mut conv = call.conversation.clone();
        if let conversation::LastTurn::User(text) = &conv.last {
            conv.last = conversation::LastTurn::User(split_directive(text).1);
        }
        if call.dialect == Dialect::Responses {
            if let Err(not_found) = responses::continued(&self.state.responses, &mut conv) {
                return not_found;
            }
        }
        let reply: Reply = reply_to(&conv, vendor.name(), fault, format!("call_mock{id}"));
        match call.dialect {
            Dialect::Responses => responses::respond(&conv, &reply, id, &self.state.responses),
            Dialect::OpenAi => openai::respond(&conv, &reply, id),
            Dialect::OpenAiLegacy => openai::respond_legacy(&conv, &reply, id),
            Dialect::Anthropic => anthropic::respond(&conv, &reply, id),
            Dialect::DashScope => dashscope::respond(&conv, &reply, id),
            Dialect::QianfanV1 => qianfan::respond(&conv, &reply, id),
            Dialect::Gemini => gemini::respond(&conv, &reply, id),
        }
    }

    fn admin(&self, vendor: Vendor, req: &MockRequest) -> Outcome {
        let vstate = self.state.vendor(vendor);
        match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/__mock/last") => {
                Outcome::json(200, vstate.last.lock().expect("mock lock").clone())
            }
            ("GET", "/__mock/stats") => Outcome::json(
                200,
                json!({
                    "vendor": vendor.name(),
                    "requests": vstate.requests.load(Ordering::Relaxed),
                    "client_disconnects": vstate.client_disconnects.load(Ordering::Relaxed),
                    "token_fetches": self.state.qianfan.fetches(),
                }),
            ),
            ("POST", "/__mock/fault") => {
                let body = req.json().unwrap_or(Value::Null);
                let spec = body.get("fault").and_then(Value::as_str).unwrap_or("");
                match Fault::parse(spec) {
                    Ok(fault) => {
                        let remaining = body.get("times").and_then(Value::as_u64);
                        *vstate.sticky.lock().expect("mock lock") =
                            Some(StickyFault { fault, remaining });
                        Outcome::json(200, json!({"ok": true}))
                    }
                    Err(e) => Outcome::json(400, json!({"error": e})),
                }
            }
            ("DELETE", "/__mock/fault") => {
                *vstate.sticky.lock().expect("mock lock") = None;
                Outcome::json(200, json!({"ok": true}))
            }
            ("POST", "/__mock/reset") => {
                *vstate.sticky.lock().expect("mock lock") = None;
                vstate.requests.store(0, Ordering::Relaxed);
                vstate.client_disconnects.store(0, Ordering::Relaxed);
                Outcome::json(200, json!({"ok": true}))
            }
            ("GET", "/__mock/tasks") => Outcome::json(200, self.state.tasks.report()),
            ("POST", "/__mock/qianfan/expire") => {
                self.state.qianfan.expire_all();
                Outcome::json(200, json!({"ok": true}))
            }
            _ => Outcome::json(404, json!({"error": "unknown mock admin path"})),
        }
    }
}

/// What a call gets instead of its answer when a fault asks for an error or garbage.
fn injected(vendor: Vendor, dialect: Dialect, stream: bool, fault: &Fault) -> Option<Outcome> {
    if let Some(status) = fault.status {
        let message = format!("mock {} error {status}", vendor.name());
        return Some(error_outcome(dialect, status, &message, fault.retry_after));
    }
    if let (Some(code), Dialect::QianfanV1) = (fault.qianfan_code, dialect) {
        return Some(qianfan::error_code_outcome(code));
    }
    fault.garbage.then(|| Outcome::Raw {
        status: 200,
        content_type: if stream {
            "text/event-stream"
        } else {
            "application/json"
        },
        body: b"<html><body>502 Bad Gateway (not JSON)</body></html>\n\n".to_vec(),
    })
}

/// A routed call waiting for its answer.
enum Answer {
    Chat(ChatCall),
    Api(ApiCall),
}

fn error_outcome(
    dialect: Dialect,
    status: u16,
    message: &str,
    retry_after: Option<u64>,
) -> Outcome {
    match dialect {
        Dialect::OpenAi | Dialect::OpenAiLegacy | Dialect::Responses => {
            openai::error(status, message, retry_after)
        }
        Dialect::Anthropic => anthropic::error(status, message, retry_after),
        Dialect::DashScope => dashscope::error(status, message, retry_after),
        Dialect::QianfanV1 => qianfan::error_for_status(status, message),
        Dialect::Gemini => gemini::error(status, message, retry_after),
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    crate::config::hex(&digest)
}

/// Keeps what tests check: what arrived, and whether it arrived intact.
fn record(vstate: &VendorState, req: &MockRequest, conv: Option<&Conversation>) {
    let mut rec = json!({
        "method": req.method,
        "path": req.path,
        "query": req.query,
        "headers": req.headers,
        "body_bytes": req.body.len(),
        "body_sha256": sha256_hex(&req.body),
    });
    if let Some(c) = conv {
        let last = c.last_user_text().unwrap_or("");
        rec["model"] = json!(c.model);
        rec["stream"] = json!(c.stream);
        rec["include_usage"] = json!(c.include_usage);
        rec["max_tokens"] = json!(c.max_tokens);
        rec["thinking"] = json!(c.thinking);
        rec["tools"] = json!(c.tools.iter().map(|t| t.name.clone()).collect::<Vec<_>>());
        rec["images"] = json!(c.images);
        rec["texts"] = json!(c
            .texts
            .iter()
            .map(|t| if t.len() > 200 {
                format!("{}…", &t[..t.floor_char_boundary(200)])
            } else {
                t.clone()
            })
            .collect::<Vec<_>>());
        rec["last_user_bytes"] = json!(last.len());
        rec["last_user_sha256"] = json!(sha256_hex(last.as_bytes()));
    }
    *vstate.last.lock().expect("mock lock") = rec;
}

/// Writes an outcome, applying the stream faults. False when the connection must close.
async fn write_outcome(
    http: &mut ServerSession,
    outcome: Outcome,
    fault: &Fault,
    vstate: &VendorState,
) -> bool {
    match outcome {
        Outcome::Json {
            status,
            mut headers,
            body,
        } => {
            headers.push(("content-type".into(), "application/json".into()));
            let body = Bytes::from(serde_json::to_vec(&body).expect("json serializes"));
            http_app::respond(http, status, &headers, body)
                .await
                .is_ok()
        }
        Outcome::Raw {
            status,
            content_type,
            body,
        } => {
            let headers = [("content-type".to_string(), content_type.to_string())];
            http_app::respond(http, status, &headers, Bytes::from(body))
                .await
                .is_ok()
        }
        Outcome::Stream {
            events,
            error_event,
        } => {
            let Ok(mut h) = ResponseHeader::build(200, Some(4)) else {
                return false;
            };
            let ok = h.insert_header("content-type", "text/event-stream").is_ok()
                && h.insert_header("cache-control", "no-cache").is_ok()
                && h.insert_header("transfer-encoding", "chunked").is_ok();
            if !ok || http.write_response_header(Box::new(h)).await.is_err() {
                return false;
            }
            let started = Instant::now();
            for (i, event) in events.into_iter().enumerate() {
                if i > 0 && fault.chunk_delay_ms > 0 {
                    tokio::time::sleep(Duration::from_millis(fault.chunk_delay_ms)).await;
                }
                if fault.reset_after == Some(i) {
                    return false;
                }
                let event = if fault.stamp { stamp(&event) } else { event };
                let piece = if fault.malformed_after == Some(i) {
                    "data: {\"choices\": [malformed\n\n".to_string()
                } else if fault.error_after == Some(i) {
                    let _ = http
                        .write_response_body(Bytes::from(error_event), false)
                        .await;
                    return http.finish_body().await.is_ok();
                } else {
                    event
                };
                if http
                    .write_response_body(Bytes::from(piece), false)
                    .await
                    .is_err()
                {
                    vstate.client_disconnects.fetch_add(1, Ordering::Relaxed);
                    log::info!(
                        "mock: client went away {:?} into a stream",
                        started.elapsed()
                    );
                    return false;
                }
            }
            http.finish_body().await.is_ok()
        }
    }
}

fn stamp(event: &str) -> String {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0);
    event.replace(conversation::STAMP, &format!("ts{micros:016}"))
}

/// Formats one SSE event with `data: ` (space after the colon, as the SDKs require).
pub(crate) fn sse_data(value: &Value) -> String {
    format!("data: {value}\n\n")
}

/// Seconds since the epoch, for `created` fields.
pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
