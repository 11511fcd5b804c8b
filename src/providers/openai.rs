//! OpenAI and OpenAI-compatible servers (vLLM, Ollama, DeepSeek, Moonshot, DashScope
//! compatible mode, Qianfan v2): the wire format is the client's own, so the request only gets
//! its `model` swapped and the reply only gets the public model name back.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{error_from_status, DecodedResponse, EncodeInput, StreamState, UpstreamRequest, Usage};
use crate::chat::{write_json_str, JsonType, RawObject};
use crate::config::Credentials;
use crate::error::{ErrorKind, GatewayError, GwResult};
use crate::sse::{SseError, SseSplitter};

pub fn encode_chat(input: &EncodeInput) -> UpstreamRequest {
    let mut model = Vec::with_capacity(input.vendor_model.len() + 2);
    write_json_str(input.vendor_model, &mut model);
    let mut body = Vec::with_capacity(256);
    input
        .request
        .body
        .write_with(&[("model", &model)], &[], &mut body);
    let mut headers = Vec::with_capacity(2);
    if let Credentials::ApiKey(key) = &input.provider.credentials {
        headers.push(("authorization", format!("Bearer {}", key.expose())));
    }
    if input.request.stream {
        headers.push(("accept", "text/event-stream".to_string()));
    }
    UpstreamRequest {
        path_and_query: format!("{}/chat/completions", input.provider.endpoint.path_prefix),
        headers,
        body: Bytes::from(body),
    }
}

fn read_usage(raw: Option<&RawValue>) -> Option<Usage> {
    let raw = raw?;
    if JsonType::of(raw) != JsonType::Object {
        return None;
    }
    serde_json::from_str(raw.get()).ok()
}

fn public_model_json(public_model: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(public_model.len() + 2);
    write_json_str(public_model, &mut v);
    v
}

pub fn decode_chat(public_model: &str, body: &[u8]) -> GwResult<DecodedResponse> {
    let obj: RawObject = serde_json::from_slice(body).map_err(|_| garbage())?;
    if obj.get("choices").map(JsonType::of) != Some(JsonType::Array) {
        return Err(garbage());
    }
    let usage = read_usage(obj.get("usage"));
    let mut out = Vec::with_capacity(body.len() + 16);
    obj.write_with(
        &[("model", &public_model_json(public_model))],
        &[],
        &mut out,
    );
    Ok(DecodedResponse {
        body: Bytes::from(out),
        usage,
    })
}

fn garbage() -> GatewayError {
    GatewayError::new(
        ErrorKind::UpstreamBadResponse,
        "The upstream provider returned a response the gateway could not understand.",
    )
}

#[derive(Deserialize)]
struct OpenAiErrorEnvelope {
    error: OpenAiError,
}

#[derive(Deserialize)]
struct OpenAiError {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    param: Option<String>,
}

pub fn map_error(status: u16, body: &[u8]) -> GatewayError {
    let (message, param) = match serde_json::from_slice::<OpenAiErrorEnvelope>(body) {
        Ok(env) => (
            env.error
                .message
                .unwrap_or_else(|| format!("upstream returned HTTP {status}")),
            env.error.param,
        ),
        Err(_) => (format!("upstream returned HTTP {status}"), None),
    };
    let e = error_from_status(status, message);
    if e.kind == ErrorKind::InvalidRequest {
        e.with_param(param.as_deref())
    } else {
        e
    }
}

/// Passes OpenAI SSE through event by event: checks each event is JSON, puts the public model
/// name back, keeps the last usage, and makes sure the stream ends with `[DONE]` or an error.
pub struct OpenAiStream {
    splitter: SseSplitter,
    model_json: Vec<u8>,
    usage: Option<Usage>,
    state: StreamState,
}

impl OpenAiStream {
    pub fn new(public_model: &str) -> Self {
        OpenAiStream {
            splitter: SseSplitter::new(),
            model_json: public_model_json(public_model),
            usage: None,
            state: StreamState::Open,
        }
    }

    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> StreamState {
        if self.state != StreamState::Open {
            return self.state;
        }
        let mut failure = None;
        let state = &mut self.state;
        let usage = &mut self.usage;
        let model_json = &self.model_json;
        let res = self.splitter.push(chunk, |ev| {
            if *state != StreamState::Open {
                return;
            }
            if ev.data == "[DONE]" {
                out.extend_from_slice(b"data: [DONE]\n\n");
                *state = StreamState::Done;
                return;
            }
            let Ok(obj) = serde_json::from_str::<RawObject>(&ev.data) else {
                failure = Some(malformed_chunk());
                *state = StreamState::Failed;
                return;
            };
            if ev.event.as_deref() == Some("error") || obj.get("error").is_some() {
                let message = obj
                    .get("error")
                    .and_then(|e| serde_json::from_str::<OpenAiError>(e.get()).ok())
                    .and_then(|e| e.message)
                    .unwrap_or_else(|| "the upstream stream failed".into());
                failure = Some(GatewayError::new(ErrorKind::UpstreamError, message));
                *state = StreamState::Failed;
                return;
            }
            if let Some(u) = read_usage(obj.get("usage")) {
                *usage = Some(u);
            }
            out.extend_from_slice(b"data: ");
            if obj.get("model").is_some() {
                obj.write_with(&[("model", model_json)], &[], out);
            } else {
                out.extend_from_slice(ev.data.as_bytes());
            }
            out.extend_from_slice(b"\n\n");
        });
        if let Err(e) = res {
            failure = Some(match e {
                SseError::EventTooLarge | SseError::InvalidUtf8 => malformed_chunk(),
            });
            self.state = StreamState::Failed;
        }
        if let Some(f) = failure {
            out.extend_from_slice(&f.sse_event());
        }
        self.state
    }

    pub fn finish(&mut self, out: &mut Vec<u8>) -> StreamState {
        if self.state == StreamState::Open {
            // A last event without its blank line, then a close without [DONE].
            if let Ok(Some(ev)) = self.splitter.finish() {
                let mut tail = ev.data.into_bytes();
                tail.extend_from_slice(b"\n\n");
                let mut framed = b"data: ".to_vec();
                framed.extend_from_slice(&tail);
                self.push(&framed, out);
            }
        }
        if self.state == StreamState::Open {
            out.extend_from_slice(
                &GatewayError::new(
                    ErrorKind::UpstreamBadResponse,
                    "The upstream provider ended the stream before it was complete.",
                )
                .sse_event(),
            );
            self.state = StreamState::Failed;
        }
        self.state
    }
}

fn malformed_chunk() -> GatewayError {
    GatewayError::new(
        ErrorKind::UpstreamBadResponse,
        "The upstream provider sent a malformed stream event.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &str = concat!(
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-2024\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-2024\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hé\"},\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-2024\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":4,\"total_tokens\":13}}\n\n",
        "data: [DONE]\n\n"
    );

    fn run(chunks: &[&[u8]]) -> (String, StreamState, Option<Usage>) {
        let mut d = OpenAiStream::new("public");
        let mut out = Vec::new();
        let mut state = StreamState::Open;
        for c in chunks {
            state = d.push(c, &mut out);
        }
        if state == StreamState::Open {
            state = d.finish(&mut out);
        }
        (String::from_utf8(out).unwrap(), state, d.usage())
    }

    #[test]
    fn passes_the_stream_through_with_the_public_model() {
        let (out, state, usage) = run(&[STREAM.as_bytes()]);
        assert_eq!(state, StreamState::Done);
        assert!(!out.contains("gpt-4o-2024"));
        assert_eq!(out.matches("\"model\":\"public\"").count(), 3);
        assert!(out.ends_with("data: [DONE]\n\n"));
        assert_eq!(usage.unwrap().total_tokens, 13);
    }

    #[test]
    fn byte_by_byte_equals_whole() {
        let whole = run(&[STREAM.as_bytes()]);
        let bytes: Vec<&[u8]> = STREAM.as_bytes().chunks(1).collect();
        assert_eq!(run(&bytes), whole);
        for i in 0..STREAM.len() {
            let (a, b) = STREAM.as_bytes().split_at(i);
            assert_eq!(run(&[a, b]), whole, "split at {i}");
        }
    }

    #[test]
    fn truncation_and_garbage_end_with_an_error_event() {
        let cut = &STREAM[..STREAM.find("data: [DONE]").unwrap()];
        let (out, state, _) = run(&[cut.as_bytes()]);
        assert_eq!(state, StreamState::Failed);
        assert!(out.contains("data: {\"error\":"));
        assert!(out.ends_with("data: [DONE]\n\n"));

        let (out, state, _) = run(&[b"data: {not json\n\n"]);
        assert_eq!(state, StreamState::Failed);
        assert!(out.starts_with("data: {\"error\":"));
    }

    #[test]
    fn decodes_and_rejects_non_streaming_bodies() {
        let body = br#"{"id":"x","object":"chat.completion","model":"v","choices":[{"index":0,"message":{"role":"assistant","content":"Hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}"#;
        let d = decode_chat("pub", body).unwrap();
        assert!(std::str::from_utf8(&d.body)
            .unwrap()
            .contains("\"model\":\"pub\""));
        assert_eq!(d.usage.unwrap().prompt_tokens, 5);
        assert!(decode_chat("pub", b"<html>").is_err());
        assert!(decode_chat("pub", b"{\"id\":1}").is_err());
    }

    #[test]
    fn maps_vendor_errors() {
        let body = br#"{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#;
        let e = map_error(429, body);
        assert_eq!(
            (e.status(), e.message.as_str()),
            (429, "Rate limit reached")
        );
        assert_eq!(map_error(400, b"{}").status(), 400);
        assert_eq!(map_error(401, b"{}").status(), 502);
        assert_eq!(map_error(500, b"oops").status(), 502);
        assert_eq!(map_error(503, b"").status(), 503);
    }
}
