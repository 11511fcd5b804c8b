//! Stored responses of the Responses API (`store: true`, OpenAI's default): each response with
//! the conversation that led to it, so that `previous_response_id` continues it on any vendor
//! and `GET`/`DELETE /v1/responses/{id}` and `…/input_items` find it.
//!
//! Records live in this process (`memory.rs`) or in Redis (`redis.rs`), shared by every
//! replica. The shared store fails open: while Redis is away a record is kept here and looked
//! for here, so a client that stays on this replica loses nothing, and no request waits longer
//! than the shared store's bounded call.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::ResponsesStoreSettings;
use crate::traffic::shared::SharedRedis;

mod memory;
mod redis;

/// The largest record kept (a response with its whole conversation): a conversation past it is
/// answered but not stored, and said so in the log.
pub const MAX_RECORD_BYTES: usize = 16 * 1024 * 1024;

/// What a backend found.
pub(crate) enum Lookup {
    Found(Arc<[u8]>),
    Missing,
    /// The backend did not answer (only the shared one can be away).
    Unavailable,
}

/// Where records are kept, by response id, each for its time to live.
#[async_trait]
pub(crate) trait Backend: Send + Sync {
    /// Keeps a record; false when the backend is unavailable.
    async fn put(&self, id: &str, record: Arc<[u8]>, ttl: Duration) -> bool;
    async fn get(&self, id: &str) -> Lookup;
    /// Forgets a record; false when the backend is unavailable.
    async fn delete(&self, id: &str) -> bool;
}

/// One stored response: whose it is, the Response object as the client got it, and the
/// conversation items that led to it (earlier turns' input and output, then this turn's input).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Stored {
    /// The name of the client key that created it: no other key sees it.
    pub owner: String,
    pub response: Value,
    pub items: Vec<Value>,
    /// The provider that stored it too, when the client's body went to it as it was (OpenAI's
    /// Responses API): a continuation can go there as it is.
    #[serde(default)]
    pub held_by: Option<String>,
}

impl Stored {
    /// The conversation a next turn continues: the items, then this response's output.
    pub fn conversation(self) -> Vec<Value> {
        let mut items = self.items;
        if let Some(Value::Array(output)) = self.response.get("output") {
            items.extend(output.iter().cloned());
        }
        items
    }
}

pub struct ResponseStore {
    shared: Option<redis::RedisBackend>,
    local: memory::MemoryBackend,
    ttl: Duration,
}

impl ResponseStore {
    /// The store a config asks for; `shared` is its Redis when it names one.
    pub(crate) fn new(settings: &ResponsesStoreSettings, shared: Option<Arc<SharedRedis>>) -> Self {
        ResponseStore {
            shared: shared.map(|s| redis::RedisBackend::new(s, settings.prefix.clone())),
            local: memory::MemoryBackend::new(settings.max_bytes),
            ttl: settings.ttl,
        }
    }

    fn backends(&self) -> impl Iterator<Item = &dyn Backend> {
        self.shared
            .iter()
            .map(|s| s as &dyn Backend)
            .chain(std::iter::once(&self.local as &dyn Backend))
    }

    /// Keeps a response; false when it is too large to keep.
    pub async fn put(&self, id: &str, stored: &Stored) -> bool {
        let record: Arc<[u8]> = serde_json::to_vec(stored).expect("json serializes").into();
        if record.len() > MAX_RECORD_BYTES {
            log::warn!(
                "response {id} not stored: its conversation is {} bytes, past the {MAX_RECORD_BYTES}-byte cap",
                record.len()
            );
            return false;
        }
        for backend in self.backends() {
            if backend.put(id, record.clone(), self.ttl).await {
                return true;
            }
        }
        false
    }

    /// The response `id` if `owner` created it (another key's is not found, as OpenAI does).
    pub async fn get(&self, id: &str, owner: &str) -> Option<Stored> {
        for backend in self.backends() {
            match backend.get(id).await {
                Lookup::Found(bytes) => {
                    let stored: Stored = serde_json::from_slice(&bytes).ok()?;
                    return (stored.owner == owner).then_some(stored);
                }
                // Kept here while the shared store was away, perhaps.
                Lookup::Missing | Lookup::Unavailable => continue,
            }
        }
        None
    }

    /// Forgets the response `id` if `owner` created it; whether it was found.
    pub async fn delete(&self, id: &str, owner: &str) -> bool {
        if self.get(id, owner).await.is_none() {
            return false;
        }
        for backend in self.backends() {
            backend.delete(id).await;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn store() -> ResponseStore {
        let settings = ResponsesStoreSettings::default();
        ResponseStore::new(&settings, None)
    }

    fn stored(owner: &str) -> Stored {
        Stored {
            owner: owner.into(),
            response: json!({"id": "resp_1", "output": [{"type": "message", "role": "assistant"}]}),
            items: vec![json!({"type": "message", "role": "user"})],
            held_by: None,
        }
    }

    #[tokio::test]
    async fn a_record_is_seen_by_its_owner_only_and_deleted_once() {
        let s = store();
        assert!(s.put("resp_1", &stored("alice")).await);
        assert_eq!(s.get("resp_1", "alice").await, Some(stored("alice")));
        assert_eq!(s.get("resp_1", "bob").await, None);
        assert!(!s.delete("resp_1", "bob").await);
        assert!(s.delete("resp_1", "alice").await);
        assert_eq!(s.get("resp_1", "alice").await, None);
        assert!(!s.delete("resp_1", "alice").await);
    }

    #[tokio::test]
    async fn a_record_past_the_cap_is_not_kept() {
        let s = store();
        let mut big = stored("alice");
        big.items.push(json!("x".repeat(MAX_RECORD_BYTES)));
        assert!(!s.put("resp_2", &big).await);
        assert_eq!(s.get("resp_2", "alice").await, None);
    }

    #[test]
    fn the_conversation_goes_on_after_the_output() {
        let c = stored("a").conversation();
        assert_eq!(c.len(), 2);
        assert_eq!(c[1]["role"], "assistant");
    }
}
