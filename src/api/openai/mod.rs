//! OpenAI's Chat Completions API, its legacy Completions API, embeddings and images.

pub mod jobs;
pub mod legacy;
pub mod writer;
