//! From YAML text to a [`Config`]: one loader per section, every problem collected.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde_yaml_ng::Value;

use super::problems::{Problem, Problems, Report};
use super::raw::*;
use super::yaml::{
    duration, duration_within, expand_env, list_section, map_section, section, Expanded,
};
use super::*;

pub(super) const SECTIONS: [&str; 20] = [
    "server",
    "metrics",
    "mock",
    "providers",
    "models",
    "keys",
    "breaker",
    "limits",
    "cors",
    "admin",
    "log",
    "cache",
    "responses",
    "logs",
    "apps",
    "workflows",
    "unified",
    "pricing",
    "teams",
    "telemetry",
];

/// Parses and validates a config. `env` looks up `${VAR}` references (injected for tests).
/// Relative directories (apps, workflows) are taken from the working directory.
pub fn load_str(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, Problems> {
    load_str_at(text, env, None)
}

/// As [`load_str`], with relative directories taken from `base` (the config file's).
pub fn load_str_at(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
    base: Option<&std::path::Path>,
) -> Result<Config, Problems> {
    let mut problems = Vec::new();
    let (mut sections, expanded, declared) = read_sections(text, env, &mut problems)?;
    let p = &mut problems;
    let raw_server: RawServer = section(&mut sections, "server", p).unwrap_or_default();
    let raw_metrics: RawMetrics = section(&mut sections, "metrics", p).unwrap_or_default();
    let raw_mock: Option<RawMock> = section(&mut sections, "mock", p);
    let raw_providers: Vec<(String, RawProvider)> = list_section(&mut sections, "providers", p);
    let raw_models: Vec<(String, String, RawModel)> = map_section(&mut sections, "models", p);
    let raw_keys: Vec<(String, RawKey)> = list_section(&mut sections, "keys", p);
    let raw_breaker: RawBreaker = section(&mut sections, "breaker", p).unwrap_or_default();
    let cors: Cors = section(&mut sections, "cors", p).unwrap_or_default();
    let raw_limits: RawLimitsSection = section(&mut sections, "limits", p).unwrap_or_default();
    let raw_admin: Option<RawAdmin> = section(&mut sections, "admin", p);
    let raw_log: RawLog = section(&mut sections, "log", p).unwrap_or_default();
    let raw_cache: RawCache = section(&mut sections, "cache", p).unwrap_or_default();
    let raw_responses: RawResponses = section(&mut sections, "responses", p).unwrap_or_default();
    let raw_logs: RawLogs = section(&mut sections, "logs", p).unwrap_or_default();
    let raw_pricing: super::pricing::RawPricing =
        section(&mut sections, "pricing", p).unwrap_or_default();
    let raw_teams: HashMap<String, Team> = section(&mut sections, "teams", p).unwrap_or_default();
    let raw_apps: flows::RawApps = section(&mut sections, "apps", p).unwrap_or_default();
    let raw_workflows: flows::RawWorkflows =
        section(&mut sections, "workflows", p).unwrap_or_default();
    let unified: crate::flows::CapabilityMap =
        section(&mut sections, "unified", p).unwrap_or_default();

    let raw_telemetry: RawTelemetry = section(&mut sections, "telemetry", p).unwrap_or_default();
    let server = load_server(raw_server, p);
    if let Some(addr) = &raw_metrics.listen {
        check_address(addr, "metrics.listen", p);
    }
    let providers = super::providers::load_providers(raw_providers, &expanded, p);
    let pricing = super::pricing::load_pricing(raw_pricing, p);
    let (models, model_index) = load_models(raw_models, &providers, &declared, &pricing, p);
    // For reporting problems: a model that is declared but failed to load was reported.
    let model_exists = |m: &str| model_index.contains_key(m) || declared.model(m);
    let teams = load_teams(raw_teams, p);
    let keys = load_keys(raw_keys, &model_exists, &teams, declared.keys, p);
    let apps = flows::load_apps(raw_apps, base, &model_exists, p);
    let workflows = flows::load_workflows(raw_workflows, base, &model_exists, p);
    flows::check_unified(&unified, &model_exists, p);
    let key_names: Vec<&str> = keys.iter().map(|k| k.name.as_str()).collect();
    let logs = load_logs(raw_logs, base, &key_names, p);
    let mut config = Config {
        server,
        metrics_listen: raw_metrics.listen,
        mock: raw_mock.map(|m| MockSettings {
            bind: m.bind,
            base_port: m.base_port,
        }),
        providers,
        models,
        model_index,
        teams,
        file_keys: keys.len(),
        keys,
        key_index: Default::default(),
        breaker: load_breaker(raw_breaker, p),
        cache: load_cache(raw_cache, &raw_limits, p),
        responses: load_responses(raw_responses, &raw_limits, p),
        logs,
        limits_backend: load_limits_backend(raw_limits, p),
        cors,
        admin: raw_admin.map(|a| load_admin(a, p)),
        log: LogSettings {
            format: raw_log.format,
            path: raw_log.path,
        },
        apps,
        workflows,
        unified,
        loaded_at: crate::clock::unix_secs(),
        telemetry: raw_telemetry.otlp.map(|o| Arc::new(load_otlp(o, p))),
    };
    config.index_keys();
    check_listeners_apart(&config, p);
    if problems.is_empty() {
        return Ok(config);
    }
    for p in &mut problems {
        p.message = expanded.scrub(&p.message);
    }
    Err(Problems(problems))
}

/// The models and providers the file names, valid or not, and whether it lists keys: a
/// reference to one that failed to load (or to any, when its section is misspelt) is not a
/// second problem, the root cause is reported once, at its own path.
struct Declared {
    /// None: every name counts (the section is missing but reported as misspelt).
    models: Option<HashSet<String>>,
    providers: Option<HashSet<String>>,
    keys: bool,
}

impl Declared {
    fn of(sections: &HashMap<String, Value>, misspelt: &[&str]) -> Declared {
        let names = |section: &str, of: &dyn Fn(&Value) -> Vec<String>| {
            (!misspelt.contains(&section)).then(|| {
                sections
                    .get(section)
                    .map(of)
                    .unwrap_or_default()
                    .into_iter()
                    .collect()
            })
        };
        let model_names = |v: &Value| -> Vec<String> {
            v.as_mapping()
                .map(|m| {
                    m.keys()
                        .filter_map(|k| k.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        let provider_names = |v: &Value| -> Vec<String> {
            v.as_sequence()
                .map(|items| {
                    let name = |i: &Value| i.get("name")?.as_str().map(String::from);
                    items.iter().filter_map(name).collect()
                })
                .unwrap_or_default()
        };
        Declared {
            models: names("models", &model_names),
            providers: names("providers", &provider_names),
            keys: misspelt.contains(&"keys")
                || sections
                    .get("keys")
                    .and_then(Value::as_sequence)
                    .is_some_and(|k| !k.is_empty()),
        }
    }

    fn model(&self, name: &str) -> bool {
        self.models.as_ref().is_none_or(|s| s.contains(name))
    }

    fn provider(&self, name: &str) -> bool {
        self.providers.as_ref().is_none_or(|s| s.contains(name))
    }
}

/// The top-level mapping with `${ENV}` expanded, by section name, what was put in, and the
/// names it declares; unknown sections reported.
fn read_sections(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<Problem>,
) -> Result<(HashMap<String, Value>, Expanded, Declared), Problems> {
    let mut root: Value =
        serde_yaml_ng::from_str(text).map_err(|e| Problems::one(format!("invalid YAML: {e}")))?;
    let expanded = expand_env(&mut root, env, problems);
    let Value::Mapping(map) = root else {
        return Err(Problems::one("the config must be a YAML mapping"));
    };
    let mut sections = HashMap::new();
    let mut misspelt = Vec::new();
    for (k, v) in map {
        match k.as_str() {
            Some(name) if SECTIONS.contains(&name) => {
                sections.insert(name.to_string(), v);
            }
            Some(name) => match SECTIONS.iter().find(|s| edit_distance(s, name) <= 2) {
                Some(meant) => {
                    misspelt.push(*meant);
                    problems.at(name, format!("unknown section; did you mean `{meant}`?"))
                }
                None => problems.at(
                    name,
                    format!("unknown section, expected one of {}", SECTIONS.join(", ")),
                ),
            },
            None => problems.at("", "section names must be strings"),
        }
    }
    let declared = Declared::of(&sections, &misspelt);
    Ok((sections, expanded, declared))
}

/// Edits (insert, delete, replace a character) from one name to another.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

fn check_address(addr: &str, path: &str, problems: &mut Vec<Problem>) {
    if addr.parse::<std::net::SocketAddr>().is_err() {
        problems.at(path, format!("`{addr}` is not an IP:port address"));
    }
}

/// Every listener its own address: two services given one address would share its socket (the
/// hand-over table is keyed by address) and answer each other's clients, e.g. the admin API on
/// the public port. Addresses overlap when their ports match and so do their hosts, or either
/// host is a wildcard (0.0.0.0, ::).
fn check_listeners_apart(config: &Config, problems: &mut Vec<Problem>) {
    let mut listeners: Vec<(String, &str)> = config
        .server
        .listen
        .iter()
        .enumerate()
        .map(|(i, a)| (format!("server.listen[{i}]"), a.as_str()))
        .collect();
    if let Some(admin) = &config.admin {
        listeners.push(("admin.listen".into(), &admin.listen));
    }
    if let Some(metrics) = &config.metrics_listen {
        listeners.push(("metrics.listen".into(), metrics));
    }
    let mock = config.mock.as_ref().map(MockSettings::addresses);
    for addr in mock.iter().flatten() {
        listeners.push(("mock (base_port + 1..=5)".into(), addr));
    }
    let overlap = |a: &str, b: &str| match (
        a.parse::<std::net::SocketAddr>(),
        b.parse::<std::net::SocketAddr>(),
    ) {
        (Ok(a), Ok(b)) => {
            a.port() == b.port()
                && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
        }
        _ => a == b,
    };
    for (i, (path, addr)) in listeners.iter().enumerate() {
        if let Some((first, other)) = listeners[..i].iter().find(|(_, o)| overlap(addr, o)) {
            problems.at(
                path.clone(),
                format!("`{addr}` is also {first}'s address (`{other}`): each listener needs its own port"),
            );
        }
    }
}

fn load_server(raw: RawServer, problems: &mut Vec<Problem>) -> ServerSettings {
    let server = ServerSettings {
        listen: if raw.listen.is_empty() {
            vec!["127.0.0.1:8080".into()]
        } else {
            raw.listen
        },
        threads: raw.threads.unwrap_or(2).max(1),
        max_body_bytes: raw.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES),
        max_header_bytes: raw.max_header_bytes.unwrap_or(64 * 1024),
        grace_period_seconds: raw.grace_period_seconds.unwrap_or(5),
        clients: load_client_limits(&raw.clients, problems),
        watch_config: raw.watch_config,
        trusted_proxies: cidrs(&raw.trusted_proxies, "server.trusted_proxies", problems),
        upgrade_sock: raw.upgrade_sock,
        tls: raw.tls.map(|t| TlsFiles {
            cert: t.cert,
            key: t.key,
        }),
    };
    if let Some(tls) = &server.tls {
        for (field, path) in [("cert", &tls.cert), ("key", &tls.key)] {
            if let Err(e) = std::fs::metadata(path) {
                problems.at(
                    format!("server.tls.{field}"),
                    format!("cannot read {path}: {e}"),
                );
            }
        }
    }
    for (i, addr) in server.listen.iter().enumerate() {
        check_address(addr, &format!("server.listen[{i}]"), problems);
    }
    server
}

/// CIDRs (`10.0.0.0/8`), or single addresses taken as /32 or /128.
fn cidrs(raw: &[String], path: &str, problems: &mut Vec<Problem>) -> Vec<ipnet::IpNet> {
    raw.iter()
        .enumerate()
        .filter_map(|(i, text)| {
            let parsed = text
                .parse::<ipnet::IpNet>()
                .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
            parsed
                .map_err(|_| {
                    problems.at(
                        format!("{path}[{i}]"),
                        format!("`{text}` is not an address or CIDR like 192.168.1.0/24"),
                    )
                })
                .ok()
        })
        .collect()
}

fn load_otlp(raw: RawOtlp, problems: &mut Vec<Problem>) -> Telemetry {
    let at = |field: &str| format!("telemetry.otlp.{field}");
    let mut endpoint = raw.endpoint.trim_end_matches('/').to_string();
    // Spans go in the clear: to a collector on the host or beside it (an agent, a sidecar),
    // which forwards them on over TLS.
    match endpoint.split_once("://") {
        Some(("http", rest)) if !rest.is_empty() => {}
        Some(("https", _)) => problems.at(
            at("endpoint"),
            "TLS to the collector is not supported: export to a local OpenTelemetry Collector (http://), which can forward over TLS",
        ),
        _ => problems.at(
            at("endpoint"),
            format!("`{endpoint}` is not an http:// URL"),
        ),
    }
    // The HTTP exporter posts to the URL as given: a bare collector address gets OTLP's path.
    let has_path = endpoint
        .split_once("://")
        .is_some_and(|(_, rest)| rest.contains('/'));
    if raw.protocol == OtlpProtocol::HttpProtobuf && !has_path {
        endpoint.push_str("/v1/traces");
    }
    let sample_ratio = raw.sample_ratio.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&sample_ratio) {
        problems.at(at("sample_ratio"), "must be between 0 and 1");
    }
    for name in raw.headers.keys() {
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            problems.at(at("headers"), format!("`{name}` is not a header name"));
        }
    }
    Telemetry {
        endpoint,
        protocol: raw.protocol,
        headers: raw
            .headers
            .into_iter()
            .map(|(k, v)| (k, Secret::new(v)))
            .collect(),
        sample_ratio,
        capture_content: raw.capture_content,
        service_name: raw.service_name.unwrap_or_else(|| "modelmux".into()),
        timeout: duration(
            &raw.timeout,
            &at("timeout"),
            Duration::from_secs(10),
            problems,
        ),
    }
}

fn load_admin(raw: RawAdmin, problems: &mut Vec<Problem>) -> AdminSettings {
    check_address(&raw.listen, "admin.listen", problems);
    if raw.key.len() < 16 {
        problems.at("admin.key", "the admin key must be at least 16 characters");
    }
    AdminSettings {
        listen: raw.listen,
        key: Secret::new(raw.key),
    }
}

fn load_client_limits(raw: &RawClientLimits, problems: &mut Vec<Problem>) -> ClientLimits {
    let d = ClientLimits::default();
    let mut field = |value: &Option<String>, name: &str, dflt| {
        duration(value, &format!("server.clients.{name}"), dflt, problems)
    };
    let limits = ClientLimits {
        header_timeout: field(&raw.header_timeout, "header_timeout", d.header_timeout),
        body_timeout: field(&raw.body_timeout, "body_timeout", d.body_timeout),
        write_timeout: field(&raw.write_timeout, "write_timeout", d.write_timeout),
        drain_timeout: field(&raw.drain_timeout, "drain_timeout", d.drain_timeout),
        keepalive: field(&raw.keepalive, "keepalive", d.keepalive),
        max_connections: raw.max_connections.unwrap_or(d.max_connections),
    };
    if limits.max_connections == 0 {
        problems.at("server.clients.max_connections", "must be at least 1");
    }
    limits
}

/// The cache's Redis is its own `redis_url`, or the limits' one.
fn load_cache(
    raw: RawCache,
    limits: &RawLimitsSection,
    problems: &mut Vec<Problem>,
) -> CacheBackend {
    match raw.backend {
        RawCacheBackend::Memory => CacheBackend::Memory {
            max_bytes: raw.max_bytes.unwrap_or(64 * 1024 * 1024),
        },
        RawCacheBackend::Redis => match shared_redis(raw.redis_url, limits, "cache", problems) {
            Some(url) => CacheBackend::Redis {
                url,
                prefix: raw.prefix.unwrap_or_else(|| "modelmux-cache".into()),
            },
            None => CacheBackend::Memory { max_bytes: 0 },
        },
    }
}

/// A section's Redis: its own `redis_url`, or the limits' one; a problem when neither is a
/// redis:// URL.
fn shared_redis(
    own: Option<String>,
    limits: &RawLimitsSection,
    section: &str,
    problems: &mut Vec<Problem>,
) -> Option<Secret> {
    match own.or_else(|| limits.redis_url.clone()) {
        Some(url) if url.starts_with("redis://") || url.starts_with("rediss://") => {
            Some(Secret::new(url))
        }
        _ => {
            problems.at(
                format!("{section}.redis_url"),
                "a redis:// URL is required with backend: redis (or limits.redis_url)",
            );
            None
        }
    }
}

/// The log store: a SQLite file (relative to the config file's directory; by default beside
/// it, named after it: `modelmux.yaml` logs to `modelmux.logs.db`), or none.
fn load_logs(
    raw: RawLogs,
    base: Option<&std::path::Path>,
    key_names: &[&str],
    problems: &mut Vec<Problem>,
) -> Option<LogStoreSettings> {
    if raw.backend == RawLogBackend::Off {
        return None;
    }
    // Empty: beside the config file, named after it (`load_file` knows its name).
    let path = std::path::PathBuf::from(raw.path.as_deref().unwrap_or(""));
    let path = match base {
        Some(dir) if path.is_relative() && !path.as_os_str().is_empty() => dir.join(path),
        _ => path,
    };
    let queue = raw.queue.unwrap_or(10_000);
    if queue == 0 {
        problems.at("logs.queue", "must be at least 1");
    }
    let postgres = match (raw.backend, raw.url) {
        (RawLogBackend::Postgres, Some(url))
            if url.starts_with("postgres://") || url.starts_with("postgresql://") =>
        {
            Some(Secret::new(url))
        }
        (RawLogBackend::Postgres, _) => {
            problems.at(
                "logs.url",
                "a postgres:// URL is required with backend: postgres",
            );
            None
        }
        (_, Some(_)) => {
            problems.at("logs.url", "only backend: postgres takes a url");
            None
        }
        (_, None) => None,
    };
    let day = Duration::from_secs(24 * 3600);
    let (raw_days, rollup_days, at) = match raw.retention {
        None => (None, None, "logs.retention"),
        Some(RawRetention::Raw(d)) => (Some(d), None, "logs.retention"),
        Some(RawRetention::Both { raw, rollups }) => (raw, rollups, "logs.retention.raw"),
    };
    let retention = crate::log_store::Retention {
        raw: duration_within(&raw_days, at, 7 * day, (400 * day, "400 days"), problems),
        rollups: duration_within(
            &rollup_days,
            "logs.retention.rollups",
            400 * day,
            (3660 * day, "10 years"),
            problems,
        ),
    };
    if retention.rollups < retention.raw {
        problems.at("logs.retention.rollups", "must be at least as long as raw");
    }
    for key in raw.bodies.keys.iter().filter(|k| *k != "*") {
        if !key_names.contains(&key.as_str()) {
            problems.at("logs.bodies.keys", format!("no key named `{key}`"));
        }
    }
    Some(LogStoreSettings {
        path,
        postgres,
        queue: queue.max(1),
        retention,
        bodies: crate::config::LogBodies {
            models: raw.bodies.models,
            keys: raw.bodies.keys,
            max_bytes: raw.bodies.max_bytes.unwrap_or(32 * 1024),
        },
    })
}

/// The stored responses' Redis is their own `redis_url`, or the limits' one.
fn load_responses(
    raw: RawResponses,
    limits: &RawLimitsSection,
    problems: &mut Vec<Problem>,
) -> ResponsesStoreSettings {
    let d = ResponsesStoreSettings::default();
    let redis_url = match raw.backend {
        RawCacheBackend::Memory => None,
        RawCacheBackend::Redis => shared_redis(raw.redis_url, limits, "responses", problems),
    };
    ResponsesStoreSettings {
        redis_url,
        prefix: raw.prefix.unwrap_or(d.prefix),
        ttl: duration(&raw.ttl, "responses.ttl", d.ttl, problems),
        max_bytes: raw.max_bytes.unwrap_or(d.max_bytes),
    }
}

fn load_limits_backend(raw: RawLimitsSection, problems: &mut Vec<Problem>) -> LimitsBackend {
    match (raw.backend, raw.redis_url) {
        (LimitsBackendKind::Local, _) => LimitsBackend::Local,
        (LimitsBackendKind::Redis, Some(url))
            if url.starts_with("redis://") || url.starts_with("rediss://") =>
        {
            LimitsBackend::Redis {
                url: Secret::new(url),
                prefix: raw.prefix.unwrap_or_else(|| "modelmux".into()),
            }
        }
        (LimitsBackendKind::Redis, _) => {
            problems.at(
                "limits.redis_url",
                "a redis:// URL is required with backend: redis",
            );
            LimitsBackend::Local
        }
    }
}

fn load_breaker(raw: RawBreaker, problems: &mut Vec<Problem>) -> BreakerSettings {
    let d = BreakerSettings::default();
    let rate = raw.failure_rate.unwrap_or(d.failure_rate);
    if !(0.0..=1.0).contains(&rate) {
        problems.at("breaker.failure_rate", "must be between 0 and 1");
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

fn check_limits(l: &Limits, path: &str, problems: &mut Vec<Problem>) {
    for (field, v) in [("rpm", l.rpm), ("tpm", l.tpm)] {
        if v == Some(0) {
            problems.at(
                format!("{path}.{field}"),
                "must be at least 1 (leave it out for no limit)",
            );
        }
    }
}

type ModelIndex = super::FastMap<String, usize>;

fn load_models(
    raw: Vec<(String, String, RawModel)>,
    providers: &[Arc<Provider>],
    declared: &Declared,
    pricing: &super::pricing::Pricing,
    problems: &mut Vec<Problem>,
) -> (Vec<PublicModel>, ModelIndex) {
    let by_name: HashMap<&str, &Arc<Provider>> =
        providers.iter().map(|p| (p.name.as_str(), p)).collect();
    let mut models = Vec::new();
    let mut index = ModelIndex::default();
    for (path, name, raw) in raw {
        index.insert(name.clone(), models.len());
        models.push(load_model(
            &path, name, raw, &by_name, declared, pricing, problems,
        ));
    }
    (models, index)
}

fn load_model(
    path: &str,
    name: String,
    raw: RawModel,
    providers: &HashMap<&str, &Arc<Provider>>,
    declared: &Declared,
    pricing: &super::pricing::Pricing,
    problems: &mut Vec<Problem>,
) -> PublicModel {
    if raw.targets.is_empty() {
        problems.at(
            format!("{path}.targets"),
            "a model needs at least one target",
        );
    }
    let mut targets = Vec::new();
    for (i, t) in raw.targets.into_iter().enumerate() {
        let tpath = format!("{path}.targets[{i}]");
        let Some(provider) = providers.get(t.provider.as_str()) else {
            // A provider that is declared but failed to load was reported at its own path.
            if !declared.provider(&t.provider) {
                problems.at(
                    format!("{tpath}.provider"),
                    format!("no provider named `{}`", t.provider),
                );
            }
            continue;
        };
        if t.model.trim().is_empty() {
            problems.at(format!("{tpath}.model"), "must not be empty");
        } else if !t
            .model
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~:@/+=".contains(&b))
        {
            problems.at(
                format!("{tpath}.model"),
                "a vendor model name has letters, digits and - . _ ~ : @ / + = only",
            );
        }
        if t.weight == 0 {
            problems.at(format!("{tpath}.weight"), "must be at least 1");
        }
        targets.push(Target {
            provider: Arc::clone(provider),
            model: t.model,
            weight: t.weight,
            priority: t.priority,
        });
    }
    check_limits(&raw.limits, &format!("{path}.limits"), problems);
    PublicModel {
        name,
        targets,
        retry: load_retry(path, &raw.retry, problems),
        timeouts: load_timeout_overrides(path, &raw.timeouts, problems),
        limits: raw.limits,
        price: raw
            .price
            .map(|r| super::pricing::load_price(r, &format!("{path}.price"), pricing, problems)),
        redact_pii: raw.redact_pii,
        log_bodies: raw.log_bodies,
        cache: raw.cache.map(|c| ModelCache {
            ttl: duration(
                &Some(c.ttl),
                &format!("{path}.cache.ttl"),
                std::time::Duration::from_secs(3600),
                problems,
            ),
            scope: c.scope,
        }),
    }
}

fn load_retry(path: &str, raw: &RawRetry, problems: &mut Vec<Problem>) -> RetryPolicy {
    let field = |value: &Option<String>, name: &str, dflt, problems: &mut Vec<Problem>| {
        duration(value, &format!("{path}.retry.{name}"), dflt, problems)
    };
    RetryPolicy {
        attempts: raw.attempts.unwrap_or(3).max(1),
        deadline: field(&raw.deadline, "deadline", Duration::from_secs(60), problems),
        backoff: field(
            &raw.backoff,
            "backoff",
            Duration::from_millis(100),
            problems,
        ),
        max_backoff: field(
            &raw.max_backoff,
            "max_backoff",
            Duration::from_secs(2),
            problems,
        ),
    }
}

/// A route's timeouts where set; the first-byte bound defaults to 5 s on routes.
fn load_timeout_overrides(
    path: &str,
    raw: &RawTimeouts,
    problems: &mut Vec<Problem>,
) -> TimeoutOverrides {
    let mut field = |value: &Option<String>, name: &str| {
        value.as_ref().map(|_| {
            duration(
                value,
                &format!("{path}.timeouts.{name}"),
                Duration::ZERO,
                problems,
            )
        })
    };
    TimeoutOverrides {
        connect: field(&raw.connect, "connect"),
        first_byte: Some(field(&raw.first_byte, "first_byte").unwrap_or(Duration::from_secs(5))),
        idle: field(&raw.idle, "idle"),
        total: field(&raw.total, "total"),
    }
}

/// `model_exists`: whether a model may be named (for problems); `listed`: whether the file
/// lists keys, some of which may have failed to load (and were reported).
/// A key's budgets: each gives tokens or cost, at most one per period.
pub fn check_budgets(budgets: &[Budget]) -> Result<(), String> {
    if budgets
        .iter()
        .any(|b| b.tokens.is_none() && b.cost.is_none())
    {
        return Err("give tokens, cost, or both".into());
    }
    for (i, b) in budgets.iter().enumerate() {
        if budgets[..i].iter().any(|o| o.period == b.period) {
            return Err("one budget per period (day, month, total)".into());
        }
    }
    Ok(())
}

/// Teams, each named and checked like a key's limits and budget.
fn load_teams(
    raw: HashMap<String, Team>,
    problems: &mut Vec<Problem>,
) -> HashMap<String, Arc<Team>> {
    raw.into_iter()
        .map(|(name, mut team)| {
            check_limits(&team.limits, &format!("teams.{name}.limits"), problems);
            if let Some(b) = &team.budget {
                if b.tokens.is_none() && b.cost.is_none() {
                    problems.at(format!("teams.{name}.budget"), "give tokens, cost, or both");
                }
            }
            team.name = name.clone();
            (name, Arc::new(team))
        })
        .collect()
}

fn load_keys(
    raw: Vec<(String, RawKey)>,
    model_exists: &dyn Fn(&str) -> bool,
    teams: &HashMap<String, Arc<Team>>,
    listed: bool,
    problems: &mut Vec<Problem>,
) -> Vec<ClientKey> {
    let mut keys: Vec<ClientKey> = Vec::new();
    for (path, raw) in raw {
        let key = load_key(&path, raw, model_exists, teams, problems);
        if keys
            .iter()
            .any(|k| k.hashes.iter().any(|h| key.hashes.contains(h)))
        {
            problems.at(format!("{path}.key"), "the same key is configured twice");
        }
        // Limits, budgets and cache entries are kept by key name.
        if keys.iter().any(|k| k.name == key.name) {
            problems.at(
                format!("{path}.name"),
                format!("duplicate key name `{}`", key.name),
            );
        }
        keys.push(key);
    }
    if keys.is_empty() && !listed {
        problems.at(
            "keys",
            "at least one client key is needed; clients authenticate with them",
        );
    }
    keys
}

fn load_key(
    path: &str,
    raw: RawKey,
    model_exists: &dyn Fn(&str) -> bool,
    teams: &HashMap<String, Arc<Team>>,
    problems: &mut Vec<Problem>,
) -> ClientKey {
    let sha256 = match (&raw.key, &raw.key_sha256) {
        (Some(key), None) => {
            if key.len() < 8 {
                problems.at(
                    format!("{path}.key"),
                    "a client key must be at least 8 characters",
                );
            }
            super::key_hash(key.as_bytes())
        }
        (None, Some(hash)) => super::unhex(hash).unwrap_or_else(|| {
            problems.at(
                format!("{path}.key_sha256"),
                "64 hex digits, as `modelmux key hash` prints",
            );
            [0; 32]
        }),
        _ => {
            problems.at(
                format!("{path}.key"),
                "give the key (`key`) or its SHA-256 (`key_sha256`, from `modelmux key hash`), one of them",
            );
            [0; 32]
        }
    };
    let access = if raw.models.is_empty() || raw.models.iter().any(|m| m == "*") {
        ModelAccess::All
    } else {
        for (i, m) in raw.models.iter().enumerate() {
            // Workflows are named by `workflow/<name>`, checked when they run.
            // A pattern (`gpt-4o*`) may match models added later.
            if !model_exists(m) && !m.starts_with(WORKFLOW_PREFIX) && !m.contains('*') {
                problems.at(
                    format!("{path}.models[{i}]"),
                    format!("no model named `{m}`"),
                );
            }
        }
        ModelAccess::Only(raw.models.into_iter().collect())
    };
    check_limits(&raw.limits, &format!("{path}.limits"), problems);
    let budgets: Vec<Budget> = raw
        .budget
        .map(|b| b.into_vec())
        .unwrap_or_default()
        .into_iter()
        .map(|b| Budget {
            tokens: b.tokens,
            cost: b.cost,
            period: b.period,
        })
        .collect();
    if let Err(e) = check_budgets(&budgets) {
        problems.at(format!("{path}.budget"), e);
    }
    let expires_at = raw.expires_at.as_deref().and_then(|text| {
        humantime::parse_rfc3339_weak(text)
            .map_err(|e| {
                problems.at(
                    format!("{path}.expires_at"),
                    format!("`{text}` is not a time like 2027-01-31T00:00:00Z ({e})"),
                )
            })
            .ok()
            .map(|t| {
                t.duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs())
            })
    });
    ClientKey {
        name: raw.name,
        key: raw.key.map(Secret),
        hashes: vec![super::KeyHash {
            sha256,
            until: None,
        }],
        models: access,
        limits: raw.limits,
        budgets,
        allow_ips: cidrs(&raw.allow_ips, &format!("{path}.allow_ips"), problems),
        expires_at,
        team: raw.team.and_then(|t| {
            let team = teams.get(&t).cloned();
            if team.is_none() {
                problems.at(
                    format!("{path}.team"),
                    format!("no team named `{t}` in teams:"),
                );
            }
            team
        }),
    }
}
