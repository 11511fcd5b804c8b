//! Budgets per client key: tokens and cost spent per period (day, month, or ever), counted for
//! every endpoint and for streams, refused past the cap with OpenAI's `insufficient_quota`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::config::{Budget, ClientKey, Period, Price};
use crate::error::{ErrorKind, GatewayError, GwResult};
use crate::metrics;
use crate::providers::Usage;
use crate::traffic::limits::Backend;

pub(crate) struct Budgets {
    backend: Arc<Backend>,
    /// (key name, period) -> (tokens, cost), when the backend is local.
    local: Mutex<HashMap<String, (u64, f64)>>,
}

/// The civil (year, month) of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn year_month(days: i64) -> (i64, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month)
}

fn period_id(period: Period, unix_secs: u64) -> String {
    let days = (unix_secs / 86_400) as i64;
    match period {
        Period::Day => format!("d{days}"),
        Period::Month => {
            let (y, m) = year_month(days);
            format!("m{y}-{m:02}")
        }
        Period::Total => "total".into(),
    }
}

pub(crate) fn cost_of(usage: &Usage, price: Option<&Price>) -> f64 {
    price.map_or(0.0, |p| {
        (usage.prompt_tokens as f64 * p.prompt + usage.completion_tokens as f64 * p.completion)
            / 1_000_000.0
    })
}

impl Budgets {
    pub(crate) fn new(backend: Arc<Backend>) -> Self {
        Budgets {
            backend,
            local: Mutex::new(HashMap::new()),
        }
    }

    fn slot(&self, key: &ClientKey, budget: &Budget) -> String {
        format!(
            "{}:budget:{}:{}",
            self.backend.prefix(),
            key.name,
            period_id(budget.period, crate::clock::unix_secs())
        )
    }

    async fn spent(&self, slot: &str) -> (u64, f64) {
        match self.backend.redis().await {
            None => self
                .local
                .lock()
                .expect("budget lock is never poisoned")
                .get(slot)
                .copied()
                .unwrap_or((0, 0.0)),
            Some(Ok(mut conn)) => {
                let r: redis::RedisResult<(Option<u64>, Option<f64>)> = redis::cmd("HMGET")
                    .arg(slot)
                    .arg("tokens")
                    .arg("cost")
                    .query_async(&mut conn)
                    .await;
                r.map(|(t, c)| (t.unwrap_or(0), c.unwrap_or(0.0)))
                    .unwrap_or((0, 0.0))
            }
            Some(Err(_)) => (0, 0.0),
        }
    }

    /// Refuses a key whose budget for the current period is spent.
    pub(crate) async fn check(&self, key: &ClientKey) -> GwResult<()> {
        let Some(budget) = &key.budget else {
            return Ok(());
        };
        let (tokens, cost) = self.spent(&self.slot(key, budget)).await;
        let over_tokens = budget.tokens.is_some_and(|cap| tokens >= cap);
        let over_cost = budget.cost.is_some_and(|cap| cost >= cap);
        if over_tokens || over_cost {
            metrics::REJECTIONS.with_label_values(&["budget"]).inc();
            return Err(GatewayError::new(
                ErrorKind::RateLimited,
                "You exceeded your current quota: this key's budget for the period is spent.",
            )
            .with_code("insufficient_quota"));
        }
        Ok(())
    }

    /// Adds what a request used to the key's spend.
    pub(crate) async fn record(&self, key: &ClientKey, usage: &Usage, price: Option<&Price>) {
        let Some(budget) = &key.budget else { return };
        let slot = self.slot(key, budget);
        let cost = cost_of(usage, price);
        match self.backend.redis().await {
            None => {
                let mut map = self.local.lock().expect("budget lock is never poisoned");
                let e = map.entry(slot).or_insert((0, 0.0));
                e.0 += usage.total_tokens;
                e.1 += cost;
            }
            Some(Ok(mut conn)) => {
                let ttl = match budget.period {
                    Period::Day => 2 * 86_400,
                    Period::Month => 32 * 86_400,
                    Period::Total => 0,
                };
                let mut pipe = redis::pipe();
                pipe.atomic()
                    .cmd("HINCRBY")
                    .arg(&slot)
                    .arg("tokens")
                    .arg(usage.total_tokens)
                    .ignore()
                    .cmd("HINCRBYFLOAT")
                    .arg(&slot)
                    .arg("cost")
                    .arg(cost)
                    .ignore();
                if ttl > 0 {
                    pipe.cmd("EXPIRE").arg(&slot).arg(ttl).ignore();
                }
                if let Err(e) = pipe.query_async::<()>(&mut conn).await {
                    log::warn!("recording spend for key {} failed: {e}", key.name);
                }
            }
            Some(Err(e)) => log::warn!("recording spend for key {} failed: {e}", key.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_are_calendar_days_and_months() {
        assert_eq!(year_month(0), (1970, 1));
        assert_eq!(year_month(20_416), (2025, 11)); // 2025-11-24
        assert_eq!(period_id(Period::Month, 1_795_520_497), "m2026-11");
        assert_eq!(period_id(Period::Day, 86_400 * 3 + 5), "d3");
        assert_eq!(period_id(Period::Total, 5), "total");
    }

    #[test]
    fn cost_uses_prices_per_million_tokens() {
        let u = Usage {
            prompt_tokens: 1_000_000,
            completion_tokens: 500_000,
            total_tokens: 1_500_000,
        };
        let p = Price {
            prompt: 2.5,
            completion: 10.0,
        };
        assert!((cost_of(&u, Some(&p)) - 7.5).abs() < 1e-9);
    }
}
