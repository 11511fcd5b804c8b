//! Joins a vendor's reply to the client's API: OpenAI clients of OpenAI-kind vendors get the
//! vendor's own events passed through (only `model` rewritten); every other pairing goes
//! vendor decoder -> deltas -> the client API's writer.

use bytes::Bytes;

use crate::api::{ClientApi, StreamWriter};
use crate::config::Provider;
use crate::error::{GatewayError, GwResult};
use crate::providers::model::Delta;
use crate::providers::openai::{self, OpenAiStream};
use crate::providers::{self, StreamState, Usage, VendorStream};

/// OpenAI clients of OpenAI-speaking vendors get the vendor's own bytes, `model` aside.
fn passes_through(api: ClientApi, provider: &Provider) -> bool {
    api == ClientApi::OpenAi && providers::speaks_openai(provider)
}

/// A vendor stream on its way to the client.
pub(crate) struct Relay(Inner);

enum Inner {
    PassThrough(OpenAiStream),
    Translate {
        source: Box<dyn VendorStream>,
        sink: StreamWriter,
        state: StreamState,
        /// Tokens of text and tool arguments passed on, estimated at 4 bytes a token.
        received: u64,
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
    pub(crate) fn new(
        api: ClientApi,
        provider: &Provider,
        public_model: &str,
        include_usage: bool,
    ) -> Relay {
        Relay(if passes_through(api, provider) {
            Inner::PassThrough(OpenAiStream::new(public_model, include_usage))
        } else {
            Inner::Translate {
                source: providers::stream_decoder(provider),
                sink: StreamWriter::new(api, public_model, include_usage),
                state: StreamState::Open,
                received: 0,
            }
        })
    }

    /// Converts upstream bytes, appending the client's events to `out`.
    pub(crate) fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> StreamState {
        match &mut self.0 {
            Inner::PassThrough(p) => p.push(chunk, out),
            Inner::Translate {
                source,
                sink,
                state,
                received,
            } => {
                source.push(chunk, &mut |d| {
                    *received += estimated_tokens(&d);
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
            Inner::Translate {
                source,
                sink,
                state,
                ..
            } => {
                if *state == StreamState::Open {
                    source.finish(&mut |d| *state = sink.write(d, out));
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
            Inner::Translate { sink, state, .. } => {
                *state = sink.write(Delta::Error(e), out);
                *state
            }
        }
    }

    /// Tokens that reached the client, estimated: what to charge when the usage never came.
    pub(crate) fn received_tokens(&self) -> u64 {
        match &self.0 {
            Inner::PassThrough(p) => p.content_events(),
            Inner::Translate { received, .. } => *received,
        }
    }

    pub(crate) fn usage(&self) -> Option<Usage> {
        match &self.0 {
            Inner::PassThrough(p) => p.usage(),
            Inner::Translate { sink, .. } => sink.usage(),
        }
    }
}

/// A complete non-streaming reply in the client's API, and its usage.
pub(crate) fn render_reply(
    api: ClientApi,
    provider: &Provider,
    public_model: &str,
    body: &[u8],
) -> GwResult<(Bytes, Option<Usage>)> {
    if passes_through(api, provider) {
        return openai::decode_raw(public_model, body);
    }
    let c = providers::decode_chat(provider, body)?;
    Ok(api.render_completion(public_model, &c))
}
