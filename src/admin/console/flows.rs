//! Prompt apps and workflows from the console: listed, checked with the rules the config loader
//! applies, saved as one YAML file each in their configured directory (atomically, the previous
//! file kept as `.bak`), then the config is reloaded so they take effect.

use std::path::Path;

use serde_json::{json, Value};

use crate::config::{Config, Problem, Problems};
use crate::flows::apps::{valid_name, App};
use crate::flows::workflow::{Checks, Workflow};

/// Field problems as the config loader reports them.
fn as_problems(problems: Vec<(String, String)>) -> Problems {
    Problems(
        problems
            .into_iter()
            .map(|(path, message)| Problem { path, message })
            .collect(),
    )
}

pub(crate) fn apps(config: &Config) -> Value {
    json!({
        "dir": config.apps.dir.as_ref().map(|d| d.display().to_string()),
        "read_only": config.apps.dir.as_deref().and_then(super::read_only),
        "apps": config.apps.by_name.values().map(|a| serde_json::to_value(&**a).unwrap_or_default()).collect::<Vec<_>>(),
    })
}

pub(crate) fn workflows(config: &Config) -> Value {
    json!({
        "dir": config.workflows.dir.as_ref().map(|d| d.display().to_string()),
        "read_only": config.workflows.dir.as_deref().and_then(super::read_only),
        "http_allow": config.workflows.http_allow,
        // Each as the form's JSON and as the YAML file the console saves.
        "workflows": config.workflows.by_name.values().map(|w| json!({
            "name": w.name,
            "workflow": serde_json::to_value(&**w).unwrap_or_default(),
            "yaml": serde_yaml_ng::to_string(&**w).unwrap_or_default(),
        })).collect::<Vec<_>>(),
    })
}

/// Checks an app for saving: the loader's rules, and saved versions kept as they were.
pub(crate) fn check_app(config: &Config, app: &App) -> Result<String, Value> {
    let model_exists = |m: &str| config.model(m).is_some();
    let mut problems = app.problems(&model_exists);
    if let Some(saved) = config.apps.by_name.get(&app.name) {
        if let Err(m) = app.keeps_versions_of(saved) {
            problems.push(("versions".into(), m));
        }
    }
    if !problems.is_empty() {
        return Err(crate::admin::problems_json(&as_problems(problems)));
    }
    Ok(serde_yaml_ng::to_string(app).unwrap_or_default())
}

pub(crate) fn check_workflow(config: &Config, wf: &Workflow) -> Result<String, Value> {
    let allow = &config.workflows.http_allow;
    let checks = Checks {
        model_exists: &|m: &str| config.model(m).is_some(),
        http_allowed: &|h: &str| allow.iter().any(|a| a == h),
    };
    let problems = wf.problems(&checks);
    if !problems.is_empty() {
        return Err(crate::admin::problems_json(&as_problems(problems)));
    }
    Ok(serde_yaml_ng::to_string(wf).unwrap_or_default())
}

/// Writes `<dir>/<name>.yaml` atomically, keeping the previous file as `.bak`.
pub(crate) fn save(dir: &Path, name: &str, yaml: &str) -> std::io::Result<()> {
    if !valid_name(name) {
        return Err(std::io::Error::other("invalid name"));
    }
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("{name}.yaml"));
    let tmp = dir.join(format!(".{name}.yaml.tmp"));
    std::fs::write(&tmp, yaml)?;
    if path.exists() {
        std::fs::copy(&path, dir.join(format!("{name}.yaml.bak")))?;
    }
    std::fs::rename(&tmp, &path)
}
