//! Vendor translation. Each vendor kind is one module of pure, network-free functions:
//! encode the client's OpenAI request for the vendor, decode the vendor's reply into OpenAI's
//! shape, and an incremental stream decoder. This module is the one place that picks the module
//! for a kind; nothing else in the gateway matches on vendor kinds.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::chat::ChatRequest;
use crate::config::{Credentials, Provider};
use crate::error::{ErrorKind, GatewayError, GwResult};

pub mod openai;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
pub enum ProviderKind {
    #[serde(rename = "openai")]
    OpenAi,
    #[serde(rename = "openai_compatible")]
    OpenAiCompatible,
    #[serde(rename = "anthropic")]
    Anthropic,
    #[serde(rename = "dashscope")]
    DashScope,
    #[serde(rename = "qianfan")]
    Qianfan,
    #[serde(rename = "gemini")]
    Gemini,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "openai",
            ProviderKind::OpenAiCompatible => "openai_compatible",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::DashScope => "dashscope",
            ProviderKind::Qianfan => "qianfan",
            ProviderKind::Gemini => "gemini",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
}

/// A request ready for the wire, minus Host, Content-Type and Content-Length, which the
/// transport sets.
#[derive(Debug)]
pub struct UpstreamRequest {
    pub path_and_query: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Bytes,
}

/// A decoded non-streaming reply: OpenAI `chat.completion` JSON and its usage.
#[derive(Debug)]
pub struct DecodedResponse {
    pub body: Bytes,
    pub usage: Option<Usage>,
}

/// What one call into a stream decoder left the stream in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamState {
    /// More upstream bytes are expected.
    Open,
    /// The vendor's stream ended properly; `[DONE]` has been written.
    Done,
    /// The stream failed; an error event and `[DONE]` have been written. Stop reading.
    Failed,
}

pub enum StreamDecoder {
    OpenAi(openai::OpenAiStream),
}

impl StreamDecoder {
    /// Converts upstream bytes, appending OpenAI SSE to `out`.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> StreamState {
        match self {
            StreamDecoder::OpenAi(d) => d.push(chunk, out),
        }
    }

    /// The upstream closed its body; ends the OpenAI stream, with an error if it was cut short.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> StreamState {
        match self {
            StreamDecoder::OpenAi(d) => d.finish(out),
        }
    }

    pub fn usage(&self) -> Option<Usage> {
        match self {
            StreamDecoder::OpenAi(d) => d.usage(),
        }
    }
}

/// Per-request inputs to a vendor encoder.
pub struct EncodeInput<'r, 'a> {
    pub request: &'r ChatRequest<'a>,
    pub provider: &'r Provider,
    pub vendor_model: &'r str,
    pub public_model: &'r str,
}

/// Qianfan v2 is OpenAI-compatible; v1 has its own format.
fn speaks_openai(provider: &Provider) -> bool {
    match provider.kind {
        ProviderKind::OpenAi | ProviderKind::OpenAiCompatible => true,
        ProviderKind::Qianfan => provider.api_version.as_deref() == Some("v2"),
        _ => false,
    }
}

pub fn encode_chat(input: &EncodeInput) -> GwResult<UpstreamRequest> {
    match input.provider.kind {
        ProviderKind::OpenAi | ProviderKind::OpenAiCompatible => Ok(openai::encode_chat(input)),
        ProviderKind::Qianfan if speaks_openai(input.provider) => Ok(openai::encode_chat(input)),
        other => Err(GatewayError::new(
            ErrorKind::Internal,
            format!("{} providers are not supported yet", other.as_str()),
        )),
    }
}

pub fn decode_chat(
    provider: &Provider,
    public_model: &str,
    body: &[u8],
) -> GwResult<DecodedResponse> {
    let _ = provider.kind;
    openai::decode_chat(public_model, body)
}

pub fn stream_decoder(provider: &Provider, public_model: &str) -> StreamDecoder {
    let _ = provider.kind;
    StreamDecoder::OpenAi(openai::OpenAiStream::new(public_model))
}

/// Turns a vendor's non-2xx reply into the client's error, without the vendor's credentials.
pub fn map_error(
    provider: &Provider,
    status: u16,
    retry_after: Option<u64>,
    body: &[u8],
) -> GatewayError {
    let mut e = openai::map_error(status, body);
    if e.kind == ErrorKind::RateLimited && e.retry_after_secs.is_none() {
        e.retry_after_secs = retry_after;
    }
    e.message = redact_credentials(provider, &e.message);
    e
}

/// The vendor's status class, shared by every vendor's error mapping.
pub fn error_from_status(status: u16, message: String) -> GatewayError {
    let e = match status {
        401 | 403 => GatewayError::new(
            ErrorKind::UpstreamAuth,
            format!("The upstream provider rejected the gateway's credentials: {message}"),
        ),
        429 => GatewayError::new(ErrorKind::RateLimited, message),
        503 | 529 => GatewayError::new(ErrorKind::UpstreamOverloaded, message),
        504 | 408 => GatewayError::new(ErrorKind::UpstreamTimeout, message),
        400..=499 => GatewayError::new(ErrorKind::InvalidRequest, message).with_status(status),
        _ => GatewayError::new(ErrorKind::UpstreamError, message),
    };
    e
}

/// Vendors sometimes echo (part of) the key they were sent; never pass that on.
pub fn redact_credentials(provider: &Provider, text: &str) -> String {
    let secrets: Vec<&str> = match &provider.credentials {
        Credentials::None => vec![],
        Credentials::ApiKey(k) => vec![k.expose()],
        Credentials::OAuthClient {
            client_id,
            client_secret,
            ..
        } => vec![client_id.expose(), client_secret.expose()],
    };
    let mut out = text.to_string();
    for s in secrets {
        if s.len() >= 4 && out.contains(s) {
            out = out.replace(s, "***");
        }
    }
    out
}
