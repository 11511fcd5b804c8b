//! Vendor host names to addresses, cached so a lookup is not on every request's path.

use crate::config::FastMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::RwLock;
use std::time::{Duration, Instant};

use crate::error::{ErrorKind, GatewayError, GwResult};

/// How long a resolved address is used before the name is looked up again, so that a vendor's
/// DNS change is followed without a restart.
const DNS_TTL: Duration = Duration::from_secs(30);

/// Resolves vendor host names with the runtime's non-blocking lookup and caches them for
/// `DNS_TTL`; a failed refresh keeps serving the last good addresses.
/// Addresses of one `(host, port)` and when they were looked up.
type Resolved = (Vec<SocketAddr>, Instant);

#[derive(Default)]
pub(crate) struct Resolver {
    cache: RwLock<FastMap<(String, u16), Resolved>>,
}

impl Resolver {
    pub(crate) async fn resolve(&self, host: &str, port: u16) -> GwResult<SocketAddr> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, port));
        }
        let key = (host.to_string(), port);
        let cached = self
            .cache
            .read()
            .expect("resolver lock is never poisoned: no panics while held")
            .get(&key)
            .cloned();
        if let Some((addrs, at)) = &cached {
            if at.elapsed() < DNS_TTL {
                return Ok(pick(addrs));
            }
        }
        match tokio::net::lookup_host((host, port)).await {
            Ok(found) => {
                let addrs: Vec<SocketAddr> = found.collect();
                if addrs.is_empty() {
                    return stale_or(cached, host);
                }
                let addr = pick(&addrs);
                self.cache
                    .write()
                    .expect("resolver lock is never poisoned: no panics while held")
                    .insert(key, (addrs, Instant::now()));
                Ok(addr)
            }
            Err(e) => {
                log::warn!("resolving {host} failed: {e}");
                stale_or(cached, host)
            }
        }
    }
}

fn stale_or(cached: Option<Resolved>, host: &str) -> GwResult<SocketAddr> {
    match cached {
        Some((addrs, _)) => Ok(pick(&addrs)),
        None => Err(GatewayError::new(
            ErrorKind::UpstreamConnect,
            format!("The gateway could not resolve the upstream host {host}."),
        )),
    }
}

fn pick(addrs: &[SocketAddr]) -> SocketAddr {
    addrs[fastrand::usize(..addrs.len())]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn resolves_literals_and_names() {
        let r = Resolver::default();
        let a = r.resolve("127.0.0.1", 80).await.unwrap();
        assert_eq!(a, "127.0.0.1:80".parse().unwrap());
        let a = r.resolve("localhost", 81).await.unwrap();
        assert_eq!(a.port(), 81);
        assert!(r
            .cache
            .read()
            .unwrap()
            .contains_key(&("localhost".into(), 81)));
        assert!(r.resolve("no-such-host.invalid", 80).await.is_err());
    }
}
