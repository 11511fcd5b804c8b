//! OpenAI's Responses API (`POST /v1/responses`), what Codex CLI and the Agents SDK speak:
//! `input` items typed into the internal model, whatever vendor answers, and the answer
//! written back as a Response object or its stream of events (`writer.rs`).
//!
//! Hosted tools (`web_search`, `file_search`, MCP and `namespace` tools) run only at OpenAI;
//! for the other vendors they are left out, and named in `x-modelmux-dropped-tools`.

use std::sync::Arc;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::api::random_id;
use crate::error::{GatewayError, GwResult};
use crate::providers::model::{
    parse_image_url, Completion, Effort, FinishReason, Message, Part, Request, ResponseFormat,
    Role, ToolCall, ToolChoice, ToolDef,
};
use crate::providers::openai::wire::invalid_json;

pub mod writer;

pub use writer::ResponsesWriter;

#[derive(Deserialize)]
struct ResponsesRequest {
    model: Option<String>,
    input: Option<Input>,
    instructions: Option<String>,
    #[serde(default)]
    tools: Vec<Value>,
    tool_choice: Option<Value>,
    parallel_tool_calls: Option<bool>,
    max_output_tokens: Option<u64>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    stream: Option<bool>,
    user: Option<String>,
    text: Option<Value>,
    previous_response_id: Option<String>,
    store: Option<bool>,
    metadata: Option<Value>,
    reasoning: Option<Value>,
    truncation: Option<Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Input {
    Text(String),
    Items(Vec<Value>),
}

/// A Responses request: the public model, the typed request, and what it left out.
pub struct Parsed {
    pub model: String,
    pub request: Request,
    /// The input as items (a string input is one user message), to store with the response.
    pub items: Vec<Value>,
    pub previous_response_id: Option<String>,
    /// Whether the response is to be stored (OpenAI's default: yes).
    pub store: bool,
    pub turn: Arc<Turn>,
}

/// What a request asked that every Response object of its reply repeats (`instructions`,
/// `tools`, `store`, `metadata`…), as OpenAI's do.
#[derive(Debug, Default)]
pub struct Turn {
    echo: Map<String, Value>,
    /// Hosted tools only vendors serving the Responses API can run, by type: left out for the
    /// others.
    pub dropped_tools: Vec<String>,
}

impl Parsed {
    /// Continues a stored conversation: its items go before this request's input (after the
    /// instructions, which are this request's own: OpenAI does not carry them over).
    pub fn continue_from(&mut self, history: &[Value]) -> GwResult<()> {
        let mut earlier = Vec::new();
        for (i, item) in history.iter().enumerate() {
            push_item(&mut earlier, item, i)?;
        }
        let at = usize::from(
            self.request
                .messages
                .first()
                .is_some_and(|m| m.role == Role::System),
        );
        self.request.messages.splice(at..at, earlier);
        Ok(())
    }
}

/// The input items as stored, in the shape `input_items` lists them: each with its type and
/// an id, a message's text as a content part.
pub fn items_as_stored(items: &mut [Value]) {
    for item in items {
        if let Value::Object(m) = item {
            if !m.contains_key("type") && m.contains_key("role") {
                m.insert("type".into(), json!("message"));
            }
            if let Some(Value::String(text)) = m.get("content") {
                let kind = match m.get("role").and_then(Value::as_str) {
                    Some("assistant") => "output_text",
                    _ => "input_text",
                };
                let part = json!([{"type": kind, "text": text}]);
                m.insert("content".into(), part);
            }
            if !m.contains_key("id") {
                let prefix = match m.get("type").and_then(Value::as_str) {
                    Some("function_call") => "fc_",
                    Some("function_call_output") => "fco_",
                    Some("reasoning") => "rs_",
                    _ => "msg_",
                };
                m.insert("id".into(), json!(random_id(prefix)));
            }
        }
    }
}

fn bad(param: &str, message: impl Into<String>) -> GatewayError {
    GatewayError::bad_param(param, message)
}

pub fn parse_request(body: &[u8]) -> GwResult<Parsed> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let wire: ResponsesRequest = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match (inner.is_data(), path.as_str()) {
            (true, ".") => GatewayError::invalid("The request body must be a JSON object.", None),
            (true, _) => bad(&path, format!("Invalid type for '{path}': {inner}")),
            _ => invalid_json(inner),
        }
    })?;
    let model = wire
        .model
        .filter(|m| !m.is_empty())
        .ok_or_else(|| bad("model", "Missing required parameter: 'model'."))?;
    let store = wire.store.unwrap_or(true);
    let mut echo = Map::new();
    let mut keep = |k: &str, v: Option<Value>| {
        if let Some(v) = v.filter(|v| !v.is_null()) {
            echo.insert(k.into(), v);
        }
    };
    keep("instructions", wire.instructions.clone().map(Value::String));
    keep("tools", Some(Value::Array(wire.tools.clone())));
    keep("tool_choice", wire.tool_choice.clone());
    keep(
        "parallel_tool_calls",
        wire.parallel_tool_calls.map(Value::Bool),
    );
    keep(
        "max_output_tokens",
        wire.max_output_tokens.map(|m| json!(m)),
    );
    keep("temperature", wire.temperature.map(|t| json!(t)));
    keep("top_p", wire.top_p.map(|t| json!(t)));
    keep("user", wire.user.clone().map(Value::String));
    keep("text", wire.text.clone());
    keep(
        "previous_response_id",
        wire.previous_response_id.clone().map(Value::String),
    );
    keep("store", Some(Value::Bool(store)));
    keep("metadata", wire.metadata);
    keep("reasoning", wire.reasoning.clone());
    keep("truncation", wire.truncation);
    let effort = wire
        .reasoning
        .as_ref()
        .and_then(|r| r.get("effort")?.as_str());
    let mut req = Request {
        reasoning: effort.and_then(Effort::parse),
        max_tokens: wire.max_output_tokens,
        temperature: wire.temperature,
        top_p: wire.top_p,
        stream: wire.stream.unwrap_or(false),
        include_usage: true,
        parallel_tool_calls: wire.parallel_tool_calls,
        user: wire.user,
        ..Request::default()
    };
    if let Some(i) = wire.instructions.filter(|i| !i.is_empty()) {
        req.messages
            .push(message(Role::System, vec![Part::Text(i)]));
    }
    let items = match wire.input {
        Some(Input::Text(t)) => vec![json!({"type": "message", "role": "user",
                                            "content": [{"type": "input_text", "text": t}]})],
        Some(Input::Items(items)) => items,
        None => return Err(bad("input", "Missing required parameter: 'input'.")),
    };
    for (i, item) in items.iter().enumerate() {
        push_item(&mut req.messages, item, i)?;
    }
    if !req.messages.iter().any(|m| m.role != Role::System) {
        return Err(bad("input", "'input' must hold at least one message."));
    }
    let mut dropped_tools = Vec::new();
    for (i, t) in wire.tools.iter().enumerate() {
        match t.get("type").and_then(Value::as_str) {
            Some("function") => req.tools.push(ToolDef {
                name: text_of(t, "name").ok_or_else(|| {
                    bad(&format!("tools[{i}].name"), "A function tool needs a name.")
                })?,
                description: text_of(t, "description"),
                parameters: t
                    .get("parameters")
                    .cloned()
                    .filter(|p| !p.is_null())
                    .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
            }),
            Some(other) => dropped_tools.push(other.to_string()),
            None => return Err(bad(&format!("tools[{i}].type"), "A tool needs a type.")),
        }
    }
    req.tool_choice = match wire.tool_choice {
        None => None,
        Some(Value::String(s)) => match s.as_str() {
            "auto" => Some(ToolChoice::Auto),
            "none" => Some(ToolChoice::None),
            "required" => Some(ToolChoice::Required),
            other => {
                return Err(bad(
                    "tool_choice",
                    format!("Invalid value for 'tool_choice': '{other}'."),
                ))
            }
        },
        Some(v) => match text_of(&v, "name") {
            Some(name) if v.get("type").and_then(Value::as_str) == Some("function") => {
                Some(ToolChoice::Function(name))
            }
            // A hosted tool chosen: the vendors that cannot run it choose for themselves.
            _ => Some(ToolChoice::Auto),
        },
    };
    req.response_format = wire
        .text
        .as_ref()
        .and_then(|t| t.get("format"))
        .and_then(|f| match f.get("type").and_then(Value::as_str) {
            Some("json_object") => Some(ResponseFormat::JsonObject),
            Some("json_schema") => Some(ResponseFormat::JsonSchema {
                name: text_of(f, "name").unwrap_or_else(|| "response".into()),
                schema: f.get("schema").cloned().unwrap_or_else(|| json!({})),
            }),
            _ => None,
        });
    Ok(Parsed {
        model,
        request: req,
        items,
        previous_response_id: wire.previous_response_id,
        store,
        turn: Arc::new(Turn {
            echo,
            dropped_tools,
        }),
    })
}

fn text_of(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

fn message(role: Role, parts: Vec<Part>) -> Message {
    Message {
        role,
        parts,
        tool_calls: Vec::new(),
        tool_call_id: None,
        name: None,
    }
}

/// One input item: a message, a function call (joined to the assistant message before it), a
/// function call's output; reasoning and item references are left out.
fn push_item(out: &mut Vec<Message>, item: &Value, index: usize) -> GwResult<()> {
    let at = |field: &str| format!("input[{index}].{field}");
    let kind = item
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or(if item.get("role").is_some() {
            "message"
        } else {
            ""
        });
    match kind {
        "message" => {
            let role = match item.get("role").and_then(Value::as_str) {
                Some("user") => Role::User,
                Some("assistant") => Role::Assistant,
                Some("system") => Role::System,
                Some("developer") => Role::Developer,
                _ => {
                    return Err(bad(
                        &at("role"),
                        "A message's role is user, assistant, system or developer.",
                    ))
                }
            };
            let parts = match item.get("content") {
                Some(Value::String(s)) => vec![Part::Text(s.clone())],
                Some(Value::Array(parts)) => parts.iter().filter_map(content_part).collect(),
                _ => return Err(bad(&at("content"), "A message needs content.")),
            };
            if !parts.is_empty() {
                out.push(message(role, parts));
            }
        }
        "function_call" => {
            let call = ToolCall {
                id: text_of(item, "call_id")
                    .ok_or_else(|| bad(&at("call_id"), "A function call needs a call_id."))?,
                name: text_of(item, "name")
                    .ok_or_else(|| bad(&at("name"), "A function call needs a name."))?,
                arguments: text_of(item, "arguments").unwrap_or_else(|| "{}".into()),
            };
            match out.last_mut() {
                Some(m) if m.role == Role::Assistant => m.tool_calls.push(call),
                _ => out.push(Message {
                    tool_calls: vec![call],
                    ..message(Role::Assistant, Vec::new())
                }),
            }
        }
        "function_call_output" => {
            let output = match item.get("output") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Array(parts)) => parts
                    .iter()
                    .filter_map(|p| p.get("text").and_then(Value::as_str))
                    .collect(),
                Some(other) => other.to_string(),
                None => String::new(),
            };
            out.push(Message {
                tool_call_id: Some(text_of(item, "call_id").ok_or_else(|| {
                    bad(&at("call_id"), "A function call output needs a call_id.")
                })?),
                ..message(Role::Tool, vec![Part::Text(output)])
            });
        }
        _ => {}
    }
    Ok(())
}

fn content_part(p: &Value) -> Option<Part> {
    match p.get("type").and_then(Value::as_str)? {
        "input_text" | "output_text" | "text" => Some(Part::Text(text_of(p, "text")?)),
        "input_image" => Some(Part::Image(parse_image_url(p.get("image_url")?.as_str()?))),
        _ => None,
    }
}

/// The `output` items of a reply: reasoning, the message, the function calls.
fn output_items(c: &Completion) -> Vec<Value> {
    let mut items = Vec::new();
    let Some(ch) = c.choices.first() else {
        return items;
    };
    if let Some(r) = ch.reasoning.as_ref().filter(|r| !r.is_empty()) {
        items.push(json!({"type": "reasoning", "id": random_id("rs_"),
                          "summary": [{"type": "summary_text", "text": r}]}));
    }
    if let Some(t) = ch.content.as_ref().filter(|t| !t.is_empty()) {
        items.push(message_item(&random_id("msg_"), t, "completed"));
    }
    for call in &ch.tool_calls {
        items.push(call_item(
            &random_id("fc_"),
            &call.id,
            &call.name,
            &call.arguments,
            "completed",
        ));
    }
    items
}

fn message_item(id: &str, text: &str, status: &str) -> Value {
    json!({"type": "message", "id": id, "status": status, "role": "assistant",
           "content": [{"type": "output_text", "text": text, "annotations": []}]})
}

fn call_item(id: &str, call_id: &str, name: &str, arguments: &str, status: &str) -> Value {
    json!({"type": "function_call", "id": id, "call_id": call_id, "name": name,
           "arguments": arguments, "status": status})
}

/// A Response object: `status` and `output` as given, usage in the Responses API's names.
fn response(
    id: &str,
    model: &str,
    turn: Option<&Turn>,
    status: &str,
    finish: Option<FinishReason>,
    output: Vec<Value>,
    usage: Option<crate::providers::Usage>,
) -> Value {
    let incomplete = match (status, finish) {
        ("incomplete", Some(FinishReason::ContentFilter)) => json!({"reason": "content_filter"}),
        ("incomplete", _) => json!({"reason": "max_output_tokens"}),
        _ => Value::Null,
    };
    let mut r = Map::new();
    r.insert("id".into(), json!(id));
    r.insert("object".into(), json!("response"));
    r.insert("created_at".into(), json!(crate::clock::unix_secs()));
    r.insert("status".into(), json!(status));
    r.insert("error".into(), Value::Null);
    r.insert("incomplete_details".into(), incomplete);
    r.insert("instructions".into(), Value::Null);
    r.insert("model".into(), json!(model));
    r.insert("output".into(), Value::Array(output));
    r.insert("parallel_tool_calls".into(), json!(true));
    r.insert("tool_choice".into(), json!("auto"));
    r.insert("tools".into(), json!([]));
    r.insert("store".into(), json!(false));
    r.insert("text".into(), json!({"format": {"type": "text"}}));
    r.insert("metadata".into(), json!({}));
    r.insert("previous_response_id".into(), Value::Null);
    r.insert("reasoning".into(), json!({"effort": null, "summary": null}));
    r.insert("truncation".into(), json!("disabled"));
    for (k, v) in turn.map(|t| &t.echo).into_iter().flatten() {
        r.insert(k.clone(), v.clone());
    }
    r.insert(
        "usage".into(),
        usage.map_or(Value::Null, |u| {
            json!({"input_tokens": u.prompt_tokens, "input_tokens_details": {"cached_tokens": u.cached_tokens},
                   "output_tokens": u.completion_tokens, "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
                   "total_tokens": u.total_tokens})
        }),
    );
    Value::Object(r)
}

/// Whether a finish reason makes the response `incomplete`.
fn status_of(finish: FinishReason) -> &'static str {
    match finish {
        FinishReason::Length | FinishReason::ContentFilter => "incomplete",
        FinishReason::Stop | FinishReason::ToolCalls => "completed",
    }
}

/// A whole reply as a Response object.
pub fn response_json(c: &Completion, public_model: &str, turn: Option<&Turn>) -> Bytes {
    let finish = c.choices.first().map(|ch| ch.finish);
    let status = finish.map_or("completed", status_of);
    let body = response(
        &random_id("resp_"),
        public_model,
        turn,
        status,
        finish,
        output_items(c),
        c.usage,
    );
    Bytes::from(serde_json::to_vec(&body).expect("json serializes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_codex_style_input_items() {
        let body = br#"{"model":"m","stream":true,"instructions":"be brief",
          "input":[{"type":"message","role":"developer","content":[{"type":"input_text","text":"rules"}]},
                   {"type":"message","role":"user","id":"x","content":[{"type":"input_text","text":"hi"}]},
                   {"type":"reasoning","summary":[]},
                   {"type":"function_call","call_id":"c1","name":"exec","arguments":"{\"cmd\":\"ls\"}"},
                   {"type":"function_call_output","call_id":"c1","output":"a.txt"}],
          "tools":[{"type":"function","name":"exec","parameters":{"type":"object"}},{"type":"web_search"},{"type":"namespace","name":"multi_agent_v1"}],
          "tool_choice":"auto","parallel_tool_calls":true,"store":false,"include":["reasoning.encrypted_content"],
          "prompt_cache_key":"k","client_metadata":{"a":"b"},"reasoning":{"summary":"auto"}}"#;
        let p = parse_request(body).unwrap();
        let roles: Vec<Role> = p.request.messages.iter().map(|m| m.role).collect();
        assert_eq!(
            roles,
            [
                Role::System,
                Role::Developer,
                Role::User,
                Role::Assistant,
                Role::Tool
            ]
        );
        assert_eq!(p.request.messages[3].tool_calls[0].id, "c1");
        assert_eq!(p.request.messages[4].tool_call_id.as_deref(), Some("c1"));
        assert_eq!(p.request.tools.len(), 1);
        assert_eq!(p.turn.dropped_tools, ["web_search", "namespace"]);
        assert!(p.request.stream);
    }

    #[test]
    fn a_reply_is_a_response_object() {
        let c = Completion {
            choices: vec![crate::providers::model::Choice {
                content: Some("hello".into()),
                reasoning: None,
                tool_calls: vec![ToolCall {
                    id: "c1".into(),
                    name: "f".into(),
                    arguments: "{}".into(),
                }],
                finish: FinishReason::ToolCalls,
            }],
            usage: Some(crate::providers::Usage::new(3, 2)),
        };
        let v: Value = serde_json::from_slice(&response_json(&c, "pub", None)).unwrap();
        assert_eq!(v["object"], "response");
        assert_eq!(v["status"], "completed");
        assert_eq!(v["output"][0]["content"][0]["text"], "hello");
        assert_eq!(v["output"][1]["call_id"], "c1");
        assert_eq!(v["usage"]["total_tokens"], 5);
        assert!(v["id"].as_str().unwrap().starts_with("resp_"));
    }
}
