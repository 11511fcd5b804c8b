//! Mock of Anthropic's Messages API (`POST /v1/messages`), streaming with named events, and its
//! token count (`POST /v1/messages/count_tokens`).

use serde_json::{json, Value};

use super::conversation::{Conversation, Finish, LastTurn, Reply, Tool, ToolChoice};
use super::{keys, ChatCall, Dialect, MockRequest, Outcome, Routed};

pub(crate) fn route(req: &MockRequest) -> Routed {
    let counting = req.path == "/v1/messages/count_tokens";
    if req.method != "POST" || (req.path != "/v1/messages" && !counting) {
        return Routed::Done(error(
            404,
            &format!("Not found: {} {}", req.method, req.path),
            None,
        ));
    }
    let key_ok =
        req.header("x-api-key") == Some(keys::ANTHROPIC) || req.bearer() == Some(keys::ANTHROPIC);
    if !key_ok {
        return Routed::Done(error(401, "invalid x-api-key", None));
    }
    if req.header("anthropic-version").is_none() {
        return Routed::Done(error(400, "anthropic-version: header is required", None));
    }
    match parse(req, !counting) {
        Ok(conversation) if counting => {
            let tokens: u64 = conversation
                .texts
                .iter()
                .map(|t| super::conversation::count_tokens(t))
                .sum();
            Routed::Done(Outcome::json(200, json!({"input_tokens": tokens.max(1)})))
        }
        Ok(conversation) => Routed::Chat(ChatCall {
            dialect: Dialect::Anthropic,
            conversation,
        }),
        Err(message) => Routed::Done(error(400, &message, None)),
    }
}

fn block_text(
    content: &Value,
    conv: &mut Conversation,
    tool_result: &mut Option<String>,
) -> Result<String, String> {
    match content {
        Value::String(s) => Ok(s.clone()),
        Value::Array(blocks) => {
            let mut texts = Vec::new();
            for b in blocks {
                match b.get("type").and_then(Value::as_str) {
                    Some("text") => texts.push(
                        b.get("text")
                            .and_then(Value::as_str)
                            .ok_or("text blocks need `text`")?
                            .to_string(),
                    ),
                    Some("image") => {
                        let source = b.get("source").ok_or("image blocks need a `source`")?;
                        if source.get("type").and_then(Value::as_str) == Some("base64")
                            && (source.get("media_type").is_none() || source.get("data").is_none())
                        {
                            return Err("image.source needs media_type and data".into());
                        }
                        conv.images += 1;
                    }
                    Some("tool_use") => {
                        if b.get("id").is_none()
                            || b.get("name").is_none()
                            || !b.get("input").is_some_and(Value::is_object)
                        {
                            return Err("tool_use blocks need id, name and an input object".into());
                        }
                        texts.push(b["input"].to_string());
                    }
                    Some("tool_result") => {
                        if b.get("tool_use_id").and_then(Value::as_str).is_none() {
                            return Err("tool_result blocks need `tool_use_id`".into());
                        }
                        let mut ignored = None;
                        let t = block_text(
                            b.get("content").unwrap_or(&Value::Null),
                            conv,
                            &mut ignored,
                        )?;
                        *tool_result = Some(t.clone());
                        texts.push(t);
                    }
                    // An earlier turn's thinking goes back with its signature, as Anthropic
                    // requires for a tool-use turn with thinking on.
                    Some("thinking") => {
                        if b.get("thinking").and_then(Value::as_str).is_none()
                            || b.get("signature").and_then(Value::as_str).is_none()
                        {
                            return Err("thinking blocks need `thinking` and `signature`".into());
                        }
                    }
                    Some("redacted_thinking") => {
                        if b.get("data").and_then(Value::as_str).is_none() {
                            return Err("redacted_thinking blocks need `data`".into());
                        }
                    }
                    Some(other) => return Err(format!("unknown content block type `{other}`")),
                    None => return Err("content blocks need a `type`".into()),
                }
            }
            Ok(texts.join(" "))
        }
        Value::Null => Ok(String::new()),
        _ => Err("content must be a string or a list of blocks".into()),
    }
}

/// A Messages body; `max_tokens` is required of a message, not of a token count.
fn parse(req: &MockRequest, needs_max_tokens: bool) -> Result<Conversation, String> {
    let body = req.json().map_err(|e| format!("invalid JSON: {e}"))?;
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .ok_or("model: Field required")?;
    let max_tokens = body.get("max_tokens").and_then(Value::as_u64);
    if needs_max_tokens && max_tokens.is_none() {
        return Err("max_tokens: Field required".into());
    }
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .ok_or("messages: Field required")?;
    let mut conv = Conversation::new(model);
    conv.max_tokens = max_tokens;
    match body.get("system") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => conv.texts.push(s.clone()),
        Some(Value::Array(blocks)) => {
            for b in blocks {
                conv.texts.push(
                    b.get("text")
                        .and_then(Value::as_str)
                        .ok_or("system blocks need `text`")?
                        .to_string(),
                );
            }
        }
        Some(_) => return Err("system: must be a string or a list of text blocks".into()),
    }
    // System turns inside `messages` are a beta Claude Code turns on.
    let system_turns = req
        .header("anthropic-beta")
        .is_some_and(|b| b.contains("mid-conversation-system"));
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        if role == "system" && system_turns {
            if let Some(t) = m.get("content").and_then(Value::as_str) {
                conv.texts.push(t.to_string());
            }
            continue;
        }
        if role != "user" && role != "assistant" {
            return Err(format!(
                "messages.{i}.role: Input should be 'user' or 'assistant'"
            ));
        }
        let mut tool_result = None;
        let text = block_text(
            m.get("content").unwrap_or(&Value::Null),
            &mut conv,
            &mut tool_result,
        )?;
        conv.last = match (role, tool_result) {
            ("user", Some(r)) => LastTurn::ToolResult(r),
            ("user", None) => LastTurn::User(text.clone()),
            _ => LastTurn::Other,
        };
        if !text.is_empty() {
            conv.texts.push(text);
        }
    }
    if let Some(tools) = body.get("tools").and_then(Value::as_array) {
        for t in tools {
            let name = t
                .get("name")
                .and_then(Value::as_str)
                .ok_or("tools.name: Field required")?;
            // Server tools (`web_search_20250305`…) run at Anthropic: no schema, never called here.
            if t.get("type")
                .and_then(Value::as_str)
                .is_some_and(|k| k != "custom")
            {
                continue;
            }
            let schema = t
                .get("input_schema")
                .cloned()
                .ok_or("tools.input_schema: Field required")?;
            conv.tools.push(Tool {
                name: name.to_string(),
                schema,
            });
        }
    }
    conv.tool_choice = match body.pointer("/tool_choice/type").and_then(Value::as_str) {
        Some("none") => ToolChoice::None,
        Some("any") => ToolChoice::Required,
        Some("tool") => ToolChoice::Named(
            body.pointer("/tool_choice/name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        ),
        _ => ToolChoice::Auto,
    };
    conv.stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    match body.pointer("/thinking/type").and_then(Value::as_str) {
        Some("enabled") => {
            let budget = body
                .pointer("/thinking/budget_tokens")
                .and_then(Value::as_u64);
            let budget = budget.ok_or("thinking.budget_tokens: Field required")?;
            if budget < 1024 || conv.max_tokens.is_some_and(|m| m <= budget) {
                return Err(
                    "thinking.budget_tokens: must be at least 1024 and less than max_tokens".into(),
                );
            }
            if body
                .get("temperature")
                .is_some_and(|t| t.as_f64() != Some(1.0))
            {
                return Err("temperature may only be set to 1 when thinking is enabled".into());
            }
            conv.thinking = Some(format!("enabled budget_tokens={budget}"));
            conv.thinks = true;
        }
        Some(other) => conv.thinking = Some(other.to_string()),
        None => {}
    }
    Ok(conv)
}

/// The signature the mock puts on its thinking blocks.
const MOCK_SIGNATURE: &str = "bW9jay1zaWduYXR1cmU=";

fn stop_reason(f: Finish) -> &'static str {
    match f {
        Finish::Stop => "end_turn",
        Finish::Length => "max_tokens",
        Finish::ToolCalls => "tool_use",
    }
}

fn event(name: &str, data: Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

pub(crate) fn respond(conv: &Conversation, reply: &Reply, id: u64) -> Outcome {
    let msg_id = format!("msg_mock{id}");
    let tool_id = format!("toolu_mock{id}");
    if !conv.stream {
        let mut content = match &reply.tool_call {
            Some(call) => json!([{"type": "tool_use", "id": tool_id, "name": call.name,
                "input": serde_json::from_str::<Value>(&call.arguments).unwrap_or(json!({}))}]),
            None => json!([{"type": "text", "text": reply.text()}]),
        };
        if let (Some(r), Value::Array(blocks)) = (&reply.reasoning, &mut content) {
            blocks.insert(
                0,
                json!({"type": "thinking", "thinking": r, "signature": MOCK_SIGNATURE}),
            );
        }
        return Outcome::json(
            200,
            json!({"id": msg_id, "type": "message", "role": "assistant", "model": conv.model,
                   "content": content, "stop_reason": stop_reason(reply.finish), "stop_sequence": null,
                   "usage": {"input_tokens": reply.prompt_tokens, "output_tokens": reply.completion_tokens,
                             "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}),
        );
    }
    let mut events = vec![event(
        "message_start",
        json!({"type": "message_start", "message": {"id": msg_id, "type": "message", "role": "assistant",
            "content": [], "model": conv.model, "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": reply.prompt_tokens, "output_tokens": 1}}}),
    )];
    let text_index = usize::from(reply.reasoning.is_some() && reply.tool_call.is_none());
    match &reply.tool_call {
        Some(call) => {
            events.push(event("content_block_start", json!({"type": "content_block_start", "index": 0,
                "content_block": {"type": "tool_use", "id": tool_id, "name": call.name, "input": {}}})));
            events.push(event(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0,
                "delta": {"type": "input_json_delta", "partial_json": ""}}),
            ));
            for piece in reply.argument_pieces() {
                events.push(event(
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": 0,
                    "delta": {"type": "input_json_delta", "partial_json": piece}}),
                ));
            }
        }
        None => {
            if let Some(r) = &reply.reasoning {
                // Thoughts first, in a block of their own, signed.
                events.push(event(
                    "content_block_start",
                    json!({"type": "content_block_start", "index": 0,
                    "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
                ));
                events.push(event(
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": 0,
                    "delta": {"type": "thinking_delta", "thinking": r}}),
                ));
                events.push(event(
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": 0,
                    "delta": {"type": "signature_delta", "signature": MOCK_SIGNATURE}}),
                ));
                events.push(event(
                    "content_block_stop",
                    json!({"type": "content_block_stop", "index": 0}),
                ));
            }
            events.push(event(
                "content_block_start",
                json!({"type": "content_block_start", "index": text_index,
                "content_block": {"type": "text", "text": ""}}),
            ));
            events.push(event("ping", json!({"type": "ping"})));
            for piece in reply.pieces() {
                events.push(event(
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": text_index,
                    "delta": {"type": "text_delta", "text": piece}}),
                ));
            }
        }
    }
    events.push(event(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": text_index}),
    ));
    events.push(event(
        "message_delta",
        json!({"type": "message_delta",
        "delta": {"stop_reason": stop_reason(reply.finish), "stop_sequence": null},
        "usage": {"output_tokens": reply.completion_tokens}}),
    ));
    events.push(event("message_stop", json!({"type": "message_stop"})));
    Outcome::Stream {
        events,
        error_event: event(
            "error",
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
        ),
    }
}

pub(crate) fn error(status: u16, message: &str, retry_after: Option<u64>) -> Outcome {
    let ty = match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        _ => "api_error",
    };
    let mut headers = vec![("request-id".to_string(), "req_mock".to_string())];
    if let Some(s) = retry_after {
        headers.push(("retry-after".into(), s.to_string()));
    }
    if status == 429 {
        headers.push(("anthropic-ratelimit-requests-remaining".into(), "0".into()));
    }
    Outcome::Json {
        status,
        headers,
        body: json!({"type": "error", "error": {"type": ty, "message": message}, "request_id": "req_mock"}),
    }
}
