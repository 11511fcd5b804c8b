//! CORS for browser clients: the headers for an allowed origin, and preflight answers.

use crate::config::Cors;

/// The request headers a browser may send; the SDKs' own ones included.
const ALLOW_HEADERS: &str = "authorization, content-type, x-api-key, anthropic-version, anthropic-beta, \
openai-organization, openai-project, x-stainless-arch, x-stainless-lang, x-stainless-os, \
x-stainless-package-version, x-stainless-retry-count, x-stainless-runtime, x-stainless-runtime-version, \
x-stainless-timeout, anthropic-dangerous-direct-browser-access";
const EXPOSE_HEADERS: &str = "retry-after, x-ratelimit-limit-requests, x-ratelimit-limit-tokens, \
x-ratelimit-remaining-requests, x-ratelimit-remaining-tokens, x-ratelimit-reset-requests, x-ratelimit-reset-tokens";

/// The CORS headers for a request from `origin`, or none when the origin is not allowed.
pub(crate) fn cors_headers(cors: &Cors, origin: Option<&str>) -> Vec<(&'static str, String)> {
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
pub(crate) fn preflight_headers(cors: &Cors, origin: Option<&str>) -> Vec<(&'static str, String)> {
    let mut h = cors_headers(cors, origin);
    if !h.is_empty() {
        h.push(("access-control-allow-methods", "GET, POST, OPTIONS".into()));
        h.push(("access-control-allow-headers", ALLOW_HEADERS.into()));
        h.push(("access-control-max-age", cors.max_age_secs.to_string()));
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

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
