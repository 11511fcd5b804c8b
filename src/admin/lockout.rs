//! Guessing the admin key: each address gets a few free tries, then waits twice as long after
//! every further wrong key (up to a quarter of an hour). Every failure is logged and counted.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::metrics;

/// Wrong keys an address may present before it must wait.
const FREE_TRIES: u32 = 5;
/// The longest wait after a wrong key.
const MAX_WAIT: Duration = Duration::from_secs(15 * 60);
/// An address whose last failure is older than this starts afresh.
const FORGET_AFTER: Duration = Duration::from_secs(3600);
/// Addresses tracked at most: past it the stalest are forgotten (memory stays bounded).
const MAX_TRACKED: usize = 10_000;

struct Failures {
    count: u32,
    last: Instant,
    until: Option<Instant>,
}

#[derive(Default)]
pub(crate) struct Lockout {
    by_address: Mutex<HashMap<IpAddr, Failures>>,
}

impl Lockout {
    /// How long `ip` must still wait before it may present a key; None when it may now.
    pub(crate) fn wait(&self, ip: Option<IpAddr>) -> Option<Duration> {
        let ip = ip?;
        let map = self.by_address.lock().expect("lockout lock");
        let until = map.get(&ip)?.until?;
        let left = until.checked_duration_since(Instant::now())?;
        metrics::ADMIN_AUTH_FAILURES
            .with_label_values(&["locked_out"])
            .inc();
        Some(left)
    }

    /// A wrong key from `ip` (`what`: sign-in or API).
    pub(crate) fn failed(&self, ip: Option<IpAddr>, what: &str) {
        metrics::ADMIN_AUTH_FAILURES
            .with_label_values(&["wrong_key"])
            .inc();
        let Some(ip) = ip else {
            log::warn!("wrong admin key ({what}) from an unknown address");
            return;
        };
        let now = Instant::now();
        let mut map = self.by_address.lock().expect("lockout lock");
        if map.len() >= MAX_TRACKED && !map.contains_key(&ip) {
            map.retain(|_, f| now.duration_since(f.last) < FORGET_AFTER);
            if map.len() >= MAX_TRACKED {
                if let Some(stalest) = map.iter().min_by_key(|(_, f)| f.last).map(|(k, _)| *k) {
                    map.remove(&stalest);
                }
            }
        }
        let f = map.entry(ip).or_insert(Failures {
            count: 0,
            last: now,
            until: None,
        });
        if now.duration_since(f.last) >= FORGET_AFTER {
            f.count = 0;
        }
        f.count += 1;
        f.last = now;
        let wait = (f.count >= FREE_TRIES).then(|| {
            let doublings = (f.count - FREE_TRIES).min(20);
            Duration::from_secs(1u64 << doublings).min(MAX_WAIT)
        });
        f.until = wait.map(|w| now + w);
        match wait {
            Some(w) => log::warn!(
                "wrong admin key ({what}) from {ip}: {} in a row, refused for {}s",
                f.count,
                w.as_secs()
            ),
            None => log::warn!("wrong admin key ({what}) from {ip}: {} in a row", f.count),
        }
    }

    /// The right key from `ip`: its count starts again.
    pub(crate) fn succeeded(&self, ip: Option<IpAddr>) {
        if let Some(ip) = ip {
            self.by_address.lock().expect("lockout lock").remove(&ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_waits_after_its_free_tries_and_the_right_key_clears_it() {
        let l = Lockout::default();
        let (a, b) = (
            Some("10.0.0.1".parse().unwrap()),
            Some("10.0.0.2".parse().unwrap()),
        );
        for _ in 0..FREE_TRIES - 1 {
            l.failed(a, "sign-in");
            assert!(l.wait(a).is_none());
        }
        l.failed(a, "sign-in");
        let w = l.wait(a).expect("locked after the free tries");
        assert!(w <= Duration::from_secs(1));
        l.failed(a, "sign-in");
        assert!(
            l.wait(a).unwrap() > Duration::from_secs(1),
            "the wait doubles"
        );
        assert!(l.wait(b).is_none(), "another address is not held");
        l.succeeded(a);
        assert!(l.wait(a).is_none());
    }
}
