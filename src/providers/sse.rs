//! Incremental Server-Sent Events framing: bytes in at any split, whole events out.
//!
//! Boundaries are found on bytes, never on a lossy string, so a multi-byte UTF-8 character split
//! across two reads is reassembled before anyone decodes it. Events are read in place: from the
//! piece just received, or, for an event split across reads, from the bytes kept since.

use std::borrow::Cow;

/// An upstream event larger than this is treated as garbage rather than buffered without bound.
pub const MAX_EVENT_BYTES: usize = 4 * 1024 * 1024;

/// One parsed event. `data` is the `data:` lines joined with `\n`, as the SSE spec says: the
/// text as received when the event has one data line (as vendors send them), so an event is
/// read without a copy.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Event<'a> {
    pub event: Option<Cow<'a, str>>,
    pub data: Cow<'a, str>,
    pub id: Option<Cow<'a, str>>,
}

impl Event<'_> {
    pub fn into_owned(self) -> Event<'static> {
        Event {
            event: self.event.map(|e| Cow::Owned(e.into_owned())),
            data: Cow::Owned(self.data.into_owned()),
            id: self.id.map(|i| Cow::Owned(i.into_owned())),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum SseError {
    EventTooLarge,
    InvalidUtf8,
}

#[derive(Default)]
pub struct SseSplitter {
    /// The start of an event split across reads; empty (and unallocated) between events, so a
    /// stream waiting for its vendor holds nothing here.
    buf: Vec<u8>,
}

impl SseSplitter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds bytes; calls `on_event` for every complete event, in order, up to one that is
    /// broken. Comment-only and empty events are skipped (DashScope's `:HTTP_STATUS/200`
    /// lines are comments).
    pub fn push(
        &mut self,
        chunk: &[u8],
        mut on_event: impl FnMut(Event<'_>),
    ) -> Result<(), SseError> {
        if self.buf.is_empty() {
            let used = events_in(chunk, &mut on_event)?;
            self.buf.extend_from_slice(&chunk[used..]);
        } else {
            self.buf.extend_from_slice(chunk);
            let used = events_in(&self.buf, &mut on_event)?;
            self.buf.drain(..used);
            if self.buf.is_empty() {
                self.buf = Vec::new();
            }
        }
        if self.buf.len() > MAX_EVENT_BYTES {
            return Err(SseError::EventTooLarge);
        }
        Ok(())
    }

    /// At end of stream: a last event without its blank line still counts (Gemini and some
    /// servers close right after the final `data:` line).
    pub fn finish(&mut self) -> Result<Option<Event<'static>>, SseError> {
        let raw = std::mem::take(&mut self.buf);
        if raw.iter().all(|b| b.is_ascii_whitespace()) {
            return Ok(None);
        }
        Ok(parse_event(&raw)?.map(Event::into_owned))
    }
}

/// Calls `on_event` for each complete event in `buf`; how many bytes they took.
fn events_in(buf: &[u8], on_event: &mut impl FnMut(Event<'_>)) -> Result<usize, SseError> {
    let mut start = 0;
    while let Some((end, sep_len)) = find_boundary(&buf[start..]) {
        if let Some(ev) = parse_event(&buf[start..start + end])? {
            on_event(ev);
        }
        start += end + sep_len;
    }
    Ok(start)
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

fn parse_event(raw: &[u8]) -> Result<Option<Event<'_>>, SseError> {
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
            "data" if has_data => {
                let data = ev.data.to_mut();
                data.push('\n');
                data.push_str(value);
            }
            "data" => {
                ev.data = Cow::Borrowed(value);
                has_data = true;
            }
            "event" => ev.event = Some(Cow::Borrowed(value)),
            "id" => ev.id = Some(Cow::Borrowed(value)),
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
        let (events, state) = (&mut self.events, &mut self.state);
        let framed = self.splitter.push(chunk, |e| {
            if *state == crate::providers::StreamState::Open {
                *state = events.pass(&e, out);
            }
        });
        if framed.is_err() && self.open() {
            return self.fail(crate::providers::malformed_event(), out);
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

    fn all_events(input: &[u8], splits: &[usize]) -> Vec<Event<'static>> {
        let mut s = SseSplitter::new();
        let mut out = Vec::new();
        let mut last = 0;
        for &at in splits.iter().chain(std::iter::once(&input.len())) {
            s.push(&input[last..at], |e| out.push(e.into_owned()))
                .unwrap();
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
