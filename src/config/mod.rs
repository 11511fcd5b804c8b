//! The configuration: the YAML file, validated into one immutable runtime snapshot.
//!
//! Loading happens in two stages (raw shapes with `deny_unknown_fields` in `raw`, then the
//! section loaders in `load` build the runtime types below) so that `modelmux check` can report
//! every problem it finds, each with its YAML path, instead of stopping at the first one.
//! The running gateway reads the snapshot through [`LiveConfig`], one atomic pointer, so a
//! reload swaps it in one place and a request in flight keeps the snapshot it started with.

use std::collections::{HashMap, HashSet};

/// A map read on every request, with a fast hash (see Cargo.toml's `foldhash`).
pub type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use serde::Deserialize;

mod endpoint;
mod flows;
mod load;
mod pricing;
mod problems;
mod providers;
mod raw;
mod schema;
pub use schema::json_schema;
mod yaml;

pub use endpoint::{Endpoint, TrustedCa};
pub use flows::{Apps, Workflows};
pub use load::{check_budgets, load_str, load_str_at};
pub use pricing::{pixels, Price, Rates};
pub use problems::{Problem, Problems};

pub const DEFAULT_MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// A credential from the config. Its `Debug` and `Display` never show the value, so a secret
/// cannot leak through a log line or an error message that formats the config.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Token-bucket limits: requests and tokens per minute. Absent means unlimited.
#[derive(
    Deserialize, serde::Serialize, Default, Debug, Clone, Copy, PartialEq, schemars::JsonSchema,
)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
}

#[derive(
    Deserialize, serde::Serialize, Debug, Clone, Copy, PartialEq, Eq, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    Day,
    Month,
    Total,
}

/// A key's spending cap per period, in tokens and/or cost (the currency of the models' prices).
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    pub tokens: Option<u64>,
    pub cost: Option<f64>,
    #[serde(default = "month")]
    pub period: Period,
}

fn month() -> Period {
    Period::Month
}

/// Where limit buckets and budget spend live: in this process, or in Redis, shared by every
/// replica that points at it.
#[derive(Debug, Clone, PartialEq)]
pub enum LimitsBackend {
    Local,
    /// The URL can hold a password: it is a [`Secret`].
    Redis {
        url: Secret,
        prefix: String,
    },
}

#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerSettings,
    pub metrics_listen: Option<String>,
    pub mock: Option<MockSettings>,
    pub providers: Vec<Arc<Provider>>,
    pub models: Vec<PublicModel>,
    model_index: FastMap<String, usize>,
    pub keys: Vec<ClientKey>,
    /// Teams by name.
    pub teams: HashMap<String, Arc<Team>>,
    /// How many of `keys` the file gives (the rest are runtime keys, after them).
    pub file_keys: usize,
    /// Each secret's SHA-256 to its key's place in `keys` (made by `index_keys`).
    pub key_index: FastMap<[u8; 32], usize>,
    pub breaker: BreakerSettings,
    pub limits_backend: LimitsBackend,
    pub cors: Cors,
    pub admin: Option<AdminSettings>,
    pub log: LogSettings,
    pub cache: CacheBackend,
    pub responses: ResponsesStoreSettings,
    /// None: requests are not logged to a store.
    pub logs: Option<LogStoreSettings>,
    pub apps: Apps,
    pub workflows: Workflows,
    /// The unified request's capability map: type → provider name → public model.
    pub unified: crate::flows::CapabilityMap,
    /// When this config was loaded (Unix seconds): `created` in `/v1/models`.
    pub loaded_at: u64,
    /// Traces to an OTLP collector (`telemetry.otlp`).
    pub telemetry: Option<Arc<Telemetry>>,
}

/// OTLP's two transports.
#[derive(Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq, schemars::JsonSchema)]
pub enum OtlpProtocol {
    #[default]
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
    #[serde(rename = "grpc")]
    Grpc,
}

/// Where traces are exported and which are kept.
#[derive(Debug, Clone, PartialEq)]
pub struct Telemetry {
    /// For HTTP, the traces URL (`/v1/traces` is added to a bare address).
    pub endpoint: String,
    pub protocol: OtlpProtocol,
    /// Header names and values (secrets: an API key for a hosted collector).
    pub headers: Vec<(String, Secret)>,
    pub sample_ratio: f64,
    pub capture_content: bool,
    pub service_name: String,
    pub timeout: Duration,
}

/// Where cached answers live.
#[derive(Debug, Clone, PartialEq)]
pub enum CacheBackend {
    /// In this process, up to `max_bytes` in all.
    Memory { max_bytes: u64 },
    /// In Redis, shared by every replica, each key under `prefix` with a TTL.
    Redis { url: Secret, prefix: String },
}

/// Who may be answered from an entry: the key that caused it (so one tenant never sees
/// another's answer), or every key.
#[derive(Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CacheScope {
    #[default]
    Key,
    Global,
}

/// A model's response caching.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelCache {
    pub ttl: Duration,
    pub scope: CacheScope,
}

/// The admin listener: reload, status and the effective config, for the admin key only.
#[derive(Debug, Clone)]
pub struct AdminSettings {
    pub listen: String,
    pub key: Secret,
}

#[derive(Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Json,
    Text,
    /// No access log.
    Off,
}

/// The request log store (`logs:`): the embedded SQLite file, or none.
#[derive(Debug, Clone, PartialEq)]
pub struct LogStoreSettings {
    /// The SQLite file; empty until the config file's name gives the default.
    pub path: std::path::PathBuf,
    /// PostgreSQL instead, shared by replicas (the URL can hold a password).
    pub postgres: Option<Secret>,
    /// Rows waiting for the writer at most; more are dropped (and counted).
    pub queue: usize,
    /// How long rows, and their daily rollups, are kept.
    pub retention: crate::log_store::Retention,
    /// Whose request and response bodies are kept with their rows.
    pub bodies: LogBodies,
}

impl LogStoreSettings {
    /// The SQLite file: `path`, or (for a config not read from a file) `modelmux.logs.db`.
    pub fn sqlite_path(&self) -> &std::path::Path {
        match self.path.as_os_str().is_empty() {
            true => std::path::Path::new("modelmux.logs.db"),
            false => &self.path,
        }
    }
}

/// `logs.bodies`: the models and keys (by name, `*` for all) whose bodies are logged, each
/// body cut to `max_bytes`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LogBodies {
    pub models: Vec<String>,
    pub keys: Vec<String>,
    pub max_bytes: usize,
}

impl LogBodies {
    pub fn wanted(&self, model: Option<&str>, key: Option<&str>) -> bool {
        let listed = |names: &[String], name: Option<&str>| {
            names.iter().any(|n| n == "*" || Some(n.as_str()) == name)
        };
        listed(&self.models, model) || listed(&self.keys, key)
    }
}

/// Where the Responses API keeps stored responses (`responses:`).
#[derive(Debug, Clone, PartialEq)]
pub struct ResponsesStoreSettings {
    /// Redis, shared by every replica; None keeps them in this process.
    pub redis_url: Option<Secret>,
    pub prefix: String,
    /// How long a response can be continued or fetched.
    pub ttl: Duration,
    /// The cap on what this process keeps (in memory, or while Redis is away).
    pub max_bytes: u64,
}

impl Default for ResponsesStoreSettings {
    fn default() -> Self {
        ResponsesStoreSettings {
            redis_url: None,
            prefix: "modelmux-responses".into(),
            ttl: Duration::from_secs(24 * 3600),
            max_bytes: 64 * 1024 * 1024,
        }
    }
}

/// The access log: one line per request, to stdout or a file.
#[derive(Debug, Clone, Default)]
pub struct LogSettings {
    pub format: LogFormat,
    pub path: Option<String>,
}

/// A certificate and key (PEM files) for HTTPS on the listeners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: String,
    pub key: String,
}

#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub listen: Vec<String>,
    pub threads: usize,
    pub max_body_bytes: usize,
    pub max_header_bytes: usize,
    pub grace_period_seconds: u64,
    pub clients: ClientLimits,
    pub watch_config: bool,
    /// Peers whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub tls: Option<TlsFiles>,
    /// Where a graceful upgrade hands over the listening sockets; None: the default
    /// (`server::upgrade::default_socket`), in a directory only this user can write.
    pub upgrade_sock: Option<String>,
}

/// What one client connection may hold, so slow or hostile clients cannot pin resources.
#[derive(Debug, Clone)]
pub struct ClientLimits {
    /// The whole request header must arrive within this (slowloris).
    pub header_timeout: Duration,
    /// The whole request body must arrive within this.
    pub body_timeout: Duration,
    /// A write the client does not take within this ends the response (and the vendor's leg).
    pub write_timeout: Duration,
    /// After an answer sent before the body was read, reading the rest for keepalive stops here.
    pub drain_timeout: Duration,
    /// An idle keepalive connection is closed after this.
    pub keepalive: Duration,
    /// Connections held at once; more are closed at once.
    pub max_connections: usize,
}

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(5),
            keepalive: Duration::from_secs(60),
            max_connections: 20_000,
        }
    }
}

#[derive(Debug, Clone)]
pub struct MockSettings {
    pub bind: String,
    pub base_port: u16,
}

/// How many vendors the mock serves, one port each above `base_port`.
pub const MOCK_VENDOR_PORTS: u16 = 5;

impl MockSettings {
    /// The mock vendors' listen addresses: `bind` on `base_port + 1..=5`.
    pub fn addresses(&self) -> Vec<String> {
        (1..=MOCK_VENDOR_PORTS)
            .map(|i| format!("{}:{}", self.bind, self.base_port.saturating_add(i)))
            .collect()
    }
}

#[derive(Debug, Clone)]
pub struct Timeouts {
    pub connect: Duration,
    pub first_byte: Duration,
    pub idle: Duration,
    pub total: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(5),
            first_byte: Duration::from_secs(60),
            idle: Duration::from_secs(60),
            total: Duration::from_secs(600),
        }
    }
}

#[derive(Debug)]
pub struct Provider {
    pub name: String,
    /// Which API the vendor speaks, resolved once at load.
    pub vendor: Vendor,
    pub endpoint: Endpoint,
    /// Sent as the vendor expects it (bearer, `x-api-key`, `x-goog-api-key`); None for
    /// self-hosted servers without one, and for Qianfan v1, which uses OAuth client credentials.
    pub api_key: Option<Secret>,
    /// `max_tokens` sent when the client gives none and the vendor requires one (Anthropic).
    pub default_max_tokens: u64,
    /// Requests in flight to one target (this provider, one vendor model) at most.
    pub max_in_flight: u32,
    /// Signed short-lived tokens instead of `api_key`.
    pub jwt: Option<JwtAuth>,
    pub timeouts: Timeouts,
    pub ca: Option<TrustedCa>,
    /// Where the gateway may fetch this vendor's results from (DashScope's image URLs).
    pub result_hosts: ResultHosts,
    /// The environment variables its credentials came from, named when the vendor rejects
    /// them (never their values).
    pub credentials_from: Vec<String>,
    /// It serves OpenAI's Responses API (`/responses`): Responses API clients' bodies go to it
    /// as they are. OpenAI does; an `openai_compatible` server says so with `responses_api`.
    pub responses_api: bool,
}

/// Hosts a vendor's result URLs may point at: the provider's own, and exact names or
/// `*.suffix` patterns (DashScope's OSS buckets). An address literal is allowed only as the
/// provider's own host, so a vendor reply cannot point the gateway at its own network.
#[derive(Debug, Clone, Default)]
pub struct ResultHosts {
    pub own: String,
    pub patterns: Vec<String>,
}

impl ResultHosts {
    pub fn allows(&self, host: &str) -> bool {
        let bare = |h: &str| {
            h.trim_start_matches('[')
                .trim_end_matches(']')
                .to_ascii_lowercase()
        };
        let host = bare(host);
        if host == bare(&self.own) {
            return true;
        }
        if host.parse::<std::net::IpAddr>().is_ok() || host == "localhost" {
            return false;
        }
        self.patterns
            .iter()
            .any(|pattern| match pattern.strip_prefix("*.") {
                Some(suffix) => host
                    .strip_suffix(suffix)
                    .is_some_and(|rest| rest.len() > 1 && rest.ends_with('.')),
                None => host == *pattern,
            })
    }
}

#[derive(Debug, Clone)]
pub struct Target {
    pub provider: Arc<Provider>,
    pub model: String,
    pub weight: u32,
    pub priority: u32,
}

#[derive(Debug, Clone)]
pub struct PublicModel {
    pub name: String,
    pub targets: Vec<Target>,
    pub retry: RetryPolicy,
    pub timeouts: TimeoutOverrides,
    pub limits: Limits,
    pub price: Option<Price>,
    pub redact_pii: bool,
    pub log_bodies: bool,
    pub cache: Option<ModelCache>,
}

/// Browser access: origins allowed to call the API (`*` for any); empty turns CORS off.
#[derive(Deserialize, Debug, Clone, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Cors {
    #[serde(default)]
    pub allow_origins: Vec<String>,
    #[serde(default = "default_max_age", rename = "max_age")]
    pub max_age_secs: u64,
}

fn default_max_age() -> u64 {
    600
}

/// How a route retries and fails over before any byte reached the client.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in all, across targets.
    pub attempts: u32,
    /// No attempt starts after this much time since the request arrived.
    pub deadline: Duration,
    /// First backoff; doubles per retry up to `max_backoff`, with jitter.
    pub backoff: Duration,
    pub max_backoff: Duration,
}

/// A route's timeouts where they differ from its providers'. The first-byte bound defaults to
/// 5 s on routes: a target that has not started answering by then is failed over.
#[derive(Debug, Clone, Default)]
pub struct TimeoutOverrides {
    pub connect: Option<Duration>,
    pub first_byte: Option<Duration>,
    pub idle: Option<Duration>,
    pub total: Option<Duration>,
}

impl TimeoutOverrides {
    pub fn apply(&self, provider: &Timeouts) -> Timeouts {
        Timeouts {
            connect: self.connect.unwrap_or(provider.connect),
            // The route's bound can only tighten the provider's.
            first_byte: self
                .first_byte
                .map_or(provider.first_byte, |f| f.min(provider.first_byte)),
            idle: self.idle.unwrap_or(provider.idle),
            total: self.total.unwrap_or(provider.total),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct BreakerSettings {
    /// Open when more than this share of the window's requests failed...
    pub failure_rate: f64,
    /// ...and the window holds at least this many requests.
    pub min_requests: u64,
    pub window: Duration,
    /// Or open after this many failures in a row.
    pub consecutive_failures: u32,
    /// How long an open breaker skips its target before probing.
    pub cooldown: Duration,
    /// Probe requests let through half-open; all must succeed to close.
    pub probes: u32,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        BreakerSettings {
            failure_rate: 0.05,
            // A rate over fewer requests is a handful of bad prompts, not a sick vendor.
            min_requests: 100,
            window: Duration::from_secs(30),
            consecutive_failures: 5,
            cooldown: Duration::from_secs(10),
            probes: 2,
        }
    }
}

#[derive(Debug, Clone)]
pub enum ModelAccess {
    All,
    Only(HashSet<String>),
}

#[derive(Debug, Clone)]
pub struct ClientKey {
    pub name: String,
    /// The secret itself, when the config gives it (`key:`); keys given by their hash
    /// (`key_sha256:`) and runtime keys have none here.
    pub key: Option<Secret>,
    /// SHA-256 of each secret that opens the key, with when it stops doing so (a rotated
    /// key's old secret, for its grace period).
    pub hashes: Vec<KeyHash>,
    pub models: ModelAccess,
    pub limits: Limits,
    /// Its budgets, one per period (a day's and a month's at once, say).
    pub budgets: Vec<Budget>,
    /// Client IPs the key may be used from; any when empty.
    pub allow_ips: Vec<ipnet::IpNet>,
    /// Unix seconds after which the key is refused.
    pub expires_at: Option<u64>,
    /// The team whose limits and budget the key shares with its other keys.
    pub team: Option<Arc<Team>>,
}

/// A team (`teams:`): limits and a budget shared by all its keys, on top of each key's own.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Team {
    #[serde(skip)]
    pub name: String,
    #[serde(default)]
    pub limits: Limits,
    pub budget: Option<Budget>,
}

/// One secret of a key, by its SHA-256, valid until `until` (Unix seconds) when set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyHash {
    pub sha256: [u8; 32],
    pub until: Option<u64>,
}

/// A client key's SHA-256: how keys are stored and looked up.
pub fn key_hash(secret: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(secret).into()
}

/// A fresh client key: `sk-mm-` and 40 letters and digits from the OS's random generator
/// (238 bits).
pub fn new_client_key() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut key = String::from("sk-mm-");
    while key.len() < 46 {
        let mut byte = [0u8; 1];
        getrandom::fill(&mut byte).expect("the OS random generator is available");
        // 248 = 4 × 62: rejecting the rest keeps every character equally likely.
        if byte[0] < 248 {
            key.push(ALPHABET[usize::from(byte[0]) % 62] as char);
        }
    }
    key
}

/// Lowercase hex digits, two a byte.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    hex_into(&mut out, bytes);
    out
}

/// `bytes` in lowercase hex at the end of `out`. By hand: a `format!` a byte cost a cache
/// key 6,000 instructions.
pub fn hex_into(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
}

/// 64 hex digits back to a hash.
pub fn unhex(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

impl ClientKey {
    /// Whether the key may use a public model, or run a workflow (`workflow/<name>`, which
    /// `workflow/*` allows for every workflow).
    pub fn may_use(&self, model: &str) -> bool {
        match &self.models {
            ModelAccess::All => true,
            ModelAccess::Only(set) => {
                set.contains(model)
                    || (model.starts_with(WORKFLOW_PREFIX) && set.contains(ALL_WORKFLOWS))
                    || set
                        .iter()
                        .any(|p| p.contains('*') && p != ALL_WORKFLOWS && glob(p, model))
            }
        }
    }
}

/// Whether `name` matches `pattern`, where `*` stands for any run of characters (`gpt-4o*`).
pub fn glob(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let pieces: Vec<&str> = parts.collect();
    let Some((last, middle)) = pieces.split_last() else {
        return rest.is_empty();
    };
    for piece in middle {
        match rest.find(piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// How a key's `models` names workflows: `workflow/<name>`, or all of them.
pub const WORKFLOW_PREFIX: &str = "workflow/";
pub const ALL_WORKFLOWS: &str = "workflow/*";

impl Config {
    /// Indexes every key's secrets by hash, for the one probe authentication makes.
    pub fn index_keys(&mut self) {
        self.key_index = self
            .keys
            .iter()
            .enumerate()
            .flat_map(|(i, k)| k.hashes.iter().map(move |h| (h.sha256, i)))
            .collect();
    }

    pub fn model(&self, name: &str) -> Option<&PublicModel> {
        self.model_index.get(name).map(|&i| &self.models[i])
    }
}

pub fn load_file(path: &str) -> Result<Config, Problems> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Problems::one(format!("cannot read {path}: {e}")))?;
    let base = std::path::Path::new(path).parent();
    let mut config = load_str_at(&text, &|name| std::env::var(name).ok(), base)?;
    if let Some(logs) = config
        .logs
        .as_mut()
        .filter(|l| l.path.as_os_str().is_empty())
    {
        logs.path = std::path::Path::new(path).with_extension("logs.db");
    }
    Ok(config)
}

/// A key id and secret from which the gateway signs short-lived HS256 tokens.
#[derive(Debug, Clone)]
pub struct JwtAuth {
    pub key_id: String,
    pub secret: Secret,
    pub ttl: Duration,
}

/// The vendor API a provider speaks, with what that API alone needs.
#[derive(Debug, Clone)]
pub enum Vendor {
    OpenAi,
    /// vLLM, Ollama, DeepSeek, Moonshot, DashScope compatible mode: OpenAI's API, key optional.
    OpenAiCompatible,
    Anthropic,
    DashScope,
    /// Baidu's own chat API, with an OAuth access token the gateway fetches and refreshes.
    QianfanV1 {
        client_id: Secret,
        client_secret: Secret,
        token_endpoint: Endpoint,
    },
    /// Qianfan's OpenAI-compatible API.
    QianfanV2,
    Gemini,
}

impl Vendor {
    /// The `kind:` it was configured as (both Qianfan APIs are `qianfan`).
    pub fn kind(&self) -> &'static str {
        match self {
            Vendor::OpenAi => "openai",
            Vendor::OpenAiCompatible => "openai_compatible",
            Vendor::Anthropic => "anthropic",
            Vendor::DashScope => "dashscope",
            Vendor::QianfanV1 { .. } | Vendor::QianfanV2 => "qianfan",
            Vendor::Gemini => "gemini",
        }
    }
}

/// The config the gateway runs on: one snapshot behind one atomic pointer.
pub struct LiveConfig {
    current: ArcSwap<Config>,
    /// The keys made at runtime (the key store's), put after the file's own in every
    /// snapshot; the lock also makes a reload and a key change one after the other.
    runtime_keys: std::sync::Mutex<Vec<ClientKey>>,
}

impl LiveConfig {
    pub fn new(config: Arc<Config>) -> Self {
        LiveConfig {
            current: ArcSwap::new(config),
            runtime_keys: Default::default(),
        }
    }

    /// The snapshot now in force; it stays valid for as long as the caller holds it.
    pub fn current(&self) -> Arc<Config> {
        self.current.load_full()
    }

    /// Puts `config` (as loaded from the file) in force for every request that starts from
    /// now on, with the runtime keys after its own.
    pub fn replace(&self, config: Arc<Config>) -> Arc<Config> {
        let runtime = self.runtime_keys.lock().unwrap_or_else(|e| e.into_inner());
        let merged = Arc::new(with_runtime_keys(&config, &runtime));
        self.current.store(merged.clone());
        merged
    }

    /// The names of the file's keys in `config` that a runtime key also has: the file's key
    /// wins, and the runtime key's secret stops opening the gateway.
    pub fn shadowed_runtime_keys(&self, config: &Config) -> Vec<String> {
        let runtime = self.runtime_keys.lock().unwrap_or_else(|e| e.into_inner());
        let file = &config.keys[..config.file_keys.min(config.keys.len())];
        runtime
            .iter()
            .filter(|k| file.iter().any(|own| own.name == k.name))
            .map(|k| k.name.clone())
            .collect()
    }

    /// Puts a new set of runtime keys in force (a key made, changed or revoked, here or on
    /// another replica).
    pub fn set_runtime_keys(&self, keys: Vec<ClientKey>) {
        let mut runtime = self.runtime_keys.lock().unwrap_or_else(|e| e.into_inner());
        *runtime = keys;
        let merged = with_runtime_keys(&self.current(), &runtime);
        self.current.store(Arc::new(merged));
    }
}

/// `config` with its own keys (the file's) and then `runtime`, less any whose name the file
/// took (the file's key wins; the key store refuses such names).
fn with_runtime_keys(config: &Config, runtime: &[ClientKey]) -> Config {
    let mut merged = config.clone();
    merged.keys.truncate(config.file_keys);
    for k in runtime {
        if merged.keys.iter().all(|own| own.name != k.name) {
            let mut k = k.clone();
            // The team by its name in this config (a reload may have changed or dropped it).
            k.team = k.team.and_then(|t| config.teams.get(&t.name).cloned());
            merged.keys.push(k);
        }
    }
    merged.index_keys();
    merged
}

#[cfg(test)]
mod tests {
    use super::yaml::expand_str;
    use super::*;

    #[test]
    fn model_patterns_match_as_globs() {
        for (p, n, want) in [
            ("gpt-4o*", "gpt-4o-mini", true),
            ("gpt-4o*", "gpt-4", false),
            ("*-mini", "gpt-4o-mini", true),
            ("claude-*-4", "claude-sonnet-4", true),
            ("claude-*-4", "claude-sonnet-4.5", false),
            ("a*b*c", "abc", true),
            ("a*a", "a", false),
        ] {
            assert_eq!(glob(p, n), want, "{p} {n}");
        }
    }

    const GOOD: &str = r#"
server:
  listen: ["127.0.0.1:8080"]
providers:
  - name: oa
    kind: openai
    base_url: https://api.openai.com/v1
    api_key: ${OPENAI_API_KEY}
  - name: local
    kind: openai_compatible
    base_url: http://127.0.0.1:8000/v1
    timeouts: {first_byte: 2s}
  - name: baidu
    kind: qianfan
    base_url: https://aip.baidubce.com
    client_id: ${QF_AK:-ak}
    client_secret: ${QF_SK:-sk}
models:
  gpt-4o:
    targets:
      - {provider: oa, model: gpt-4o, weight: 3}
      - {provider: local, model: llama, priority: 1}
keys:
  - {name: team-a, key: sk-team-a-123, models: [gpt-4o]}
"#;

    fn env(name: &str) -> Option<String> {
        (name == "OPENAI_API_KEY").then(|| "sk-real".to_string())
    }

    #[test]
    fn loads_a_good_config() {
        let c = load_str(GOOD, &env).unwrap();
        assert_eq!(c.providers.len(), 3);
        let m = c.model("gpt-4o").unwrap();
        assert_eq!(m.targets[0].weight, 3);
        assert_eq!(m.targets[1].priority, 1);
        assert_eq!(c.providers[1].timeouts.first_byte, Duration::from_secs(2));
        assert_eq!(
            c.providers[0].api_key.as_ref().map(Secret::expose),
            Some("sk-real")
        );
        assert!(matches!(c.providers[2].vendor, Vendor::QianfanV1 { .. }));
        assert_eq!(c.server.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
    }

    #[test]
    fn vendor_model_names_that_would_break_a_url_are_refused() {
        let conf = |model: &str| {
            format!("providers: [{{name: p, kind: gemini, base_url: \"http://x\", api_key: k}}]\nmodels: {{m: {{targets: [{{provider: p, model: \"{model}\"}}]}}}}\nkeys: [{{name: k, key: sk-12345678}}]")
        };
        assert!(load_str(&conf("gemini-2.5-flash"), &env).is_ok());
        assert!(load_str(&conf("meta-llama/Llama-3.1-8B"), &env).is_ok());
        for bad in ["a b", "x?access_token=1", "m#frag", "%2e%2e"] {
            let e = load_str(&conf(bad), &env).unwrap_err();
            assert!(
                e.to_string().contains("models.m.targets[0].model"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn two_listeners_on_one_address_are_refused() {
        let conf = |admin: &str, mock: &str| {
            format!("server: {{listen: [\"127.0.0.1:8080\"]}}\nadmin: {{listen: \"{admin}\", key: 0123456789abcdef}}\n{mock}keys: [{{name: k, key: sk-12345678}}]")
        };
        assert!(load_str(&conf("127.0.0.1:9091", ""), &env).is_ok());
        assert!(load_str(&conf("127.0.0.2:8080", ""), &env).is_ok());
        for (admin, mock) in [
            ("127.0.0.1:8080", ""),
            ("0.0.0.0:8080", ""),
            ("127.0.0.1:9091", "mock: {bind: 0.0.0.0, base_port: 9088}\n"),
        ] {
            let e = load_str(&conf(admin, mock), &env).unwrap_err().to_string();
            assert!(
                e.contains("each listener needs its own port"),
                "{admin}: {e}"
            );
        }
        let mock = MockSettings {
            bind: "127.0.0.1".into(),
            base_port: 9100,
        };
        assert_eq!(
            mock.addresses(),
            crate::mock::listen_addresses("127.0.0.1", 9100)
        );
    }

    #[test]
    fn secrets_are_not_printed() {
        let c = load_str(GOOD, &env).unwrap();
        let printed = format!("{c:?}");
        assert!(!printed.contains("sk-real"), "{printed}");
        assert!(!printed.contains("sk-team-a-123"), "{printed}");
        let redis = "limits: {backend: redis, redis_url: \"redis://:hunter2-pass@10.0.0.1:6379\"}\nkeys: [{name: k, key: sk-12345678}]";
        let printed = format!("{:?}", load_str(redis, &env).unwrap());
        assert!(!printed.contains("hunter2-pass"), "{printed}");
    }

    #[test]
    fn reports_every_problem_with_its_path() {
        let bad = r#"
server: {listen: ["nowhere"], colour: blue}
providers:
  - {name: a, kind: openai, base_url: "ftp://x", api_key: k}
  - {name: b, kind: klingon, base_url: "http://x"}
  - {name: c, kind: anthropic, base_url: "http://x"}
  - {name: d, kind: openai, base_url: "http://x", api_key: "${MISSING_VAR}"}
models:
  m1:
    targets: [{provider: nobody, model: x}]
  m2:
    targets: [{provider: c, model: x, wieght: 2}]
keys:
  - {name: k, key: short, models: [m9]}
"#;
        let err = load_str(bad, &env).unwrap_err();
        let text = err.to_string();
        for expected in [
            "server.colour",
            "providers[0].base_url: scheme `ftp`",
            "providers[1].kind",
            "providers[2].api_key: required for anthropic",
            "providers[3].api_key: environment variable MISSING_VAR is not set",
            "models.m1.targets[0].provider: no provider named `nobody`",
            "models.m2.targets[0].wieght",
            "keys[0].key",
            "keys[0].models[0]: no model named `m9`",
        ] {
            assert!(text.contains(expected), "missing `{expected}` in:\n{text}");
        }
    }

    #[test]
    fn the_log_store_sits_beside_the_config_and_keeps_rows_up_to_400_days() {
        let env = |_: &str| None;
        let keys = "keys: [{name: k, key: sk-12345678}]";
        let base = std::path::Path::new("/etc/mm");
        let c = load_str_at(
            &format!("logs: {{path: l.db, retention: 30d}}\n{keys}"),
            &env,
            Some(base),
        )
        .unwrap();
        let logs = c.logs.unwrap();
        assert_eq!(
            (
                logs.path.to_str(),
                logs.retention.raw,
                logs.retention.rollups
            ),
            (
                Some("/etc/mm/l.db"),
                Duration::from_secs(30 * 86400),
                Duration::from_secs(400 * 86400)
            )
        );
        let c = load_str(
            &format!("logs: {{retention: {{raw: 2d, rollups: 90d}}}}\n{keys}"),
            &env,
        )
        .unwrap();
        let r = c.logs.unwrap().retention;
        assert_eq!(
            (r.raw, r.rollups),
            (
                Duration::from_secs(2 * 86400),
                Duration::from_secs(90 * 86400)
            )
        );
        let c = load_str_at(keys, &env, Some(base)).unwrap();
        assert!(
            c.logs.unwrap().path.as_os_str().is_empty(),
            "named after the file by load_file"
        );
        assert!(load_str(&format!("logs: {{backend: off}}\n{keys}"), &env)
            .unwrap()
            .logs
            .is_none());
        let e = load_str(&format!("logs: {{retention: 500d}}\n{keys}"), &env).unwrap_err();
        assert!(
            e.to_string()
                .contains("logs.retention: must be at most 400 days"),
            "{e}"
        );
        let e = load_str(&format!("logs: {{backend: postgres}}\n{keys}"), &env).unwrap_err();
        assert!(e.to_string().contains("logs.url"), "{e}");
        let pg = "logs: {backend: postgres, url: \"postgres://u:hunter2@db/m\"}";
        let c = load_str(&format!("{pg}\n{keys}"), &env).unwrap();
        assert!(!format!("{c:?}").contains("hunter2"), "the URL is a secret");
    }

    #[test]
    fn stored_responses_use_their_own_or_the_limits_redis() {
        let env = |_: &str| None;
        let keys = "keys: [{name: k, key: sk-12345678}]";
        let c = load_str(&format!("responses: {{ttl: 2h}}\n{keys}"), &env).unwrap();
        assert_eq!(
            (c.responses.redis_url, c.responses.ttl),
            (None, Duration::from_secs(7200))
        );
        let shared = format!("limits: {{backend: redis, redis_url: \"redis://10.0.0.1:6379\"}}\nresponses: {{backend: redis}}\n{keys}");
        let c = load_str(&shared, &env).unwrap();
        assert_eq!(
            c.responses.redis_url.unwrap().expose(),
            "redis://10.0.0.1:6379"
        );
        let missing =
            load_str(&format!("responses: {{backend: redis}}\n{keys}"), &env).unwrap_err();
        assert!(
            missing.to_string().contains("responses.redis_url"),
            "{missing}"
        );
        let wrong_kind = "providers: [{name: a, kind: anthropic, base_url: \"http://x\", api_key: k, responses_api: true}]";
        let e = load_str(&format!("{wrong_kind}\n{keys}"), &env).unwrap_err();
        assert!(e.to_string().contains("responses_api"), "{e}");
    }

    #[test]
    fn traffic_sections_load() {
        let conf = r#"
providers: [{name: p, kind: openai_compatible, base_url: "http://127.0.0.1:1"}]
models:
  m:
    targets: [{provider: p, model: x}]
    retry: {attempts: 4, deadline: 20s}
    timeouts: {first_byte: 2s}
    limits: {rpm: 10, tpm: 1000}
    price: {prompt: 1.5, completion: 2}
breaker: {consecutive_failures: 3, cooldown: 2s}
limits: {backend: redis, redis_url: "redis://127.0.0.1:6379/0", prefix: mm}
keys: [{name: k, key: sk-12345678, limits: {rpm: 5}, budget: {tokens: 100, period: day}}]
"#;
        let c = load_str(conf, &|_| None).unwrap();
        let m = c.model("m").unwrap();
        assert_eq!(
            (m.retry.attempts, m.retry.deadline),
            (4, Duration::from_secs(20))
        );
        assert_eq!(m.timeouts.first_byte, Some(Duration::from_secs(2)));
        assert_eq!((m.limits.rpm, c.keys[0].limits.rpm), (Some(10), Some(5)));
        assert_eq!(c.breaker.consecutive_failures, 3);
        assert!(matches!(c.limits_backend, LimitsBackend::Redis { .. }));
        let bad = load_str(
            "limits: {backend: redis}\nkeys: [{name: k, key: sk-12345678, limits: {rpm: 0}}]",
            &|_| None,
        )
        .unwrap_err();
        let text = bad.to_string();
        assert!(
            text.contains("limits.redis_url") && text.contains("keys[0].limits.rpm"),
            "{text}"
        );
    }

    #[test]
    fn env_references_expand_with_defaults() {
        let mut e = |n: &str| (n == "A").then(|| "1".to_string());
        assert_eq!(expand_str("x${A}y", &mut e).unwrap(), "x1y");
        assert_eq!(expand_str("${B:-dflt}", &mut e).unwrap(), "dflt");
        assert!(expand_str("${B}", &mut e).is_err());
        assert!(expand_str("${A", &mut e).is_err());
        assert!(expand_str("${bad name}", &mut e).is_err());
    }

    #[test]
    fn result_hosts_allow_the_vendors_domains_and_the_providers_own_host_only() {
        let hosts = ResultHosts {
            own: "127.0.0.1".into(),
            patterns: vec!["*.aliyuncs.com".into(), "cdn.example".into()],
        };
        for ok in [
            "dashscope-result-bj.oss-cn-beijing.aliyuncs.com",
            "CDN.example",
            "127.0.0.1",
        ] {
            assert!(hosts.allows(ok), "{ok}");
        }
        for refused in [
            "aliyuncs.com",
            "evilaliyuncs.com",
            "169.254.169.254",
            "10.0.0.1",
            "localhost",
            "[::1]",
            "x.cdn.example",
        ] {
            assert!(!hosts.allows(refused), "{refused}");
        }
    }

    #[test]
    fn models_are_never_expanded_and_problems_never_quote_an_expanded_value() {
        let env = |n: &str| (n == "SECRET").then(|| "sk-very-secret-value".to_string());
        let text = "providers:\n  - {name: p, kind: openai, base_url: \"${SECRET}\", api_key: k}\nmodels:\n  leak: {targets: [{provider: \"${SECRET}\", model: \"${SECRET}\"}]}\n";
        let problems = load_str(text, &env).unwrap_err().to_string();
        assert!(!problems.contains("sk-very-secret-value"), "{problems}");
        assert!(
            problems.contains("models.leak.targets[0].provider"),
            "{problems}"
        );
        assert!(problems.contains("not expanded in models"), "{problems}");
        assert!(problems.contains("providers[0].base_url"), "{problems}");
    }

    #[test]
    fn endpoints_parse() {
        let e = Endpoint::parse("https://api.openai.com/v1/").unwrap();
        assert_eq!((e.tls, e.port, e.path_prefix.as_str()), (true, 443, "/v1"));
        assert_eq!(e.authority(), "api.openai.com");
        let e = Endpoint::parse("http://127.0.0.1:9801").unwrap();
        assert_eq!((e.port, e.path_prefix.as_str()), (9801, ""));
        assert_eq!(e.authority(), "127.0.0.1:9801");
        assert!(Endpoint::parse("127.0.0.1:80").is_err());
    }
}
