//! Circuit breakers, one per target (provider + vendor model): closed while the target is
//! healthy; open (skipped by routing) when its failure rate over a sliding window or its run of
//! consecutive failures crosses the configured bound; half-open after a cooldown, when a few
//! probe requests decide whether it closes again.

use crate::config::FastMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::config::BreakerSettings;
use crate::metrics;

const BUCKETS: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Closed,
    Open,
    HalfOpen,
}

impl State {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
        }
    }

    fn gauge(self) -> i64 {
        match self {
            State::Closed => 0,
            State::Open => 1,
            State::HalfOpen => 2,
        }
    }
}

/// A breaker as the admin status shows it.
pub(crate) struct Snapshot {
    pub(crate) state: State,
    pub(crate) ok: u64,
    pub(crate) failed: u64,
    pub(crate) latency_ms: f64,
}

/// What routing may do with a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Health {
    Ready,
    /// Open (or half-open with every probe slot taken): ready again in this long.
    Cooling(Duration),
    /// As many requests in flight as its provider allows.
    Saturated,
}

/// Successes and failures in one slice of the sliding window.
#[derive(Clone, Copy, Default)]
struct Bucket {
    slice: u64,
    ok: u64,
    failed: u64,
}

struct Inner {
    /// Answer latency, exponentially weighted over recent attempts (ms).
    latency_ms: f64,
    state: State,
    opened_at: Instant,
    buckets: [Bucket; BUCKETS],
    consecutive_failures: u32,
    probes_in_flight: u32,
    probe_successes: u32,
}

impl Inner {
    /// Answers and failures in the sliding window that ends at `slice`.
    fn window(&self, slice: u64) -> (u64, u64) {
        let oldest = slice.saturating_sub(BUCKETS as u64 - 1);
        self.buckets
            .iter()
            .filter(|b| b.slice >= oldest && b.slice <= slice)
            .fold((0, 0), |(o, f), b| (o + b.ok, f + b.failed))
    }
}

pub(crate) struct Breaker {
    labels: [String; 2],
    settings: BreakerSettings,
    started: Instant,
    inner: Mutex<Inner>,
}

impl Breaker {
    fn new(provider: &str, model: &str, settings: BreakerSettings) -> Self {
        let b = Breaker {
            labels: [provider.to_string(), model.to_string()],
            settings,
            started: Instant::now(),
            inner: Mutex::new(Inner {
                latency_ms: 0.0,
                state: State::Closed,
                opened_at: Instant::now(),
                buckets: [Bucket::default(); BUCKETS],
                consecutive_failures: 0,
                probes_in_flight: 0,
                probe_successes: 0,
            }),
        };
        metrics::BREAKER_STATE
            .with_label_values(&b.label_refs())
            .set(0);
        b
    }

    fn label_refs(&self) -> [&str; 2] {
        [&self.labels[0], &self.labels[1]]
    }

    fn slice_len(&self) -> Duration {
        (self.settings.window / BUCKETS as u32).max(Duration::from_millis(1))
    }

    fn slice(&self, now: Instant) -> u64 {
        (now.duration_since(self.started).as_nanos() / self.slice_len().as_nanos()) as u64
    }

    fn set_state(&self, inner: &mut Inner, state: State) {
        if inner.state == state {
            return;
        }
        log::warn!(
            "circuit breaker for {}/{}: {} -> {}",
            self.labels[0],
            self.labels[1],
            inner.state.as_str(),
            state.as_str()
        );
        inner.state = state;
        metrics::BREAKER_STATE
            .with_label_values(&self.label_refs())
            .set(state.gauge());
        metrics::BREAKER_TRANSITIONS
            .with_label_values(&[&self.labels[0], &self.labels[1], state.as_str()])
            .inc();
        match state {
            State::Open => inner.opened_at = Instant::now(),
            State::HalfOpen => {
                inner.probes_in_flight = 0;
                inner.probe_successes = 0;
            }
            State::Closed => {
                inner.buckets = [Bucket::default(); BUCKETS];
                inner.consecutive_failures = 0;
            }
        }
    }

    /// The state, after turning an open breaker whose cooldown has passed half-open.
    fn current(&self) -> std::sync::MutexGuard<'_, Inner> {
        let mut inner = self
            .inner
            .lock()
            .expect("breaker lock is never poisoned: no panics while held");
        if inner.state == State::Open && inner.opened_at.elapsed() >= self.settings.cooldown {
            self.set_state(&mut inner, State::HalfOpen);
        }
        inner
    }

    /// Whether routing should send this target traffic: ready when closed, or half-open with a
    /// probe slot free (an open breaker whose cooldown has passed turns half-open here);
    /// otherwise how long until its cooldown ends.
    pub(crate) fn health(&self) -> Health {
        let inner = self.current();
        match inner.state {
            State::Closed => Health::Ready,
            State::HalfOpen if inner.probes_in_flight < self.settings.probes => Health::Ready,
            State::HalfOpen => Health::Cooling(Duration::ZERO),
            State::Open => Health::Cooling(
                self.settings
                    .cooldown
                    .saturating_sub(inner.opened_at.elapsed()),
            ),
        }
    }

    /// Whether a request may go to this target now; half-open, it admits a few probes. In
    /// panic mode (every target of the model is cooling) the request goes through as a probe
    /// all the same: the breaker diverts traffic, it never leaves a model with no target.
    pub(crate) fn admit(&self, panic: bool) -> bool {
        let mut inner = self.current();
        match inner.state {
            State::Closed => true,
            State::HalfOpen if panic || inner.probes_in_flight < self.settings.probes => {
                inner.probes_in_flight += 1;
                true
            }
            State::Open if panic => {
                self.set_state(&mut inner, State::HalfOpen);
                inner.probes_in_flight += 1;
                true
            }
            State::Open | State::HalfOpen => false,
        }
    }

    #[cfg(test)]
    pub(crate) fn state(&self) -> State {
        self.inner
            .lock()
            .expect("breaker lock is never poisoned: no panics while held")
            .state
    }

    /// What the admin status shows: state, the window's answers and failures, recent latency.
    pub(crate) fn snapshot(&self) -> Snapshot {
        let now = Instant::now();
        let slice = self.slice(now);
        let inner = self.current();
        let (ok, failed) = inner.window(slice);
        Snapshot {
            state: inner.state,
            ok,
            failed,
            latency_ms: inner.latency_ms,
        }
    }

    /// Folds an answered attempt's latency into the recent average.
    pub(crate) fn observe_latency(&self, took: Duration) {
        let mut inner = self
            .inner
            .lock()
            .expect("breaker lock is never poisoned: no panics while held");
        let ms = took.as_secs_f64() * 1000.0;
        inner.latency_ms = if inner.latency_ms == 0.0 {
            ms
        } else {
            0.8 * inner.latency_ms + 0.2 * ms
        };
    }

    /// Gives back what `allow` took when the attempt says nothing about the target (the client
    /// left, or the request never reached the vendor).
    pub(crate) fn release(&self) {
        let mut inner = self
            .inner
            .lock()
            .expect("breaker lock is never poisoned: no panics while held");
        if inner.state == State::HalfOpen {
            inner.probes_in_flight = inner.probes_in_flight.saturating_sub(1);
        }
    }

    /// Records how an attempt that `allow` let through went.
    pub(crate) fn record(&self, success: bool) {
        let now = Instant::now();
        let slice = self.slice(now);
        let mut inner = self
            .inner
            .lock()
            .expect("breaker lock is never poisoned: no panics while held");
        match inner.state {
            State::HalfOpen => {
                inner.probes_in_flight = inner.probes_in_flight.saturating_sub(1);
                if !success {
                    self.set_state(&mut inner, State::Open);
                } else {
                    inner.probe_successes += 1;
                    if inner.probe_successes >= self.settings.probes {
                        self.set_state(&mut inner, State::Closed);
                    }
                }
                return;
            }
            State::Open => return,
            State::Closed => {}
        }
        let b = &mut inner.buckets[(slice % BUCKETS as u64) as usize];
        if b.slice != slice {
            *b = Bucket {
                slice,
                ok: 0,
                failed: 0,
            };
        }
        if success {
            b.ok += 1;
            inner.consecutive_failures = 0;
            return;
        }
        b.failed += 1;
        inner.consecutive_failures += 1;
        let (ok, failed) = inner.window(slice);
        let total = ok + failed;
        let rate_tripped = total >= self.settings.min_requests
            && failed as f64 / total as f64 > self.settings.failure_rate;
        if rate_tripped || inner.consecutive_failures >= self.settings.consecutive_failures {
            self.set_state(&mut inner, State::Open);
        }
    }
}

/// All targets' breakers, created on first use.
pub(crate) struct Breakers {
    settings: BreakerSettings,
    /// provider -> vendor model -> breaker; nested so a lookup needs no allocation.
    map: RwLock<FastMap<String, FastMap<String, Arc<Breaker>>>>,
}

impl Breakers {
    pub(crate) fn new(settings: BreakerSettings) -> Self {
        Breakers {
            settings,
            map: RwLock::new(FastMap::default()),
        }
    }

    pub(crate) fn get(&self, provider: &str, model: &str) -> Arc<Breaker> {
        let found = self
            .map
            .read()
            .expect("breaker map lock is never poisoned")
            .get(provider)
            .and_then(|models| models.get(model))
            .cloned();
        if let Some(b) = found {
            return b;
        }
        self.map
            .write()
            .expect("breaker map lock is never poisoned")
            .entry(provider.to_string())
            .or_default()
            .entry(model.to_string())
            .or_insert_with(|| Arc::new(Breaker::new(provider, model, self.settings.clone())))
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> BreakerSettings {
        BreakerSettings {
            failure_rate: 0.05,
            min_requests: 20,
            window: Duration::from_secs(30),
            consecutive_failures: 5,
            cooldown: Duration::from_millis(50),
            probes: 2,
        }
    }

    #[test]
    fn opens_on_consecutive_failures_then_probes_and_closes() {
        let b = Breaker::new("p", "m-consecutive", settings());
        for _ in 0..4 {
            assert!(b.admit(false));
            b.record(false);
        }
        assert_eq!(b.state(), State::Closed);
        b.record(false);
        assert_eq!(b.state(), State::Open);
        assert!(!b.admit(false));
        std::thread::sleep(Duration::from_millis(60));
        assert!(b.health() == Health::Ready, "the cooldown is over");
        assert!(b.admit(false) && b.admit(false), "two probes");
        assert!(b.health() != Health::Ready);
        assert!(!b.admit(false), "no third while probing");
        assert_eq!(b.state(), State::HalfOpen);
        b.record(true);
        b.record(true);
        assert_eq!(b.state(), State::Closed);
    }

    #[test]
    fn opens_on_failure_rate_over_the_window() {
        let b = Breaker::new("p", "m-rate", settings());
        for i in 0..40 {
            b.record(i % 10 != 0); // 10% failures, never 5 in a row
        }
        assert_eq!(b.state(), State::Open);
    }

    #[test]
    fn few_requests_do_not_trip_the_rate() {
        let b = Breaker::new("p", "m-few", settings());
        for _ in 0..3 {
            b.record(false);
            b.record(true);
        }
        assert_eq!(b.state(), State::Closed);
    }

    #[test]
    fn a_failed_probe_reopens() {
        let b = Breaker::new("p", "m-reopen", settings());
        for _ in 0..5 {
            b.record(false);
        }
        std::thread::sleep(Duration::from_millis(60));
        assert!(b.admit(false));
        b.record(false);
        assert_eq!(b.state(), State::Open);
    }
}
