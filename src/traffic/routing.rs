//! Which target serves a request: the best priority first, weighted among equals. With a
//! session (the `x-session-id` header or the request's `user`), the pick is sticky: weighted
//! rendezvous hashing gives every session the same target while the targets stay the same,
//! splits sessions by the weights, and moves only the sessions of a target that goes away.

use sha2::{Digest, Sha256};

use crate::config::{PublicModel, Target};

/// The order in which targets should be tried: priority groups in ascending order, each group
/// ordered by weight (weighted sampling without replacement, or for a session its rendezvous
/// scores), so the first entry is the pick and the rest are the failover order.
pub(crate) fn attempt_order<'m>(model: &'m PublicModel, session: Option<&str>) -> Vec<&'m Target> {
    if let [only] = &model.targets[..] {
        return vec![only];
    }
    match session {
        Some(session) => sticky_order(model, session),
        None => attempt_order_with(model, &mut || fastrand::f64()),
    }
}

/// A number in (0, 1) from the session and the target, the same in every replica.
fn uniform(session: &str, t: &Target) -> f64 {
    let mut h = Sha256::new();
    for part in [session, &t.provider.name, &t.model] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    let bytes: [u8; 8] = h.finalize()[..8].try_into().expect("8 bytes");
    (u64::from_be_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64 + f64::EPSILON
}

/// Weighted rendezvous hashing: each target scores `weight / -ln(u)`; the best score wins.
fn sticky_order<'m>(model: &'m PublicModel, session: &str) -> Vec<&'m Target> {
    let mut scored: Vec<(u32, f64, &Target)> = model
        .targets
        .iter()
        .map(|t| {
            (
                t.priority,
                f64::from(t.weight) / -uniform(session, t).ln(),
                t,
            )
        })
        .collect();
    scored.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)));
    scored.into_iter().map(|(_, _, t)| t).collect()
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

    #[test]
    fn a_session_keeps_its_target_and_sessions_split_by_weight() {
        let conf = load_str(CONF, &|_| None).unwrap();
        let model = conf.model("m").unwrap();
        let mut first_a = 0;
        for i in 0..2000 {
            let session = format!("session-{i}");
            let order = attempt_order(model, Some(&session));
            for _ in 0..3 {
                let again = attempt_order(model, Some(&session));
                assert!(std::ptr::eq(again[0], order[0]), "sticky");
            }
            assert_eq!(order[2].provider.name, "c", "priorities still come first");
            if order[0].provider.name == "a" {
                first_a += 1;
            }
        }
        assert!((1400..1600).contains(&first_a), "{first_a}");
    }
}
