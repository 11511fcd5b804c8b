//! Mock of the Gemini API: `models/{model}:generateContent` and
//! `:streamGenerateContent?alt=sse`, under `/v1beta` or `/v1`.

use serde_json::{json, Value};

use super::conversation::{Conversation, Finish, LastTurn, Reply, Tool, ToolChoice};
use super::{keys, media, ChatCall, Dialect, MockRequest, Outcome, Routed};

pub(crate) fn route(req: &MockRequest) -> Routed {
    let Some((model, method)) = parse_path(&req.path) else {
        return Routed::Done(error(404, &format!("Method not found: {}", req.path), None));
    };
    let known = [
        "generateContent",
        "streamGenerateContent",
        "batchEmbedContents",
    ];
    if req.method != "POST" || !known.contains(&method) {
        return Routed::Done(error(404, &format!("Method not found: {method}"), None));
    }
    let key = req
        .header("x-goog-api-key")
        .or(req.query.get("key").map(String::as_str));
    if key != Some(keys::GEMINI) {
        return Routed::Done(api_key_invalid());
    }
    if method == "batchEmbedContents" {
        return embeddings(req);
    }
    if let Some(image) = image(req) {
        return image;
    }
    match parse(req, model) {
        Ok(mut conversation) => {
            conversation.stream = method == "streamGenerateContent";
            conversation.options =
                json!({"sse": req.query.get("alt").map(String::as_str) == Some("sse")});
            Routed::Chat(ChatCall {
                dialect: Dialect::Gemini,
                conversation,
            })
        }
        Err(message) => Routed::Done(error(400, &message, None)),
    }
}

/// `/v1beta/models/gemini-2.5-flash:generateContent` -> (`gemini-2.5-flash`, `generateContent`).
fn parse_path(path: &str) -> Option<(&str, &str)> {
    let rest = path
        .strip_prefix("/v1beta/models/")
        .or_else(|| path.strip_prefix("/v1/models/"))?;
    rest.rsplit_once(':')
}

/// Gemini accepts camelCase and snake_case field names.
fn field<'v>(v: &'v Value, camel: &str, snake: &str) -> Option<&'v Value> {
    v.get(camel).or_else(|| v.get(snake))
}

fn parse(req: &MockRequest, model: &str) -> Result<Conversation, String> {
    let body = req
        .json()
        .map_err(|e| format!("Invalid JSON payload received. {e}"))?;
    let contents = body
        .get("contents")
        .and_then(Value::as_array)
        .filter(|c| !c.is_empty())
        .ok_or("* GenerateContentRequest.contents: contents is not specified")?;
    let mut conv = Conversation::new(model);
    if let Some(sys) = field(&body, "systemInstruction", "system_instruction") {
        for p in sys
            .get("parts")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(t) = p.get("text").and_then(Value::as_str) {
                conv.texts.push(t.to_string());
            }
        }
    }
    for c in contents {
        let role = c.get("role").and_then(Value::as_str).unwrap_or("user");
        if role != "user" && role != "model" {
            return Err("Please use a valid role: user, model.".into());
        }
        let parts = c
            .get("parts")
            .and_then(Value::as_array)
            .ok_or("* contents.parts: parts must not be empty")?;
        let mut texts = Vec::new();
        let mut tool_result = None;
        for p in parts {
            if let Some(t) = p.get("text").and_then(Value::as_str) {
                texts.push(t.to_string());
            } else if let Some(d) = field(p, "inlineData", "inline_data") {
                if field(d, "mimeType", "mime_type").is_none() || d.get("data").is_none() {
                    return Err("* inline_data: mime_type and data are required".into());
                }
                conv.images += 1;
            } else if let Some(fc) = field(p, "functionCall", "function_call") {
                texts.push(fc.get("args").map(Value::to_string).unwrap_or_default());
            } else if let Some(fr) = field(p, "functionResponse", "function_response") {
                let r = fr.get("response").map(Value::to_string).unwrap_or_default();
                tool_result = Some(r.clone());
                texts.push(r);
            } else {
                return Err("* contents.parts: a part must have a text, inlineData, functionCall or functionResponse".into());
            }
        }
        let text = texts.join(" ");
        conv.last = match (role, tool_result) {
            ("user", Some(r)) => LastTurn::ToolResult(r),
            ("user", None) => LastTurn::User(text.clone()),
            _ => LastTurn::Other,
        };
        if !text.is_empty() {
            conv.texts.push(text);
        }
    }
    for t in body
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for d in field(t, "functionDeclarations", "function_declarations")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = d
                .get("name")
                .and_then(Value::as_str)
                .ok_or("* function_declarations.name is required")?;
            conv.tools.push(Tool {
                name: name.into(),
                schema: d.get("parameters").cloned().unwrap_or(json!({})),
            });
        }
    }
    if let Some(cfg) = field(&body, "toolConfig", "tool_config")
        .and_then(|t| field(t, "functionCallingConfig", "function_calling_config"))
    {
        let allowed = field(cfg, "allowedFunctionNames", "allowed_function_names")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .and_then(Value::as_str);
        conv.tool_choice = match (cfg.get("mode").and_then(Value::as_str), allowed) {
            (Some("NONE"), _) => ToolChoice::None,
            (Some("ANY"), Some(name)) => ToolChoice::Named(name.into()),
            (Some("ANY"), None) => ToolChoice::Required,
            _ => ToolChoice::Auto,
        };
    }
    if let Some(gc) = field(&body, "generationConfig", "generation_config") {
        conv.max_tokens = field(gc, "maxOutputTokens", "max_output_tokens").and_then(Value::as_u64);
        if let Some(stops) = field(gc, "stopSequences", "stop_sequences").and_then(Value::as_array)
        {
            if stops.len() > 5 {
                return Err(
                    "* GenerationConfig.stop_sequences: at most 5 stop sequences are allowed"
                        .into(),
                );
            }
        }
    }
    conv.include_usage = true;
    if let Some(t) = body.pointer("/generationConfig/thinkingConfig") {
        conv.thinking = Some(t.to_string());
        conv.thinks = t.get("includeThoughts").and_then(Value::as_bool) == Some(true);
    }
    Ok(conv)
}

fn finish_str(f: Finish) -> &'static str {
    match f {
        Finish::Stop | Finish::ToolCalls => "STOP",
        Finish::Length => "MAX_TOKENS",
    }
}

pub(crate) fn respond(conv: &Conversation, reply: &Reply, id: u64) -> Outcome {
    let response_id = format!("mock-{id}");
    // Gemini counts thoughts apart from the candidates' tokens.
    let thoughts = reply.reasoning_tokens();
    let usage = |output: u64| {
        let candidates = output.saturating_sub(thoughts);
        let mut u = json!({"promptTokenCount": reply.prompt_tokens, "candidatesTokenCount": candidates,
               "totalTokenCount": reply.prompt_tokens + candidates + thoughts});
        if thoughts > 0 {
            u["thoughtsTokenCount"] = json!(thoughts);
        }
        u
    };
    let candidate = |parts: Value, finish: Option<&str>| {
        let mut c = json!({"content": {"role": "model", "parts": parts}, "index": 0});
        if let Some(f) = finish {
            c["finishReason"] = json!(f);
        }
        c
    };
    let function_part = reply.tool_call.as_ref().map(|c| {
        json!([{"functionCall": {"name": c.name, "args": serde_json::from_str::<Value>(&c.arguments).unwrap_or(json!({}))}}])
    });
    let thought = reply
        .reasoning
        .as_ref()
        .map(|r| json!({"text": r, "thought": true}));
    if !conv.stream {
        let mut parts = function_part.unwrap_or_else(|| json!([{"text": reply.text()}]));
        if let (Some(t), Value::Array(p)) = (&thought, &mut parts) {
            p.insert(0, t.clone());
        }
        return Outcome::json(
            200,
            json!({"candidates": [candidate(parts, Some(finish_str(reply.finish)))],
                   "usageMetadata": usage(reply.completion_tokens), "modelVersion": conv.model,
                   "responseId": response_id}),
        );
    }
    let mut chunks = Vec::new();
    match function_part {
        Some(parts) => chunks.push(json!({"candidates": [candidate(parts, Some("STOP"))],
            "usageMetadata": usage(reply.completion_tokens), "modelVersion": conv.model, "responseId": response_id})),
        None => {
            if let Some(t) = thought {
                chunks.push(json!({"candidates": [candidate(json!([t]), None)],
                    "usageMetadata": usage(0), "modelVersion": conv.model, "responseId": response_id}));
            }
            let pieces = reply.pieces();
            let last = pieces.len().saturating_sub(1);
            for (i, piece) in pieces.iter().enumerate() {
                let finish = (i == last).then(|| finish_str(reply.finish));
                let count = if i == last { reply.completion_tokens } else { i as u64 + 1 };
                chunks.push(json!({"candidates": [candidate(json!([{"text": piece}]), finish)],
                    "usageMetadata": usage(count), "modelVersion": conv.model, "responseId": response_id}));
            }
            if pieces.is_empty() {
                chunks.push(json!({"candidates": [candidate(json!([{"text": ""}]), Some(finish_str(reply.finish)))],
                    "usageMetadata": usage(0), "modelVersion": conv.model, "responseId": response_id}));
            }
        }
    }
    if conv.options.get("sse").and_then(Value::as_bool) != Some(true) {
        // Without alt=sse the endpoint answers one JSON array of the chunks.
        return Outcome::json(200, Value::Array(chunks));
    }
    // Google's SSE separates events with CRLF line breaks.
    let events = chunks
        .iter()
        .map(|c| format!("data: {c}\r\n\r\n"))
        .collect();
    Outcome::Stream {
        events,
        error_event: format!(
            "data: {}\r\n\r\n",
            json!({"error": {"code": 503, "message": "The model is overloaded. Please try again later.", "status": "UNAVAILABLE"}})
        ),
    }
}

fn status_name(status: u16) -> &'static str {
    match status {
        400 => "INVALID_ARGUMENT",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "INTERNAL",
    }
}

fn api_key_invalid() -> Outcome {
    Outcome::json(
        400,
        json!({"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.",
            "status": "INVALID_ARGUMENT",
            "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                         "domain": "googleapis.com"}]}}),
    )
}

pub(crate) fn error(status: u16, message: &str, retry_after: Option<u64>) -> Outcome {
    let mut body =
        json!({"error": {"code": status, "message": message, "status": status_name(status)}});
    if let Some(s) = retry_after {
        body["error"]["details"] = json!([{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": format!("{s}s")}]);
    }
    Outcome::Json {
        status,
        headers: Vec::new(),
        body,
    }
}

/// `batchEmbedContents`: at most 100 requests, vectors in request order, no usage.
fn embeddings(req: &MockRequest) -> Routed {
    let Ok(body) = req.json() else {
        return Routed::Done(error(400, "Invalid JSON payload received.", None));
    };
    let Some(requests) = body.get("requests").and_then(Value::as_array) else {
        return Routed::Done(error(
            400,
            "* BatchEmbedContentsRequest.requests: required",
            None,
        ));
    };
    if requests.len() > 100 {
        return Routed::Done(error(
            400,
            "* BatchEmbedContentsRequest.requests: at most 100 requests can be in one batch",
            None,
        ));
    }
    let mut texts = Vec::with_capacity(requests.len());
    for r in requests {
        let text = r.pointer("/content/parts/0/text").and_then(Value::as_str);
        let Some(text) = text.filter(|t| !t.is_empty()) else {
            return Routed::Done(error(
                400,
                "* BatchEmbedContentsRequest.requests[].content: must have text",
                None,
            ));
        };
        let dims = media::dimensions(r.get("outputDimensionality").and_then(Value::as_u64), 3072);
        texts.push((text.to_string(), dims));
    }
    let embeddings: Vec<Value> = texts
        .iter()
        .map(|(t, dims)| json!({"values": super::media::vector(t, *dims)}))
        .collect();
    Routed::api(
        Dialect::Gemini,
        texts.first().map(|t| t.0.clone()),
        Outcome::json(200, json!({"embeddings": embeddings})),
    )
}

/// `generateContent` with `responseModalities: ["IMAGE"]`: one inline PNG; None for other
/// requests. A prompt with "forbidden" in it is blocked, as Gemini's safety filters do.
fn image(req: &MockRequest) -> Option<Routed> {
    let body = req.json().ok()?;
    let modalities = body
        .pointer("/generationConfig/responseModalities")?
        .as_array()?;
    if !modalities.iter().any(|m| m == "IMAGE") {
        return None;
    }
    let prompt = body
        .pointer("/contents/0/parts/0/text")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let tokens = super::media::tokens(&prompt);
    let candidate = if prompt.contains("forbidden") {
        json!({"finishReason": "IMAGE_SAFETY", "index": 0})
    } else {
        json!({"content": {"role": "model", "parts": [
                {"text": "Here is your picture."},
                {"inlineData": {"mimeType": "image/png", "data": super::media::PNG_BASE64}}]},
               "finishReason": "STOP", "index": 0})
    };
    Some(Routed::api(
        Dialect::Gemini,
        Some(prompt),
        Outcome::json(
            200,
            json!({"candidates": [candidate],
                   "usageMetadata": {"promptTokenCount": tokens, "candidatesTokenCount": 1290,
                                     "totalTokenCount": tokens + 1290},
                   "modelVersion": "gemini-2.5-flash-image"}),
        ),
    ))
}
