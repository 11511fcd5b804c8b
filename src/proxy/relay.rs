//! Joins a vendor's reply to the client's API: OpenAI clients of OpenAI-kind vendors get the
//! vendor's own events passed through (only `model` rewritten); every other pairing goes
//! vendor decoder -> deltas -> the client API's writer.

use bytes::Bytes;

use crate::api::anthropic::{self, AnthropicWriter};
use crate::api::openai::writer::{self, OpenAiWriter};
use crate::config::Provider;
use crate::error::{ErrorKind, GatewayError, GwResult};
use crate::providers::model::{Completion, Delta};
use crate::providers::openai::{self, OpenAiStream};
use crate::providers::{self, StreamState, Usage, VendorStream};

/// The API the client called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientApi {
    OpenAi,
    Anthropic,
}

impl ClientApi {
    pub fn error_body(self, e: &GatewayError) -> Bytes {
        match self {
            ClientApi::OpenAi => e.body(),
            ClientApi::Anthropic => anthropic::error_json(e),
        }
    }

    fn passes_through(self, provider: &Provider) -> bool {
        self == ClientApi::OpenAi && providers::speaks_openai(provider)
    }
}

enum Sink {
    OpenAi(OpenAiWriter),
    Anthropic(AnthropicWriter),
}

impl Sink {
    fn new(api: ClientApi, public_model: &str, include_usage: bool) -> Sink {
        match api {
            ClientApi::OpenAi => Sink::OpenAi(OpenAiWriter::new(public_model, include_usage)),
            ClientApi::Anthropic => Sink::Anthropic(AnthropicWriter::new(public_model)),
        }
    }

    fn write(&mut self, d: Delta, out: &mut Vec<u8>) -> StreamState {
        match self {
            Sink::OpenAi(w) => w.write(d, out),
            Sink::Anthropic(w) => w.write(d, out),
        }
    }

    fn usage(&self) -> Option<Usage> {
        match self {
            Sink::OpenAi(w) => w.usage(),
            Sink::Anthropic(w) => w.usage(),
        }
    }
}

/// A vendor stream on its way to the client.
pub struct Relay(Inner);

enum Inner {
    PassThrough(OpenAiStream),
    Translate {
        source: Box<dyn VendorStream>,
        sink: Sink,
        state: StreamState,
    },
}

fn truncated() -> GatewayError {
    GatewayError::new(
        ErrorKind::UpstreamBadResponse,
        "The upstream provider ended the stream before it was complete.",
    )
}

impl Relay {
    pub fn new(
        api: ClientApi,
        provider: &Provider,
        public_model: &str,
        include_usage: bool,
    ) -> Relay {
        Relay(if api.passes_through(provider) {
            Inner::PassThrough(OpenAiStream::new(public_model, include_usage))
        } else {
            Inner::Translate {
                source: providers::stream_decoder(provider),
                sink: Sink::new(api, public_model, include_usage),
                state: StreamState::Open,
            }
        })
    }

    /// Converts upstream bytes, appending the client's events to `out`.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> StreamState {
        match &mut self.0 {
            Inner::PassThrough(p) => p.push(chunk, out),
            Inner::Translate {
                source,
                sink,
                state,
            } => {
                source.push(chunk, &mut |d| *state = sink.write(d, out));
                *state
            }
        }
    }

    /// The upstream body ended: completes the stream, or ends it with an error if the vendor
    /// cut it short.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> StreamState {
        match &mut self.0 {
            Inner::PassThrough(p) => p.finish(out),
            Inner::Translate {
                source,
                sink,
                state,
            } => {
                if *state == StreamState::Open {
                    source.finish(&mut |d| *state = sink.write(d, out));
                }
                if *state == StreamState::Open {
                    *state = sink.write(Delta::Error(truncated()), out);
                }
                *state
            }
        }
    }

    /// Reading from the vendor failed mid-stream.
    pub fn fail(&mut self, e: GatewayError, out: &mut Vec<u8>) -> StreamState {
        match &mut self.0 {
            Inner::PassThrough(_) => {
                out.extend_from_slice(&e.sse_event());
                StreamState::Failed
            }
            Inner::Translate { sink, state, .. } => {
                *state = sink.write(Delta::Error(e), out);
                *state
            }
        }
    }

    pub fn usage(&self) -> Option<Usage> {
        match &self.0 {
            Inner::PassThrough(p) => p.usage(),
            Inner::Translate { sink, .. } => sink.usage(),
        }
    }
}

/// A whole reply replayed as a stream, for vendors that answer a stream request with one JSON
/// body (Qianfan v1 does when it has nothing to stream).
pub fn replay_as_stream(
    api: ClientApi,
    public_model: &str,
    include_usage: bool,
    c: &Completion,
    out: &mut Vec<u8>,
) -> Option<Usage> {
    let mut sink = Sink::new(api, public_model, include_usage);
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
    sink.usage()
}

/// A complete non-streaming reply in the client's API, and its usage.
pub fn render_reply(
    api: ClientApi,
    provider: &Provider,
    public_model: &str,
    body: &[u8],
) -> GwResult<(Bytes, Option<Usage>)> {
    if api.passes_through(provider) {
        return openai::decode_raw(public_model, body);
    }
    let c = providers::decode_chat(provider, body)?;
    Ok(render_completion(api, public_model, &c))
}

pub fn render_completion(
    api: ClientApi,
    public_model: &str,
    c: &Completion,
) -> (Bytes, Option<Usage>) {
    let body = match api {
        ClientApi::OpenAi => writer::completion_json(c, public_model),
        ClientApi::Anthropic => anthropic::message_json(c, public_model),
    };
    (body, c.usage)
}
