//! What clients speak: each client API parses its requests into the internal model and renders
//! replies, stream events and errors back in its own shape.

pub mod anthropic;
pub mod openai;
