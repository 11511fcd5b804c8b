//! What the mock vendors' embeddings and image endpoints share: deterministic vectors and a
//! small real PNG.

use base64::Engine;

/// A 1x1 PNG, so clients that decode the image get a real one.
pub(crate) const PNG_BASE64: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";

pub(crate) fn png() -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(PNG_BASE64)
        .expect("valid base64")
}

/// The mocks run in the gateway's own process in the offline config, so nothing a client
/// asks for is allocated unbounded: vector sizes, inputs, images and reply words are clamped.
pub(crate) const MAX_DIMENSIONS: u64 = 4096;
pub(crate) const MAX_INPUTS: usize = 2048;
pub(crate) const MAX_IMAGES: u64 = 10;

/// A requested vector size within [1, MAX_DIMENSIONS].
pub(crate) fn dimensions(asked: Option<u64>, default: u64) -> usize {
    asked.unwrap_or(default).clamp(1, MAX_DIMENSIONS) as usize
}

/// The same vector for the same text: a hash spread over `dims` values in [-1, 1).
pub(crate) fn vector(text: &str, dims: usize) -> Vec<f32> {
    let mut seed = text.bytes().fold(1469598103934665603u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(1099511628211)
    });
    (0..dims)
        .map(|_| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// Tokens as the mocks count them: words, at least one a text.
pub(crate) fn tokens(text: &str) -> u64 {
    text.split_whitespace().count().max(1) as u64
}

/// Texts from a JSON list of strings (or one string), none empty, at most MAX_INPUTS.
pub(crate) fn texts(v: Option<&serde_json::Value>) -> Option<Vec<String>> {
    match v? {
        serde_json::Value::String(s) => Some(vec![s.clone()]),
        serde_json::Value::Array(a) if !a.is_empty() && a.len() <= MAX_INPUTS => a
            .iter()
            .map(|t| t.as_str().filter(|t| !t.is_empty()).map(str::to_string))
            .collect(),
        _ => None,
    }
}
