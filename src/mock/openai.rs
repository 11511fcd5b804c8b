//! Mock of OpenAI's Chat Completions wire format (also DashScope compatible mode and Qianfan v2).

use serde_json::{json, Value};

use super::conversation::{
    openai_content_text, Conversation, Finish, LastTurn, Reply, Tool, ToolChoice,
};
use super::{keys, media, now_secs, sse_data, ChatCall, Dialect, MockRequest, Outcome, Routed};

pub(crate) fn route(req: &MockRequest) -> Routed {
    match (req.method.as_str(), req.path.as_str()) {
        ("POST", "/api/paas/v4/chat/completions") => signed_chat(req),
        ("POST", "/v1/completions") => legacy(req),
        ("POST", "/v1/responses") => super::responses::route(req),
        ("POST", "/v1/embeddings") => embeddings(req),
        ("POST", "/v1/images/generations") => images(req),
        ("GET", p) if p.starts_with("/v1/files/image-") => Routed::Done(Outcome::Raw {
            status: 200,
            content_type: "image/png",
            body: media::png(),
        }),
        ("POST", p) if p.ends_with("/chat/completions") => chat(req, keys::OPENAI),
        ("GET", "/v1/models") => Routed::Done(Outcome::json(
            200,
            json!({"object":"list","data":[
                {"id":"gpt-4o","object":"model","created":1686935002,"owned_by":"openai"},
                {"id":"gpt-4o-mini","object":"model","created":1686935002,"owned_by":"openai"}]}),
        )),
        _ => Routed::Done(error(
            404,
            &format!("Invalid URL ({} {})", req.method, req.path),
            None,
        )),
    }
}

/// An OpenAI-format chat call authenticated with `Authorization: Bearer <expected_key>`.
pub(crate) fn chat(req: &MockRequest, expected_key: &str) -> Routed {
    if req.bearer() != Some(expected_key) {
        return Routed::Done(error(401, "Incorrect API key provided.", None));
    }
    match parse(req) {
        Ok(conversation) => Routed::Chat(ChatCall {
            dialect: Dialect::OpenAi,
            conversation,
        }),
        Err(message) => Routed::Done(error(400, &message, None)),
    }
}

/// The body of a request with OpenAI's mock key, or the error OpenAI answers.
fn authorized_json(req: &MockRequest) -> Result<Value, Box<Routed>> {
    let refuse = |status, message| Box::new(Routed::Done(error(status, message, None)));
    if req.bearer() != Some(keys::OPENAI) {
        return Err(refuse(401, "Incorrect API key provided."));
    }
    req.json()
        .map_err(|_| refuse(400, "We could not parse the JSON body of your request."))
}

/// Embeddings: one vector per input, the same for the same text (`dimensions` values, 8 by
/// default), as floats or base64 little-endian f32 as OpenAI sends them.
fn embeddings(req: &MockRequest) -> Routed {
    use base64::Engine;
    let body = match authorized_json(req) {
        Ok(b) => b,
        Err(refused) => return *refused,
    };
    let Some(inputs) = media::texts(body.get("input")) else {
        return Routed::Done(error(
            400,
            "'input' must be a non-empty string or array of strings",
            None,
        ));
    };
    let dims = media::dimensions(body.get("dimensions").and_then(Value::as_u64), 8);
    let base64 = body.get("encoding_format").and_then(Value::as_str) == Some("base64");
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, text)| {
            let vector = media::vector(text, dims);
            let embedding = if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|f| f.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(vector)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    let tokens: u64 = inputs.iter().map(|t| media::tokens(t)).sum();
    let model = body.get("model").and_then(Value::as_str).unwrap_or("");
    Routed::api(
        Dialect::OpenAi,
        inputs.first().cloned(),
        Outcome::json(
            200,
            json!({"object": "list", "data": data, "model": model,
                   "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}),
        ),
    )
}

/// Image generation: URLs to images this mock serves, or the bytes as base64. dall-e-3 makes
/// one image a request, as OpenAI's does.
fn images(req: &MockRequest) -> Routed {
    let body = match authorized_json(req) {
        Ok(b) => b,
        Err(refused) => return *refused,
    };
    let Some(prompt) = body.get("prompt").and_then(Value::as_str) else {
        return Routed::Done(error(400, "Missing required parameter: 'prompt'.", None));
    };
    let n = body.get("n").and_then(Value::as_u64).unwrap_or(1);
    if !(1..=media::MAX_IMAGES).contains(&n) {
        return Routed::Done(error(400, "'n' must be between 1 and 10.", None));
    }
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("dall-e-2");
    if model == "dall-e-3" && n != 1 {
        return Routed::Done(error(400, "You must provide n=1 for this model.", None));
    }
    let b64 = body.get("response_format").and_then(Value::as_str) == Some("b64_json");
    let host = req.header("host").unwrap_or("127.0.0.1");
    let data: Vec<Value> = (0..n)
        .map(|i| {
            let mut d = if b64 {
                json!({"b64_json": media::PNG_BASE64})
            } else {
                json!({"url": format!("http://{host}/v1/files/image-{i}.png")})
            };
            if model == "dall-e-3" {
                d["revised_prompt"] = json!(format!("A detailed picture of {prompt}"));
            }
            d
        })
        .collect();
    Routed::api(
        Dialect::OpenAi,
        Some(prompt.to_string()),
        Outcome::json(200, json!({"created": now_secs(), "data": data})),
    )
}

/// The legacy completions API: one prompt (a string, or a list of one).
fn legacy(req: &MockRequest) -> Routed {
    if req.bearer() != Some(keys::OPENAI) {
        return Routed::Done(error(401, "Incorrect API key provided.", None));
    }
    let parsed = req.json().map_err(|e| e.to_string()).and_then(|body| {
        let model = body
            .get("model")
            .and_then(Value::as_str)
            .ok_or("you must provide a model parameter")?;
        let prompt = match body.get("prompt") {
            Some(Value::String(p)) => p.clone(),
            Some(Value::Array(a)) if a.len() == 1 && a[0].is_string() => {
                a[0].as_str().unwrap_or_default().to_string()
            }
            _ => return Err("'prompt' must be a string".to_string()),
        };
        let mut conv = Conversation::new(model);
        conv.texts.push(prompt.clone());
        conv.last = LastTurn::User(prompt);
        conv.stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
        conv.include_usage = body
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        conv.max_tokens = body.get("max_tokens").and_then(Value::as_u64);
        Ok(conv)
    });
    match parsed {
        Ok(conversation) => Routed::Chat(ChatCall {
            dialect: Dialect::OpenAiLegacy,
            conversation,
        }),
        Err(message) => Routed::Done(error(400, &message, None)),
    }
}

/// Zhipu GLM's way: a bearer JWT signed (HS256) with the secret of `api_key`, not expired.
fn signed_chat(req: &MockRequest) -> Routed {
    match req.bearer().map(verify_jwt) {
        Some(Ok(())) => match parse(req) {
            Ok(conversation) => Routed::Chat(ChatCall {
                dialect: Dialect::OpenAi,
                conversation,
            }),
            Err(message) => Routed::Done(error(400, &message, None)),
        },
        Some(Err(why)) => Routed::Done(error(401, why, None)),
        None => Routed::Done(error(401, "Missing token.", None)),
    }
}

fn verify_jwt(token: &str) -> Result<(), &'static str> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use hmac::Mac;
    let parts: Vec<&str> = token.split('.').collect();
    let [header, payload, signature] = parts[..] else {
        return Err("The token is not a JWT.");
    };
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(keys::JWT_SECRET.as_bytes())
        .expect("any key length");
    mac.update(format!("{header}.{payload}").as_bytes());
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| "Bad signature.")?;
    mac.verify_slice(&signature)
        .map_err(|_| "The token's signature is wrong.")?;
    let claims: Value = URL_SAFE_NO_PAD
        .decode(payload)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or("The token's claims are unreadable.")?;
    if claims.get("api_key").and_then(Value::as_str) != Some(keys::JWT_KEY_ID) {
        return Err("Unknown api_key.");
    }
    let exp = claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
    if exp <= now_secs() * 1000 {
        return Err("The token expired.");
    }
    Ok(())
}

fn parse(req: &MockRequest) -> Result<Conversation, String> {
    let body = req
        .json()
        .map_err(|e| format!("We could not parse the JSON body of your request: {e}"))?;
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .ok_or("you must provide a model parameter")?;
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .ok_or("Missing required parameter: 'messages'.")?;
    if messages.is_empty() {
        return Err("'messages' must contain at least one message.".into());
    }
    let mut conv = Conversation::new(model);
    for m in messages {
        let role = m
            .get("role")
            .and_then(Value::as_str)
            .ok_or("every message needs a role")?;
        let text = openai_content_text(m.get("content").unwrap_or(&Value::Null), &mut conv.images);
        if let Some(calls) = m.get("tool_calls").and_then(Value::as_array) {
            for c in calls {
                let args = c
                    .pointer("/function/arguments")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                serde_json::from_str::<Value>(args).map_err(|_| {
                    "tool_calls[].function.arguments must be a JSON string".to_string()
                })?;
                conv.texts.push(args.to_string());
            }
        }
        conv.last = match role {
            "user" => LastTurn::User(text.clone()),
            "tool" => {
                if m.get("tool_call_id").and_then(Value::as_str).is_none() {
                    return Err("messages with role 'tool' must have a 'tool_call_id'.".into());
                }
                LastTurn::ToolResult(text.clone())
            }
            "system" | "developer" | "assistant" => LastTurn::Other,
            other => return Err(format!("Invalid value: '{other}'. Supported values are: 'system', 'assistant', 'user', 'tool' and 'developer'.")),
        };
        if !text.is_empty() {
            conv.texts.push(text);
        }
    }
    conv.tools = tools(body.get("tools"))?;
    conv.tool_choice = tool_choice(body.get("tool_choice"));
    conv.thinking = body
        .get("reasoning_effort")
        .and_then(Value::as_str)
        .map(|e| format!("reasoning_effort={e}"));
    conv.stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    conv.include_usage = body
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    conv.max_tokens = body
        .get("max_completion_tokens")
        .or_else(|| body.get("max_tokens"))
        .and_then(Value::as_u64);
    Ok(conv)
}

/// OpenAI-shaped `tools` (DashScope takes the same under `parameters`).
pub(crate) fn tools(tools: Option<&Value>) -> Result<Vec<Tool>, String> {
    let mut out = Vec::new();
    for t in tools.and_then(Value::as_array).into_iter().flatten() {
        let name = t
            .pointer("/function/name")
            .and_then(Value::as_str)
            .ok_or("tools[].function.name is required")?;
        out.push(Tool {
            name: name.to_string(),
            schema: t
                .pointer("/function/parameters")
                .cloned()
                .unwrap_or(json!({})),
        });
    }
    Ok(out)
}

/// OpenAI-shaped `tool_choice`.
pub(crate) fn tool_choice(choice: Option<&Value>) -> ToolChoice {
    match choice {
        Some(Value::String(s)) if s == "none" => ToolChoice::None,
        Some(Value::String(s)) if s == "required" => ToolChoice::Required,
        Some(v) if v.is_object() => match v.pointer("/function/name").and_then(Value::as_str) {
            Some(n) => ToolChoice::Named(n.to_string()),
            None => ToolChoice::Auto,
        },
        _ => ToolChoice::Auto,
    }
}

fn finish_reason(f: Finish) -> &'static str {
    match f {
        Finish::Stop => "stop",
        Finish::Length => "length",
        Finish::ToolCalls => "tool_calls",
    }
}

fn usage(reply: &Reply) -> Value {
    json!({
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.completion_tokens,
        "total_tokens": reply.prompt_tokens + reply.completion_tokens,
    })
}

pub(crate) fn respond_legacy(conv: &Conversation, reply: &Reply, id: u64) -> Outcome {
    let id = format!("cmpl-mock{id}");
    let created = now_secs();
    let finish = finish_reason(reply.finish);
    if !conv.stream {
        return Outcome::json(
            200,
            json!({"id": id, "object": "text_completion", "created": created, "model": conv.model,
                   "choices": [{"text": reply.text(), "index": 0, "logprobs": null, "finish_reason": finish}],
                   "usage": usage(reply)}),
        );
    }
    let chunk = |text: &str, finish: Option<&str>| {
        sse_data(
            &json!({"id": id, "object": "text_completion", "created": created, "model": conv.model,
            "choices": [{"text": text, "index": 0, "logprobs": null, "finish_reason": finish}]}),
        )
    };
    let mut events: Vec<String> = reply.pieces().iter().map(|p| chunk(p, None)).collect();
    events.push(chunk("", Some(finish)));
    if conv.include_usage {
        events.push(sse_data(
            &json!({"id": id, "object": "text_completion", "created": created,
            "model": conv.model, "choices": [], "usage": usage(reply)}),
        ));
    }
    events.push("data: [DONE]\n\n".to_string());
    Outcome::Stream {
        events,
        error_event: sse_data(
            &json!({"error": {"message": "The server had an error while processing your request.", "type": "server_error", "param": null, "code": null}}),
        ),
    }
}

pub(crate) fn respond(conv: &Conversation, reply: &Reply, id: u64) -> Outcome {
    let id = format!("chatcmpl-mock{id}");
    let created = now_secs();
    if !conv.stream {
        let mut message = json!({"role": "assistant", "content": reply.text(), "refusal": null});
        if let Some(call) = &reply.tool_call {
            message["content"] = Value::Null;
            message["tool_calls"] = json!([{"id": call.id, "type": "function",
                "function": {"name": call.name, "arguments": call.arguments}}]);
        }
        return Outcome::json(
            200,
            json!({"id": id, "object": "chat.completion", "created": created, "model": conv.model,
                   "choices": [{"index": 0, "message": message, "logprobs": null,
                                "finish_reason": finish_reason(reply.finish)}],
                   "usage": usage(reply), "system_fingerprint": "fp_mock"}),
        );
    }
    let null_usage = conv.include_usage;
    let chunk = |delta: Value, finish: Option<&str>| {
        let mut c = json!({"id": id, "object": "chat.completion.chunk", "created": created,
            "model": conv.model, "system_fingerprint": "fp_mock",
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]});
        if null_usage {
            c["usage"] = Value::Null;
        }
        sse_data(&c)
    };
    let mut events = Vec::new();
    if let Some(call) = &reply.tool_call {
        events.push(chunk(
            json!({"role": "assistant", "content": null, "tool_calls": [{"index": 0, "id": call.id,
                "type": "function", "function": {"name": call.name, "arguments": ""}}]}),
            None,
        ));
        for piece in reply.argument_pieces() {
            events.push(chunk(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}),
                None,
            ));
        }
    } else {
        events.push(chunk(
            json!({"role": "assistant", "content": "", "refusal": null}),
            None,
        ));
        for piece in reply.pieces() {
            events.push(chunk(json!({"content": piece}), None));
        }
    }
    events.push(chunk(json!({}), Some(finish_reason(reply.finish))));
    if conv.include_usage {
        events.push(sse_data(&json!({"id": id, "object": "chat.completion.chunk", "created": created,
            "model": conv.model, "system_fingerprint": "fp_mock", "choices": [], "usage": usage(reply)})));
    }
    events.push("data: [DONE]\n\n".to_string());
    Outcome::Stream {
        events,
        error_event: sse_data(
            &json!({"error": {"message": "The server had an error while processing your request.", "type": "server_error", "param": null, "code": null}}),
        ),
    }
}

pub(crate) fn error(status: u16, message: &str, retry_after: Option<u64>) -> Outcome {
    let (ty, code) = match status {
        401 => ("invalid_request_error", Some("invalid_api_key")),
        403 => ("permission_error", None),
        404 => ("invalid_request_error", Some("model_not_found")),
        429 => ("requests", Some("rate_limit_exceeded")),
        400..=499 => ("invalid_request_error", None),
        _ => ("server_error", None),
    };
    let mut headers = Vec::new();
    if let Some(s) = retry_after {
        headers.push(("retry-after".to_string(), s.to_string()));
    }
    if status == 429 {
        headers.push(("x-ratelimit-limit-requests".into(), "60".into()));
        headers.push(("x-ratelimit-remaining-requests".into(), "0".into()));
        headers.push((
            "x-ratelimit-reset-requests".into(),
            format!("{}s", retry_after.unwrap_or(1)),
        ));
    }
    Outcome::Json {
        status,
        headers,
        body: json!({"error": {"message": message, "type": ty, "param": null, "code": code}}),
    }
}
