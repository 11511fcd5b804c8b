//! Baidu Qianfan v1 (ERNIE, `wenxinworkshop`): OAuth access token in the query, `system` as
//! its own field, strictly alternating messages, errors as HTTP 200 bodies with `error_code`.
//! v2 is OpenAI-compatible and handled by `openai`. The access tokens are cached in `token`.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::job::{self, Batch, Batches, Job};
use super::model::{
    Choice, Completion, Delta, EmbeddingsRequest, FinishReason, GeneratedImage, ImageData,
    ImageRequest, Request, ResponseFormat, Role, ToolCall, ToolChoice,
};
use super::{
    error_from_status, Dialect, EventDecoder, SseStream, UpstreamRequest, Usage, VendorTarget,
};
use crate::error::{ErrorKind, GatewayError, GwResult};
use crate::providers::sse::Event;

mod token;

pub use token::{read_token_reply, token_request, TokenCache};

pub const CHAT_PATH: &str = "/rpc/2.0/ai_custom/v1/wenxinworkshop/chat/";
pub const EMBEDDINGS_PATH: &str = "/rpc/2.0/ai_custom/v1/wenxinworkshop/embeddings/";
pub const TEXT_TO_IMAGE_PATH: &str = "/rpc/2.0/ai_custom/v1/wenxinworkshop/text2image/";

/// ERNIE parameters with no OpenAI name; passed through from the client's request.
const PASSED_EXTRAS: &[&str] = &[
    "penalty_score",
    "disable_search",
    "enable_citation",
    "enable_trace",
    "top_k",
];

pub fn encode(req: &Request, target: &VendorTarget) -> GwResult<UpstreamRequest> {
    req.reject_n_above_one("Qianfan ERNIE")?;
    req.reject_logprobs("Qianfan ERNIE")?;
    req.reject_images("Qianfan ERNIE")?;
    let mut body = Map::new();
    body.insert("messages".into(), json!(messages(req)?));
    if let Some(system) = req.system_text() {
        body.insert("system".into(), json!(system));
    }
    if let Some(t) = req.temperature {
        // ERNIE takes (0, 1]; 0 is rejected.
        body.insert("temperature".into(), json!(t.clamp(0.01, 1.0)));
    }
    if let Some(p) = req.top_p {
        body.insert("top_p".into(), json!(p.clamp(0.0, 1.0)));
    }
    if let Some(m) = req.max_tokens {
        body.insert("max_output_tokens".into(), json!(m.max(2)));
    }
    if !req.stop.is_empty() {
        body.insert("stop".into(), json!(req.stop));
    }
    if let Some(u) = &req.user {
        body.insert("user_id".into(), json!(u));
    }
    if !req.tools.is_empty() {
        body.insert(
            "functions".into(),
            Value::Array(req.tools.iter().map(|t| json!({"name": t.name, "description": t.description.clone().unwrap_or_default(), "parameters": t.parameters})).collect()),
        );
    }
    if let Some(ToolChoice::Function(name)) = &req.tool_choice {
        body.insert(
            "tool_choice".into(),
            json!({"type": "function", "function": {"name": name}}),
        );
    }
    if matches!(
        req.response_format,
        Some(ResponseFormat::JsonObject | ResponseFormat::JsonSchema { .. })
    ) {
        body.insert("response_format".into(), json!("json_object"));
    }
    req.copy_extras(PASSED_EXTRAS, &mut body);
    body.insert("stream".into(), json!(req.stream));
    call(target, CHAT_PATH, &Value::Object(body))
}

/// A call to one of the model's endpoints under `path`, with the access token in the query.
fn call(target: &VendorTarget, path: &str, body: &Value) -> GwResult<UpstreamRequest> {
    let token = target
        .access_token
        .ok_or_else(|| GatewayError::new(ErrorKind::Internal, "no Qianfan access token"))?;
    Ok(UpstreamRequest {
        path_and_query: format!(
            "{}{path}{}?access_token={}",
            target.provider.endpoint.path_prefix,
            super::path_segment(target.vendor_model),
            super::path_segment(token)
        ),
        headers: Vec::new(),
        body: Bytes::from(serde_json::to_vec(body).expect("json serializes")),
    })
}

/// Texts per embeddings call: tao-8k takes one, the others 16.
fn embeddings_batch(vendor_model: &str) -> usize {
    if vendor_model.starts_with("tao") {
        1
    } else {
        16
    }
}

fn embeddings_job(req: &EmbeddingsRequest, target: &VendorTarget) -> GwResult<Box<dyn Job>> {
    if req.dimensions.is_some() {
        return Err(GatewayError::bad_param(
            "dimensions",
            "Qianfan embedding models have a fixed size; leave 'dimensions' out.",
        ));
    }
    let calls = job::chunks(&req.texts, embeddings_batch(target.vendor_model))
        .map(|texts| {
            let mut body = json!({"input": texts});
            if let Some(u) = &req.user {
                body["user_id"] = json!(u);
            }
            call(target, EMBEDDINGS_PATH, &body)
        })
        .collect::<GwResult<Vec<_>>>()?;
    Ok(Batches::job(calls, decode_embeddings, job::embeddings))
}

#[derive(Deserialize)]
struct Indexed<T> {
    index: usize,
    #[serde(flatten)]
    item: T,
}

#[derive(Deserialize)]
struct Vector {
    embedding: Vec<f32>,
}

#[derive(Deserialize)]
struct B64Image {
    b64_image: String,
}

/// A v1 reply that holds `data` items (embeddings, images), or its in-body error.
#[derive(Deserialize)]
struct DataReply<T> {
    #[serde(default = "Vec::new")]
    data: Vec<Indexed<T>>,
    #[serde(default)]
    usage: Option<PromptUsage>,
    error_code: Option<u64>,
    error_msg: Option<String>,
}

#[derive(Deserialize)]
struct PromptUsage {
    #[serde(default)]
    prompt_tokens: u64,
}

fn decode_data<T: for<'de> Deserialize<'de>>(body: &[u8]) -> GwResult<Batch<T>> {
    let mut r: DataReply<T> =
        serde_json::from_slice(body).map_err(|_| super::unreadable_reply())?;
    if let Some(code) = r.error_code {
        return Err(code_error(code, r.error_msg.unwrap_or_default()));
    }
    if r.data.is_empty() {
        return Err(super::unreadable_reply());
    }
    r.data.sort_by_key(|d| d.index);
    Ok(Batch {
        items: r.data.into_iter().map(|d| d.item).collect(),
        tokens: r.usage.map_or(0, |u| u.prompt_tokens),
    })
}

fn decode_embeddings(body: &[u8]) -> GwResult<Batch<Vec<f32>>> {
    let b = decode_data::<Vector>(body)?;
    Ok(Batch {
        items: b.items.into_iter().map(|v| v.embedding).collect(),
        tokens: b.tokens,
    })
}

/// Stable Diffusion XL: images come back inline only, so a client that asked for URLs gets
/// `data:` URLs.
fn image_job(req: &ImageRequest, target: &VendorTarget) -> GwResult<Box<dyn Job>> {
    if !(1..=4).contains(&req.n) {
        return Err(GatewayError::bad_param(
            "n",
            "Qianfan image models make from 1 to 4 images a request.",
        ));
    }
    let mut body = json!({"prompt": req.prompt, "n": req.n});
    if let Some((w, h)) = req.size {
        body["size"] = json!(format!("{w}x{h}"));
    }
    if let Some(neg) = &req.negative_prompt {
        body["negative_prompt"] = json!(neg);
    }
    if let Some(u) = &req.user {
        body["user_id"] = json!(u);
    }
    let submit = call(target, TEXT_TO_IMAGE_PATH, &body)?;
    Ok(Batches::job(vec![submit], decode_images, job::images))
}

fn decode_images(body: &[u8]) -> GwResult<Batch<GeneratedImage>> {
    let b = decode_data::<B64Image>(body)?;
    Ok(Batch {
        items: b
            .items
            .into_iter()
            .map(|i| GeneratedImage {
                data: ImageData::Inline {
                    media_type: job::base64_image_type(&i.b64_image).into(),
                    base64: i.b64_image,
                },
                revised_prompt: None,
            })
            .collect(),
        tokens: b.tokens,
    })
}

#[derive(Serialize)]
struct ErnieMessage<'a> {
    role: &'static str,
    content: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    function_call: Option<ErnieCall<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
}

#[derive(Serialize)]
struct ErnieCall<'a> {
    name: &'a str,
    arguments: &'a str,
}

/// The conversation as ERNIE takes it: the system prompt apart, one function call per
/// assistant turn, and strictly alternating turns that start and end with the user (neighbours
/// of the same role are merged).
fn messages(req: &Request) -> GwResult<Vec<ErnieMessage<'_>>> {
    let names = req.call_names();
    let mut turns: Vec<ErnieMessage> = Vec::new();
    for m in &req.messages {
        let turn = match m.role {
            Role::System | Role::Developer => continue,
            Role::User => ErnieMessage {
                role: "user",
                content: m.text(),
                function_call: None,
                name: None,
            },
            Role::Assistant => ErnieMessage {
                role: "assistant",
                content: m.text(),
                function_call: m.tool_calls.first().map(|c| ErnieCall {
                    name: &c.name,
                    arguments: &c.arguments,
                }),
                name: None,
            },
            Role::Tool | Role::Function => ErnieMessage {
                role: "function",
                content: m.text(),
                function_call: None,
                name: m
                    .tool_call_id
                    .as_deref()
                    .and_then(|id| names.get(id).copied())
                    .or(m.name.as_deref()),
            },
        };
        match turns.last_mut() {
            Some(last)
                if last.role == turn.role
                    && turn.role != "function"
                    && last.function_call.is_none()
                    && turn.function_call.is_none() =>
            {
                if !last.content.is_empty() && !turn.content.is_empty() {
                    last.content.push_str("\n\n");
                }
                last.content.push_str(&turn.content);
            }
            _ => turns.push(turn),
        }
    }
    let alternates = turns.iter().enumerate().all(|(i, t)| {
        if i % 2 == 0 {
            t.role == "user" || t.role == "function"
        } else {
            t.role == "assistant"
        }
    });
    if turns.is_empty() || turns.len().is_multiple_of(2) || !alternates {
        return Err(GatewayError::bad_param(
            "messages",
            "Qianfan ERNIE models need messages that alternate user and assistant turns, starting and ending with the user.",
        ));
    }
    Ok(turns)
}

#[derive(Deserialize)]
struct QianfanResponse {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    result: Option<String>,
    #[serde(default)]
    is_end: Option<bool>,
    #[serde(default)]
    finish_reason: Option<String>,
    #[serde(default)]
    function_call: Option<QianfanFunctionCall>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    error_code: Option<u64>,
    #[serde(default)]
    error_msg: Option<String>,
}

#[derive(Deserialize)]
struct QianfanFunctionCall {
    name: String,
    #[serde(default)]
    arguments: String,
}

fn finish_of(s: Option<&str>, tool: bool) -> FinishReason {
    match s {
        _ if tool => FinishReason::ToolCalls,
        Some("length") => FinishReason::Length,
        Some("content_filter") => FinishReason::ContentFilter,
        Some("function_call") => FinishReason::ToolCalls,
        _ => FinishReason::Stop,
    }
}

/// Qianfan's error codes (they arrive with HTTP 200).
pub fn code_error(code: u64, message: String) -> GatewayError {
    match code {
        110 | 111 => GatewayError::new(
            ErrorKind::UpstreamTokenExpired,
            format!("The upstream access token is no longer valid: {message}"),
        ),
        4 | 17 | 18 | 19 | 336501 | 336502 => GatewayError::new(ErrorKind::RateLimited, message),
        2 | 336100 => GatewayError::new(ErrorKind::UpstreamOverloaded, message),
        3 | 100 | 336001 | 336002 | 336003 | 336006 | 336007 => {
            GatewayError::invalid(message, None)
        }
        6 | 13 | 14 => GatewayError::new(
            ErrorKind::UpstreamAuth,
            format!("The upstream provider rejected the gateway's credentials: {message}"),
        ),
        _ => GatewayError::new(ErrorKind::UpstreamError, message),
    }
}

pub fn decode(body: &[u8]) -> GwResult<Completion> {
    let r: QianfanResponse = serde_json::from_slice(body).map_err(|_| super::unreadable_reply())?;
    if let Some(code) = r.error_code {
        return Err(code_error(code, r.error_msg.unwrap_or_default()));
    }
    let result = r.result.ok_or_else(super::unreadable_reply)?;
    let tool_calls: Vec<ToolCall> = r
        .function_call
        .map(|f| ToolCall {
            id: format!("call_{}", r.id.as_deref().unwrap_or("0")),
            name: f.name,
            arguments: f.arguments,
        })
        .into_iter()
        .collect();
    Ok(Completion {
        choices: vec![Choice {
            finish: finish_of(r.finish_reason.as_deref(), !tool_calls.is_empty()),
            content: (!result.is_empty() || tool_calls.is_empty()).then_some(result),
            reasoning: None,
            tool_calls,
        }],
        usage: r.usage,
    })
}

#[derive(Deserialize)]
struct QianfanHttpError {
    #[serde(default)]
    error_code: Option<u64>,
    #[serde(default)]
    error_msg: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

pub fn map_error(status: u16, body: &[u8]) -> GatewayError {
    match serde_json::from_slice::<QianfanHttpError>(body) {
        Ok(QianfanHttpError {
            error_code: Some(code),
            error_msg,
            ..
        }) => code_error(code, error_msg.unwrap_or_default()),
        Ok(QianfanHttpError {
            error_description: Some(d),
            ..
        }) => error_from_status(status, d),
        _ => error_from_status(status, format!("upstream returned HTTP {status}")),
    }
}

#[derive(Default)]
pub struct QianfanEvents {
    ended: bool,
}

impl QianfanEvents {
    fn on_data(&mut self, data: &str, emit: &mut dyn FnMut(Delta)) {
        let r: QianfanResponse = match serde_json::from_str(data) {
            Ok(r) => r,
            Err(_) => return emit(Delta::Error(super::malformed_event())),
        };
        if let Some(code) = r.error_code {
            let mut e = code_error(code, r.error_msg.unwrap_or_default());
            if e.kind == ErrorKind::InvalidRequest {
                e.kind = ErrorKind::UpstreamError;
            }
            return emit(Delta::Error(e));
        }
        if let Some(text) = r.result {
            emit(Delta::Text(text));
        }
        let tool = r.function_call.is_some();
        if let Some(f) = r.function_call {
            emit(Delta::ToolStart {
                index: 0,
                id: format!("call_{}", r.id.as_deref().unwrap_or("0")),
                name: f.name,
            });
            emit(Delta::ToolArgs {
                index: 0,
                arguments: f.arguments,
            });
        }
        if r.is_end == Some(true) {
            emit(Delta::Finish(finish_of(r.finish_reason.as_deref(), tool)));
            if let Some(u) = r.usage {
                emit(Delta::Usage(u));
            }
            self.ended = true;
            emit(Delta::Done);
        }
    }
}

impl EventDecoder for QianfanEvents {
    fn handle(&mut self, e: &Event, emit: &mut dyn FnMut(Delta)) {
        self.on_data(&e.data, emit);
    }

    fn is_done(&self) -> bool {
        self.ended
    }
}

/// The Qianfan stream decoder: SSE framing around [`QianfanEvents`].
pub type QianfanStream = SseStream<QianfanEvents>;

/// This vendor's translation functions, for `providers::dialect`.
pub static DIALECT: Dialect = Dialect {
    encode,
    decode,
    stream: || Box::new(QianfanStream::new()),
    map_error,
    embeddings: Some(embeddings_job),
    images: Some(image_job),
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::testing::{provider, req, run_stream_all_ways};

    #[test]
    fn embeddings_go_in_batches_of_sixteen_with_the_token_and_errors_in_the_body_count() {
        let p = provider(crate::providers::testing::qianfan_v1());
        let target = VendorTarget {
            provider: &p,
            vendor_model: "embedding-v1",
            access_token: Some("tok"),
        };
        let request = EmbeddingsRequest {
            texts: (0..40).map(|i| i.to_string()).collect(),
            dimensions: None,
            user: Some("u1".into()),
        };
        let mut job = embeddings_job(&request, &target).unwrap();
        let mut sizes = Vec::new();
        while let Some(call) = job.next_call() {
            assert_eq!(
                call.request.path_and_query,
                format!("{EMBEDDINGS_PATH}embedding-v1?access_token=tok")
            );
            let body: Value = serde_json::from_slice(&call.request.body).unwrap();
            assert_eq!(body["user_id"], "u1");
            let n = body["input"].as_array().unwrap().len();
            sizes.push(n);
            let data: Vec<Value> = (0..n)
                .map(|i| json!({"object": "embedding", "embedding": [i], "index": i}))
                .collect();
            let reply = json!({"object": "embedding_list", "data": data,
                "usage": {"prompt_tokens": 2, "total_tokens": 2}});
            job.read(reply.to_string().as_bytes()).unwrap();
        }
        assert_eq!(sizes, [16, 16, 8]);
        let e = embeddings_job(&request, &target)
            .unwrap()
            .read(br#"{"error_code":111,"error_msg":"Access token expired"}"#)
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::UpstreamTokenExpired);
    }

    #[test]
    fn sd_xl_images_come_back_inline() {
        let p = provider(crate::providers::testing::qianfan_v1());
        let target = VendorTarget {
            provider: &p,
            vendor_model: "sd_xl",
            access_token: Some("tok"),
        };
        let request = ImageRequest {
            prompt: "a cat".into(),
            negative_prompt: None,
            n: 2,
            size: Some((1024, 1024)),
            inline: false,
            user: None,
        };
        let mut job = image_job(&request, &target).unwrap();
        let call = job.next_call().unwrap();
        let body: Value = serde_json::from_slice(&call.request.body).unwrap();
        assert_eq!(
            (body["size"].as_str(), body["n"].as_u64()),
            (Some("1024x1024"), Some(2))
        );
        job.read(br#"{"data":[{"object":"image","b64_image":"/9j/2","index":1},{"object":"image","b64_image":"/9j/1","index":0}]}"#).unwrap();
        let job::JobOutput::Images(i) = job.output() else {
            panic!("images")
        };
        let first = &i.images[0].data;
        assert!(
            matches!(first, ImageData::Inline { base64, media_type } if base64 == "/9j/1" && media_type == "image/jpeg")
        );
    }

    fn target(p: &crate::config::Provider) -> VendorTarget<'_> {
        VendorTarget {
            provider: p,
            vendor_model: "completions_pro",
            access_token: Some("24.tok"),
        }
    }

    #[test]
    fn path_parts_are_encoded_so_the_token_stays_in_its_place() {
        let p = provider(crate::providers::testing::qianfan_v1());
        let target = VendorTarget {
            provider: &p,
            vendor_model: "a b/../x?y",
            access_token: Some("tok&en"),
        };
        let u = encode(
            &req(r#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#),
            &target,
        )
        .unwrap();
        assert!(
            u.path_and_query
                .ends_with("/chat/a%20b%2F..%2Fx%3Fy?access_token=tok%26en"),
            "{}",
            u.path_and_query
        );
    }

    #[test]
    fn encodes_system_and_merges_turns() {
        let p = provider(crate::providers::testing::qianfan_v1());
        let r = req(
            r#"{"model":"x","messages":[{"role":"system","content":"sys"},{"role":"user","content":"a"},{"role":"user","content":"b"}],"temperature":0,"max_tokens":100}"#,
        );
        let u = encode(&r, &target(&p)).unwrap();
        assert_eq!(
            u.path_and_query,
            format!("{CHAT_PATH}completions_pro?access_token=24.tok")
        );
        let b: Value = serde_json::from_slice(&u.body).unwrap();
        assert_eq!(b["system"], "sys");
        assert_eq!(
            b["messages"],
            json!([{"role": "user", "content": "a\n\nb"}])
        );
        assert_eq!(b["temperature"], 0.01);
        assert_eq!(b["max_output_tokens"], 100);
    }

    #[test]
    fn rejects_a_conversation_that_cannot_alternate() {
        let p = provider(crate::providers::testing::qianfan_v1());
        let r = req(
            r#"{"model":"x","messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"}]}"#,
        );
        assert_eq!(
            encode(&r, &target(&p)).unwrap_err().param.as_deref(),
            Some("messages")
        );
    }

    #[test]
    fn encodes_function_round_trip() {
        let p = provider(crate::providers::testing::qianfan_v1());
        let r = req(r#"{"model":"x","messages":[{"role":"user","content":"w?"},
            {"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"w","arguments":"{}"}}]},
            {"role":"tool","tool_call_id":"c1","content":"sunny"}],"tools":[{"type":"function","function":{"name":"w","parameters":{}}}]}"#);
        let b: Value = serde_json::from_slice(&encode(&r, &target(&p)).unwrap().body).unwrap();
        assert_eq!(b["messages"][1]["function_call"]["name"], "w");
        assert_eq!(
            b["messages"][2],
            json!({"role": "function", "name": "w", "content": "sunny"})
        );
        assert_eq!(b["functions"][0]["name"], "w");
    }

    #[test]
    fn http_200_errors_are_errors() {
        let e = decode(br#"{"error_code":111,"error_msg":"Access token expired"}"#).unwrap_err();
        assert_eq!(e.kind, ErrorKind::UpstreamTokenExpired);
        assert_eq!(
            decode(br#"{"error_code":18,"error_msg":"qps"}"#)
                .unwrap_err()
                .status(),
            429
        );
        assert_eq!(
            decode(br#"{"error_code":336100,"error_msg":"busy"}"#)
                .unwrap_err()
                .status(),
            503
        );
        assert_eq!(
            decode(br#"{"error_code":336003,"error_msg":"bad"}"#)
                .unwrap_err()
                .status(),
            400
        );
        let c = decode(br#"{"id":"as-1","result":"Hello","finish_reason":"normal","usage":{"prompt_tokens":7,"completion_tokens":2,"total_tokens":9}}"#).unwrap();
        assert_eq!(
            (c.choices[0].content.as_deref(), c.choices[0].finish),
            (Some("Hello"), FinishReason::Stop)
        );
    }

    const STREAM: &str = "data: {\"id\":\"as-1\",\"object\":\"chat.completion\",\"created\":1,\"sentence_id\":0,\"is_end\":false,\"is_truncated\":false,\"result\":\"Hel\",\"need_clear_history\":false,\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":0,\"total_tokens\":7}}\n\ndata: {\"id\":\"as-1\",\"object\":\"chat.completion\",\"created\":1,\"sentence_id\":1,\"is_end\":true,\"is_truncated\":false,\"result\":\"lo\",\"need_clear_history\":false,\"finish_reason\":\"normal\",\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":2,\"total_tokens\":9}}\n\n";

    #[test]
    fn stream_decodes_identically_at_any_split() {
        let d = run_stream_all_ways(STREAM.as_bytes(), QianfanStream::new);
        assert_eq!(
            d,
            vec![
                Delta::Text("Hel".into()),
                Delta::Text("lo".into()),
                Delta::Finish(FinishReason::Stop),
                Delta::Usage(Usage::new(7, 2)),
                Delta::Done,
            ]
        );
    }
}
