//! Redaction of personal data from prompts before they leave for a vendor (per route,
//! `redact_pii: true`).

use std::borrow::Cow;

use once_cell::sync::Lazy;
use regex::Regex;

/// Personal data patterns, most specific first: an 18-digit ID would otherwise read as a phone.
static PII: Lazy<[(Regex, &'static str); 4]> = Lazy::new(|| {
    let re = |p: &str| Regex::new(p).expect("the PII patterns are valid");
    [
        (
            re(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"),
            "[REDACTED_EMAIL]",
        ),
        // Chinese resident ID (18 characters) and US SSN.
        (
            re(r"\b\d{17}[\dXx]\b|\b\d{3}-\d{2}-\d{4}\b"),
            "[REDACTED_ID]",
        ),
        // International and national phone numbers: 8 to 15 digits with separators.
        (
            re(r"\+?\d{1,3}[\s.-]?\(?\d{2,4}\)?[\s.-]?\d{3,4}[\s.-]?\d{3,4}\b"),
            "[REDACTED_PHONE]",
        ),
        // Bank card numbers: 13 to 19 digits, in groups or not.
        (re(r"\b(?:\d[ -]?){12,18}\d\b"), "[REDACTED_NUMBER]"),
    ]
});

/// Replaces e-mail addresses, ID numbers, phone and card numbers in `text`.
pub(crate) fn redact(text: &str) -> Cow<'_, str> {
    let mut out = Cow::Borrowed(text);
    for (pattern, label) in PII.iter() {
        if pattern.is_match(&out) {
            out = Cow::Owned(pattern.replace_all(&out, *label).into_owned());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_personal_data() {
        let t = "Mail bob.smith@example.com or call +1 415-555-0100 / 13812345678; ID 11010119900307123X, SSN 123-45-6789.";
        let r = redact(t);
        for gone in [
            "bob.smith",
            "415-555-0100",
            "13812345678",
            "11010119900307123X",
            "123-45-6789",
        ] {
            assert!(!r.contains(gone), "{gone} left in: {r}");
        }
        assert!(
            r.contains("[REDACTED_EMAIL]")
                && r.contains("[REDACTED_PHONE]")
                && r.contains("[REDACTED_ID]")
        );
        assert_eq!(
            redact("The year 2025 had 365 days."),
            "The year 2025 had 365 days."
        );
    }
}
