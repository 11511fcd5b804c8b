//! `GET /v1/models` and `GET /v1/models/{id}`: the public models a key may use, in OpenAI's
//! list shape, or in Anthropic's when the request carries `anthropic-version` (its SDK and
//! Claude Code list models that way).

use bytes::Bytes;
use serde::Serialize;

use crate::config::{ClientKey, Config, PublicModel};

/// A public model, in OpenAI's shape.
#[derive(Serialize, schemars::JsonSchema)]
#[schemars(rename = "Model")]
pub(crate) struct ModelObject<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    owned_by: &'static str,
}

#[derive(Serialize, schemars::JsonSchema)]
#[schemars(rename = "ModelList")]
pub(crate) struct List<'a> {
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

/// A model in Anthropic's shape: `created_at` is when the config went live.
fn anthropic_entry(model: &PublicModel, created: u64) -> serde_json::Value {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(created);
    serde_json::json!({
        "type": "model",
        "id": model.name,
        "display_name": model.name,
        "created_at": humantime::format_rfc3339_seconds(at).to_string(),
    })
}

pub fn anthropic_list(config: &Config, key: &ClientKey, created: u64) -> Bytes {
    let data: Vec<serde_json::Value> = config
        .models
        .iter()
        .filter(|m| key.may_use(&m.name))
        .map(|m| anthropic_entry(m, created))
        .collect();
    let first = data.first().map(|m| m["id"].clone());
    let last = data.last().map(|m| m["id"].clone());
    let list =
        serde_json::json!({"data": data, "has_more": false, "first_id": first, "last_id": last});
    Bytes::from(serde_json::to_vec(&list).expect("serializable"))
}

pub fn anthropic_object(model: &PublicModel, created: u64) -> Bytes {
    Bytes::from(serde_json::to_vec(&anthropic_entry(model, created)).expect("serializable"))
}
