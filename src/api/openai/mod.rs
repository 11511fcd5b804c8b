//! OpenAI's Chat Completions API, and its legacy Completions API.

pub mod legacy;
pub mod writer;
