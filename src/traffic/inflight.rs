//! Requests in flight per target. A vendor that hangs holds every request sent to it; bounding
//! them per target (Envoy's circuit-breaker thresholds) keeps one stuck vendor from holding the
//! gateway's connections and memory, and tells routing to go elsewhere.

use pingora_limits::inflight::{Guard, Inflight};

/// Counts by target; a [`Slot`] is one request, given back when it is dropped.
pub(crate) struct InFlight {
    counts: Inflight,
}

/// One request in flight to a target.
pub(crate) struct Slot(#[allow(dead_code)] Guard);

impl InFlight {
    pub(crate) fn new() -> Self {
        InFlight {
            counts: Inflight::new(),
        }
    }

    /// Whether the target is at its bound (a cheap look, for routing).
    pub(crate) fn full(&self, provider: &str, model: &str, limit: u32) -> bool {
        let (_guard, now) = self.counts.incr((provider, model), 0);
        now >= limit as isize
    }

    /// A slot under the bound, or None when the target already has `limit` requests.
    pub(crate) fn enter(&self, provider: &str, model: &str, limit: u32) -> Option<Slot> {
        let (guard, now) = self.counts.incr((provider, model), 1);
        (now <= limit as isize).then_some(Slot(guard))
    }
}
