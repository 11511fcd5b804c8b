//! Retry and failover policy: which target comes next, how long to wait before it, and which
//! failures count against a target.

use std::time::Duration;

use crate::config::RetryPolicy;
use crate::error::{ErrorKind, GatewayError};
use crate::traffic::breaker::Health;

/// The targets of one request, in configured order, and how often each was tried.
pub(crate) struct Plan {
    tried: Vec<u32>,
    last: Option<usize>,
}

impl Plan {
    pub(crate) fn new(targets: usize) -> Self {
        Plan {
            tried: vec![0; targets],
            last: None,
        }
    }

    /// The next target: the least-tried healthy one, earliest in the configured order first,
    /// and never the one just tried while another healthy target remains. None when no target
    /// is healthy.
    pub(crate) fn next(&self, healthy: &[bool]) -> Option<usize> {
        let candidates: Vec<usize> = (0..self.tried.len()).filter(|&i| healthy[i]).collect();
        candidates
            .iter()
            .copied()
            .filter(|&i| candidates.len() == 1 || Some(i) != self.last)
            .min_by_key(|&i| (self.tried[i], i))
    }

    pub(crate) fn mark(&mut self, index: usize) {
        self.tried[index] += 1;
        self.last = Some(index);
    }

    pub(crate) fn previous(&self) -> Option<usize> {
        self.last
    }

    /// How often the target was tried for this request so far.
    pub(crate) fn tries(&self, index: usize) -> u32 {
        self.tried[index]
    }
}

/// Panic mode: when no target is ready, the cooling one whose cooldown ends first, so a model
/// always has a target while any is merely cooling. None when every target is saturated.
pub(crate) fn soonest_cooled(health: &[Health]) -> Option<usize> {
    health
        .iter()
        .enumerate()
        .filter_map(|(i, h)| match h {
            Health::Cooling(left) => Some((*left, i)),
            Health::Ready | Health::Saturated => None,
        })
        .min()
        .map(|(_, i)| i)
}

/// Failures that say something about the target (and so feed its breaker and allow another
/// attempt): it could not be reached, was slow, broke, was overloaded or rate-limited us.
/// A client's bad request is the client's, and is answered as it is.
pub(crate) fn counts_against_target(e: &GatewayError) -> bool {
    e.kind.is_upstream() || e.kind == ErrorKind::RateLimited
}

/// How long to wait before attempt number `attempt` (1-based for retries): exponential with
/// full jitter in its upper half, and at least the vendor's `Retry-After` when it is the same
/// target again.
pub(crate) fn backoff(
    policy: &RetryPolicy,
    attempt: u32,
    last: Option<&GatewayError>,
    moved: bool,
) -> Duration {
    let exp = policy
        .backoff
        .saturating_mul(1u32 << (attempt.saturating_sub(1)).min(16));
    let capped = exp.min(policy.max_backoff);
    let jittered = capped.mul_f64(0.5 + fastrand::f64() / 2.0);
    match last.and_then(|e| e.retry_after_secs) {
        Some(secs) if !moved => jittered.max(Duration::from_secs(secs)),
        _ => jittered,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_the_configured_order_and_skips_unhealthy_targets() {
        let mut p = Plan::new(3);
        let all = [true, true, true];
        assert_eq!(p.next(&all), Some(0));
        p.mark(0);
        assert_eq!(p.next(&all), Some(1));
        p.mark(1);
        assert_eq!(p.next(&[true, false, true]), Some(2));
        p.mark(2);
        assert_eq!(p.next(&all), Some(0));
        assert_eq!(p.next(&[false, false, false]), None);
    }

    #[test]
    fn panic_mode_picks_the_target_whose_cooldown_ends_first() {
        let ms = Duration::from_millis;
        let health = [
            Health::Cooling(ms(900)),
            Health::Saturated,
            Health::Cooling(ms(200)),
        ];
        assert_eq!(soonest_cooled(&health), Some(2));
        assert_eq!(soonest_cooled(&[Health::Saturated]), None);
    }

    #[test]
    fn never_the_same_target_twice_in_a_row_while_another_is_healthy() {
        let mut p = Plan::new(2);
        p.mark(0);
        assert_eq!(p.next(&[true, true]), Some(1));
        p.mark(1);
        p.mark(0);
        assert_eq!(p.next(&[true, true]), Some(1));
        assert_eq!(
            p.next(&[true, false]),
            Some(0),
            "alone, the same target may be retried"
        );
    }

    #[test]
    fn backoff_grows_caps_and_honours_retry_after() {
        let policy = RetryPolicy {
            attempts: 5,
            deadline: Duration::from_secs(60),
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(500),
        };
        for _ in 0..100 {
            let b1 = backoff(&policy, 1, None, false);
            assert!(b1 >= Duration::from_millis(50) && b1 <= Duration::from_millis(100));
            let b5 = backoff(&policy, 5, None, false);
            assert!(b5 <= Duration::from_millis(500));
        }
        let limited =
            GatewayError::new(ErrorKind::RateLimited, "slow down").with_retry_after(Some(2));
        assert!(backoff(&policy, 1, Some(&limited), false) >= Duration::from_secs(2));
        assert!(
            backoff(&policy, 1, Some(&limited), true) < Duration::from_secs(1),
            "another target need not wait"
        );
    }
}
