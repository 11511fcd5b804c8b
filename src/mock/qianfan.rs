//! Mock of Baidu Qianfan: v1 (`wenxinworkshop`, OAuth access tokens, errors as HTTP 200 bodies
//! with `error_code`) and v2 (OpenAI-compatible, `/v2/chat/completions`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::conversation::{Conversation, Finish, LastTurn, Reply, Tool, ToolChoice};
use super::{
    keys, media, now_secs, openai, sse_data, ChatCall, Dialect, MockRequest, Outcome, Routed,
};

pub(crate) const CHAT_PREFIX: &str = "/rpc/2.0/ai_custom/v1/wenxinworkshop/chat/";
const EMBEDDINGS_PREFIX: &str = "/rpc/2.0/ai_custom/v1/wenxinworkshop/embeddings/";
const TEXT_TO_IMAGE_PREFIX: &str = "/rpc/2.0/ai_custom/v1/wenxinworkshop/text2image/";
pub(crate) const TOKEN_PATH: &str = "/oauth/2.0/token";
/// What the token endpoint reports, as Baidu does: 30 days.
const TOKEN_LIFETIME_SECS: u64 = 2_592_000;

/// Issued access tokens. Tests expire them all at once through `/__mock/qianfan/expire`.
#[derive(Default)]
pub(crate) struct TokenStore {
    tokens: Mutex<HashMap<String, Instant>>,
    fetches: AtomicU64,
}

enum TokenCheck {
    Valid,
    Expired,
    Invalid,
}

impl TokenStore {
    pub(crate) fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    fn issue(&self) -> String {
        let n = self.fetches.fetch_add(1, Ordering::Relaxed) + 1;
        let token = format!("24.mock{n:06}.{}", now_secs());
        self.tokens.lock().expect("mock lock").insert(
            token.clone(),
            Instant::now() + Duration::from_secs(TOKEN_LIFETIME_SECS),
        );
        token
    }

    pub(crate) fn expire_all(&self) {
        let past = Instant::now();
        for v in self.tokens.lock().expect("mock lock").values_mut() {
            *v = past;
        }
    }

    fn check(&self, token: Option<&str>) -> TokenCheck {
        let tokens = self.tokens.lock().expect("mock lock");
        match token.and_then(|t| tokens.get(t)) {
            None => TokenCheck::Invalid,
            Some(exp) if *exp <= Instant::now() => TokenCheck::Expired,
            Some(_) => TokenCheck::Valid,
        }
    }
}

pub(crate) fn route(req: &MockRequest, tokens: &TokenStore) -> Routed {
    match (req.method.as_str(), req.path.as_str()) {
        ("POST", "/v2/chat/completions") => openai::chat(req, keys::QIANFAN_V2),
        ("POST" | "GET", TOKEN_PATH) => Routed::Done(token(req, tokens)),
        ("POST", p)
            if [CHAT_PREFIX, EMBEDDINGS_PREFIX, TEXT_TO_IMAGE_PREFIX]
                .iter()
                .any(|prefix| p.starts_with(prefix)) =>
        {
            match tokens.check(req.query.get("access_token").map(String::as_str)) {
                TokenCheck::Valid => {}
                TokenCheck::Expired => return Routed::Done(error_code_outcome(111)),
                TokenCheck::Invalid => return Routed::Done(error_code_outcome(110)),
            }
            if let Some(endpoint) = p.strip_prefix(EMBEDDINGS_PREFIX) {
                return embeddings(req, endpoint);
            }
            if p.starts_with(TEXT_TO_IMAGE_PREFIX) {
                return text_to_image(req);
            }
            let endpoint = &p[CHAT_PREFIX.len()..];
            match parse(req, endpoint) {
                Ok(conversation) => Routed::Chat(ChatCall {
                    dialect: Dialect::QianfanV1,
                    conversation,
                }),
                Err((code, message)) => Routed::Done(Outcome::json(
                    200,
                    json!({"error_code": code, "error_msg": message}),
                )),
            }
        }
        _ => Routed::Done(Outcome::json(
            404,
            json!({"error_code": 3, "error_msg": "Unsupported openapi method"}),
        )),
    }
}

fn token(req: &MockRequest, tokens: &TokenStore) -> Outcome {
    let q = |k: &str| req.query.get(k).map(String::as_str);
    if q("grant_type") != Some("client_credentials") {
        return Outcome::json(
            400,
            json!({"error": "unsupported_grant_type", "error_description": "unsupported grant type"}),
        );
    }
    if q("client_id") != Some(keys::QIANFAN_CLIENT_ID) {
        return Outcome::json(
            401,
            json!({"error": "invalid_client", "error_description": "unknown client id"}),
        );
    }
    if q("client_secret") != Some(keys::QIANFAN_CLIENT_SECRET) {
        return Outcome::json(
            401,
            json!({"error": "invalid_client", "error_description": "Client authentication failed"}),
        );
    }
    let access = tokens.issue();
    Outcome::json(
        200,
        json!({"refresh_token": "25.mock-refresh", "expires_in": TOKEN_LIFETIME_SECS,
               "session_key": "mock-session", "access_token": access,
               "scope": "public brain_all_scope wenxinworkshop_mgr", "session_secret": ""}),
    )
}

fn parse(req: &MockRequest, endpoint: &str) -> Result<Conversation, (u64, String)> {
    let bad = |code: u64, m: &str| (code, m.to_string());
    let body = req.json().map_err(|_| bad(336002, "Invalid JSON"))?;
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
        .ok_or_else(|| bad(336003, "messages is empty"))?;
    if messages.len().is_multiple_of(2) {
        return Err(bad(336003, "the length of messages must be an odd number"));
    }
    let mut conv = Conversation::new(endpoint);
    if let Some(system) = body.get("system").and_then(Value::as_str) {
        conv.texts.push(system.to_string());
    }
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        let user_side = i % 2 == 0;
        let ok = if user_side {
            role == "user" || role == "function"
        } else {
            role == "assistant"
        };
        if !ok {
            return Err(bad(336003, "the role of message with even index in the messages must be user or function, odd index must be assistant"));
        }
        let text = match m.get("content") {
            Some(Value::String(s)) => s.clone(),
            _ => String::new(),
        };
        if let Some(fc) = m.get("function_call") {
            conv.texts.push(
                fc.get("arguments")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
            );
        }
        conv.last = match role {
            "user" => LastTurn::User(text.clone()),
            "function" => LastTurn::ToolResult(text.clone()),
            _ => LastTurn::Other,
        };
        if !text.is_empty() {
            conv.texts.push(text);
        }
    }
    if let Some(t) = body.get("temperature").and_then(Value::as_f64) {
        if !(t > 0.0 && t <= 1.0) {
            return Err(bad(336001, "temperature must be in range (0, 1.0]"));
        }
    }
    if let Some(functions) = body.get("functions").and_then(Value::as_array) {
        for f in functions {
            let name = f
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| bad(336001, "functions.name is required"))?;
            conv.tools.push(Tool {
                name: name.into(),
                schema: f.get("parameters").cloned().unwrap_or(json!({})),
            });
        }
    }
    if let Some(name) = body
        .pointer("/tool_choice/function/name")
        .and_then(Value::as_str)
    {
        conv.tool_choice = ToolChoice::Named(name.into());
    }
    conv.max_tokens = body.get("max_output_tokens").and_then(Value::as_u64);
    conv.stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    conv.include_usage = true;
    Ok(conv)
}

fn finish_str(f: Finish) -> &'static str {
    match f {
        Finish::Stop => "normal",
        Finish::Length => "length",
        Finish::ToolCalls => "function_call",
    }
}

pub(crate) fn respond(conv: &Conversation, reply: &Reply, id: u64) -> Outcome {
    let id = format!("as-mock{id}");
    let created = now_secs();
    let usage = |completion: u64| {
        json!({"prompt_tokens": reply.prompt_tokens, "completion_tokens": completion,
               "total_tokens": reply.prompt_tokens + completion})
    };
    let function_call = reply.tool_call.as_ref().map(|c| {
        json!({"name": c.name, "arguments": c.arguments, "thoughts": "The user's request needs this function."})
    });
    if !conv.stream {
        let mut body = json!({"id": id, "object": "chat.completion", "created": created,
            "result": reply.text(), "is_truncated": reply.finish == Finish::Length,
            "need_clear_history": false, "finish_reason": finish_str(reply.finish),
            "usage": usage(reply.completion_tokens)});
        if let Some(fc) = function_call {
            body["function_call"] = fc;
        }
        return Outcome::json(200, body);
    }
    let mut pieces = reply.pieces();
    if pieces.is_empty() {
        pieces.push(String::new());
    }
    let last = pieces.len() - 1;
    let mut events = Vec::new();
    for (i, piece) in pieces.iter().enumerate() {
        let is_end = i == last;
        let completion = if is_end {
            reply.completion_tokens
        } else {
            i as u64 + 1
        };
        let mut chunk = json!({"id": id, "object": "chat.completion", "created": created,
            "sentence_id": i, "is_end": is_end, "is_truncated": false, "result": piece,
            "need_clear_history": false, "usage": usage(completion)});
        if is_end {
            chunk["finish_reason"] = json!(finish_str(reply.finish));
            if let Some(fc) = &function_call {
                chunk["function_call"] = fc.clone();
            }
        }
        events.push(sse_data(&chunk));
    }
    Outcome::Stream {
        events,
        error_event: sse_data(
            &json!({"error_code": 336100, "error_msg": "system is busy, please try again later"}),
        ),
    }
}

fn message_for(code: u64) -> &'static str {
    match code {
        4 => "Open api request limit reached",
        17 => "Open api daily request limit reached",
        18 => "Open api qps request limit reached",
        110 => "Access token invalid or no longer valid",
        111 => "Access token expired",
        336000 => "Internal error",
        336001 => "Invalid argument",
        336003 => "Invalid parameter",
        336100 => "system is busy, please try again later",
        336501 => "Rate limit reached for RPM",
        336502 => "Rate limit reached for TPM",
        _ => "Unknown error",
    }
}

/// Qianfan v1 reports errors in an HTTP 200 body.
pub(crate) fn error_code_outcome(code: u64) -> Outcome {
    Outcome::json(
        200,
        json!({"error_code": code, "error_msg": message_for(code)}),
    )
}

/// The v1 error code a vendor status stands for (a test asks for faults by HTTP status).
pub(crate) fn error_for_status(status: u16, _message: &str) -> Outcome {
    let code = match status {
        429 => 18,
        401 => 110,
        400 => 336003,
        503 => 336100,
        _ => 336000,
    };
    error_code_outcome(code)
}

fn in_body_error(code: u64, message: &str) -> Routed {
    Routed::Done(Outcome::json(
        200,
        json!({"error_code": code, "error_msg": message}),
    ))
}

/// `embeddings/{endpoint}`: at most 16 texts a call (tao_8k: 1), none empty.
fn embeddings(req: &MockRequest, endpoint: &str) -> Routed {
    let Ok(body) = req.json() else {
        return in_body_error(336002, "Invalid JSON");
    };
    let Some(texts) = media::texts(body.get("input")) else {
        return in_body_error(
            336003,
            "input must be a non-empty list of non-empty strings",
        );
    };
    let cap = if endpoint.starts_with("tao") { 1 } else { 16 };
    if texts.len() > cap {
        return in_body_error(336003, &format!("embeddings max input size: {cap}"));
    }
    let data: Vec<Value> = texts
        .iter()
        .enumerate()
        .map(
            |(i, t)| json!({"object": "embedding", "embedding": media::vector(t, 384), "index": i}),
        )
        .collect();
    let tokens: u64 = texts.iter().map(|t| media::tokens(t)).sum();
    Routed::api(
        Dialect::QianfanV1,
        texts.first().cloned(),
        Outcome::json(
            200,
            json!({"id": "as-mockembed", "object": "embedding_list", "created": now_secs(),
                   "data": data, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}),
        ),
    )
}

/// `text2image/sd_xl`: base64 images only, `size` written `1024x1024`.
fn text_to_image(req: &MockRequest) -> Routed {
    let Ok(body) = req.json() else {
        return in_body_error(336002, "Invalid JSON");
    };
    let Some(prompt) = body.get("prompt").and_then(Value::as_str) else {
        return in_body_error(336003, "prompt is required");
    };
    let n = body.get("n").and_then(Value::as_u64).unwrap_or(1);
    if !(1..=4).contains(&n) {
        return in_body_error(336003, "n should be in [1, 4]");
    }
    if let Some(size) = body.get("size").and_then(Value::as_str) {
        if !size.contains('x') {
            return in_body_error(336003, "size is invalid");
        }
    }
    let data: Vec<Value> = (0..n)
        .map(|i| json!({"object": "image", "b64_image": media::PNG_BASE64, "index": i}))
        .collect();
    let tokens = media::tokens(prompt);
    Routed::api(
        Dialect::QianfanV1,
        Some(prompt.to_string()),
        Outcome::json(
            200,
            json!({"id": "as-mockimage", "object": "image", "created": now_secs(), "data": data,
                   "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}),
        ),
    )
}
