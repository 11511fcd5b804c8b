//! The `apps:`, `workflows:` and `unified:` sections: where the app and workflow files are
//! (one YAML file per app or workflow, read and checked with the config, so a reload picks up
//! their changes), and the unified request's capability map.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use super::problems::{Problem, Report};
use crate::flows::apps::App;
use crate::flows::workflow::{Checks, Workflow};
use crate::flows::{CapabilityMap, MODEL_TYPES};

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct RawApps {
    pub dir: Option<String>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct RawWorkflows {
    pub dir: Option<String>,
    /// Hosts (`host` or `host:port`) http nodes may call.
    #[serde(default)]
    pub http_allow: Vec<String>,
}

/// The prompt apps, by name, and the directory they are saved in.
#[derive(Debug, Clone, Default)]
pub struct Apps {
    pub dir: Option<PathBuf>,
    pub by_name: BTreeMap<String, Arc<App>>,
}

#[derive(Debug, Clone, Default)]
pub struct Workflows {
    pub dir: Option<PathBuf>,
    pub http_allow: Vec<String>,
    pub by_name: BTreeMap<String, Arc<Workflow>>,
}

/// `dir` against the config file's directory (or the working directory).
fn resolve(dir: &str, base: Option<&Path>) -> PathBuf {
    let p = Path::new(dir);
    match base {
        Some(b) if p.is_relative() => b.join(p),
        _ => p.to_path_buf(),
    }
}

/// The `*.yaml` files of a directory, by stem; a directory that does not exist yet has none.
fn yaml_files(dir: &Path, section: &str, problems: &mut Vec<Problem>) -> Vec<(String, String)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<(String, String)> = entries
        .flatten()
        .filter_map(|e| {
            let path = e.path();
            let ext = path.extension()?.to_str()?;
            if ext != "yaml" && ext != "yml" {
                return None;
            }
            let stem = path.file_stem()?.to_str()?.to_string();
            match std::fs::read_to_string(&path) {
                Ok(text) => Some((stem, text)),
                Err(e) => {
                    problems.at(
                        format!("{section}.{stem}"),
                        format!("cannot read {}: {e}", path.display()),
                    );
                    None
                }
            }
        })
        .collect();
    files.sort();
    files
}

pub(super) fn load_apps(
    raw: RawApps,
    base: Option<&Path>,
    model_exists: &dyn Fn(&str) -> bool,
    problems: &mut Vec<Problem>,
) -> Apps {
    let Some(dir) = raw.dir.map(|d| resolve(&d, base)) else {
        return Apps::default();
    };
    let mut by_name = BTreeMap::new();
    for (stem, text) in yaml_files(&dir, "apps", problems) {
        let at = format!("apps.{stem}");
        let app: App = match serde_yaml_ng::from_str(&text) {
            Ok(a) => a,
            Err(e) => {
                problems.at(at, e.to_string());
                continue;
            }
        };
        if app.name != stem {
            problems.at(
                format!("{at}.name"),
                format!(
                    "the file of app `{}` must be named {}.yaml",
                    app.name, app.name
                ),
            );
        }
        for (field, message) in app.problems(model_exists) {
            problems.at(format!("{at}.{field}"), message);
        }
        by_name.insert(app.name.clone(), Arc::new(app));
    }
    Apps {
        dir: Some(dir),
        by_name,
    }
}

pub(super) fn load_workflows(
    raw: RawWorkflows,
    base: Option<&Path>,
    model_exists: &dyn Fn(&str) -> bool,
    problems: &mut Vec<Problem>,
) -> Workflows {
    let http_allow = raw.http_allow;
    let Some(dir) = raw.dir.map(|d| resolve(&d, base)) else {
        return Workflows {
            http_allow,
            ..Default::default()
        };
    };
    let mut by_name = BTreeMap::new();
    for (stem, text) in yaml_files(&dir, "workflows", problems) {
        let at = format!("workflows.{stem}");
        let wf: Workflow = match serde_yaml_ng::from_str(&text) {
            Ok(w) => w,
            Err(e) => {
                problems.at(at, e.to_string());
                continue;
            }
        };
        if wf.name != stem {
            problems.at(
                format!("{at}.name"),
                format!(
                    "the file of workflow `{}` must be named {}.yaml",
                    wf.name, wf.name
                ),
            );
        }
        let checks = Checks {
            model_exists,
            http_allowed: &|host| http_allow.iter().any(|h| h == host),
        };
        for (field, message) in wf.problems(&checks) {
            problems.at(format!("{at}.{field}"), message);
        }
        by_name.insert(wf.name.clone(), Arc::new(wf));
    }
    Workflows {
        dir: Some(dir),
        http_allow,
        by_name,
    }
}

pub(super) fn check_unified(
    map: &CapabilityMap,
    model_exists: &dyn Fn(&str) -> bool,
    problems: &mut Vec<Problem>,
) {
    for (kind, providers) in map {
        if !MODEL_TYPES.contains(&kind.as_str()) {
            problems.at(
                format!("unified.{kind}"),
                format!("unknown type, expected one of {}", MODEL_TYPES.join(", ")),
            );
        }
        for (provider, model) in providers {
            if !model_exists(model) {
                problems.at(
                    format!("unified.{kind}.{provider}"),
                    format!("no model named `{model}`"),
                );
            }
        }
    }
}
