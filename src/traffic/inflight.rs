//! Requests in flight per target. A vendor that hangs holds every request sent to it; bounding
//! them per target (Envoy's circuit-breaker thresholds) keeps one stuck vendor from holding the
//! gateway's connections and memory, and tells routing to go elsewhere.

use pingora_limits::inflight::{Guard, Inflight};

use crate::metrics;

/// Counts by target; a [`Slot`] is one request, given back when it is dropped.
pub(crate) struct InFlight {
    counts: Inflight,
}

/// One request in flight to a target, counted in `modelmux_target_in_flight` while it lives.
pub(crate) struct Slot {
    _guard: Guard,
    gauge: prometheus::IntGauge,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

impl InFlight {
    pub(crate) fn new() -> Self {
        InFlight {
            counts: Inflight::new(),
        }
    }

    /// Requests in flight to the target now (an estimate: the counter is a sketch).
    pub(crate) fn count(&self, provider: &str, model: &str) -> isize {
        self.counts.incr((provider, model), 0).1
    }

    /// Whether the target is at its bound (a cheap look, for routing).
    pub(crate) fn full(&self, provider: &str, model: &str, limit: u32) -> bool {
        self.count(provider, model) >= limit as isize
    }

    /// A slot under the bound, or None when the target already has `limit` requests.
    pub(crate) fn enter(&self, provider: &str, model: &str, limit: u32) -> Option<Slot> {
        let (guard, now) = self.counts.incr((provider, model), 1);
        if now > limit as isize {
            return None;
        }
        let gauge = metrics::TARGET_IN_FLIGHT.with_label_values(&[provider, model]);
        gauge.inc();
        Some(Slot {
            _guard: guard,
            gauge,
        })
    }
}
