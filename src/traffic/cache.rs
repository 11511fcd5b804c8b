//! The response cache: exact-match answers for chat completions and embeddings, in this process (a byte cap
//! that holds, per-entry TTLs) or in Redis (shared by replicas, a TTL on every key).
//!
//! The key hashes everything that decides an answer: the public model, the messages, tools and
//! tool choice, response format and every sampling parameter, typed into the internal model so
//! both client APIs share entries. What does not change the answer (`stream`, stream options,
//! `user`, metadata) is left out, so a streamed request can be answered from one that was not.
//! Entries are scoped to the client key unless a model opts into `scope: global`. Only a
//! complete, successful answer is stored. A cache that fails or is slow is a miss (bounded like
//! every shared-store call), never an error. Identical requests in flight at once make one
//! vendor call: the others wait for it (bounded) and are answered from the cache.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::shared::SharedRedis;
use crate::config::{CacheBackend, CacheScope, ModelCache};
use crate::metrics;
use crate::providers::model::{Completion, Message, Request, ResponseFormat, ToolChoice, ToolDef};

/// What an entry holds: a chat answer (replayed in any client API, streamed or not), or a
/// reply body as it went to the client (embeddings).
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Cached {
    Completion(Completion),
    Body(String),
}

/// How long an identical request waits for the one in flight before it goes on its own.
const FOLLOW_WAIT: Duration = Duration::from_secs(30);

/// What decides an answer, borrowed from the typed request: the cache key's input.
#[derive(Serialize)]
struct KeyInput<'a> {
    model: &'a str,
    /// The client key's name, or "" for `scope: global`.
    scope: &'a str,
    messages: &'a [Message],
    temperature: Option<f64>,
    top_p: Option<f64>,
    max_tokens: Option<u64>,
    n: Option<u64>,
    stop: &'a [String],
    seed: Option<i64>,
    presence_penalty: Option<f64>,
    frequency_penalty: Option<f64>,
    tools: &'a [ToolDef],
    tool_choice: &'a Option<ToolChoice>,
    parallel_tool_calls: Option<bool>,
    response_format: &'a Option<ResponseFormat>,
    logprobs: bool,
    extra: Vec<&'a (String, serde_json::Value)>,
}

/// Members that never change an answer.
const NOT_IN_KEY: &[&str] = &["metadata", "store", "service_tier", "stream_options"];

/// The cache key of a request to `model` by the key named `key_name`.
pub(crate) fn key_for(model: &str, cache: &ModelCache, key_name: &str, r: &Request) -> String {
    let input = KeyInput {
        model,
        scope: match cache.scope {
            CacheScope::Key => key_name,
            CacheScope::Global => "",
        },
        messages: &r.messages,
        temperature: r.temperature,
        top_p: r.top_p,
        max_tokens: r.max_tokens,
        n: r.n,
        stop: &r.stop,
        seed: r.seed,
        presence_penalty: r.presence_penalty,
        frequency_penalty: r.frequency_penalty,
        tools: &r.tools,
        tool_choice: &r.tool_choice,
        parallel_tool_calls: r.parallel_tool_calls,
        response_format: &r.response_format,
        logprobs: r.logprobs,
        extra: r
            .extra
            .iter()
            .filter(|(k, _)| !NOT_IN_KEY.contains(&k.as_str()))
            .collect(),
    };
    // MessagePack with field names: as unambiguous as JSON (strings carry their length, every
    // member its name, so no two inputs write the same bytes) but nothing escaped a byte at a
    // time: serde_json's escaping was ~6,900 instructions of a cache hit under callgrind.
    let bytes = rmp_serde::to_vec_named(&input).expect("a typed request serializes");
    crate::config::hex(&Sha256::digest(&bytes))
}

#[derive(Clone)]
struct Entry {
    bytes: Arc<[u8]>,
    ttl: Duration,
}

struct EntryExpiry;

impl moka::Expiry<String, Entry> for EntryExpiry {
    fn expire_after_create(&self, _: &String, entry: &Entry, _: Instant) -> Option<Duration> {
        Some(entry.ttl)
    }
}

enum Backend {
    Memory(moka::sync::Cache<String, Entry>),
    Redis {
        shared: Arc<SharedRedis>,
        prefix: String,
    },
}

/// One request that a burst of identical ones waits for.
type Flight = tokio::sync::watch::Receiver<bool>;

type Flights = Arc<Mutex<HashMap<String, Flight>>>;

pub(crate) struct Cache {
    backend: Backend,
    flights: Flights,
}

/// Whether this request leads the vendor call for its key (and must `land` it), or may follow
/// one already in flight.
pub(crate) enum Role {
    Lead(Lead),
    Follow(Flight),
}

/// The request that makes the vendor call for a key; dropping it (answered, failed or gone)
/// releases the followers.
pub(crate) struct Lead {
    key: String,
    done: tokio::sync::watch::Sender<bool>,
    flights: Flights,
}

impl Drop for Lead {
    fn drop(&mut self) {
        let mut flights = self.flights.lock().expect("flight lock is never poisoned");
        if flights
            .get(&self.key)
            .is_some_and(|f| f.same_channel(&self.done.subscribe()))
        {
            flights.remove(&self.key);
        }
        let _ = self.done.send(true);
    }
}

impl Cache {
    pub(crate) fn new(config: &CacheBackend, shared: Option<Arc<SharedRedis>>) -> Cache {
        let backend = match (config, shared) {
            (CacheBackend::Redis { prefix, .. }, Some(shared)) => Backend::Redis {
                shared,
                prefix: prefix.clone(),
            },
            (CacheBackend::Memory { max_bytes }, _) => Backend::Memory(memory(*max_bytes)),
            (CacheBackend::Redis { .. }, None) => Backend::Memory(memory(64 * 1024 * 1024)),
        };
        Cache {
            backend,
            flights: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    pub(crate) async fn get(&self, key: &str) -> Option<Cached> {
        let bytes: Option<Arc<[u8]>> = match &self.backend {
            Backend::Memory(m) => m.get(key).map(|e| e.bytes),
            Backend::Redis { shared, prefix } => {
                let full = format!("{prefix}:{key}");
                shared
                    .call(|mut conn| async move {
                        redis::cmd("GET")
                            .arg(&full)
                            .query_async::<Option<Vec<u8>>>(&mut conn)
                            .await
                    })
                    .await
                    .flatten()
                    .map(Arc::from)
            }
        };
        let found = bytes.and_then(|b| serde_json::from_slice(&b).ok());
        metrics::CACHE
            .with_label_values(&[if found.is_some() { "hit" } else { "miss" }])
            .inc();
        found
    }

    pub(crate) async fn put(&self, key: &str, c: &Cached, ttl: Duration) {
        let Ok(bytes) = serde_json::to_vec(c) else {
            return;
        };
        metrics::CACHE.with_label_values(&["write"]).inc();
        metrics::CACHE_BYTES
            .with_label_values(&["written"])
            .inc_by(bytes.len() as u64);
        match &self.backend {
            Backend::Memory(m) => {
                m.insert(
                    key.to_string(),
                    Entry {
                        bytes: Arc::from(bytes),
                        ttl,
                    },
                );
                // Evict now rather than on a later access, so the byte cap holds at once
                // (writes follow a vendor call; this costs nothing next to it).
                m.run_pending_tasks();
            }
            Backend::Redis { shared, prefix } => {
                let full = format!("{prefix}:{key}");
                let secs = ttl.as_secs().max(1);
                shared
                    .call(|mut conn| async move {
                        redis::cmd("SET")
                            .arg(&full)
                            .arg(bytes)
                            .arg("EX")
                            .arg(secs)
                            .query_async::<()>(&mut conn)
                            .await
                    })
                    .await;
            }
        }
    }

    /// Whether answers can be shared now: a cache in Redis that is down shares none, so a
    /// request waiting for another's answer would wait for nothing.
    pub(crate) fn shares(&self) -> bool {
        match &self.backend {
            Backend::Memory(_) => true,
            Backend::Redis { shared, .. } => shared.is_up(),
        }
    }

    /// Leads the vendor call for `key`, or follows the one already in flight.
    pub(crate) fn join(&self, key: &str) -> Role {
        let mut flights = self.flights.lock().expect("flight lock is never poisoned");
        if let Some(flight) = flights.get(key) {
            if !*flight.borrow() {
                return Role::Follow(flight.clone());
            }
        }
        let (done, rx) = tokio::sync::watch::channel(false);
        flights.insert(key.to_string(), rx);
        Role::Lead(Lead {
            key: key.to_string(),
            done,
            flights: self.flights.clone(),
        })
    }

    /// Waits (bounded) for the lead request of a key to finish.
    pub(crate) async fn follow(&self, mut flight: Flight) {
        let _ = tokio::time::timeout(FOLLOW_WAIT, flight.wait_for(|done| *done)).await;
    }
}

fn memory(max_bytes: u64) -> moka::sync::Cache<String, Entry> {
    moka::sync::Cache::builder()
        .max_capacity(max_bytes)
        .weigher(|k: &String, e: &Entry| (k.len() + e.bytes.len()).min(u32::MAX as usize) as u32)
        .expire_after(EntryExpiry)
        .eviction_listener(|_, entry: Entry, cause| {
            if cause == moka::notification::RemovalCause::Size {
                metrics::CACHE.with_label_values(&["eviction"]).inc();
                metrics::CACHE_BYTES
                    .with_label_values(&["evicted"])
                    .inc_by(entry.bytes.len() as u64);
            }
        })
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_tells_apart_what_decides_an_answer_and_who_asks() {
        let policy = |scope| ModelCache {
            ttl: Duration::from_secs(60),
            scope,
        };
        let key = |r: &Request, scope, name| key_for("m", &policy(scope), name, r);
        let base = Request::default();
        let hot = Request {
            temperature: Some(0.5),
            ..Request::default()
        };
        let narrow = Request {
            top_p: Some(0.5),
            ..Request::default()
        };
        let stop = Request {
            stop: vec!["a".into(), "b".into()],
            ..Request::default()
        };
        let stop_joined = Request {
            stop: vec!["ab".into()],
            ..Request::default()
        };
        let keys = [
            key(&base, CacheScope::Key, "team-a"),
            key(&base, CacheScope::Key, "team-b"),
            key(&hot, CacheScope::Key, "team-a"),
            key(&narrow, CacheScope::Key, "team-a"),
            key(&stop, CacheScope::Key, "team-a"),
            key(&stop_joined, CacheScope::Key, "team-a"),
            key(&base, CacheScope::Global, "team-a"),
        ];
        let distinct: std::collections::HashSet<&String> = keys.iter().collect();
        assert_eq!(distinct.len(), keys.len(), "{keys:?}");
        assert_eq!(
            key(&base, CacheScope::Global, "team-a"),
            key(&base, CacheScope::Global, "team-b"),
            "global entries are shared"
        );
        assert_eq!(keys[0].len(), 64, "a SHA-256 in hex");
    }
}
