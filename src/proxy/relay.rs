//! Joins a vendor's reply to the client's API: OpenAI clients of OpenAI-kind vendors, and
//! Anthropic clients of Anthropic targets, get the vendor's own events passed through (only
//! `model` rewritten); every other pairing goes vendor decoder -> deltas -> the client API's
//! writer.

use std::sync::Arc;

use bytes::Bytes;

use crate::api::responses::Turn;
use crate::api::{ClientApi, StreamWriter};
use crate::config::Provider;
use crate::error::{GatewayError, GwResult};
use crate::providers::anthropic::NativeStream;
use crate::providers::model::{Completion, CompletionBuilder, Delta};
use crate::providers::openai::{self, OpenAiStream, ResponsesStream};
use crate::providers::{self, StreamState, Usage, VendorStream};

/// How a vendor's answer reaches the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Handling {
    /// The vendor speaks the client's API (OpenAI's or Anthropic's): its bytes go through,
    /// `model` aside.
    PassThrough,
    /// Decoded into deltas and written in the client's API.
    Translate,
    /// Translated, and put back together for the response cache.
    Capture,
}

/// A vendor stream on its way to the client.
pub(crate) struct Relay(Inner);

enum Inner {
    PassThrough(OpenAiStream),
    Native(Box<NativeStream>),
    Responses(Box<ResponsesStream>),
    Translate {
        source: Box<dyn VendorStream>,
        sink: StreamWriter,
        state: StreamState,
        /// Tokens of text and tool arguments passed on, estimated at 4 bytes a token.
        received: u64,
        /// The reply put back together, when it is to be cached.
        captured: Option<CompletionBuilder>,
    },
}

fn estimated_tokens(d: &Delta) -> u64 {
    let bytes = match d {
        Delta::Text(t) | Delta::Reasoning(t) => t.len(),
        Delta::ToolArgs { arguments, .. } => arguments.len(),
        _ => return 0,
    };
    (bytes as u64).div_ceil(4)
}

impl Relay {
    /// `how` says whether the vendor's own events go through as they are (the client's OpenAI
    /// body went to an OpenAI-speaking vendor), or are decoded, and put back together so a
    /// complete answer can be cached.
    pub(crate) fn new(
        api: ClientApi,
        provider: &Provider,
        public_model: &str,
        include_usage: bool,
        turn: Option<&Arc<Turn>>,
        how: Handling,
    ) -> Relay {
        let capture = how == Handling::Capture;
        Relay(match (how, api) {
            (Handling::PassThrough, ClientApi::Anthropic) => {
                Inner::Native(Box::new(providers::anthropic::native_stream(public_model)))
            }
            (Handling::PassThrough, ClientApi::Responses) => {
                Inner::Responses(Box::new(openai::responses_stream(public_model)))
            }
            (Handling::PassThrough, _) => {
                Inner::PassThrough(OpenAiStream::new(public_model, include_usage))
            }
            _ => Inner::Translate {
                source: providers::stream_decoder(provider),
                sink: StreamWriter::new(api, public_model, include_usage, turn),
                state: StreamState::Open,
                received: 0,
                captured: capture.then(CompletionBuilder::default),
            },
        })
    }

    /// Converts upstream bytes, appending the client's events to `out`.
    pub(crate) fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> StreamState {
        match &mut self.0 {
            Inner::PassThrough(p) => p.push(chunk, out),
            Inner::Native(n) => n.push(chunk, out),
            Inner::Responses(r) => r.push(chunk, out),
            Inner::Translate {
                source,
                sink,
                state,
                received,
                captured,
            } => {
                source.push(chunk, &mut |d| {
                    *received += estimated_tokens(&d);
                    if let Some(c) = captured.as_mut() {
                        c.add(&d);
                    }
                    *state = sink.write(d, out)
                });
                *state
            }
        }
    }

    /// The upstream body ended: completes the stream, or ends it with an error if the vendor
    /// cut it short.
    pub(crate) fn finish(&mut self, out: &mut Vec<u8>) -> StreamState {
        match &mut self.0 {
            Inner::PassThrough(p) => p.finish(out),
            Inner::Native(n) => n.finish(out),
            Inner::Responses(r) => r.finish(out),
            Inner::Translate {
                source,
                sink,
                state,
                captured,
                ..
            } => {
                if *state == StreamState::Open {
                    source.finish(&mut |d| {
                        if let Some(c) = captured.as_mut() {
                            c.add(&d);
                        }
                        *state = sink.write(d, out)
                    });
                }
                if *state == StreamState::Open {
                    *state = sink.write(Delta::Error(providers::truncated_stream()), out);
                }
                *state
            }
        }
    }

    /// Reading from the vendor failed mid-stream.
    pub(crate) fn fail(&mut self, e: GatewayError, out: &mut Vec<u8>) -> StreamState {
        match &mut self.0 {
            Inner::PassThrough(_) => {
                out.extend_from_slice(&e.sse_event());
                StreamState::Failed
            }
            Inner::Native(n) => n.fail(e, out),
            Inner::Responses(r) => r.fail(e, out),
            Inner::Translate { sink, state, .. } => {
                *state = sink.write(Delta::Error(e), out);
                *state
            }
        }
    }

    /// The whole reply, for the cache, when it was captured and the stream ended properly.
    pub(crate) fn completed(&self) -> Option<Completion> {
        match &self.0 {
            Inner::Translate {
                captured: Some(c),
                state: StreamState::Done,
                ..
            } => c.complete(),
            _ => None,
        }
    }

    /// Tokens that reached the client, estimated: what to charge when the usage never came.
    pub(crate) fn received_tokens(&self) -> u64 {
        match &self.0 {
            Inner::PassThrough(p) => p.content_events(),
            Inner::Native(n) => n.events.received_tokens(),
            Inner::Responses(r) => r.events.content_events(),
            Inner::Translate { received, .. } => *received,
        }
    }

    pub(crate) fn usage(&self) -> Option<Usage> {
        match &self.0 {
            Inner::PassThrough(p) => p.usage(),
            Inner::Native(n) => n.events.usage(),
            Inner::Responses(r) => r.events.usage(),
            Inner::Translate { sink, .. } => sink.usage(),
        }
    }

    /// The Responses API's finished Response object, once the stream ended with one.
    pub(crate) fn completed_response(&self) -> Option<&serde_json::Value> {
        match &self.0 {
            Inner::Translate { sink, .. } => sink.completed_response(),
            Inner::Responses(r) => r.events.completed(),
            Inner::PassThrough(_) | Inner::Native(_) => None,
        }
    }
}

/// A complete non-streaming reply in the client's API, its usage, and when captured the decoded
/// reply (for the cache).
pub(crate) fn render_reply(
    api: ClientApi,
    provider: &Provider,
    public_model: &str,
    turn: Option<&Turn>,
    body: &[u8],
    how: Handling,
) -> GwResult<(Bytes, Option<Usage>, Option<Completion>)> {
    let capture = how == Handling::Capture;
    if how == Handling::PassThrough {
        let (reply, usage) = match api {
            ClientApi::Anthropic => providers::anthropic::decode_native(public_model, body)?,
            ClientApi::Responses => openai::decode_responses(public_model, body)?,
            _ => openai::decode_raw(public_model, body)?,
        };
        return Ok((reply, usage, None));
    }
    let c = providers::decode_chat(provider, body)?;
    let (reply, usage) = api.render_completion(public_model, turn, &c);
    Ok((reply, usage, capture.then_some(c)))
}
