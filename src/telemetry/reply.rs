//! What a sampled request's span says of its reply (`gen_ai.response.*`), read from the bytes
//! the client gets: one JSON body, or the events of a stream, in any of the client APIs
//! (Chat Completions, Anthropic Messages, Responses).

use serde_json::Value;

/// The most reply text kept for `capture_content`.
const MAX_TEXT: usize = 64 * 1024;
/// A stream line longer than this is not read (a reply's facts are in short events).
const MAX_LINE: usize = 1024 * 1024;

#[derive(Default)]
pub(crate) struct ReplyFacts {
    pub(crate) id: Option<String>,
    pub(crate) model: Option<String>,
    pub(crate) finish_reasons: Vec<String>,
    /// The reply's text, with `capture_content`.
    pub(crate) text: Option<String>,
    /// A stream's line not yet ended.
    partial: Vec<u8>,
}

impl ReplyFacts {
    pub(crate) fn new(capture: bool) -> Self {
        ReplyFacts {
            text: capture.then(String::new),
            ..Default::default()
        }
    }

    /// A whole JSON reply.
    pub(crate) fn read_body(&mut self, body: &[u8]) {
        if let Ok(value) = serde_json::from_slice::<Value>(body) {
            self.read(&value);
        }
    }

    /// Stream bytes as they go out: each `data:` line is read once it has ended.
    pub(crate) fn read_stream(&mut self, mut bytes: &[u8]) {
        while let Some(end) = memchr::memchr(b'\n', bytes) {
            let line = &bytes[..end];
            if self.partial.is_empty() {
                self.read_line(line);
            } else {
                let mut whole = std::mem::take(&mut self.partial);
                whole.extend_from_slice(line);
                self.read_line(&whole);
            }
            bytes = &bytes[end + 1..];
        }
        if self.partial.len() + bytes.len() <= MAX_LINE {
            self.partial.extend_from_slice(bytes);
        }
    }

    fn read_line(&mut self, line: &[u8]) {
        let Some(data) = line.strip_prefix(b"data:") else {
            return;
        };
        let data = data.trim_ascii();
        if data.first() == Some(&b'{') {
            self.read_body(data);
        }
    }

    /// One reply object or stream event, whichever API's it is.
    fn read(&mut self, v: &Value) {
        // Anthropic's message_start and the Responses API's events carry the reply inside.
        let inner = v.get("message").or_else(|| v.get("response"));
        let reply = inner.filter(|r| r.is_object()).unwrap_or(v);
        if self.id.is_none() {
            self.id = reply.get("id").and_then(Value::as_str).map(str::to_string);
        }
        if self.model.is_none() {
            self.model = reply
                .get("model")
                .and_then(Value::as_str)
                .map(str::to_string);
        }
        let mut reasons: Vec<&str> = Vec::new();
        for choice in v
            .get("choices")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(r) = choice.get("finish_reason").and_then(Value::as_str) {
                reasons.push(r);
            }
            if let Some(text) = self.text.as_mut() {
                let content = choice
                    .pointer("/delta/content")
                    .or_else(|| choice.pointer("/message/content"))
                    .or_else(|| choice.get("text"));
                push_text(text, content.and_then(Value::as_str));
            }
        }
        // Anthropic: stop_reason on the message, or on message_delta's delta.
        let stop = reply
            .get("stop_reason")
            .or_else(|| v.pointer("/delta/stop_reason"));
        reasons.extend(stop.and_then(Value::as_str));
        // The Responses API: the finished response's status.
        if reply.get("object").and_then(Value::as_str) == Some("response") {
            if let Some(s @ ("completed" | "incomplete" | "failed" | "cancelled")) =
                reply.get("status").and_then(Value::as_str)
            {
                reasons.push(s);
            }
        }
        for r in reasons {
            if !self.finish_reasons.iter().any(|known| known == r) {
                self.finish_reasons.push(r.to_string());
            }
        }
        if let Some(text) = self.text.as_mut() {
            // Anthropic's text deltas and whole content; the Responses API's text deltas.
            let delta = v.pointer("/delta/text").or_else(|| {
                (v.get("type").and_then(Value::as_str) == Some("response.output_text.delta"))
                    .then(|| v.get("delta"))
                    .flatten()
            });
            push_text(text, delta.and_then(Value::as_str));
            if inner.is_none() {
                for block in v
                    .get("content")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    push_text(text, block.get("text").and_then(Value::as_str));
                }
                for item in v
                    .get("output")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    for part in item
                        .get("content")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        push_text(text, part.get("text").and_then(Value::as_str));
                    }
                }
            }
        }
    }
}

fn push_text(text: &mut String, piece: Option<&str>) {
    let Some(piece) = piece else { return };
    let room = MAX_TEXT.saturating_sub(text.len());
    let mut cut = piece.len().min(room);
    while !piece.is_char_boundary(cut) {
        cut -= 1;
    }
    text.push_str(&piece[..cut]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chat_stream_split_anywhere() {
        let stream = b"data: {\"id\":\"chatcmpl-1\",\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\ndata: {\"id\":\"chatcmpl-1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n";
        for split in [1, 7, 50, stream.len() - 3] {
            let mut f = ReplyFacts::new(true);
            f.read_stream(&stream[..split]);
            f.read_stream(&stream[split..]);
            assert_eq!(f.id.as_deref(), Some("chatcmpl-1"));
            assert_eq!(f.model.as_deref(), Some("gpt-4o-mini"));
            assert_eq!(f.finish_reasons, ["stop"]);
            assert_eq!(f.text.as_deref(), Some("Hello"));
        }
    }

    #[test]
    fn anthropic_and_responses_replies() {
        let mut f = ReplyFacts::new(true);
        f.read_stream(b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"model\":\"claude\"}}\n\nevent: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"}}\n\n");
        assert_eq!(
            (f.id.as_deref(), f.text.as_deref()),
            (Some("msg_1"), Some("Hi"))
        );
        assert_eq!(f.finish_reasons, ["end_turn"]);

        let mut f = ReplyFacts::new(false);
        f.read_body(br#"{"id":"resp_1","object":"response","status":"completed","model":"m","output":[{"content":[{"text":"x"}]}]}"#);
        assert_eq!((f.id.as_deref(), f.text), (Some("resp_1"), None));
        assert_eq!(f.finish_reasons, ["completed"]);
    }
}
