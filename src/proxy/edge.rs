//! Edge hygiene: CORS for browser clients, and redaction of personal data from prompts before
//! they leave for a vendor.

use std::borrow::Cow;

use once_cell::sync::Lazy;
use regex::Regex;

use crate::config::Cors;

/// The request headers a browser may send; the SDKs' own ones included.
const ALLOW_HEADERS: &str = "authorization, content-type, x-api-key, anthropic-version, anthropic-beta, \
openai-organization, openai-project, x-stainless-arch, x-stainless-lang, x-stainless-os, \
x-stainless-package-version, x-stainless-retry-count, x-stainless-runtime, x-stainless-runtime-version, \
x-stainless-timeout, anthropic-dangerous-direct-browser-access";
const EXPOSE_HEADERS: &str = "retry-after, x-ratelimit-limit-requests, x-ratelimit-limit-tokens, \
x-ratelimit-remaining-requests, x-ratelimit-remaining-tokens, x-ratelimit-reset-requests, x-ratelimit-reset-tokens";

/// The CORS headers for a request from `origin`, or none when the origin is not allowed.
pub fn cors_headers(cors: &Cors, origin: Option<&str>) -> Vec<(&'static str, String)> {
    let Some(origin) = origin else {
        return Vec::new();
    };
    let allowed = cors
        .allow_origins
        .iter()
        .any(|o| o == "*" || o.eq_ignore_ascii_case(origin));
    if !allowed {
        return Vec::new();
    }
    let value = if cors.allow_origins.iter().any(|o| o == "*") {
        "*".to_string()
    } else {
        origin.to_string()
    };
    vec![
        ("access-control-allow-origin", value),
        ("vary", "origin".to_string()),
        ("access-control-expose-headers", EXPOSE_HEADERS.to_string()),
    ]
}

/// The answer to a preflight `OPTIONS`.
pub fn preflight_headers(cors: &Cors, origin: Option<&str>) -> Vec<(&'static str, String)> {
    let mut h = cors_headers(cors, origin);
    if !h.is_empty() {
        h.push(("access-control-allow-methods", "GET, POST, OPTIONS".into()));
        h.push(("access-control-allow-headers", ALLOW_HEADERS.into()));
        h.push(("access-control-max-age", cors.max_age_secs.to_string()));
    }
    h
}

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
pub fn redact(text: &str) -> Cow<'_, str> {
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

    #[test]
    fn cors_allows_listed_origins_only() {
        let cors = Cors {
            allow_origins: vec!["https://app.example".into()],
            max_age_secs: 600,
        };
        assert!(cors_headers(&cors, Some("https://evil.example")).is_empty());
        let h = cors_headers(&cors, Some("https://app.example"));
        assert_eq!(
            h[0],
            (
                "access-control-allow-origin",
                "https://app.example".to_string()
            )
        );
        assert!(preflight_headers(&cors, Some("https://app.example"))
            .iter()
            .any(|(k, _)| *k == "access-control-allow-headers"));
        assert!(cors_headers(&cors, None).is_empty());
    }
}
