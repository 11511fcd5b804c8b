//! Prompt apps: a template (system and user messages with `{{variables}}`, a target model and
//! parameters) kept as one YAML file per app. Versions are immutable once saved; labels
//! (`production`, `staging`) point at one.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::template::{self, Unfilled, MAX_FILLED};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct App {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Label → version.
    #[serde(default)]
    pub labels: BTreeMap<String, u32>,
    pub versions: Vec<AppVersion>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppVersion {
    pub version: u32,
    /// The public model it runs on.
    pub model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    pub user: String,
    /// Chat parameters (`temperature`, `max_tokens`, …); a call may override them.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub params: Map<String, Value>,
}

/// The label a call gets when it names neither a version nor a label.
pub const DEFAULT_LABEL: &str = "production";

impl App {
    /// Problems with the app, each with the field it is about.
    pub fn problems(&self, model_exists: &dyn Fn(&str) -> bool) -> Vec<(String, String)> {
        let mut p = Vec::new();
        if !valid_name(&self.name) {
            p.push(("name".into(), "use letters, digits, `-` and `_`".into()));
        }
        if self.versions.is_empty() {
            p.push((
                "versions".into(),
                "an app needs at least one version".into(),
            ));
        }
        for (i, v) in self.versions.iter().enumerate() {
            if self.versions[..i].iter().any(|o| o.version == v.version) {
                p.push((
                    format!("versions[{i}].version"),
                    format!("version {} appears twice", v.version),
                ));
            }
            if !model_exists(&v.model) {
                p.push((
                    format!("versions[{i}].model"),
                    format!("no model named `{}`", v.model),
                ));
            }
            if v.params.contains_key("messages") || v.params.contains_key("model") {
                p.push((
                    format!("versions[{i}].params"),
                    "`model` and `messages` are not parameters".into(),
                ));
            }
        }
        for (label, version) in &self.labels {
            if !self.versions.iter().any(|v| v.version == *version) {
                p.push((
                    format!("labels.{label}"),
                    format!("there is no version {version}"),
                ));
            }
        }
        p
    }

    /// The version a call asks for: by number, by label, or the `production` label, else the
    /// latest.
    pub fn pick(&self, version: Option<u32>, label: Option<&str>) -> Result<&AppVersion, String> {
        let wanted = match (version, label) {
            (Some(v), _) => Some(v),
            (None, Some(l)) => Some(
                *self
                    .labels
                    .get(l)
                    .ok_or_else(|| format!("app `{}` has no label `{l}`", self.name))?,
            ),
            (None, None) => self.labels.get(DEFAULT_LABEL).copied(),
        };
        match wanted {
            Some(n) => self
                .versions
                .iter()
                .find(|v| v.version == n)
                .ok_or_else(|| format!("app `{}` has no version {n}", self.name)),
            None => self
                .versions
                .iter()
                .max_by_key(|v| v.version)
                .ok_or_else(|| format!("app `{}` has no versions", self.name)),
        }
    }

    /// Whether `new` keeps every saved version as it was (versions are immutable).
    pub fn keeps_versions_of(&self, old: &App) -> Result<(), String> {
        for v in &old.versions {
            match self.versions.iter().find(|n| n.version == v.version) {
                Some(n) if n == v => {}
                Some(_) => {
                    return Err(format!(
                        "version {} is saved and cannot change; save a new version",
                        v.version
                    ))
                }
                None => {
                    return Err(format!(
                        "version {} is saved and cannot be removed",
                        v.version
                    ))
                }
            }
        }
        Ok(())
    }
}

impl AppVersion {
    /// The template's variables, system message first.
    pub fn variables(&self) -> Vec<String> {
        let mut all = template::variables(self.system.as_deref().unwrap_or(""));
        for v in template::variables(&self.user) {
            if !all.contains(&v) {
                all.push(v);
            }
        }
        all
    }

    /// The chat messages with the variables filled; the missing variable's name, or a filled
    /// text over its bound, otherwise.
    pub fn messages(&self, variables: &Map<String, Value>) -> Result<Vec<Value>, Unfilled> {
        let lookup = |name: &str| {
            variables.get(name).map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
        };
        let mut messages = Vec::with_capacity(2);
        if let Some(system) = &self.system {
            messages.push(
                json!({"role": "system", "content": template::render(system, lookup, MAX_FILLED)?}),
            );
        }
        messages.push(
            json!({"role": "user", "content": template::render(&self.user, lookup, MAX_FILLED)?}),
        );
        Ok(messages)
    }
}

pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app() -> App {
        serde_yaml_ng::from_str(
            r#"
name: summarize
labels: {production: 1, staging: 2}
versions:
  - {version: 1, model: m, system: "You summarize.", user: "Summarize: {{text}}", params: {temperature: 0.2}}
  - {version: 2, model: m, user: "Summarize in {{lang}}: {{text}}"}
"#,
        )
        .unwrap()
    }

    #[test]
    fn labels_pick_versions_and_variables_fill_the_messages() {
        let a = app();
        assert!(a.problems(&|m| m == "m").is_empty());
        assert_eq!(a.pick(None, None).unwrap().version, 1);
        assert_eq!(a.pick(None, Some("staging")).unwrap().version, 2);
        assert_eq!(a.pick(Some(2), None).unwrap().variables(), ["lang", "text"]);
        assert!(a.pick(Some(9), None).is_err());
        let vars: Map<String, Value> = serde_json::from_str(r#"{"text": "abc"}"#).unwrap();
        let m = a.pick(None, None).unwrap().messages(&vars).unwrap();
        assert_eq!(m[1]["content"], "Summarize: abc");
        assert_eq!(
            a.pick(Some(2), None).unwrap().messages(&vars),
            Err(Unfilled::Missing("lang".into()))
        );
    }

    #[test]
    fn saved_versions_cannot_change_and_labels_must_point_at_one() {
        let old = app();
        let mut new = app();
        new.versions[0].user = "changed".into();
        assert!(new.keeps_versions_of(&old).is_err());
        let mut new = app();
        new.versions.push(AppVersion {
            version: 3,
            ..old.versions[1].clone()
        });
        assert!(new.keeps_versions_of(&old).is_ok());
        new.labels.insert("production".into(), 7);
        assert_eq!(new.problems(&|_| true)[0].0, "labels.production");
    }
}
