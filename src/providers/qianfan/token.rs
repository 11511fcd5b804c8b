//! Qianfan v1's OAuth access tokens: fetched with the client credentials, cached until shortly
//! before they expire, refreshed when the vendor reports them invalid. One fetch per expiry,
//! however many requests wait for it. The fetch itself is the caller's (this module does no
//! I/O): it sends [`token_request`] and reads the answer with [`read_token_reply`].

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Deserialize;

use crate::config::{Endpoint, Secret};
use crate::error::{ErrorKind, GatewayError, GwResult};
use crate::providers::{percent_encode, UpstreamRequest};

/// A token the vendor issued, and how many seconds it lives.
pub struct FreshToken {
    value: String,
    expires_in: u64,
}

struct Token {
    value: Arc<str>,
    refresh_at: Instant,
}

#[derive(Default)]
struct Slot {
    /// Held across the fetch, so concurrent callers wait for the one fetch in flight.
    token: tokio::sync::Mutex<Option<Token>>,
}

/// The tokens of every Qianfan v1 provider, by provider name.
#[derive(Default)]
pub struct TokenCache {
    slots: Mutex<HashMap<String, Arc<Slot>>>,
}

/// Refresh a little before the vendor's expiry: a tenth of the lifetime, at most an hour.
fn refresh_after(expires_in: u64) -> Duration {
    let margin = (expires_in / 10).min(3600);
    Duration::from_secs(expires_in.saturating_sub(margin).max(1))
}

impl TokenCache {
    fn slot(&self, provider: &str) -> Arc<Slot> {
        self.slots
            .lock()
            .expect("token cache lock is never poisoned: no panics while held")
            .entry(provider.to_string())
            .or_default()
            .clone()
    }

    /// A valid access token for the provider, calling `fetch` if none is cached or it is due.
    pub async fn token<F, Fut>(&self, provider: &str, fetch: F) -> GwResult<Arc<str>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = GwResult<FreshToken>>,
    {
        let slot = self.slot(provider);
        let mut guard = slot.token.lock().await;
        if let Some(t) = guard.as_ref() {
            if Instant::now() < t.refresh_at {
                return Ok(t.value.clone());
            }
        }
        let fresh = fetch().await?;
        let value: Arc<str> = Arc::from(fresh.value.as_str());
        let lifetime = refresh_after(fresh.expires_in);
        *guard = Some(Token {
            value: value.clone(),
            refresh_at: Instant::now()
                .checked_add(lifetime)
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400)),
        });
        Ok(value)
    }

    /// Drops `stale` after the vendor rejected it; a newer token fetched meanwhile is kept.
    pub async fn invalidate(&self, provider: &str, stale: &str) {
        let slot = self.slot(provider);
        let mut guard = slot.token.lock().await;
        if guard.as_ref().is_some_and(|t| &*t.value == stale) {
            *guard = None;
        }
    }
}

/// The token request: Baidu's OAuth endpoint takes the client credentials in the query.
pub fn token_request(
    client_id: &Secret,
    client_secret: &Secret,
    token_endpoint: &Endpoint,
) -> UpstreamRequest {
    UpstreamRequest {
        path_and_query: format!(
            "{}?grant_type=client_credentials&client_id={}&client_secret={}",
            if token_endpoint.path_prefix.is_empty() {
                "/"
            } else {
                &token_endpoint.path_prefix
            },
            percent_encode(client_id.expose(), b""),
            percent_encode(client_secret.expose(), b""),
        ),
        headers: Vec::new(),
        body: Bytes::new(),
    }
}

#[derive(Deserialize)]
struct TokenReply {
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

/// The token endpoint's answer: a token, or the vendor's reason for refusing the credentials.
pub fn read_token_reply(status: u16, body: &[u8]) -> GwResult<FreshToken> {
    let reply: TokenReply = serde_json::from_slice(body).map_err(|_| {
        GatewayError::new(
            ErrorKind::UpstreamBadResponse,
            "The upstream token endpoint returned a response the gateway could not understand.",
        )
    })?;
    match reply {
        TokenReply {
            access_token: Some(value),
            expires_in,
            ..
        } if (200..300).contains(&status) => Ok(FreshToken {
            value,
            expires_in: expires_in.unwrap_or(3600),
        }),
        TokenReply {
            error,
            error_description,
            ..
        } => Err(GatewayError::new(
            ErrorKind::UpstreamAuth,
            format!(
                "The upstream provider rejected the gateway's client credentials: {}",
                error_description
                    .or(error)
                    .unwrap_or_else(|| format!("HTTP {status}"))
            ),
        )),
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refreshes_before_expiry() {
        assert_eq!(
            refresh_after(2_592_000),
            Duration::from_secs(2_592_000 - 3600)
        );
        assert_eq!(refresh_after(100), Duration::from_secs(90));
        assert_eq!(refresh_after(0), Duration::from_secs(1));
        assert_eq!(percent_encode("a b/+", b""), "a%20b%2F%2B");
    }

    #[test]
    fn a_huge_expiry_does_not_overflow() {
        let reply = read_token_reply(
            200,
            br#"{"access_token":"t","expires_in":18446744073709551615}"#,
        );
        assert_eq!(reply.unwrap().expires_in, u64::MAX);
        assert!(refresh_after(u64::MAX) > Duration::from_secs(1));
    }
}
