//! A reply as the Responses API's stream: `response.created`, `response.in_progress`, then per
//! output item `output_item.added`, its deltas and `.done` events, `output_item.done`, and last
//! `response.completed` (or `response.incomplete`, or `response.failed` for an error: never a
//! silent end). Each event is `event: <type>` with a `data` object that repeats its type and
//! carries `sequence_number`, counting from 0. There is no `[DONE]`.

use std::sync::Arc;

use serde_json::{json, Value};

use super::{call_item, message_item, response, status_of, Turn};
use crate::api::random_id;
use crate::providers::model::{Delta, FinishReason};
use crate::providers::{StreamState, Usage};

/// A function call being streamed.
struct OpenCall {
    index: usize,
    item_id: String,
    output_index: usize,
    call_id: String,
    name: String,
    arguments: String,
}

pub struct ResponsesWriter {
    id: String,
    model: String,
    sequence: u64,
    started: bool,
    /// Output items done so far.
    output: Vec<Value>,
    /// The message being streamed: its item id and text so far.
    text: Option<(String, String)>,
    /// The reasoning being streamed (as a summary): its item id and text so far.
    reasoning: Option<(String, String)>,
    calls: Vec<OpenCall>,
    finish: Option<FinishReason>,
    usage: Option<Usage>,
    state: StreamState,
    turn: Option<Arc<Turn>>,
    /// The Response object `response.completed` (or `.incomplete`) carried.
    completed: Option<Value>,
}

impl ResponsesWriter {
    pub fn new(public_model: &str, turn: Option<Arc<Turn>>) -> Self {
        ResponsesWriter {
            id: random_id("resp_"),
            model: public_model.to_string(),
            turn,
            completed: None,
            reasoning: None,
            sequence: 0,
            started: false,
            output: Vec::new(),
            text: None,
            calls: Vec::new(),
            finish: None,
            usage: None,
            state: StreamState::Open,
        }
    }

    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// The finished Response object, once the stream ended with one.
    pub fn completed(&self) -> Option<&Value> {
        self.completed.as_ref()
    }

    fn event(&mut self, out: &mut Vec<u8>, kind: &str, mut data: Value) {
        data["type"] = json!(kind);
        data["sequence_number"] = json!(self.sequence);
        self.sequence += 1;
        crate::api::named_event(out, kind, &data);
    }

    fn snapshot(&self, status: &str) -> Value {
        response(
            &self.id,
            &self.model,
            self.turn.as_deref(),
            status,
            self.finish,
            self.output.clone(),
            self.usage,
        )
    }

    fn start(&mut self, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        let created = self.snapshot("in_progress");
        self.event(out, "response.created", json!({"response": created}));
        let progress = self.snapshot("in_progress");
        self.event(out, "response.in_progress", json!({"response": progress}));
    }

    /// The next output item's index (items done and those still open).
    fn next_index(&self) -> usize {
        self.output.len()
            + usize::from(self.text.is_some())
            + usize::from(self.reasoning.is_some())
            + self.calls.len()
    }

    /// Thoughts stream as a reasoning item's summary text.
    fn reasoning_delta(&mut self, t: String, out: &mut Vec<u8>) {
        if self.reasoning.is_none() {
            self.close_text(out);
            self.close_calls(out);
            let item_id = random_id("rs_");
            let at = self.next_index();
            let item = json!({"type": "reasoning", "id": item_id, "summary": []});
            self.event(
                out,
                "response.output_item.added",
                json!({"output_index": at, "item": item}),
            );
            let part = json!({"type": "summary_text", "text": ""});
            self.event(
                out,
                "response.reasoning_summary_part.added",
                json!({"item_id": item_id, "output_index": at, "summary_index": 0, "part": part}),
            );
            self.reasoning = Some((item_id, String::new()));
        }
        let at = self.output.len();
        let item_id = self
            .reasoning
            .as_ref()
            .map(|(id, _)| id.clone())
            .unwrap_or_default();
        self.event(
            out,
            "response.reasoning_summary_text.delta",
            json!({"item_id": item_id, "output_index": at, "summary_index": 0, "delta": t}),
        );
        if let Some((_, text)) = self.reasoning.as_mut() {
            text.push_str(&t);
        }
    }

    fn close_reasoning(&mut self, out: &mut Vec<u8>) {
        let Some((item_id, text)) = self.reasoning.take() else {
            return;
        };
        let (id, at) = (item_id.as_str(), self.output.len());
        self.event(
            out,
            "response.reasoning_summary_text.done",
            json!({"item_id": id, "output_index": at, "summary_index": 0, "text": text}),
        );
        let part = json!({"type": "summary_text", "text": text});
        self.event(
            out,
            "response.reasoning_summary_part.done",
            json!({"item_id": id, "output_index": at, "summary_index": 0, "part": part}),
        );
        let item = json!({"type": "reasoning", "id": id, "summary": [part]});
        self.event(
            out,
            "response.output_item.done",
            json!({"output_index": at, "item": item}),
        );
        self.output.push(item);
    }

    fn close_text(&mut self, out: &mut Vec<u8>) {
        let Some((item_id, text)) = self.text.take() else {
            return;
        };
        let output_index = self.output.len();
        let (id, at) = (item_id.as_str(), output_index);
        self.event(
            out,
            "response.output_text.done",
            json!({"item_id": id, "output_index": at, "content_index": 0, "text": text}),
        );
        let part = json!({"type": "output_text", "text": text, "annotations": []});
        self.event(
            out,
            "response.content_part.done",
            json!({"item_id": id, "output_index": at, "content_index": 0, "part": part}),
        );
        let item = message_item(id, &text, "completed");
        self.event(
            out,
            "response.output_item.done",
            json!({"output_index": at, "item": item}),
        );
        self.output.push(item);
    }

    fn close_calls(&mut self, out: &mut Vec<u8>) {
        for call in std::mem::take(&mut self.calls) {
            let (id, at) = (call.item_id.as_str(), call.output_index);
            self.event(
                out,
                "response.function_call_arguments.done",
                json!({"item_id": id, "output_index": at, "arguments": call.arguments}),
            );
            let item = call_item(id, &call.call_id, &call.name, &call.arguments, "completed");
            self.event(
                out,
                "response.output_item.done",
                json!({"output_index": at, "item": item}),
            );
            self.output.push(item);
        }
    }

    pub fn write(&mut self, d: Delta, out: &mut Vec<u8>) -> StreamState {
        if self.state != StreamState::Open {
            return self.state;
        }
        self.start(out);
        match d {
            Delta::Reasoning(t) if !t.is_empty() => self.reasoning_delta(t, out),
            Delta::Text(t) if !t.is_empty() => {
                if self.text.is_none() {
                    self.close_reasoning(out);
                    self.close_calls(out);
                    let item_id = random_id("msg_");
                    let at = self.next_index();
                    let item = json!({"type": "message", "id": item_id, "status": "in_progress", "role": "assistant", "content": []});
                    self.event(
                        out,
                        "response.output_item.added",
                        json!({"output_index": at, "item": item}),
                    );
                    let part = json!({"type": "output_text", "text": "", "annotations": []});
                    self.event(out, "response.content_part.added", json!({"item_id": item_id, "output_index": at, "content_index": 0, "part": part}));
                    self.text = Some((item_id, String::new()));
                }
                let at = self.output.len();
                let item_id = self
                    .text
                    .as_ref()
                    .map(|(id, _)| id.clone())
                    .unwrap_or_default();
                self.event(
                    out,
                    "response.output_text.delta",
                    json!({"item_id": item_id, "output_index": at, "content_index": 0, "delta": t}),
                );
                if let Some((_, text)) = self.text.as_mut() {
                    text.push_str(&t);
                }
            }
            Delta::ToolStart { index, id, name } => {
                self.close_reasoning(out);
                self.close_text(out);
                let item_id = random_id("fc_");
                let at = self.next_index();
                let item = call_item(&item_id, &id, &name, "", "in_progress");
                self.event(
                    out,
                    "response.output_item.added",
                    json!({"output_index": at, "item": item}),
                );
                self.calls.push(OpenCall {
                    index,
                    item_id,
                    output_index: at,
                    call_id: id,
                    name,
                    arguments: String::new(),
                });
            }
            Delta::ToolArgs { index, arguments } => {
                if let Some(pos) = self.calls.iter().position(|c| c.index == index) {
                    let (item_id, at) = (
                        self.calls[pos].item_id.clone(),
                        self.calls[pos].output_index,
                    );
                    self.calls[pos].arguments.push_str(&arguments);
                    self.event(
                        out,
                        "response.function_call_arguments.delta",
                        json!({"item_id": item_id, "output_index": at, "delta": arguments}),
                    );
                }
            }
            Delta::Finish(f) => self.finish = Some(f),
            Delta::Usage(u) => self.usage = Some(u),
            Delta::Done => {
                self.close_reasoning(out);
                self.close_text(out);
                self.close_calls(out);
                let status = self.finish.map_or("completed", status_of);
                let done = self.snapshot(status);
                let kind = if status == "completed" {
                    "response.completed"
                } else {
                    "response.incomplete"
                };
                self.event(out, kind, json!({"response": &done}));
                self.completed = Some(done);
                self.state = StreamState::Done;
            }
            Delta::Error(e) => {
                self.close_reasoning(out);
                self.close_text(out);
                self.close_calls(out);
                let mut failed = self.snapshot("failed");
                failed["error"] = json!({"code": e.kind.as_str(), "message": e.message});
                self.event(out, "response.failed", json!({"response": failed}));
                self.state = StreamState::Failed;
            }
            // An empty piece adds nothing.
            Delta::Text(_) | Delta::Reasoning(_) => {}
        }
        self.state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(out: &[u8]) -> Vec<Value> {
        String::from_utf8_lossy(out)
            .split("\n\n")
            .filter_map(|e| e.split("data: ").nth(1))
            .map(|d| serde_json::from_str(d).unwrap())
            .collect()
    }

    #[test]
    fn text_then_a_call_make_the_whole_lifecycle_in_order() {
        let mut w = ResponsesWriter::new("pub", None);
        let mut out = Vec::new();
        for d in [
            Delta::Text("Hel".into()),
            Delta::Text("lo".into()),
            Delta::ToolStart {
                index: 0,
                id: "c1".into(),
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
        let ev = events(&out);
        let kinds: Vec<&str> = ev.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        let seq: Vec<u64> = ev
            .iter()
            .map(|e| e["sequence_number"].as_u64().unwrap())
            .collect();
        assert_eq!(seq, (0..14).collect::<Vec<u64>>());
        let done = &ev[13]["response"];
        assert_eq!(done["output"][0]["content"][0]["text"], "Hello");
        assert_eq!(done["output"][1]["call_id"], "c1");
        assert_eq!(done["output"][1]["id"], ev[9]["item"]["id"]);
        assert_eq!(done["usage"]["output_tokens"], 4);
    }

    #[test]
    fn an_error_mid_stream_ends_it_with_response_failed() {
        let mut w = ResponsesWriter::new("pub", None);
        let mut out = Vec::new();
        w.write(Delta::Text("x".into()), &mut out);
        let e = crate::error::GatewayError::new(crate::error::ErrorKind::UpstreamError, "boom");
        assert_eq!(w.write(Delta::Error(e), &mut out), StreamState::Failed);
        let last = events(&out).pop().unwrap();
        assert_eq!(last["type"], "response.failed");
        assert_eq!(last["response"]["error"]["message"], "boom");
    }
}
