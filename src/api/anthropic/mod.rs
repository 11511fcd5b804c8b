//! The Anthropic-compatible inbound API, `POST /v1/messages`, so clients built on the Claude
//! SDK can use any routed model: its request typed into the internal model, replies rendered
//! as Anthropic messages, streams as Anthropic's named events, errors in its error shape.

use bytes::Bytes;
use serde_json::{json, Value};

use crate::error::{GatewayError, GwResult};
use crate::providers::model::{
    parse_image_url, Completion, Delta, FinishReason, Image, Message, Part, Request, Role,
    ToolCall, ToolChoice, ToolDef,
};
use crate::providers::{StreamState, Usage};

fn text_of_blocks(v: &Value, param: &str) -> GwResult<String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Array(blocks) => {
            let mut out = String::new();
            for b in blocks {
                if let Some(t) = b.get("text").and_then(Value::as_str) {
                    out.push_str(t);
                }
            }
            Ok(out)
        }
        Value::Null => Ok(String::new()),
        _ => Err(GatewayError::bad_param(
            param,
            "must be a string or a list of content blocks",
        )),
    }
}

fn image_of(source: &Value, param: &str) -> GwResult<Image> {
    match source.get("type").and_then(Value::as_str) {
        Some("base64") => Ok(Image::Inline {
            media_type: source
                .get("media_type")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    GatewayError::bad_param(param, "image.source.media_type is required")
                })?
                .to_string(),
            data: source
                .get("data")
                .and_then(Value::as_str)
                .ok_or_else(|| GatewayError::bad_param(param, "image.source.data is required"))?
                .to_string(),
        }),
        Some("url") => Ok(parse_image_url(
            source
                .get("url")
                .and_then(Value::as_str)
                .ok_or_else(|| GatewayError::bad_param(param, "image.source.url is required"))?,
        )),
        _ => Err(GatewayError::bad_param(
            param,
            "image.source.type must be base64 or url",
        )),
    }
}

/// Types an Anthropic Messages request; the public model name is returned beside it.
pub fn parse_request(body: &[u8]) -> GwResult<(String, Request)> {
    let v: Value =
        serde_json::from_slice(body).map_err(crate::providers::openai::wire::invalid_json)?;
    let obj = v
        .as_object()
        .ok_or_else(|| GatewayError::invalid("The request body must be a JSON object.", None))?;
    let model = obj
        .get("model")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
        .ok_or_else(|| GatewayError::bad_param("model", "model: Field required"))?
        .to_string();
    let max_tokens = obj
        .get("max_tokens")
        .and_then(Value::as_u64)
        .ok_or_else(|| GatewayError::bad_param("max_tokens", "max_tokens: Field required"))?;
    let wire = obj
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| GatewayError::bad_param("messages", "messages: Field required"))?;
    let mut req = Request {
        max_tokens: Some(max_tokens),
        include_usage: true,
        ..Request::default()
    };
    if let Some(s) = obj.get("system") {
        let text = text_of_blocks(s, "system")?;
        if !text.is_empty() {
            req.messages.push(Message {
                role: Role::System,
                parts: vec![Part::Text(text)],
                tool_calls: vec![],
                tool_call_id: None,
                name: None,
            });
        }
    }
    for (i, m) in wire.iter().enumerate() {
        let param = format!("messages.{i}");
        let role = match m.get("role").and_then(Value::as_str) {
            Some("user") => Role::User,
            Some("assistant") => Role::Assistant,
            _ => {
                return Err(GatewayError::bad_param(
                    &format!("{param}.role"),
                    "role must be 'user' or 'assistant'",
                ))
            }
        };
        let mut parts = Vec::new();
        let mut tool_calls = Vec::new();
        match m.get("content") {
            Some(Value::String(s)) => parts.push(Part::Text(s.clone())),
            Some(Value::Array(blocks)) => {
                for (j, b) in blocks.iter().enumerate() {
                    let bparam = format!("{param}.content.{j}");
                    match b.get("type").and_then(Value::as_str) {
                        Some("text") => parts.push(Part::Text(
                            b.get("text")
                                .and_then(Value::as_str)
                                .unwrap_or("")
                                .to_string(),
                        )),
                        Some("image") => parts.push(Part::Image(image_of(
                            b.get("source").unwrap_or(&Value::Null),
                            &bparam,
                        )?)),
                        Some("tool_use") => tool_calls.push(ToolCall {
                            id: b
                                .get("id")
                                .and_then(Value::as_str)
                                .unwrap_or("")
                                .to_string(),
                            name: b
                                .get("name")
                                .and_then(Value::as_str)
                                .unwrap_or("")
                                .to_string(),
                            arguments: b.get("input").cloned().unwrap_or(json!({})).to_string(),
                        }),
                        Some("tool_result") => {
                            // A tool result is its own message in the internal model, as in OpenAI's.
                            let content =
                                text_of_blocks(b.get("content").unwrap_or(&Value::Null), &bparam)?;
                            req.messages.push(Message {
                                role: Role::Tool,
                                parts: vec![Part::Text(content)],
                                tool_calls: vec![],
                                tool_call_id: b
                                    .get("tool_use_id")
                                    .and_then(Value::as_str)
                                    .map(str::to_string),
                                name: None,
                            });
                        }
                        Some("thinking" | "redacted_thinking") => {}
                        Some(other) => {
                            return Err(GatewayError::bad_param(
                                &bparam,
                                format!("content blocks of type '{other}' are not supported"),
                            ))
                        }
                        None => {
                            return Err(GatewayError::bad_param(
                                &bparam,
                                "content blocks need a type",
                            ))
                        }
                    }
                }
            }
            _ => {
                return Err(GatewayError::bad_param(
                    &format!("{param}.content"),
                    "content: Field required",
                ))
            }
        }
        if !parts.is_empty() || !tool_calls.is_empty() {
            req.messages.push(Message {
                role,
                parts,
                tool_calls,
                tool_call_id: None,
                name: None,
            });
        }
    }
    if req.messages.iter().all(|m| m.role == Role::System) {
        return Err(GatewayError::bad_param(
            "messages",
            "at least one message is required",
        ));
    }
    req.temperature = obj.get("temperature").and_then(Value::as_f64);
    req.top_p = obj.get("top_p").and_then(Value::as_f64);
    if let Some(k) = obj.get("top_k") {
        req.extra.push(("top_k".into(), k.clone()));
    }
    if let Some(stops) = obj.get("stop_sequences").and_then(Value::as_array) {
        req.stop = stops
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect();
    }
    req.stream = obj.get("stream").and_then(Value::as_bool).unwrap_or(false);
    for t in obj
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        req.tools.push(ToolDef {
            name: t
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| GatewayError::bad_param("tools", "tools.name: Field required"))?
                .to_string(),
            description: t
                .get("description")
                .and_then(Value::as_str)
                .map(str::to_string),
            parameters: t
                .get("input_schema")
                .cloned()
                .unwrap_or(json!({"type": "object"})),
        });
    }
    if let Some(tc) = obj.get("tool_choice") {
        req.tool_choice = match tc.get("type").and_then(Value::as_str) {
            Some("auto") => Some(ToolChoice::Auto),
            Some("any") => Some(ToolChoice::Required),
            Some("none") => Some(ToolChoice::None),
            Some("tool") => Some(ToolChoice::Function(
                tc.get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
            )),
            _ => {
                return Err(GatewayError::bad_param(
                    "tool_choice",
                    "tool_choice.type must be auto, any, tool or none",
                ))
            }
        };
        if tc.get("disable_parallel_tool_use").and_then(Value::as_bool) == Some(true) {
            req.parallel_tool_calls = Some(false);
        }
    }
    req.user = obj
        .get("metadata")
        .and_then(|m| m.get("user_id"))
        .and_then(Value::as_str)
        .map(str::to_string);
    Ok((model, req))
}

fn stop_reason(f: FinishReason) -> &'static str {
    match f {
        FinishReason::Stop => "end_turn",
        FinishReason::Length => "max_tokens",
        FinishReason::ToolCalls => "tool_use",
        FinishReason::ContentFilter => "refusal",
    }
}

fn message_id() -> String {
    let mut id = String::from("msg_");
    for _ in 0..24 {
        id.push(fastrand::alphanumeric());
    }
    id
}

fn tool_input(arguments: &str) -> Value {
    serde_json::from_str(arguments).unwrap_or_else(|_| json!({}))
}

/// A completion as an Anthropic `message`.
pub fn message_json(c: &Completion, public_model: &str) -> Bytes {
    let mut content = Vec::new();
    let choice = c.choices.first();
    if let Some(ch) = choice {
        if let Some(r) = &ch.reasoning {
            content.push(json!({"type": "thinking", "thinking": r, "signature": ""}));
        }
        if let Some(t) = ch.content.as_ref().filter(|t| !t.is_empty()) {
            content.push(json!({"type": "text", "text": t}));
        }
        for call in &ch.tool_calls {
            content.push(json!({"type": "tool_use", "id": call.id, "name": call.name, "input": tool_input(&call.arguments)}));
        }
    }
    let usage = c.usage.unwrap_or_default();
    let body = json!({
        "id": message_id(), "type": "message", "role": "assistant", "model": public_model,
        "content": content,
        "stop_reason": stop_reason(choice.map_or(FinishReason::Stop, |c| c.finish)),
        "stop_sequence": null,
        "usage": {"input_tokens": usage.prompt_tokens, "output_tokens": usage.completion_tokens},
    });
    Bytes::from(serde_json::to_vec(&body).expect("json serializes"))
}

fn error_type(status: u16) -> &'static str {
    match status {
        400 | 405 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        _ => "api_error",
    }
}

/// An error in Anthropic's shape: `{"type":"error","error":{"type","message"}}`.
pub fn error_json(e: &GatewayError) -> Bytes {
    let body =
        json!({"type": "error", "error": {"type": error_type(e.status()), "message": e.message}});
    Bytes::from(serde_json::to_vec(&body).expect("json serializes"))
}

#[derive(PartialEq)]
enum Block {
    None,
    Text,
    Thinking,
    Tool(usize),
}

/// Turns deltas into Anthropic stream events, each with its `event:` line (the SDK drops
/// events without one).
pub struct AnthropicWriter {
    model: String,
    started: bool,
    block: Block,
    next_block: usize,
    stop_reason: Option<&'static str>,
    usage: Option<Usage>,
    state: StreamState,
}

fn event(out: &mut Vec<u8>, name: &str, data: &Value) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    serde_json::to_writer(&mut *out, data).expect("json serializes");
    out.extend_from_slice(b"\n\n");
}

impl AnthropicWriter {
    pub fn new(public_model: &str) -> Self {
        AnthropicWriter {
            model: public_model.to_string(),
            started: false,
            block: Block::None,
            next_block: 0,
            stop_reason: None,
            usage: None,
            state: StreamState::Open,
        }
    }

    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    fn start(&mut self, out: &mut Vec<u8>) {
        if !self.started {
            self.started = true;
            event(
                out,
                "message_start",
                &json!({"type": "message_start", "message": {
                "id": message_id(), "type": "message", "role": "assistant", "content": [], "model": self.model,
                "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 0, "output_tokens": 0}}}),
            );
        }
    }

    fn close_block(&mut self, out: &mut Vec<u8>) {
        if self.block != Block::None {
            event(
                out,
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": self.next_block - 1}),
            );
            self.block = Block::None;
        }
    }

    fn open_block(&mut self, block: Block, content_block: Value, out: &mut Vec<u8>) {
        self.close_block(out);
        event(
            out,
            "content_block_start",
            &json!({"type": "content_block_start", "index": self.next_block, "content_block": content_block}),
        );
        self.next_block += 1;
        self.block = block;
    }

    pub fn write(&mut self, delta: Delta, out: &mut Vec<u8>) -> StreamState {
        if self.state != StreamState::Open {
            return self.state;
        }
        self.start(out);
        match delta {
            Delta::Text(t) => {
                if t.is_empty() {
                    return self.state;
                }
                if self.block != Block::Text {
                    self.open_block(Block::Text, json!({"type": "text", "text": ""}), out);
                }
                event(
                    out,
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": self.next_block - 1, "delta": {"type": "text_delta", "text": t}}),
                );
            }
            Delta::Reasoning(t) => {
                if t.is_empty() {
                    return self.state;
                }
                if self.block != Block::Thinking {
                    self.open_block(
                        Block::Thinking,
                        json!({"type": "thinking", "thinking": ""}),
                        out,
                    );
                }
                event(
                    out,
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": self.next_block - 1, "delta": {"type": "thinking_delta", "thinking": t}}),
                );
            }
            Delta::ToolStart { index, id, name } => {
                self.open_block(
                    Block::Tool(index),
                    json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
                    out,
                );
            }
            Delta::ToolArgs { index, arguments } => {
                if self.block == Block::Tool(index) && !arguments.is_empty() {
                    event(
                        out,
                        "content_block_delta",
                        &json!({"type": "content_block_delta", "index": self.next_block - 1, "delta": {"type": "input_json_delta", "partial_json": arguments}}),
                    );
                }
            }
            Delta::Finish(f) => self.stop_reason = Some(stop_reason(f)),
            Delta::Usage(u) => self.usage = Some(u),
            Delta::Done => {
                self.close_block(out);
                let u = self.usage.unwrap_or_default();
                event(
                    out,
                    "message_delta",
                    &json!({"type": "message_delta",
                    "delta": {"stop_reason": self.stop_reason.unwrap_or("end_turn"), "stop_sequence": null},
                    "usage": {"input_tokens": u.prompt_tokens, "output_tokens": u.completion_tokens}}),
                );
                event(out, "message_stop", &json!({"type": "message_stop"}));
                self.state = StreamState::Done;
            }
            Delta::Error(e) => self.fail(&e, out),
        }
        self.state
    }

    pub fn fail(&mut self, e: &GatewayError, out: &mut Vec<u8>) {
        if self.state == StreamState::Open {
            event(
                out,
                "error",
                &json!({"type": "error", "error": {"type": error_type(e.status()), "message": e.message}}),
            );
            self.state = StreamState::Failed;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::model::Choice;

    #[test]
    fn parses_system_blocks_and_tool_results() {
        let (model, r) = parse_request(br#"{"model":"m","max_tokens":100,"system":[{"type":"text","text":"sys"}],
            "messages":[{"role":"user","content":"hi"},
              {"role":"assistant","content":[{"type":"tool_use","id":"t1","name":"w","input":{"a":1}}]},
              {"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":"42"},{"type":"text","text":"thanks"}]}],
            "tools":[{"name":"w","input_schema":{"type":"object"}}],"tool_choice":{"type":"any"},"stream":true}"#).unwrap();
        assert_eq!(model, "m");
        assert_eq!(r.system_text().as_deref(), Some("sys"));
        let roles: Vec<Role> = r.messages.iter().map(|m| m.role).collect();
        assert_eq!(
            roles,
            [
                Role::System,
                Role::User,
                Role::Assistant,
                Role::Tool,
                Role::User
            ]
        );
        assert_eq!(r.messages[2].tool_calls[0].arguments, r#"{"a":1}"#);
        assert_eq!(r.messages[3].tool_call_id.as_deref(), Some("t1"));
        assert_eq!(r.tool_choice, Some(ToolChoice::Required));
        assert!(r.stream && r.include_usage);
    }

    #[test]
    fn requires_max_tokens_and_model() {
        assert_eq!(
            parse_request(br#"{"model":"m","messages":[]}"#)
                .unwrap_err()
                .param
                .as_deref(),
            Some("max_tokens")
        );
        assert_eq!(
            parse_request(br#"{"max_tokens":1,"messages":[]}"#)
                .unwrap_err()
                .param
                .as_deref(),
            Some("model")
        );
    }

    #[test]
    fn writes_named_events_in_order() {
        let mut w = AnthropicWriter::new("m");
        let mut out = Vec::new();
        for d in [
            Delta::Text("Hi".into()),
            Delta::ToolStart {
                index: 0,
                id: "c".into(),
                name: "f".into(),
            },
            Delta::ToolArgs {
                index: 0,
                arguments: "{}".into(),
            },
            Delta::Finish(FinishReason::ToolCalls),
            Delta::Usage(Usage {
                prompt_tokens: 3,
                completion_tokens: 4,
                total_tokens: 7,
            }),
            Delta::Done,
        ] {
            w.write(d, &mut out);
        }
        let text = String::from_utf8(out).unwrap();
        let names: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("event: "))
            .collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert!(text.contains("\"stop_reason\":\"tool_use\""));
    }

    #[test]
    fn renders_a_message() {
        let c = Completion {
            choices: vec![Choice {
                content: Some("Hi".into()),
                reasoning: None,
                tool_calls: vec![],
                finish: FinishReason::Length,
            }],
            usage: None,
        };
        let v: Value = serde_json::from_slice(&message_json(&c, "m")).unwrap();
        assert_eq!(v["content"][0], json!({"type": "text", "text": "Hi"}));
        assert_eq!(v["stop_reason"], "max_tokens");
    }
}
