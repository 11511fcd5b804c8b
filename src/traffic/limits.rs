//! Rate limits: token buckets for requests and tokens per minute, per client key and per public
//! model. Tokens are reserved from an estimate on the way in and corrected with the vendor's
//! real usage on the way out. Buckets live in the `store`: this process's, or Redis's (an
//! atomic script on Redis's own clock), where every replica shares them.

use std::collections::HashMap;
use std::sync::Arc;

use super::store::Store;
use crate::config::{ClientKey, Limits, PublicModel};
use crate::error::{ErrorKind, GatewayError, GwResult};
use crate::metrics;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Requests,
    Tokens,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Requests => "requests",
            Kind::Tokens => "tokens",
        }
    }
}

/// What one request took from the buckets, to correct once its real usage is known.
#[derive(Debug, Default)]
pub(crate) struct Admission {
    tokens_reserved: f64,
    token_buckets: Vec<(String, f64)>,
    /// `x-ratelimit-*` headers for the response.
    pub(crate) headers: Vec<(&'static str, String)>,
}

pub(crate) struct Limiter {
    store: Arc<Store>,
}

/// The time until a bucket is full again, as OpenAI writes it (`250ms`, `6s`, `1m30s`).
fn reset_text(missing: f64, rate: f64) -> String {
    let secs = (missing.max(0.0) / rate).max(0.0);
    if secs < 1.0 {
        format!("{}ms", (secs * 1000.0).ceil() as u64)
    } else if secs < 60.0 {
        format!("{}s", secs.ceil() as u64)
    } else {
        let s = secs.ceil() as u64;
        format!("{}m{}s", s / 60, s % 60)
    }
}

impl Limiter {
    pub(crate) fn new(store: Arc<Store>) -> Self {
        Limiter { store }
    }

    /// Admits a request or answers 429 with `Retry-After` and the `x-ratelimit-*` headers.
    pub(crate) async fn admit(
        &self,
        key: &ClientKey,
        model: &PublicModel,
        estimated_tokens: u64,
    ) -> GwResult<Admission> {
        let mut admission = Admission::default();
        // The tightest bucket of each kind speaks in the headers.
        let mut tightest: HashMap<Kind, Level> = HashMap::new();
        let mut taken: Vec<Taken> = Vec::new();
        for check in checks(key, model) {
            let bucket = format!(
                "{}:rl:{}:{}:{}",
                self.store.prefix(),
                check.scope,
                check.name,
                check.kind.as_str()
            );
            let capacity = check.limit as f64;
            let rate = capacity / 60.0;
            let amount = match check.kind {
                Kind::Requests => 1.0,
                Kind::Tokens => (estimated_tokens.max(1) as f64).min(capacity),
            };
            let (allowed, left) = self
                .store
                .take(&bucket, capacity, rate, amount, false)
                .await;
            metrics::LIMIT_REMAINING
                .with_label_values(&[check.scope, check.name, check.kind.as_str()])
                .set(left.max(0.0) as i64);
            let level = Level {
                limit: check.limit,
                left,
                rate,
            };
            if !allowed {
                // Give back what this request already took from other buckets.
                for t in &taken {
                    self.store
                        .take(&t.bucket, t.capacity, t.rate, -t.amount, true)
                        .await;
                }
                return Err(rejection(&check, amount, &level));
            }
            if check.kind == Kind::Tokens {
                admission.tokens_reserved = amount;
                admission.token_buckets.push((bucket.clone(), rate));
            }
            taken.push(Taken {
                bucket,
                capacity,
                rate,
                amount,
            });
            let entry = tightest.entry(check.kind).or_insert(level);
            if level.share_left() < entry.share_left() {
                *entry = level;
            }
        }
        for (kind, level) in tightest {
            admission.headers.extend(level.headers(kind));
        }
        Ok(admission)
    }

    /// Replaces the token estimate with what the vendor reported.
    pub(crate) async fn settle(&self, admission: &Admission, actual_tokens: Option<u64>) {
        let Some(actual) = actual_tokens else { return };
        let delta = actual as f64 - admission.tokens_reserved;
        if delta.abs() < 0.5 {
            return;
        }
        for (bucket, rate) in &admission.token_buckets {
            let capacity = rate * 60.0;
            self.store.take(bucket, capacity, *rate, delta, true).await;
        }
    }
}

/// One limit a request is checked against.
struct Check<'a> {
    /// `key` or `model`.
    scope: &'static str,
    name: &'a str,
    kind: Kind,
    limit: u64,
}

/// Whether a rate limit applies to this key and model: if none, `admit` has nothing to do.
/// Read from the limits themselves, not by making `checks`' list (which `admit` then makes).
pub(crate) fn any_for(key: &ClientKey, model: &PublicModel) -> bool {
    let set = |l: &Limits| l.rpm.is_some() || l.tpm.is_some();
    set(&key.limits) || set(&model.limits) || key.team.as_deref().is_some_and(|t| set(&t.limits))
}

fn checks<'a>(key: &'a ClientKey, model: &'a PublicModel) -> Vec<Check<'a>> {
    let mut checks = Vec::new();
    let team = key
        .team
        .as_deref()
        .map(|t| ("team", t.name.as_str(), &t.limits));
    for (scope, name, limits) in [
        ("key", key.name.as_str(), &key.limits),
        ("model", model.name.as_str(), &model.limits),
    ]
    .into_iter()
    .chain(team)
    {
        for (kind, limit) in [(Kind::Requests, limits.rpm), (Kind::Tokens, limits.tpm)] {
            if let Some(limit) = limit {
                checks.push(Check {
                    scope,
                    name,
                    kind,
                    limit,
                });
            }
        }
    }
    checks
}

/// What one bucket gave a request, to give back if a later bucket refuses it.
struct Taken {
    bucket: String,
    capacity: f64,
    rate: f64,
    amount: f64,
}

/// A bucket's fill after a take.
#[derive(Clone, Copy)]
struct Level {
    limit: u64,
    left: f64,
    /// Refill per second.
    rate: f64,
}

impl Level {
    fn share_left(&self) -> f64 {
        self.left / self.limit as f64
    }

    fn headers(&self, kind: Kind) -> [(&'static str, String); 3] {
        [
            (limit_header(kind), self.limit.to_string()),
            (
                remaining_header(kind),
                (self.left.max(0.0) as u64).to_string(),
            ),
            (
                reset_header(kind),
                reset_text(self.limit as f64 - self.left, self.rate),
            ),
        ]
    }
}

/// The 429 for a bucket that could not give `amount`.
fn rejection(check: &Check, amount: f64, level: &Level) -> GatewayError {
    let wait = ((amount - level.left) / level.rate).max(0.001);
    let reason = format!("{}_{}", check.scope, check.kind.as_str());
    metrics::REJECTIONS.with_label_values(&[&reason]).inc();
    let mut e = GatewayError::new(
        ErrorKind::RateLimited,
        format!(
            "Rate limit reached for {} on {} {}: limit {} per minute. Please try again in {}.",
            check.kind.as_str(),
            check.scope,
            check.name,
            check.limit,
            reset_text(amount - level.left, level.rate)
        ),
    )
    .with_code("rate_limit_exceeded")
    .with_retry_after(Some(wait.ceil() as u64));
    e.headers = level.headers(check.kind).to_vec();
    e
}

fn limit_header(kind: Kind) -> &'static str {
    match kind {
        Kind::Requests => "x-ratelimit-limit-requests",
        Kind::Tokens => "x-ratelimit-limit-tokens",
    }
}

fn remaining_header(kind: Kind) -> &'static str {
    match kind {
        Kind::Requests => "x-ratelimit-remaining-requests",
        Kind::Tokens => "x-ratelimit-remaining-tokens",
    }
}

fn reset_header(kind: Kind) -> &'static str {
    match kind {
        Kind::Requests => "x-ratelimit-reset-requests",
        Kind::Tokens => "x-ratelimit-reset-tokens",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;

    const CONF: &str = r#"
providers: [{name: p, kind: openai_compatible, base_url: "http://127.0.0.1:1"}]
models:
  m: {targets: [{provider: p, model: x}], limits: {tpm: 1000}}
keys: [{name: k, key: sk-12345678, limits: {rpm: 3}}]
"#;

    /// A limit of the key, the model or the key's team applies; `admit` is skipped only with
    /// none, exactly when it would have no check to make.
    #[test]
    fn a_limit_applies_from_the_key_the_model_or_the_team() {
        let yaml = r#"
providers: [{name: p, kind: openai_compatible, base_url: "http://127.0.0.1:1"}]
models:
  limited: {targets: [{provider: p, model: x}], limits: {tpm: 1000}}
  free: {targets: [{provider: p, model: x}]}
teams: {web: {limits: {rpm: 5}}, open: {budget: {tokens: 10, period: day}}}
keys:
  - {name: own, key: sk-own-key-1234, limits: {rpm: 3}}
  - {name: team, key: sk-team-key-1234, team: web}
  - {name: none, key: sk-none-key-1234, team: open}
"#;
        let conf = load_str(yaml, &|_| None).unwrap();
        let mut applies = Vec::new();
        for model in ["limited", "free"] {
            let model = conf.model(model).unwrap();
            for key in &conf.keys {
                assert_eq!(any_for(key, model), !checks(key, model).is_empty());
                applies.push(any_for(key, model));
            }
        }
        assert_eq!(applies, [true, true, true, true, true, false]);
    }

    #[tokio::test]
    async fn a_burst_gets_exactly_the_limit_then_429_with_headers() {
        let conf = load_str(CONF, &|_| None).unwrap();
        let limiter = Limiter::new(Arc::new(Store::new(
            &crate::config::LimitsBackend::Local,
            None,
        )));
        let (key, model) = (&conf.keys[0], conf.model("m").unwrap());
        for i in 0..3 {
            let a = limiter.admit(key, model, 10).await.unwrap();
            let remaining = a
                .headers
                .iter()
                .find(|(h, _)| *h == "x-ratelimit-remaining-requests")
                .unwrap();
            assert_eq!(remaining.1, (2 - i).to_string());
        }
        let e = limiter.admit(key, model, 10).await.unwrap_err();
        assert_eq!(e.status(), 429);
        assert_eq!(e.retry_after_secs, Some(20));
        assert!(e
            .headers
            .iter()
            .any(|(h, v)| *h == "x-ratelimit-remaining-requests" && v == "0"));
    }

    #[tokio::test]
    async fn real_usage_corrects_the_token_estimate() {
        let conf = load_str(CONF, &|_| None).unwrap();
        let limiter = Limiter::new(Arc::new(Store::new(
            &crate::config::LimitsBackend::Local,
            None,
        )));
        let (key, model) = (&conf.keys[0], conf.model("m").unwrap());
        let a = limiter.admit(key, model, 100).await.unwrap();
        limiter.settle(&a, Some(950)).await;
        let e = limiter.admit(key, model, 100).await.unwrap_err();
        assert!(e.message.contains("tokens"), "{}", e.message);
    }

    #[test]
    fn reset_is_written_like_openai() {
        assert_eq!(reset_text(1.0, 4.0), "250ms");
        assert_eq!(reset_text(10.0, 1.0), "10s");
        assert_eq!(reset_text(90.0, 1.0), "1m30s");
    }
}
