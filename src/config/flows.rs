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

#[derive(Deserialize, Debug, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawApps {
    pub dir: Option<String>,
}

#[derive(Deserialize, Debug, Default, schemars::JsonSchema)]
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

/// The `*.yaml` files of a directory, by stem; a directory that cannot be read is a problem
/// (a misspelt path would otherwise look like a directory without files).
fn yaml_files(dir: &Path, section: &str, problems: &mut Vec<Problem>) -> Vec<(String, String)> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            problems.at(
                format!("{section}.dir"),
                format!("cannot read the directory {}: {e}", dir.display()),
            );
            return Vec::new();
        }
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

/// Something kept one YAML file per name: its name, and its problems at their fields.
trait NamedFile: serde::de::DeserializeOwned {
    const SECTION: &'static str;
    fn name(&self) -> &str;
    fn problems(
        &self,
        model_exists: &dyn Fn(&str) -> bool,
        http_allow: &[String],
    ) -> Vec<(String, String)>;
}

impl NamedFile for App {
    const SECTION: &'static str = "apps";
    fn name(&self) -> &str {
        &self.name
    }
    fn problems(&self, model_exists: &dyn Fn(&str) -> bool, _: &[String]) -> Vec<(String, String)> {
        App::problems(self, model_exists)
    }
}

impl NamedFile for Workflow {
    const SECTION: &'static str = "workflows";
    fn name(&self) -> &str {
        &self.name
    }
    fn problems(
        &self,
        model_exists: &dyn Fn(&str) -> bool,
        http_allow: &[String],
    ) -> Vec<(String, String)> {
        let checks = Checks {
            model_exists,
            http_allowed: &|host| http_allow.iter().any(|h| h == host),
        };
        Workflow::problems(self, &checks)
    }
}

/// Every file of `dir`, parsed and checked; each named after what it holds.
fn load_dir<T: NamedFile>(
    dir: &Path,
    model_exists: &dyn Fn(&str) -> bool,
    http_allow: &[String],
    problems: &mut Vec<Problem>,
) -> BTreeMap<String, Arc<T>> {
    let mut by_name = BTreeMap::new();
    for (stem, text) in yaml_files(dir, T::SECTION, problems) {
        let at = format!("{}.{stem}", T::SECTION);
        let item: T = match serde_yaml_ng::from_str(&text) {
            Ok(i) => i,
            Err(e) => {
                problems.at(at, e.to_string());
                continue;
            }
        };
        if item.name() != stem {
            problems.at(
                format!("{at}.name"),
                format!(
                    "`{}` must be in a file named {}.yaml",
                    item.name(),
                    item.name()
                ),
            );
        }
        for (field, message) in item.problems(model_exists, http_allow) {
            problems.at(format!("{at}.{field}"), message);
        }
        by_name.insert(item.name().to_string(), Arc::new(item));
    }
    by_name
}

pub(super) fn load_apps(
    raw: RawApps,
    base: Option<&Path>,
    model_exists: &dyn Fn(&str) -> bool,
    problems: &mut Vec<Problem>,
) -> Apps {
    let dir = raw.dir.map(|d| resolve(&d, base));
    let by_name = dir
        .as_deref()
        .map(|d| load_dir(d, model_exists, &[], problems))
        .unwrap_or_default();
    Apps { dir, by_name }
}

pub(super) fn load_workflows(
    raw: RawWorkflows,
    base: Option<&Path>,
    model_exists: &dyn Fn(&str) -> bool,
    problems: &mut Vec<Problem>,
) -> Workflows {
    let dir = raw.dir.map(|d| resolve(&d, base));
    let by_name = dir
        .as_deref()
        .map(|d| load_dir(d, model_exists, &raw.http_allow, problems))
        .unwrap_or_default();
    Workflows {
        dir,
        http_allow: raw.http_allow,
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
