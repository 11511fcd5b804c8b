//! `/admin/keys`: client keys made, changed, rotated and revoked at runtime; the keys the
//! config file gives are listed read-only. `/admin/audit`: the trail of admin actions.
//!
//! A key's secret is shown once, in the answer that makes it (or rotates it): only its SHA-256
//! and a short prefix are stored.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{json, Value};

use super::{error, Admin};
use crate::config::{Budget, ClientKey, Config, Limits, ModelAccess};
use crate::key_store::{AuditEntry, KeyStore, StoredKey};

/// Who did an admin action, and from where.
pub(super) struct Actor {
    pub(super) who: String,
    pub(super) ip: Option<String>,
}

/// What a create or an update may set; absent fields stay as they are.
#[derive(Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct KeyFields {
    name: Option<String>,
    models: Option<Vec<String>>,
    limits: Option<Limits>,
    budgets: Option<Vec<Budget>>,
    allow_ips: Option<Vec<String>>,
    /// Unix seconds; null for never.
    expires_at: Option<Option<u64>>,
    labels: Option<BTreeMap<String, String>>,
    /// A team in the config's `teams:`; null for none.
    team: Option<Option<String>>,
}

/// How long a rotated key's old secret keeps working.
#[derive(Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Rotation {
    #[serde(default)]
    grace_seconds: u64,
}

/// The create/update and rotation bodies' schemas (`KeyFields`, `Rotation`), for the OpenAPI
/// document.
pub(super) fn register_schemas(generator: &mut schemars::SchemaGenerator) {
    generator.subschema_for::<KeyFields>();
    generator.subschema_for::<Rotation>();
}

/// The longest grace a rotation may give the old secret: 30 days.
const MAX_GRACE: u64 = 30 * 86_400;

fn bad(message: &str) -> (u16, Value) {
    error(400, "invalid_request_error", message)
}

/// A config key as listed: read-only, from the file.
fn config_key(k: &ClientKey) -> Value {
    json!({
        "name": k.name, "source": "config", "read_only": true,
        "models": match &k.models {
            ModelAccess::All => vec!["*".to_string()],
            ModelAccess::Only(set) => { let mut v: Vec<_> = set.iter().cloned().collect(); v.sort(); v }
        },
        "limits": k.limits, "budgets": k.budgets, "expires_at": k.expires_at,
        "allow_ips": k.allow_ips.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
        "team": k.team.as_ref().map(|t| t.name.clone()),
    })
}

/// A runtime key as listed: its record, less the hashes.
fn runtime_key(k: &StoredKey) -> Value {
    json!({
        "name": k.name, "source": "runtime", "read_only": false, "prefix": k.prefix,
        "models": if k.models.is_empty() { vec!["*".to_string()] } else { k.models.clone() },
        "limits": k.limits, "budgets": k.budgets, "expires_at": k.expires_at,
        "allow_ips": k.allow_ips, "labels": k.labels, "team": k.team,
        "created_at": k.created_at, "updated_at": k.updated_at, "revoked_at": k.revoked_at,
        "secrets": k.hashes.len(),
    })
}

/// Checks what a create or update sets against the config in force.
fn check(fields: &KeyFields, config: &Config) -> Result<(), String> {
    for m in fields.models.iter().flatten() {
        if !m.contains('*')
            && config.model(m).is_none()
            && !m.starts_with(crate::config::WORKFLOW_PREFIX)
        {
            return Err(format!("no model named `{m}`"));
        }
    }
    for cidr in fields.allow_ips.iter().flatten() {
        if cidr.parse::<ipnet::IpNet>().is_err() && cidr.parse::<std::net::IpAddr>().is_err() {
            return Err(format!("`{cidr}` is not an address or a CIDR"));
        }
    }
    if let Some(Some(team)) = &fields.team {
        if !config.teams.contains_key(team) {
            return Err(format!("no team named `{team}` in the config's teams:"));
        }
    }
    if let Some(budgets) = &fields.budgets {
        crate::config::check_budgets(budgets).map_err(|e| format!("budgets: {e}"))?;
    }
    Ok(())
}

fn apply(fields: KeyFields, key: &mut StoredKey) {
    if let Some(v) = fields.models {
        key.models = v;
    }
    if let Some(v) = fields.limits {
        key.limits = v;
    }
    if let Some(v) = fields.budgets {
        key.budgets = v;
    }
    if let Some(v) = fields.allow_ips {
        // A bare address is its own /32 (or /128).
        key.allow_ips = v
            .into_iter()
            .map(|c| match c.parse::<std::net::IpAddr>() {
                Ok(ip) => ipnet::IpNet::from(ip).to_string(),
                Err(_) => c,
            })
            .collect();
    }
    if let Some(v) = fields.expires_at {
        key.expires_at = v;
    }
    if let Some(v) = fields.labels {
        key.labels = v;
    }
    if let Some(v) = fields.team {
        key.team = v;
    }
}

/// A new secret for `key`: its prefix and hash stored, the secret returned (shown once).
fn new_secret(key: &mut StoredKey, keep_old_until: Option<u64>) -> String {
    let secret = crate::config::new_client_key();
    // Old secrets past their grace go; the current one stays until replaced below.
    key.hashes
        .retain(|(_, until)| until.is_none_or(|u| u > now()));
    if let Some(until) = keep_old_until {
        for h in key.hashes.iter_mut().filter(|(_, u)| u.is_none()) {
            h.1 = Some(until);
        }
    } else {
        key.hashes.clear();
    }
    key.hashes.push((
        crate::config::hex(&crate::config::key_hash(secret.as_bytes())),
        None,
    ));
    key.prefix = secret[..10].to_string();
    secret
}

fn now() -> u64 {
    crate::clock::unix_secs()
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl Admin {
    fn key_store(&self) -> Result<&KeyStore, (u16, Value)> {
        self.gateway.key_store().ok_or_else(|| {
            error(503, "server_error", "Runtime keys need the log store's database (logs.backend: sqlite or postgres), and it could not be opened.")
        })
    }

    /// Records an admin action in the audit trail (when there is one). Never a secret.
    pub(super) fn record(&self, actor: &Actor, action: &str, target: Option<&str>, detail: Value) {
        if let Some(store) = self.gateway.key_store() {
            store.audit(AuditEntry {
                time_ms: crate::clock::unix_millis(),
                actor: actor.who.clone(),
                ip: actor.ip.clone(),
                action: action.into(),
                target: target.map(str::to_string),
                detail,
            });
        }
    }

    /// `/admin/keys…` and `/admin/audit`; None for other paths.
    pub(super) async fn keys_api(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        actor: &Actor,
    ) -> Option<(u16, Value)> {
        if path == "/admin/audit" {
            return Some(match method {
                "GET" => self.audit_trail().await,
                _ => error(405, "invalid_request_error", "Method not allowed."),
            });
        }
        let rest = path.strip_prefix("/admin/keys")?;
        let (name, action) = match rest.trim_start_matches('/').split_once('/') {
            Some((n, a)) => (n, Some(a)),
            None => (rest.trim_start_matches('/'), None),
        };
        Some(match (method, name, action) {
            ("GET", "", None) => self.list_keys(),
            ("POST", "", None) => self.create_key(body, actor).await,
            ("GET", n, None) => self.get_key(n),
            ("PATCH", n, None) => self.update_key(n, body, actor).await,
            ("DELETE", n, None) => self.revoke_key(n, actor).await,
            ("POST", n, Some("rotate")) => self.rotate_key(n, body, actor).await,
            _ => error(405, "invalid_request_error", "Method not allowed."),
        })
    }

    fn list_keys(&self) -> (u16, Value) {
        let config = self.gateway.config();
        let mut data: Vec<Value> = config.keys[..config.file_keys]
            .iter()
            .map(config_key)
            .collect();
        if let Some(store) = self.gateway.key_store() {
            data.extend(store.records().iter().map(runtime_key));
        }
        (200, json!({"object": "list", "data": data}))
    }

    fn find(&self, name: &str) -> Result<StoredKey, (u16, Value)> {
        let config = self.gateway.config();
        if config.keys[..config.file_keys]
            .iter()
            .any(|k| k.name == name)
        {
            return Err(error(
                409,
                "invalid_request_error",
                "This key comes from the config file: change it there.",
            ));
        }
        self.key_store()?
            .records()
            .into_iter()
            .find(|k| k.name == name)
            .ok_or_else(|| error(404, "invalid_request_error", "No key with that name."))
    }

    fn get_key(&self, name: &str) -> (u16, Value) {
        let config = self.gateway.config();
        if let Some(k) = config.keys[..config.file_keys]
            .iter()
            .find(|k| k.name == name)
        {
            return (200, config_key(k));
        }
        match self.find(name) {
            Ok(k) => (200, runtime_key(&k)),
            Err(e) => e,
        }
    }

    async fn save_key(&self, key: &StoredKey) -> Result<(), (u16, Value)> {
        self.key_store()?.save(key.clone()).await.map_err(|e| {
            error(
                503,
                "server_error",
                &format!("The key could not be stored: {e}. Nothing changed."),
            )
        })
    }

    async fn create_key(&self, body: &[u8], actor: &Actor) -> (u16, Value) {
        let store = match self.key_store() {
            Ok(s) => s,
            Err(e) => return e,
        };
        let fields: KeyFields = match serde_json::from_slice(body) {
            Ok(f) => f,
            Err(e) => return bad(&format!("Expected a key's fields: {e}")),
        };
        let Some(name) = fields.name.clone().filter(|n| valid_name(n)) else {
            return bad("`name` is required: letters, digits, `-`, `_` and `.`, at most 64.");
        };
        let config = self.gateway.config();
        if config.keys.iter().any(|k| k.name == name)
            || store.records().iter().any(|k| k.name == name)
        {
            return error(
                409,
                "invalid_request_error",
                "A key with that name exists (or was revoked: names are not reused).",
            );
        }
        if let Err(e) = check(&fields, &config) {
            return bad(&e);
        }
        let mut key = StoredKey {
            name: name.clone(),
            prefix: String::new(),
            hashes: Vec::new(),
            models: Vec::new(),
            limits: Limits::default(),
            budgets: Vec::new(),
            allow_ips: Vec::new(),
            expires_at: None,
            labels: BTreeMap::new(),
            team: None,
            created_at: now(),
            updated_at: now(),
            revoked_at: None,
        };
        apply(fields, &mut key);
        let secret = new_secret(&mut key, None);
        if let Err(e) = self.save_key(&key).await {
            return e;
        }
        self.record(actor, "key.create", Some(&name), runtime_key(&key));
        let mut shown = runtime_key(&key);
        shown["key"] = json!(secret);
        (201, shown)
    }

    /// A runtime key that is not revoked (what an update or a rotation may change).
    fn find_active(&self, name: &str) -> Result<StoredKey, (u16, Value)> {
        match self.find(name)? {
            k if k.revoked_at.is_none() => Ok(k),
            _ => Err(error(409, "invalid_request_error", "The key is revoked.")),
        }
    }

    async fn update_key(&self, name: &str, body: &[u8], actor: &Actor) -> (u16, Value) {
        let mut key = match self.find_active(name) {
            Ok(k) => k,
            Err(e) => return e,
        };
        let fields: KeyFields = match serde_json::from_slice(body) {
            Ok(f) => f,
            Err(e) => return bad(&format!("Expected a key's fields: {e}")),
        };
        if fields.name.as_deref().is_some_and(|n| n != name) {
            return bad("A key's name cannot change.");
        }
        if let Err(e) = check(&fields, &self.gateway.config()) {
            return bad(&e);
        }
        let before = runtime_key(&key);
        apply(fields, &mut key);
        key.updated_at = now();
        if let Err(e) = self.save_key(&key).await {
            return e;
        }
        let after = runtime_key(&key);
        self.record(
            actor,
            "key.update",
            Some(name),
            json!({"before": before, "after": after}),
        );
        (200, after)
    }

    async fn revoke_key(&self, name: &str, actor: &Actor) -> (u16, Value) {
        let mut key = match self.find(name) {
            Ok(k) => k,
            Err(e) => return e,
        };
        if key.revoked_at.is_none() {
            key.revoked_at = Some(now());
            key.updated_at = now();
            if let Err(e) = self.save_key(&key).await {
                return e;
            }
            self.record(actor, "key.revoke", Some(name), json!({}));
        }
        (200, runtime_key(&key))
    }

    async fn rotate_key(&self, name: &str, body: &[u8], actor: &Actor) -> (u16, Value) {
        let mut key = match self.find_active(name) {
            Ok(k) => k,
            Err(e) => return e,
        };
        let rotation: Rotation = match body.is_empty() {
            true => Rotation::default(),
            false => match serde_json::from_slice(body) {
                Ok(r) => r,
                Err(e) => return bad(&format!("Expected {{\"grace_seconds\"}}: {e}")),
            },
        };
        if rotation.grace_seconds > MAX_GRACE {
            return bad("`grace_seconds` is at most 30 days (2592000).");
        }
        let grace = (rotation.grace_seconds > 0).then(|| now() + rotation.grace_seconds);
        let secret = new_secret(&mut key, grace);
        key.updated_at = now();
        if let Err(e) = self.save_key(&key).await {
            return e;
        }
        self.record(
            actor,
            "key.rotate",
            Some(name),
            json!({"grace_seconds": rotation.grace_seconds}),
        );
        let mut shown = runtime_key(&key);
        shown["key"] = json!(secret);
        shown["old_secret_until"] = json!(grace);
        (200, shown)
    }

    async fn audit_trail(&self) -> (u16, Value) {
        let store = match self.key_store() {
            Ok(s) => s,
            Err(e) => return e,
        };
        match store.trail(500).await {
            Ok(entries) => (200, json!({"object": "list", "data": entries})),
            Err(e) => error(
                503,
                "server_error",
                &format!("The audit trail did not answer: {e}"),
            ),
        }
    }
}
