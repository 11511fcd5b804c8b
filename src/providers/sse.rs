//! Incremental Server-Sent Events framing: bytes in at any split, whole events out.
//!
//! Boundaries are found on bytes, never on a lossy string, so a multi-byte UTF-8 character split
//! across two reads is reassembled before anyone decodes it.

use bytes::{Buf, BytesMut};

/// An upstream event larger than this is treated as garbage rather than buffered without bound.
pub const MAX_EVENT_BYTES: usize = 4 * 1024 * 1024;

/// One parsed event. `data` is the `data:` lines joined with `\n`, as the SSE spec says.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Event {
    pub event: Option<String>,
    pub data: String,
    pub id: Option<String>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum SseError {
    EventTooLarge,
    InvalidUtf8,
}

#[derive(Default)]
pub struct SseSplitter {
    buf: BytesMut,
}

impl SseSplitter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds bytes; calls `on_event` for every complete event. Comment-only and empty events
    /// are skipped (DashScope's `:HTTP_STATUS/200` lines are comments).
    pub fn push(&mut self, chunk: &[u8], mut on_event: impl FnMut(Event)) -> Result<(), SseError> {
        self.buf.extend_from_slice(chunk);
        while let Some((end, sep_len)) = find_boundary(&self.buf) {
            let raw = self.buf.split_to(end);
            self.buf.advance(sep_len);
            if let Some(ev) = parse_event(&raw)? {
                on_event(ev);
            }
        }
        if self.buf.len() > MAX_EVENT_BYTES {
            return Err(SseError::EventTooLarge);
        }
        Ok(())
    }

    /// At end of stream: a last event without its blank line still counts (Gemini and some
    /// servers close right after the final `data:` line).
    pub fn finish(&mut self) -> Result<Option<Event>, SseError> {
        let raw = std::mem::take(&mut self.buf);
        if raw.iter().all(|b| b.is_ascii_whitespace()) {
            return Ok(None);
        }
        parse_event(&raw)
    }
}

/// The end of the first event and the length of the blank-line separator after it
/// (`\n\n`, `\r\n\r\n`, `\r\r`, or mixed).
fn find_boundary(buf: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while let Some(pos) = memchr::memchr2(b'\n', b'\r', &buf[i..]) {
        let p = i + pos;
        let first_len = line_break_len(&buf[p..])?;
        let q = p + first_len;
        if q >= buf.len() {
            return None;
        }
        if let Some(second_len) = match buf[q] {
            b'\n' | b'\r' => line_break_len(&buf[q..]),
            _ => Some(0),
        } {
            if second_len > 0 {
                return Some((p, first_len + second_len));
            }
        } else {
            // A lone `\r` at the very end may be the first half of `\r\n`: wait for more.
            return None;
        }
        i = q;
    }
    None
}

/// Length of the line break at the start of `b`, or None when a trailing `\r` could still
/// become `\r\n`.
fn line_break_len(b: &[u8]) -> Option<usize> {
    match b {
        [b'\r', b'\n', ..] => Some(2),
        [b'\r'] => None,
        [b'\r', ..] | [b'\n', ..] => Some(1),
        _ => Some(0),
    }
}

fn parse_event(raw: &[u8]) -> Result<Option<Event>, SseError> {
    let text = std::str::from_utf8(raw).map_err(|_| SseError::InvalidUtf8)?;
    let mut ev = Event::default();
    let mut has_data = false;
    // Lines split with memchr: `str::split` on a set of chars costs some 15 instructions a
    // byte, most of an event's reading.
    let mut rest = text;
    while !rest.is_empty() {
        let end = memchr::memchr2(b'\n', b'\r', rest.as_bytes()).unwrap_or(rest.len());
        let line = &rest[..end];
        rest = rest.get(end + 1..).unwrap_or("");
        if line.is_empty() || line.starts_with(':') {
            continue;
        }
        let (field, value) = match memchr::memchr(b':', line.as_bytes()) {
            Some(colon) => {
                let v = &line[colon + 1..];
                (&line[..colon], v.strip_prefix(' ').unwrap_or(v))
            }
            None => (line, ""),
        };
        match field {
            "data" => {
                if has_data {
                    ev.data.push('\n');
                }
                ev.data.push_str(value);
                has_data = true;
            }
            "event" => ev.event = Some(value.to_string()),
            "id" => ev.id = Some(value.to_string()),
            _ => {}
        }
    }
    if !has_data && ev.event.is_none() {
        return Ok(None);
    }
    Ok(Some(ev))
}

/// One event of a stream passed through in the client's own API (Anthropic's to Anthropic
/// clients, the Responses API's to its clients).
pub trait PassEvent {
    /// Writes the event as the client is to get it; where the stream is after it.
    fn pass(&mut self, e: &Event, out: &mut Vec<u8>) -> crate::providers::StreamState;
    /// Writes the API's error event, for a stream the gateway must end.
    fn fail(&mut self, e: crate::error::GatewayError, out: &mut Vec<u8>);
}

/// SSE framing around a [`PassEvent`], and the ending every passed-through stream shares: a
/// broken frame, or a body that ends before the API's last event, ends it with the API's
/// error event, never silently.
pub struct PassStream<P> {
    splitter: SseSplitter,
    pub events: P,
    state: crate::providers::StreamState,
}

impl<P: PassEvent> PassStream<P> {
    pub fn new(events: P) -> Self {
        PassStream {
            splitter: SseSplitter::new(),
            events,
            state: crate::providers::StreamState::Open,
        }
    }

    fn open(&self) -> bool {
        self.state == crate::providers::StreamState::Open
    }

    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> crate::providers::StreamState {
        if !self.open() {
            return self.state;
        }
        let mut events = Vec::new();
        if self.splitter.push(chunk, |e| events.push(e)).is_err() {
            return self.fail(crate::providers::malformed_event(), out);
        }
        for e in &events {
            if !self.open() {
                break;
            }
            self.state = self.events.pass(e, out);
        }
        self.state
    }

    /// The vendor's body ended.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> crate::providers::StreamState {
        if self.open() {
            if let Ok(Some(e)) = self.splitter.finish() {
                self.state = self.events.pass(&e, out);
            }
        }
        if self.open() {
            return self.fail(crate::providers::truncated_stream(), out);
        }
        self.state
    }

    pub fn fail(
        &mut self,
        e: crate::error::GatewayError,
        out: &mut Vec<u8>,
    ) -> crate::providers::StreamState {
        self.events.fail(e, out);
        self.state = crate::providers::StreamState::Failed;
        self.state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_events(input: &[u8], splits: &[usize]) -> Vec<Event> {
        let mut s = SseSplitter::new();
        let mut out = Vec::new();
        let mut last = 0;
        for &at in splits.iter().chain(std::iter::once(&input.len())) {
            s.push(&input[last..at], |e| out.push(e)).unwrap();
            last = at;
        }
        if let Some(e) = s.finish().unwrap() {
            out.push(e);
        }
        out
    }

    const SAMPLE: &str = "id:1\nevent:result\n:HTTP_STATUS/200\ndata:{\"a\":\"é\"}\n\n: keep-alive\n\nevent: ping\r\ndata: {}\r\n\r\ndata: line1\ndata: line2\n\ndata: [DONE]";

    #[test]
    fn splits_events_of_every_framing() {
        let evs = all_events(SAMPLE.as_bytes(), &[]);
        assert_eq!(evs.len(), 4);
        assert_eq!(evs[0].event.as_deref(), Some("result"));
        assert_eq!(evs[0].id.as_deref(), Some("1"));
        assert_eq!(evs[0].data, "{\"a\":\"é\"}");
        assert_eq!(evs[1].event.as_deref(), Some("ping"));
        assert_eq!(evs[2].data, "line1\nline2");
        assert_eq!(evs[3].data, "[DONE]");
    }

    #[test]
    fn every_split_point_gives_the_same_events() {
        let bytes = SAMPLE.as_bytes();
        let whole = all_events(bytes, &[]);
        for i in 0..bytes.len() {
            assert_eq!(all_events(bytes, &[i]), whole, "split at {i}");
        }
        let every: Vec<usize> = (1..bytes.len()).collect();
        assert_eq!(all_events(bytes, &every), whole);
    }

    #[test]
    fn an_endless_event_is_an_error() {
        let mut s = SseSplitter::new();
        let big = vec![b'x'; MAX_EVENT_BYTES + 1];
        assert_eq!(s.push(&big, |_| {}), Err(SseError::EventTooLarge));
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        let mut s = SseSplitter::new();
        assert_eq!(
            s.push(b"data: \xff\xfe\n\n", |_| {}),
            Err(SseError::InvalidUtf8)
        );
    }
}
