//! The Anthropic-compatible inbound API, `POST /v1/messages`, so clients built on the Claude
//! SDK can use any routed model: its requests typed into the internal model, replies rendered
//! as Anthropic messages, streams as Anthropic's named events, errors in its error shape.

mod request;
mod writer;

pub use request::{parse_request, parse_request_for_count};
pub use writer::{error_json, message_json, AnthropicWriter};
