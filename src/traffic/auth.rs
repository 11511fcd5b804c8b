//! Client authentication: the gateway's own keys, never the vendors'.

use std::net::IpAddr;

use ipnet::IpNet;
use subtle::ConstantTimeEq;

use crate::config::{ClientKey, Config};
use crate::error::{ErrorKind, GatewayError, GwResult};

/// The key from `Authorization: Bearer <key>`, or, for Anthropic-style clients, `x-api-key`.
pub(crate) fn presented_key<'h>(
    authorization: Option<&'h [u8]>,
    x_api_key: Option<&'h [u8]>,
) -> Option<&'h [u8]> {
    if let Some(h) = authorization {
        let h = h.trim_ascii();
        if h.len() > 7 && h[..7].eq_ignore_ascii_case(b"bearer ") {
            return Some(h[7..].trim_ascii());
        }
    }
    x_api_key.map(|k| k.trim_ascii()).filter(|k| !k.is_empty())
}

/// Finds the client's key, by its position in `config.keys`: the presented key's SHA-256 is
/// looked up (one probe, whatever the number of keys), then compared in constant time, so
/// timing tells nothing about a guess. A rotated key's old secret opens it until its grace
/// period ends.
pub(crate) fn authenticate(
    config: &Config,
    presented: Option<&[u8]>,
    now: u64,
    memo: &mut KeyDigestMemo,
) -> GwResult<usize> {
    let Some(presented) = presented else {
        return Err(GatewayError::new(
            ErrorKind::MissingKey,
            "You didn't provide an API key. Provide it in the Authorization header (Authorization: Bearer YOUR_KEY).",
        )
        .with_code("missing_api_key"));
    };
    let hash = memo.digest(presented);
    let found = config.key_index.get(&hash).copied().filter(|&i| {
        config.keys[i]
            .hashes
            .iter()
            .any(|h| bool::from(h.sha256.ct_eq(&hash)) && h.until.is_none_or(|until| now < until))
    });
    found.ok_or_else(|| {
        GatewayError::new(ErrorKind::InvalidKey, "Incorrect API key provided.")
            .with_code("invalid_api_key")
    })
}

/// The digest of the key a connection presented last. A kept-alive client sends the same key
/// with every request, and its SHA-256 cost each ~3,500 instructions under callgrind (~66 ns
/// natively, with SHA-NI). Only the digest is kept, never what it opened: the key is looked up
/// in each request's own config snapshot, so a key revoked or rotated out is refused on the
/// connections that used it before. It holds no more than the connection itself sent.
#[derive(Default)]
pub(crate) struct KeyDigestMemo(Option<(Box<[u8]>, [u8; 32])>);

impl KeyDigestMemo {
    fn digest(&mut self, presented: &[u8]) -> [u8; 32] {
        match &self.0 {
            Some((key, digest)) if **key == *presented => *digest,
            _ => {
                let digest = crate::config::key_hash(presented);
                self.0 = Some((presented.into(), digest));
                digest
            }
        }
    }
}

/// The client's address: the peer's, or, when the peer is a trusted proxy, the nearest address
/// in `X-Forwarded-For` that is not one of ours, walking from the right as each proxy appends.
/// The header's lines are read as one list, in order (as nginx's realip does): a proxy that
/// adds its own line must not leave the client's line to be read first. `lines` gives the
/// header's values, first to last; it is read only when the peer is trusted.
pub(crate) fn client_ip<'h, L>(peer: Option<IpAddr>, lines: L, trusted: &[IpNet]) -> Option<IpAddr>
where
    L: IntoIterator<Item = &'h [u8]>,
    L::IntoIter: DoubleEndedIterator,
{
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let peer = peer?;
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let mut nearest = peer;
    for line in lines.into_iter().rev() {
        let Ok(line) = std::str::from_utf8(line) else {
            return Some(nearest);
        };
        for hop in line.rsplit(',') {
            match hop.trim().parse::<IpAddr>() {
                Ok(ip) if is_trusted(&ip) => nearest = ip,
                Ok(ip) => return Some(ip),
                // An entry that is no address ends the walk: nothing left of it is vouched for.
                Err(_) => return Some(nearest),
            }
        }
    }
    Some(nearest)
}

/// Whether the key may be used now, from `ip`: 401 once it expired, 403 from an address
/// outside its allow-list.
pub(crate) fn check_access(key: &ClientKey, ip: Option<IpAddr>, now_secs: u64) -> GwResult<()> {
    if key.expires_at.is_some_and(|at| now_secs >= at) {
        return Err(
            GatewayError::new(ErrorKind::InvalidKey, "This API key has expired.")
                .with_code("expired_api_key"),
        );
    }
    let allowed = key.allow_ips.is_empty()
        || ip.is_some_and(|ip| key.allow_ips.iter().any(|net| net.contains(&ip)));
    if !allowed {
        return Err(GatewayError::new(
            ErrorKind::ModelNotAllowed,
            "This API key may not be used from this address.",
        )
        .with_code("ip_not_allowed"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Key `a` given as a secret, `b` by its SHA-256.
    fn config() -> Config {
        let b = crate::config::hex(&crate::config::key_hash(b"sk-bbbbbbbb"));
        let yaml = format!(
            "providers: [{{name: p, kind: openai, base_url: \"http://127.0.0.1:1/v1\", api_key: x}}]
models: {{m: {{targets: [{{provider: p, model: m}}]}}}}
keys: [{{name: a, key: sk-aaaaaaaa}}, {{name: b, key_sha256: {b}}}]"
        );
        crate::config::load_str(&yaml, &|_| None).unwrap()
    }

    fn keys() -> Vec<ClientKey> {
        config().keys
    }

    #[test]
    fn reads_bearer_and_x_api_key() {
        assert_eq!(
            presented_key(Some(b"Bearer sk-1"), None),
            Some(&b"sk-1"[..])
        );
        assert_eq!(
            presented_key(Some(b"bearer  sk-1 "), None),
            Some(&b"sk-1"[..])
        );
        assert_eq!(
            presented_key(Some(b"Basic abc"), Some(b"sk-2")),
            Some(&b"sk-2"[..])
        );
        assert_eq!(presented_key(None, None), None);
    }

    fn auth(c: &Config, presented: Option<&[u8]>, now: u64) -> GwResult<usize> {
        authenticate(c, presented, now, &mut KeyDigestMemo::default())
    }

    #[test]
    fn a_connections_memo_gives_each_key_its_own_digest_and_revocation_still_holds() {
        let mut c = config();
        let mut memo = KeyDigestMemo::default();
        let mut name = |c: &Config, k: &[u8]| {
            authenticate(c, Some(k), 0, &mut memo).map(|i| c.keys[i].name.clone())
        };
        assert_eq!(name(&c, b"sk-aaaaaaaa").unwrap(), "a");
        assert_eq!(name(&c, b"sk-aaaaaaaa").unwrap(), "a");
        assert_eq!(
            name(&c, b"sk-bbbbbbbb").unwrap(),
            "b",
            "another key, its own digest"
        );
        assert!(name(&c, b"sk-bbbbbbb").is_err());
        assert_eq!(name(&c, b"sk-aaaaaaaa").unwrap(), "a");
        c.keys.remove(0);
        c.index_keys();
        assert!(
            name(&c, b"sk-aaaaaaaa").is_err(),
            "a key gone from the snapshot is refused, memo or not"
        );
    }

    #[test]
    fn finds_the_right_key_by_its_hash_or_says_why_not() {
        let c = config();
        let name = |k: &[u8]| c.keys[auth(&c, Some(k), 0).unwrap()].name.clone();
        assert_eq!(
            (name(b"sk-aaaaaaaa"), name(b"sk-bbbbbbbb")),
            ("a".into(), "b".into())
        );
        assert_eq!(auth(&c, Some(b"sk-bbbbbbb"), 0).unwrap_err().status(), 401);
        assert_eq!(auth(&c, None, 0).unwrap_err().kind, ErrorKind::MissingKey);
    }

    #[test]
    fn a_rotated_secret_opens_the_key_until_its_grace_period_ends() {
        let mut c = config();
        c.keys[0].hashes.push(crate::config::KeyHash {
            sha256: crate::config::key_hash(b"sk-old-secret"),
            until: Some(100),
        });
        c.index_keys();
        assert_eq!(auth(&c, Some(b"sk-old-secret"), 99).unwrap(), 0);
        assert!(auth(&c, Some(b"sk-old-secret"), 100).is_err());
        assert_eq!(auth(&c, Some(b"sk-aaaaaaaa"), 100).unwrap(), 0);
    }

    #[test]
    fn the_client_ip_comes_from_trusted_proxies_only() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let peer_out = Some(ip("203.0.113.9"));
        let one = |s: &'static str| [s.as_bytes()];
        assert_eq!(
            client_ip(peer_out, one("1.2.3.4"), &trusted),
            peer_out,
            "spoofed XFF ignored"
        );
        let proxy = Some(ip("10.0.0.5"));
        assert_eq!(
            client_ip(proxy, one("1.2.3.4, 192.168.1.7, 10.0.0.9"), &trusted),
            Some(ip("192.168.1.7"))
        );
        assert_eq!(client_ip(proxy, [] as [&[u8]; 0], &trusted), proxy);
        // The client's own line first, the proxy's appended line after it: read from the right.
        let lines: [&[u8]; 2] = [b"10.9.9.9", b"198.51.100.7, 10.0.0.9"];
        assert_eq!(client_ip(proxy, lines, &trusted), Some(ip("198.51.100.7")));
        let lines: [&[u8]; 2] = [b"1.2.3.4", b"garbage"];
        assert_eq!(client_ip(proxy, lines, &trusted), proxy);
    }

    #[test]
    fn expiry_and_allow_lists_are_enforced() {
        let mut k = keys().remove(0);
        k.allow_ips = vec!["192.168.1.0/24".parse().unwrap()];
        k.expires_at = Some(1000);
        let inside = Some("192.168.1.20".parse().unwrap());
        assert!(check_access(&k, inside, 999).is_ok());
        assert_eq!(check_access(&k, inside, 1000).unwrap_err().status(), 401);
        let outside = Some("192.168.2.20".parse().unwrap());
        assert_eq!(check_access(&k, outside, 999).unwrap_err().status(), 403);
        assert_eq!(check_access(&k, None, 999).unwrap_err().status(), 403);
    }
}
