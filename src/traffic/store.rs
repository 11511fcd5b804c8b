//! Where limit buckets and budget spend live: in this process, or in Redis, shared by every
//! replica that points at it.
//!
//! The shared store fails open, never closed (see `redis.rs`): while Redis is away every call
//! goes to this process's own buckets and counters at once, so each replica still enforces its
//! limits and budgets on its own, and nothing is ever blocked because the store is away.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::shared::SharedRedis;
use crate::config::LimitsBackend;

/// Takes `amount` from a bucket refilled continuously at `rate` per second up to `capacity`.
/// With `force`, the amount is taken even if it overdraws (a correction after the fact).
/// Returns {allowed, tokens left}.
const TAKE_SCRIPT: &str = r#"
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local amount = tonumber(ARGV[3])
local force = ARGV[4] == "1"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or capacity
local ts = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - ts) / 1000 * rate)
local allowed = 0
if force or tokens >= amount then
  tokens = tokens - amount
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity / rate * 1000) + 60000)
return {allowed, tostring(tokens)}
"#;

/// Adds tokens and cost to a spend counter unless it is already at a cap (a negative cap is
/// none); with `force` it adds regardless (settling). Returns {added, tokens, cost} as read
/// before adding.
const SPEND_SCRIPT: &str = r#"
local token_cap = tonumber(ARGV[1])
local cost_cap = tonumber(ARGV[2])
local tokens = tonumber(redis.call('HGET', KEYS[1], 'tokens')) or 0
local cost = tonumber(redis.call('HGET', KEYS[1], 'cost')) or 0
local force = ARGV[6] == "1"
if not force and ((token_cap >= 0 and tokens >= token_cap) or (cost_cap >= 0 and cost >= cost_cap)) then
  return {0, tostring(tokens), tostring(cost)}
end
redis.call('HINCRBY', KEYS[1], 'tokens', ARGV[3])
redis.call('HINCRBYFLOAT', KEYS[1], 'cost', ARGV[4])
local ttl = tonumber(ARGV[5])
if ttl > 0 then redis.call('EXPIRE', KEYS[1], ttl) end
return {1, tostring(tokens), tostring(cost)}
"#;

/// A change to a spend counter: what to add, and the caps that stop it (unless forced).
pub(crate) struct Spend {
    pub(crate) tokens: i64,
    pub(crate) cost: f64,
    pub(crate) token_cap: Option<u64>,
    pub(crate) cost_cap: Option<f64>,
    /// Seconds the counter lives after its last change (0: for ever).
    pub(crate) ttl: u64,
    /// Added even past the caps: a correction for what was already spent.
    pub(crate) force: bool,
}

struct LocalBucket {
    tokens: f64,
    last: Instant,
}

/// This process's own buckets and counters: the store, or the fallback while Redis is away.
#[derive(Default)]
struct Local {
    buckets: Mutex<HashMap<String, LocalBucket>>,
    spend: Mutex<HashMap<String, (i64, f64)>>,
}

impl Local {
    fn take(&self, key: &str, capacity: f64, rate: f64, amount: f64, force: bool) -> (bool, f64) {
        let mut map = self
            .buckets
            .lock()
            .expect("bucket lock is never poisoned: no panics while held");
        let now = Instant::now();
        let b = map.entry(key.to_string()).or_insert(LocalBucket {
            tokens: capacity,
            last: now,
        });
        b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() * rate).min(capacity);
        b.last = now;
        if force || b.tokens >= amount {
            b.tokens -= amount;
            (true, b.tokens)
        } else {
            (false, b.tokens)
        }
    }

    fn spend(&self, key: &str, change: &Spend) -> (bool, i64, f64) {
        let mut map = self
            .spend
            .lock()
            .expect("spend lock is never poisoned: no panics while held");
        let entry = map.entry(key.to_string()).or_insert((0, 0.0));
        let (tokens, cost) = *entry;
        let over = change.token_cap.is_some_and(|cap| tokens >= cap as i64)
            || change.cost_cap.is_some_and(|cap| cost >= cap);
        if over && !change.force {
            return (false, tokens, cost);
        }
        entry.0 = entry.0.saturating_add(change.tokens);
        entry.1 += change.cost;
        (true, tokens, cost)
    }
}

/// The counter store for limits and budgets.
pub(crate) struct Store {
    prefix: String,
    local: Local,
    shared: Option<Arc<SharedRedis>>,
    take: redis::Script,
    spend: redis::Script,
}

impl Store {
    /// `shared` is the Redis of `limits.backend: redis`, None for local limits.
    pub(crate) fn new(config: &LimitsBackend, shared: Option<Arc<SharedRedis>>) -> Store {
        let prefix = match config {
            LimitsBackend::Local => "modelmux".to_string(),
            LimitsBackend::Redis { prefix, .. } => prefix.clone(),
        };
        Store {
            prefix,
            local: Local::default(),
            shared,
            take: redis::Script::new(TAKE_SCRIPT),
            spend: redis::Script::new(SPEND_SCRIPT),
        }
    }

    pub(crate) fn backend(&self) -> &'static str {
        if self.shared.is_some() {
            "redis"
        } else {
            "local"
        }
    }

    /// Whether the shared store answers (always, for the local one).
    pub(crate) fn is_up(&self) -> bool {
        self.shared.as_ref().is_none_or(|s| s.is_up())
    }

    /// Names every key the store writes, so several gateways or environments can share a Redis.
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Takes `amount` from a token bucket; returns whether it could and what is left.
    pub(crate) async fn take(
        &self,
        key: &str,
        capacity: f64,
        rate: f64,
        amount: f64,
        force: bool,
    ) -> (bool, f64) {
        if let Some(shared) = &self.shared {
            let script = &self.take;
            let result = shared
                .call(|mut conn| async move {
                    script
                        .key(key)
                        .arg(capacity)
                        .arg(rate)
                        .arg(amount)
                        .arg(if force { "1" } else { "0" })
                        .invoke_async::<(i64, String)>(&mut conn)
                        .await
                })
                .await;
            if let Some((allowed, left)) = result {
                return (allowed == 1, left.parse().unwrap_or(0.0));
            }
        }
        self.local.take(key, capacity, rate, amount, force)
    }

    /// Adds to a spend counter unless it is at a cap; returns whether it added and the spend
    /// (tokens, cost) before.
    pub(crate) async fn spend(&self, key: &str, change: Spend) -> (bool, i64, f64) {
        if let Some(shared) = &self.shared {
            let script = &self.spend;
            let change = &change;
            let result = shared
                .call(|mut conn| async move {
                    script
                        .key(key)
                        .arg(change.token_cap.map_or(-1.0, |c| c as f64))
                        .arg(change.cost_cap.unwrap_or(-1.0))
                        .arg(change.tokens)
                        .arg(change.cost)
                        .arg(change.ttl)
                        .arg(if change.force { "1" } else { "0" })
                        .invoke_async::<(i64, String, String)>(&mut conn)
                        .await
                })
                .await;
            if let Some((added, tokens, cost)) = result {
                return (
                    added == 1,
                    tokens.parse().unwrap_or(0),
                    cost.parse().unwrap_or(0.0),
                );
            }
        }
        self.local.spend(key, &change)
    }
}
