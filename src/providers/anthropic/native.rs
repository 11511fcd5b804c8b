//! Anthropic's own Messages API passed through. A client that speaks it (Claude Code, the
//! `anthropic` SDK) calling a model that routes to an Anthropic target gets its body to the
//! vendor with only `model` replaced, and the reply and its events back with only `model` put
//! back: thinking blocks and their signatures, `cache_control`, `context_management`, betas and
//! whatever Anthropic adds next survive, which a translation through the internal model would
//! lose (and Anthropic refuses a tool-use turn whose thinking block is missing).

use bytes::Bytes;
use serde_json::Value;

use super::{AnthropicEvents, AnthropicResponse, API_VERSION};
use crate::error::GwResult;
use crate::providers::model::Delta;
use crate::providers::openai::wire::{write_json_str, RawObject};
use crate::providers::sse::{Event, PassEvent, PassStream};
use crate::providers::{EventDecoder, StreamState, UpstreamRequest, Usage, VendorTarget};

/// The client's body for the vendor: `model` replaced, every other member as the client wrote
/// it; `anthropic-beta` passed on when the client sent one.
pub fn encode_native(
    body: &[u8],
    target: &VendorTarget,
    beta: Option<&str>,
) -> GwResult<UpstreamRequest> {
    let obj = RawObject::parse(body).map_err(crate::providers::openai::wire::invalid_json)?;
    let stream = obj.get("stream").is_some_and(|v| v.get() == "true");
    let mut model = Vec::with_capacity(target.vendor_model.len() + 2);
    write_json_str(target.vendor_model, &mut model);
    let mut out = Vec::with_capacity(body.len() + 16);
    obj.write_with(&[("model", &model)], &[], &mut out);
    let mut headers = vec![("anthropic-version", API_VERSION.to_string())];
    if let Some(k) = &target.provider.api_key {
        headers.push(("x-api-key", k.expose().to_string()));
    }
    if let Some(beta) = beta {
        headers.push(("anthropic-beta", beta.to_string()));
    }
    if stream {
        headers.push(("accept", "text/event-stream".into()));
    }
    Ok(UpstreamRequest {
        path_and_query: format!("{}/v1/messages", target.provider.endpoint.path_prefix),
        headers,
        body: Bytes::from(out),
    })
}

/// A whole reply with the public model name put back, and its usage; a body that is not a
/// Message (with a stop reason) is a bad reply.
pub fn decode_native(public_model: &str, body: &[u8]) -> GwResult<(Bytes, Option<Usage>)> {
    let typed: AnthropicResponse =
        serde_json::from_slice(body).map_err(|_| crate::providers::unreadable_reply())?;
    typed
        .stop_reason
        .ok_or_else(crate::providers::unreadable_reply)?;
    let obj = RawObject::parse(body).map_err(|_| crate::providers::unreadable_reply())?;
    let mut model = Vec::with_capacity(public_model.len() + 2);
    write_json_str(public_model, &mut model);
    let mut out = Vec::with_capacity(body.len() + 16);
    obj.write_with(&[("model", &model)], &[], &mut out);
    let usage = typed.usage.map(super::AnthropicUsage::usage);
    Ok((Bytes::from(out), usage))
}

/// Anthropic's events passed on one by one, `message_start`'s model put back; the same events
/// decoded alongside for the usage and for how the stream ended.
pub type NativeStream = PassStream<AnthropicPass>;

pub fn native_stream(public_model: &str) -> NativeStream {
    PassStream::new(AnthropicPass {
        decoder: AnthropicEvents::default(),
        public_model: public_model.to_string(),
        usage: None,
        received: 0,
    })
}

pub struct AnthropicPass {
    decoder: AnthropicEvents,
    public_model: String,
    usage: Option<Usage>,
    /// Tokens of text, thinking and tool input passed on, estimated at 4 bytes a token.
    received: u64,
}

impl AnthropicPass {
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    pub fn received_tokens(&self) -> u64 {
        self.received
    }
}

impl PassEvent for AnthropicPass {
    /// Ends the stream with Anthropic's `error` event.
    fn fail(&mut self, e: crate::error::GatewayError, out: &mut Vec<u8>) {
        let body = crate::api::anthropic::error_json(&e);
        let data: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        crate::api::named_event(out, "error", &data);
    }

    fn pass(&mut self, e: &Event, out: &mut Vec<u8>) -> StreamState {
        let mut state = StreamState::Open;
        let mut failure = None;
        let (usage, received) = (&mut self.usage, &mut self.received);
        self.decoder.handle(e, &mut |d| match d {
            Delta::Text(t) | Delta::Reasoning(t) => *received += (t.len() as u64).div_ceil(4),
            Delta::ToolArgs { arguments, .. } => *received += (arguments.len() as u64).div_ceil(4),
            Delta::Usage(u) => *usage = Some(u),
            Delta::Done => state = StreamState::Done,
            Delta::Error(e) => failure = Some(e),
            Delta::ToolStart { .. } | Delta::Finish(_) => {}
        });
        let name = e.event.as_deref().unwrap_or("message");
        if let Some(failure) = failure {
            // The vendor's own error event goes through; an event that is not JSON does not.
            if name != "error" {
                self.fail(failure, out);
            }
            return StreamState::Failed;
        }
        if name == "message_start" {
            if let Ok(mut data) = serde_json::from_str::<Value>(&e.data) {
                data["message"]["model"] = Value::String(self.public_model.clone());
                crate::api::named_event(out, name, &data);
                return state;
            }
        }
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\ndata: ");
        out.extend_from_slice(e.data.as_bytes());
        out.extend_from_slice(b"\n\n");
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVENTS: &str = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-x\",\"content\":[],\"usage\":{\"input_tokens\":10,\"cache_read_input_tokens\":5,\"output_tokens\":1}}}\n\n\
event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\",\"signature\":\"\"}}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"signature_delta\",\"signature\":\"sig==\"}}\n\n\
event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":7}}\n\n\
event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";

    #[test]
    fn events_go_through_with_the_public_model_and_usage_is_read() {
        let mut s = native_stream("claude");
        let mut out = Vec::new();
        // Split at every byte: framing holds across reads.
        let mut state = StreamState::Open;
        for b in EVENTS.as_bytes().chunks(7) {
            state = s.push(b, &mut out);
        }
        assert_eq!(state, StreamState::Done);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("\"model\":\"claude\""), "{text}");
        assert!(text.contains("\"signature\":\"sig==\""), "{text}");
        assert_eq!(text.matches("event: ").count(), 5);
        assert_eq!(s.events.usage(), Some(Usage::new(15, 7).with_details(5, 0)));
    }

    #[test]
    fn a_stream_cut_short_ends_with_an_error_event() {
        let mut s = native_stream("claude");
        let mut out = Vec::new();
        s.push(&EVENTS.as_bytes()[..200], &mut out);
        assert_eq!(s.finish(&mut out), StreamState::Failed);
        assert!(String::from_utf8(out).unwrap().contains("event: error"));
    }

    #[test]
    fn a_whole_reply_keeps_every_block_and_gets_the_public_model() {
        let body = br#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-x","content":[{"type":"thinking","thinking":"hm","signature":"abc"},{"type":"text","text":"hi"}],"stop_reason":"end_turn","usage":{"input_tokens":3,"output_tokens":2}}"#;
        let (reply, usage) = decode_native("claude", body).unwrap();
        let v: Value = serde_json::from_slice(&reply).unwrap();
        assert_eq!(v["model"], "claude");
        assert_eq!(v["content"][0]["signature"], "abc");
        assert_eq!(usage, Some(Usage::new(3, 2)));
        assert!(decode_native("claude", b"{\"type\":\"message\"}").is_err());
    }
}
