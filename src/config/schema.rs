//! The config file's JSON Schema (`modelmux schema`, committed as conf/modelmux.schema.json),
//! derived from the very types the loader reads each section into, so it cannot drift from
//! what `modelmux check` accepts. Checks the schema cannot express (a target's provider
//! exists, addresses parse, budgets add up) stay with the loader.

use std::collections::{BTreeMap, HashMap};

use super::raw::*;
use super::{Cors, Team};

/// The top-level sections, each read by `load_str_at` into the type named here.
#[derive(schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "modelmux config",
    description = "modelmux's YAML config: providers (vendors and their credentials), the public models clients ask for and their targets, client keys, traffic policy, stores and listeners. `${VAR}` and `${VAR:-default}` in any string are read from the environment."
)]
#[allow(dead_code)] // read by schemars only
struct ConfigFile {
    server: Option<RawServer>,
    metrics: Option<RawMetrics>,
    mock: Option<RawMock>,
    providers: Option<Vec<RawProvider>>,
    models: Option<BTreeMap<String, RawModel>>,
    keys: Option<Vec<RawKey>>,
    breaker: Option<RawBreaker>,
    limits: Option<RawLimitsSection>,
    cors: Option<Cors>,
    admin: Option<RawAdmin>,
    log: Option<RawLog>,
    cache: Option<RawCache>,
    responses: Option<RawResponses>,
    logs: Option<RawLogs>,
    apps: Option<super::flows::RawApps>,
    workflows: Option<super::flows::RawWorkflows>,
    unified: Option<crate::flows::CapabilityMap>,
    pricing: Option<super::pricing::RawPricing>,
    teams: Option<HashMap<String, Team>>,
    telemetry: Option<RawTelemetry>,
}

/// The schema as pretty JSON, ending in a newline.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(ConfigFile);
    let mut text = serde_json::to_string_pretty(&schema).expect("a schema serializes");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_section_is_in_the_schema() {
        let schema: serde_json::Value = serde_json::from_str(&super::json_schema()).unwrap();
        let properties = schema["properties"].as_object().unwrap();
        let mut names: Vec<_> = properties.keys().map(String::as_str).collect();
        names.sort();
        let mut sections = super::super::load::SECTIONS.to_vec();
        sections.sort();
        assert_eq!(names, sections);
    }

    #[test]
    fn the_committed_schema_is_current() {
        let committed = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/conf/modelmux.schema.json"
        ))
        .unwrap_or_default();
        assert!(
            committed == super::json_schema(),
            "conf/modelmux.schema.json is out of date: run `cargo run -- schema > conf/modelmux.schema.json`"
        );
    }
}
