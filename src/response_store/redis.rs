//! Records in Redis, shared by every replica: one string per response under the prefix, with
//! its TTL. Every call is bounded by the shared connection (`traffic::shared`).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::{Backend, Lookup};
use crate::traffic::shared::SharedRedis;

pub(super) struct RedisBackend {
    shared: Arc<SharedRedis>,
    prefix: String,
}

impl RedisBackend {
    pub(super) fn new(shared: Arc<SharedRedis>, prefix: String) -> Self {
        RedisBackend { shared, prefix }
    }

    fn key(&self, id: &str) -> String {
        format!("{}:{id}", self.prefix)
    }
}

#[async_trait]
impl Backend for RedisBackend {
    async fn put(&self, id: &str, record: Arc<[u8]>, ttl: Duration) -> bool {
        let key = self.key(id);
        let millis = ttl.as_millis().max(1) as u64;
        self.shared
            .call(|mut conn| async move {
                redis::cmd("SET")
                    .arg(key)
                    .arg(&*record)
                    .arg("PX")
                    .arg(millis)
                    .query_async::<()>(&mut conn)
                    .await
            })
            .await
            .is_some()
    }

    async fn get(&self, id: &str) -> Lookup {
        let key = self.key(id);
        let found = self
            .shared
            .call(|mut conn| async move {
                redis::cmd("GET")
                    .arg(key)
                    .query_async::<Option<Vec<u8>>>(&mut conn)
                    .await
            })
            .await;
        match found {
            Some(Some(bytes)) => Lookup::Found(bytes.into()),
            Some(None) => Lookup::Missing,
            None => Lookup::Unavailable,
        }
    }

    async fn delete(&self, id: &str) -> bool {
        let key = self.key(id);
        self.shared
            .call(|mut conn| async move {
                redis::cmd("DEL")
                    .arg(key)
                    .query_async::<u64>(&mut conn)
                    .await
            })
            .await
            .is_some()
    }
}
