//! The `models:` section of the config file, edited from the console: read as YAML text and as
//! JSON for the form, checked by the same loader as `modelmux check` with the rest of the file,
//! shown as a diff, and saved by replacing that section only (atomically, the previous file kept
//! as `.bak`). The file stays the one source of truth.

use serde_json::{json, Value};

use crate::config::{self, Problems};

/// Where the top-level `models:` block is in the file's lines: [start, end).
fn block(lines: &[&str]) -> Option<(usize, usize)> {
    let start = lines
        .iter()
        .position(|l| l.trim_end() == "models:" || l.starts_with("models:"))?;
    let top_level =
        |l: &&str| !l.is_empty() && !l.starts_with([' ', '\t', '#', '-']) && !l.trim().is_empty();
    let mut end = lines[start + 1..]
        .iter()
        .position(top_level)
        .map_or(lines.len(), |i| start + 1 + i);
    // Comments and blank lines just before the next section belong to it.
    while end > start + 1 && (lines[end - 1].trim().is_empty() || lines[end - 1].starts_with('#')) {
        end -= 1;
    }
    Some((start, end))
}

/// The file's `models:` section as text.
pub(crate) fn models_text(file: &str) -> String {
    let lines: Vec<&str> = file.lines().collect();
    match block(&lines) {
        Some((s, e)) => lines[s..e].join("\n") + "\n",
        None => "models: {}\n".into(),
    }
}

/// The file with its `models:` section replaced by `section`.
pub(crate) fn replace_models(file: &str, section: &str) -> String {
    let lines: Vec<&str> = file.lines().collect();
    let section = section.trim_end();
    let out = match block(&lines) {
        Some((s, e)) => [&lines[..s], &[section], &lines[e..]].concat().join("\n"),
        None => format!("{}\n{section}", file.trim_end()),
    };
    out + "\n"
}

/// A problem with the edit, at the path of the field it is about.
pub(crate) fn problem(path: &str, message: impl Into<String>) -> Problems {
    Problems(vec![config::Problem {
        path: path.into(),
        message: message.into(),
    }])
}

/// The section as the form's JSON; the section must hold `models:` and nothing else (so no
/// credential can be written from the console).
pub(crate) fn section_json(section: &str) -> Result<Value, Problems> {
    let v: Value = serde_yaml_ng::from_str(section)
        .map_err(|e| problem("models", format!("not valid YAML: {e}")))?;
    let Some(obj) = v
        .as_object()
        .filter(|o| o.len() == 1 && o.contains_key("models"))
    else {
        return Err(problem(
            "models",
            "the section must hold `models:` and nothing else",
        ));
    };
    Ok(obj["models"].clone())
}

/// The form's JSON as the section's YAML.
pub(crate) fn section_yaml(models: &Value) -> String {
    serde_yaml_ng::to_string(&json!({ "models": models })).unwrap_or_default()
}

/// The edited file, checked whole by the config loader; its problems otherwise.
pub(crate) fn check(
    file: &str,
    section: &str,
    base: Option<&std::path::Path>,
) -> Result<String, Problems> {
    section_json(section)?;
    let new_file = replace_models(file, section);
    config::load_str_at(&new_file, &|name| std::env::var(name).ok(), base)?;
    Ok(new_file)
}

/// Writes the file atomically: a temporary file beside it renamed over it, the old one kept as
/// `<file>.bak`.
pub(crate) fn save(path: &str, new_file: &str) -> std::io::Result<()> {
    let tmp = format!("{path}.tmp");
    std::fs::write(&tmp, new_file)?;
    std::fs::copy(path, format!("{path}.bak"))?;
    std::fs::rename(&tmp, path)
}

/// A line diff of two texts: `' '`, `'-'` or `'+'` before each line.
pub(crate) fn diff(old: &str, new: &str) -> String {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    // Longest common subsequence, by table: the sections are a few hundred lines at most.
    let mut lcs = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out += &format!("  {}\n", a[i]);
            (i, j) = (i + 1, j + 1);
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            out += &format!("- {}\n", a[i]);
            i += 1;
        } else {
            out += &format!("+ {}\n", b[j]);
            j += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "server:\n  listen: [\"127.0.0.1:8080\"]\nproviders:\n  - {name: p, kind: openai, base_url: \"http://127.0.0.1:1/v1\", api_key: sk-provider-key}\n\n# the models\nmodels:\n  a:\n    targets: [{provider: p, model: x}]\n\n# client keys\nkeys:\n  - {name: k, key: sk-client-key}\n";

    #[test]
    fn the_models_section_is_found_and_replaced_alone() {
        assert_eq!(
            models_text(FILE),
            "models:\n  a:\n    targets: [{provider: p, model: x}]\n"
        );
        let new = replace_models(FILE, "models:\n  b: {targets: [{provider: p, model: y}]}\n");
        assert!(
            new.contains("# the models\nmodels:\n  b:") && new.contains("\n\n# client keys\nkeys:")
        );
        assert!(!new.contains("  a:"));
        assert!(check(
            FILE,
            "models:\n  b: {targets: [{provider: p, model: y}]}\n",
            None
        )
        .is_ok());
    }

    #[test]
    fn invalid_edits_are_problems_at_their_field() {
        let p = check(
            FILE,
            "models:\n  b: {targets: [{provider: nobody, model: y}]}\n",
            None,
        )
        .unwrap_err();
        assert!(p.0[0].path.starts_with("models.b.targets"), "{:?}", p.0);
        let p = check(FILE, "models: {}\nkeys: []\n", None).unwrap_err();
        assert_eq!(p.0[0].path, "models");
        assert!(check(FILE, "models: [unclosed", None).is_err());
    }

    #[test]
    fn a_diff_marks_removed_and_added_lines() {
        assert_eq!(diff("a\nb\nc\n", "a\nx\nc\n"), "  a\n- b\n+ x\n  c\n");
    }
}
