//! Prices: what a model's tokens cost, as its vendor bills them. Per million tokens: input,
//! input read from the vendor's prompt cache, input written to it, output (reasoning is billed
//! as output); tiers by prompt length where the vendor has them (DashScope's Qwen); each
//! model in its own currency, turned into the one reporting currency (`pricing:`) by a
//! configured rate when the config loads. Budgets in cost and the log store use the same price.

use std::collections::HashMap;

use serde::Deserialize;

use super::problems::{Problem, Report};
use crate::providers::Usage;

/// `models.*.price` as written.
#[derive(Deserialize, Debug, Clone, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPrice {
    #[serde(default)]
    prompt: f64,
    #[serde(default)]
    completion: f64,
    /// Per image made, by size (`"1024x1024"`), `"*"` for any other.
    #[serde(default)]
    per_image: HashMap<String, f64>,
    cached_prompt: Option<f64>,
    cache_write: Option<f64>,
    currency: Option<String>,
    #[serde(default)]
    tiers: Vec<RawTier>,
}

#[derive(Deserialize, Debug, Clone, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawTier {
    /// The longest prompt (tokens) the tier is for; none for the last.
    up_to: Option<u64>,
    prompt: f64,
    completion: f64,
    cached_prompt: Option<f64>,
}

/// `pricing:`: the currency costs are reported in, and what one unit of each other currency
/// is worth in it.
#[derive(Deserialize, Debug, Clone, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPricing {
    currency: Option<String>,
    #[serde(default)]
    rates: HashMap<String, f64>,
}

/// Rates per million tokens, in the reporting currency.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rates {
    pub prompt: f64,
    pub cached_prompt: f64,
    pub cache_write: f64,
    pub completion: f64,
}

/// A model's price, in the reporting currency.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Price {
    pub base: Rates,
    /// By prompt length: the first whose bound holds the prompt; past the last bound, the last.
    pub tiers: Vec<(Option<u64>, Rates)>,
    /// Per image, by size in pixels (0: any other size), in the reporting currency.
    pub per_image: Vec<(u64, f64)>,
    /// The currency the price was written in (for showing it), and its rate.
    pub currency: String,
    pub rate: f64,
}

/// `"1024x1024"` as pixels.
pub fn pixels(size: &str) -> Option<u64> {
    let (w, h) = size.split_once(['x', 'X', '*'])?;
    Some(w.trim().parse::<u64>().ok()? * h.trim().parse::<u64>().ok()?)
}

impl Price {
    /// The rates a request with this many prompt tokens is billed at.
    fn rates(&self, prompt_tokens: u64) -> &Rates {
        self.tiers
            .iter()
            .find(|(up_to, _)| up_to.is_none_or(|n| prompt_tokens <= n))
            .or(self.tiers.last())
            .map_or(&self.base, |(_, r)| r)
    }

    /// What the usage cost, in the reporting currency. Cached and cache-written tokens are
    /// part of `prompt_tokens` (OpenAI's terms), billed at their own rates.
    pub fn cost(&self, u: &Usage) -> f64 {
        let r = self.rates(u.prompt_tokens);
        let plain = u
            .prompt_tokens
            .saturating_sub(u.cached_tokens)
            .saturating_sub(u.cache_write_tokens);
        (plain as f64 * r.prompt
            + u.cached_tokens as f64 * r.cached_prompt
            + u.cache_write_tokens as f64 * r.cache_write
            + u.completion_tokens as f64 * r.completion)
            / 1_000_000.0
            + self.image_price(u.image_pixels) * u.images as f64
    }

    /// One image's price at a size: that size's, or the one for any other.
    fn image_price(&self, pixels: u64) -> f64 {
        let of = |px: u64| {
            self.per_image
                .iter()
                .find(|(p, _)| *p == px)
                .map(|(_, v)| *v)
        };
        of(pixels).or_else(|| of(0)).unwrap_or(0.0)
    }
}

/// The reporting currency and the rates into it.
pub(super) struct Pricing {
    currency: String,
    rates: HashMap<String, f64>,
}

pub(super) fn load_pricing(raw: RawPricing, problems: &mut Vec<Problem>) -> Pricing {
    let currency = raw.currency.unwrap_or_else(|| "USD".into());
    for (name, rate) in &raw.rates {
        if !(rate.is_finite() && *rate > 0.0) {
            problems.at(format!("pricing.rates.{name}"), "must be above zero");
        }
    }
    Pricing {
        currency,
        rates: raw.rates,
    }
}

pub(super) fn load_price(
    raw: RawPrice,
    path: &str,
    pricing: &Pricing,
    problems: &mut Vec<Problem>,
) -> Price {
    let currency = raw.currency.unwrap_or_else(|| pricing.currency.clone());
    let rate = match pricing.rates.get(&currency) {
        _ if currency == pricing.currency => 1.0,
        Some(r) => *r,
        None => {
            problems.at(
                format!("{path}.currency"),
                format!(
                    "no rate from {currency} to {}: add pricing.rates.{currency}",
                    pricing.currency
                ),
            );
            1.0
        }
    };
    for (field, v) in [("prompt", raw.prompt), ("completion", raw.completion)] {
        if !(v.is_finite() && v >= 0.0) {
            problems.at(format!("{path}.{field}"), "must be zero or more");
        }
    }
    let rates = |prompt: f64, completion: f64, cached: Option<f64>| Rates {
        prompt: prompt * rate,
        cached_prompt: cached.unwrap_or(prompt) * rate,
        cache_write: raw.cache_write.unwrap_or(prompt) * rate,
        completion: completion * rate,
    };
    let mut last = 0;
    for (i, t) in raw.tiers.iter().enumerate() {
        match t.up_to {
            Some(n) if n <= last && i > 0 => problems.at(
                format!("{path}.tiers[{i}].up_to"),
                "must be above the tier before",
            ),
            Some(n) => last = n,
            None if i + 1 < raw.tiers.len() => problems.at(
                format!("{path}.tiers[{i}].up_to"),
                "only the last tier may leave it out",
            ),
            None => {}
        }
    }
    let mut per_image = Vec::new();
    for (size, v) in &raw.per_image {
        match (size.as_str(), pixels(size)) {
            ("*", _) => per_image.push((0, v * rate)),
            (_, Some(px)) => per_image.push((px, v * rate)),
            (_, None) => problems.at(
                format!("{path}.per_image.{size}"),
                "a size is WIDTHxHEIGHT (1024x1024), or * for any other",
            ),
        }
    }
    Price {
        per_image,
        base: rates(raw.prompt, raw.completion, raw.cached_prompt),
        tiers: raw
            .tiers
            .iter()
            .map(|t| {
                (
                    t.up_to,
                    rates(
                        t.prompt,
                        t.completion,
                        t.cached_prompt.or(raw.cached_prompt),
                    ),
                )
            })
            .collect(),
        currency,
        rate,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn price(yaml: &str, pricing: &str) -> (Price, Vec<Problem>) {
        let mut problems = Vec::new();
        let pricing = load_pricing(serde_yaml_ng::from_str(pricing).unwrap(), &mut problems);
        let raw: RawPrice = serde_yaml_ng::from_str(yaml).unwrap();
        (
            load_price(raw, "models.m.price", &pricing, &mut problems),
            problems,
        )
    }

    #[test]
    fn cached_and_cache_written_tokens_have_their_own_rates() {
        let (p, _) = price(
            "{prompt: 3, completion: 15, cached_prompt: 0.3, cache_write: 3.75}",
            "{}",
        );
        // 1M prompt tokens of which 200k read from the cache and 100k written to it.
        let u = Usage::new(1_000_000, 100_000)
            .with_details(200_000, 0)
            .with_cache_write(100_000);
        let want = 0.7 * 3.0 + 0.2 * 0.3 + 0.1 * 3.75 + 0.1 * 15.0;
        assert!((p.cost(&u) - want).abs() < 1e-9, "{}", p.cost(&u));
    }

    #[test]
    fn tiers_by_prompt_length_in_another_currency() {
        let (p, problems) = price(
            "{prompt: 0.8, completion: 2, currency: CNY, tiers: [{up_to: 32000, prompt: 0.8, completion: 2}, {up_to: 128000, prompt: 2.4, completion: 20}, {prompt: 6, completion: 60}]}",
            "{currency: USD, rates: {CNY: 0.14}}",
        );
        assert!(problems.is_empty(), "{problems:?}");
        let cost = |prompt| p.cost(&Usage::new(prompt, 1_000_000));
        assert!((cost(1_000) - (0.001 * 0.8 + 2.0) * 0.14).abs() < 1e-9);
        assert!((cost(100_000) - (0.1 * 2.4 + 20.0) * 0.14).abs() < 1e-9);
        assert!((cost(500_000) - (0.5 * 6.0 + 60.0) * 0.14).abs() < 1e-9);
    }

    #[test]
    fn images_are_priced_by_size() {
        let (p, problems) = price("{per_image: {\"1024x1024\": 0.04, \"*\": 0.02}}", "{}");
        assert!(problems.is_empty(), "{problems:?}");
        let made = |n, px| Usage {
            images: n,
            image_pixels: px,
            ..Usage::default()
        };
        assert!((p.cost(&made(3, 1024 * 1024)) - 0.12).abs() < 1e-9);
        assert!((p.cost(&made(2, 512 * 512)) - 0.04).abs() < 1e-9);
    }

    #[test]
    fn an_unknown_currency_and_tiers_out_of_order_are_problems() {
        let (_, problems) = price(
            "{prompt: 1, completion: 1, currency: EUR, tiers: [{up_to: 10, prompt: 1, completion: 1}, {up_to: 5, prompt: 1, completion: 1}]}",
            "{}",
        );
        let text: Vec<String> = problems
            .iter()
            .map(|p| format!("{}: {}", p.path, p.message))
            .collect();
        assert!(
            text.iter()
                .any(|t| t.contains("models.m.price.currency: no rate from EUR to USD")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|t| t.contains("tiers[1].up_to: must be above")),
            "{text:?}"
        );
    }
}
