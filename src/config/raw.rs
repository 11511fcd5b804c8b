//! The config file's shapes exactly as written in YAML. Unknown fields are errors, so a typo
//! is reported instead of silently ignored.

use serde::Deserialize;

use super::pricing::RawPrice;
use super::{Limits, Period};

/// A provider's `kind:` in YAML. Qianfan's `api_version` picks between its two APIs at load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(super) enum ProviderKind {
    #[serde(rename = "openai")]
    OpenAi,
    #[serde(rename = "openai_compatible")]
    OpenAiCompatible,
    Anthropic,
    #[serde(rename = "dashscope")]
    DashScope,
    Qianfan,
    Gemini,
}

#[derive(Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    #[serde(default)]
    pub(super) listen: Vec<String>,
    pub(super) threads: Option<usize>,
    pub(super) max_body_bytes: Option<usize>,
    pub(super) max_header_bytes: Option<usize>,
    pub(super) grace_period_seconds: Option<u64>,
    #[serde(default)]
    pub(super) clients: RawClientLimits,
    /// Reload when the config file changes.
    #[serde(default)]
    pub(super) watch_config: bool,
    /// Peers whose `X-Forwarded-For` is believed (CIDRs).
    #[serde(default)]
    pub(super) trusted_proxies: Vec<String>,
    /// Serve HTTPS on every listen address.
    pub(super) tls: Option<RawTls>,
    /// Where a new binary started with `--upgrade` receives the listening sockets.
    pub(super) upgrade_sock: Option<String>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    pub(super) cert: String,
    pub(super) key: String,
}

/// `telemetry:`: where traces go.
#[derive(Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTelemetry {
    pub(super) otlp: Option<RawOtlp>,
}

/// An OTLP collector and what is sent to it.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOtlp {
    /// `http://collector:4318` (HTTP) or `http://collector:4317` (gRPC).
    pub(super) endpoint: String,
    #[serde(default)]
    pub(super) protocol: super::OtlpProtocol,
    /// Sent with every export, e.g. a vendor's API key header.
    #[serde(default)]
    pub(super) headers: std::collections::BTreeMap<String, String>,
    /// The share of traces started here that are kept (0 to 1; 1 by default). A client's
    /// `traceparent` decides for its own trace.
    pub(super) sample_ratio: Option<f64>,
    /// Prompts and replies as span attributes.
    #[serde(default)]
    pub(super) capture_content: bool,
    /// `service.name` (modelmux by default).
    pub(super) service_name: Option<String>,
    /// How long one export may take (10s by default).
    pub(super) timeout: Option<String>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    pub(super) listen: String,
    pub(super) key: String,
}

#[derive(Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    #[serde(default)]
    pub(super) format: super::LogFormat,
    pub(super) path: Option<String>,
}

#[derive(Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLogs {
    #[serde(default)]
    pub(super) backend: RawLogBackend,
    pub(super) path: Option<String>,
    pub(super) url: Option<String>,
    pub(super) queue: Option<usize>,
    pub(super) retention: Option<RawRetention>,
    #[serde(default)]
    pub(super) bodies: RawLogBodies,
}

/// `retention: 7d` (the rows), or `{raw: 7d, rollups: 400d}`.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub(super) enum RawRetention {
    Raw(String),
    Both {
        raw: Option<String>,
        rollups: Option<String>,
    },
}

#[derive(Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLogBodies {
    #[serde(default)]
    pub(super) models: Vec<String>,
    #[serde(default)]
    pub(super) keys: Vec<String>,
    pub(super) max_bytes: Option<usize>,
}

#[derive(Deserialize, Default, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub(super) enum RawLogBackend {
    #[default]
    Sqlite,
    Postgres,
    Off,
}

#[derive(Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawResponses {
    #[serde(default)]
    pub(super) backend: RawCacheBackend,
    pub(super) redis_url: Option<String>,
    pub(super) prefix: Option<String>,
    pub(super) ttl: Option<String>,
    pub(super) max_bytes: Option<u64>,
}

/// Bounds on what one client connection may hold.
#[derive(Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClientLimits {
    pub(super) header_timeout: Option<String>,
    pub(super) body_timeout: Option<String>,
    pub(super) write_timeout: Option<String>,
    pub(super) drain_timeout: Option<String>,
    pub(super) keepalive: Option<String>,
    pub(super) max_connections: Option<usize>,
}

#[derive(Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    pub(super) listen: Option<String>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMock {
    #[serde(default = "default_mock_bind")]
    pub(super) bind: String,
    pub(super) base_port: u16,
}

fn default_mock_bind() -> String {
    "127.0.0.1".into()
}

#[derive(Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTimeouts {
    pub(super) connect: Option<String>,
    pub(super) first_byte: Option<String>,
    pub(super) idle: Option<String>,
    pub(super) total: Option<String>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProvider {
    pub(super) name: String,
    pub(super) kind: ProviderKind,
    pub(super) base_url: String,
    pub(super) api_key: Option<String>,
    /// Baidu Qianfan v1 OAuth client credentials (API Key / Secret Key).
    pub(super) client_id: Option<String>,
    pub(super) client_secret: Option<String>,
    /// Where Qianfan v1 fetches its OAuth token; defaults to Baidu's public endpoint.
    pub(super) token_url: Option<String>,
    /// Vendor API generation where a vendor has two (Qianfan `v1` / `v2`).
    pub(super) api_version: Option<String>,
    /// `max_tokens` sent when the client gives none and the vendor requires one (Anthropic).
    pub(super) default_max_tokens: Option<u64>,
    /// PEM file of CA certificates to trust for this provider besides the system's (a private
    /// CA in front of a self-hosted model server).
    pub(super) ca_file: Option<String>,
    /// Requests in flight to one of this provider's targets at most; more get a 503 at once.
    pub(super) max_in_flight: Option<u32>,
    /// Signed credentials instead of a static key.
    pub(super) auth: Option<RawAuth>,
    /// DashScope: the hosts its image results may be fetched from (`*.suffix` patterns).
    pub(super) result_hosts: Option<Vec<String>>,
    /// The server has OpenAI's `/responses` (OpenAI: yes; `openai_compatible`: say so).
    pub(super) responses_api: Option<bool>,
    #[serde(default)]
    pub(super) timeouts: RawTimeouts,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub(super) enum RawAuth {
    /// HS256 tokens signed by the gateway from a key id and secret (Zhipu GLM).
    Jwt {
        key_id: String,
        secret: String,
        ttl: Option<String>,
    },
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTarget {
    pub(super) provider: String,
    pub(super) model: String,
    #[serde(default = "default_weight")]
    pub(super) weight: u32,
    #[serde(default)]
    pub(super) priority: u32,
}

fn default_weight() -> u32 {
    1
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawModel {
    pub(super) targets: Vec<RawTarget>,
    #[serde(default)]
    pub(super) retry: RawRetry,
    #[serde(default)]
    pub(super) limits: Limits,
    pub(super) price: Option<RawPrice>,
    /// Replace e-mail addresses, phone, ID and card numbers in prompts before they leave.
    #[serde(default)]
    pub(super) redact_pii: bool,
    /// Per-route overrides of the providers' timeouts.
    #[serde(default)]
    pub(super) timeouts: RawTimeouts,
    /// Prompts and replies in the access log (off: they are often personal data).
    #[serde(default)]
    pub(super) log_bodies: bool,
    /// Answer repeated requests from the response cache.
    pub(super) cache: Option<RawModelCache>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawModelCache {
    pub(super) ttl: String,
    #[serde(default)]
    pub(super) scope: super::CacheScope,
}

#[derive(Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCache {
    #[serde(default)]
    pub(super) backend: RawCacheBackend,
    pub(super) max_bytes: Option<u64>,
    pub(super) redis_url: Option<String>,
    pub(super) prefix: Option<String>,
}

#[derive(Deserialize, Default, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub(super) enum RawCacheBackend {
    #[default]
    Memory,
    Redis,
}

#[derive(Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRetry {
    pub(super) attempts: Option<u32>,
    pub(super) deadline: Option<String>,
    pub(super) backoff: Option<String>,
    pub(super) max_backoff: Option<String>,
}

#[derive(Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBreaker {
    pub(super) failure_rate: Option<f64>,
    pub(super) min_requests: Option<u64>,
    pub(super) window: Option<String>,
    pub(super) consecutive_failures: Option<u32>,
    pub(super) cooldown: Option<String>,
    pub(super) probes: Option<u32>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKey {
    pub(super) name: String,
    /// The secret, or (`key_sha256`) its SHA-256 in hex, so that the file holds no secret.
    pub(super) key: Option<String>,
    pub(super) key_sha256: Option<String>,
    #[serde(default)]
    pub(super) models: Vec<String>,
    #[serde(default)]
    pub(super) limits: Limits,
    /// One budget, or several windows at once (`[{tokens: …, period: day}, {cost: …, period: month}]`).
    pub(super) budget: Option<OneOrMany<RawBudget>>,
    /// Client IPs (CIDRs) this key may be used from; any when empty.
    #[serde(default)]
    pub(super) allow_ips: Vec<String>,
    /// RFC 3339 time after which the key is refused.
    pub(super) expires_at: Option<String>,
    /// A team in `teams:`, whose limits and budget it shares.
    pub(super) team: Option<String>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub(super) enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    pub(super) fn into_vec(self) -> Vec<T> {
        match self {
            OneOrMany::One(t) => vec![t],
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBudget {
    pub(super) tokens: Option<u64>,
    pub(super) cost: Option<f64>,
    #[serde(default = "default_period")]
    pub(super) period: Period,
}

fn default_period() -> Period {
    Period::Month
}

#[derive(Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimitsSection {
    #[serde(default)]
    pub(super) backend: LimitsBackendKind,
    pub(super) redis_url: Option<String>,
    pub(super) prefix: Option<String>,
}

#[derive(Deserialize, Default, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub(super) enum LimitsBackendKind {
    #[default]
    Local,
    Redis,
}
