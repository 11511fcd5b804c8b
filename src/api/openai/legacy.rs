//! OpenAI's legacy Completions API (`POST /v1/completions`) for vendors that only chat: the
//! reply's text as `choices[].text`, streamed as `text_completion` chunks.

use bytes::Bytes;
use serde_json::json;

use super::writer::completion_id;
use crate::error::GatewayError;
use crate::providers::model::{Completion, Delta, FinishReason};
use crate::providers::{StreamState, Usage};

fn id() -> String {
    completion_id().replacen("chatcmpl-", "cmpl-", 1)
}

/// A whole reply as a `text_completion` (tool calls have no place in it).
pub fn completion_json(c: &Completion, public_model: &str) -> Bytes {
    let choices: Vec<_> = c
        .choices
        .iter()
        .enumerate()
        .map(|(index, ch)| {
            json!({"text": ch.content.as_deref().unwrap_or(""), "index": index,
                   "logprobs": null, "finish_reason": ch.finish.as_openai()})
        })
        .collect();
    let body = json!({"id": id(), "object": "text_completion", "created": crate::clock::unix_secs(),
                      "model": public_model, "choices": choices, "usage": c.usage});
    Bytes::from(serde_json::to_vec(&body).expect("plain data serializes"))
}

/// Deltas as `text_completion` chunks.
pub struct LegacyWriter {
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
    usage: Option<Usage>,
    state: StreamState,
}

impl LegacyWriter {
    pub fn new(public_model: &str, include_usage: bool) -> Self {
        LegacyWriter {
            id: id(),
            created: crate::clock::unix_secs(),
            model: public_model.to_string(),
            include_usage,
            usage: None,
            state: StreamState::Open,
        }
    }

    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    fn chunk(&self, text: &str, finish: Option<FinishReason>, out: &mut Vec<u8>) {
        let chunk = json!({"id": self.id, "object": "text_completion", "created": self.created,
            "model": self.model, "choices": [{"text": text, "index": 0, "logprobs": null,
            "finish_reason": finish.map(FinishReason::as_openai)}]});
        out.extend_from_slice(b"data: ");
        serde_json::to_writer(&mut *out, &chunk).expect("plain data serializes");
        out.extend_from_slice(b"\n\n");
    }

    pub fn write(&mut self, delta: Delta, out: &mut Vec<u8>) -> StreamState {
        if self.state != StreamState::Open {
            return self.state;
        }
        match delta {
            Delta::Text(t) if !t.is_empty() => self.chunk(&t, None, out),
            Delta::Finish(reason) => self.chunk("", Some(reason), out),
            Delta::Usage(u) => self.usage = Some(u),
            Delta::Done => {
                if let (true, Some(u)) = (self.include_usage, self.usage) {
                    let chunk = json!({"id": self.id, "object": "text_completion",
                        "created": self.created, "model": self.model, "choices": [], "usage": u});
                    out.extend_from_slice(b"data: ");
                    serde_json::to_writer(&mut *out, &chunk).expect("plain data serializes");
                    out.extend_from_slice(b"\n\n");
                }
                out.extend_from_slice(b"data: [DONE]\n\n");
                self.state = StreamState::Done;
            }
            Delta::Error(e) => self.fail(&e, out),
            Delta::Text(_)
            | Delta::Reasoning(_)
            | Delta::ToolStart { .. }
            | Delta::ToolArgs { .. } => {}
        }
        self.state
    }

    fn fail(&mut self, e: &GatewayError, out: &mut Vec<u8>) {
        out.extend_from_slice(&e.sse_event());
        self.state = StreamState::Failed;
    }
}
