//! OpenAI's embeddings and image generation replies, from what a vendor job produced.

use base64::Engine;
use bytes::Bytes;
use serde::Serialize;

use crate::providers::job::JobOutput;
use crate::providers::model::{Embeddings, ImageData, Images};
use crate::providers::Usage;

/// A job's output as OpenAI's reply, and what it used. `base64`: the client asked for bytes
/// (`encoding_format: base64`, `response_format: b64_json`). Images from vendors that only
/// return bytes become `data:` URLs when URLs were asked for.
pub fn job_reply(public_model: &str, output: &JobOutput, base64: bool) -> (Bytes, Option<Usage>) {
    match output {
        JobOutput::Embeddings(e) => embeddings_reply(public_model, e, base64),
        JobOutput::Images(i) => (images_reply(i, base64), None),
    }
}

#[derive(Serialize)]
struct EmbeddingsBody<'a> {
    object: &'static str,
    data: Vec<EmbeddingOut>,
    model: &'a str,
    usage: EmbeddingsUsage,
}

#[derive(Serialize)]
struct EmbeddingOut {
    object: &'static str,
    index: usize,
    embedding: Vector,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Vector {
    Floats(Vec<f32>),
    Base64(String),
}

#[derive(Serialize)]
struct EmbeddingsUsage {
    prompt_tokens: u64,
    total_tokens: u64,
}

fn embeddings_reply(public_model: &str, e: &Embeddings, base64: bool) -> (Bytes, Option<Usage>) {
    let data = e
        .vectors
        .iter()
        .enumerate()
        .map(|(index, v)| EmbeddingOut {
            object: "embedding",
            index,
            embedding: if base64 {
                // OpenAI's base64 form: the little-endian f32s, encoded.
                let bytes: Vec<u8> = v.iter().flat_map(|f| f.to_le_bytes()).collect();
                Vector::Base64(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                Vector::Floats(v.clone())
            },
        })
        .collect();
    let body = EmbeddingsBody {
        object: "list",
        data,
        model: public_model,
        usage: EmbeddingsUsage {
            prompt_tokens: e.prompt_tokens,
            total_tokens: e.prompt_tokens,
        },
    };
    let json = serde_json::to_vec(&body).expect("json serializes");
    (Bytes::from(json), Some(Usage::new(e.prompt_tokens, 0)))
}

#[derive(Serialize)]
struct ImagesBody<'a> {
    created: u64,
    data: Vec<ImageOut<'a>>,
}

#[derive(Serialize)]
struct ImageOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    b64_json: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    revised_prompt: Option<&'a str>,
}

fn images_reply(i: &Images, inline: bool) -> Bytes {
    let data = i
        .images
        .iter()
        .map(|img| {
            let (url, b64_json) = match (&img.data, inline) {
                (ImageData::Url(u), _) => (Some(u.clone()), None),
                (ImageData::Inline { base64, .. }, true) => (None, Some(base64.as_str())),
                (ImageData::Inline { media_type, base64 }, false) => {
                    (Some(format!("data:{media_type};base64,{base64}")), None)
                }
            };
            ImageOut {
                url,
                b64_json,
                revised_prompt: img.revised_prompt.as_deref(),
            }
        })
        .collect();
    let body = ImagesBody {
        created: i.created,
        data,
    };
    Bytes::from(serde_json::to_vec(&body).expect("json serializes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::model::GeneratedImage;
    use serde_json::Value;

    #[test]
    fn embeddings_as_floats_or_little_endian_base64() {
        let e = JobOutput::Embeddings(Embeddings {
            vectors: vec![vec![1.0, -2.0], vec![0.5]],
            prompt_tokens: 7,
        });
        let (body, usage) = job_reply("emb", &e, false);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["data"][1]["index"], 1);
        assert_eq!(v["data"][0]["embedding"], serde_json::json!([1.0, -2.0]));
        assert_eq!(v["model"], "emb");
        assert_eq!(v["usage"]["prompt_tokens"], 7);
        assert_eq!(usage, Some(Usage::new(7, 0)));
        let (body, _) = job_reply("emb", &e, true);
        let v: Value = serde_json::from_slice(&body).unwrap();
        let b = base64::engine::general_purpose::STANDARD
            .decode(v["data"][1]["embedding"].as_str().unwrap())
            .unwrap();
        assert_eq!(b, 0.5f32.to_le_bytes());
    }

    #[test]
    fn inline_images_become_data_urls_when_urls_are_asked_for() {
        let i = JobOutput::Images(Images {
            created: 5,
            images: vec![GeneratedImage {
                data: ImageData::Inline {
                    media_type: "image/png".into(),
                    base64: "iVBOR".into(),
                },
                revised_prompt: Some("a cat".into()),
            }],
        });
        let v: Value = serde_json::from_slice(&job_reply("m", &i, false).0).unwrap();
        assert_eq!(v["data"][0]["url"], "data:image/png;base64,iVBOR");
        assert_eq!(v["data"][0]["revised_prompt"], "a cat");
        let v: Value = serde_json::from_slice(&job_reply("m", &i, true).0).unwrap();
        assert_eq!(v["data"][0]["b64_json"], "iVBOR");
        assert!(v["data"][0].get("url").is_none());
    }
}
