//! What a sampled request's span says of its reply (`gen_ai.response.*`), read from the bytes
//! the client gets: one JSON body, or the events of a stream, in any of the client APIs
//! (Chat Completions, Anthropic Messages, Responses).

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

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
        if let Ok(event) = serde_json::from_slice::<Event>(body) {
            self.read(&event);
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
    fn read(&mut self, e: &Event) {
        // Anthropic's message_start and the Responses API's events carry the reply inside.
        let inner = e
            .message
            .or(e.response)
            .and_then(|r| serde_json::from_str::<Event>(r.get()).ok());
        let reply = inner.as_ref().unwrap_or(e);
        if self.id.is_none() {
            self.id = text(reply.id).map(Cow::into_owned);
        }
        if self.model.is_none() {
            self.model = text(reply.model).map(Cow::into_owned);
        }
        let mut reasons: Vec<Cow<str>> = Vec::new();
        let choices: Vec<Choice> = e
            .choices
            .and_then(|c| serde_json::from_str(c.get()).ok())
            .unwrap_or_default();
        for choice in &choices {
            reasons.extend(text(choice.finish_reason));
            if let Some(out) = self.text.as_mut() {
                let content = [choice.delta, choice.message]
                    .into_iter()
                    .flatten()
                    .find_map(|m| serde_json::from_str::<Content>(m.get()).ok()?.content);
                push_text(out, text(content.or(choice.text)).as_deref());
            }
        }
        // Anthropic: stop_reason on the message, or on message_delta's delta (an object there;
        // the Responses API's text deltas are strings).
        let delta: Option<Delta> = e.delta.and_then(|d| serde_json::from_str(d.get()).ok());
        reasons.extend(text(reply.stop_reason));
        reasons.extend(delta.as_ref().and_then(|d| text(d.stop_reason)));
        // The Responses API: the finished response's status.
        if text(reply.object).as_deref() == Some("response") {
            let status = text(reply.status);
            if let Some("completed" | "incomplete" | "failed" | "cancelled") = status.as_deref() {
                reasons.extend(status);
            }
        }
        for r in reasons {
            if !self.finish_reasons.iter().any(|known| *known == r) {
                self.finish_reasons.push(r.into_owned());
            }
        }
        if let Some(out) = self.text.as_mut() {
            push_text(out, delta.as_ref().and_then(|d| text(d.text)).as_deref());
            if text(e.kind).as_deref() == Some("response.output_text.delta") {
                push_text(out, text(e.delta).as_deref());
            }
            if inner.is_none() {
                let pieces = |raw: Option<&RawValue>| -> Vec<String> {
                    raw.and_then(|r| serde_json::from_str::<Vec<Block>>(r.get()).ok())
                        .unwrap_or_default()
                        .iter()
                        .flat_map(|b| {
                            let own = text(b.text).map(Cow::into_owned);
                            let parts: Vec<Block> = b
                                .content
                                .and_then(|c| serde_json::from_str(c.get()).ok())
                                .unwrap_or_default();
                            own.into_iter()
                                .chain(
                                    parts
                                        .iter()
                                        .filter_map(|p| text(p.text).map(Cow::into_owned)),
                                )
                                .collect::<Vec<_>>()
                        })
                        .collect()
                };
                for piece in pieces(e.content).into_iter().chain(pieces(e.output)) {
                    push_text(out, Some(&piece));
                }
            }
        }
    }
}

/// What a reply object or event may say, each member kept raw until it is looked at: typed
/// where a vendor is loose, and no map is built of the rest (a serde_json::Value of each reply
/// cost a traced request some 8,000 instructions).
#[derive(Deserialize)]
struct Event<'a> {
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    model: Option<&'a RawValue>,
    #[serde(borrow)]
    object: Option<&'a RawValue>,
    #[serde(borrow, rename = "type")]
    kind: Option<&'a RawValue>,
    #[serde(borrow)]
    status: Option<&'a RawValue>,
    #[serde(borrow)]
    stop_reason: Option<&'a RawValue>,
    #[serde(borrow)]
    choices: Option<&'a RawValue>,
    #[serde(borrow)]
    message: Option<&'a RawValue>,
    #[serde(borrow)]
    response: Option<&'a RawValue>,
    #[serde(borrow)]
    delta: Option<&'a RawValue>,
    #[serde(borrow)]
    content: Option<&'a RawValue>,
    #[serde(borrow)]
    output: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(borrow)]
    finish_reason: Option<&'a RawValue>,
    #[serde(borrow)]
    delta: Option<&'a RawValue>,
    #[serde(borrow)]
    message: Option<&'a RawValue>,
    #[serde(borrow)]
    text: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Content<'a> {
    #[serde(borrow)]
    content: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Delta<'a> {
    #[serde(borrow)]
    stop_reason: Option<&'a RawValue>,
    #[serde(borrow)]
    text: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Block<'a> {
    #[serde(borrow)]
    text: Option<&'a RawValue>,
    #[serde(borrow)]
    content: Option<&'a RawValue>,
}

/// A member that is a string, as text: borrowed when it has no escapes (ids, models and
/// reasons never do), unescaped otherwise; None for any other JSON.
fn text(raw: Option<&RawValue>) -> Option<Cow<'_, str>> {
    let s = raw?.get();
    let inner = s.strip_prefix('"')?.strip_suffix('"')?;
    if inner.contains('\\') {
        serde_json::from_str::<String>(s).ok().map(Cow::Owned)
    } else {
        Some(Cow::Borrowed(inner))
    }
}

fn push_text(text: &mut String, piece: Option<&str>) {
    let Some(piece) = piece else { return };
    let room = MAX_TEXT.saturating_sub(text.len());
    text.push_str(&piece[..piece.floor_char_boundary(room)]);
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
