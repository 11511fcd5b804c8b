//! The `models:` section of the config file, edited from the console: read as YAML text and as
//! JSON for the form, checked by the same loader as `modelmux check` with the rest of the file,
//! shown as a diff, and saved by replacing that section only (atomically, the previous file kept
//! as `.bak`, the file's mode and owner kept). The file stays the one source of truth.
//!
//! The section is found by a YAML parser's own positions, never by how lines look (a quoted key
//! may run over several lines, one of them in column 0), and every edited file is parsed again
//! and must equal the old one with `models:` alone replaced: an edit cannot add a section.

use serde_json::{json, Value};
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

use crate::config::{self, Problems};

/// The most lines a section (old or new) may have: the diff and the check stay small.
const MAX_SECTION_LINES: usize = 20_000;

/// The keys of the mappings at one nesting level (1: the file's top level; 2: the entries of a
/// top-level mapping, as `models:`'s in a section), each with the byte where it starts, from a
/// parser's events; and where the root node ends. A key that is not a scalar has no name.
struct KeysAt {
    level: usize,
    depth: usize,
    /// Members seen at `level` (keys and values, in turn).
    members: usize,
    keys: Vec<(String, usize)>,
    root_end: Option<usize>,
}

impl KeysAt {
    fn of(text: &str, level: usize) -> Result<KeysAt, String> {
        let mut keys = KeysAt {
            level,
            depth: 0,
            members: 0,
            keys: Vec::new(),
            root_end: None,
        };
        Parser::new_from_str(text)
            .load(&mut keys, false)
            .map_err(|e| format!("not valid YAML: {e}"))?;
        Ok(keys)
    }

    /// A node has started at `level`: every other one is a key.
    fn member(&mut self, name: Option<String>, at: usize) {
        if self.members.is_multiple_of(2) {
            self.keys.push((name.unwrap_or_default(), at));
        }
        self.members += 1;
    }
}

impl MarkedEventReceiver for KeysAt {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let here = self.depth == self.level;
        match ev {
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                if here {
                    self.member(None, mark.index());
                }
                self.depth += 1;
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.depth = self.depth.saturating_sub(1);
                if self.depth == 0 {
                    self.root_end = Some(mark.index());
                }
            }
            Event::Scalar(value, ..) if here => self.member(Some(value), mark.index()),
            Event::Alias(_) if here => self.member(None, mark.index()),
            _ => {}
        }
    }
}

/// Where the top-level `models:` entry is in the file: [start, end) in bytes, trailing blank
/// and comment lines left to what follows. None when the file has none.
fn models_span(file: &str) -> Result<Option<(usize, usize)>, String> {
    let top = KeysAt::of(file, 1)?;
    let Some(i) = top.keys.iter().position(|(name, _)| name == "models") else {
        return Ok(None);
    };
    let start = top.keys[i].1;
    let next = top.keys.get(i + 1).map(|(_, at)| *at).or(top.root_end);
    let mut end = next.unwrap_or(file.len()).min(file.len());
    // Trailing blank and comment lines belong to what follows. Only whole lines that are
    // nothing else are given back, so a splice leaves at most comments behind.
    loop {
        let body = &file[start..end];
        let body = body.strip_suffix('\n').unwrap_or(body);
        let Some(nl) = body.rfind('\n') else { break };
        let last = body[nl + 1..].trim();
        if !(last.is_empty() || last.starts_with('#')) {
            break;
        }
        end = start + nl + 1;
    }
    Ok(Some((start, end)))
}

/// The file's `models:` section as text.
pub(crate) fn models_text(file: &str) -> String {
    match models_span(file) {
        Ok(Some((s, e))) => format!("{}\n", file[s..e].trim_end()),
        _ => "models: {}\n".into(),
    }
}

/// The file with its `models:` section replaced by `section`, spliced at the parser's
/// positions; refused unless the result parses as the old file with only `models:` changed.
pub(crate) fn replace_models(file: &str, section: &str) -> Result<String, Problems> {
    let section = section.trim_end();
    let out = match models_span(file).map_err(|e| problem("models", e))? {
        Some((s, e)) => format!("{}{section}\n{}", &file[..s], &file[e..]),
        None => format!("{}\n{section}\n", file.trim_end()),
    };
    // The next edit must find the section again by the same parser: text it cannot read (a
    // quoted key continued in column 0, which the loader's parser accepts) is refused now.
    if !matches!(models_span(&out), Ok(Some(_))) {
        return Err(problem(
            "models",
            "the section must be plain YAML whose lines are indented under `models:`",
        ));
    }
    let unchanged = || problem("models", "the edit would change the file outside `models:`");
    let parse = |text: &str| serde_yaml_ng::from_str::<serde_yaml_ng::Value>(text);
    let (Ok(old), Ok(edited), Ok(new)) = (parse(file), parse(section), parse(&out)) else {
        return Err(unchanged());
    };
    let mut expected = old.as_mapping().cloned().unwrap_or_default();
    let models = edited.get("models").cloned().unwrap_or_default();
    expected.insert("models".into(), models);
    if new.as_mapping() != Some(&expected) {
        return Err(unchanged());
    }
    Ok(out)
}

/// A problem with the edit, at the path of the field it is about.
pub(crate) fn problem(path: &str, message: impl Into<String>) -> Problems {
    Problems(vec![config::Problem {
        path: path.into(),
        message: message.into(),
    }])
}

/// A section no longer than the console handles (the diff and the check stay small).
pub(crate) fn bounded(section: &str) -> Result<(), Problems> {
    if section.lines().count() > MAX_SECTION_LINES {
        return Err(problem(
            "models",
            format!("the section is over {MAX_SECTION_LINES} lines"),
        ));
    }
    Ok(())
}

/// The section as the form's JSON; the section must hold `models:` and nothing else (so no
/// credential can be written from the console).
pub(crate) fn section_json(section: &str) -> Result<Value, Problems> {
    bounded(section)?;
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

/// The form's JSON as the section's YAML. A model the form left as it was keeps its text from
/// `current` (the file's section: its layout and comments), so a one-model edit is a one-model
/// diff; a changed or new one is written out.
pub(crate) fn section_yaml(models: &Value, current: &str) -> String {
    let whole = || serde_yaml_ng::to_string(&json!({ "models": models })).unwrap_or_default();
    let (Some(new), Some(old), Ok(old_models)) = (
        models.as_object(),
        entry_texts(current),
        section_json(current),
    ) else {
        return whole();
    };
    let header = current.lines().next().unwrap_or("models:");
    let mut out = format!("{header}\n");
    for (name, model) in new {
        match old.iter().find(|(n, _)| n == name) {
            Some((_, text)) if old_models.get(name) == Some(model) => out.push_str(text),
            _ => {
                let entry = serde_yaml_ng::to_string(&json!({ name: model })).unwrap_or_default();
                for line in entry.lines() {
                    out.push_str("  ");
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
    }
    out
}

/// Each model's text in a `models:` section written as a block mapping: from its key's line
/// to the next key's (comments before a model go with the one above). None for a section in
/// another style, which is then written out whole.
fn entry_texts(section: &str) -> Option<Vec<(String, String)>> {
    let keys = KeysAt::of(section, 2).ok()?;
    let line_start = |at: usize| section[..at].rfind('\n').map_or(0, |i| i + 1);
    // Block style only: each key begins its own line.
    let block = keys
        .keys
        .iter()
        .all(|(_, at)| section[line_start(*at)..*at].trim().is_empty());
    if keys.keys.is_empty() || !block {
        return None;
    }
    let texts = keys.keys.iter().enumerate().map(|(i, (name, at))| {
        let end = keys
            .keys
            .get(i + 1)
            .map_or(section.len(), |(_, next)| line_start(*next));
        let mut text = section[line_start(*at)..end].to_string();
        if !text.ends_with('\n') {
            text.push('\n');
        }
        (name.clone(), text)
    });
    Some(texts.collect())
}

/// The edited file, checked whole by the config loader; its problems otherwise.
pub(crate) fn check(
    file: &str,
    section: &str,
    base: Option<&std::path::Path>,
) -> Result<String, Problems> {
    section_json(section)?;
    let new_file = replace_models(file, section)?;
    config::load_str_at(&new_file, &|name| std::env::var(name).ok(), base)?;
    Ok(new_file)
}

/// Writes the file atomically: a temporary file beside it (created private, then given the
/// file's own mode and owner) renamed over it, the old one kept as `<file>.bak` (as private).
pub(crate) fn save(path: &str, new_file: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
    let meta = std::fs::metadata(path)?;
    let keep = |p: &str| -> std::io::Result<()> {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(meta.mode() & 0o7777))?;
        match std::os::unix::fs::chown(p, Some(meta.uid()), Some(meta.gid())) {
            // Only root may give a file away; a file of our own is already ours.
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Ok(()),
            other => other,
        }
    };
    let tmp = format!("{path}.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(new_file.as_bytes())?;
    f.sync_all()?;
    keep(&tmp)?;
    let bak = format!("{path}.bak");
    std::fs::copy(path, &bak)?;
    keep(&bak)?;
    std::fs::rename(&tmp, path)
}

/// The most cells the diff's table may have; past it the common start and end are kept and
/// the rest shown as replaced (a section of a few hundred lines is far below).
const MAX_DIFF_CELLS: usize = 4_000_000;

/// A line diff of two texts: `' '`, `'-'` or `'+'` before each line.
pub(crate) fn diff(old: &str, new: &str) -> String {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let prefix = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let suffix = a[prefix..]
        .iter()
        .rev()
        .zip(b[prefix..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (mid_a, mid_b) = (&a[prefix..a.len() - suffix], &b[prefix..b.len() - suffix]);
    let mut out = String::new();
    for line in &a[..prefix] {
        out += &format!("  {line}\n");
    }
    if (mid_a.len() + 1).saturating_mul(mid_b.len() + 1) <= MAX_DIFF_CELLS {
        out += &lcs_diff(mid_a, mid_b);
    } else {
        for line in mid_a {
            out += &format!("- {line}\n");
        }
        for line in mid_b {
            out += &format!("+ {line}\n");
        }
    }
    for line in &a[a.len() - suffix..] {
        out += &format!("  {line}\n");
    }
    out
}

/// The diff of two line lists by their longest common subsequence (a table of both lengths).
fn lcs_diff(a: &[&str], b: &[&str]) -> String {
    let width = b.len() + 1;
    let mut lcs = vec![0u32; (a.len() + 1) * width];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i * width + j] = if a[i] == b[j] {
                lcs[(i + 1) * width + j + 1] + 1
            } else {
                lcs[(i + 1) * width + j].max(lcs[i * width + j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out += &format!("  {}\n", a[i]);
            (i, j) = (i + 1, j + 1);
        } else if i < a.len()
            && (j == b.len() || lcs[(i + 1) * width + j] >= lcs[i * width + j + 1])
        {
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
        let new =
            replace_models(FILE, "models:\n  b: {targets: [{provider: p, model: y}]}\n").unwrap();
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
        assert_eq!(diff("a\nb\n", "x\na\nb\ny\n"), "+ x\n  a\n  b\n+ y\n");
        // Past the table's bound the middle is shown replaced, in linear memory.
        let old: String = (0..3000).map(|i| format!("o{i}\n")).collect();
        let new: String = (0..3000).map(|i| format!("n{i}\n")).collect();
        let d = diff(&format!("k\n{old}k\n"), &format!("k\n{new}k\n"));
        assert_eq!(d.lines().count(), 6002);
        assert!(d.starts_with("  k\n- o0\n") && d.ends_with("+ n2999\n  k\n"));
    }

    #[test]
    fn a_multi_line_key_cannot_smuggle_a_section_past_the_models_check() {
        // An explicit key quoted over lines, one in column 0 (the loader's parser takes it): a
        // line-based save of the original section again left `cors:` as a real section.
        let attack = "models:\n  b: {targets: [{provider: p, model: y}]}\n  ? \"q\ncors: {max_age: 600, allow_origins: ['*', '\n#\"\n  : {targets: [{provider: p, model: y}]} # ']}\n";
        let refused = check(FILE, attack, None).unwrap_err();
        assert_eq!(refused.0[0].path, "models");
        // A file that already holds one (written by hand) is edited by structure all the same.
        let by_hand = FILE.replace("models:\n  a:", &format!("{}  a:", attack));
        assert!(
            models_span(&by_hand).is_err()
                || !replace_models(&by_hand, "models: {}")
                    .unwrap()
                    .contains("\ncors:")
        );
    }

    #[test]
    fn a_form_edit_rewrites_only_the_models_it_changed() {
        let current = "models:   # routes\n  a:\n    # the main one\n    targets: [{provider: p, model: x}]\n  b: {targets: [{provider: p, model: y}]}\n";
        let mut models = section_json(current).unwrap();
        models["b"]["targets"][0]["model"] = json!("z");
        let section = section_yaml(&models, current);
        assert!(section.starts_with("models:   # routes\n  a:\n    # the main one\n    targets: [{provider: p, model: x}]\n"), "{section}");
        assert!(
            section.contains("  b:\n    targets:\n    - provider: p\n      model: z\n"),
            "{section}"
        );
        assert_eq!(section_json(&section).unwrap(), models);
        // A section in flow style is written out whole.
        let flow = "models: {a: {targets: [{provider: p, model: x}]}}\n";
        let again = section_yaml(&section_json(flow).unwrap(), flow);
        assert_eq!(section_json(&again).unwrap(), section_json(flow).unwrap());
    }

    #[test]
    fn a_section_is_found_by_structure_with_its_comments_left_to_the_next() {
        let file = "# head\nmodels:   # the routes\n  a: {targets: [{provider: p, model: x}]}\n  # last model\n\n# keys follow\nkeys: []\n";
        assert_eq!(
            models_text(file),
            "models:   # the routes\n  a: {targets: [{provider: p, model: x}]}\n"
        );
        let new = replace_models(file, "models: {}").unwrap();
        assert_eq!(
            new,
            "# head\nmodels: {}\n  # last model\n\n# keys follow\nkeys: []\n"
        );
    }
}
