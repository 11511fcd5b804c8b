//! OpenAI streams: passed through to OpenAI clients (only `model` rewritten), or decoded into
//! deltas for the other client APIs.

use super::wire::RawObject;
use super::OpenAiError;
use serde::Deserialize;

use super::{public_model_json, read_usage};
use crate::error::{ErrorKind, GatewayError};
use crate::providers::model::{Delta, FinishReason};
use crate::providers::sse::{Event, SseError, SseSplitter};
use crate::providers::{EventDecoder, SseStream, StreamState, Usage};

/// Passes OpenAI SSE through event by event: checks each event is JSON, puts the public model
/// name back, keeps the last usage, and makes sure the stream ends with `[DONE]` or an error.
pub struct OpenAiStream {
    splitter: SseSplitter,
    model_json: Vec<u8>,
    usage: Option<Usage>,
    /// A choice reported its finish_reason: a close after it is a complete stream.
    finished: bool,
    /// Whether the client asked for the usage chunk (the gateway always asks the vendor).
    forward_usage: bool,
    /// Chunks with choices passed on: OpenAI streams about a token a chunk.
    content_events: u64,
    state: StreamState,
}

/// The members of a passed-through event the stream reads, as raw JSON text.
#[derive(Default)]
struct EventMembers<'a, 'o> {
    model: Option<&'a str>,
    usage: Option<&'a str>,
    choices: Option<&'a str>,
    error: Option<&'a str>,
    /// The event as serde_json read it, when the scan left it to serde_json.
    object: Option<&'o RawObject<'a>>,
}

impl<'a> EventMembers<'a, '_> {
    /// By the scan; None for an error, a member given twice, or what the scan leaves to
    /// serde_json (`json_scan`).
    fn scan(data: &'a str) -> Option<Self> {
        let [model, usage, choices, error] =
            crate::providers::json_scan::named(data, ["model", "usage", "choices", "error"])?;
        error.is_none().then_some(EventMembers {
            model,
            usage,
            choices,
            error,
            object: None,
        })
    }
}

impl<'a, 'o> EventMembers<'a, 'o> {
    fn of(obj: &'o RawObject<'a>) -> Self {
        EventMembers {
            model: obj.get("model").map(|v| v.get()),
            usage: obj.get("usage").map(|v| v.get()),
            choices: obj.get("choices").map(|v| v.get()),
            error: obj.get("error").map(|v| v.get()),
            object: Some(obj),
        }
    }
}

/// Whether a choice in `choices` (their raw JSON) gives a finish reason, a string and not null.
/// Looked for in the text: a key in a string value has its quotes escaped, so cannot match.
fn names_finish_reason(choices: &str) -> bool {
    // By its underscore, which few other bytes of a choice are: a memmem searcher for the key
    // cost ~340 instructions an event under callgrind, this ~100.
    const KEY: &[u8] = b"\"finish_reason\"";
    let text = choices.as_bytes();
    memchr::memchr_iter(b'_', text).any(|underscore| {
        let Some(start) = underscore.checked_sub(7) else {
            return false;
        };
        let Some(after) = text[start..].strip_prefix(KEY) else {
            return false;
        };
        after
            .trim_ascii_start()
            .strip_prefix(b":")
            .is_some_and(|value| value.trim_ascii_start().starts_with(b"\""))
    })
}

impl OpenAiStream {
    pub fn new(public_model: &str, forward_usage: bool) -> Self {
        OpenAiStream {
            splitter: SseSplitter::new(),
            model_json: public_model_json(public_model),
            usage: None,
            finished: false,
            forward_usage,
            content_events: 0,
            state: StreamState::Open,
        }
    }

    /// Chunks with choices passed on so far.
    pub fn content_events(&self) -> u64 {
        self.content_events
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
        let finished = &mut self.finished;
        let forward_usage = self.forward_usage;
        let content_events = &mut self.content_events;
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
            // The scan reads most events; serde_json the rest (and says what is wrong).
            let scanned = match ev.event.as_deref() {
                Some("error") => None,
                _ => EventMembers::scan(&ev.data),
            };
            let parsed;
            let members = match scanned {
                Some(members) => members,
                None => {
                    let Ok(obj) = RawObject::parse(ev.data.as_bytes()) else {
                        failure = Some(crate::providers::malformed_event());
                        *state = StreamState::Failed;
                        return;
                    };
                    parsed = obj;
                    EventMembers::of(&parsed)
                }
            };
            if ev.event.as_deref() == Some("error") || members.error.is_some() {
                let message = members
                    .error
                    .and_then(|e| serde_json::from_str::<OpenAiError>(e).ok())
                    .and_then(|e| e.message)
                    .unwrap_or_else(|| "the upstream stream failed".into());
                failure = Some(GatewayError::new(ErrorKind::UpstreamError, message));
                *state = StreamState::Failed;
                return;
            }
            if let Some(u) = read_usage(members.usage) {
                *usage = Some(u);
                let usage_only = members.choices.is_some_and(|c| c.trim() == "[]");
                if usage_only && !forward_usage {
                    return;
                }
            }
            if members.choices.is_some_and(|c| c.trim() != "[]") {
                *content_events += 1;
            }
            if members.choices.is_some_and(names_finish_reason) {
                *finished = true;
            }
            out.extend_from_slice(b"data: ");
            match (members.model, members.object) {
                (None, _) => out.extend_from_slice(ev.data.as_bytes()),
                (Some(_), Some(obj)) => obj.write_with(&[("model", model_json)], &[], out),
                (Some(model), None) => {
                    // The value's place in the event: it was borrowed from it.
                    let at = model.as_ptr() as usize - ev.data.as_ptr() as usize;
                    out.extend_from_slice(&ev.data.as_bytes()[..at]);
                    out.extend_from_slice(model_json);
                    out.extend_from_slice(&ev.data.as_bytes()[at + model.len()..]);
                }
            }
            out.extend_from_slice(b"\n\n");
        });
        if let Err(e) = res {
            failure = Some(match e {
                SseError::EventTooLarge | SseError::InvalidUtf8 => {
                    crate::providers::malformed_event()
                }
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
                let mut tail = ev.data.into_owned().into_bytes();
                tail.extend_from_slice(b"\n\n");
                let mut framed = b"data: ".to_vec();
                framed.extend_from_slice(&tail);
                self.push(&framed, out);
            }
        }
        if self.state == StreamState::Open && self.finished {
            out.extend_from_slice(b"data: [DONE]\n\n");
            self.state = StreamState::Done;
        }
        if self.state == StreamState::Open {
            out.extend_from_slice(&crate::providers::truncated_stream().sse_event());
            self.state = StreamState::Failed;
        }
        self.state
    }
}

#[derive(Deserialize)]
struct OpenAiChunk {
    #[serde(default)]
    choices: Vec<ChunkChoice>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    error: Option<OpenAiError>,
}

#[derive(Deserialize)]
struct ChunkChoice {
    #[serde(default)]
    index: usize,
    #[serde(default)]
    delta: ChunkDelta,
    #[serde(default)]
    finish_reason: Option<String>,
    /// Moonshot puts the usage inside the final choice.
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Deserialize, Default)]
struct ChunkDelta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default, alias = "reasoning")]
    reasoning_content: Option<String>,
    #[serde(default)]
    tool_calls: Vec<ChunkToolCall>,
}

#[derive(Deserialize)]
struct ChunkToolCall {
    #[serde(default)]
    index: usize,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<ChunkFunction>,
}

#[derive(Deserialize)]
struct ChunkFunction {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

/// Parses OpenAI chunks into deltas, for clients that speak another API.
#[derive(Default)]
pub struct ChunkEvents {
    finished: bool,
    ended: bool,
}

impl ChunkEvents {
    fn on_data(&mut self, data: &str, emit: &mut dyn FnMut(Delta)) {
        if data == "[DONE]" {
            self.ended = true;
            return emit(Delta::Done);
        }
        let chunk: OpenAiChunk = match serde_json::from_str(data) {
            Ok(c) => c,
            Err(_) => return emit(Delta::Error(crate::providers::malformed_event())),
        };
        if let Some(e) = chunk.error {
            let message = e
                .message
                .unwrap_or_else(|| "the upstream stream failed".into());
            return emit(Delta::Error(GatewayError::new(
                ErrorKind::UpstreamError,
                message,
            )));
        }
        // Only the first choice: other client APIs have no `n`.
        for c in chunk.choices.into_iter().filter(|c| c.index == 0) {
            if let Some(r) = c.delta.reasoning_content {
                emit(Delta::Reasoning(r));
            }
            if let Some(t) = c.delta.content {
                emit(Delta::Text(t));
            }
            for t in c.delta.tool_calls {
                let (name, arguments) = match t.function {
                    Some(f) => (f.name, f.arguments),
                    None => (None, None),
                };
                if t.id.is_some() || name.is_some() {
                    emit(Delta::ToolStart {
                        index: t.index,
                        id: t.id.unwrap_or_else(|| format!("call_{}", t.index)),
                        name: name.unwrap_or_default(),
                    });
                }
                if let Some(a) = arguments.filter(|a| !a.is_empty()) {
                    emit(Delta::ToolArgs {
                        index: t.index,
                        arguments: a,
                    });
                }
            }
            if let Some(u) = c.usage {
                emit(Delta::Usage(u));
            }
            if let Some(f) = c.finish_reason {
                self.finished = true;
                emit(Delta::Finish(FinishReason::from_openai(&f)));
            }
        }
        if let Some(u) = chunk.usage {
            emit(Delta::Usage(u));
        }
    }
}

impl EventDecoder for ChunkEvents {
    fn handle(&mut self, e: &Event, emit: &mut dyn FnMut(Delta)) {
        self.on_data(&e.data, emit);
    }

    fn is_done(&self) -> bool {
        self.ended
    }

    fn close(&mut self, emit: &mut dyn FnMut(Delta)) {
        // Some compatible servers close after the finish without `[DONE]`.
        if self.finished && !self.ended {
            self.ended = true;
            emit(Delta::Done);
        }
    }
}

/// The OpenAI stream decoder: SSE framing around [`ChunkEvents`].
pub type ChunkDecoder = SseStream<ChunkEvents>;
