//! Writing OpenAI's client-facing shapes from the internal model: `chat.completion` bodies and
//! `chat.completion.chunk` streams. Chunks are written by hand into one buffer: they are the
//! per-event hot path of every translated stream.

use std::io::Write;

use bytes::Bytes;
use serde::Serialize;

use crate::error::GatewayError;
use crate::providers::model::{Completion, Delta, FinishReason, ToolCall};
use crate::providers::openai::wire::write_json_str;
use crate::providers::{StreamState, Usage};

pub fn completion_id() -> String {
    crate::api::random_id("chatcmpl-")
}

#[derive(Serialize)]
struct Body<'a> {
    id: String,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: Vec<ChoiceOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Usage>,
}

#[derive(Serialize)]
struct ChoiceOut<'a> {
    index: usize,
    message: MessageOut<'a>,
    logprobs: Option<()>,
    finish_reason: &'static str,
}

#[derive(Serialize)]
struct MessageOut<'a> {
    role: &'static str,
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<ToolCallOut<'a>>,
}

#[derive(Serialize)]
struct ToolCallOut<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    function: FunctionOut<'a>,
}

#[derive(Serialize)]
struct FunctionOut<'a> {
    name: &'a str,
    arguments: &'a str,
}

fn tool_calls_out(calls: &[ToolCall]) -> Vec<ToolCallOut<'_>> {
    calls
        .iter()
        .map(|c| ToolCallOut {
            id: &c.id,
            kind: "function",
            function: FunctionOut {
                name: &c.name,
                arguments: &c.arguments,
            },
        })
        .collect()
}

/// A completion as OpenAI's `chat.completion` JSON, under the public model name.
pub fn completion_json(c: &Completion, public_model: &str) -> Bytes {
    let body = Body {
        id: completion_id(),
        object: "chat.completion",
        created: crate::clock::unix_secs(),
        model: public_model,
        choices: c
            .choices
            .iter()
            .enumerate()
            .map(|(index, ch)| ChoiceOut {
                index,
                message: MessageOut {
                    role: "assistant",
                    content: match (&ch.content, ch.tool_calls.is_empty()) {
                        (Some(t), _) => Some(t.as_str()),
                        (None, true) => Some(""),
                        (None, false) => None,
                    },
                    reasoning_content: ch.reasoning.as_deref(),
                    tool_calls: tool_calls_out(&ch.tool_calls),
                },
                logprobs: None,
                finish_reason: ch.finish.as_openai(),
            })
            .collect(),
        usage: c.usage,
    };
    Bytes::from(serde_json::to_vec(&body).expect("plain data serializes"))
}

/// Turns deltas into OpenAI chunk events with one id, `created` and model for the stream.
pub struct OpenAiWriter {
    /// `{"id":...,"object":"chat.completion.chunk","created":...,"model":...,` ready to copy.
    prefix: Vec<u8>,
    include_usage: bool,
    role_sent: bool,
    usage: Option<Usage>,
    state: StreamState,
}

impl OpenAiWriter {
    pub fn new(public_model: &str, include_usage: bool) -> Self {
        let mut prefix = Vec::with_capacity(128);
        prefix.extend_from_slice(b"data: {\"id\":\"");
        prefix.extend_from_slice(completion_id().as_bytes());
        prefix.extend_from_slice(b"\",\"object\":\"chat.completion.chunk\",\"created\":");
        prefix.extend_from_slice(crate::clock::unix_secs().to_string().as_bytes());
        prefix.extend_from_slice(b",\"model\":");
        write_json_str(public_model, &mut prefix);
        prefix.push(b',');
        OpenAiWriter {
            prefix,
            include_usage,
            role_sent: false,
            usage: None,
            state: StreamState::Open,
        }
    }

    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// Starts a chunk with one choice and opens its `delta` object, role included the first time.
    fn open_delta(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.prefix);
        out.extend_from_slice(b"\"choices\":[{\"index\":0,\"delta\":{");
        if !self.role_sent {
            out.extend_from_slice(b"\"role\":\"assistant\",");
            self.role_sent = true;
        }
    }

    fn close_delta(&self, finish: Option<FinishReason>, out: &mut Vec<u8>) {
        if out.last() == Some(&b',') {
            out.pop();
        }
        out.extend_from_slice(b"},\"logprobs\":null,\"finish_reason\":");
        match finish {
            Some(f) => {
                out.push(b'"');
                out.extend_from_slice(f.as_openai().as_bytes());
                out.push(b'"');
            }
            None => out.extend_from_slice(b"null"),
        }
        out.push(b'}');
        out.push(b']');
        if self.include_usage {
            out.extend_from_slice(b",\"usage\":null");
        }
        out.extend_from_slice(b"}\n\n");
    }

    /// A chunk whose delta is one string member (`content`, `reasoning_content`).
    fn string_delta(&mut self, key: &[u8], text: &str, out: &mut Vec<u8>) {
        self.open_delta(out);
        out.push(b'"');
        out.extend_from_slice(key);
        out.extend_from_slice(b"\":");
        write_json_str(text, out);
        self.close_delta(None, out);
    }

    pub fn write(&mut self, delta: Delta, out: &mut Vec<u8>) -> StreamState {
        if self.state != StreamState::Open {
            return self.state;
        }
        match delta {
            Delta::Text(t) | Delta::Reasoning(t) if t.is_empty() => {}
            Delta::Text(t) => self.string_delta(b"content", &t, out),
            Delta::Reasoning(t) => self.string_delta(b"reasoning_content", &t, out),
            Delta::ToolStart { index, id, name } => {
                self.open_delta(out);
                write!(out, "\"tool_calls\":[{{\"index\":{index},\"id\":").expect("Vec write");
                write_json_str(&id, out);
                out.extend_from_slice(b",\"type\":\"function\",\"function\":{\"name\":");
                write_json_str(&name, out);
                out.extend_from_slice(b",\"arguments\":\"\"}}]");
                self.close_delta(None, out);
            }
            Delta::ToolArgs { index, arguments } => {
                if arguments.is_empty() {
                    return self.state;
                }
                self.open_delta(out);
                write!(
                    out,
                    "\"tool_calls\":[{{\"index\":{index},\"function\":{{\"arguments\":"
                )
                .expect("Vec write");
                write_json_str(&arguments, out);
                out.extend_from_slice(b"}}]");
                self.close_delta(None, out);
            }
            Delta::Finish(reason) => {
                self.open_delta(out);
                self.close_delta(Some(reason), out);
            }
            Delta::Usage(u) => self.usage = Some(u),
            Delta::Done => {
                if let (true, Some(u)) = (self.include_usage, self.usage) {
                    out.extend_from_slice(&self.prefix);
                    out.extend_from_slice(b"\"choices\":[],\"usage\":");
                    serde_json::to_writer(&mut *out, &u).expect("usage serializes");
                    out.extend_from_slice(b"}\n\n");
                }
                out.extend_from_slice(b"data: [DONE]\n\n");
                self.state = StreamState::Done;
            }
            Delta::Error(e) => self.fail(&e, out),
        }
        self.state
    }

    pub fn fail(&mut self, e: &GatewayError, out: &mut Vec<u8>) {
        if self.state == StreamState::Open {
            out.extend_from_slice(&e.sse_event());
            self.state = StreamState::Failed;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::model::Choice;

    #[test]
    fn chunks_are_valid_openai_json() {
        let mut w = OpenAiWriter::new("pub \"m\"", true);
        let mut out = Vec::new();
        for d in [
            Delta::Text("Hé\n".into()),
            Delta::ToolStart {
                index: 0,
                id: "call_1".into(),
                name: "f".into(),
            },
            Delta::ToolArgs {
                index: 0,
                arguments: "{\"a\":".into(),
            },
            Delta::Finish(FinishReason::ToolCalls),
            Delta::Usage(Usage::new(1, 2)),
            Delta::Done,
        ] {
            w.write(d, &mut out);
        }
        let text = String::from_utf8(out).unwrap();
        let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
        assert_eq!(events.len(), 6);
        for e in &events[..5] {
            let v: serde_json::Value =
                serde_json::from_str(e.strip_prefix("data: ").unwrap()).unwrap();
            assert_eq!(v["model"], "pub \"m\"");
        }
        let first: serde_json::Value = serde_json::from_str(&events[0][6..]).unwrap();
        assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(first["choices"][0]["delta"]["content"], "Hé\n");
        let usage: serde_json::Value = serde_json::from_str(&events[4][6..]).unwrap();
        assert_eq!(usage["usage"]["total_tokens"], 3);
        assert_eq!(events[5], "data: [DONE]");
    }

    #[test]
    fn completion_renders_tool_calls_with_null_content() {
        let c = Completion {
            choices: vec![Choice {
                content: None,
                reasoning: None,
                tool_calls: vec![ToolCall {
                    id: "c".into(),
                    name: "f".into(),
                    arguments: "{}".into(),
                }],
                finish: FinishReason::ToolCalls,
            }],
            usage: None,
        };
        let v: serde_json::Value = serde_json::from_slice(&completion_json(&c, "m")).unwrap();
        assert!(v["choices"][0]["message"]["content"].is_null());
        assert_eq!(
            v["choices"][0]["message"]["tool_calls"][0]["function"]["name"],
            "f"
        );
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    }
}
