//! What users build on top of the gateway: prompt apps, workflows, and the unified request's
//! capability map. Pure types and rules; the proxy runs them through the normal request path.

pub mod apps;
pub mod template;
pub mod workflow;

use std::collections::BTreeMap;

/// The unified request's capability map: per request type, a public model per provider name
/// (`openai`, `ali`, `baidu`, `google`, …, and `default`).
pub type CapabilityMap = BTreeMap<String, BTreeMap<String, String>>;

/// The request types of the unified API.
pub const MODEL_TYPES: [&str; 3] = ["text_generation", "image_generation", "embedding"];
