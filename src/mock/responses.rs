//! Mock of OpenAI's Responses API (`POST /v1/responses`), stateful as OpenAI is: a stored
//! response's conversation is what `previous_response_id` continues; streamed as the event
//! lifecycle (`response.created` … `response.completed`, numbered from 0).

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::{json, Value};

use super::conversation::{Conversation, Finish, LastTurn, Reply, Tool, ToolChoice};
use super::{keys, now_secs, ChatCall, Dialect, MockRequest, Outcome, Routed};

/// The most responses the mock remembers; past it, it forgets them all (a test never gets near).
const MAX_STORED: usize = 10_000;

/// Stored responses: id → the texts of the conversation up to and including the reply.
#[derive(Default)]
pub(crate) struct Stored(Mutex<HashMap<String, Vec<String>>>);

impl Stored {
    pub(crate) fn texts(&self, id: &str) -> Option<Vec<String>> {
        self.0.lock().expect("mock lock").get(id).cloned()
    }

    fn keep(&self, id: String, texts: Vec<String>) {
        let mut map = self.0.lock().expect("mock lock");
        if map.len() >= MAX_STORED {
            map.clear();
        }
        map.insert(id, texts);
    }
}

pub(crate) fn route(req: &MockRequest) -> Routed {
    if req.bearer() != Some(keys::OPENAI) {
        return Routed::Done(super::openai::error(
            401,
            "Incorrect API key provided.",
            None,
        ));
    }
    match parse(req) {
        Ok(conversation) => Routed::Chat(ChatCall {
            dialect: Dialect::Responses,
            conversation,
        }),
        Err(message) => Routed::Done(super::openai::error(400, &message, None)),
    }
}

fn text_of(content: &Value) -> Result<String, String> {
    match content {
        Value::String(s) => Ok(s.clone()),
        Value::Array(parts) => {
            let mut texts = Vec::new();
            for p in parts {
                match p.get("type").and_then(Value::as_str) {
                    Some("input_text" | "output_text") => texts.push(
                        p.get("text")
                            .and_then(Value::as_str)
                            .ok_or("text parts need `text`")?
                            .to_string(),
                    ),
                    Some("input_image" | "input_file") => {}
                    other => return Err(format!("Invalid content part type: {other:?}")),
                }
            }
            Ok(texts.join(" "))
        }
        _ => Err("content must be a string or a list of parts".into()),
    }
}

fn parse(req: &MockRequest) -> Result<Conversation, String> {
    let body = req.json().map_err(|e| format!("invalid JSON: {e}"))?;
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .ok_or("Missing required parameter: 'model'.")?;
    let mut conv = Conversation::new(model);
    if let Some(i) = body.get("instructions").and_then(Value::as_str) {
        conv.texts.push(i.to_string());
    }
    match body.get("input") {
        Some(Value::String(s)) => {
            conv.texts.push(s.clone());
            conv.last = LastTurn::User(s.clone());
        }
        Some(Value::Array(items)) => {
            for item in items {
                let kind = item
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("message");
                match kind {
                    "message" => {
                        let text = text_of(item.get("content").unwrap_or(&Value::Null))?;
                        conv.last = match item.get("role").and_then(Value::as_str) {
                            Some("user") => LastTurn::User(text.clone()),
                            Some("assistant" | "system" | "developer") => LastTurn::Other,
                            _ => return Err("Invalid value for 'role'.".into()),
                        };
                        conv.texts.push(text);
                    }
                    "function_call_output" => {
                        let out = item.get("output").and_then(Value::as_str).unwrap_or("");
                        conv.texts.push(out.to_string());
                        conv.last = LastTurn::ToolResult(out.to_string());
                    }
                    "function_call" => {
                        let args = item
                            .get("arguments")
                            .and_then(Value::as_str)
                            .unwrap_or("{}");
                        conv.texts.push(args.to_string());
                        conv.last = LastTurn::Other;
                    }
                    "reasoning" | "item_reference" => {}
                    other => return Err(format!("Invalid input item type: '{other}'.")),
                }
            }
        }
        _ => return Err("Missing required parameter: 'input'.".into()),
    }
    for t in body
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        // Hosted tools (web_search…) run at OpenAI; the mock never calls them.
        if t.get("type").and_then(Value::as_str) != Some("function") {
            continue;
        }
        conv.tools.push(Tool {
            name: t
                .get("name")
                .and_then(Value::as_str)
                .ok_or("Missing required parameter: 'tools[].name'.")?
                .to_string(),
            schema: t.get("parameters").cloned().unwrap_or(json!({})),
        });
    }
    conv.tool_choice = match body.get("tool_choice").and_then(Value::as_str) {
        Some("none") => ToolChoice::None,
        Some("required") => ToolChoice::Required,
        _ => ToolChoice::Auto,
    };
    conv.max_tokens = body.get("max_output_tokens").and_then(Value::as_u64);
    conv.stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    // What every Response object repeats of its request.
    let mut echo = serde_json::Map::new();
    for k in [
        "instructions",
        "metadata",
        "tools",
        "tool_choice",
        "temperature",
        "top_p",
        "text",
        "reasoning",
        "parallel_tool_calls",
        "user",
        "max_output_tokens",
        "truncation",
        "previous_response_id",
    ] {
        echo.insert(k.into(), body.get(k).cloned().unwrap_or(Value::Null));
    }
    echo.insert(
        "store".into(),
        json!(body.get("store").and_then(Value::as_bool).unwrap_or(true)),
    );
    conv.options = Value::Object(echo);
    Ok(conv)
}

/// The conversation a request continues, put before its own texts; an unknown id is OpenAI's
/// 404.
pub(crate) fn continued(stored: &Stored, conv: &mut Conversation) -> Result<(), Outcome> {
    let Some(id) = conv.options["previous_response_id"].as_str() else {
        return Ok(());
    };
    match stored.texts(id) {
        Some(mut earlier) => {
            earlier.append(&mut conv.texts);
            conv.texts = earlier;
            Ok(())
        }
        None => Err(super::openai::error(
            404,
            &format!("Previous response with id '{id}' not found."),
            None,
        )),
    }
}

fn event(out: &mut Vec<String>, kind: &str, mut data: Value) {
    data["type"] = json!(kind);
    data["sequence_number"] = json!(out.len());
    out.push(format!("event: {kind}\ndata: {data}\n\n"));
}

pub(crate) fn respond(conv: &Conversation, reply: &Reply, id: u64, stored: &Stored) -> Outcome {
    let resp_id = format!("resp_mock{id}");
    let item_id = format!("msg_mock{id}");
    let output = match &reply.tool_call {
        Some(call) => {
            json!([{"type": "function_call", "id": format!("fc_mock{id}"), "call_id": call.id,
                              "name": call.name, "arguments": call.arguments, "status": "completed"}])
        }
        None => {
            json!([{"type": "message", "id": item_id, "status": "completed", "role": "assistant",
                        "content": [{"type": "output_text", "text": reply.text(), "annotations": []}]}])
        }
    };
    let status = if reply.finish == Finish::Length {
        "incomplete"
    } else {
        "completed"
    };
    let response = |status: &str, output: Value, usage: Value| {
        let mut r = json!({"id": resp_id, "object": "response", "created_at": now_secs(), "status": status,
               "model": conv.model, "output": output, "usage": usage, "error": null,
               "incomplete_details": if status == "incomplete" { json!({"reason": "max_output_tokens"}) } else { Value::Null }});
        for (k, v) in conv.options.as_object().into_iter().flatten() {
            r[k] = v.clone();
        }
        r
    };
    let usage = json!({"input_tokens": reply.prompt_tokens, "input_tokens_details": {"cached_tokens": 0},
                       "output_tokens": reply.completion_tokens, "output_tokens_details": {"reasoning_tokens": 0},
                       "total_tokens": reply.prompt_tokens + reply.completion_tokens});
    if conv.options["store"] == json!(true) {
        let mut texts = conv.texts.clone();
        texts.push(match &reply.tool_call {
            Some(call) => call.arguments.clone(),
            None => reply.text(),
        });
        stored.keep(resp_id.clone(), texts);
    }
    let done = response(status, output.clone(), usage);
    if !conv.stream {
        return Outcome::json(200, done);
    }
    let mut events = Vec::new();
    let started = response("in_progress", json!([]), Value::Null);
    event(
        &mut events,
        "response.created",
        json!({"response": started}),
    );
    event(
        &mut events,
        "response.in_progress",
        json!({"response": started}),
    );
    let item = &output[0];
    match &reply.tool_call {
        Some(call) => {
            let mut open = item.clone();
            open["status"] = json!("in_progress");
            open["arguments"] = json!("");
            event(
                &mut events,
                "response.output_item.added",
                json!({"output_index": 0, "item": open}),
            );
            for piece in reply.argument_pieces() {
                event(
                    &mut events,
                    "response.function_call_arguments.delta",
                    json!({"item_id": item["id"], "output_index": 0, "delta": piece}),
                );
            }
            event(
                &mut events,
                "response.function_call_arguments.done",
                json!({"item_id": item["id"], "output_index": 0, "arguments": call.arguments}),
            );
        }
        None => {
            let open = json!({"type": "message", "id": item_id, "status": "in_progress", "role": "assistant", "content": []});
            event(
                &mut events,
                "response.output_item.added",
                json!({"output_index": 0, "item": open}),
            );
            let part = json!({"type": "output_text", "text": "", "annotations": []});
            event(
                &mut events,
                "response.content_part.added",
                json!({"item_id": item_id, "output_index": 0, "content_index": 0, "part": part}),
            );
            for piece in reply.pieces() {
                event(
                    &mut events,
                    "response.output_text.delta",
                    json!({"item_id": item_id, "output_index": 0, "content_index": 0, "delta": piece}),
                );
            }
            event(
                &mut events,
                "response.output_text.done",
                json!({"item_id": item_id, "output_index": 0, "content_index": 0, "text": reply.text()}),
            );
            event(
                &mut events,
                "response.content_part.done",
                json!({"item_id": item_id, "output_index": 0, "content_index": 0, "part": item["content"][0]}),
            );
        }
    }
    event(
        &mut events,
        "response.output_item.done",
        json!({"output_index": 0, "item": item}),
    );
    let last = if status == "completed" {
        "response.completed"
    } else {
        "response.incomplete"
    };
    event(&mut events, last, json!({"response": done}));
    let failed = response("failed", json!([]), Value::Null);
    Outcome::Stream {
        events,
        error_event: format!(
            "event: response.failed\ndata: {}\n\n",
            json!({"type": "response.failed", "response": failed})
        ),
    }
}
