//! Replies in Anthropic's Messages shape: whole messages, named stream events, and errors.

use bytes::Bytes;
use serde_json::{json, Value};

use crate::api::named_event as event;
use crate::error::GatewayError;
use crate::providers::model::{Completion, Delta, FinishReason};
use crate::providers::{StreamState, Usage};

fn stop_reason(f: FinishReason) -> &'static str {
    match f {
        FinishReason::Stop => "end_turn",
        FinishReason::Length => "max_tokens",
        FinishReason::ToolCalls => "tool_use",
        FinishReason::ContentFilter => "refusal",
    }
}

fn message_id() -> String {
    crate::api::random_id("msg_")
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
        "usage": usage_json(&usage),
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
                    "usage": usage_json(&u)}),
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

/// Usage in Anthropic's terms: cached prompt tokens are counted apart from `input_tokens`.
fn usage_json(u: &Usage) -> Value {
    json!({"input_tokens": u.prompt_tokens.saturating_sub(u.cached_tokens),
           "cache_read_input_tokens": u.cached_tokens, "output_tokens": u.completion_tokens})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::model::Choice;

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
            Delta::Usage(Usage::new(3, 4)),
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
