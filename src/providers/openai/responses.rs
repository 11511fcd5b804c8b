//! OpenAI's Responses API passed through: a Responses API client calling a model that routes
//! to a vendor serving `/responses` (OpenAI; an `openai_compatible` server configured so) gets
//! its body there with only `model` replaced, and the Response object and its events back with
//! only `model` put back: hosted tools, reasoning items with their encrypted content, and
//! members added after this gateway was written all work as at OpenAI.

use bytes::Bytes;
use serde_json::Value;

use super::wire::{write_json_str, RawObject};
use crate::error::GwResult;
use crate::providers::sse::{Event, PassEvent, PassStream};
use crate::providers::{StreamState, UpstreamRequest, Usage, VendorTarget};

/// The client's body with `model` replaced, to `/responses`.
pub fn encode_responses(body: &[u8], target: &VendorTarget) -> GwResult<UpstreamRequest> {
    let obj = RawObject::parse(body).map_err(super::wire::invalid_json)?;
    let stream = obj.get("stream").is_some_and(|v| v.get() == "true");
    let mut model = Vec::with_capacity(target.vendor_model.len() + 2);
    write_json_str(target.vendor_model, &mut model);
    let mut out = Vec::with_capacity(body.len() + 16);
    obj.write_with(&[("model", &model)], &[], &mut out);
    Ok(super::request(target, stream, out, "/responses"))
}

/// The usage of a Response object, in the gateway's terms.
fn usage_of(response: &Value) -> Option<Usage> {
    let u = response.get("usage")?;
    let tokens = |at: &str| u.pointer(at).and_then(Value::as_u64).unwrap_or(0);
    let usage = Usage::new(tokens("/input_tokens"), tokens("/output_tokens"));
    Some(usage.with_details(
        tokens("/input_tokens_details/cached_tokens"),
        tokens("/output_tokens_details/reasoning_tokens"),
    ))
}

/// A whole Response object with the public model put back, and its usage; anything that is
/// not a Response object is a bad reply.
pub fn decode_responses(public_model: &str, body: &[u8]) -> GwResult<(Bytes, Option<Usage>)> {
    let mut response: Value =
        serde_json::from_slice(body).map_err(|_| crate::providers::unreadable_reply())?;
    if response.get("object").and_then(Value::as_str) != Some("response") {
        return Err(crate::providers::unreadable_reply());
    }
    response["model"] = Value::String(public_model.to_string());
    let usage = usage_of(&response);
    let out = serde_json::to_vec(&response).expect("json serializes");
    Ok((Bytes::from(out), usage))
}

/// The Responses API's events passed on one by one; those that carry the Response object
/// get the public model put back. The finished Response is kept (to store it) and its usage
/// read.
pub type ResponsesStream = PassStream<ResponsesPass>;

pub fn responses_stream(public_model: &str) -> ResponsesStream {
    PassStream::new(ResponsesPass {
        public_model: public_model.to_string(),
        usage: None,
        completed: None,
        deltas: 0,
    })
}

pub struct ResponsesPass {
    public_model: String,
    usage: Option<Usage>,
    completed: Option<Value>,
    /// Text and argument deltas passed on.
    deltas: u64,
}

impl ResponsesPass {
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// The finished Response object, once `response.completed` (or `.incomplete`) came.
    pub fn completed(&self) -> Option<&Value> {
        self.completed.as_ref()
    }

    pub fn content_events(&self) -> u64 {
        self.deltas
    }
}

impl PassEvent for ResponsesPass {
    /// Ends the stream with `response.failed`.
    fn fail(&mut self, e: crate::error::GatewayError, out: &mut Vec<u8>) {
        let failed = serde_json::json!({"type": "response.failed", "response": {
            "object": "response", "status": "failed", "model": self.public_model,
            "error": {"code": e.kind.as_str(), "message": e.message}}});
        crate::api::named_event(out, "response.failed", &failed);
    }

    fn pass(&mut self, e: &Event, out: &mut Vec<u8>) -> StreamState {
        let Ok(mut data) = serde_json::from_str::<Value>(&e.data) else {
            self.fail(crate::providers::malformed_event(), out);
            return StreamState::Failed;
        };
        let kind = data
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let state = match kind.as_str() {
            "response.output_text.delta" | "response.function_call_arguments.delta" => {
                self.deltas += 1;
                StreamState::Open
            }
            "response.completed" | "response.incomplete" => StreamState::Done,
            "response.failed" | "error" => StreamState::Failed,
            _ => StreamState::Open,
        };
        if let Some(response) = data.get_mut("response").filter(|r| r.is_object()) {
            response["model"] = Value::String(self.public_model.clone());
            if state == StreamState::Done {
                self.usage = usage_of(response);
                self.completed = Some(response.clone());
            }
        }
        let name = e.event.as_deref().unwrap_or(&kind);
        crate::api::named_event(out, name, &data);
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_get_the_public_model_and_the_finished_response_is_kept() {
        let events = "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_1\",\"model\":\"gpt-x\",\"output\":[]}}\n\n\
event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":1,\"delta\":\"hi\"}\n\n\
event: response.completed\ndata: {\"type\":\"response.completed\",\"sequence_number\":2,\"response\":{\"id\":\"resp_1\",\"model\":\"gpt-x\",\"output\":[{\"type\":\"reasoning\",\"encrypted_content\":\"e==\"}],\"usage\":{\"input_tokens\":4,\"output_tokens\":2}}}\n\n";
        let mut s = responses_stream("pub");
        let mut out = Vec::new();
        let mut state = StreamState::Open;
        for piece in events.as_bytes().chunks(5) {
            state = s.push(piece, &mut out);
        }
        assert_eq!(state, StreamState::Done);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.matches("\"model\":\"pub\"").count(), 2);
        assert!(!text.contains("gpt-x") && text.contains("\"encrypted_content\":\"e==\""));
        assert_eq!(s.events.usage(), Some(Usage::new(4, 2)));
        assert_eq!(s.events.completed().unwrap()["id"], "resp_1");
        assert_eq!(s.events.content_events(), 1);
    }

    #[test]
    fn a_cut_stream_ends_failed_and_a_whole_reply_is_checked() {
        let mut s = responses_stream("pub");
        let mut out = Vec::new();
        s.push(
            b"event: response.created\ndata: {\"type\":\"response.created\"}\n\n",
            &mut out,
        );
        assert_eq!(s.finish(&mut out), StreamState::Failed);
        assert!(String::from_utf8(out).unwrap().contains("response.failed"));
        let (body, usage) = decode_responses(
            "pub",
            br#"{"object":"response","model":"x","usage":{"input_tokens":1,"output_tokens":2}}"#,
        )
        .unwrap();
        assert!(String::from_utf8_lossy(&body).contains("\"model\":\"pub\""));
        assert_eq!(usage, Some(Usage::new(1, 2)));
        assert!(decode_responses("pub", b"{\"object\":\"chat.completion\"}").is_err());
    }
}
