//! `GET /v1/models` and `GET /v1/models/{id}`: the public models a key may use, in OpenAI's
//! list shape.

use bytes::Bytes;
use serde::Serialize;

use crate::config::{ClientKey, Config, PublicModel};

#[derive(Serialize)]
struct ModelObject<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    owned_by: &'static str,
}

#[derive(Serialize)]
struct List<'a> {
    object: &'static str,
    data: Vec<ModelObject<'a>>,
}

/// `created` is when the config went live; `owned_by` names the first target's vendor kind.
fn entry(model: &PublicModel, created: u64) -> ModelObject<'_> {
    ModelObject {
        id: &model.name,
        object: "model",
        created,
        owned_by: model
            .targets
            .first()
            .map_or("modelmux", |t| t.provider.vendor.kind()),
    }
}

pub fn list(config: &Config, key: &ClientKey, created: u64) -> Bytes {
    let data = config
        .models
        .iter()
        .filter(|m| key.may_use(&m.name))
        .map(|m| entry(m, created))
        .collect();
    let list = List {
        object: "list",
        data,
    };
    Bytes::from(serde_json::to_vec(&list).expect("serializable"))
}

pub fn object(model: &PublicModel, created: u64) -> Bytes {
    Bytes::from(serde_json::to_vec(&entry(model, created)).expect("serializable"))
}
