//! Records in this process: a byte cap (the oldest-used go first) and each record's TTL.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{Backend, Lookup};

#[derive(Clone)]
struct Record {
    bytes: Arc<[u8]>,
    ttl: Duration,
}

struct RecordExpiry;

impl moka::Expiry<String, Record> for RecordExpiry {
    fn expire_after_create(&self, _: &String, r: &Record, _: Instant) -> Option<Duration> {
        Some(r.ttl)
    }
}

pub(super) struct MemoryBackend(moka::sync::Cache<String, Record>);

impl MemoryBackend {
    pub(super) fn new(max_bytes: u64) -> Self {
        MemoryBackend(
            moka::sync::Cache::builder()
                .max_capacity(max_bytes)
                .weigher(|k: &String, r: &Record| {
                    (k.len() + r.bytes.len()).min(u32::MAX as usize) as u32
                })
                .expire_after(RecordExpiry)
                .build(),
        )
    }
}

#[async_trait]
impl Backend for MemoryBackend {
    async fn put(&self, id: &str, bytes: Arc<[u8]>, ttl: Duration) -> bool {
        self.0.insert(id.to_string(), Record { bytes, ttl });
        true
    }

    async fn get(&self, id: &str) -> Lookup {
        match self.0.get(id) {
            Some(r) => Lookup::Found(r.bytes),
            None => Lookup::Missing,
        }
    }

    async fn delete(&self, id: &str) -> bool {
        self.0.invalidate(id);
        true
    }
}
