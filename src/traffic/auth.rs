//! Client authentication: the gateway's own keys, never the vendors'.

use subtle::ConstantTimeEq;

use crate::config::ClientKey;
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

/// Finds the client's key, by its position in `keys`. Every configured key is compared in
/// constant time and the loop never exits early, so response timing tells nothing about how
/// much of a guess was right.
pub(crate) fn authenticate(keys: &[ClientKey], presented: Option<&[u8]>) -> GwResult<usize> {
    let Some(presented) = presented else {
        return Err(GatewayError::new(
            ErrorKind::MissingKey,
            "You didn't provide an API key. Provide it in the Authorization header (Authorization: Bearer YOUR_KEY).",
        )
        .with_code("missing_api_key"));
    };
    let mut found = None;
    for (i, k) in keys.iter().enumerate() {
        if bool::from(k.key.expose().as_bytes().ct_eq(presented)) {
            found = Some(i);
        }
    }
    found.ok_or_else(|| {
        GatewayError::new(ErrorKind::InvalidKey, "Incorrect API key provided.")
            .with_code("invalid_api_key")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ModelAccess, Secret};

    fn keys() -> Vec<ClientKey> {
        vec![
            ClientKey {
                name: "a".into(),
                key: Secret::new("sk-aaaaaaaa"),
                models: ModelAccess::All,
                limits: Default::default(),
                budget: None,
            },
            ClientKey {
                name: "b".into(),
                key: Secret::new("sk-bbbbbbbb"),
                models: ModelAccess::All,
                limits: Default::default(),
                budget: None,
            },
        ]
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

    #[test]
    fn finds_the_right_key_or_says_why_not() {
        let ks = keys();
        assert_eq!(
            ks[authenticate(&ks, Some(b"sk-bbbbbbbb")).unwrap()].name,
            "b"
        );
        assert_eq!(
            authenticate(&ks, Some(b"sk-bbbbbbb")).unwrap_err().status(),
            401
        );
        assert_eq!(
            authenticate(&ks, None).unwrap_err().kind,
            ErrorKind::MissingKey
        );
    }
}
