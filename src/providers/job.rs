//! Requests that take a vendor more than one call: embeddings split into the vendor's batch
//! size, one call per image, a DashScope task submitted and then polled. A job is a pure state
//! machine: it says which call to make next and reads each reply; the proxy makes the calls.

use std::collections::VecDeque;
use std::time::Duration;

use super::model::{Embeddings, GeneratedImage, Images};
use super::UpstreamRequest;
use crate::config::Endpoint;
use crate::error::GwResult;

/// One HTTP call of a job.
#[derive(Debug)]
pub struct Call {
    pub method: &'static str,
    /// Another host than the provider's (an image the vendor stores elsewhere). Such a call
    /// carries no credentials.
    pub to: Option<Endpoint>,
    pub request: UpstreamRequest,
    /// How long to wait before making it (between polls of a task).
    pub after: Duration,
}

impl Call {
    pub fn post(request: UpstreamRequest) -> Call {
        Call {
            method: "POST",
            to: None,
            request,
            after: Duration::ZERO,
        }
    }
}

/// What a finished job produced.
#[derive(Debug, Clone, PartialEq)]
pub enum JobOutput {
    Embeddings(Embeddings),
    Images(Images),
}

pub trait Job: Send {
    /// The next call, or None when the job is done.
    fn next_call(&mut self) -> Option<Call>;
    /// The 2xx reply to the call `next_call` gave last.
    fn read(&mut self, body: &[u8]) -> GwResult<()>;
    fn output(self: Box<Self>) -> JobOutput;
    /// A call that tells the vendor to drop work it is still doing for an abandoned job.
    fn abandon(&self) -> Option<Call> {
        None
    }
}

/// What one reply of a [`Batches`] job held.
pub struct Batch<T> {
    pub items: Vec<T>,
    pub tokens: u64,
}

/// Independent calls made one after another whose results are concatenated in call order:
/// texts in chunks of the vendor's batch size, or one call per image.
pub struct Batches<T> {
    calls: VecDeque<UpstreamRequest>,
    decode: fn(&[u8]) -> GwResult<Batch<T>>,
    items: Vec<T>,
    tokens: u64,
    finish: fn(Vec<T>, u64) -> JobOutput,
}

impl<T: Send + 'static> Batches<T> {
    pub fn job(
        calls: Vec<UpstreamRequest>,
        decode: fn(&[u8]) -> GwResult<Batch<T>>,
        finish: fn(Vec<T>, u64) -> JobOutput,
    ) -> Box<dyn Job> {
        Box::new(Batches {
            calls: calls.into(),
            decode,
            items: Vec::new(),
            tokens: 0,
            finish,
        })
    }
}

impl<T: Send> Job for Batches<T> {
    fn next_call(&mut self) -> Option<Call> {
        self.calls.front().cloned().map(Call::post)
    }

    fn read(&mut self, body: &[u8]) -> GwResult<()> {
        let batch = (self.decode)(body)?;
        self.calls.pop_front();
        self.items.extend(batch.items);
        self.tokens = self.tokens.saturating_add(batch.tokens);
        Ok(())
    }

    fn output(self: Box<Self>) -> JobOutput {
        (self.finish)(self.items, self.tokens)
    }
}

/// Embeddings from batches of vectors.
pub fn embeddings(vectors: Vec<Vec<f32>>, prompt_tokens: u64) -> JobOutput {
    JobOutput::Embeddings(Embeddings {
        vectors,
        prompt_tokens,
    })
}

/// Images from batches of images, created now.
pub fn images(images: Vec<GeneratedImage>, _tokens: u64) -> JobOutput {
    JobOutput::Images(Images {
        created: crate::clock::unix_secs(),
        images,
    })
}

/// `texts` in chunks of at most `size`, keeping order.
pub fn chunks(texts: &[String], size: usize) -> impl Iterator<Item = &[String]> {
    texts.chunks(size.max(1))
}

/// An image's media type by its magic bytes (PNG, JPEG, WebP); PNG otherwise.
pub fn image_type(bytes: &[u8]) -> &'static str {
    if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
        "image/jpeg"
    } else if bytes.len() > 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        "image/webp"
    } else {
        "image/png"
    }
}

/// The media type of base64-encoded image bytes, by the encoding of their magic bytes.
pub fn base64_image_type(b64: &str) -> &'static str {
    if b64.starts_with("/9j/") {
        "image/jpeg"
    } else if b64.starts_with("UklGR") {
        "image/webp"
    } else {
        "image/png"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn req(n: u8) -> UpstreamRequest {
        UpstreamRequest {
            path_and_query: format!("/{n}"),
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    fn decode(body: &[u8]) -> GwResult<Batch<Vec<f32>>> {
        Ok(Batch {
            items: body.iter().map(|b| vec![*b as f32]).collect(),
            tokens: body.len() as u64,
        })
    }

    #[test]
    fn batches_keep_call_order_and_sum_tokens() {
        let mut job = Batches::job(vec![req(1), req(2)], decode, embeddings);
        assert_eq!(job.next_call().unwrap().request.path_and_query, "/1");
        job.read(&[1, 2]).unwrap();
        assert_eq!(job.next_call().unwrap().request.path_and_query, "/2");
        job.read(&[3]).unwrap();
        assert!(job.next_call().is_none());
        let JobOutput::Embeddings(e) = job.output() else {
            panic!("embeddings")
        };
        assert_eq!(e.vectors, vec![vec![1.0], vec![2.0], vec![3.0]]);
        assert_eq!(e.prompt_tokens, 3);
    }
}
