//! Alibaba DashScope native API (Qwen): `input.messages` + `parameters`, its own SSE framing
//! (`id:`/`event:result`/`:HTTP_STATUS/200`, no `[DONE]`), cumulative usage in every event.
//! Reference: <https://help.aliyun.com/zh/model-studio/use-qwen-by-calling-api>. Its
//! OpenAI-compatible mode is configured as an `openai_compatible` provider instead.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::job::{self, Batch, Batches, Call, Job, JobOutput};
use super::model::{
    Choice, Completion, Delta, EmbeddingsRequest, FinishReason, GeneratedImage, Image, ImageData,
    ImageRequest, Images, Part, Request, ResponseFormat, Role, ToolCall, ToolChoice,
};
use super::{
    error_from_status, Dialect, EventDecoder, SseStream, UpstreamRequest, Usage, VendorTarget,
};
use crate::error::{ErrorKind, GatewayError, GwResult};
use crate::providers::sse::Event;

pub const TEXT_PATH: &str = "/api/v1/services/aigc/text-generation/generation";
pub const MULTIMODAL_PATH: &str = "/api/v1/services/aigc/multimodal-generation/generation";

/// DashScope parameters with no OpenAI name; passed through from the client's request.
const PASSED_EXTRAS: &[&str] = &[
    "enable_thinking",
    "thinking_budget",
    "enable_search",
    "search_options",
    "top_k",
    "repetition_penalty",
    "translation_options",
    "vl_high_resolution_images",
];

fn image_url(img: &Image) -> String {
    match img {
        Image::Inline { media_type, data } => format!("data:{media_type};base64,{data}"),
        Image::Url(u) => u.clone(),
    }
}

pub fn encode(req: &Request, target: &VendorTarget) -> GwResult<UpstreamRequest> {
    req.reject_logprobs("DashScope")?;
    if let Some(n) = req.n {
        if !(1..=4).contains(&n) {
            return Err(GatewayError::bad_param(
                "n",
                "DashScope models take n from 1 to 4.",
            ));
        }
    }
    let multimodal = req.messages.iter().any(|m| m.has_images());
    let mut params = parameters(req)?;
    req.copy_extras(PASSED_EXTRAS, &mut params);
    let body = json!({"model": target.vendor_model, "input": {"messages": messages(req, multimodal)}, "parameters": params});
    let mut headers = Vec::with_capacity(3);
    if let Some(k) = &target.provider.api_key {
        headers.push(("authorization", format!("Bearer {}", k.expose())));
    }
    if req.stream {
        headers.push(("x-dashscope-sse", "enable".to_string()));
        headers.push(("accept", "text/event-stream".to_string()));
    }
    let path = if multimodal {
        MULTIMODAL_PATH
    } else {
        TEXT_PATH
    };
    Ok(UpstreamRequest {
        path_and_query: format!("{}{path}", target.provider.endpoint.path_prefix),
        headers,
        body: Bytes::from(serde_json::to_vec(&body).expect("json serializes")),
    })
}

/// The conversation in DashScope's shape: content as a string, or as a list of text and
/// image parts when any message has an image (the multimodal endpoint).
fn messages(req: &Request, multimodal: bool) -> Vec<Value> {
    let names = req.call_names();
    let mut messages = Vec::with_capacity(req.messages.len());
    for m in &req.messages {
        let role = match m.role {
            Role::System | Role::Developer => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool | Role::Function => "tool",
        };
        let content = if multimodal {
            Value::Array(
                m.parts
                    .iter()
                    .map(|p| match p {
                        Part::Text(t) => json!({"text": t}),
                        Part::Image(img) => json!({"image": image_url(img)}),
                    })
                    .collect(),
            )
        } else {
            json!(m.text())
        };
        let mut o = json!({"role": role, "content": content});
        if !m.tool_calls.is_empty() {
            o["tool_calls"] = Value::Array(
                m.tool_calls
                    .iter()
                    .map(|c| json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}))
                    .collect(),
            );
        }
        if let Some(id) = &m.tool_call_id {
            o["tool_call_id"] = json!(id);
            if let Some(name) = names.get(id.as_str()) {
                o["name"] = json!(name);
            }
        }
        messages.push(o);
    }
    messages
}

/// `parameters`: sampling, tools and output format, with DashScope's ranges.
fn parameters(req: &Request) -> GwResult<Map<String, Value>> {
    let mut params = Map::new();
    params.insert("result_format".into(), json!("message"));
    if req.stream {
        // Deltas, not the whole text so far in every event.
        params.insert("incremental_output".into(), json!(true));
    }
    if let Some(t) = req.temperature {
        // DashScope takes [0, 2).
        params.insert("temperature".into(), json!(t.clamp(0.0, 1.99)));
    }
    if let Some(p) = req.top_p {
        params.insert("top_p".into(), json!(p.clamp(0.0001, 1.0)));
    }
    if let Some(m) = req.max_tokens {
        params.insert("max_tokens".into(), json!(m));
    }
    if let Some(n) = req.n {
        params.insert("n".into(), json!(n));
    }
    if !req.stop.is_empty() {
        params.insert("stop".into(), json!(req.stop));
    }
    if let Some(s) = req.seed {
        params.insert("seed".into(), json!(s));
    }
    if let Some(p) = req.presence_penalty {
        params.insert("presence_penalty".into(), json!(p));
    }
    // Qwen's thinking switch and budget (the client's own `enable_thinking` wins).
    if let Some(e) = req.reasoning {
        params.insert(
            "enable_thinking".into(),
            json!(e != super::model::Effort::Off),
        );
        if let Some(budget) = e.budget() {
            params.insert("thinking_budget".into(), json!(budget));
        }
    }
    if !req.tools.is_empty() {
        params.insert(
            "tools".into(),
            Value::Array(
                req.tools
                    .iter()
                    .map(|t| json!({"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}))
                    .collect(),
            ),
        );
    }
    if let Some(choice) = &req.tool_choice {
        params.insert("tool_choice".into(), tool_choice(choice)?);
    }
    if let Some(p) = req.parallel_tool_calls {
        params.insert("parallel_tool_calls".into(), json!(p));
    }
    match &req.response_format {
        Some(ResponseFormat::JsonObject) => {
            params.insert("response_format".into(), json!({"type": "json_object"}));
        }
        Some(ResponseFormat::JsonSchema { name, schema }) => {
            params.insert(
                "response_format".into(),
                json!({"type": "json_schema", "json_schema": {"name": name, "schema": schema}}),
            );
        }
        Some(ResponseFormat::Text) | None => {}
    }
    Ok(params)
}

/// DashScope has no "required": naming the function is the only way to force a call.
fn tool_choice(choice: &ToolChoice) -> GwResult<Value> {
    Ok(match choice {
        ToolChoice::Auto => json!("auto"),
        ToolChoice::None => json!("none"),
        ToolChoice::Function(name) => json!({"type": "function", "function": {"name": name}}),
        ToolChoice::Required => {
            return Err(GatewayError::bad_param("tool_choice", "tool_choice 'required' is not supported by DashScope models; name the function instead."))
        }
    })
}

// --- replies ----------------------------------------------------------------------------------

#[derive(Deserialize)]
struct DashScopeResponse {
    #[serde(default)]
    output: Option<DashScopeOutput>,
    #[serde(default)]
    usage: Option<DashScopeUsage>,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Deserialize)]
struct DashScopeOutput {
    #[serde(default)]
    choices: Option<Vec<DashScopeChoice>>,
    /// The legacy `result_format: text` shape.
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct DashScopeChoice {
    #[serde(default)]
    message: DashScopeMessage,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize, Default)]
struct DashScopeMessage {
    #[serde(default)]
    content: Option<DashScopeContent>,
    #[serde(default)]
    reasoning_content: Option<String>,
    #[serde(default)]
    tool_calls: Vec<DashScopeToolCall>,
}

/// Multimodal models answer `content` as `[{"text": ...}]`.
#[derive(Deserialize)]
#[serde(untagged)]
enum DashScopeContent {
    Text(String),
    Items(Vec<DashScopeItem>),
}

#[derive(Deserialize)]
struct DashScopeItem {
    #[serde(default)]
    text: Option<String>,
}

impl DashScopeContent {
    fn into_text(self) -> String {
        match self {
            DashScopeContent::Text(t) => t,
            DashScopeContent::Items(items) => items.into_iter().filter_map(|i| i.text).collect(),
        }
    }
}

#[derive(Deserialize)]
struct DashScopeToolCall {
    #[serde(default)]
    index: Option<usize>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<DashScopeFunction>,
}

#[derive(Deserialize)]
struct DashScopeFunction {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

#[derive(Deserialize, Clone, Copy)]
struct DashScopeUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    prompt_tokens_details: Option<CachedTokens>,
    #[serde(default)]
    output_tokens_details: Option<ReasoningTokens>,
}

#[derive(Deserialize, Clone, Copy)]
struct CachedTokens {
    #[serde(default)]
    cached_tokens: u64,
}

#[derive(Deserialize, Clone, Copy)]
struct ReasoningTokens {
    #[serde(default)]
    reasoning_tokens: u64,
}

impl From<DashScopeUsage> for Usage {
    fn from(u: DashScopeUsage) -> Usage {
        let cached = u.prompt_tokens_details.map_or(0, |d| d.cached_tokens);
        let reasoning = u.output_tokens_details.map_or(0, |d| d.reasoning_tokens);
        Usage::new(u.input_tokens, u.output_tokens).with_details(cached, reasoning)
    }
}

/// `"null"` (a string) while generating; None then.
fn finish_of(s: Option<&str>) -> Option<FinishReason> {
    match s {
        None | Some("null") | Some("") => None,
        Some("length") => Some(FinishReason::Length),
        Some("tool_calls") => Some(FinishReason::ToolCalls),
        Some("content_filter") => Some(FinishReason::ContentFilter),
        Some(_) => Some(FinishReason::Stop),
    }
}

pub fn decode(body: &[u8]) -> GwResult<Completion> {
    let r: DashScopeResponse =
        serde_json::from_slice(body).map_err(|_| super::unreadable_reply())?;
    let output = match (r.output, r.code) {
        (Some(o), _) => o,
        (None, Some(code)) => return Err(code_error(0, &code, r.message.unwrap_or_default())),
        (None, None) => return Err(super::unreadable_reply()),
    };
    let choices = match (output.choices, output.text) {
        (Some(choices), _) => choices
            .into_iter()
            .map(|c| {
                let tool_calls: Vec<ToolCall> = c
                    .message
                    .tool_calls
                    .into_iter()
                    .enumerate()
                    .map(|(i, t)| {
                        let f = t.function.unwrap_or(DashScopeFunction {
                            name: None,
                            arguments: None,
                        });
                        ToolCall {
                            id: t.id.unwrap_or_else(|| format!("call_{i}")),
                            name: f.name.unwrap_or_default(),
                            arguments: f.arguments.unwrap_or_default(),
                        }
                    })
                    .collect();
                Choice {
                    content: c.message.content.map(DashScopeContent::into_text),
                    reasoning: c.message.reasoning_content.filter(|r| !r.is_empty()),
                    finish: finish_of(c.finish_reason.as_deref()).unwrap_or(
                        if tool_calls.is_empty() {
                            FinishReason::Stop
                        } else {
                            FinishReason::ToolCalls
                        },
                    ),
                    tool_calls,
                }
            })
            .collect(),
        (None, Some(text)) => vec![Choice {
            content: Some(text),
            reasoning: None,
            tool_calls: Vec::new(),
            finish: finish_of(output.finish_reason.as_deref()).unwrap_or(FinishReason::Stop),
        }],
        (None, None) => return Err(super::unreadable_reply()),
    };
    Ok(Completion {
        choices,
        usage: r.usage.map(Usage::from),
    })
}

/// DashScope error codes, for HTTP errors and in-stream `event:error`.
fn code_error(status: u16, code: &str, message: String) -> GatewayError {
    let message = if message.is_empty() {
        code.to_string()
    } else {
        message
    };
    match code {
        c if c.starts_with("Throttling") => GatewayError::new(ErrorKind::RateLimited, message),
        "InvalidApiKey" | "AccessDenied" | "Arrearage" | "AccessDenied.Unpurchased" => {
            GatewayError::new(
                ErrorKind::UpstreamAuth,
                format!("The upstream provider rejected the gateway's credentials: {message}"),
            )
        }
        "DataInspectionFailed" => {
            GatewayError::invalid(message, Some("messages")).with_code("content_filter")
        }
        "InvalidParameter" => GatewayError::invalid(message, None),
        "RequestTimeOut" => GatewayError::new(ErrorKind::UpstreamTimeout, message),
        _ if status != 0 => error_from_status(status, message),
        _ => GatewayError::new(ErrorKind::UpstreamError, message),
    }
}

#[derive(Deserialize)]
struct DashScopeError {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

pub fn map_error(status: u16, body: &[u8]) -> GatewayError {
    match serde_json::from_slice::<DashScopeError>(body) {
        Ok(e) if !e.code.is_empty() => code_error(status, &e.code, e.message),
        _ => error_from_status(status, format!("upstream returned HTTP {status}")),
    }
}

// --- streams ----------------------------------------------------------------------------------

#[derive(Default)]
pub struct DashScopeEvents {
    started_tools: Vec<usize>,
    usage: Option<Usage>,
    ended: bool,
}

impl DashScopeEvents {
    fn on_event(&mut self, event: Option<&str>, data: &str, emit: &mut dyn FnMut(Delta)) {
        if event == Some("error") {
            let e: DashScopeError = serde_json::from_str(data).unwrap_or(DashScopeError {
                code: String::new(),
                message: String::new(),
            });
            let mut err = code_error(0, &e.code, e.message);
            if err.kind == ErrorKind::InvalidRequest {
                err.kind = ErrorKind::UpstreamError;
            }
            return emit(Delta::Error(err));
        }
        let r: DashScopeResponse = match serde_json::from_str(data) {
            Ok(r) => r,
            Err(_) => return emit(Delta::Error(super::malformed_event())),
        };
        if let Some(u) = r.usage {
            self.usage = Some(u.into());
        }
        let Some(output) = r.output else { return };
        let mut finish = None;
        for c in output.choices.into_iter().flatten().take(1) {
            if let Some(reasoning) = c.message.reasoning_content {
                emit(Delta::Reasoning(reasoning));
            }
            if let Some(content) = c.message.content {
                emit(Delta::Text(content.into_text()));
            }
            for (i, t) in c.message.tool_calls.into_iter().enumerate() {
                let index = t.index.unwrap_or(i);
                let f = t.function.unwrap_or(DashScopeFunction {
                    name: None,
                    arguments: None,
                });
                if !self.started_tools.contains(&index) {
                    self.started_tools.push(index);
                    emit(Delta::ToolStart {
                        index,
                        id: t
                            .id
                            .filter(|id| !id.is_empty())
                            .unwrap_or_else(|| format!("call_{index}")),
                        name: f.name.unwrap_or_default(),
                    });
                }
                if let Some(args) = f.arguments.filter(|a| !a.is_empty()) {
                    emit(Delta::ToolArgs {
                        index,
                        arguments: args,
                    });
                }
            }
            finish = finish_of(c.finish_reason.as_deref());
        }
        if let (None, Some(text)) = (finish, output.text) {
            emit(Delta::Text(text));
            finish = finish_of(output.finish_reason.as_deref());
        }
        if let Some(f) = finish {
            // No [DONE] in DashScope streams: the event with a finish reason is the last.
            emit(Delta::Finish(f));
            if let Some(u) = self.usage {
                emit(Delta::Usage(u));
            }
            self.ended = true;
            emit(Delta::Done);
        }
    }
}

impl EventDecoder for DashScopeEvents {
    fn handle(&mut self, e: &Event, emit: &mut dyn FnMut(Delta)) {
        self.on_event(e.event.as_deref(), &e.data, emit);
    }

    fn is_done(&self) -> bool {
        self.ended
    }
}

/// The DashScope stream decoder: SSE framing around [`DashScopeEvents`].
pub type DashScopeStream = SseStream<DashScopeEvents>;

/// This vendor's translation functions, for `providers::dialect`.
pub static DIALECT: Dialect = Dialect {
    encode,
    decode,
    stream: || Box::new(DashScopeStream::new()),
    map_error,
    embeddings: Some(embeddings_job),
    images: Some(image_job),
};

// --- embeddings and images --------------------------------------------------------------------

pub const EMBEDDINGS_PATH: &str = "/api/v1/services/embeddings/text-embedding/text-embedding";
pub const IMAGE_SYNTHESIS_PATH: &str = "/api/v1/services/aigc/text2image/image-synthesis";

fn bearer(target: &VendorTarget) -> Vec<(&'static str, String)> {
    target
        .provider
        .api_key
        .as_ref()
        .map(|k| vec![("authorization", format!("Bearer {}", k.expose()))])
        .unwrap_or_default()
}

/// Texts per call: 25 for the v1/v2 models, 10 for v3 and later.
fn embeddings_batch(vendor_model: &str) -> usize {
    if vendor_model.ends_with("-v1") || vendor_model.ends_with("-v2") {
        25
    } else {
        10
    }
}

fn embeddings_job(req: &EmbeddingsRequest, target: &VendorTarget) -> GwResult<Box<dyn Job>> {
    let calls = job::chunks(&req.texts, embeddings_batch(target.vendor_model))
        .map(|texts| {
            let mut params = Map::new();
            if let Some(d) = req.dimensions {
                params.insert("dimension".into(), json!(d));
            }
            let body = json!({"model": target.vendor_model, "input": {"texts": texts},
                "parameters": params});
            UpstreamRequest {
                path_and_query: format!(
                    "{}{EMBEDDINGS_PATH}",
                    target.provider.endpoint.path_prefix
                ),
                headers: bearer(target),
                body: Bytes::from(serde_json::to_vec(&body).expect("json serializes")),
            }
        })
        .collect();
    Ok(Batches::job(calls, decode_embeddings, job::embeddings))
}

#[derive(Deserialize)]
struct EmbeddingsReply {
    output: EmbeddingsOutput,
    #[serde(default)]
    usage: Option<EmbeddingsUsage>,
}

#[derive(Deserialize)]
struct EmbeddingsOutput {
    embeddings: Vec<TextEmbedding>,
}

#[derive(Deserialize)]
struct TextEmbedding {
    text_index: usize,
    embedding: Vec<f32>,
}

#[derive(Deserialize)]
struct EmbeddingsUsage {
    #[serde(default)]
    total_tokens: u64,
}

fn decode_embeddings(body: &[u8]) -> GwResult<Batch<Vec<f32>>> {
    let mut r: EmbeddingsReply =
        serde_json::from_slice(body).map_err(|_| super::unreadable_reply())?;
    r.output.embeddings.sort_by_key(|e| e.text_index);
    Ok(Batch {
        items: r
            .output
            .embeddings
            .into_iter()
            .map(|e| e.embedding)
            .collect(),
        tokens: r.usage.map_or(0, |u| u.total_tokens),
    })
}

/// The first poll of a task comes this soon after it was submitted; each later one waits
/// twice as long as the one before, up to [`MAX_POLL_INTERVAL`].
const FIRST_POLL: std::time::Duration = std::time::Duration::from_millis(250);
const MAX_POLL_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

fn image_job(req: &ImageRequest, target: &VendorTarget) -> GwResult<Box<dyn Job>> {
    if !(1..=4).contains(&req.n) {
        return Err(GatewayError::bad_param(
            "n",
            "DashScope image models make from 1 to 4 images a request.",
        ));
    }
    let mut input = json!({"prompt": req.prompt});
    if let Some(neg) = &req.negative_prompt {
        input["negative_prompt"] = json!(neg);
    }
    let mut params = json!({"n": req.n});
    if let Some((w, h)) = req.size {
        params["size"] = json!(format!("{w}*{h}"));
    }
    let body = json!({"model": target.vendor_model, "input": input, "parameters": params});
    let mut headers = bearer(target);
    headers.push(("x-dashscope-async", "enable".to_string()));
    let submit = UpstreamRequest {
        path_and_query: format!(
            "{}{IMAGE_SYNTHESIS_PATH}",
            target.provider.endpoint.path_prefix
        ),
        headers,
        body: Bytes::from(serde_json::to_vec(&body).expect("json serializes")),
    };
    Ok(Box::new(ImageTask {
        state: TaskState::Submit(submit),
        result_hosts: target.provider.result_hosts.clone(),
        prefix: target.provider.endpoint.path_prefix.clone(),
        auth: bearer(target),
        inline: req.inline,
        interval: FIRST_POLL,
        images: Vec::new(),
        created: crate::clock::unix_secs(),
    }))
}

/// A Wanx text-to-image task: submitted with `X-DashScope-Async: enable`, polled with backoff
/// until it ends, then (for `b64_json`) each image fetched from where DashScope keeps it.
struct ImageTask {
    state: TaskState,
    /// Where the images may be fetched from, for `b64_json`.
    result_hosts: crate::config::ResultHosts,
    prefix: String,
    auth: Vec<(&'static str, String)>,
    inline: bool,
    interval: std::time::Duration,
    images: Vec<GeneratedImage>,
    created: u64,
}

enum TaskState {
    Submit(UpstreamRequest),
    Poll(String),
    /// Fetching the image at this index of `images`.
    Download(usize),
    Done,
}

#[derive(Deserialize)]
struct TaskReply {
    output: TaskOutput,
}

#[derive(Deserialize)]
struct TaskOutput {
    #[serde(default)]
    task_id: String,
    #[serde(default)]
    task_status: String,
    #[serde(default)]
    results: Vec<TaskResult>,
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
struct TaskResult {
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    actual_prompt: Option<String>,
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

impl ImageTask {
    fn poll(&self, task_id: &str, after: std::time::Duration) -> Call {
        Call {
            method: "GET",
            to: None,
            request: UpstreamRequest {
                path_and_query: format!(
                    "{}/api/v1/tasks/{}",
                    self.prefix,
                    super::path_segment(task_id)
                ),
                headers: self.auth.clone(),
                body: Bytes::new(),
            },
            after,
        }
    }

    /// A task that ended: its images, or the vendor's reason it failed.
    fn finished(&mut self, output: TaskOutput) -> GwResult<()> {
        match output.task_status.as_str() {
            "SUCCEEDED" => {}
            "FAILED" => return Err(task_failed(&output.code, output.message)),
            "CANCELED" => {
                return Err(GatewayError::new(
                    ErrorKind::UpstreamError,
                    "The image task was canceled at the vendor.",
                ))
            }
            _ => {
                return Err(GatewayError::new(
                    ErrorKind::UpstreamError,
                    "The vendor no longer knows the image task (UNKNOWN).",
                ))
            }
        }
        for r in output.results {
            match r.url {
                Some(url) => self.images.push(GeneratedImage {
                    data: ImageData::Url(url),
                    revised_prompt: r.actual_prompt,
                }),
                // With n > 1 single images may fail while the task succeeds.
                None if self.images.is_empty() && !r.code.is_empty() => {
                    return Err(task_failed(&r.code, r.message))
                }
                None => {}
            }
        }
        if self.images.is_empty() {
            return Err(super::unreadable_reply());
        }
        if self.inline {
            for image in &self.images {
                let ImageData::Url(url) = &image.data else {
                    continue;
                };
                let host = url
                    .parse::<http::Uri>()
                    .ok()
                    .and_then(|u| u.host().map(str::to_string));
                if !host.is_some_and(|h| self.result_hosts.allows(&h)) {
                    return Err(GatewayError::new(
                        ErrorKind::UpstreamBadResponse,
                        "The vendor's image is at a host the gateway does not fetch from (see the provider's result_hosts).",
                    ));
                }
            }
        }
        self.state = if self.inline {
            TaskState::Download(0)
        } else {
            TaskState::Done
        };
        Ok(())
    }
}

/// A FAILED task: the client's mistake (bad parameter, content moderation) is a 400 with the
/// vendor's message; anything else is the vendor's failure.
fn task_failed(code: &str, message: String) -> GatewayError {
    let message = if message.is_empty() {
        format!("The image task failed ({code}).")
    } else {
        message
    };
    match code {
        "InvalidParameter" | "DataInspectionFailed" | "IPInfringementSuspect" => {
            code_error(400, code, message).with_param(Some("prompt"))
        }
        _ => GatewayError::new(ErrorKind::UpstreamError, message),
    }
}

impl Job for ImageTask {
    fn next_call(&mut self) -> Option<Call> {
        match &self.state {
            TaskState::Submit(r) => Some(Call::post(r.clone())),
            TaskState::Poll(id) => Some(self.poll(id, self.interval)),
            TaskState::Download(i) => {
                let ImageData::Url(url) = &self.images[*i].data else {
                    return None;
                };
                let uri: http::Uri = url.parse().ok()?;
                let to = crate::config::Endpoint::parse(&format!(
                    "{}://{}",
                    uri.scheme_str()?,
                    uri.authority()?
                ))
                .ok()?;
                Some(Call {
                    method: "GET",
                    to: Some(to),
                    request: UpstreamRequest {
                        path_and_query: uri.path_and_query()?.to_string(),
                        headers: Vec::new(),
                        body: Bytes::new(),
                    },
                    after: std::time::Duration::ZERO,
                })
            }
            TaskState::Done => None,
        }
    }

    fn read(&mut self, body: &[u8]) -> GwResult<()> {
        if let TaskState::Download(i) = self.state {
            use base64::Engine;
            let media_type = job::image_type(body);
            self.images[i].data = ImageData::Inline {
                media_type: media_type.to_string(),
                base64: base64::engine::general_purpose::STANDARD.encode(body),
            };
            self.state = if i + 1 < self.images.len() {
                TaskState::Download(i + 1)
            } else {
                TaskState::Done
            };
            return Ok(());
        }
        let reply: TaskReply =
            serde_json::from_slice(body).map_err(|_| super::unreadable_reply())?;
        let output = reply.output;
        match output.task_status.as_str() {
            "PENDING" | "RUNNING" | "SUSPENDED" | "" if !output.task_id.is_empty() => {
                if matches!(self.state, TaskState::Poll(_)) {
                    self.interval = (self.interval * 2).min(MAX_POLL_INTERVAL);
                }
                self.state = TaskState::Poll(output.task_id);
                Ok(())
            }
            _ => self.finished(output),
        }
    }

    fn output(self: Box<Self>) -> JobOutput {
        JobOutput::Images(Images {
            created: self.created,
            images: self.images,
        })
    }

    /// A pending task is canceled so that it does not run (and bill) for nobody.
    fn abandon(&self) -> Option<Call> {
        let TaskState::Poll(id) = &self.state else {
            return None;
        };
        let mut call = self.poll(id, std::time::Duration::ZERO);
        call.method = "POST";
        call.request.path_and_query.push_str("/cancel");
        Some(call)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Vendor;
    use crate::providers::testing::{provider, req, run_stream_all_ways};

    fn texts(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("text {i}")).collect()
    }

    #[test]
    fn embeddings_go_in_batches_of_ten_and_come_back_in_order() {
        let p = provider(Vendor::DashScope);
        let target = VendorTarget {
            provider: &p,
            vendor_model: "text-embedding-v3",
            access_token: None,
        };
        let request = EmbeddingsRequest {
            texts: texts(23),
            dimensions: Some(4),
            user: None,
        };
        let mut job = embeddings_job(&request, &target).unwrap();
        let mut sizes = Vec::new();
        while let Some(call) = job.next_call() {
            let body: Value = serde_json::from_slice(&call.request.body).unwrap();
            assert_eq!(call.request.path_and_query, EMBEDDINGS_PATH);
            assert_eq!(body["parameters"]["dimension"], 4);
            let n = body["input"]["texts"].as_array().unwrap().len();
            sizes.push(n);
            // Out of order on purpose: text_index decides.
            let items: Vec<Value> = (0..n)
                .rev()
                .map(|i| json!({"text_index": i, "embedding": [i as f32]}))
                .collect();
            let reply = json!({"output": {"embeddings": items}, "usage": {"total_tokens": n}});
            job.read(reply.to_string().as_bytes()).unwrap();
        }
        assert_eq!(sizes, [10, 10, 3]);
        let JobOutput::Embeddings(e) = job.output() else {
            panic!("embeddings")
        };
        assert_eq!(e.vectors.len(), 23);
        assert_eq!(e.vectors[12], vec![2.0]);
        assert_eq!(e.prompt_tokens, 23);
    }

    fn image_request(inline: bool) -> ImageRequest {
        ImageRequest {
            prompt: "a cat".into(),
            negative_prompt: None,
            n: 1,
            size: Some((1024, 768)),
            inline,
            user: None,
        }
    }

    #[test]
    fn an_image_task_is_submitted_polled_with_backoff_and_downloaded() {
        let p = provider(Vendor::DashScope);
        let target = VendorTarget {
            provider: &p,
            vendor_model: "wanx2.1-t2i-turbo",
            access_token: None,
        };
        let mut job = image_job(&image_request(true), &target).unwrap();
        let submit = job.next_call().unwrap();
        assert!(submit
            .request
            .headers
            .contains(&("x-dashscope-async", "enable".to_string())));
        let body: Value = serde_json::from_slice(&submit.request.body).unwrap();
        assert_eq!(body["parameters"]["size"], "1024*768");
        job.read(br#"{"output":{"task_id":"t1","task_status":"PENDING"}}"#)
            .unwrap();
        let first = job.next_call().unwrap();
        assert_eq!(
            (first.method, first.request.path_and_query.as_str()),
            ("GET", "/api/v1/tasks/t1")
        );
        job.read(br#"{"output":{"task_id":"t1","task_status":"RUNNING"}}"#)
            .unwrap();
        let second = job.next_call().unwrap();
        assert_eq!(second.after, first.after * 2);
        let cancel = job.abandon().unwrap();
        assert_eq!(cancel.request.path_and_query, "/api/v1/tasks/t1/cancel");
        job.read(br#"{"output":{"task_id":"t1","task_status":"SUCCEEDED","results":[{"url":"https://result.oss-cn-beijing.aliyuncs.com/x.png?Expires=1","actual_prompt":"a cat, soft"}]}}"#).unwrap();
        let download = job.next_call().unwrap();
        assert_eq!(
            download.to.unwrap().host,
            "result.oss-cn-beijing.aliyuncs.com"
        );
        assert_eq!(download.request.path_and_query, "/x.png?Expires=1");
        assert!(
            download.request.headers.is_empty(),
            "no key to a third party"
        );
        job.read(&[0xff, 0xd8, 0xff, 0]).unwrap();
        assert!(job.next_call().is_none());
        let JobOutput::Images(i) = job.output() else {
            panic!("images")
        };
        assert_eq!(i.images[0].revised_prompt.as_deref(), Some("a cat, soft"));
        assert!(
            matches!(&i.images[0].data, ImageData::Inline { media_type, .. } if media_type == "image/jpeg")
        );
    }

    #[test]
    fn a_failed_task_is_the_clients_error_or_the_vendors() {
        let p = provider(Vendor::DashScope);
        let target = VendorTarget {
            provider: &p,
            vendor_model: "wanx2.1-t2i-turbo",
            access_token: None,
        };
        let failed = |code: &str| {
            let mut job = image_job(&image_request(false), &target).unwrap();
            job.read(br#"{"output":{"task_id":"t1","task_status":"PENDING"}}"#)
                .unwrap();
            let reply = json!({"output": {"task_id": "t1", "task_status": "FAILED",
                "code": code, "message": "the vendor's words"}});
            job.read(reply.to_string().as_bytes()).unwrap_err()
        };
        let e = failed("DataInspectionFailed");
        assert_eq!(
            (e.status(), e.message.as_str()),
            (400, "the vendor's words")
        );
        assert_eq!(failed("InternalError").kind, ErrorKind::UpstreamError);
    }

    #[test]
    fn encodes_input_and_parameters() {
        let p = provider(Vendor::DashScope);
        let r = req(
            r#"{"model":"x","stream":true,"messages":[{"role":"system","content":"sys"},{"role":"user","content":"hi"}],
            "temperature":2,"max_tokens":50,"enable_thinking":false,"tools":[{"type":"function","function":{"name":"f","parameters":{}}}]}"#,
        );
        let u = encode(
            &r,
            &VendorTarget {
                provider: &p,
                vendor_model: "qwen-plus",
                access_token: None,
            },
        )
        .unwrap();
        assert_eq!(u.path_and_query, TEXT_PATH);
        let b: Value = serde_json::from_slice(&u.body).unwrap();
        assert_eq!(b["model"], "qwen-plus");
        assert_eq!(
            b["input"]["messages"][0],
            json!({"role": "system", "content": "sys"})
        );
        assert_eq!(b["parameters"]["result_format"], "message");
        assert_eq!(b["parameters"]["incremental_output"], true);
        assert_eq!(b["parameters"]["temperature"], 1.99);
        assert_eq!(b["parameters"]["enable_thinking"], false);
        assert_eq!(b["parameters"]["tools"][0]["function"]["name"], "f");
        assert!(u
            .headers
            .iter()
            .any(|(k, v)| *k == "x-dashscope-sse" && v == "enable"));
    }

    #[test]
    fn images_go_to_the_multimodal_endpoint() {
        let p = provider(Vendor::DashScope);
        let r = req(
            r#"{"model":"x","messages":[{"role":"user","content":[{"type":"text","text":"what?"},{"type":"image_url","image_url":{"url":"https://x/y.png"}}]}]}"#,
        );
        let u = encode(
            &r,
            &VendorTarget {
                provider: &p,
                vendor_model: "qwen-vl-plus",
                access_token: None,
            },
        )
        .unwrap();
        assert_eq!(u.path_and_query, MULTIMODAL_PATH);
        let b: Value = serde_json::from_slice(&u.body).unwrap();
        assert_eq!(
            b["input"]["messages"][0]["content"],
            json!([{"text": "what?"}, {"image": "https://x/y.png"}])
        );
    }

    #[test]
    fn decodes_message_and_text_formats() {
        let c = decode(br#"{"output":{"choices":[{"finish_reason":"stop","message":{"role":"assistant","content":"Hello"}}]},"usage":{"input_tokens":10,"output_tokens":2,"total_tokens":12},"request_id":"b1"}"#).unwrap();
        assert_eq!(c.choices[0].content.as_deref(), Some("Hello"));
        assert_eq!(c.usage.unwrap().total_tokens, 12);
        let c = decode(br#"{"output":{"text":"Hi","finish_reason":"length"},"usage":{"input_tokens":1,"output_tokens":1}}"#).unwrap();
        assert_eq!(c.choices[0].finish, FinishReason::Length);
        let c = decode(br#"{"output":{"choices":[{"finish_reason":"tool_calls","message":{"role":"assistant","content":"","tool_calls":[{"index":0,"id":"call_9","type":"function","function":{"name":"f","arguments":"{}"}}]}}]}}"#).unwrap();
        assert_eq!(c.choices[0].tool_calls[0].id, "call_9");
        assert_eq!(c.choices[0].finish, FinishReason::ToolCalls);
    }

    #[test]
    fn maps_error_codes() {
        let e = map_error(429, br#"{"code":"Throttling.RateQuota","message":"Requests rate limit exceeded","request_id":"r"}"#);
        assert_eq!(e.status(), 429);
        let e = map_error(
            401,
            br#"{"code":"InvalidApiKey","message":"Invalid API-key provided.","request_id":"r"}"#,
        );
        assert_eq!(e.status(), 502);
        let e = map_error(400, br#"{"code":"InvalidParameter","message":"bad"}"#);
        assert_eq!((e.status(), e.message.as_str()), (400, "bad"));
    }

    const STREAM: &str = "id:1\nevent:result\n:HTTP_STATUS/200\ndata:{\"output\":{\"choices\":[{\"message\":{\"content\":\"Hel\",\"role\":\"assistant\"},\"finish_reason\":\"null\"}]},\"usage\":{\"total_tokens\":12,\"output_tokens\":2,\"input_tokens\":10},\"request_id\":\"r1\"}\n\nid:2\nevent:result\n:HTTP_STATUS/200\ndata:{\"output\":{\"choices\":[{\"message\":{\"content\":\"lo 世界\",\"role\":\"assistant\"},\"finish_reason\":\"null\"}]},\"usage\":{\"total_tokens\":13,\"output_tokens\":3,\"input_tokens\":10},\"request_id\":\"r1\"}\n\nid:3\nevent:result\n:HTTP_STATUS/200\ndata:{\"output\":{\"choices\":[{\"message\":{\"content\":\"\",\"role\":\"assistant\"},\"finish_reason\":\"stop\"}]},\"usage\":{\"total_tokens\":14,\"output_tokens\":4,\"input_tokens\":10},\"request_id\":\"r1\"}\n\n";

    #[test]
    fn stream_decodes_identically_at_any_split() {
        let d = run_stream_all_ways(STREAM.as_bytes(), DashScopeStream::new);
        assert_eq!(
            d,
            vec![
                Delta::Text("Hel".into()),
                Delta::Text("lo 世界".into()),
                Delta::Text(String::new()),
                Delta::Finish(FinishReason::Stop),
                Delta::Usage(Usage::new(10, 4)),
                Delta::Done,
            ]
        );
    }

    #[test]
    fn in_stream_error_event() {
        let s = "id:1\nevent:error\n:HTTP_STATUS/400\ndata:{\"code\":\"InvalidParameter\",\"message\":\"bad input\",\"request_id\":\"r\"}\n\n";
        match &run_stream_all_ways(s.as_bytes(), DashScopeStream::new)[..] {
            [Delta::Error(e)] => assert_eq!(e.message, "bad input"),
            other => panic!("{other:?}"),
        }
    }
}
