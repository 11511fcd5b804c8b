//! The last five minutes of each target, in ten-second buckets: requests, errors, latency and
//! time to first token, and the last error it returned. The console's status screen and its
//! sparklines read it; Prometheus has the long view.

use crate::config::FastMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

const BUCKET_SECS: u64 = 10;
const BUCKETS: usize = 30;
/// Histogram bounds grow by √2 from 1 ms: bucket `i` holds durations up to 2^(i/2) ms.
const HIST: usize = 50;

/// Counts per bucket, and the longest duration seen: a quantile is never put above it (a
/// bucket's upper bound could otherwise exceed every request, even its own timeout).
#[derive(Clone, Copy)]
struct Hist([u32; HIST], f32);

impl Hist {
    fn add(&mut self, d: Duration) {
        let ms = d.as_secs_f64() * 1000.0;
        self.1 = self.1.max(ms as f32);
        let i = if ms <= 1.0 {
            0
        } else {
            ((ms.log2() * 2.0).ceil() as usize).min(HIST - 1)
        };
        self.0[i] += 1;
    }

    fn merge(&mut self, other: &Hist) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a += b;
        }
        self.1 = self.1.max(other.1);
    }

    /// The upper bound of the bucket holding quantile `q`, in ms, at most the longest seen.
    fn quantile(&self, q: f64) -> Option<f64> {
        let total: u32 = self.0.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = (q * f64::from(total)).ceil().max(1.0) as u32;
        let mut seen = 0;
        for (i, n) in self.0.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(2f64.powf(i as f64 / 2.0).min(f64::from(self.1)));
            }
        }
        None
    }
}

#[derive(Clone, Copy)]
struct Bucket {
    /// The bucket's period (unix seconds / BUCKET_SECS); a stale one is reset on reuse.
    period: u64,
    requests: u32,
    errors: u32,
    latency: Hist,
    ttft: Hist,
}

impl Bucket {
    const EMPTY: Bucket = Bucket {
        period: 0,
        requests: 0,
        errors: 0,
        latency: Hist([0; HIST], 0.0),
        ttft: Hist([0; HIST], 0.0),
    };
}

struct Series {
    buckets: [Bucket; BUCKETS],
    last_error: Option<LastError>,
}

#[derive(Clone, Serialize)]
pub(crate) struct LastError {
    /// Unix seconds.
    pub(crate) at: u64,
    pub(crate) message: String,
}

/// One target's last five minutes.
#[derive(Serialize)]
pub(crate) struct TargetTimeline {
    pub(crate) requests: u32,
    pub(crate) error_rate: f64,
    pub(crate) p50_ms: Option<f64>,
    pub(crate) p99_ms: Option<f64>,
    pub(crate) ttft_p50_ms: Option<f64>,
    pub(crate) ttft_p99_ms: Option<f64>,
    /// Oldest first, one point per ten seconds.
    pub(crate) series: Vec<Point>,
    pub(crate) last_error: Option<LastError>,
}

#[derive(Serialize)]
pub(crate) struct Point {
    pub(crate) requests: u32,
    pub(crate) error_rate: f64,
    pub(crate) p50_ms: Option<f64>,
}

#[derive(Default)]
pub(crate) struct Timeline {
    targets: Mutex<FastMap<String, Series>>,
}

impl Timeline {
    /// A finished request at `target` (`provider/model`).
    /// One finished request; `failure` says why it failed, kept as the last error unless the
    /// attempt already noted a more precise one while the request ran (so an error rate is
    /// never shown beside "no errors").
    pub(crate) fn record(
        &self,
        target: &str,
        failure: Option<&str>,
        latency: Duration,
        ttft: Option<Duration>,
    ) {
        let now = crate::clock::unix_secs();
        let period = now / BUCKET_SECS;
        let mut targets = self.targets.lock().expect("timeline lock");
        let series = series_of(&mut targets, target);
        let b = &mut series.buckets[(period % BUCKETS as u64) as usize];
        if b.period != period {
            *b = Bucket {
                period,
                ..Bucket::EMPTY
            };
        }
        b.requests += 1;
        b.errors += u32::from(failure.is_some());
        b.latency.add(latency);
        if let Some(t) = ttft {
            b.ttft.add(t);
        }
        if let Some(message) = failure {
            let began = now.saturating_sub(latency.as_secs());
            if series.last_error.as_ref().is_none_or(|e| e.at < began) {
                series.last_error = Some(LastError {
                    at: now,
                    message: message.chars().take(500).collect(),
                });
            }
        }
    }

    /// The error a target answered with last (already free of credentials).
    pub(crate) fn note_error(&self, target: &str, message: &str) {
        let mut targets = self.targets.lock().expect("timeline lock");
        let series = series_of(&mut targets, target);
        series.last_error = Some(LastError {
            at: crate::clock::unix_secs(),
            message: message.chars().take(500).collect(),
        });
    }

    pub(crate) fn snapshot(&self, target: &str) -> TargetTimeline {
        let now = crate::clock::unix_secs() / BUCKET_SECS;
        let targets = self.targets.lock().expect("timeline lock");
        let series = targets.get(target);
        let mut latency = Hist([0; HIST], 0.0);
        let mut ttft = Hist([0; HIST], 0.0);
        let (mut requests, mut errors) = (0, 0);
        let points = (0..BUCKETS as u64)
            .rev()
            .map(|ago| {
                let period = now.saturating_sub(ago);
                let b = series
                    .map(|s| s.buckets[(period % BUCKETS as u64) as usize])
                    .filter(|b| b.period == period)
                    .unwrap_or(Bucket::EMPTY);
                requests += b.requests;
                errors += b.errors;
                latency.merge(&b.latency);
                ttft.merge(&b.ttft);
                Point {
                    requests: b.requests,
                    error_rate: rate(b.errors, b.requests),
                    p50_ms: b.latency.quantile(0.5),
                }
            })
            .collect();
        TargetTimeline {
            requests,
            error_rate: rate(errors, requests),
            p50_ms: latency.quantile(0.5),
            p99_ms: latency.quantile(0.99),
            ttft_p50_ms: ttft.quantile(0.5),
            ttft_p99_ms: ttft.quantile(0.99),
            series: points,
            last_error: series.and_then(|s| s.last_error.clone()),
        }
    }
}

/// A target's series, made on its first request; the name is copied only then.
fn series_of<'a>(targets: &'a mut FastMap<String, Series>, target: &str) -> &'a mut Series {
    if !targets.contains_key(target) {
        targets.insert(
            target.to_string(),
            Series {
                buckets: [Bucket::EMPTY; BUCKETS],
                last_error: None,
            },
        );
    }
    targets.get_mut(target).expect("inserted above")
}

fn rate(errors: u32, requests: u32) -> f64 {
    if requests == 0 {
        0.0
    } else {
        f64::from(errors) / f64::from(requests)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_and_error_rate_over_the_window() {
        let t = Timeline::default();
        for ms in [10, 12, 14, 900] {
            t.record(
                "p/m",
                (ms == 900).then_some("HTTP 502"),
                Duration::from_millis(ms),
                Some(Duration::from_millis(5)),
            );
        }
        t.note_error("p/m", "boom");
        let s = t.snapshot("p/m");
        assert_eq!(s.requests, 4);
        assert_eq!(s.error_rate, 0.25);
        let p50 = s.p50_ms.unwrap();
        assert!((11.0..=16.0).contains(&p50), "{p50}");
        // The bucket's bound is 1024 ms; no request took longer than 900.
        assert_eq!(s.p99_ms.unwrap(), 900.0);
        assert_eq!(s.series.len(), BUCKETS);
        assert_eq!(s.series.last().unwrap().requests, 4);
        assert_eq!(s.last_error.unwrap().message, "boom");
        assert_eq!(t.snapshot("other").requests, 0);
    }
}
