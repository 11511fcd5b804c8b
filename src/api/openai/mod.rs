//! OpenAI's Chat Completions API.

pub mod writer;
