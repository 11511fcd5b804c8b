//! Upstream OAuth access tokens (Baidu Qianfan v1): fetched with the client credentials, cached
//! until shortly before they expire, refreshed when the vendor reports them invalid. One fetch
//! per expiry, however many requests wait for it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Deserialize;

use crate::config::{Credentials, Provider};
use crate::error::{ErrorKind, GatewayError, GwResult};
use crate::providers::UpstreamRequest;
use crate::proxy::upstream::Upstreams;

struct Token {
    value: Arc<str>,
    refresh_at: Instant,
}

#[derive(Default)]
struct Slot {
    /// Held across the fetch, so concurrent callers wait for the one fetch in flight.
    token: tokio::sync::Mutex<Option<Token>>,
}

#[derive(Default)]
pub struct TokenCache {
    slots: Mutex<HashMap<String, Arc<Slot>>>,
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

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Refresh a little before the vendor's expiry: a tenth of the lifetime, at most an hour.
fn refresh_after(expires_in: u64) -> Duration {
    let margin = (expires_in / 10).min(3600);
    Duration::from_secs(expires_in.saturating_sub(margin).max(1))
}

impl TokenCache {
    fn slot(&self, provider: &Provider) -> Arc<Slot> {
        self.slots
            .lock()
            .expect("token cache lock is never poisoned: no panics while held")
            .entry(provider.name.clone())
            .or_default()
            .clone()
    }

    /// A valid access token for the provider, fetching one if none is cached or it is due.
    pub async fn token(&self, provider: &Provider, upstreams: &Upstreams) -> GwResult<Arc<str>> {
        let slot = self.slot(provider);
        let mut guard = slot.token.lock().await;
        if let Some(t) = guard.as_ref() {
            if Instant::now() < t.refresh_at {
                return Ok(t.value.clone());
            }
        }
        let fresh = fetch(provider, upstreams).await?;
        let value = fresh.value.clone();
        *guard = Some(fresh);
        Ok(value)
    }

    /// Drops `stale` after the vendor rejected it; a newer token fetched meanwhile is kept.
    pub async fn invalidate(&self, provider: &Provider, stale: &str) {
        let slot = self.slot(provider);
        let mut guard = slot.token.lock().await;
        if guard.as_ref().is_some_and(|t| &*t.value == stale) {
            *guard = None;
        }
    }
}

async fn fetch(provider: &Provider, upstreams: &Upstreams) -> GwResult<Token> {
    let Credentials::OAuthClient {
        client_id,
        client_secret,
        token_endpoint,
    } = &provider.credentials
    else {
        return Err(GatewayError::new(
            ErrorKind::Internal,
            "provider has no OAuth client credentials",
        ));
    };
    let request = UpstreamRequest {
        path_and_query: format!(
            "{}?grant_type=client_credentials&client_id={}&client_secret={}",
            if token_endpoint.path_prefix.is_empty() {
                "/"
            } else {
                &token_endpoint.path_prefix
            },
            percent_encode(client_id.expose()),
            percent_encode(client_secret.expose()),
        ),
        headers: Vec::new(),
        body: Bytes::new(),
    };
    let mut ex = upstreams
        .send(
            token_endpoint,
            &provider.timeouts,
            provider.ca.as_ref(),
            "POST",
            &request,
        )
        .await?;
    let status = ex.status();
    let body = ex.read_all(64 * 1024).await?;
    upstreams.release(ex).await;
    let reply: TokenReply = serde_json::from_slice(&body).map_err(|_| {
        GatewayError::new(
            ErrorKind::UpstreamBadResponse,
            "The upstream token endpoint returned a response the gateway could not understand.",
        )
    })?;
    match reply {
        TokenReply {
            access_token: Some(t),
            expires_in,
            ..
        } if (200..300).contains(&status) => {
            log::info!("fetched a new access token for provider {}", provider.name);
            Ok(Token {
                value: Arc::from(t.as_str()),
                refresh_at: Instant::now() + refresh_after(expires_in.unwrap_or(3600)),
            })
        }
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
        assert_eq!(percent_encode("a b/+"), "a%20b%2F%2B");
    }
}
