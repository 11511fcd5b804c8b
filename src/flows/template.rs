//! `{{name}}` placeholders in prompts and workflow nodes. Names are letters, digits, `_`, `-`
//! and `.` (`{{inputs.text}}`, `{{summary.output}}`); spaces inside the braces are allowed.

/// The placeholders of a template, each once, in order of appearance.
pub fn variables(template: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (name, _, _) in placeholders(template) {
        if !out.iter().any(|n| n == name) {
            out.push(name.to_string());
        }
    }
    out
}

/// The most a filled template may hold: a placeholder repeated, or a value that repeats
/// another, must not multiply a request's size without bound.
pub const MAX_FILLED: usize = 4 * 1024 * 1024;

/// Why a template could not be filled.
#[derive(Debug, PartialEq)]
pub enum Unfilled {
    /// A placeholder `lookup` has no value for.
    Missing(String),
    /// The filled text grew over its bound.
    TooLong(usize),
}

impl std::fmt::Display for Unfilled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unfilled::Missing(name) => write!(f, "`{{{{{name}}}}}` has no value"),
            Unfilled::TooLong(max) => write!(f, "the filled text is over {max} bytes"),
        }
    }
}

/// The template with every placeholder filled, at most `max` bytes long; the first name
/// `lookup` does not know is the error.
pub fn render(
    template: &str,
    lookup: impl Fn(&str) -> Option<String>,
    max: usize,
) -> Result<String, Unfilled> {
    let mut out = String::with_capacity(template.len().min(max));
    let mut last = 0;
    for (name, start, end) in placeholders(template) {
        out.push_str(&template[last..start]);
        let value = lookup(name).ok_or_else(|| Unfilled::Missing(name.to_string()))?;
        if out.len() + value.len() > max {
            return Err(Unfilled::TooLong(max));
        }
        out.push_str(&value);
        last = end;
    }
    out.push_str(&template[last..]);
    if out.len() > max {
        return Err(Unfilled::TooLong(max));
    }
    Ok(out)
}

/// (name, start, end) of each well-formed placeholder.
fn placeholders(template: &str) -> Vec<(&str, usize, usize)> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(open) = template[from..].find("{{").map(|i| from + i) {
        let Some(close) = template[open + 2..].find("}}").map(|i| open + 2 + i) else {
            break;
        };
        let name = template[open + 2..close].trim();
        let valid = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if valid {
            found.push((name, open, close + 2));
            from = close + 2;
        } else {
            from = open + 2;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_placeholders_and_names_the_missing_one() {
        let t = "Summarize {{ text }} in {{lang}}; again: {{text}}. Not {{ a b }} or {{}}.";
        assert_eq!(variables(t), ["text", "lang"]);
        let filled = render(t, |n| (n == "text").then(|| "X".to_string()), MAX_FILLED);
        assert_eq!(filled, Err(Unfilled::Missing("lang".to_string())));
        let filled = render(t, |n| Some(n.to_uppercase()), MAX_FILLED).unwrap();
        assert_eq!(
            filled,
            "Summarize TEXT in LANG; again: TEXT. Not {{ a b }} or {{}}."
        );
        // A repeated placeholder cannot multiply a value past the bound.
        let doubled = render("{{a}}{{a}}{{a}}", |_| Some("x".repeat(40)), 100);
        assert_eq!(doubled, Err(Unfilled::TooLong(100)));
    }
}
