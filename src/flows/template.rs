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

/// The template with every placeholder filled; the first name `lookup` does not know is the
/// error.
pub fn render(template: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut last = 0;
    for (name, start, end) in placeholders(template) {
        out.push_str(&template[last..start]);
        out.push_str(&lookup(name).ok_or_else(|| name.to_string())?);
        last = end;
    }
    out.push_str(&template[last..]);
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
        let filled = render(t, |n| (n == "text").then(|| "X".to_string()));
        assert_eq!(filled, Err("lang".to_string()));
        let filled = render(t, |n| Some(n.to_uppercase())).unwrap();
        assert_eq!(
            filled,
            "Summarize TEXT in LANG; again: TEXT. Not {{ a b }} or {{}}."
        );
    }
}
