//! Mock of Alibaba DashScope: the native text-generation API with its `id:/event:/:HTTP_STATUS`
//! SSE framing, and the OpenAI-compatible mode under `/compatible-mode/v1`.

use serde_json::{json, Value};

use super::conversation::{Conversation, Finish, LastTurn, Reply};
use super::{keys, openai, ChatCall, Dialect, MockRequest, Outcome, Routed};

pub(crate) const GENERATION_PATH: &str = "/api/v1/services/aigc/text-generation/generation";
/// Vision models (qwen-vl) answer here, with content as a list of `{"text"}`/`{"image"}` items.
pub(crate) const MULTIMODAL_PATH: &str = "/api/v1/services/aigc/multimodal-generation/generation";

pub(crate) fn route(req: &MockRequest) -> Routed {
    match (req.method.as_str(), req.path.as_str()) {
        ("POST", "/compatible-mode/v1/chat/completions") => openai::chat(req, keys::DASHSCOPE),
        ("POST", GENERATION_PATH | MULTIMODAL_PATH) => {
            if req.bearer() != Some(keys::DASHSCOPE) {
                return Routed::Done(error(401, "Invalid API-key provided.", None));
            }
            match parse(req) {
                Ok(conversation) => Routed::Chat(ChatCall {
                    dialect: Dialect::DashScope,
                    conversation,
                }),
                Err(message) => Routed::Done(error(400, &message, None)),
            }
        }
        _ => Routed::Done(error(
            404,
            &format!("Not found: {} {}", req.method, req.path),
            None,
        )),
    }
}

/// DashScope content: a string, or a list of `{"text"}` / `{"image"}` items (VL models), or
/// OpenAI-style parts.
fn content_text(content: &Value, images: &mut usize) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .filter_map(|i| {
                if i.get("image").is_some() || i.get("image_url").is_some() {
                    *images += 1;
                }
                i.get("text").and_then(Value::as_str).map(String::from)
            })
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

fn parse(req: &MockRequest) -> Result<Conversation, String> {
    let body = req
        .json()
        .map_err(|e| format!("Request body is not valid JSON: {e}"))?;
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .ok_or("Model not specified.")?;
    let messages = body
        .pointer("/input/messages")
        .and_then(Value::as_array)
        .ok_or("Input messages must be provided under `input.messages`.")?;
    let params = body.get("parameters").cloned().unwrap_or(json!({}));
    let mut conv = Conversation::new(model);
    for m in messages {
        let role = m
            .get("role")
            .and_then(Value::as_str)
            .ok_or("Role must be provided.")?;
        let text = content_text(m.get("content").unwrap_or(&Value::Null), &mut conv.images);
        conv.last = match role {
            "user" => LastTurn::User(text.clone()),
            "tool" => LastTurn::ToolResult(text.clone()),
            "system" | "assistant" => LastTurn::Other,
            other => {
                return Err(format!(
                    "Role must be in [user, assistant, system, tool], got {other}"
                ))
            }
        };
        if !text.is_empty() {
            conv.texts.push(text);
        }
    }
    conv.tools = openai::tools(params.get("tools"))?;
    conv.tool_choice = openai::tool_choice(params.get("tool_choice"));
    let wants_json = params
        .pointer("/response_format/type")
        .and_then(Value::as_str)
        == Some("json_object");
    if wants_json && !conv.texts.iter().any(|t| t.to_lowercase().contains("json")) {
        return Err("'messages' must contain the word 'json' in some form, to use 'response_format' of type 'json_object'.".into());
    }
    conv.max_tokens = params.get("max_tokens").and_then(Value::as_u64);
    conv.stream = req.header("x-dashscope-sse") == Some("enable");
    conv.include_usage = true;
    conv.options = params;
    Ok(conv)
}

fn finish_str(f: Finish) -> &'static str {
    match f {
        Finish::Stop => "stop",
        Finish::Length => "length",
        Finish::ToolCalls => "tool_calls",
    }
}

fn usage(input: u64, output: u64) -> Value {
    json!({"input_tokens": input, "output_tokens": output, "total_tokens": input + output})
}

/// Whether the request asked for `result_format: message` (the gateway always should).
fn message_format(req_params: &Value) -> bool {
    req_params.get("result_format").and_then(Value::as_str) == Some("message")
}

/// The reply in the requested result format and, for streams, output mode.
pub(crate) fn respond(conv: &Conversation, reply: &Reply, id: u64) -> Outcome {
    let params = &conv.options;
    let request_id = format!("mock-{id:08}");
    let tool_calls = |args: &str, first: bool| {
        let call = reply
            .tool_call
            .as_ref()
            .expect("only called for tool replies");
        if first {
            json!([{"index": 0, "id": call.id, "type": "function", "function": {"name": call.name, "arguments": args}}])
        } else {
            json!([{"index": 0, "function": {"arguments": args}}])
        }
    };
    let as_message = message_format(params) || reply.tool_call.is_some();
    if !conv.stream {
        let output = if as_message {
            let mut message = json!({"role": "assistant", "content": reply.text()});
            if let Some(call) = &reply.tool_call {
                message["content"] = json!("");
                message["tool_calls"] = tool_calls(&call.arguments, true);
            }
            json!({"choices": [{"finish_reason": finish_str(reply.finish), "message": message}]})
        } else {
            json!({"text": reply.text(), "finish_reason": finish_str(reply.finish)})
        };
        return Outcome::json(
            200,
            json!({"output": output, "usage": usage(reply.prompt_tokens, reply.completion_tokens), "request_id": request_id}),
        );
    }
    let incremental = params
        .get("incremental_output")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let mut events = Vec::new();
    let mut so_far = String::new();
    let mut push = |n: usize, message: Value, finish: &str, output_tokens: u64| {
        let data = json!({"output": {"choices": [{"message": message, "finish_reason": finish}]},
            "usage": usage(reply.prompt_tokens, output_tokens), "request_id": request_id});
        events.push(format!(
            "id:{}\nevent:result\n:HTTP_STATUS/200\ndata:{data}\n\n",
            n + 1
        ));
    };
    if reply.tool_call.is_some() {
        let pieces = reply.argument_pieces();
        for (i, piece) in pieces.iter().enumerate() {
            so_far.push_str(piece);
            let args = if incremental {
                piece.as_str()
            } else {
                so_far.as_str()
            };
            push(
                i,
                json!({"role": "assistant", "content": "", "tool_calls": tool_calls(args, i == 0 || !incremental)}),
                "null",
                i as u64 + 1,
            );
        }
        push(
            pieces.len(),
            json!({"role": "assistant", "content": ""}),
            "tool_calls",
            reply.completion_tokens,
        );
    } else {
        let pieces = reply.pieces();
        for (i, piece) in pieces.iter().enumerate() {
            so_far.push_str(piece);
            let content = if incremental {
                piece.as_str()
            } else {
                so_far.as_str()
            };
            push(
                i,
                json!({"role": "assistant", "content": content}),
                "null",
                i as u64 + 1,
            );
        }
        let last_content = if incremental { "" } else { so_far.as_str() };
        push(
            pieces.len(),
            json!({"role": "assistant", "content": last_content}),
            finish_str(reply.finish),
            reply.completion_tokens,
        );
    }
    Outcome::Stream {
        events,
        error_event: format!(
            "id:99\nevent:error\n:HTTP_STATUS/500\ndata:{}\n\n",
            json!({"code": "InternalError", "message": "An internal error has occured, please try again later.", "request_id": request_id})
        ),
    }
}

pub(crate) fn error(status: u16, message: &str, retry_after: Option<u64>) -> Outcome {
    let code = match status {
        400 => "InvalidParameter",
        401 => "InvalidApiKey",
        403 => "AccessDenied",
        404 => "ModelNotFound",
        408 => "RequestTimeOut",
        429 => "Throttling.RateQuota",
        503 => "ServiceUnavailable",
        _ => "InternalError",
    };
    let mut headers = Vec::new();
    if let Some(s) = retry_after {
        headers.push(("retry-after".to_string(), s.to_string()));
    }
    Outcome::Json {
        status,
        headers,
        body: json!({"code": code, "message": message, "request_id": "mock-error"}),
    }
}
