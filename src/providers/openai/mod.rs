//! OpenAI and OpenAI-compatible servers (vLLM, Ollama, DeepSeek, Moonshot, DashScope
//! compatible mode, Qianfan v2): for OpenAI clients the request only gets its `model` swapped
//! and the reply only gets the public model name back; nothing else is parsed.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::model::{
    Choice, Completion, FinishReason, Image, Part, Request, ResponseFormat, Role, ToolCall,
    ToolChoice,
};
use super::{error_from_status, Dialect, UpstreamRequest, Usage, VendorTarget};
mod responses;
mod stream;
mod typed;
pub mod wire;

use crate::error::{ErrorKind, GatewayError, GwResult};
pub use responses::{decode_responses, encode_responses, responses_stream, ResponsesStream};
pub use stream::{ChunkDecoder, OpenAiStream};
pub use wire::ChatRequest;
use wire::{write_json_str, JsonType, RawObject};

fn request(target: &VendorTarget, stream: bool, body: Vec<u8>, path: &str) -> UpstreamRequest {
    let mut headers = Vec::with_capacity(2);
    // A token the gateway signed (JWT providers), or the static key.
    let bearer = target
        .access_token
        .or(target.provider.api_key.as_ref().map(|k| k.expose()));
    if let Some(bearer) = bearer {
        headers.push(("authorization", ["Bearer ", bearer].concat()));
    }
    if stream {
        headers.push(("accept", "text/event-stream".to_string()));
    }
    UpstreamRequest {
        path_and_query: [&target.provider.endpoint.path_prefix, path].concat(),
        headers,
        body: Bytes::from(body),
    }
}

/// The client's own JSON with only `model` replaced, to `path` (`/chat/completions`,
/// `/completions`, `/embeddings`, `/images/generations`): no parse of the members it carries.
pub fn encode_raw(chat: &ChatRequest, target: &VendorTarget, path: &str) -> UpstreamRequest {
    request(target, chat.stream, raw_body(chat, target), path)
}

/// An image generation reply, passed on as it is once it is seen to hold `data`.
pub fn check_images_raw(body: &[u8]) -> GwResult<(Bytes, Option<Usage>)> {
    reply_object(body, "data")?;
    Ok((Bytes::copy_from_slice(body), None))
}

/// A vendor reply as a JSON object whose member `array` is an array (what its API promises).
fn reply_object<'a>(body: &'a [u8], array: &str) -> GwResult<RawObject<'a>> {
    let obj = RawObject::parse(body).map_err(|_| super::unreadable_reply())?;
    if obj.get(array).map(JsonType::of) != Some(JsonType::Array) {
        return Err(super::unreadable_reply());
    }
    Ok(obj)
}

/// The reply with only `model` replaced by the public model name.
fn with_public_model(obj: &RawObject, public_model: &str, size: usize) -> Bytes {
    let mut out = Vec::with_capacity(size + 16);
    obj.write_with(
        &[("model", &public_model_json(public_model))],
        &[],
        &mut out,
    );
    Bytes::from(out)
}

#[derive(Deserialize)]
struct EmbeddingsUsage {
    #[serde(default)]
    prompt_tokens: u64,
}

/// An embeddings reply with the public model name put back, and its usage (input tokens).
pub fn decode_embeddings_raw(public_model: &str, body: &[u8]) -> GwResult<(Bytes, Option<Usage>)> {
    let obj = reply_object(body, "data")?;
    let usage = obj
        .get("usage")
        .and_then(|u| serde_json::from_str::<EmbeddingsUsage>(u.get()).ok())
        .map(|u| Usage::new(u.prompt_tokens, 0));
    Ok((with_public_model(&obj, public_model, body.len()), usage))
}

fn raw_body(chat: &ChatRequest, target: &VendorTarget) -> Vec<u8> {
    let mut model = Vec::with_capacity(target.vendor_model.len() + 2);
    write_json_str(target.vendor_model, &mut model);
    let mut body = Vec::with_capacity(256);
    if chat.stream && !chat.include_usage {
        // The gateway counts tokens of every stream (limits, budgets); the usage chunk this asks
        // for is dropped again on the way to a client that did not ask for it.
        let usage_on = br#"{"include_usage":true}"#;
        chat.body.write_with(
            &[("model", &model), ("stream_options", usage_on)],
            &[],
            &mut body,
        );
    } else {
        chat.body.write_with(&[("model", &model)], &[], &mut body);
    }
    body
}

fn content_json(parts: &[Part]) -> Value {
    match parts {
        [] => Value::Null,
        [Part::Text(t)] => json!(t),
        _ => Value::Array(
            parts
                .iter()
                .map(|p| match p {
                    Part::Text(t) => json!({"type": "text", "text": t}),
                    Part::Image(Image::Inline { media_type, data }) => json!({"type": "image_url",
                        "image_url": {"url": format!("data:{media_type};base64,{data}")}}),
                    Part::Image(Image::Url(url)) => {
                        json!({"type": "image_url", "image_url": {"url": url}})
                    }
                })
                .collect(),
        ),
    }
}

fn role_str(role: Role) -> &'static str {
    match role {
        Role::System => "system",
        Role::Developer => "developer",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool | Role::Function => "tool",
    }
}

/// A typed request (from another client API) in OpenAI's format.
pub fn encode(req: &Request, target: &VendorTarget) -> UpstreamRequest {
    let mut body = Map::new();
    body.insert("model".into(), json!(target.vendor_model));
    body.insert("messages".into(), messages_json(req));
    let mut put = |k: &str, v: Value| {
        body.insert(k.into(), v);
    };
    let parameters = [
        ("temperature", req.temperature.map(|v| json!(v))),
        ("top_p", req.top_p.map(|v| json!(v))),
        ("max_tokens", req.max_tokens.map(|v| json!(v))),
        ("n", req.n.map(|v| json!(v))),
        ("stop", (!req.stop.is_empty()).then(|| json!(req.stop))),
        ("seed", req.seed.map(|v| json!(v))),
        ("presence_penalty", req.presence_penalty.map(|v| json!(v))),
        ("frequency_penalty", req.frequency_penalty.map(|v| json!(v))),
    ];
    for (name, value) in parameters {
        if let Some(value) = value {
            put(name, value);
        }
    }
    if !req.tools.is_empty() {
        let tools = req
            .tools
            .iter()
            .map(|t| {
                json!({"type": "function", "function": {"name": t.name,
                "description": t.description, "parameters": t.parameters}})
            })
            .collect();
        put("tools", Value::Array(tools));
    }
    if let Some(c) = &req.tool_choice {
        put("tool_choice", tool_choice_json(c));
    }
    if let Some(p) = req.parallel_tool_calls {
        put("parallel_tool_calls", json!(p));
    }
    if let Some(f) = &req.response_format {
        put("response_format", response_format_json(f));
    }
    if let Some(u) = &req.user {
        put("user", json!(u));
    }
    // OpenAI's own reasoning models take an effort; other OpenAI-speaking servers differ.
    if let (Some(e), crate::config::Vendor::OpenAi) = (req.reasoning, &target.provider.vendor) {
        put("reasoning_effort", json!(e.name()));
    }
    if req.stream {
        put("stream", json!(true));
        put("stream_options", json!({"include_usage": true}));
    }
    for (k, v) in &req.extra {
        body.entry(k.clone()).or_insert_with(|| v.clone());
    }
    let bytes = serde_json::to_vec(&Value::Object(body)).expect("json serializes");
    request(target, req.stream, bytes, "/chat/completions")
}

fn messages_json(req: &Request) -> Value {
    req.messages
        .iter()
        .map(|m| {
            let mut o = json!({"role": role_str(m.role), "content": content_json(&m.parts)});
            if !m.tool_calls.is_empty() {
                o["tool_calls"] = m
                    .tool_calls
                    .iter()
                    .map(|c| {
                        json!({"id": c.id, "type": "function",
                        "function": {"name": c.name, "arguments": c.arguments}})
                    })
                    .collect();
            }
            if let Some(id) = &m.tool_call_id {
                o["tool_call_id"] = json!(id);
            }
            o
        })
        .collect()
}

fn tool_choice_json(choice: &ToolChoice) -> Value {
    match choice {
        ToolChoice::None => json!("none"),
        ToolChoice::Auto => json!("auto"),
        ToolChoice::Required => json!("required"),
        ToolChoice::Function(name) => json!({"type": "function", "function": {"name": name}}),
    }
}

fn response_format_json(format: &ResponseFormat) -> Value {
    match format {
        ResponseFormat::Text => json!({"type": "text"}),
        ResponseFormat::JsonObject => json!({"type": "json_object"}),
        ResponseFormat::JsonSchema { name, schema } => {
            json!({"type": "json_schema", "json_schema": {"name": name, "schema": schema}})
        }
    }
}

/// This vendor's translation functions, for `providers::dialect`.
pub static DIALECT: Dialect = Dialect {
    encode: |req, target| Ok(encode(req, target)),
    decode,
    stream: || Box::new(ChunkDecoder::new()),
    map_error,
    embeddings: None,
    images: None,
};

/// A `usage` member's raw text read, when it is an object.
pub(super) fn read_usage(raw: Option<&str>) -> Option<Usage> {
    let raw = raw.filter(|raw| raw.starts_with('{'))?;
    serde_json::from_str(raw).ok()
}

pub(super) fn public_model_json(public_model: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(public_model.len() + 2);
    write_json_str(public_model, &mut v);
    v
}

/// The vendor's reply for an OpenAI client: checked, with the public model name put back,
/// every other member copied verbatim.
pub fn decode_raw(public_model: &str, body: &[u8]) -> GwResult<(Bytes, Option<Usage>)> {
    let obj = reply_object(body, "choices")?;
    let usage = read_usage(obj.get("usage").map(|v| v.get()));
    Ok((with_public_model(&obj, public_model, body.len()), usage))
}

#[derive(Deserialize)]
struct OpenAiResponse {
    choices: Vec<OpenAiChoice>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct OpenAiChoice {
    #[serde(default)]
    message: OpenAiMessage,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize, Default)]
struct OpenAiMessage {
    #[serde(default)]
    content: Option<String>,
    /// vLLM renamed `reasoning_content` to `reasoning`; accept both.
    #[serde(default, alias = "reasoning")]
    reasoning_content: Option<String>,
    #[serde(default)]
    tool_calls: Vec<OpenAiToolCall>,
}

#[derive(Deserialize)]
struct OpenAiToolCall {
    #[serde(default)]
    id: String,
    function: OpenAiFunction,
}

#[derive(Deserialize)]
struct OpenAiFunction {
    #[serde(default)]
    name: String,
    #[serde(default)]
    arguments: String,
}

/// The vendor's reply, typed (for clients of another API).
pub fn decode(body: &[u8]) -> GwResult<Completion> {
    let r: OpenAiResponse = serde_json::from_slice(body).map_err(|_| super::unreadable_reply())?;
    Ok(Completion {
        choices: r
            .choices
            .into_iter()
            .map(|c| Choice {
                content: c.message.content,
                reasoning: c.message.reasoning_content,
                tool_calls: c
                    .message
                    .tool_calls
                    .into_iter()
                    .map(|t| ToolCall {
                        id: t.id,
                        name: t.function.name,
                        arguments: t.function.arguments,
                    })
                    .collect(),
                finish: FinishReason::from_openai(c.finish_reason.as_deref().unwrap_or("stop")),
            })
            .collect(),
        usage: r.usage,
    })
}

#[derive(Deserialize)]
struct OpenAiErrorEnvelope {
    error: OpenAiError,
}

#[derive(Deserialize)]
pub(super) struct OpenAiError {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    param: Option<String>,
}

pub fn map_error(status: u16, body: &[u8]) -> GatewayError {
    let (message, param) = match serde_json::from_slice::<OpenAiErrorEnvelope>(body) {
        Ok(env) => (
            env.error
                .message
                .unwrap_or_else(|| format!("upstream returned HTTP {status}")),
            env.error.param,
        ),
        Err(_) => (format!("upstream returned HTTP {status}"), None),
    };
    let e = error_from_status(status, message);
    if e.kind == ErrorKind::InvalidRequest {
        e.with_param(param.as_deref())
    } else {
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::model::Delta;
    use crate::providers::testing::run_stream_all_ways;
    use crate::providers::StreamState;

    #[test]
    fn chunk_decoder_reads_text_tools_and_usage() {
        let s = concat!(
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"\"}}]},\"finish_reason\":null}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"a\\\":1}\"}}]},\"finish_reason\":null}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":4,\"total_tokens\":13}}\n\n",
            "data: [DONE]\n\n"
        );
        let d = run_stream_all_ways(s.as_bytes(), ChunkDecoder::new);
        assert_eq!(
            d,
            vec![
                Delta::Text("Hi".into()),
                Delta::ToolStart {
                    index: 0,
                    id: "call_1".into(),
                    name: "f".into()
                },
                Delta::ToolArgs {
                    index: 0,
                    arguments: "{\"a\":1}".into()
                },
                Delta::Finish(FinishReason::ToolCalls),
                Delta::Usage(Usage::new(9, 4)),
                Delta::Done,
            ]
        );
    }

    const STREAM: &str = concat!(
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-2024\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-2024\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hé\"},\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-2024\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":4,\"total_tokens\":13}}\n\n",
        "data: [DONE]\n\n"
    );

    fn run(chunks: &[&[u8]]) -> (String, StreamState, Option<Usage>) {
        let mut d = OpenAiStream::new("public", true);
        let mut out = Vec::new();
        let mut state = StreamState::Open;
        for c in chunks {
            state = d.push(c, &mut out);
        }
        if state == StreamState::Open {
            state = d.finish(&mut out);
        }
        (String::from_utf8(out).unwrap(), state, d.usage())
    }

    #[test]
    fn passes_the_stream_through_with_the_public_model() {
        let (out, state, usage) = run(&[STREAM.as_bytes()]);
        assert_eq!(state, StreamState::Done);
        assert!(!out.contains("gpt-4o-2024"));
        assert_eq!(out.matches("\"model\":\"public\"").count(), 3);
        assert!(out.ends_with("data: [DONE]\n\n"));
        assert_eq!(usage.unwrap().total_tokens, 13);
    }

    #[test]
    fn byte_by_byte_equals_whole() {
        let whole = run(&[STREAM.as_bytes()]);
        let bytes: Vec<&[u8]> = STREAM.as_bytes().chunks(1).collect();
        assert_eq!(run(&bytes), whole);
        for i in 0..STREAM.len() {
            let (a, b) = STREAM.as_bytes().split_at(i);
            assert_eq!(run(&[a, b]), whole, "split at {i}");
        }
    }

    #[test]
    fn truncation_and_garbage_end_with_an_error_event() {
        let cut = &STREAM[..STREAM.find("data: [DONE]").unwrap()];
        let (out, state, _) = run(&[cut.as_bytes()]);
        assert_eq!(state, StreamState::Failed);
        assert!(out.contains("data: {\"error\":"));
        assert!(out.ends_with("data: [DONE]\n\n"));

        let (out, state, _) = run(&[b"data: {not json\n\n"]);
        assert_eq!(state, StreamState::Failed);
        assert!(out.starts_with("data: {\"error\":"));
    }

    /// A close without `[DONE]` after a choice gave its finish reason (however spaced) is a
    /// complete stream; after none, or one only quoted in the text, it is cut short.
    #[test]
    fn a_close_after_a_finish_reason_completes_the_stream() {
        let event = |choice: &str| format!("data: {{\"model\":\"m\",\"choices\":[{choice}]}}\n\n");
        for (choice, complete) in [
            (r#"{"index":0,"delta":{},"finish_reason":"stop"}"#, true),
            (
                r#"{"index":0,"delta":{},"finish_reason" :  "length"}"#,
                true,
            ),
            (r#"{"index":0,"delta":{},"finish_reason":null}"#, false),
            (
                r#"{"index":0,"delta":{"content":"\"finish_reason\":\"stop\""}}"#,
                false,
            ),
        ] {
            let (out, state, _) = run(&[event(choice).as_bytes()]);
            let expected = if complete {
                StreamState::Done
            } else {
                StreamState::Failed
            };
            assert_eq!(state, expected, "{choice}");
            assert_eq!(out.contains("data: {\"error\""), !complete, "{out}");
        }
    }

    #[test]
    fn decodes_and_rejects_non_streaming_bodies() {
        let body = br#"{"id":"x","object":"chat.completion","model":"v","choices":[{"index":0,"message":{"role":"assistant","content":"Hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}"#;
        let (out, usage) = decode_raw("pub", body).unwrap();
        assert!(std::str::from_utf8(&out)
            .unwrap()
            .contains("\"model\":\"pub\""));
        assert_eq!(usage.unwrap().prompt_tokens, 5);
        assert_eq!(
            decode(body).unwrap().choices[0].content.as_deref(),
            Some("Hi")
        );
        assert!(decode_raw("pub", b"<html>").is_err());
        assert!(decode_raw("pub", b"{\"id\":1}").is_err());
    }

    #[test]
    fn maps_vendor_errors() {
        let body = br#"{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#;
        let e = map_error(429, body);
        assert_eq!(
            (e.status(), e.message.as_str()),
            (429, "Rate limit reached")
        );
        assert_eq!(map_error(400, b"{}").status(), 400);
        assert_eq!(map_error(401, b"{}").status(), 502);
        assert_eq!(map_error(500, b"oops").status(), 502);
        assert_eq!(map_error(503, b"").status(), 503);
    }
}
