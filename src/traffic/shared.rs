//! The Redis that replicas share (limits, budgets, the response cache), failing open.
//!
//! Every call is bounded (`CALL_TIMEOUT`); a call that fails or times out marks Redis down, and
//! until a background task has seen it answer again every call returns None at once, so its
//! users fall back to what this process has. With Redis refusing, blackholed or slow, a
//! request waits at most one bounded call. A warning is logged once when it goes down and once
//! when it is back.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::config::Secret;
use crate::metrics;

/// The longest a request waits for the shared store.
const CALL_TIMEOUT: Duration = Duration::from_millis(100);
/// How often a down store is tried again, in the background.
const PROBE_EVERY: Duration = Duration::from_millis(500);

const NOT_TRIED: u8 = 0;
const UP: u8 = 1;
const DOWN: u8 = 2;

/// Redis, with its health.
pub(crate) struct SharedRedis {
    client: redis::Client,
    conn: Mutex<Option<ConnectionManager>>,
    state: AtomicU8,
    /// A background task is trying to reach a down store.
    probing: AtomicBool,
}

enum CallError {
    Redis(redis::RedisError),
    Timeout,
}

impl SharedRedis {
    /// A client for the URL (no connection yet: the first call makes it).
    pub(crate) fn open(url: &Secret) -> Option<Arc<SharedRedis>> {
        match redis::Client::open(url.expose()) {
            Ok(client) => {
                metrics::STORE_UP.with_label_values(&["redis"]).set(1);
                Some(Arc::new(SharedRedis {
                    client,
                    conn: Mutex::new(None),
                    state: AtomicU8::new(NOT_TRIED),
                    probing: AtomicBool::new(false),
                }))
            }
            Err(e) => {
                log::warn!("the Redis URL cannot be used ({e}); limits and cache stay local");
                None
            }
        }
    }

    pub(crate) fn is_up(&self) -> bool {
        self.state.load(Ordering::Acquire) != DOWN
    }

    fn connection(&self) -> Option<ConnectionManager> {
        self.conn
            .lock()
            .expect("connection lock is never poisoned")
            .clone()
    }

    async fn connect(client: &redis::Client) -> Result<ConnectionManager, CallError> {
        // No retries inside: a store that does not answer is handled here, not waited for.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(CALL_TIMEOUT)
            .set_response_timeout(CALL_TIMEOUT)
            .set_number_of_retries(0);
        let connecting = ConnectionManager::new_with_config(client.clone(), config);
        match tokio::time::timeout(CALL_TIMEOUT, connecting).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(CallError::Redis(e)),
            Err(_) => Err(CallError::Timeout),
        }
    }

    /// Runs `call` on Redis within the bound, or says the store is unavailable (None) at once
    /// while it is down.
    pub(crate) async fn call<T, F, Fut>(self: &Arc<Self>, call: F) -> Option<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let conn = match self.state.load(Ordering::Acquire) {
            DOWN => return None,
            UP => self.connection()?,
            _ => match SharedRedis::connect(&self.client).await {
                Ok(conn) => {
                    *self.conn.lock().expect("connection lock is never poisoned") =
                        Some(conn.clone());
                    self.mark_up();
                    conn
                }
                Err(e) => {
                    self.mark_down(e);
                    return None;
                }
            },
        };
        match tokio::time::timeout(CALL_TIMEOUT, call(conn)).await {
            Ok(Ok(value)) => Some(value),
            Ok(Err(e)) => {
                self.mark_down(CallError::Redis(e));
                None
            }
            Err(_) => {
                self.mark_down(CallError::Timeout);
                None
            }
        }
    }

    fn mark_up(&self) {
        if self.state.swap(UP, Ordering::AcqRel) == DOWN {
            log::warn!("shared store (Redis) is back: limits and budgets are shared again");
        }
        metrics::STORE_UP.with_label_values(&["redis"]).set(1);
    }

    fn mark_down(self: &Arc<Self>, e: CallError) {
        let kind = match &e {
            CallError::Redis(_) => "error",
            CallError::Timeout => "timeout",
        };
        metrics::STORE_ERRORS
            .with_label_values(&["redis", kind])
            .inc();
        if self.state.swap(DOWN, Ordering::AcqRel) != DOWN {
            let why = match e {
                CallError::Redis(e) => e.to_string(),
                CallError::Timeout => format!("no answer within {CALL_TIMEOUT:?}"),
            };
            log::warn!(
                "shared store (Redis) unavailable ({why}): limits and budgets fall back to this \
                 replica's own buckets until it is back"
            );
            metrics::STORE_UP.with_label_values(&["redis"]).set(0);
        }
        *self.conn.lock().expect("connection lock is never poisoned") = None;
        if !self.probing.swap(true, Ordering::AcqRel) {
            let shared = Arc::clone(self);
            tokio::spawn(async move { shared.probe().await });
        }
    }

    /// Tries a down store until it answers a PING, then puts it back in service.
    async fn probe(self: Arc<Self>) {
        loop {
            tokio::time::sleep(PROBE_EVERY).await;
            let Ok(mut conn) = SharedRedis::connect(&self.client).await else {
                continue;
            };
            let ping = redis::cmd("PING");
            let answer = tokio::time::timeout(CALL_TIMEOUT, ping.query_async::<String>(&mut conn));
            if let Ok(Ok(_)) = answer.await {
                *self.conn.lock().expect("connection lock is never poisoned") = Some(conn);
                self.probing.store(false, Ordering::Release);
                self.mark_up();
                return;
            }
        }
    }
}
