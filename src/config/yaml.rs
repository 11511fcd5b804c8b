//! YAML plumbing for the loader: `${ENV}` expansion, typing a section with the path of the
//! member at fault, and duration fields.
//!
//! `${ENV}` is expanded everywhere but in `models:`, the one section the console edits: a
//! console session must not be able to read the environment through a route (a provider or
//! vendor model named `${OPENAI_API_KEY}` would echo the key in an error, a header or a vendor
//! body). Expanded values are kept so that no problem message ever quotes one.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_yaml_ng::Value;

use super::problems::Problem;

/// The section in which `${…}` is never expanded: the one the console edits.
const UNEXPANDED_SECTION: &str = "models";

/// Environment values put into the config, so that messages can leave them out, and which
/// variables each expanded field came from (a rejected credential's error names them).
#[derive(Default)]
pub(super) struct Expanded {
    /// (variable, value) of every reference expanded.
    values: Vec<(String, String)>,
    /// (field path, variable) of every reference.
    sources: Vec<(String, String)>,
}

impl Expanded {
    /// The variables the field at `path` (e.g. `providers[0].api_key`) was made from.
    pub(super) fn variables_of(&self, path: &str) -> Vec<String> {
        self.sources
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, name)| name.clone())
            .collect()
    }

    /// `text` with every expanded value replaced by the reference it came from.
    pub(super) fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        // Longest first, so that a value containing another is replaced whole.
        let mut values: Vec<&(String, String)> = self.values.iter().collect();
        values.sort_by_key(|(_, v)| std::cmp::Reverse(v.len()));
        for (name, value) in values {
            // A value this short says nothing, and would be found inside ordinary words.
            if value.len() >= 4 && out.contains(value.as_str()) {
                out = out.replace(value.as_str(), &format!("${{{name}}}"));
            }
        }
        out
    }
}

/// Replaces `${VAR}` and `${VAR:-default}` in every string scalar of the top-level mapping
/// but `models:`, where a reference is a problem (named without its value).
pub(super) fn expand_env(
    root: &mut Value,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<Problem>,
) -> Expanded {
    let mut expanded = Expanded::default();
    let Value::Mapping(map) = root else {
        return expanded;
    };
    for (k, v) in map.iter_mut() {
        let key = k.as_str().unwrap_or("?").to_string();
        if key == UNEXPANDED_SECTION {
            refuse_env(v, key, problems);
        } else {
            expand_value(v, key, env, problems, &mut expanded);
        }
    }
    expanded
}

fn expand_value(
    value: &mut Value,
    path: String,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<Problem>,
    expanded: &mut Expanded,
) {
    match value {
        Value::String(s) if s.contains("${") => {
            let mut lookup = |name: &str| {
                let v = env(name);
                if let Some(v) = &v {
                    expanded.values.push((name.to_string(), v.clone()));
                }
                expanded.sources.push((path.clone(), name.to_string()));
                v
            };
            match expand_str(s, &mut lookup) {
                Ok(done) => *s = done,
                Err(message) => problems.push(Problem { path, message }),
            }
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                expand_value(item, format!("{path}[{i}]"), env, problems, expanded);
            }
        }
        Value::Mapping(map) => {
            for (k, v) in map.iter_mut() {
                let child = format!("{path}.{}", k.as_str().unwrap_or("?"));
                expand_value(v, child, env, problems, expanded);
            }
        }
        _ => {}
    }
}

/// A `${…}` reference where none is expanded is a problem rather than a literal name.
fn refuse_env(value: &Value, path: String, problems: &mut Vec<Problem>) {
    match value {
        Value::String(s) if s.contains("${") => problems.push(Problem {
            path,
            message: format!(
                "`${{…}}` is not expanded in {UNEXPANDED_SECTION}: (environment references are for credentials and addresses in the other sections)"
            ),
        }),
        Value::Sequence(items) => {
            for (i, item) in items.iter().enumerate() {
                refuse_env(item, format!("{path}[{i}]"), problems);
            }
        }
        Value::Mapping(map) => {
            for (k, v) in map {
                refuse_env(v, format!("{path}.{}", k.as_str().unwrap_or("?")), problems);
            }
        }
        _ => {}
    }
}

pub(super) fn expand_str(
    s: &str,
    env: &mut dyn FnMut(&str) -> Option<String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| "unterminated `${` reference".to_string())?;
        let inner = &after[..end];
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "`${{{inner}}}` is not a valid environment reference"
            ));
        }
        match (env(name).filter(|v| !v.is_empty()), default) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => return Err(format!("environment variable {name} is not set")),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn typed<T: DeserializeOwned>(value: Value, path: &str, problems: &mut Vec<Problem>) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(v) => Some(v),
        Err(e) => {
            let inner = e.path().to_string();
            let full = match (path.is_empty(), inner == ".") {
                (_, true) => path.to_string(),
                (true, false) => inner,
                (false, false) if inner.starts_with('[') => format!("{path}{inner}"),
                (false, false) => format!("{path}.{inner}"),
            };
            let message = in_words(&e.into_inner().to_string(), &full);
            problems.push(Problem {
                path: full,
                message,
            });
            None
        }
    }
}

/// Fields that take a duration (`500ms`, `30s`, `2m`).
const DURATION_FIELDS: [&str; 15] = [
    "connect",
    "first_byte",
    "idle",
    "total",
    "header_timeout",
    "body_timeout",
    "write_timeout",
    "drain_timeout",
    "keepalive",
    "ttl",
    "window",
    "cooldown",
    "deadline",
    "backoff",
    "retention",
];

/// A serde message in the words of the config file rather than of Rust's types.
fn in_words(message: &str, path: &str) -> String {
    let field = path.rsplit(['.', '[']).next().unwrap_or(path);
    if (DURATION_FIELDS.contains(&field) || field == "max_backoff")
        && message.contains("expected a string")
    {
        let given = message.split('`').nth(1).unwrap_or("this");
        return format!("`{given}` is not a duration: write one like {given}s, 500ms or 2m");
    }
    let mut out = message.to_string();
    for (rust, words) in [
        ("expected usize", "expected a whole number (0 or more)"),
        ("expected u64", "expected a whole number (0 or more)"),
        ("expected u32", "expected a whole number (0 or more)"),
        ("expected u16", "expected a whole number from 0 to 65535"),
        ("expected u8", "expected a whole number from 0 to 255"),
        ("expected i64", "expected a whole number"),
        ("expected i32", "expected a whole number"),
        ("expected f64", "expected a number"),
        ("expected f32", "expected a number"),
        ("expected a boolean", "expected true or false"),
        ("expected a sequence", "expected a list"),
        ("expected struct ", "expected a mapping: "),
        ("floating point", "the number"),
        ("integer", "the number"),
    ] {
        out = out.replace(rust, words);
    }
    out
}

pub(super) fn section<T: DeserializeOwned>(
    sections: &mut HashMap<String, Value>,
    name: &str,
    problems: &mut Vec<Problem>,
) -> Option<T> {
    let value = sections.remove(name)?;
    if value.is_null() {
        return None;
    }
    typed(value, name, problems)
}

pub(super) fn list_section<T: DeserializeOwned>(
    sections: &mut HashMap<String, Value>,
    name: &str,
    problems: &mut Vec<Problem>,
) -> Vec<(String, T)> {
    match sections.remove(name) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Sequence(items)) => items
            .into_iter()
            .enumerate()
            .filter_map(|(i, v)| {
                let path = format!("{name}[{i}]");
                typed(v, &path, problems).map(|t| (path, t))
            })
            .collect(),
        Some(_) => {
            problems.push(Problem {
                path: name.into(),
                message: "must be a list".into(),
            });
            Vec::new()
        }
    }
}

pub(super) fn map_section<T: DeserializeOwned>(
    sections: &mut HashMap<String, Value>,
    name: &str,
    problems: &mut Vec<Problem>,
) -> Vec<(String, String, T)> {
    match sections.remove(name) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Mapping(map)) => {
            // Sorted so that problems come out in a stable order.
            let mut entries: BTreeMap<String, Value> = BTreeMap::new();
            for (k, v) in map {
                match k.as_str() {
                    Some(key) => {
                        entries.insert(key.to_string(), v);
                    }
                    None => problems.push(Problem {
                        path: name.into(),
                        message: "model names must be strings".into(),
                    }),
                }
            }
            entries
                .into_iter()
                .filter_map(|(key, v)| {
                    let path = format!("{name}.{key}");
                    typed(v, &path, problems).map(|t| (path, key, t))
                })
                .collect()
        }
        Some(_) => {
            problems.push(Problem {
                path: name.into(),
                message: "must be a mapping of public model name to targets".into(),
            });
            Vec::new()
        }
    }
}

/// No timeout, deadline or window is longer: the gateway adds them to `Instant`s.
const MAX_DURATION: Duration = Duration::from_secs(7 * 86_400);

/// A duration field: `dflt` when absent, a problem when unreadable, zero or over a week.
pub(super) fn duration(
    value: &Option<String>,
    path: &str,
    dflt: Duration,
    problems: &mut Vec<Problem>,
) -> Duration {
    duration_within(value, path, dflt, (MAX_DURATION, "7 days"), problems)
}

/// As [`duration`], up to `max` (named as a person would say it).
pub(super) fn duration_within(
    value: &Option<String>,
    path: &str,
    dflt: Duration,
    (max, named): (Duration, &str),
    problems: &mut Vec<Problem>,
) -> Duration {
    let Some(text) = value else { return dflt };
    match humantime::parse_duration(text) {
        Ok(d) if d > max => {
            problems.push(Problem {
                path: path.into(),
                message: format!("must be at most {named}"),
            });
            dflt
        }
        Ok(d) if !d.is_zero() => d,
        Ok(_) => {
            problems.push(Problem {
                path: path.into(),
                message: "must be above zero".into(),
            });
            dflt
        }
        Err(e) => {
            problems.push(Problem {
                path: path.into(),
                message: format!("`{text}` is not a duration like 500ms, 5s or 2m ({e})"),
            });
            dflt
        }
    }
}
