//! Google Gemini API: `models/{model}:generateContent` and `:streamGenerateContent?alt=sse`.
//! `contents`/`parts`, role `model`, `systemInstruction`, `generationConfig`, function calling.
//! Reference: <https://ai.google.dev/api/generate-content>. The base URL carries the API
//! version (`/v1beta` or `/v1`).

use std::collections::HashMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::job::{self, Batch, Batches, Job};
use super::model::{
    push_turn, Choice, Completion, Delta, EmbeddingsRequest, FinishReason, GeneratedImage, Image,
    ImageData, ImageRequest, Message, Part, Request, ResponseFormat, Role, ToolCall, ToolChoice,
};
use super::{
    error_from_status, Dialect, EventDecoder, SseStream, UpstreamRequest, Usage, VendorTarget,
};
use crate::error::{ErrorKind, GatewayError, GwResult};
use crate::providers::sse::Event;

/// Gemini's `parameters` take an OpenAPI subset: drop the JSON Schema keywords it rejects.
fn gemini_schema(schema: &Value) -> Value {
    match schema {
        Value::Object(o) => Value::Object(
            o.iter()
                .filter(|(k, _)| {
                    !matches!(
                        k.as_str(),
                        "$schema" | "additionalProperties" | "strict" | "$id"
                    )
                })
                .map(|(k, v)| (k.clone(), gemini_schema(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(gemini_schema).collect()),
        other => other.clone(),
    }
}

// --- requests ---------------------------------------------------------------------------------

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GeminiRequest<'a> {
    contents: Vec<ContentOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    system_instruction: Option<ContentOut<'a>>,
    #[serde(skip_serializing_if = "GenerationConfig::is_empty")]
    generation_config: GenerationConfig<'a>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<GeminiTools<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_config: Option<ToolConfig<'a>>,
}

#[derive(Serialize)]
struct ContentOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    parts: Vec<PartOut<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
enum PartOut<'a> {
    InlineData {
        #[serde(rename = "mimeType")]
        mime_type: &'a str,
        data: &'a str,
    },
    FunctionCall {
        name: &'a str,
        args: Value,
    },
    FunctionResponse {
        name: &'a str,
        response: Value,
    },
    #[serde(untagged)]
    Text {
        text: &'a str,
    },
}

#[derive(Serialize, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
struct GenerationConfig<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_k: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_output_tokens: Option<u64>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop_sequences: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    candidate_count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    presence_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frequency_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_mime_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_schema: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thinking_config: Option<Value>,
}

impl GenerationConfig<'_> {
    fn is_empty(&self) -> bool {
        *self == GenerationConfig::default()
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GeminiTools<'a> {
    function_declarations: Vec<FunctionDeclaration<'a>>,
}

#[derive(Serialize)]
struct FunctionDeclaration<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    parameters: Value,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolConfig<'a> {
    function_calling_config: FunctionCallingConfig<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FunctionCallingConfig<'a> {
    mode: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    allowed_function_names: Option<[&'a str; 1]>,
}

pub fn encode(req: &Request, target: &VendorTarget) -> GwResult<UpstreamRequest> {
    req.reject_logprobs("Gemini")?;
    if req.stop.len() > 5 {
        return Err(GatewayError::bad_param(
            "stop",
            "Gemini models take at most 5 stop sequences.",
        ));
    }
    let system = req.system_text();
    let body = GeminiRequest {
        contents: contents(req)?,
        system_instruction: system.as_deref().map(|text| ContentOut {
            role: None,
            parts: vec![PartOut::Text { text }],
        }),
        generation_config: generation_config(req),
        tools: tools(req),
        tool_config: req.tool_choice.as_ref().map(tool_config),
    };
    let method = if req.stream {
        "streamGenerateContent?alt=sse"
    } else {
        "generateContent"
    };
    let mut call = model_call(target, method, &body);
    if req.stream {
        call.headers.push(("accept", "text/event-stream".into()));
    }
    Ok(call)
}

/// A call to `models/{model}:{method}` with the key in `x-goog-api-key`.
fn model_call(target: &VendorTarget, method: &str, body: &impl Serialize) -> UpstreamRequest {
    let mut headers = Vec::with_capacity(2);
    if let Some(k) = &target.provider.api_key {
        headers.push(("x-goog-api-key", k.expose().to_string()));
    }
    UpstreamRequest {
        path_and_query: format!(
            "{}/models/{}:{method}",
            target.provider.endpoint.path_prefix,
            super::path_segment(target.vendor_model)
        ),
        headers,
        body: Bytes::from(serde_json::to_vec(body).expect("json serializes")),
    }
}

// --- embeddings and images --------------------------------------------------------------------

/// `batchEmbedContents` takes at most this many texts.
const EMBEDDINGS_BATCH: usize = 100;

fn embeddings_job(req: &EmbeddingsRequest, target: &VendorTarget) -> GwResult<Box<dyn Job>> {
    let model = format!("models/{}", target.vendor_model);
    let calls = job::chunks(&req.texts, EMBEDDINGS_BATCH)
        .map(|texts| {
            let requests: Vec<Value> = texts
                .iter()
                .map(|t| {
                    let mut r = json!({"model": model, "content": {"parts": [{"text": t}]}});
                    if let Some(d) = req.dimensions {
                        r["outputDimensionality"] = json!(d);
                    }
                    r
                })
                .collect();
            model_call(target, "batchEmbedContents", &json!({"requests": requests}))
        })
        .collect();
    Ok(Batches::job(calls, decode_embeddings, job::embeddings))
}

#[derive(Deserialize)]
struct BatchEmbeddings {
    embeddings: Vec<ContentEmbedding>,
}

#[derive(Deserialize)]
struct ContentEmbedding {
    values: Vec<f32>,
}

fn decode_embeddings(body: &[u8]) -> GwResult<Batch<Vec<f32>>> {
    let r: BatchEmbeddings = serde_json::from_slice(body).map_err(|_| super::unreadable_reply())?;
    // The Gemini API reports no usage for embeddings; the gateway's estimate stands in.
    Ok(Batch {
        items: r.embeddings.into_iter().map(|e| e.values).collect(),
        tokens: 0,
    })
}

/// Native image output (`responseModalities: ["IMAGE"]`): one call per image, as Gemini makes
/// one image a call. Images come back inline, so URLs are `data:` URLs.
fn image_job(req: &ImageRequest, target: &VendorTarget) -> GwResult<Box<dyn Job>> {
    let mut config = json!({"responseModalities": ["IMAGE"]});
    if let Some(size) = req.size {
        config["imageConfig"] = json!({"aspectRatio": aspect_ratio(size)});
    }
    let body = json!({"contents": [{"role": "user", "parts": [{"text": req.prompt}]}],
        "generationConfig": config});
    let call = model_call(target, "generateContent", &body);
    Ok(Batches::job(
        vec![call; req.n as usize],
        decode_image,
        job::images,
    ))
}

/// The aspect ratio Gemini offers nearest to a size.
fn aspect_ratio((w, h): (u32, u32)) -> &'static str {
    const RATIOS: [(&str, f64); 10] = [
        ("1:1", 1.0),
        ("2:3", 2.0 / 3.0),
        ("3:2", 1.5),
        ("3:4", 0.75),
        ("4:3", 4.0 / 3.0),
        ("4:5", 0.8),
        ("5:4", 1.25),
        ("9:16", 9.0 / 16.0),
        ("16:9", 16.0 / 9.0),
        ("21:9", 21.0 / 9.0),
    ];
    let want = f64::from(w) / f64::from(h);
    RATIOS
        .iter()
        .min_by(|a, b| (a.1 - want).abs().total_cmp(&(b.1 - want).abs()))
        .map_or("1:1", |r| r.0)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ImageReply {
    #[serde(default)]
    candidates: Vec<ImageCandidate>,
    #[serde(default)]
    usage_metadata: Option<UsageMetadata>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ImageCandidate {
    #[serde(default)]
    content: Option<ImageContent>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct ImageContent {
    #[serde(default)]
    parts: Vec<ImagePart>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ImagePart {
    #[serde(default)]
    inline_data: Option<InlineData>,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InlineData {
    mime_type: String,
    data: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UsageMetadata {
    #[serde(default)]
    prompt_token_count: u64,
}

fn decode_image(body: &[u8]) -> GwResult<Batch<GeneratedImage>> {
    let r: ImageReply = serde_json::from_slice(body).map_err(|_| super::unreadable_reply())?;
    let tokens = r.usage_metadata.map_or(0, |u| u.prompt_token_count);
    let candidate = r.candidates.into_iter().next();
    let finish = candidate.as_ref().and_then(|c| c.finish_reason.clone());
    let mut text = None;
    let image = candidate
        .and_then(|c| c.content)
        .into_iter()
        .flat_map(|c| c.parts)
        .find_map(|p| {
            if p.text.is_some() {
                text = p.text;
            }
            p.inline_data
        });
    match image {
        Some(i) => Ok(Batch {
            items: vec![GeneratedImage {
                data: ImageData::Inline {
                    media_type: i.mime_type,
                    base64: i.data,
                },
                revised_prompt: None,
            }],
            tokens,
        }),
        // Blocked by Gemini's safety filters: the prompt is the client's to change.
        None if finish
            .as_deref()
            .is_some_and(|f| f.contains("SAFETY") || f == "PROHIBITED_CONTENT") =>
        {
            Err(GatewayError::invalid(
                "The image was blocked by the vendor's safety filters; change the prompt.",
                Some("prompt"),
            )
            .with_code("content_filter"))
        }
        None => Err(GatewayError::new(
            ErrorKind::UpstreamBadResponse,
            text.map_or_else(
                || "The vendor returned no image.".to_string(),
                |t| format!("The vendor returned no image: {t}"),
            ),
        )),
    }
}

/// The conversation as Gemini turns: `user` and `model` alternating, tool results as
/// `functionResponse` parts of a user turn. The system prompt goes separately.
fn contents(req: &Request) -> GwResult<Vec<ContentOut<'_>>> {
    let names = req.call_names();
    let mut turns: Vec<(&'static str, Vec<PartOut>)> = Vec::new();
    for (i, m) in req.messages.iter().enumerate() {
        let (role, parts) = match m.role {
            Role::System | Role::Developer => continue,
            Role::User => ("user", user_parts(m, i)?),
            Role::Assistant => ("model", model_parts(m, i)?),
            Role::Tool | Role::Function => ("user", vec![function_response(&names, m, i)?]),
        };
        push_turn(&mut turns, role, parts);
    }
    if turns.is_empty() {
        return Err(GatewayError::bad_param(
            "messages",
            "At least one user message with content is required.",
        ));
    }
    Ok(turns
        .into_iter()
        .map(|(role, parts)| ContentOut {
            role: Some(role),
            parts,
        })
        .collect())
}

fn user_parts(m: &Message, i: usize) -> GwResult<Vec<PartOut<'_>>> {
    m.parts
        .iter()
        .map(|p| match p {
            Part::Text(text) => Ok(PartOut::Text { text }),
            Part::Image(Image::Inline { media_type, data }) => Ok(PartOut::InlineData {
                mime_type: media_type,
                data,
            }),
            Part::Image(Image::Url(_)) => Err(GatewayError::bad_param(
                &format!("messages[{i}].content"),
                "Gemini models take images as base64 data: URLs.",
            )),
        })
        .collect()
}

fn model_parts(m: &Message, i: usize) -> GwResult<Vec<PartOut<'_>>> {
    let mut parts: Vec<PartOut> = m
        .parts
        .iter()
        .filter_map(|p| match p {
            Part::Text(text) if !text.is_empty() => Some(PartOut::Text { text }),
            _ => None,
        })
        .collect();
    for c in &m.tool_calls {
        let args = c.arguments_object(&format!("messages[{i}].tool_calls"))?;
        parts.push(PartOut::FunctionCall {
            name: &c.name,
            args,
        });
    }
    Ok(parts)
}

/// Gemini names the function a result answers, not the call: found through the call's id.
fn function_response<'r>(
    names: &HashMap<&'r str, &'r str>,
    m: &'r Message,
    i: usize,
) -> GwResult<PartOut<'r>> {
    let name = m
        .tool_call_id
        .as_deref()
        .and_then(|id| names.get(id).copied())
        .or(m.name.as_deref())
        .ok_or_else(|| {
            GatewayError::bad_param(
                &format!("messages[{i}].tool_call_id"),
                "A tool message must answer a tool call made earlier in the conversation.",
            )
        })?;
    let text = m.text();
    let response = match serde_json::from_str::<Value>(&text) {
        Ok(v @ Value::Object(_)) => v,
        _ => json!({ "content": text }),
    };
    Ok(PartOut::FunctionResponse { name, response })
}

fn generation_config(req: &Request) -> GenerationConfig<'_> {
    let (response_mime_type, response_schema) = match &req.response_format {
        Some(ResponseFormat::JsonObject) => (Some("application/json"), None),
        Some(ResponseFormat::JsonSchema { schema, .. }) => {
            (Some("application/json"), Some(gemini_schema(schema)))
        }
        Some(ResponseFormat::Text) | None => (None, None),
    };
    GenerationConfig {
        temperature: req.temperature,
        top_p: req.top_p,
        top_k: req.extra("top_k"),
        max_output_tokens: req.max_tokens,
        stop_sequences: &req.stop,
        candidate_count: req.n,
        seed: req.seed,
        presence_penalty: req.presence_penalty,
        frequency_penalty: req.frequency_penalty,
        response_mime_type,
        response_schema,
        thinking_config: req.extra("thinking_config").cloned().or_else(|| {
            // A budget (0: off), and the thoughts' summaries in the reply.
            let e = req.reasoning?;
            let budget = e.budget().unwrap_or(0);
            Some(json!({"thinkingBudget": budget, "includeThoughts": e != super::model::Effort::Off}))
        }),
    }
}

fn tools(req: &Request) -> Vec<GeminiTools<'_>> {
    if req.tools.is_empty() {
        return Vec::new();
    }
    let function_declarations = req
        .tools
        .iter()
        .map(|t| FunctionDeclaration {
            name: &t.name,
            description: t.description.as_deref(),
            parameters: gemini_schema(&t.parameters),
        })
        .collect();
    vec![GeminiTools {
        function_declarations,
    }]
}

fn tool_config(choice: &ToolChoice) -> ToolConfig<'_> {
    let (mode, allowed_function_names) = match choice {
        ToolChoice::Auto => ("AUTO", None),
        ToolChoice::None => ("NONE", None),
        ToolChoice::Required => ("ANY", None),
        ToolChoice::Function(name) => ("ANY", Some([name.as_str()])),
    };
    ToolConfig {
        function_calling_config: FunctionCallingConfig {
            mode,
            allowed_function_names,
        },
    }
}

// --- replies ----------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GeminiResponse {
    #[serde(default)]
    candidates: Vec<GeminiCandidate>,
    #[serde(default)]
    usage_metadata: Option<GeminiUsage>,
    #[serde(default)]
    prompt_feedback: Option<Value>,
    #[serde(default)]
    error: Option<GeminiError>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GeminiCandidate {
    #[serde(default)]
    content: Option<GeminiContent>,
    #[serde(default)]
    finish_reason: Option<String>,
    #[serde(default)]
    index: Option<usize>,
}

#[derive(Deserialize)]
struct GeminiContent {
    #[serde(default)]
    parts: Vec<GeminiPart>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GeminiPart {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    thought: Option<bool>,
    #[serde(default)]
    function_call: Option<GeminiFunctionCall>,
}

#[derive(Deserialize)]
struct GeminiFunctionCall {
    name: String,
    #[serde(default)]
    args: Option<Value>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "camelCase")]
struct GeminiUsage {
    #[serde(default)]
    prompt_token_count: u64,
    #[serde(default)]
    candidates_token_count: u64,
    #[serde(default)]
    thoughts_token_count: u64,
    #[serde(default)]
    cached_content_token_count: u64,
}

impl From<GeminiUsage> for Usage {
    fn from(u: GeminiUsage) -> Usage {
        Usage::new(
            u.prompt_token_count,
            u.candidates_token_count + u.thoughts_token_count,
        )
        .with_details(u.cached_content_token_count, u.thoughts_token_count)
    }
}

#[derive(Deserialize)]
struct GeminiErrorEnvelope {
    error: GeminiError,
}

#[derive(Deserialize)]
struct GeminiError {
    #[serde(default)]
    code: u16,
    #[serde(default)]
    message: String,
    #[serde(default)]
    details: Vec<Value>,
}

fn finish_of(reason: &str) -> FinishReason {
    match reason {
        "MAX_TOKENS" => FinishReason::Length,
        "STOP"
        | "MALFORMED_FUNCTION_CALL"
        | "FINISH_REASON_UNSPECIFIED"
        | "UNEXPECTED_TOOL_CALL"
        | "TOO_MANY_TOOL_CALLS" => FinishReason::Stop,
        _ => FinishReason::ContentFilter,
    }
}

pub fn decode(body: &[u8]) -> GwResult<Completion> {
    let r: GeminiResponse = serde_json::from_slice(body).map_err(|_| super::unreadable_reply())?;
    if let Some(e) = r.error {
        return Err(gemini_error(e.code, e));
    }
    if r.candidates.is_empty() {
        if r.prompt_feedback.is_some() {
            // The prompt itself was blocked.
            return Ok(Completion {
                choices: vec![Choice {
                    content: Some(String::new()),
                    reasoning: None,
                    tool_calls: Vec::new(),
                    finish: FinishReason::ContentFilter,
                }],
                usage: r.usage_metadata.map(Usage::from),
            });
        }
        return Err(super::unreadable_reply());
    }
    let mut calls = 0;
    let mut candidates = r.candidates;
    candidates.sort_by_key(|c| c.index.unwrap_or(0));
    let choices = candidates
        .into_iter()
        .map(|c| {
            let mut text = String::new();
            let mut reasoning = String::new();
            let mut tool_calls = Vec::new();
            for p in c.content.map(|c| c.parts).unwrap_or_default() {
                match (p.text, p.thought, p.function_call) {
                    (Some(t), Some(true), _) => reasoning.push_str(&t),
                    (Some(t), _, _) => text.push_str(&t),
                    (None, _, Some(f)) => {
                        tool_calls.push(ToolCall {
                            id: format!("call_{calls}"),
                            name: f.name,
                            arguments: f.args.unwrap_or(json!({})).to_string(),
                        });
                        calls += 1;
                    }
                    _ => {}
                }
            }
            let finish = if tool_calls.is_empty() {
                finish_of(c.finish_reason.as_deref().unwrap_or("STOP"))
            } else {
                FinishReason::ToolCalls
            };
            Choice {
                content: (!text.is_empty() || tool_calls.is_empty()).then_some(text),
                reasoning: (!reasoning.is_empty()).then_some(reasoning),
                tool_calls,
                finish,
            }
        })
        .collect();
    Ok(Completion {
        choices,
        usage: r.usage_metadata.map(Usage::from),
    })
}

fn retry_delay(details: &[Value]) -> Option<u64> {
    details
        .iter()
        .find_map(|d| d.get("retryDelay").and_then(Value::as_str))
        .and_then(|s| s.trim_end_matches('s').parse::<f64>().ok())
        .map(|s| s.ceil() as u64)
}

fn gemini_error(status: u16, e: GeminiError) -> GatewayError {
    let key_invalid = e
        .details
        .iter()
        .any(|d| d.get("reason").and_then(Value::as_str) == Some("API_KEY_INVALID"));
    if key_invalid {
        return GatewayError::new(
            ErrorKind::UpstreamAuth,
            format!(
                "The upstream provider rejected the gateway's credentials: {}",
                e.message
            ),
        );
    }
    let retry = retry_delay(&e.details);
    error_from_status(if status == 0 { 500 } else { status }, e.message).with_retry_after(retry)
}

pub fn map_error(status: u16, body: &[u8]) -> GatewayError {
    match serde_json::from_slice::<GeminiErrorEnvelope>(body) {
        Ok(env) => gemini_error(status, env.error),
        // Some Gemini errors arrive as a JSON array holding the envelope.
        Err(_) => match serde_json::from_slice::<Vec<GeminiErrorEnvelope>>(body) {
            Ok(mut v) if !v.is_empty() => gemini_error(status, v.remove(0).error),
            _ => error_from_status(status, format!("upstream returned HTTP {status}")),
        },
    }
}

// --- streams ----------------------------------------------------------------------------------

/// Every event is a whole `GenerateContentResponse` holding only the new text; the stream ends
/// when the connection closes, and the last event carries the finish reason and final usage.
#[derive(Default)]
pub struct GeminiEvents {
    tools: usize,
    finish: Option<FinishReason>,
    usage: Option<Usage>,
    failed: bool,
}

impl GeminiEvents {
    fn on_data(&mut self, data: &str, emit: &mut dyn FnMut(Delta)) {
        let r: GeminiResponse = match serde_json::from_str(data) {
            Ok(r) => r,
            Err(_) => {
                self.failed = true;
                return emit(Delta::Error(super::malformed_event()));
            }
        };
        if let Some(e) = r.error {
            self.failed = true;
            let mut err = gemini_error(e.code, e);
            if err.kind == ErrorKind::InvalidRequest {
                err.kind = ErrorKind::UpstreamError;
                err.status = None;
            }
            return emit(Delta::Error(err));
        }
        if let Some(u) = r.usage_metadata {
            self.usage = Some(u.into());
        }
        if r.candidates.is_empty() && r.prompt_feedback.is_some() {
            self.finish = Some(FinishReason::ContentFilter);
            return emit(Delta::Finish(FinishReason::ContentFilter));
        }
        // Only the first candidate: a stream has one choice.
        for c in r
            .candidates
            .into_iter()
            .filter(|c| c.index.unwrap_or(0) == 0)
        {
            for p in c.content.map(|c| c.parts).unwrap_or_default() {
                match (p.text, p.thought, p.function_call) {
                    (Some(t), Some(true), _) => emit(Delta::Reasoning(t)),
                    (Some(t), _, _) => emit(Delta::Text(t)),
                    (None, _, Some(f)) => {
                        let index = self.tools;
                        self.tools += 1;
                        emit(Delta::ToolStart {
                            index,
                            id: format!("call_{index}"),
                            name: f.name,
                        });
                        emit(Delta::ToolArgs {
                            index,
                            arguments: f.args.unwrap_or(json!({})).to_string(),
                        });
                    }
                    _ => {}
                }
            }
            if let Some(reason) = c.finish_reason {
                let f = if self.tools > 0 {
                    FinishReason::ToolCalls
                } else {
                    finish_of(&reason)
                };
                if self.finish.is_none() {
                    emit(Delta::Finish(f));
                }
                self.finish = Some(f);
            }
        }
    }
}

impl EventDecoder for GeminiEvents {
    fn handle(&mut self, e: &Event, emit: &mut dyn FnMut(Delta)) {
        self.on_data(&e.data, emit);
    }

    fn is_done(&self) -> bool {
        self.failed
    }

    fn close(&mut self, emit: &mut dyn FnMut(Delta)) {
        // Gemini ends a stream by closing it: complete when a finish reason came.
        if self.finish.is_some() && !self.failed {
            if let Some(u) = self.usage {
                emit(Delta::Usage(u));
            }
            emit(Delta::Done);
        }
    }
}

/// The Gemini stream decoder: SSE framing around [`GeminiEvents`].
pub type GeminiStream = SseStream<GeminiEvents>;

/// This vendor's translation functions, for `providers::dialect`.
pub static DIALECT: Dialect = Dialect {
    encode,
    decode,
    stream: || Box::new(GeminiStream::new()),
    map_error,
    embeddings: Some(embeddings_job),
    images: Some(image_job),
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Vendor;
    use crate::providers::testing::{provider, req, run_stream_all_ways};

    #[test]
    fn sizes_map_to_the_nearest_aspect_ratio() {
        assert_eq!(aspect_ratio((1024, 1024)), "1:1");
        assert_eq!(aspect_ratio((1792, 1024)), "16:9");
        assert_eq!(aspect_ratio((1024, 1792)), "9:16");
        assert_eq!(aspect_ratio((1024, 768)), "4:3");
    }

    #[test]
    fn images_take_one_call_each_and_a_blocked_image_is_a_400() {
        let p = provider(Vendor::Gemini);
        let target = VendorTarget {
            provider: &p,
            vendor_model: "gemini-2.5-flash-image",
            access_token: None,
        };
        let request = ImageRequest {
            prompt: "a cat".into(),
            negative_prompt: None,
            n: 2,
            size: Some((1792, 1024)),
            inline: true,
            user: None,
        };
        let mut job = image_job(&request, &target).unwrap();
        let call = job.next_call().unwrap();
        let body: Value = serde_json::from_slice(&call.request.body).unwrap();
        assert_eq!(
            body["generationConfig"]["responseModalities"],
            json!(["IMAGE"])
        );
        assert_eq!(
            body["generationConfig"]["imageConfig"]["aspectRatio"],
            "16:9"
        );
        let image = br#"{"candidates":[{"content":{"parts":[{"text":"ok"},{"inlineData":{"mimeType":"image/png","data":"iVBOR"}}]}}]}"#;
        job.read(image).unwrap();
        job.read(image).unwrap();
        assert!(job.next_call().is_none());
        let e = image_job(&request, &target)
            .unwrap()
            .read(br#"{"candidates":[{"finishReason":"IMAGE_SAFETY"}]}"#)
            .unwrap_err();
        assert_eq!(
            (e.status(), e.code.as_deref()),
            (400, Some("content_filter"))
        );
    }

    #[test]
    fn encodes_contents_config_and_tools() {
        let mut p = provider(Vendor::Gemini);
        p.endpoint.path_prefix = "/v1beta".into();
        let r = req(
            r#"{"model":"x","stream":true,"messages":[{"role":"system","content":"sys"},{"role":"user","content":"w?"},
            {"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"w","arguments":"{\"city\":\"Oslo\"}"}}]},
            {"role":"tool","tool_call_id":"c1","content":"sunny"}],"max_tokens":64,"temperature":0.3,"n":2,
            "tools":[{"type":"function","function":{"name":"w","parameters":{"type":"object","additionalProperties":false,"properties":{"city":{"type":"string"}}}}}],"tool_choice":"required"}"#,
        );
        let u = encode(
            &r,
            &VendorTarget {
                provider: &p,
                vendor_model: "gemini-2.5-flash",
                access_token: None,
            },
        )
        .unwrap();
        assert_eq!(
            u.path_and_query,
            "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
        );
        let b: Value = serde_json::from_slice(&u.body).unwrap();
        assert_eq!(b["systemInstruction"], json!({"parts": [{"text": "sys"}]}));
        assert_eq!(
            b["contents"][1],
            json!({"role": "model", "parts": [{"functionCall": {"name": "w", "args": {"city": "Oslo"}}}]})
        );
        assert_eq!(
            b["contents"][2]["parts"][0]["functionResponse"],
            json!({"name": "w", "response": {"content": "sunny"}})
        );
        assert_eq!(
            b["generationConfig"],
            json!({"temperature": 0.3, "maxOutputTokens": 64, "candidateCount": 2})
        );
        assert!(b["tools"][0]["functionDeclarations"][0]["parameters"]
            .get("additionalProperties")
            .is_none());
        assert_eq!(b["toolConfig"]["functionCallingConfig"]["mode"], "ANY");
        assert!(u.headers.iter().any(|(k, _)| *k == "x-goog-api-key"));
    }

    #[test]
    fn decodes_text_calls_and_errors() {
        let c = decode(br#"{"candidates":[{"content":{"role":"model","parts":[{"text":"Hello"}]},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":4,"candidatesTokenCount":1,"totalTokenCount":5}}"#).unwrap();
        assert_eq!(c.choices[0].content.as_deref(), Some("Hello"));
        assert_eq!(c.usage.unwrap().total_tokens, 5);
        let c = decode(br#"{"candidates":[{"content":{"role":"model","parts":[{"functionCall":{"name":"w","args":{"a":1}}}]},"finishReason":"STOP"}]}"#).unwrap();
        assert_eq!(
            (
                c.choices[0].finish,
                c.choices[0].tool_calls[0].arguments.as_str()
            ),
            (FinishReason::ToolCalls, r#"{"a":1}"#)
        );
        let c = decode(
            br#"{"candidates":[{"content":{"parts":[{"text":"x"}]},"finishReason":"SAFETY"}]}"#,
        )
        .unwrap();
        assert_eq!(c.choices[0].finish, FinishReason::ContentFilter);
        let e = map_error(429, br#"{"error":{"code":429,"message":"quota","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"22s"}]}}"#);
        assert_eq!((e.status(), e.retry_after_secs), (429, Some(22)));
        let e = map_error(400, br#"{"error":{"code":400,"message":"API key not valid.","status":"INVALID_ARGUMENT","details":[{"reason":"API_KEY_INVALID"}]}}"#);
        assert_eq!(e.status(), 502);
    }

    const STREAM: &str = "data: {\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\"Hel\"}]},\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":4,\"totalTokenCount\":4}}\r\n\r\ndata: {\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\"lo\"}]},\"finishReason\":\"STOP\",\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":4,\"candidatesTokenCount\":2,\"totalTokenCount\":6}}\r\n\r\n";

    #[test]
    fn stream_decodes_identically_at_any_split() {
        let d = run_stream_all_ways(STREAM.as_bytes(), GeminiStream::new);
        assert_eq!(
            d,
            vec![
                Delta::Text("Hel".into()),
                Delta::Text("lo".into()),
                Delta::Finish(FinishReason::Stop),
                Delta::Usage(Usage::new(4, 2)),
                Delta::Done,
            ]
        );
    }

    #[test]
    fn a_stream_cut_before_the_finish_is_not_done() {
        let cut = &STREAM[..STREAM.find("\r\n\r\n").unwrap() + 4];
        let d = run_stream_all_ways(cut.as_bytes(), GeminiStream::new);
        assert_eq!(d, vec![Delta::Text("Hel".into())]);
    }
}
