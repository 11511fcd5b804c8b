//! Which target serves a request: the best priority first, weighted among equals.

use crate::config::{PublicModel, Target};

/// The order in which targets should be tried: priority groups in ascending order, each group
/// shuffled by weight (weighted sampling without replacement), so the first entry is the pick
/// and the rest are the failover order.
pub(crate) fn attempt_order(model: &PublicModel) -> Vec<&Target> {
    attempt_order_with(model, &mut || fastrand::f64())
}

pub(crate) fn attempt_order_with<'m>(
    model: &'m PublicModel,
    rand: &mut dyn FnMut() -> f64,
) -> Vec<&'m Target> {
    let mut targets: Vec<&Target> = model.targets.iter().collect();
    targets.sort_by_key(|t| t.priority);
    let mut out = Vec::with_capacity(targets.len());
    let mut start = 0;
    while start < targets.len() {
        let prio = targets[start].priority;
        let end = targets[start..]
            .iter()
            .position(|t| t.priority != prio)
            .map_or(targets.len(), |p| start + p);
        let mut group: Vec<&Target> = targets[start..end].to_vec();
        while !group.is_empty() {
            let total: u64 = group.iter().map(|t| u64::from(t.weight)).sum();
            let mut point = (rand() * total as f64) as u64;
            let mut pick = group.len() - 1;
            for (i, t) in group.iter().enumerate() {
                if point < u64::from(t.weight) {
                    pick = i;
                    break;
                }
                point -= u64::from(t.weight);
            }
            out.push(group.remove(pick));
        }
        start = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;

    const CONF: &str = r#"
providers:
  - {name: a, kind: openai_compatible, base_url: "http://127.0.0.1:1"}
  - {name: b, kind: openai_compatible, base_url: "http://127.0.0.1:2"}
  - {name: c, kind: openai_compatible, base_url: "http://127.0.0.1:3"}
models:
  m:
    targets:
      - {provider: c, model: x, priority: 1}
      - {provider: a, model: x, weight: 3}
      - {provider: b, model: x, weight: 1}
keys: [{name: k, key: sk-12345678}]
"#;

    #[test]
    fn weights_decide_among_the_best_priority_and_fallbacks_follow() {
        let conf = load_str(CONF, &|_| None).unwrap();
        let model = conf.model("m").unwrap();
        let mut first_a = 0;
        let mut seed = 0u64;
        for _ in 0..4000 {
            let order = attempt_order_with(model, &mut || {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (seed >> 11) as f64 / (1u64 << 53) as f64
            });
            let names: Vec<&str> = order.iter().map(|t| t.provider.name.as_str()).collect();
            assert_eq!(names.len(), 3);
            assert_eq!(names[2], "c", "the lower priority comes last");
            if names[0] == "a" {
                first_a += 1;
            }
        }
        // Weight 3:1 means about 75% first picks for `a`.
        assert!((2700..3300).contains(&first_a), "{first_a}");
    }
}
