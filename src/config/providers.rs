//! The `providers:` section: each vendor endpoint resolved into the API it speaks and the
//! credentials that API takes.

use std::collections::HashSet;
use std::sync::Arc;

use super::problems::{Problem, Report};
use super::raw::{ProviderKind, RawAuth, RawProvider, RawTimeouts};
use super::yaml::{duration, Expanded};
use super::{Endpoint, JwtAuth, Provider, ResultHosts, Secret, Timeouts, TrustedCa, Vendor};

/// Generous enough for long streams at high rates; a hanging vendor stops here.
const DEFAULT_MAX_IN_FLIGHT: u32 = 4096;

const BAIDU_TOKEN_URL: &str = "https://aip.baidubce.com/oauth/2.0/token";

pub(super) fn load_providers(
    raw: Vec<(String, RawProvider)>,
    expanded: &Expanded,
    problems: &mut Vec<Problem>,
) -> Vec<Arc<Provider>> {
    let mut names = HashSet::new();
    let mut providers = Vec::new();
    for (path, raw) in raw {
        let Some(mut p) = load_provider(&path, raw, problems) else {
            continue;
        };
        p.credentials_from = [
            "api_key",
            "client_id",
            "client_secret",
            "auth.key_id",
            "auth.secret",
        ]
        .iter()
        .flat_map(|field| expanded.variables_of(&format!("{path}.{field}")))
        .collect();
        if !names.insert(p.name.clone()) {
            problems.at(
                format!("{path}.name"),
                format!("duplicate provider name `{}`", p.name),
            );
            continue;
        }
        providers.push(Arc::new(p));
    }
    providers
}

/// One provider, or None (with its problems reported) when it is unusable.
fn load_provider(path: &str, raw: RawProvider, problems: &mut Vec<Problem>) -> Option<Provider> {
    let before = problems.len();
    let at = |field: &str| format!("{path}.{field}");
    if raw.name.trim().is_empty() {
        problems.at(at("name"), "must not be empty");
    }
    let endpoint = Endpoint::parse(&raw.base_url)
        .map_err(|e| problems.at(at("base_url"), e))
        .ok();
    let vendor = load_vendor(path, &raw, problems);
    let jwt = raw
        .auth
        .as_ref()
        .map(|auth| load_jwt(path, auth, &raw, &vendor, problems));
    let api_key = match jwt {
        Some(_) => None,
        None => load_api_key(path, &raw, &vendor, problems),
    };
    let timeouts = load_timeouts(path, &raw.timeouts, problems);
    if raw.max_in_flight == Some(0) {
        problems.at(at("max_in_flight"), "must be at least 1");
    }
    if raw.default_max_tokens == Some(0) {
        problems.at(at("default_max_tokens"), "must be at least 1");
    }
    let ca = match raw.ca_file.as_deref().map(TrustedCa::load) {
        None => None,
        Some(Ok(ca)) => Some(ca),
        Some(Err(e)) => {
            problems.at(at("ca_file"), e);
            None
        }
    };
    let result_hosts = match (&raw.result_hosts, raw.kind) {
        (None, ProviderKind::DashScope) => vec![DASHSCOPE_RESULT_HOSTS.to_string()],
        (None, _) => Vec::new(),
        (Some(hosts), ProviderKind::DashScope) => {
            for (i, h) in hosts.iter().enumerate() {
                let name = h.strip_prefix("*.").unwrap_or(h);
                let valid = !name.is_empty()
                    && name.contains('.')
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
                if !valid {
                    problems.at(
                        format!("{path}.result_hosts[{i}]"),
                        "must be a host name or `*.` and a domain, like *.aliyuncs.com",
                    );
                }
            }
            hosts.iter().map(|h| h.to_ascii_lowercase()).collect()
        }
        (Some(_), _) => {
            problems.at(
                at("result_hosts"),
                "only dashscope providers take result_hosts",
            );
            Vec::new()
        }
    };
    let responses_api = match (raw.responses_api, raw.kind) {
        (None, kind) => kind == ProviderKind::OpenAi,
        (Some(on), ProviderKind::OpenAi | ProviderKind::OpenAiCompatible) => on,
        (Some(_), _) => {
            problems.at(
                at("responses_api"),
                "only openai and openai_compatible providers can serve the Responses API",
            );
            false
        }
    };
    if problems.len() != before {
        return None;
    }
    let own_host = endpoint
        .as_ref()
        .map(|e| e.host.clone())
        .unwrap_or_default();
    Some(Provider {
        name: raw.name,
        vendor: vendor?,
        endpoint: endpoint?,
        api_key,
        default_max_tokens: raw.default_max_tokens.unwrap_or(4096),
        max_in_flight: raw.max_in_flight.unwrap_or(DEFAULT_MAX_IN_FLIGHT),
        jwt,
        timeouts,
        ca,
        result_hosts: ResultHosts {
            own: own_host,
            patterns: result_hosts,
        },
        credentials_from: Vec::new(),
        responses_api,
    })
}

/// Where DashScope keeps generated images (its OSS buckets, e.g.
/// `dashscope-result-bj.oss-cn-beijing.aliyuncs.com`).
const DASHSCOPE_RESULT_HOSTS: &str = "*.aliyuncs.com";

/// The API a provider speaks. Qianfan has two: v1 (the default, OAuth client credentials) and
/// v2 (OpenAI-compatible).
fn load_vendor(path: &str, raw: &RawProvider, problems: &mut Vec<Problem>) -> Option<Vendor> {
    let at = |field: &str| format!("{path}.{field}");
    let v2 = match (raw.kind, raw.api_version.as_deref()) {
        (ProviderKind::Qianfan, None | Some("v1")) => false,
        (ProviderKind::Qianfan, Some("v2")) => true,
        (ProviderKind::Qianfan, Some(v)) => {
            problems.at(at("api_version"), format!("`{v}` is not v1 or v2"));
            return None;
        }
        (_, Some(_)) => {
            problems.at(
                at("api_version"),
                "only qianfan providers take an api_version",
            );
            return None;
        }
        (_, None) => false,
    };
    let qianfan_v1 = raw.kind == ProviderKind::Qianfan && !v2;
    if !qianfan_v1 {
        for (field, set) in [
            ("client_id", raw.client_id.is_some()),
            ("client_secret", raw.client_secret.is_some()),
            ("token_url", raw.token_url.is_some()),
        ] {
            if set {
                problems.at(
                    at(field),
                    "only qianfan v1 providers take OAuth client settings",
                );
            }
        }
    }
    Some(match raw.kind {
        ProviderKind::OpenAi => Vendor::OpenAi,
        ProviderKind::OpenAiCompatible => Vendor::OpenAiCompatible,
        ProviderKind::Anthropic => Vendor::Anthropic,
        ProviderKind::DashScope => Vendor::DashScope,
        ProviderKind::Gemini => Vendor::Gemini,
        ProviderKind::Qianfan if v2 => Vendor::QianfanV2,
        ProviderKind::Qianfan => return load_qianfan_v1(path, raw, problems),
    })
}

fn load_qianfan_v1(path: &str, raw: &RawProvider, problems: &mut Vec<Problem>) -> Option<Vendor> {
    let at = |field: &str| format!("{path}.{field}");
    let token_url = raw.token_url.as_deref().unwrap_or(BAIDU_TOKEN_URL);
    let token_endpoint = Endpoint::parse(token_url)
        .map_err(|e| problems.at(at("token_url"), e))
        .ok();
    if raw.client_id.is_none() {
        problems.at(at("client_id"), "required for qianfan v1");
    }
    if raw.client_secret.is_none() {
        problems.at(at("client_secret"), "required for qianfan v1");
    }
    Some(Vendor::QianfanV1 {
        client_id: Secret::new(raw.client_id.clone()?),
        client_secret: Secret::new(raw.client_secret.clone()?),
        token_endpoint: token_endpoint?,
    })
}

fn load_api_key(
    path: &str,
    raw: &RawProvider,
    vendor: &Option<Vendor>,
    problems: &mut Vec<Problem>,
) -> Option<Secret> {
    let key = raw.api_key.as_deref().filter(|k| !k.is_empty());
    match (vendor, key) {
        (Some(Vendor::QianfanV1 { .. }), Some(_)) => {
            problems.at(
                format!("{path}.api_key"),
                "qianfan v1 authenticates with client_id and client_secret",
            );
            None
        }
        (Some(Vendor::QianfanV1 { .. } | Vendor::OpenAiCompatible) | None, None) => None,
        (_, Some(k)) => Some(Secret::new(k)),
        (Some(v), None) => {
            problems.at(
                format!("{path}.api_key"),
                format!("required for {} providers", v.kind()),
            );
            None
        }
    }
}

/// JWT credentials, for OpenAI-compatible providers (Zhipu GLM and its kind).
fn load_jwt(
    path: &str,
    auth: &RawAuth,
    raw: &RawProvider,
    vendor: &Option<Vendor>,
    problems: &mut Vec<Problem>,
) -> JwtAuth {
    let RawAuth::Jwt {
        key_id,
        secret,
        ttl,
    } = auth;
    if !matches!(
        vendor,
        Some(Vendor::OpenAi | Vendor::OpenAiCompatible) | None
    ) {
        problems.at(
            format!("{path}.auth"),
            "jwt auth is for openai and openai_compatible providers",
        );
    }
    if raw.api_key.is_some() {
        problems.at(format!("{path}.api_key"), "give api_key or auth, not both");
    }
    JwtAuth {
        key_id: key_id.clone(),
        secret: Secret::new(secret.clone()),
        ttl: duration(
            ttl,
            &format!("{path}.auth.ttl"),
            std::time::Duration::from_secs(1800),
            problems,
        ),
    }
}

fn load_timeouts(path: &str, raw: &RawTimeouts, problems: &mut Vec<Problem>) -> Timeouts {
    let d = Timeouts::default();
    let mut field = |value: &Option<String>, name: &str, dflt| {
        duration(value, &format!("{path}.timeouts.{name}"), dflt, problems)
    };
    Timeouts {
        connect: field(&raw.connect, "connect", d.connect),
        first_byte: field(&raw.first_byte, "first_byte", d.first_byte),
        idle: field(&raw.idle, "idle", d.idle),
        total: field(&raw.total, "total", d.total),
    }
}
