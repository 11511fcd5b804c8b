//! Anthropic Messages API (`POST /v1/messages`).
//! Wire format: <https://docs.anthropic.com/en/api/messages> and the streaming events at
//! <https://docs.anthropic.com/en/api/messages-streaming>.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::model::{
    push_turn, Choice, Completion, Delta, FinishReason, Image, Part, Request, ResponseFormat, Role,
    ToolCall, ToolChoice,
};
use super::{
    error_from_status, Dialect, EventDecoder, SseStream, UpstreamRequest, Usage, VendorTarget,
};
use crate::error::{ErrorKind, GatewayError, GwResult};
use crate::providers::sse::Event;

mod native;
mod text_delta;

pub use native::{decode_native, encode_native, native_stream, NativeStream};

pub const API_VERSION: &str = "2023-06-01";

/// Request members Anthropic takes that OpenAI's API has no name for; passed through as given.
const PASSED_EXTRAS: &[&str] = &["top_k", "thinking", "metadata", "service_tier"];

pub fn image_block(image: &Image) -> Value {
    match image {
        Image::Inline { media_type, data } => {
            json!({"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}})
        }
        Image::Url(url) => json!({"type": "image", "source": {"type": "url", "url": url}}),
    }
}

pub fn encode(req: &Request, target: &VendorTarget) -> GwResult<UpstreamRequest> {
    req.reject_n_above_one("Anthropic")?;
    req.reject_logprobs("Anthropic")?;
    if matches!(
        req.response_format,
        Some(ResponseFormat::JsonObject | ResponseFormat::JsonSchema { .. })
    ) {
        return Err(GatewayError::bad_param("response_format", "response_format is not supported by Anthropic models; ask for JSON in the prompt or use a tool."));
    }
    let mut body = Map::new();
    body.insert("model".into(), json!(target.vendor_model));
    body.insert(
        "max_tokens".into(),
        json!(req.max_tokens.unwrap_or(target.provider.default_max_tokens)),
    );
    body.insert("messages".into(), messages(req)?);
    if let Some(system) = req.system_text() {
        body.insert("system".into(), json!(system));
    }
    if let Some(t) = req.temperature {
        // OpenAI allows 0..2, Anthropic 0..1.
        body.insert("temperature".into(), json!(t.clamp(0.0, 1.0)));
    }
    if let Some(p) = req.top_p {
        body.insert("top_p".into(), json!(p));
    }
    if !req.stop.is_empty() {
        body.insert("stop_sequences".into(), json!(req.stop));
    }
    if !req.tools.is_empty() {
        let tools: Vec<Value> = req
            .tools
            .iter()
            .map(|t| {
                let mut o = json!({"name": t.name, "input_schema": t.parameters});
                if let Some(d) = &t.description {
                    o["description"] = json!(d);
                }
                o
            })
            .collect();
        body.insert("tools".into(), Value::Array(tools));
    }
    if let Some(c) = tool_choice(req) {
        body.insert("tool_choice".into(), c);
    }
    if let Some(user) = &req.user {
        body.insert("metadata".into(), json!({"user_id": user}));
    }
    req.copy_extras(PASSED_EXTRAS, &mut body);
    if !body.contains_key("thinking") {
        thinking(req, &mut body);
    }
    if req.stream {
        body.insert("stream".into(), json!(true));
    }
    let mut headers = vec![("anthropic-version", API_VERSION.to_string())];
    if let Some(k) = &target.provider.api_key {
        headers.push(("x-api-key", k.expose().to_string()));
    }
    if req.stream {
        headers.push(("accept", "text/event-stream".into()));
    }
    Ok(UpstreamRequest {
        path_and_query: format!("{}/v1/messages", target.provider.endpoint.path_prefix),
        headers,
        body: Bytes::from(serde_json::to_vec(&Value::Object(body)).expect("json serializes")),
    })
}

/// An effort as Anthropic's thinking switch: a budget below `max_tokens` (raised to fit it, as
/// Anthropic requires), and no sampling parameters (Anthropic refuses them with thinking on).
fn thinking(req: &Request, body: &mut Map<String, Value>) {
    let Some(effort) = req.reasoning else { return };
    let Some(budget) = effort.budget() else {
        body.insert("thinking".into(), json!({"type": "disabled"}));
        return;
    };
    body.insert(
        "thinking".into(),
        json!({"type": "enabled", "budget_tokens": budget}),
    );
    let max = body.get("max_tokens").and_then(Value::as_u64).unwrap_or(0);
    if max <= budget {
        body.insert("max_tokens".into(), json!(budget + max.max(1024)));
    }
    body.remove("temperature");
    body.remove("top_p");
    body.remove("top_k");
}

/// The conversation as Anthropic messages: user and assistant turns alternating, tool calls
/// as `tool_use` blocks, tool results as `tool_result` blocks in a user turn. The system
/// prompt goes separately.
fn messages(req: &Request) -> GwResult<Value> {
    let mut messages: Vec<(Role, Vec<Value>)> = Vec::new();
    for (i, m) in req.messages.iter().enumerate() {
        let (role, blocks) = match m.role {
            Role::System | Role::Developer => continue,
            Role::User => (Role::User, content_blocks(&m.parts)),
            Role::Assistant => {
                let mut blocks = content_blocks(&m.parts);
                for c in &m.tool_calls {
                    let input = c.arguments_object(&format!("messages[{i}].tool_calls"))?;
                    blocks.push(
                        json!({"type": "tool_use", "id": c.id, "name": c.name, "input": input}),
                    );
                }
                (Role::Assistant, blocks)
            }
            Role::Tool | Role::Function => {
                let id = m.tool_call_id.clone().unwrap_or_default();
                (
                    Role::User,
                    vec![json!({"type": "tool_result", "tool_use_id": id, "content": m.text()})],
                )
            }
        };
        // Anthropic wants user and assistant turns to alternate.
        push_turn(&mut messages, role, blocks);
    }
    if messages.is_empty() {
        return Err(GatewayError::bad_param(
            "messages",
            "At least one user or assistant message with content is required.",
        ));
    }
    Ok(Value::Array(
        messages
            .into_iter()
            .map(|(role, blocks)| {
                let role = if role == Role::User {
                    "user"
                } else {
                    "assistant"
                };
                json!({"role": role, "content": blocks})
            })
            .collect(),
    ))
}

/// OpenAI's `parallel_tool_calls: false` is Anthropic's `disable_parallel_tool_use`, which
/// lives inside `tool_choice`.
fn tool_choice(req: &Request) -> Option<Value> {
    let mut choice = match &req.tool_choice {
        None => None,
        Some(ToolChoice::Auto) => Some(json!({"type": "auto"})),
        Some(ToolChoice::Required) => Some(json!({"type": "any"})),
        Some(ToolChoice::None) => Some(json!({"type": "none"})),
        Some(ToolChoice::Function(name)) => Some(json!({"type": "tool", "name": name})),
    };
    if req.parallel_tool_calls == Some(false) && !req.tools.is_empty() {
        let c = choice.get_or_insert_with(|| json!({"type": "auto"}));
        c["disable_parallel_tool_use"] = json!(true);
    }
    choice
}

fn content_blocks(parts: &[Part]) -> Vec<Value> {
    parts
        .iter()
        .filter_map(|p| match p {
            // Anthropic rejects empty text blocks.
            Part::Text(t) if t.is_empty() => None,
            Part::Text(t) => Some(json!({"type": "text", "text": t})),
            Part::Image(img) => Some(image_block(img)),
        })
        .collect()
}

// --- replies ----------------------------------------------------------------------------------

#[derive(Deserialize)]
struct AnthropicResponse {
    #[serde(default)]
    content: Vec<AnthropicBlock>,
    #[serde(default)]
    stop_reason: Option<AnthropicStopReason>,
    #[serde(default)]
    usage: Option<AnthropicUsage>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum AnthropicBlock {
    Text {
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
    Thinking {
        thinking: String,
    },
    #[serde(other)]
    Unknown,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum AnthropicStopReason {
    EndTurn,
    MaxTokens,
    StopSequence,
    ToolUse,
    PauseTurn,
    Refusal,
    ModelContextWindowExceeded,
    #[serde(other)]
    Unknown,
}

impl AnthropicStopReason {
    fn finish(self) -> FinishReason {
        match self {
            AnthropicStopReason::MaxTokens | AnthropicStopReason::ModelContextWindowExceeded => {
                FinishReason::Length
            }
            AnthropicStopReason::ToolUse => FinishReason::ToolCalls,
            AnthropicStopReason::Refusal => FinishReason::ContentFilter,
            _ => FinishReason::Stop,
        }
    }
}

#[derive(Deserialize, Default, Clone, Copy)]
struct AnthropicUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
}

impl AnthropicUsage {
    fn usage(self) -> Usage {
        let cached = self.cache_read_input_tokens.unwrap_or(0);
        Usage::new(self.prompt(), self.output_tokens)
            .with_details(cached, 0)
            .with_cache_write(self.cache_creation_input_tokens.unwrap_or(0))
    }

    /// OpenAI's prompt_tokens include cached tokens; Anthropic counts them apart.
    fn prompt(&self) -> u64 {
        self.input_tokens
            + self.cache_creation_input_tokens.unwrap_or(0)
            + self.cache_read_input_tokens.unwrap_or(0)
    }
}

pub fn decode(body: &[u8]) -> GwResult<Completion> {
    let r: AnthropicResponse =
        serde_json::from_slice(body).map_err(|_| super::unreadable_reply())?;
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut tool_calls = Vec::new();
    for b in r.content {
        match b {
            AnthropicBlock::Text { text: t } => text.push_str(&t),
            AnthropicBlock::Thinking { thinking } => reasoning.push_str(&thinking),
            AnthropicBlock::ToolUse { id, name, input } => tool_calls.push(ToolCall {
                id,
                name,
                arguments: input.to_string(),
            }),
            AnthropicBlock::Unknown => {}
        }
    }
    let finish = r.stop_reason.ok_or_else(super::unreadable_reply)?.finish();
    Ok(Completion {
        choices: vec![Choice {
            content: (!text.is_empty() || tool_calls.is_empty()).then_some(text),
            reasoning: (!reasoning.is_empty()).then_some(reasoning),
            tool_calls,
            finish,
        }],
        usage: r.usage.map(AnthropicUsage::usage),
    })
}

#[derive(Deserialize)]
struct AnthropicErrorEnvelope {
    error: AnthropicError,
}

#[derive(Deserialize)]
struct AnthropicError {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    message: String,
}

/// The HTTP status an Anthropic error type stands for (in-stream errors carry no status).
fn status_of(kind: &str) -> u16 {
    match kind {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "overloaded_error" => 529,
        _ => 500,
    }
}

pub fn map_error(status: u16, body: &[u8]) -> GatewayError {
    match serde_json::from_slice::<AnthropicErrorEnvelope>(body) {
        Ok(env) => error_from_status(status, env.error.message),
        Err(_) => error_from_status(status, format!("upstream returned HTTP {status}")),
    }
}

// --- streams ----------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum AnthropicEvent {
    MessageStart {
        message: StartMessage,
    },
    ContentBlockStart {
        index: usize,
        content_block: AnthropicBlock,
    },
    ContentBlockDelta {
        index: usize,
        delta: BlockDelta,
    },
    ContentBlockStop {},
    MessageDelta {
        delta: MessageDeltaBody,
        #[serde(default)]
        usage: Option<AnthropicUsage>,
    },
    MessageStop {},
    Ping {},
    Error {
        error: AnthropicError,
    },
    #[serde(other)]
    Unknown,
}

#[derive(Deserialize)]
struct StartMessage {
    #[serde(default)]
    usage: Option<AnthropicUsage>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum BlockDelta {
    TextDelta {
        text: String,
    },
    InputJsonDelta {
        partial_json: String,
    },
    ThinkingDelta {
        thinking: String,
    },
    #[serde(other)]
    Unknown,
}

#[derive(Deserialize)]
struct MessageDeltaBody {
    #[serde(default)]
    stop_reason: Option<AnthropicStopReason>,
}

#[derive(Default)]
pub struct AnthropicEvents {
    /// Content block index -> OpenAI tool call index.
    tool_index: Vec<(usize, usize)>,
    next_tool: usize,
    prompt_tokens: u64,
    completion_tokens: u64,
    cached_tokens: u64,
    cache_write_tokens: u64,
    finished: bool,
    ended: bool,
}

impl AnthropicEvents {
    fn on_event(&mut self, data: &str, emit: &mut dyn FnMut(Delta)) {
        if let Some(text) = text_delta::text_delta(data) {
            return emit(Delta::Text(text));
        }
        let event: AnthropicEvent = match serde_json::from_str(data) {
            Ok(e) => e,
            Err(_) => return emit(Delta::Error(super::malformed_event())),
        };
        match event {
            AnthropicEvent::MessageStart { message } => {
                if let Some(u) = message.usage {
                    self.prompt_tokens = u.prompt();
                    self.completion_tokens = u.output_tokens;
                    self.cached_tokens = u.cache_read_input_tokens.unwrap_or(0);
                    self.cache_write_tokens = u.cache_creation_input_tokens.unwrap_or(0);
                }
            }
            AnthropicEvent::ContentBlockStart {
                index,
                content_block,
            } => self.block_start(index, content_block, emit),
            AnthropicEvent::ContentBlockDelta { index, delta } => match delta {
                BlockDelta::TextDelta { text } => emit(Delta::Text(text)),
                BlockDelta::ThinkingDelta { thinking } => emit(Delta::Reasoning(thinking)),
                BlockDelta::InputJsonDelta { partial_json } => {
                    if let Some(&(_, tool)) = self.tool_index.iter().find(|(b, _)| *b == index) {
                        emit(Delta::ToolArgs {
                            index: tool,
                            arguments: partial_json,
                        });
                    }
                }
                BlockDelta::Unknown => {}
            },
            AnthropicEvent::MessageDelta { delta, usage } => {
                if let Some(u) = usage {
                    // Cumulative, per the streaming docs.
                    self.completion_tokens = u.output_tokens;
                    if u.input_tokens > 0 {
                        self.prompt_tokens = u.prompt();
                    }
                }
                if let Some(r) = delta.stop_reason {
                    self.finished = true;
                    emit(Delta::Finish(r.finish()));
                }
            }
            AnthropicEvent::MessageStop {} => {
                if !self.finished {
                    emit(Delta::Finish(FinishReason::Stop));
                }
                let usage = Usage::new(self.prompt_tokens, self.completion_tokens);
                emit(Delta::Usage(
                    usage
                        .with_details(self.cached_tokens, 0)
                        .with_cache_write(self.cache_write_tokens),
                ));
                self.ended = true;
                emit(Delta::Done);
            }
            AnthropicEvent::Error { error } => {
                let mut e = error_from_status(status_of(&error.kind), error.message);
                if e.kind == ErrorKind::InvalidRequest {
                    e.kind = ErrorKind::UpstreamError;
                    e.status = None;
                }
                emit(Delta::Error(e));
            }
            AnthropicEvent::ContentBlockStop {}
            | AnthropicEvent::Ping {}
            | AnthropicEvent::Unknown => {}
        }
    }

    /// A content block opens: text and thinking may carry their first piece, a tool call gets
    /// the next OpenAI-style tool index.
    fn block_start(&mut self, index: usize, block: AnthropicBlock, emit: &mut dyn FnMut(Delta)) {
        match block {
            AnthropicBlock::Text { text } => emit(Delta::Text(text)),
            AnthropicBlock::Thinking { thinking } => emit(Delta::Reasoning(thinking)),
            AnthropicBlock::ToolUse { id, name, input } => {
                let tool = self.next_tool;
                self.next_tool += 1;
                self.tool_index.push((index, tool));
                emit(Delta::ToolStart {
                    index: tool,
                    id,
                    name,
                });
                // A complete input may come with the start instead of as deltas.
                if input.as_object().is_some_and(|o| !o.is_empty()) {
                    emit(Delta::ToolArgs {
                        index: tool,
                        arguments: input.to_string(),
                    });
                }
            }
            AnthropicBlock::Unknown => {}
        }
    }
}

impl EventDecoder for AnthropicEvents {
    fn handle(&mut self, e: &Event, emit: &mut dyn FnMut(Delta)) {
        self.on_event(&e.data, emit);
    }

    fn is_done(&self) -> bool {
        self.ended
    }
}

/// The Anthropic stream decoder: SSE framing around [`AnthropicEvents`].
pub type AnthropicStream = SseStream<AnthropicEvents>;

/// This vendor's translation functions, for `providers::dialect`.
pub static DIALECT: Dialect = Dialect {
    encode,
    decode,
    stream: || Box::new(AnthropicStream::new()),
    map_error,
    embeddings: None,
    images: None,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::testing::{provider, req, run_stream_all_ways};

    #[test]
    fn encodes_system_tools_and_tool_results() {
        let r = req(r#"{"model":"x","messages":[
            {"role":"system","content":"be brief"},
            {"role":"user","content":[{"type":"text","text":"weather?"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AAA"}}]},
            {"role":"assistant","content":null,"tool_calls":[{"id":"toolu_1","type":"function","function":{"name":"w","arguments":"{\"city\":\"Oslo\"}"}}]},
            {"role":"tool","tool_call_id":"toolu_1","content":"sunny"},
            {"role":"tool","tool_call_id":"toolu_2","content":"warm"}],
            "temperature":1.7,"stop":"END","tools":[{"type":"function","function":{"name":"w","parameters":{"type":"object"}}}],
            "tool_choice":"required","top_k":5}"#);
        let p = provider(crate::config::Vendor::Anthropic);
        let u = encode(
            &r,
            &VendorTarget {
                provider: &p,
                vendor_model: "claude-x",
                access_token: None,
            },
        )
        .unwrap();
        assert_eq!(u.path_and_query, "/v1/messages");
        let b: Value = serde_json::from_slice(&u.body).unwrap();
        assert_eq!(b["system"], "be brief");
        assert_eq!(b["max_tokens"], 4096);
        assert_eq!(b["temperature"], 1.0);
        assert_eq!(b["stop_sequences"], json!(["END"]));
        assert_eq!(b["top_k"], 5);
        assert_eq!(b["tool_choice"], json!({"type": "any"}));
        assert_eq!(
            b["messages"][0]["content"][1]["source"]["media_type"],
            "image/png"
        );
        assert_eq!(
            b["messages"][1]["content"][0],
            json!({"type":"tool_use","id":"toolu_1","name":"w","input":{"city":"Oslo"}})
        );
        // Two tool results become one user turn with two tool_result blocks.
        assert_eq!(b["messages"][2]["role"], "user");
        assert_eq!(b["messages"][2]["content"].as_array().unwrap().len(), 2);
        assert!(u
            .headers
            .iter()
            .any(|(k, v)| *k == "anthropic-version" && v == API_VERSION));
    }

    #[test]
    fn rejects_what_it_cannot_honour() {
        let p = provider(crate::config::Vendor::Anthropic);
        let t = VendorTarget {
            provider: &p,
            vendor_model: "c",
            access_token: None,
        };
        let e = encode(
            &req(r#"{"model":"x","messages":[{"role":"user","content":"hi"}],"n":2}"#),
            &t,
        )
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("n"));
    }

    #[test]
    fn decodes_text_and_tool_use() {
        let c = decode(br#"{"id":"msg_1","type":"message","role":"assistant","model":"m","content":[{"type":"text","text":"Let me check."},{"type":"tool_use","id":"toolu_9","name":"w","input":{"city":"Oslo"}}],"stop_reason":"tool_use","usage":{"input_tokens":10,"output_tokens":5,"cache_read_input_tokens":2}}"#).unwrap();
        let ch = &c.choices[0];
        assert_eq!(ch.content.as_deref(), Some("Let me check."));
        assert_eq!(ch.tool_calls[0].arguments, r#"{"city":"Oslo"}"#);
        assert_eq!(ch.finish, FinishReason::ToolCalls);
        assert_eq!(
            c.usage.unwrap(),
            Usage::new(12, 5).with_details(2, 0),
            "cache reads are counted apart too"
        );
        assert!(decode(b"<html>").is_err());
    }

    const STREAM: &str = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"m\",\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\n\nevent: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\nevent: ping\ndata: {\"type\": \"ping\"}\n\nevent: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Héllo\"}}\n\nevent: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\nevent: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"get_weather\",\"input\":{}}}\n\nevent: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\"}}\n\nevent: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"location\\\":\"}}\n\nevent: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\\\"Oslo\\\"}\"}}\n\nevent: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\nevent: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":89}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";

    #[test]
    fn stream_decodes_identically_at_any_split() {
        let deltas = run_stream_all_ways(STREAM.as_bytes(), AnthropicStream::new);
        assert_eq!(
            deltas,
            vec![
                Delta::Text(String::new()),
                Delta::Text("Héllo".into()),
                Delta::ToolStart {
                    index: 0,
                    id: "toolu_1".into(),
                    name: "get_weather".into()
                },
                Delta::ToolArgs {
                    index: 0,
                    arguments: String::new()
                },
                Delta::ToolArgs {
                    index: 0,
                    arguments: "{\"location\":".into()
                },
                Delta::ToolArgs {
                    index: 0,
                    arguments: "\"Oslo\"}".into()
                },
                Delta::Finish(FinishReason::ToolCalls),
                Delta::Usage(Usage::new(25, 89)),
                Delta::Done,
            ]
        );
    }

    #[test]
    fn in_stream_error_becomes_an_error_delta() {
        let s = "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";
        let deltas = run_stream_all_ways(s.as_bytes(), AnthropicStream::new);
        match &deltas[..] {
            [Delta::Error(e)] => assert_eq!((e.status(), e.message.as_str()), (503, "Overloaded")),
            other => panic!("{other:?}"),
        }
    }
}
