//! What clients speak: each client API parses its requests into the internal model and renders
//! replies, stream events and errors back in its own shape.

use std::sync::Arc;

use bytes::Bytes;

use crate::error::GatewayError;
use crate::providers::model::{Completion, Delta};
use crate::providers::{StreamState, Usage};

pub mod anthropic;
pub mod models;
pub mod openai;
pub mod responses;

use anthropic::AnthropicWriter;
use openai::legacy::LegacyWriter;
use openai::writer::OpenAiWriter;
use responses::{ResponsesWriter, Turn};

/// An id as the vendors make them: a prefix and 24 random letters and digits (`chatcmpl-…`,
/// `msg_…`, `resp_…`).
pub fn random_id(prefix: &str) -> String {
    const ALPHABET: &[u8; 62] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut id = String::with_capacity(prefix.len() + 24);
    id.push_str(prefix);
    // Eight characters from each random word, each the integer part of the word's fraction
    // times 62 (48 of its 64 bits used): a draw a character cost ~30 instructions, ~720 an id.
    for _ in 0..3 {
        let mut word = fastrand::u64(..);
        for _ in 0..8 {
            let wide = u128::from(word) * 62;
            id.push(char::from(ALPHABET[(wide >> 64) as usize]));
            word = wide as u64;
        }
    }
    id
}

/// One server-sent event with its `event:` line (Anthropic's and the Responses API's streams
/// name every event; their SDKs drop events without one).
pub fn named_event(out: &mut Vec<u8>, name: &str, data: &serde_json::Value) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    serde_json::to_writer(&mut *out, data).expect("json serializes");
    out.extend_from_slice(b"\n\n");
}

/// The API the client called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientApi {
    OpenAi,
    /// `POST /v1/completions`: a prompt in, `choices[].text` out.
    OpenAiLegacy,
    Anthropic,
    /// `POST /v1/responses`: OpenAI's Responses API.
    Responses,
}

impl ClientApi {
    pub fn error_body(self, e: &GatewayError) -> Bytes {
        match self {
            ClientApi::OpenAi | ClientApi::OpenAiLegacy | ClientApi::Responses => e.body(),
            ClientApi::Anthropic => anthropic::error_json(e),
        }
    }

    /// A complete reply in this API, and its usage. `turn`: what a Responses API request
    /// asked to be repeated in its reply.
    pub fn render_completion(
        self,
        public_model: &str,
        turn: Option<&Turn>,
        c: &Completion,
    ) -> (Bytes, Option<Usage>) {
        let body = match self {
            ClientApi::OpenAi => openai::writer::completion_json(c, public_model),
            ClientApi::OpenAiLegacy => openai::legacy::completion_json(c, public_model),
            ClientApi::Anthropic => anthropic::message_json(c, public_model),
            ClientApi::Responses => responses::response_json(c, public_model, turn),
        };
        (body, c.usage)
    }
}

/// Writes stream deltas as the client API's events.
pub enum StreamWriter {
    OpenAi(OpenAiWriter),
    OpenAiLegacy(LegacyWriter),
    Anthropic(AnthropicWriter),
    /// Boxed: larger than the others, and every open stream would hold its size.
    Responses(Box<ResponsesWriter>),
}

impl StreamWriter {
    pub fn new(
        api: ClientApi,
        public_model: &str,
        include_usage: bool,
        turn: Option<&Arc<Turn>>,
    ) -> StreamWriter {
        match api {
            ClientApi::OpenAi => {
                StreamWriter::OpenAi(OpenAiWriter::new(public_model, include_usage))
            }
            ClientApi::OpenAiLegacy => {
                StreamWriter::OpenAiLegacy(LegacyWriter::new(public_model, include_usage))
            }
            ClientApi::Anthropic => StreamWriter::Anthropic(AnthropicWriter::new(public_model)),
            ClientApi::Responses => {
                StreamWriter::Responses(Box::new(ResponsesWriter::new(public_model, turn.cloned())))
            }
        }
    }

    pub fn write(&mut self, d: Delta, out: &mut Vec<u8>) -> StreamState {
        match self {
            StreamWriter::OpenAi(w) => w.write(d, out),
            StreamWriter::OpenAiLegacy(w) => w.write(d, out),
            StreamWriter::Anthropic(w) => w.write(d, out),
            StreamWriter::Responses(w) => w.write(d, out),
        }
    }

    pub fn usage(&self) -> Option<Usage> {
        match self {
            StreamWriter::OpenAi(w) => w.usage(),
            StreamWriter::OpenAiLegacy(w) => w.usage(),
            StreamWriter::Anthropic(w) => w.usage(),
            StreamWriter::Responses(w) => w.usage(),
        }
    }

    /// The Responses API's finished Response object (other APIs have none).
    pub fn completed_response(&self) -> Option<&serde_json::Value> {
        match self {
            StreamWriter::Responses(w) => w.completed(),
            _ => None,
        }
    }
}

/// A whole reply replayed as a stream, for vendors that answer a stream request with one JSON
/// body (Qianfan v1 does when it has nothing to stream); the writer, finished.
pub fn replay_as_stream(
    api: ClientApi,
    public_model: &str,
    include_usage: bool,
    turn: Option<&Arc<Turn>>,
    c: &Completion,
    out: &mut Vec<u8>,
) -> StreamWriter {
    let mut sink = StreamWriter::new(api, public_model, include_usage, turn);
    if let Some(ch) = c.choices.first() {
        if let Some(r) = &ch.reasoning {
            sink.write(Delta::Reasoning(r.clone()), out);
        }
        if let Some(t) = &ch.content {
            sink.write(Delta::Text(t.clone()), out);
        }
        for (index, call) in ch.tool_calls.iter().enumerate() {
            sink.write(
                Delta::ToolStart {
                    index,
                    id: call.id.clone(),
                    name: call.name.clone(),
                },
                out,
            );
            sink.write(
                Delta::ToolArgs {
                    index,
                    arguments: call.arguments.clone(),
                },
                out,
            );
        }
        sink.write(Delta::Finish(ch.finish), out);
    }
    if let Some(u) = c.usage {
        sink.write(Delta::Usage(u), out);
    }
    sink.write(Delta::Done, out);
    sink
}

#[cfg(test)]
mod tests {
    #[test]
    fn random_ids_are_the_prefix_and_24_letters_or_digits() {
        let id = super::random_id("chatcmpl-");
        let tail = id.strip_prefix("chatcmpl-").expect("the prefix");
        assert_eq!(tail.len(), 24);
        assert!(tail.bytes().all(|b| b.is_ascii_alphanumeric()));
    }

    #[test]
    fn every_place_of_an_id_draws_from_the_whole_alphabet() {
        let ids: Vec<String> = (0..4000).map(|_| super::random_id("")).collect();
        for place in 0..24 {
            let seen: std::collections::HashSet<u8> =
                ids.iter().map(|id| id.as_bytes()[place]).collect();
            assert!(seen.len() >= 60, "place {place}: {} characters", seen.len());
        }
        let distinct: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
    }
}
