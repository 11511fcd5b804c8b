//! Short-lived HS256 tokens signed from a key id and secret, as Zhipu's GLM API (and others
//! like it) takes instead of a static key: `{"alg":"HS256","sign_type":"SIGN"}` over
//! `{"api_key": id, "exp": ms, "timestamp": ms}`. Tokens are cached and signed anew a while
//! before they expire. No I/O here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::JwtAuth;

/// A signed token for `key_id`, valid for `ttl` from `now_ms` (Unix milliseconds).
pub fn sign(key_id: &str, secret: &[u8], now_ms: u64, ttl: Duration) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","sign_type":"SIGN"}"#);
    let exp = now_ms.saturating_add(ttl.as_millis().min(u64::MAX as u128) as u64);
    let claims = serde_json::json!({"api_key": key_id, "exp": exp, "timestamp": now_ms});
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signing_input = format!("{header}.{payload}");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(signing_input.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{signature}")
}

/// The current token of every JWT-authenticated provider, by provider name.
#[derive(Default)]
pub struct JwtTokens {
    tokens: Mutex<HashMap<String, (Arc<str>, Instant)>>,
}

impl JwtTokens {
    /// A token with at least a fifth of its lifetime left, signed now if needed.
    pub fn token(&self, provider: &str, auth: &JwtAuth) -> Arc<str> {
        let mut tokens = self.tokens.lock().expect("token lock is never poisoned");
        if let Some((token, renew_at)) = tokens.get(provider) {
            if Instant::now() < *renew_at {
                return token.clone();
            }
        }
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let token: Arc<str> = Arc::from(sign(
            &auth.key_id,
            auth.secret.expose().as_bytes(),
            now_ms,
            auth.ttl,
        ));
        let renew_at = Instant::now() + auth.ttl.mul_f64(0.8);
        tokens.insert(provider.to_string(), (token.clone(), renew_at));
        token
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_a_verifiable_token_with_the_claims() {
        let t = sign(
            "id-1",
            b"secret",
            1_700_000_000_000,
            Duration::from_secs(60),
        );
        let parts: Vec<&str> = t.split('.').collect();
        assert_eq!(parts.len(), 3);
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["api_key"], "id-1");
        assert_eq!(claims["exp"], 1_700_000_060_000u64);
        let mut mac = Hmac::<Sha256>::new_from_slice(b"secret").unwrap();
        mac.update(format!("{}.{}", parts[0], parts[1]).as_bytes());
        mac.verify_slice(&URL_SAFE_NO_PAD.decode(parts[2]).unwrap())
            .expect("the signature verifies");
    }
}
