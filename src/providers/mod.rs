//! Vendor translation. Each vendor kind is one module of pure, network-free functions over the
//! internal model (`model.rs`): encode a request for the vendor, decode its reply, decode its
//! stream into `Delta`s, map its errors. This module is the one place that picks the module for
//! a kind; nothing else in the gateway matches on vendor kinds.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::config::{Provider, Vendor};
use crate::error::{ErrorKind, GatewayError, GwResult};

pub mod anthropic;
pub mod dashscope;
pub mod gemini;
pub mod job;
pub mod json_scan;
pub mod jwt;
pub mod model;
pub mod openai;
pub mod qianfan;
pub mod sse;

use job::Job;
use model::{Completion, Delta, EmbeddingsRequest, ImageRequest, Request};
use openai::ChatRequest;

/// A vendor API's translation functions; each vendor module has one, `DIALECT`.
pub struct Dialect {
    pub encode: fn(&Request, &VendorTarget) -> GwResult<UpstreamRequest>,
    /// Decodes a successful (2xx) reply; vendors that report errors in a 200 body (Qianfan v1)
    /// return them as errors here.
    pub decode: fn(&[u8]) -> GwResult<Completion>,
    pub stream: fn() -> Box<dyn VendorStream>,
    pub map_error: fn(u16, &[u8]) -> GatewayError,
    /// Embeddings and image generation, for vendors that have them in their own API
    /// (OpenAI-speaking vendors take the client's body as it is).
    pub embeddings: Option<StartJob<EmbeddingsRequest>>,
    pub images: Option<StartJob<ImageRequest>>,
}

/// Turns a typed request into the calls a vendor takes for it.
pub type StartJob<R> = fn(&R, &VendorTarget) -> GwResult<Box<dyn Job>>;

/// The one place that picks a vendor module.
pub fn dialect(vendor: &Vendor) -> &'static Dialect {
    match vendor {
        Vendor::OpenAi | Vendor::OpenAiCompatible | Vendor::QianfanV2 => &openai::DIALECT,
        Vendor::Anthropic => &anthropic::DIALECT,
        Vendor::DashScope => &dashscope::DIALECT,
        Vendor::QianfanV1 { .. } => &qianfan::DIALECT,
        Vendor::Gemini => &gemini::DIALECT,
    }
}

/// OpenAI-speaking vendors can take the client's own OpenAI body, `model` swapped.
pub fn speaks_openai(provider: &Provider) -> bool {
    std::ptr::eq(dialect(&provider.vendor), &openai::DIALECT)
}

/// Tokens a request used, in OpenAI's terms (and JSON shape: the cached and reasoning counts
/// are `prompt_tokens_details.cached_tokens` and `completion_tokens_details.reasoning_tokens`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "WireUsage", into = "WireUsage")]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    /// Of the prompt tokens, those the vendor read from its prompt cache.
    pub cached_tokens: u64,
    /// Of the completion tokens, those spent thinking.
    pub reasoning_tokens: u64,
    /// Of the prompt tokens, those the vendor wrote to its prompt cache (Anthropic's
    /// `cache_creation_input_tokens`, billed above the input price). Not in OpenAI's shape.
    pub cache_write_tokens: u64,
    /// Images made, and their size in pixels (width × height; 0 when none was asked for), for
    /// prices per image.
    pub images: u64,
    pub image_pixels: u64,
}

impl Usage {
    pub fn new(prompt_tokens: u64, completion_tokens: u64) -> Usage {
        Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens.saturating_add(completion_tokens),
            cached_tokens: 0,
            reasoning_tokens: 0,
            cache_write_tokens: 0,
            images: 0,
            image_pixels: 0,
        }
    }

    pub fn with_cache_write(mut self, tokens: u64) -> Usage {
        self.cache_write_tokens = tokens;
        self
    }

    pub fn with_details(mut self, cached_tokens: u64, reasoning_tokens: u64) -> Usage {
        self.cached_tokens = cached_tokens;
        self.reasoning_tokens = reasoning_tokens;
        self
    }
}

#[derive(Serialize, Deserialize, Default)]
struct CachedDetails {
    #[serde(default)]
    cached_tokens: u64,
}

#[derive(Serialize, Deserialize, Default)]
struct ReasoningDetails {
    #[serde(default)]
    reasoning_tokens: u64,
}

#[derive(Serialize, Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    total_tokens: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prompt_tokens_details: Option<CachedDetails>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    completion_tokens_details: Option<ReasoningDetails>,
}

impl From<WireUsage> for Usage {
    fn from(w: WireUsage) -> Usage {
        Usage {
            prompt_tokens: w.prompt_tokens,
            completion_tokens: w.completion_tokens,
            total_tokens: w.total_tokens,
            cached_tokens: w.prompt_tokens_details.map_or(0, |d| d.cached_tokens),
            reasoning_tokens: w
                .completion_tokens_details
                .map_or(0, |d| d.reasoning_tokens),
            cache_write_tokens: 0,
            images: 0,
            image_pixels: 0,
        }
    }
}

impl From<Usage> for WireUsage {
    fn from(u: Usage) -> WireUsage {
        WireUsage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            total_tokens: u.total_tokens,
            prompt_tokens_details: (u.cached_tokens > 0).then_some(CachedDetails {
                cached_tokens: u.cached_tokens,
            }),
            completion_tokens_details: (u.reasoning_tokens > 0).then_some(ReasoningDetails {
                reasoning_tokens: u.reasoning_tokens,
            }),
        }
    }
}

/// A request ready for the wire, minus Host, Content-Type and Content-Length, which the
/// transport sets.
#[derive(Debug, Clone)]
pub struct UpstreamRequest {
    pub path_and_query: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Bytes,
}

/// Where one attempt goes: the provider, the vendor's model name, and for Qianfan v1 the
/// OAuth access token the gateway holds.
pub struct VendorTarget<'a> {
    pub provider: &'a Provider,
    pub vendor_model: &'a str,
    pub access_token: Option<&'a str>,
}

/// What one call into a stream decoder left the stream in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamState {
    /// More upstream bytes are expected.
    Open,
    /// The vendor's stream ended properly; `[DONE]` has been written.
    Done,
    /// The stream failed; an error event and `[DONE]` have been written. Stop reading.
    Failed,
}

/// A vendor's stream decoder: upstream bytes in at any split, deltas out.
pub trait VendorStream: Send {
    fn push(&mut self, chunk: &[u8], emit: &mut dyn FnMut(Delta));
    /// The upstream body ended; a decoder whose vendor ends streams by closing the connection
    /// (Gemini, DashScope, Qianfan v1) emits `Done` here if the reply was complete.
    fn finish(&mut self, emit: &mut dyn FnMut(Delta));
}

/// A vendor's per-event stream logic; [`SseStream`] does the framing around it.
pub trait EventDecoder: Default + Send {
    /// One complete SSE event.
    fn handle(&mut self, event: &crate::providers::sse::Event, emit: &mut dyn FnMut(Delta));
    /// The stream has ended (or failed); later events are ignored.
    fn is_done(&self) -> bool;
    /// The upstream body ended. Vendors that end streams by closing the connection emit
    /// `Done` here when the reply was complete.
    fn close(&mut self, _emit: &mut dyn FnMut(Delta)) {}
}

/// SSE framing (events split across reads at any byte) around a vendor's [`EventDecoder`].
#[derive(Default)]
pub struct SseStream<D> {
    splitter: crate::providers::sse::SseSplitter,
    decoder: D,
    /// The framing broke (an endless or non-UTF-8 event): nothing more is decoded.
    broken: bool,
}

impl<D: EventDecoder> SseStream<D> {
    pub fn new() -> Self {
        SseStream {
            splitter: crate::providers::sse::SseSplitter::new(),
            decoder: D::default(),
            broken: false,
        }
    }
}

impl<D: EventDecoder> VendorStream for SseStream<D> {
    fn push(&mut self, chunk: &[u8], emit: &mut dyn FnMut(Delta)) {
        if self.broken {
            return;
        }
        let decoder = &mut self.decoder;
        let framed = self.splitter.push(chunk, |e| {
            if !decoder.is_done() {
                decoder.handle(&e, emit);
            }
        });
        if framed.is_err() {
            self.broken = true;
            if !self.decoder.is_done() {
                emit(Delta::Error(malformed_event()));
            }
        }
    }

    fn finish(&mut self, emit: &mut dyn FnMut(Delta)) {
        if self.broken {
            return;
        }
        if let Ok(Some(e)) = self.splitter.finish() {
            if !self.decoder.is_done() {
                self.decoder.handle(&e, emit);
            }
        }
        self.decoder.close(emit);
    }
}

/// A chat request as received, typed lazily: OpenAI-kind vendors get the client's own JSON
/// with `model` swapped and never pay for typing it.
pub struct ClientRequest<'a> {
    raw: Option<&'a ChatRequest<'a>>,
    typed: Option<Request>,
    kind: RequestKind,
    /// An Anthropic Messages body, for Anthropic targets to get as it is.
    native: Option<Native<'a>>,
}

/// A body in a client API some vendors speak themselves (Anthropic's Messages, OpenAI's
/// Responses), for those vendors to get as it is.
pub struct Native<'a> {
    pub api: NativeApi,
    pub body: &'a [u8],
    /// Anthropic's `anthropic-beta` header, when the client sent one.
    pub beta: Option<String>,
    /// A Responses API request continuing a stored response goes as it is only to the provider
    /// that holds that response (the others get the whole conversation, typed).
    pub held_by: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NativeApi {
    Anthropic,
    Responses,
}

impl Native<'_> {
    fn goes_to(&self, provider: &Provider) -> bool {
        match self.api {
            NativeApi::Anthropic => speaks_anthropic(provider),
            NativeApi::Responses => {
                provider.responses_api && self.held_by.as_ref().is_none_or(|h| *h == provider.name)
            }
        }
    }
}

/// Whether a provider takes Anthropic's Messages API.
pub fn speaks_anthropic(provider: &Provider) -> bool {
    matches!(provider.vendor, crate::config::Vendor::Anthropic)
}

/// Which OpenAI endpoint a client request came to; OpenAI-speaking vendors get it on the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    Chat,
    /// Legacy `/completions`.
    Legacy,
    Embeddings,
    /// `/images/generations`.
    Images,
}

impl RequestKind {
    /// Embeddings and images go to vendors without OpenAI's API as a [`Job`].
    pub fn is_job(self) -> bool {
        matches!(self, RequestKind::Embeddings | RequestKind::Images)
    }
}

impl<'a> ClientRequest<'a> {
    pub fn openai(raw: &'a ChatRequest<'a>) -> Self {
        ClientRequest {
            raw: Some(raw),
            typed: None,
            kind: RequestKind::Chat,
            native: None,
        }
    }

    pub fn typed(request: Request) -> Self {
        ClientRequest {
            raw: None,
            typed: Some(request),
            kind: RequestKind::Chat,
            native: None,
        }
    }

    /// An Anthropic Messages or Responses API request: typed for every vendor, and its own body
    /// for the vendors that speak its API.
    pub fn native(request: Request, native: Native<'a>) -> Self {
        ClientRequest {
            native: Some(native),
            ..ClientRequest::typed(request)
        }
    }

    /// An embeddings or image generation body: OpenAI-speaking vendors take it as it is,
    /// others get it as a [`Job`].
    pub fn job(raw: &'a ChatRequest<'a>, kind: RequestKind) -> Self {
        debug_assert!(kind.is_job());
        ClientRequest {
            raw: Some(raw),
            typed: None,
            kind,
            native: None,
        }
    }

    pub fn kind(&self) -> RequestKind {
        self.kind
    }

    /// Whether the client asked for bytes: `encoding_format: base64` (embeddings) or
    /// `response_format: b64_json` (images).
    /// For an images request, the images a reply (OpenAI's shape) holds, as usage.
    pub fn images_made(&self, reply: &[u8]) -> Option<Usage> {
        #[derive(Deserialize)]
        struct Made {
            data: Vec<serde::de::IgnoredAny>,
        }
        if self.kind != RequestKind::Images {
            return None;
        }
        let made: Made = serde_json::from_slice(reply).ok()?;
        Some(self.image_usage(made.data.len()))
    }

    /// Usage for `n` images made at the size this request asked for (priced per image).
    pub fn image_usage(&self, n: usize) -> Usage {
        Usage {
            images: n as u64,
            image_pixels: self.image_pixels(),
            ..Usage::default()
        }
    }

    /// The image size asked for (`size: "1024x1024"`), in pixels; 0 when none was.
    pub fn image_pixels(&self) -> u64 {
        self.raw
            .and_then(|r| r.body.get("size"))
            .and_then(|v| serde_json::from_str::<String>(v.get()).ok())
            .and_then(|s| crate::config::pixels(&s))
            .unwrap_or(0)
    }

    pub fn wants_base64(&self) -> bool {
        let (member, value) = match self.kind {
            RequestKind::Embeddings => ("encoding_format", "\"base64\""),
            RequestKind::Images => ("response_format", "\"b64_json\""),
            RequestKind::Chat | RequestKind::Legacy => return false,
        };
        self.raw
            .and_then(|r| r.body.get(member))
            .is_some_and(|v| v.get() == value)
    }

    /// A legacy completions body, and the prompt: passed on as it is to OpenAI-speaking
    /// vendors, typed as one user message for the others.
    pub fn legacy(raw: &'a ChatRequest<'a>, prompt: String) -> GwResult<Self> {
        let mut typed = Request::from_openai(raw)?;
        typed.extra.retain(|(k, _)| k != "prompt");
        typed.messages.push(model::Message {
            role: model::Role::User,
            parts: vec![model::Part::Text(prompt)],
            tool_calls: Vec::new(),
            tool_call_id: None,
            name: None,
        });
        Ok(ClientRequest {
            raw: Some(raw),
            typed: Some(typed),
            kind: RequestKind::Legacy,
            native: None,
        })
    }

    pub fn stream(&self) -> bool {
        match (&self.raw, &self.typed) {
            (Some(r), _) => r.stream,
            (None, Some(t)) => t.stream,
            (None, None) => false,
        }
    }

    /// The client's `user` (Anthropic's `metadata.user_id`), when it gave one.
    pub fn user(&self) -> Option<std::borrow::Cow<'_, str>> {
        match (&self.raw, &self.typed) {
            (Some(r), _) => r
                .body
                .get("user")
                .and_then(|v| serde_json::from_str::<std::borrow::Cow<str>>(v.get()).ok()),
            (None, Some(t)) => t.user.as_deref().map(std::borrow::Cow::Borrowed),
            (None, None) => None,
        }
    }

    pub fn include_usage(&self) -> bool {
        match (&self.raw, &self.typed) {
            (Some(r), _) => r.include_usage,
            (None, Some(t)) => t.include_usage,
            (None, None) => false,
        }
    }

    /// Whether `provider` gets the client's own body (and so answers in the client's own
    /// API): it speaks the client's API (OpenAI's, or Anthropic's) and the body was not
    /// rewritten.
    pub fn goes_as_is_to(&self, provider: &Provider) -> bool {
        (self.raw.is_some() && speaks_openai(provider))
            || self.native.as_ref().is_some_and(|n| n.goes_to(provider))
    }

    /// Rewrites every text part (personal-data redaction). The raw body is dropped: the
    /// request goes out re-encoded from the rewritten, typed form. Embeddings and image bodies
    /// are not typed as chat: their texts are rewritten in the body before it is parsed
    /// ([`rewrite_job_body`]).
    pub fn rewrite_text(&mut self, f: impl Fn(&str) -> std::borrow::Cow<'_, str>) -> GwResult<()> {
        if self.kind.is_job() {
            return Ok(());
        }
        self.as_typed()?;
        self.raw = None;
        self.native = None;
        let typed = self.typed.as_mut().expect("typed above");
        for m in &mut typed.messages {
            for p in &mut m.parts {
                if let model::Part::Text(t) = p {
                    if let std::borrow::Cow::Owned(new) = f(t) {
                        *t = new;
                    }
                }
            }
        }
        Ok(())
    }

    /// The request typed into the internal model (typed once; the raw body stays for vendors
    /// that take it as it is).
    pub fn as_typed(&mut self) -> GwResult<&Request> {
        if self.typed.is_none() {
            let raw = self
                .raw
                .expect("a ClientRequest holds the raw or the typed request");
            self.typed = Some(Request::from_openai(raw)?);
        }
        Ok(self.typed.as_ref().expect("just set"))
    }
}

/// An embeddings or image body with its texts (`input`, `prompt`, `negative_prompt`)
/// rewritten by `f`; None when nothing changed. Other members are kept as they are.
pub fn rewrite_job_body(
    body: &[u8],
    f: impl Fn(&str) -> std::borrow::Cow<'_, str>,
) -> GwResult<Option<Vec<u8>>> {
    let mut value: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(body).map_err(openai::wire::invalid_json)?;
    let mut changed = false;
    let mut rewrite = |v: &mut serde_json::Value| {
        if let serde_json::Value::String(s) = v {
            if let std::borrow::Cow::Owned(new) = f(s) {
                *s = new;
                changed = true;
            }
        }
    };
    for member in ["input", "prompt", "negative_prompt"] {
        match value.get_mut(member) {
            Some(serde_json::Value::Array(items)) => items.iter_mut().for_each(&mut rewrite),
            Some(v) => rewrite(v),
            None => {}
        }
    }
    Ok(changed.then(|| serde_json::to_vec(&value).expect("a JSON value serializes")))
}

pub fn encode_chat(
    request: &mut ClientRequest,
    target: &VendorTarget,
) -> GwResult<UpstreamRequest> {
    if let (true, Some(raw)) = (speaks_openai(target.provider), request.raw) {
        let path = match request.kind {
            RequestKind::Chat => "/chat/completions",
            RequestKind::Legacy => "/completions",
            RequestKind::Embeddings => "/embeddings",
            RequestKind::Images => "/images/generations",
        };
        return Ok(openai::encode_raw(raw, target, path));
    }
    if let Some(native) = request
        .native
        .as_ref()
        .filter(|n| n.goes_to(target.provider))
    {
        return match native.api {
            NativeApi::Anthropic => {
                anthropic::encode_native(native.body, target, native.beta.as_deref())
            }
            NativeApi::Responses => openai::encode_responses(native.body, target),
        };
    }
    (dialect(&target.provider.vendor).encode)(request.as_typed()?, target)
}

/// Embeddings or images for a vendor that does not take OpenAI's body: the calls it takes.
pub fn start_job(
    request: &ClientRequest,
    target: &VendorTarget,
    public_model: &str,
) -> GwResult<Box<dyn Job>> {
    let raw = request
        .raw
        .expect("embeddings and image requests keep their body");
    let d = dialect(&target.provider.vendor);
    let (what, job) = match request.kind {
        RequestKind::Images => (
            "image generation",
            d.images
                .map(|start| start(&ImageRequest::from_openai(raw)?, target)),
        ),
        _ => (
            "embeddings",
            d.embeddings
                .map(|start| start(&EmbeddingsRequest::from_openai(raw)?, target)),
        ),
    };
    job.unwrap_or_else(|| {
        Err(GatewayError::bad_param(
            "model",
            format!(
                "The model `{public_model}` has no {what} (its vendor is {}); choose a model that does.",
                target.provider.vendor.kind()
            ),
        ))
    })
}

pub fn decode_chat(provider: &Provider, body: &[u8]) -> GwResult<Completion> {
    (dialect(&provider.vendor).decode)(body)
}

/// The stream decoder for a vendor that answers in its own format.
pub fn stream_decoder(provider: &Provider) -> Box<dyn VendorStream> {
    (dialect(&provider.vendor).stream)()
}

/// Turns a vendor's non-2xx reply into the client's error, without the vendor's credentials.
pub fn map_error(
    provider: &Provider,
    status: u16,
    retry_after: Option<u64>,
    body: &[u8],
) -> GatewayError {
    let mut e = (dialect(&provider.vendor).map_error)(status, body);
    if e.kind == ErrorKind::RateLimited && e.retry_after_secs.is_none() {
        e = e.with_retry_after(retry_after);
    }
    e.message = redact_credentials(provider, &e.message);
    if e.kind == ErrorKind::UpstreamAuth {
        e.message = format!("{} {}", credentials_of(provider), e.message);
    }
    e
}

/// Which credentials a vendor rejected: the provider, and the variables they came from.
pub fn credentials_of(provider: &Provider) -> String {
    match provider.credentials_from.as_slice() {
        [] => format!(
            "Provider `{}` (credentials written in the config):",
            provider.name
        ),
        vars => format!(
            "Provider `{}` (credentials from {}):",
            provider.name,
            vars.iter()
                .map(|v| format!("${v}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The vendor's status class, shared by every vendor's error mapping.
pub fn error_from_status(status: u16, message: String) -> GatewayError {
    match status {
        401 | 403 => GatewayError::new(
            ErrorKind::UpstreamAuth,
            format!("The upstream provider rejected the gateway's credentials: {message}"),
        ),
        429 => GatewayError::new(ErrorKind::RateLimited, message),
        503 | 529 => GatewayError::new(ErrorKind::UpstreamOverloaded, message),
        504 | 408 => GatewayError::new(ErrorKind::UpstreamTimeout, message),
        400..=499 => GatewayError::new(ErrorKind::InvalidRequest, message).with_status(status),
        _ => GatewayError::new(ErrorKind::UpstreamError, message),
    }
}

/// A value (a vendor model name) as one URL path segment: anything but unreserved characters
/// and `:@` percent-encoded, so it can neither change the path nor break the request line.
pub fn path_segment(value: &str) -> std::borrow::Cow<'_, str> {
    percent_encode(value, b":@")
}

/// `value` with every byte but the unreserved ones (and `also_keep`) percent-encoded.
pub fn percent_encode<'v>(value: &'v str, also_keep: &[u8]) -> std::borrow::Cow<'v, str> {
    let keep = |b: u8| b.is_ascii_alphanumeric() || b"-._~".contains(&b) || also_keep.contains(&b);
    if value.bytes().all(keep) {
        return std::borrow::Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 8);
    for b in value.bytes() {
        if keep(b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    std::borrow::Cow::Owned(out)
}

/// A reply body that is not what the vendor's API sends.
pub fn unreadable_reply() -> GatewayError {
    GatewayError::new(
        ErrorKind::UpstreamBadResponse,
        "The upstream provider returned a response the gateway could not understand.",
    )
}

/// The vendor's stream ended (connection closed) before its last event.
pub fn truncated_stream() -> GatewayError {
    GatewayError::new(
        ErrorKind::UpstreamBadResponse,
        "The upstream provider ended the stream before it was complete.",
    )
}

pub fn malformed_event() -> GatewayError {
    GatewayError::new(
        ErrorKind::UpstreamBadResponse,
        "The upstream provider sent a malformed stream event.",
    )
}

/// Vendors sometimes echo (part of) the key they were sent, or the URL that carried it (Baidu's
/// OAuth endpoint takes the client credentials in its query); never pass that on, in either
/// form.
pub fn redact_credentials(provider: &Provider, text: &str) -> String {
    let mut secrets = Vec::new();
    secrets.extend(provider.api_key.as_ref());
    secrets.extend(provider.jwt.as_ref().map(|j| &j.secret));
    if let Vendor::QianfanV1 {
        client_id,
        client_secret,
        ..
    } = &provider.vendor
    {
        secrets.extend([client_id, client_secret]);
    }
    let mut out = text.to_string();
    for s in secrets.iter().map(|s| s.expose()) {
        for form in [std::borrow::Cow::Borrowed(s), percent_encode(s, b"")] {
            if form.len() >= 4 && out.contains(&*form) {
                out = out.replace(&*form, "***");
            }
        }
    }
    out
}

#[cfg(test)]
#[cfg(test)]
mod usage_tests {
    use super::Usage;

    #[test]
    fn usage_reads_and_writes_openais_shape_with_its_details() {
        let u: Usage = serde_json::from_str(
            r#"{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15,
                "prompt_tokens_details":{"cached_tokens":4},"completion_tokens_details":{"reasoning_tokens":3}}"#,
        )
        .unwrap();
        assert_eq!(u, Usage::new(10, 5).with_details(4, 3));
        let back: Usage = serde_json::from_value(serde_json::to_value(u).unwrap()).unwrap();
        assert_eq!(back, u);
        let plain = serde_json::to_string(&Usage::new(1, 2)).unwrap();
        assert_eq!(
            plain,
            r#"{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}"#
        );
    }
}

pub mod testing {
    //! Helpers for the vendor modules' tests.

    use super::*;
    use crate::config::{Endpoint, Secret, Timeouts};

    /// An OpenAI request body, typed.
    pub fn req(body: &str) -> Request {
        Request::from_openai(&ChatRequest::parse(body.as_bytes()).expect("valid request"))
            .expect("typed request")
    }

    pub fn provider(vendor: Vendor) -> Provider {
        Provider {
            name: "test".into(),
            vendor,
            endpoint: Endpoint::parse("https://vendor.example").expect("a URL"),
            api_key: Some(Secret::new("sk-test-vendor-key")),
            default_max_tokens: 4096,
            max_in_flight: 4096,
            jwt: None,
            timeouts: Timeouts::default(),
            ca: None,
            result_hosts: crate::config::ResultHosts {
                own: "vendor.example".into(),
                patterns: vec!["*.aliyuncs.com".into()],
            },
            credentials_from: Vec::new(),
            responses_api: false,
        }
    }

    pub fn qianfan_v1() -> Vendor {
        Vendor::QianfanV1 {
            client_id: Secret::new("ak"),
            client_secret: Secret::new("sk"),
            token_endpoint: Endpoint::parse("https://aip.example/oauth/2.0/token").unwrap(),
        }
    }

    fn run(input: &[u8], cuts: &[usize], make: &dyn Fn() -> Box<dyn VendorStream>) -> Vec<Delta> {
        let mut d = make();
        let mut out = Vec::new();
        let mut last = 0;
        for &at in cuts.iter().chain(std::iter::once(&input.len())) {
            d.push(&input[last..at], &mut |x| out.push(x));
            last = at;
        }
        d.finish(&mut |x| out.push(x));
        out
    }

    /// Decodes a recorded stream fed whole, byte by byte and at random split points; asserts
    /// the three agree and returns the deltas.
    pub fn run_stream_all_ways<S: VendorStream + 'static>(
        input: &[u8],
        make: impl Fn() -> S,
    ) -> Vec<Delta> {
        let make: &dyn Fn() -> Box<dyn VendorStream> = &|| Box::new(make());
        let whole = run(input, &[], make);
        let every: Vec<usize> = (1..input.len()).collect();
        assert_eq!(run(input, &every, make), whole, "byte by byte");
        let mut rng = fastrand::Rng::with_seed(42);
        for _ in 0..50 {
            let mut cuts: Vec<usize> = (0..rng.usize(1..8))
                .map(|_| rng.usize(0..=input.len()))
                .collect();
            cuts.sort_unstable();
            assert_eq!(run(input, &cuts, make), whole, "cuts {cuts:?}");
        }
        whole
    }

    /// Arbitrary bytes must give deltas or an error, never a panic.
    pub fn fuzz_stream<S: VendorStream + 'static>(make: impl Fn() -> S) {
        let mut rng = fastrand::Rng::with_seed(7);
        let alphabet: &[u8] = b"data: event:{}[]\"\\\n\r:,0123456789abcdeftrunlTYPE\xff\xc3\xa9";
        for _ in 0..2000 {
            let len = rng.usize(0..300);
            let bytes: Vec<u8> = (0..len)
                .map(|_| alphabet[rng.usize(0..alphabet.len())])
                .collect();
            let mut d = make();
            d.push(&bytes, &mut |_| {});
            d.finish(&mut |_| {});
        }
    }
}

#[cfg(test)]
mod fuzz;
