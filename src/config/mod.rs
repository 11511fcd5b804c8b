//! The YAML configuration: raw serde shapes, `${ENV}` expansion, and validation into runtime types.
//!
//! Loading happens in two stages (raw shapes with `deny_unknown_fields`, then `load` into runtime
//! types) so that `modelmux check` can report every problem it finds, each with its YAML path,
//! instead of stopping at the first one.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_yaml_ng::Value;

use crate::providers::ProviderKind;

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

// ---------------------------------------------------------------------------------------------
// Raw shapes, exactly as written in YAML.

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServer {
    #[serde(default)]
    listen: Vec<String>,
    threads: Option<usize>,
    max_body_bytes: Option<usize>,
    max_header_bytes: Option<usize>,
    grace_period_seconds: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMock {
    #[serde(default = "default_mock_bind")]
    bind: String,
    base_port: u16,
}

fn default_mock_bind() -> String {
    "127.0.0.1".into()
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTimeouts {
    connect: Option<String>,
    first_byte: Option<String>,
    idle: Option<String>,
    total: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    name: String,
    kind: ProviderKind,
    base_url: String,
    api_key: Option<String>,
    /// Baidu Qianfan v1 OAuth client credentials (API Key / Secret Key).
    client_id: Option<String>,
    client_secret: Option<String>,
    /// Where Qianfan v1 fetches its OAuth token; defaults to Baidu's public endpoint.
    token_url: Option<String>,
    /// Vendor API generation where a vendor has two (Qianfan `v1` / `v2`).
    api_version: Option<String>,
    /// `max_tokens` sent when the client gives none and the vendor requires one (Anthropic).
    default_max_tokens: Option<u64>,
    /// PEM file of CA certificates to trust for this provider besides the system's (a private
    /// CA in front of a self-hosted model server).
    ca_file: Option<String>,
    #[serde(default)]
    timeouts: RawTimeouts,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    provider: String,
    model: String,
    #[serde(default = "default_weight")]
    weight: u32,
    #[serde(default)]
    priority: u32,
}

fn default_weight() -> u32 {
    1
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    targets: Vec<RawTarget>,
    #[serde(default)]
    retry: RawRetry,
    #[serde(default)]
    limits: Limits,
    price: Option<Price>,
    /// Replace e-mail addresses, phone, ID and card numbers in prompts before they leave.
    #[serde(default)]
    redact_pii: bool,
    /// Per-route overrides of the providers' timeouts.
    #[serde(default)]
    timeouts: RawTimeouts,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRetry {
    attempts: Option<u32>,
    deadline: Option<String>,
    backoff: Option<String>,
    max_backoff: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawBreaker {
    failure_rate: Option<f64>,
    min_requests: Option<u64>,
    window: Option<String>,
    consecutive_failures: Option<u32>,
    cooldown: Option<String>,
    probes: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    name: String,
    key: String,
    #[serde(default)]
    models: Vec<String>,
    #[serde(default)]
    limits: Limits,
    budget: Option<RawBudget>,
}

/// Token-bucket limits: requests and tokens per minute. Absent means unlimited.
#[derive(Deserialize, Default, Debug, Clone, Copy)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBudget {
    tokens: Option<u64>,
    cost: Option<f64>,
    #[serde(default = "default_period")]
    period: Period,
}

fn default_period() -> Period {
    Period::Month
}

#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    Day,
    Month,
    Total,
}

/// A key's spending cap per period, in tokens and/or cost (the currency of the models' prices).
#[derive(Debug, Clone)]
pub struct Budget {
    pub tokens: Option<u64>,
    pub cost: Option<f64>,
    pub period: Period,
}

/// Price per million tokens.
#[derive(Deserialize, Debug, Clone, Copy, Default)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub prompt: f64,
    pub completion: f64,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimitsSection {
    #[serde(default)]
    backend: LimitsBackendKind,
    redis_url: Option<String>,
    prefix: Option<String>,
}

#[derive(Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum LimitsBackendKind {
    #[default]
    Local,
    Redis,
}

/// Where limit buckets and budget spend live: in this process, or in Redis, shared by every
/// replica that points at it.
#[derive(Debug, Clone)]
pub enum LimitsBackend {
    Local,
    Redis { url: String, prefix: String },
}

// ---------------------------------------------------------------------------------------------
// Runtime types.

#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerSettings,
    pub metrics_listen: Option<String>,
    pub mock: Option<MockSettings>,
    pub providers: Vec<Arc<Provider>>,
    pub models: Vec<PublicModel>,
    model_index: HashMap<String, usize>,
    pub keys: Vec<ClientKey>,
    pub breaker: BreakerSettings,
    pub limits_backend: LimitsBackend,
    pub cors: Cors,
}

#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub listen: Vec<String>,
    pub threads: usize,
    pub max_body_bytes: usize,
    pub max_header_bytes: usize,
    pub grace_period_seconds: u64,
}

#[derive(Debug, Clone)]
pub struct MockSettings {
    pub bind: String,
    pub base_port: u16,
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

/// An upstream address split into what the connector and the request line need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// Path prefix without a trailing slash, e.g. `/v1`; may be empty.
    pub path_prefix: String,
}

impl Endpoint {
    pub fn parse(url: &str) -> Result<Endpoint, String> {
        let uri: http::Uri = url.parse().map_err(|e| format!("not a URL ({e})"))?;
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            Some(other) => return Err(format!("scheme `{other}` is not http or https")),
            None => return Err("missing scheme (http:// or https://)".into()),
        };
        let host = uri.host().ok_or("missing host")?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if uri.query().is_some() {
            return Err("must not have a query string".into());
        }
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let path_prefix = uri.path().trim_end_matches('/').to_string();
        Ok(Endpoint {
            tls,
            host,
            port,
            path_prefix,
        })
    }

    /// The Host header value: the port is left out when it is the scheme's default.
    pub fn authority(&self) -> String {
        let default = if self.tls { 443 } else { 80 };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

#[derive(Debug, Clone)]
pub enum Credentials {
    None,
    ApiKey(Secret),
    /// Qianfan v1: exchanged for an expiring access token by the gateway.
    OAuthClient {
        client_id: Secret,
        client_secret: Secret,
        token_endpoint: Endpoint,
    },
}

#[derive(Debug)]
pub struct Provider {
    pub name: String,
    pub kind: ProviderKind,
    pub endpoint: Endpoint,
    pub credentials: Credentials,
    pub api_version: Option<String>,
    pub default_max_tokens: u64,
    pub timeouts: Timeouts,
    pub ca: Option<TrustedCa>,
}

/// Extra CA certificates a provider's TLS connections trust, ready for Pingora's peer options.
#[derive(Clone)]
pub struct TrustedCa(pub Arc<[pingora::utils::tls::WrappedX509]>);

impl fmt::Debug for TrustedCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TrustedCa({} certificates)", self.0.len())
    }
}

impl TrustedCa {
    pub fn load(path: &str) -> Result<TrustedCa, String> {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::CertificateDer;
        let ders: Vec<Vec<u8>> = CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("cannot read {path}: {e}"))?
            .map(|c| c.map(|c| c.to_vec()).map_err(|e| format!("{path}: {e}")))
            .collect::<Result<_, _>>()?;
        if ders.is_empty() {
            return Err(format!("{path} holds no PEM certificate"));
        }
        let mut certs = Vec::with_capacity(ders.len());
        for der in ders {
            // Pingora's parser panics on a malformed certificate: turn that into a config error.
            let parsed = std::panic::catch_unwind(|| {
                pingora::utils::tls::WrappedX509::new(der, |raw| {
                    pingora::utils::tls::parse_x509(raw)
                })
            })
            .map_err(|_| format!("{path}: a certificate is not valid X.509"))?;
            certs.push(parsed);
        }
        Ok(TrustedCa(certs.into()))
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
}

/// Browser access: origins allowed to call the API (`*` for any); empty turns CORS off.
#[derive(Deserialize, Debug, Clone, Default)]
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

#[derive(Debug, Clone)]
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
            min_requests: 20,
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
    pub key: Secret,
    pub models: ModelAccess,
    pub limits: Limits,
    pub budget: Option<Budget>,
}

impl ClientKey {
    pub fn may_use(&self, model: &str) -> bool {
        match &self.models {
            ModelAccess::All => true,
            ModelAccess::Only(set) => set.contains(model),
        }
    }
}

impl Config {
    pub fn model(&self, name: &str) -> Option<&PublicModel> {
        self.model_index.get(name).map(|&i| &self.models[i])
    }
}

// ---------------------------------------------------------------------------------------------
// Loading.

/// One problem found in a config file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

#[derive(Debug)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.0 {
            writeln!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

pub fn load_file(path: &str) -> Result<Config, Problems> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Problems(vec![Problem {
            path: String::new(),
            message: format!("cannot read {path}: {e}"),
        }])
    })?;
    load_str(&text, &|name| std::env::var(name).ok())
}

/// Parses and validates a config. `env` looks up `${VAR}` references (injected for tests).
pub fn load_str(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, Problems> {
    let mut problems = Vec::new();
    let mut root: Value = match serde_yaml_ng::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            return Err(Problems(vec![Problem {
                path: String::new(),
                message: format!("invalid YAML: {e}"),
            }]))
        }
    };
    expand_env(&mut root, String::new(), env, &mut problems);
    let Value::Mapping(map) = root else {
        return Err(Problems(vec![Problem {
            path: String::new(),
            message: "the config must be a YAML mapping".into(),
        }]));
    };

    const SECTIONS: [&str; 9] = [
        "server",
        "metrics",
        "mock",
        "providers",
        "models",
        "keys",
        "breaker",
        "limits",
        "cors",
    ];
    let mut sections: HashMap<String, Value> = HashMap::new();
    for (k, v) in map {
        match k.as_str() {
            Some(name) if SECTIONS.contains(&name) => {
                sections.insert(name.to_string(), v);
            }
            Some(name) => problems.push(Problem {
                path: name.to_string(),
                message: format!("unknown section, expected one of {}", SECTIONS.join(", ")),
            }),
            None => problems.push(Problem {
                path: String::new(),
                message: "section names must be strings".into(),
            }),
        }
    }

    let raw_server: RawServer = section(&mut sections, "server", &mut problems).unwrap_or_default();
    let raw_metrics: RawMetrics =
        section(&mut sections, "metrics", &mut problems).unwrap_or_default();
    let raw_mock: Option<RawMock> = section(&mut sections, "mock", &mut problems);
    let raw_providers: Vec<(String, RawProvider)> =
        list_section(&mut sections, "providers", &mut problems);
    let raw_models: Vec<(String, String, RawModel)> =
        map_section(&mut sections, "models", &mut problems);
    let raw_keys: Vec<(String, RawKey)> = list_section(&mut sections, "keys", &mut problems);
    let raw_breaker: RawBreaker =
        section(&mut sections, "breaker", &mut problems).unwrap_or_default();
    let breaker = load_breaker(raw_breaker, &mut problems);
    let cors: Cors = section(&mut sections, "cors", &mut problems).unwrap_or_default();
    let raw_limits: RawLimitsSection =
        section(&mut sections, "limits", &mut problems).unwrap_or_default();
    let limits_backend = match (raw_limits.backend, raw_limits.redis_url) {
        (LimitsBackendKind::Local, _) => LimitsBackend::Local,
        (LimitsBackendKind::Redis, Some(url))
            if url.starts_with("redis://") || url.starts_with("rediss://") =>
        {
            LimitsBackend::Redis {
                url,
                prefix: raw_limits.prefix.unwrap_or_else(|| "modelmux".into()),
            }
        }
        (LimitsBackendKind::Redis, _) => {
            problems.push(Problem {
                path: "limits.redis_url".into(),
                message: "a redis:// URL is required with backend: redis".into(),
            });
            LimitsBackend::Local
        }
    };

    let server = ServerSettings {
        listen: if raw_server.listen.is_empty() {
            vec!["127.0.0.1:8080".into()]
        } else {
            raw_server.listen
        },
        threads: raw_server.threads.unwrap_or(2).max(1),
        max_body_bytes: raw_server.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES),
        max_header_bytes: raw_server.max_header_bytes.unwrap_or(64 * 1024),
        grace_period_seconds: raw_server.grace_period_seconds.unwrap_or(5),
    };
    for (i, addr) in server.listen.iter().enumerate() {
        if addr.parse::<std::net::SocketAddr>().is_err() {
            problems.push(Problem {
                path: format!("server.listen[{i}]"),
                message: format!("`{addr}` is not an IP:port address"),
            });
        }
    }
    if let Some(addr) = &raw_metrics.listen {
        if addr.parse::<std::net::SocketAddr>().is_err() {
            problems.push(Problem {
                path: "metrics.listen".into(),
                message: format!("`{addr}` is not an IP:port address"),
            });
        }
    }
    let mock = raw_mock.map(|m| MockSettings {
        bind: m.bind,
        base_port: m.base_port,
    });

    let mut providers: Vec<Arc<Provider>> = Vec::new();
    let mut provider_by_name: HashMap<String, Arc<Provider>> = HashMap::new();
    for (path, raw) in raw_providers {
        if let Some(p) = load_provider(&path, raw, &mut problems) {
            if provider_by_name.contains_key(&p.name) {
                problems.push(Problem {
                    path: format!("{path}.name"),
                    message: format!("duplicate provider name `{}`", p.name),
                });
                continue;
            }
            let p = Arc::new(p);
            provider_by_name.insert(p.name.clone(), p.clone());
            providers.push(p);
        }
    }

    let mut models = Vec::new();
    let mut model_index = HashMap::new();
    for (path, name, raw) in raw_models {
        if raw.targets.is_empty() {
            problems.push(Problem {
                path: format!("{path}.targets"),
                message: "a model needs at least one target".into(),
            });
        }
        let mut targets = Vec::new();
        for (i, t) in raw.targets.into_iter().enumerate() {
            let tpath = format!("{path}.targets[{i}]");
            let Some(provider) = provider_by_name.get(&t.provider) else {
                problems.push(Problem {
                    path: format!("{tpath}.provider"),
                    message: format!("no provider named `{}`", t.provider),
                });
                continue;
            };
            if t.model.trim().is_empty() {
                problems.push(Problem {
                    path: format!("{tpath}.model"),
                    message: "must not be empty".into(),
                });
            }
            if t.weight == 0 {
                problems.push(Problem {
                    path: format!("{tpath}.weight"),
                    message: "must be at least 1".into(),
                });
            }
            targets.push(Target {
                provider: provider.clone(),
                model: t.model,
                weight: t.weight,
                priority: t.priority,
            });
        }
        let retry = RetryPolicy {
            attempts: raw.retry.attempts.unwrap_or(3).max(1),
            deadline: duration(
                &raw.retry.deadline,
                &format!("{path}.retry.deadline"),
                Duration::from_secs(60),
                &mut problems,
            ),
            backoff: duration(
                &raw.retry.backoff,
                &format!("{path}.retry.backoff"),
                Duration::from_millis(100),
                &mut problems,
            ),
            max_backoff: duration(
                &raw.retry.max_backoff,
                &format!("{path}.retry.max_backoff"),
                Duration::from_secs(2),
                &mut problems,
            ),
        };
        let t = &raw.timeouts;
        let opt = |v: &Option<String>, field: &str, problems: &mut Vec<Problem>| {
            v.as_ref().map(|_| {
                duration(
                    v,
                    &format!("{path}.timeouts.{field}"),
                    Duration::ZERO,
                    problems,
                )
            })
        };
        let timeouts = TimeoutOverrides {
            connect: opt(&t.connect, "connect", &mut problems),
            first_byte: Some(
                opt(&t.first_byte, "first_byte", &mut problems).unwrap_or(Duration::from_secs(5)),
            ),
            idle: opt(&t.idle, "idle", &mut problems),
            total: opt(&t.total, "total", &mut problems),
        };
        model_index.insert(name.clone(), models.len());
        check_limits(&raw.limits, &format!("{path}.limits"), &mut problems);
        models.push(PublicModel {
            name,
            targets,
            retry,
            timeouts,
            limits: raw.limits,
            price: raw.price,
            redact_pii: raw.redact_pii,
        });
    }

    let mut keys: Vec<ClientKey> = Vec::new();
    for (path, raw) in raw_keys {
        if raw.key.len() < 8 {
            problems.push(Problem {
                path: format!("{path}.key"),
                message: "a client key must be at least 8 characters".into(),
            });
        }
        if keys.iter().any(|k| k.key.expose() == raw.key) {
            problems.push(Problem {
                path: format!("{path}.key"),
                message: "the same key is configured twice".into(),
            });
        }
        let access = if raw.models.is_empty() || raw.models.iter().any(|m| m == "*") {
            ModelAccess::All
        } else {
            for (i, m) in raw.models.iter().enumerate() {
                if !model_index.contains_key(m) {
                    problems.push(Problem {
                        path: format!("{path}.models[{i}]"),
                        message: format!("no model named `{m}`"),
                    });
                }
            }
            ModelAccess::Only(raw.models.into_iter().collect())
        };
        check_limits(&raw.limits, &format!("{path}.limits"), &mut problems);
        let budget = raw.budget.map(|b| {
            if b.tokens.is_none() && b.cost.is_none() {
                problems.push(Problem {
                    path: format!("{path}.budget"),
                    message: "give tokens, cost, or both".into(),
                });
            }
            Budget {
                tokens: b.tokens,
                cost: b.cost,
                period: b.period,
            }
        });
        keys.push(ClientKey {
            name: raw.name,
            key: Secret(raw.key),
            models: access,
            limits: raw.limits,
            budget,
        });
    }
    if keys.is_empty() {
        problems.push(Problem {
            path: "keys".into(),
            message: "at least one client key is needed; clients authenticate with them".into(),
        });
    }

    if !problems.is_empty() {
        return Err(Problems(problems));
    }
    Ok(Config {
        server,
        metrics_listen: raw_metrics.listen,
        mock,
        providers,
        models,
        model_index,
        keys,
        breaker,
        limits_backend,
        cors,
    })
}

fn check_limits(l: &Limits, path: &str, problems: &mut Vec<Problem>) {
    for (field, v) in [("rpm", l.rpm), ("tpm", l.tpm)] {
        if v == Some(0) {
            problems.push(Problem {
                path: format!("{path}.{field}"),
                message: "must be at least 1 (leave it out for no limit)".into(),
            });
        }
    }
}

/// A duration field: `dflt` when absent, a problem when unreadable or zero.
fn duration(
    value: &Option<String>,
    path: &str,
    dflt: Duration,
    problems: &mut Vec<Problem>,
) -> Duration {
    let Some(text) = value else { return dflt };
    match humantime::parse_duration(text) {
        Ok(d) if !d.is_zero() => d,
        Ok(_) => {
            problems.push(Problem {
                path: path.into(),
                message: "must be above zero".into(),
            });
            dflt
        }
        Err(e) => {
            problems.push(Problem {
                path: path.into(),
                message: format!("`{text}` is not a duration like 500ms, 5s or 2m ({e})"),
            });
            dflt
        }
    }
}

fn load_breaker(raw: RawBreaker, problems: &mut Vec<Problem>) -> BreakerSettings {
    let d = BreakerSettings::default();
    let rate = raw.failure_rate.unwrap_or(d.failure_rate);
    if !(0.0..=1.0).contains(&rate) {
        problems.push(Problem {
            path: "breaker.failure_rate".into(),
            message: "must be between 0 and 1".into(),
        });
    }
    BreakerSettings {
        failure_rate: rate,
        min_requests: raw.min_requests.unwrap_or(d.min_requests).max(1),
        window: duration(&raw.window, "breaker.window", d.window, problems),
        consecutive_failures: raw
            .consecutive_failures
            .unwrap_or(d.consecutive_failures)
            .max(1),
        cooldown: duration(&raw.cooldown, "breaker.cooldown", d.cooldown, problems),
        probes: raw.probes.unwrap_or(d.probes).max(1),
    }
}

fn load_provider(path: &str, raw: RawProvider, problems: &mut Vec<Problem>) -> Option<Provider> {
    let before = problems.len();
    let mut problem = |field: &str, message: String| {
        problems.push(Problem {
            path: format!("{path}.{field}"),
            message,
        })
    };
    if raw.name.trim().is_empty() {
        problem("name", "must not be empty".into());
    }
    let endpoint = match Endpoint::parse(&raw.base_url) {
        Ok(e) => Some(e),
        Err(e) => {
            problem("base_url", e);
            None
        }
    };
    let api_version = raw.api_version.clone();
    let qianfan_v1 = raw.kind == ProviderKind::Qianfan && api_version.as_deref() != Some("v2");
    if let Some(v) = &api_version {
        if raw.kind != ProviderKind::Qianfan {
            problem(
                "api_version",
                "only qianfan providers take an api_version".into(),
            );
        } else if v != "v1" && v != "v2" {
            problem("api_version", format!("`{v}` is not v1 or v2"));
        }
    }
    let credentials = if qianfan_v1 {
        if raw.api_key.is_some() {
            problem(
                "api_key",
                "qianfan v1 authenticates with client_id and client_secret".into(),
            );
        }
        let token_url = raw
            .token_url
            .as_deref()
            .unwrap_or("https://aip.baidubce.com/oauth/2.0/token");
        let token_endpoint = match Endpoint::parse(token_url) {
            Ok(e) => Some(e),
            Err(e) => {
                problem("token_url", e);
                None
            }
        };
        match (raw.client_id, raw.client_secret, token_endpoint) {
            (Some(id), Some(secret), Some(token_endpoint)) => Credentials::OAuthClient {
                client_id: Secret(id),
                client_secret: Secret(secret),
                token_endpoint,
            },
            (id, secret, _) => {
                if id.is_none() {
                    problem("client_id", "required for qianfan v1".into());
                }
                if secret.is_none() {
                    problem("client_secret", "required for qianfan v1".into());
                }
                Credentials::None
            }
        }
    } else {
        for (field, set) in [
            ("client_id", raw.client_id.is_some()),
            ("client_secret", raw.client_secret.is_some()),
            ("token_url", raw.token_url.is_some()),
        ] {
            if set {
                problem(
                    field,
                    "only qianfan v1 providers take OAuth client settings".into(),
                );
            }
        }
        match raw.api_key {
            Some(k) if !k.is_empty() => Credentials::ApiKey(Secret(k)),
            _ if raw.kind == ProviderKind::OpenAiCompatible => Credentials::None,
            _ => {
                problem(
                    "api_key",
                    format!("required for {} providers", raw.kind.as_str()),
                );
                Credentials::None
            }
        }
    };
    let mut timeouts = Timeouts::default();
    for (field, value, slot) in [
        ("connect", &raw.timeouts.connect, &mut timeouts.connect),
        (
            "first_byte",
            &raw.timeouts.first_byte,
            &mut timeouts.first_byte,
        ),
        ("idle", &raw.timeouts.idle, &mut timeouts.idle),
        ("total", &raw.timeouts.total, &mut timeouts.total),
    ] {
        if let Some(text) = value {
            match humantime::parse_duration(text) {
                Ok(d) if !d.is_zero() => *slot = d,
                Ok(_) => problem(&format!("timeouts.{field}"), "must be above zero".into()),
                Err(e) => problem(
                    &format!("timeouts.{field}"),
                    format!("`{text}` is not a duration like 500ms, 5s or 2m ({e})"),
                ),
            }
        }
    }
    if raw.default_max_tokens == Some(0) {
        problem("default_max_tokens", "must be at least 1".into());
    }
    let ca = match raw.ca_file.as_deref().map(TrustedCa::load) {
        None => None,
        Some(Ok(ca)) => Some(ca),
        Some(Err(e)) => {
            problem("ca_file", e);
            None
        }
    };
    if problems.len() != before {
        return None;
    }
    Some(Provider {
        name: raw.name,
        kind: raw.kind,
        endpoint: endpoint?,
        credentials,
        api_version,
        default_max_tokens: raw.default_max_tokens.unwrap_or(4096),
        timeouts,
        ca,
    })
}

/// Replaces `${VAR}` and `${VAR:-default}` in every string scalar.
fn expand_env(
    value: &mut Value,
    path: String,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<Problem>,
) {
    match value {
        Value::String(s) if s.contains("${") => match expand_str(s, env) {
            Ok(expanded) => *s = expanded,
            Err(message) => problems.push(Problem { path, message }),
        },
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                expand_env(item, format!("{path}[{i}]"), env, problems);
            }
        }
        Value::Mapping(map) => {
            for (k, v) in map.iter_mut() {
                let key = k.as_str().unwrap_or("?");
                let child = if path.is_empty() {
                    key.to_string()
                } else {
                    format!("{path}.{key}")
                };
                expand_env(v, child, env, problems);
            }
        }
        _ => {}
    }
}

fn expand_str(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| "unterminated `${` reference".to_string())?;
        let inner = &after[..end];
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "`${{{inner}}}` is not a valid environment reference"
            ));
        }
        match (env(name).filter(|v| !v.is_empty()), default) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => return Err(format!("environment variable {name} is not set")),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn typed<T: DeserializeOwned>(value: Value, path: &str, problems: &mut Vec<Problem>) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(v) => Some(v),
        Err(e) => {
            let inner = e.path().to_string();
            let full = match (path.is_empty(), inner == ".") {
                (_, true) => path.to_string(),
                (true, false) => inner,
                (false, false) if inner.starts_with('[') => format!("{path}{inner}"),
                (false, false) => format!("{path}.{inner}"),
            };
            problems.push(Problem {
                path: full,
                message: e.into_inner().to_string(),
            });
            None
        }
    }
}

fn section<T: DeserializeOwned>(
    sections: &mut HashMap<String, Value>,
    name: &str,
    problems: &mut Vec<Problem>,
) -> Option<T> {
    let value = sections.remove(name)?;
    if value.is_null() {
        return None;
    }
    typed(value, name, problems)
}

fn list_section<T: DeserializeOwned>(
    sections: &mut HashMap<String, Value>,
    name: &str,
    problems: &mut Vec<Problem>,
) -> Vec<(String, T)> {
    match sections.remove(name) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Sequence(items)) => items
            .into_iter()
            .enumerate()
            .filter_map(|(i, v)| {
                let path = format!("{name}[{i}]");
                typed(v, &path, problems).map(|t| (path, t))
            })
            .collect(),
        Some(_) => {
            problems.push(Problem {
                path: name.into(),
                message: "must be a list".into(),
            });
            Vec::new()
        }
    }
}

fn map_section<T: DeserializeOwned>(
    sections: &mut HashMap<String, Value>,
    name: &str,
    problems: &mut Vec<Problem>,
) -> Vec<(String, String, T)> {
    match sections.remove(name) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Mapping(map)) => {
            // Sorted so that problems come out in a stable order.
            let mut entries: BTreeMap<String, Value> = BTreeMap::new();
            for (k, v) in map {
                match k.as_str() {
                    Some(key) => {
                        entries.insert(key.to_string(), v);
                    }
                    None => problems.push(Problem {
                        path: name.into(),
                        message: "model names must be strings".into(),
                    }),
                }
            }
            entries
                .into_iter()
                .filter_map(|(key, v)| {
                    let path = format!("{name}.{key}");
                    typed(v, &path, problems).map(|t| (path, key, t))
                })
                .collect()
        }
        Some(_) => {
            problems.push(Problem {
                path: name.into(),
                message: "must be a mapping of public model name to targets".into(),
            });
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        match &c.providers[0].credentials {
            Credentials::ApiKey(k) => assert_eq!(k.expose(), "sk-real"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            c.providers[2].credentials,
            Credentials::OAuthClient { .. }
        ));
        assert_eq!(c.server.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
    }

    #[test]
    fn secrets_are_not_printed() {
        let c = load_str(GOOD, &env).unwrap();
        let printed = format!("{c:?}");
        assert!(!printed.contains("sk-real"), "{printed}");
        assert!(!printed.contains("sk-team-a-123"), "{printed}");
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
        let e = |n: &str| (n == "A").then(|| "1".to_string());
        assert_eq!(expand_str("x${A}y", &e).unwrap(), "x1y");
        assert_eq!(expand_str("${B:-dflt}", &e).unwrap(), "dflt");
        assert!(expand_str("${B}", &e).is_err());
        assert!(expand_str("${A", &e).is_err());
        assert!(expand_str("${bad name}", &e).is_err());
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
