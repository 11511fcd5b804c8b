//! Client keys made at runtime (the admin API's `/admin/keys`), and the admin audit trail,
//! kept in the log store's database: the SQLite file by default, PostgreSQL when replicas
//! share it. A key is stored as its record, never its secret: the SHA-256 of each secret
//! that opens it and a short prefix to recognise it by.
//!
//! Every replica looks for changes once a second (a version number that every write raises)
//! and, on one, puts the whole set in force (`LiveConfig::set_runtime_keys`): a key made,
//! changed or revoked anywhere holds everywhere within about a second, for requests on
//! connections opened before it too. A database that is down changes nothing: the keys in
//! force keep working from memory; a write fails with a clear error.
//!
//! The stores' clients block, so one thread owns the connection, takes the admin API's
//! writes from a queue (answering each through a oneshot) and polls between them.

use std::collections::{BTreeMap, HashSet};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{Budget, ClientKey, KeyHash, Limits, LiveConfig, ModelAccess};

mod postgres;
mod sqlite;

/// How often each replica looks for keys changed elsewhere.
const POLL: Duration = Duration::from_secs(1);

/// A runtime key as stored: everything but its secret.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoredKey {
    pub name: String,
    /// The start of the secret (`sk-mm-AbCd`), to tell keys apart in a list.
    pub prefix: String,
    /// Each secret's SHA-256 (hex) and when it stops working (a rotated key's old secret).
    pub hashes: Vec<(String, Option<u64>)>,
    /// Public models (and `workflow/…`) it may use; empty for all.
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(default)]
    pub limits: Limits,
    /// One per period at most.
    #[serde(default)]
    pub budgets: Vec<Budget>,
    #[serde(default)]
    pub allow_ips: Vec<String>,
    /// Unix seconds after which it is refused.
    pub expires_at: Option<u64>,
    /// A team in the config's `teams:`, whose limits and budget it shares.
    #[serde(default)]
    pub team: Option<String>,
    /// Team, user, project…: the admin's to choose.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub created_at: u64,
    pub updated_at: u64,
    /// Set when revoked: the key opens nothing from then on, and its name stays taken.
    pub revoked_at: Option<u64>,
}

impl StoredKey {
    /// The key as the gateway checks it (none once revoked).
    pub fn client_key(&self) -> Option<ClientKey> {
        if self.revoked_at.is_some() {
            return None;
        }
        let hashes = self
            .hashes
            .iter()
            .filter_map(|(hex, until)| {
                Some(KeyHash {
                    sha256: crate::config::unhex(hex)?,
                    until: *until,
                })
            })
            .collect();
        Some(ClientKey {
            name: self.name.clone(),
            key: None,
            hashes,
            models: match self.models.iter().any(|m| m == "*") || self.models.is_empty() {
                true => ModelAccess::All,
                false => ModelAccess::Only(self.models.iter().cloned().collect::<HashSet<_>>()),
            },
            limits: self.limits,
            budgets: self.budgets.clone(),
            allow_ips: self
                .allow_ips
                .iter()
                .filter_map(|c| c.parse().ok())
                .collect(),
            expires_at: self.expires_at,
            // Named only: the config in force gives the team (`LiveConfig` resolves it).
            team: self.team.as_ref().map(|name| {
                Arc::new(crate::config::Team {
                    name: name.clone(),
                    limits: Limits::default(),
                    budget: None,
                })
            }),
        })
    }
}

/// One admin action, as the audit trail keeps it. Never a secret.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AuditEntry {
    pub time_ms: i64,
    /// `admin key`, or `console session <first characters of its fingerprint>`.
    pub actor: String,
    pub ip: Option<String>,
    /// `key.create`, `key.update`, `key.revoke`, `key.rotate`, `config.reload`, `config.save`…
    pub action: String,
    pub target: Option<String>,
    /// What changed (fields, never secrets).
    pub detail: serde_json::Value,
}

/// Where runtime keys and the audit trail are kept.
pub(crate) trait KeyBackend: Send {
    /// The version the keys are at: it rises with every write, on any replica.
    fn version(&mut self) -> Result<i64, String>;
    fn keys(&mut self) -> Result<Vec<StoredKey>, String>;
    /// Writes the key (made or changed) and raises the version.
    fn save(&mut self, key: &StoredKey) -> Result<(), String>;
    fn audit(&mut self, entry: &AuditEntry) -> Result<(), String>;
    /// The newest entries first.
    fn audit_trail(&mut self, limit: usize) -> Result<Vec<AuditEntry>, String>;
}

type Answer<T> = tokio::sync::oneshot::Sender<Result<T, String>>;

enum Job {
    Save(Box<StoredKey>, Answer<()>),
    Audit(Box<AuditEntry>),
    Trail(usize, Answer<Vec<AuditEntry>>),
}

pub(crate) struct KeyStore {
    jobs: Mutex<SyncSender<Job>>,
    /// The stored records as last read (revoked ones too): what the admin API lists.
    records: Arc<Mutex<Vec<StoredKey>>>,
}

impl KeyStore {
    /// The store beside the log store's rows (same SQLite file, or same PostgreSQL), or None
    /// (logged) when there is no such database or it cannot be opened.
    pub(crate) fn open(
        settings: &crate::config::LogStoreSettings,
        live: Arc<LiveConfig>,
    ) -> Option<KeyStore> {
        let opened = match &settings.postgres {
            Some(url) => postgres::open(url.expose()),
            None => sqlite::open(settings.sqlite_path()),
        };
        let backend = match opened {
            Ok(b) => b,
            Err(e) => {
                log::warn!("the key store cannot be opened ({e}); runtime keys are off");
                return None;
            }
        };
        let (jobs, queue) = sync_channel(64);
        let records = Arc::new(Mutex::new(Vec::new()));
        let shared = records.clone();
        std::thread::Builder::new()
            .name("key-store".into())
            .spawn(move || serve(backend, queue, live, shared))
            .ok()?;
        Some(KeyStore {
            jobs: Mutex::new(jobs),
            records,
        })
    }

    async fn ask<T>(&self, job: impl FnOnce(Answer<T>) -> Job) -> Result<T, String> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        self.jobs
            .lock()
            .map_err(|_| "poisoned".to_string())?
            .try_send(job(answer))
            .map_err(|_| "the key store is busy; try again".to_string())?;
        answered
            .await
            .map_err(|_| "the key store stopped".to_string())?
    }

    /// Stores a key made or changed; once stored it is in force here at once (and on the
    /// other replicas at their next look).
    pub(crate) async fn save(&self, key: StoredKey) -> Result<(), String> {
        self.ask(|a| Job::Save(Box::new(key), a)).await
    }

    /// Records an admin action (without waiting: an audit write never holds an action up;
    /// one that cannot be written is logged).
    pub(crate) fn audit(&self, entry: AuditEntry) {
        if let Ok(jobs) = self.jobs.lock() {
            if jobs.try_send(Job::Audit(Box::new(entry))).is_err() {
                log::warn!("the audit trail is busy: an admin action was not recorded");
            }
        }
    }

    pub(crate) async fn trail(&self, limit: usize) -> Result<Vec<AuditEntry>, String> {
        self.ask(|a| Job::Trail(limit, a)).await
    }

    /// The stored keys as last read.
    pub(crate) fn records(&self) -> Vec<StoredKey> {
        self.records.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

/// The store's thread: writes as they come, and a look for changes every `POLL`.
fn serve(
    mut backend: Box<dyn KeyBackend>,
    jobs: Receiver<Job>,
    live: Arc<LiveConfig>,
    records: Arc<Mutex<Vec<StoredKey>>>,
) {
    let mut seen: Option<i64> = None;
    let mut failing = false;
    let mut refresh = |backend: &mut Box<dyn KeyBackend>, force: bool| {
        let result = backend.version().and_then(|v| {
            if !force && seen == Some(v) {
                return Ok(());
            }
            let keys = backend.keys()?;
            live.set_runtime_keys(keys.iter().filter_map(StoredKey::client_key).collect());
            if let Ok(mut r) = records.lock() {
                *r = keys;
            }
            seen = Some(v);
            Ok(())
        });
        match result {
            Ok(()) if failing => {
                failing = false;
                log::warn!("the key store answers again");
            }
            Ok(()) => {}
            // The keys in force stay: they keep working from memory.
            Err(e) if !failing => {
                failing = true;
                log::warn!("the key store cannot be read ({e}); the keys in force stay");
            }
            Err(_) => {}
        }
    };
    refresh(&mut backend, true);
    loop {
        match jobs.recv_timeout(POLL) {
            Ok(Job::Save(key, answer)) => {
                let saved = backend.save(&key);
                if saved.is_ok() {
                    refresh(&mut backend, true);
                }
                let _ = answer.send(saved);
            }
            Ok(Job::Audit(entry)) => {
                if let Err(e) = backend.audit(&entry) {
                    log::warn!("an admin action ({}) was not recorded: {e}", entry.action);
                }
            }
            Ok(Job::Trail(limit, answer)) => {
                let _ = answer.send(backend.audit_trail(limit));
            }
            Err(RecvTimeoutError::Timeout) => refresh(&mut backend, false),
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}
