//! Budgets per client key: tokens and cost spent per period (day, month, or ever), counted for
//! every endpoint and for streams, refused past the cap with OpenAI's `insufficient_quota`.

use std::sync::Arc;

use super::store::{Spend, Store};
use crate::config::{Budget, ClientKey, Period, Price, Team};
use crate::error::{ErrorKind, GatewayError, GwResult};
use crate::metrics;
use crate::providers::Usage;

pub(crate) struct Budgets {
    store: Arc<Store>,
}

/// What admission put on a key's spend before the request ran: settled with what it really
/// used (or what the client received) once it is over.
#[derive(Debug)]
pub(crate) struct Reservation {
    /// Each budget's counter (the key's, its team's) and how long it is kept.
    slots: Vec<(String, u64)>,
    tokens: u64,
    cost: f64,
}

/// The civil (year, month) of a day count since 1970-01-01.
fn year_month(days: i64) -> (i64, u32) {
    let (year, month, _) = crate::clock::civil(days);
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
    price.map_or(0.0, |p| p.cost(usage))
}

impl Budgets {
    pub(crate) fn new(store: Arc<Store>) -> Self {
        Budgets { store }
    }

    /// Where a holder's (a key's, or `team:<name>`) spend for the current period is counted.
    fn slot(&self, holder: &str, budget: &Budget) -> String {
        format!(
            "{}:budget:{}:{}",
            self.store.prefix(),
            holder,
            period_id(budget.period, crate::clock::unix_secs())
        )
    }

    /// Admits a request under the key's budget and its team's, putting `estimate` on each
    /// period's spend at once (atomically, in Redis too), so concurrent requests cannot
    /// overshoot a budget by more than one request's reservation. Refuses a key whose budget,
    /// or whose team's, is spent.
    pub(crate) async fn reserve(
        &self,
        key: &ClientKey,
        estimate: &Usage,
        price: Option<&Price>,
    ) -> GwResult<Option<Reservation>> {
        let cost = cost_of(estimate, price);
        let mut reservation = Reservation {
            slots: Vec::new(),
            tokens: estimate.total_tokens,
            cost,
        };
        for (holder, budget, whose) in budgets_of(key) {
            let slot = self.slot(&holder, budget);
            let ttl = ttl(budget.period);
            let change = Spend {
                tokens: estimate.total_tokens.min(i64::MAX as u64) as i64,
                cost,
                token_cap: budget.tokens,
                cost_cap: budget.cost,
                ttl,
                force: false,
            };
            let (added, tokens_before, cost_before) = self.store.spend(&slot, change).await;
            // How much of the budget the period has used, this reservation included (alerts).
            let used = [
                budget.tokens.map(|cap| {
                    (tokens_before as f64 + estimate.total_tokens as f64) / cap.max(1) as f64
                }),
                budget
                    .cost
                    .map(|cap| (cost_before + cost) / cap.max(f64::MIN_POSITIVE)),
            ];
            let ratio = used.into_iter().flatten().fold(0.0, f64::max);
            metrics::BUDGET_USED
                .with_label_values(&[&holder])
                .set(ratio.min(1.0));
            if !added {
                // Give back what the budgets before this one took.
                self.settle(&reservation, &Usage::default(), price).await;
                metrics::REJECTIONS.with_label_values(&["budget"]).inc();
                return Err(GatewayError::new(
                    ErrorKind::RateLimited,
                    format!(
                        "You exceeded your current quota: {whose} budget for the period is spent."
                    ),
                )
                .with_code("insufficient_quota"));
            }
            reservation.slots.push((slot, ttl));
        }
        Ok((!reservation.slots.is_empty()).then_some(reservation))
    }

    /// What a holder has spent in its budget's current period (tokens, cost), reservations
    /// included.
    async fn spent_by(&self, holder: &str, budget: &Budget) -> (i64, f64) {
        let nothing = Spend {
            tokens: 0,
            cost: 0.0,
            token_cap: None,
            cost_cap: None,
            ttl: ttl(budget.period),
            force: true,
        };
        let (_, tokens, cost) = self.store.spend(&self.slot(holder, budget), nothing).await;
        (tokens, cost)
    }

    /// What the key has spent in its budget's current period; none for a key without one.
    pub(crate) async fn spent(&self, key: &ClientKey) -> Vec<(i64, f64)> {
        let mut out = Vec::new();
        for budget in &key.budgets {
            out.push(self.spent_by(&key.name, budget).await);
        }
        out
    }

    /// What the team has spent in its budget's current period; none without one.
    pub(crate) async fn team_spent(&self, team: &Team) -> Option<(i64, f64)> {
        let budget = team.budget.as_ref()?;
        Some(self.spent_by(&format!("team:{}", team.name), budget).await)
    }

    /// Replaces a reservation with what the request used, in every budget it was put on.
    pub(crate) async fn settle(&self, r: &Reservation, used: &Usage, price: Option<&Price>) {
        let tokens = used.total_tokens as i128 - r.tokens as i128;
        for (slot, ttl) in &r.slots {
            let change = Spend {
                tokens: tokens.clamp(i64::MIN as i128, i64::MAX as i128) as i64,
                cost: cost_of(used, price) - r.cost,
                token_cap: None,
                cost_cap: None,
                ttl: *ttl,
                force: true,
            };
            if change.tokens != 0 || change.cost != 0.0 {
                self.store.spend(slot, change).await;
            }
        }
    }
}

/// Whether a budget holds this key, its own or its team's: if none, `reserve` has nothing to
/// do. Read from the key itself: no holder's name is made to ask.
pub(crate) fn any_for(key: &ClientKey) -> bool {
    !key.budgets.is_empty() || key.team.as_deref().is_some_and(|t| t.budget.is_some())
}

/// The budgets a key's requests count against: its own, then its team's; each with the name
/// its spend is kept under and how the refusal names it.
fn budgets_of(key: &ClientKey) -> impl Iterator<Item = (String, &Budget, &'static str)> {
    let own = key
        .budgets
        .iter()
        .map(|b| (key.name.clone(), b, "this key's"));
    let team = key.team.as_deref().and_then(|t| {
        let b = t.budget.as_ref()?;
        Some((format!("team:{}", t.name), b, "this key's team's"))
    });
    own.chain(team)
}

/// How long a period's counter is kept after its last change.
fn ttl(period: Period) -> u64 {
    match period {
        Period::Day => 2 * 86_400,
        Period::Month => 32 * 86_400,
        Period::Total => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key is held by its own budget or its team's, and `reserve` is skipped only with neither.
    #[test]
    fn a_key_is_held_by_its_own_budget_or_its_teams() {
        let yaml = r#"
providers: [{name: o, kind: openai, base_url: "https://o.example", api_key: sk-vendor}]
models: {m: {targets: [{provider: o, model: gpt}]}}
teams:
  web: {budget: {tokens: 40, period: day}}
  free: {limits: {rpm: 5}}
keys:
  - {name: own, key: sk-own-key-1234, budget: {tokens: 10, period: day}}
  - {name: team, key: sk-team-key-1234, team: web}
  - {name: none, key: sk-none-key-1234, team: free}
"#;
        let config = crate::config::load_str(yaml, &|_| None).unwrap();
        let held: Vec<(&str, bool)> = config
            .keys
            .iter()
            .map(|k| (k.name.as_str(), any_for(k)))
            .collect();
        assert_eq!(held, [("own", true), ("team", true), ("none", false)]);
        for key in &config.keys {
            assert_eq!(any_for(key), budgets_of(key).count() > 0, "{}", key.name);
        }
    }

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
        let u = Usage::new(1_000_000, 500_000);
        let p = Price {
            base: crate::config::Rates {
                prompt: 2.5,
                cached_prompt: 2.5,
                cache_write: 2.5,
                completion: 10.0,
            },
            rate: 1.0,
            ..Price::default()
        };
        assert!((cost_of(&u, Some(&p)) - 7.5).abs() < 1e-9);
    }
}
