//! The one error type every client-facing failure becomes, and its OpenAI-shaped JSON.

use bytes::Bytes;
use serde::Serialize;

/// What went wrong, as a closed set: the status code and the metric label derive from it, so a
/// client-controlled string can never become a label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidRequest,
    InvalidJson,
    MissingKey,
    InvalidKey,
    ModelNotAllowed,
    UnknownModel,
    NotFound,
    MethodNotAllowed,
    BodyTooLarge,
    HeadersTooLarge,
    /// The client did not send its request (header or body) in time.
    RequestTimeout,
    RateLimited,
    UpstreamConnect,
    UpstreamBadResponse,
    UpstreamAuth,
    /// The vendor says the gateway's OAuth access token expired or is invalid (Qianfan 110/111):
    /// fetch a new one and try once more.
    UpstreamTokenExpired,
    UpstreamError,
    UpstreamOverloaded,
    UpstreamTimeout,
    Internal,
}

impl ErrorKind {
    pub fn status(self) -> u16 {
        use ErrorKind::*;
        match self {
            InvalidRequest | InvalidJson => 400,
            MissingKey | InvalidKey => 401,
            ModelNotAllowed => 403,
            UnknownModel | NotFound => 404,
            MethodNotAllowed => 405,
            BodyTooLarge => 413,
            HeadersTooLarge => 431,
            RequestTimeout => 408,
            RateLimited => 429,
            UpstreamConnect | UpstreamBadResponse | UpstreamAuth | UpstreamTokenExpired
            | UpstreamError => 502,
            UpstreamOverloaded => 503,
            UpstreamTimeout => 504,
            Internal => 500,
        }
    }

    /// OpenAI's `error.type`.
    fn openai_type(self) -> &'static str {
        use ErrorKind::*;
        match self {
            InvalidRequest | InvalidJson | UnknownModel | NotFound | MethodNotAllowed
            | BodyTooLarge | HeadersTooLarge | RequestTimeout => "invalid_request_error",
            MissingKey | InvalidKey => "authentication_error",
            ModelNotAllowed => "permission_error",
            RateLimited => "rate_limit_error",
            UpstreamConnect | UpstreamBadResponse | UpstreamAuth | UpstreamTokenExpired
            | UpstreamError => "upstream_error",
            UpstreamOverloaded => "overloaded_error",
            UpstreamTimeout => "timeout_error",
            Internal => "server_error",
        }
    }

    /// Low-cardinality label for metrics.
    pub fn as_str(self) -> &'static str {
        use ErrorKind::*;
        match self {
            InvalidRequest => "invalid_request",
            InvalidJson => "invalid_json",
            MissingKey => "missing_key",
            InvalidKey => "invalid_key",
            ModelNotAllowed => "model_not_allowed",
            UnknownModel => "unknown_model",
            NotFound => "not_found",
            MethodNotAllowed => "method_not_allowed",
            BodyTooLarge => "body_too_large",
            HeadersTooLarge => "headers_too_large",
            RequestTimeout => "request_timeout",
            RateLimited => "rate_limited",
            UpstreamConnect => "upstream_connect",
            UpstreamBadResponse => "upstream_bad_response",
            UpstreamAuth => "upstream_auth",
            UpstreamTokenExpired => "upstream_token_expired",
            UpstreamError => "upstream_error",
            UpstreamOverloaded => "upstream_overloaded",
            UpstreamTimeout => "upstream_timeout",
            Internal => "internal",
        }
    }

    pub fn is_upstream(self) -> bool {
        use ErrorKind::*;
        matches!(
            self,
            UpstreamConnect
                | UpstreamBadResponse
                | UpstreamAuth
                | UpstreamTokenExpired
                | UpstreamError
                | UpstreamOverloaded
                | UpstreamTimeout
        )
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct GatewayError {
    pub kind: ErrorKind,
    /// Set when the status differs from the kind's default, e.g. a vendor's 400 or 429 passed on.
    pub status: Option<u16>,
    pub message: String,
    pub param: Option<String>,
    pub code: Option<String>,
    pub retry_after_secs: Option<u64>,
    /// More response headers, e.g. `x-ratelimit-*` on the gateway's own 429.
    pub headers: Vec<(&'static str, String)>,
}

/// The longest `Retry-After` the gateway passes on or waits for.
pub const MAX_RETRY_AFTER_SECS: u64 = 86_400;

pub type GwResult<T> = Result<T, GatewayError>;

impl GatewayError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        GatewayError {
            kind,
            status: None,
            message: message.into(),
            param: None,
            code: None,
            retry_after_secs: None,
            headers: Vec::new(),
        }
    }

    pub fn invalid(message: impl Into<String>, param: Option<&str>) -> Self {
        GatewayError::new(ErrorKind::InvalidRequest, message).with_param(param)
    }

    /// A 400 naming the request parameter that is wrong.
    pub fn bad_param(param: &str, message: impl Into<String>) -> Self {
        GatewayError::invalid(message, Some(param))
    }

    pub fn with_param(mut self, param: Option<&str>) -> Self {
        self.param = param.map(str::to_string);
        self
    }

    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    /// A `Retry-After` for the client and the retry loop, capped at a day: vendors' numbers
    /// (headers, Gemini's `retryDelay`) reach here unchecked.
    pub fn with_retry_after(mut self, secs: Option<u64>) -> Self {
        self.retry_after_secs = secs.map(|s| s.min(MAX_RETRY_AFTER_SECS));
        self
    }

    pub fn status(&self) -> u16 {
        self.status.unwrap_or_else(|| self.kind.status())
    }

    /// The error as it goes to the client: `{"error":{"message","type","param","code"}}`.
    pub fn body(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(&self.envelope()).expect("plain strings serialize"))
    }

    /// The error as the last event of an OpenAI stream that failed after it began; the `openai`
    /// SDK raises on a data payload with an `error` key.
    pub fn sse_event(&self) -> Bytes {
        let mut out = b"data: ".to_vec();
        serde_json::to_writer(&mut out, &self.envelope()).expect("plain strings serialize");
        out.extend_from_slice(b"\n\ndata: [DONE]\n\n");
        Bytes::from(out)
    }

    fn envelope(&self) -> Envelope<'_> {
        Envelope {
            error: Body {
                message: &self.message,
                r#type: self.kind.openai_type(),
                param: self.param.as_deref(),
                code: self.code.as_deref().or(Some(self.kind.as_str())),
            },
        }
    }
}

impl std::fmt::Display for GatewayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.status(),
            self.kind.as_str(),
            self.message
        )
    }
}

/// An error as OpenAI's clients read it.
#[derive(Serialize, schemars::JsonSchema)]
#[schemars(rename = "Error")]
pub(crate) struct Envelope<'a> {
    error: Body<'a>,
}

#[derive(Serialize, schemars::JsonSchema)]
#[schemars(rename = "ErrorBody")]
struct Body<'a> {
    message: &'a str,
    r#type: &'static str,
    param: Option<&'a str>,
    code: Option<&'a str>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_openai_shaped() {
        let e = GatewayError::invalid("`messages` is required", Some("messages"));
        let v: serde_json::Value = serde_json::from_slice(&e.body()).unwrap();
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["param"], "messages");
        assert_eq!(v["error"]["code"], "invalid_request");
        assert_eq!(e.status(), 400);
    }

    #[test]
    fn stream_error_ends_the_stream() {
        let e = GatewayError::new(ErrorKind::UpstreamBadResponse, "garbage");
        let s = String::from_utf8(e.sse_event().to_vec()).unwrap();
        assert!(s.starts_with("data: {\"error\":"));
        assert!(s.ends_with("data: [DONE]\n\n"));
    }
}
