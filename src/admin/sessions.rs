//! Console sign-in: a session is an unguessable token kept in an HttpOnly, SameSite=Strict
//! cookie, with a second token the page must echo in a header on every state-changing request
//! (so another site can neither read nor forge one). A session belongs to the admin key it
//! signed in with: once the key changes (a reload), every session of the old key has ended.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use subtle::ConstantTimeEq;

pub(crate) const COOKIE: &str = "modelmux_console";
pub(crate) const CSRF_HEADER: &str = "x-csrf-token";
/// A session lasts this long from sign-in.
const LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// More sessions than this and the oldest are dropped: sign-ins cannot grow memory forever.
const MAX_SESSIONS: usize = 1000;

struct Session {
    csrf: String,
    expires: Instant,
    /// The SHA-256 of the admin key the session signed in with.
    key: [u8; 32],
}

/// What a session remembers of the admin key: its hash, never the key.
pub(crate) fn key_fingerprint(key: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(key.as_bytes()).into()
}

#[derive(Default)]
pub(crate) struct Sessions {
    live: Mutex<HashMap<String, Session>>,
}

/// A new session: the cookie's token and the CSRF token.
pub(crate) struct Started {
    pub(crate) token: String,
    pub(crate) csrf: String,
}

impl Sessions {
    pub(crate) fn start(&self, key: [u8; 32]) -> Started {
        let token = crate::random::token();
        let csrf = crate::random::token();
        let mut live = self.live.lock().expect("sessions lock");
        let now = Instant::now();
        live.retain(|_, s| s.expires > now);
        if live.len() >= MAX_SESSIONS {
            if let Some(oldest) = live
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone())
            {
                live.remove(&oldest);
            }
        }
        live.insert(
            token.clone(),
            Session {
                csrf: csrf.clone(),
                expires: now + LIFETIME,
                key,
            },
        );
        Started { token, csrf }
    }

    /// The CSRF token of a live session signed in with the admin key now in force (`key`, its
    /// fingerprint); a session of another key is ended here.
    pub(crate) fn csrf(&self, token: &str, key: Option<[u8; 32]>) -> Option<String> {
        let mut live = self.live.lock().expect("sessions lock");
        let session = live.get(token)?;
        if session.expires > Instant::now()
            && key.is_some_and(|k| bool::from(k.ct_eq(&session.key)))
        {
            return Some(session.csrf.clone());
        }
        live.remove(token);
        None
    }

    pub(crate) fn end(&self, token: &str) {
        self.live.lock().expect("sessions lock").remove(token);
    }
}

/// The session token from a `Cookie` header.
pub(crate) fn cookie_token(cookie_header: &str) -> Option<&str> {
    cookie_header
        .split(';')
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v)
}

pub(crate) fn same(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

pub(crate) fn set_cookie(token: &str) -> String {
    format!(
        "{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        LIFETIME.as_secs()
    )
}

pub(crate) fn clear_cookie() -> String {
    format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_found_by_its_cookie_until_it_ends() {
        let s = Sessions::default();
        let fingerprint = key_fingerprint("sk-admin");
        let key = Some(fingerprint);
        let started = s.start(fingerprint);
        let header = format!("a=b; {COOKIE}={}; c=d", started.token);
        let token = cookie_token(&header).unwrap();
        assert_eq!(s.csrf(token, key).as_deref(), Some(started.csrf.as_str()));
        assert!(s.csrf("forged", key).is_none());
        s.end(token);
        assert!(s.csrf(token, key).is_none());
        assert_ne!(started.token, started.csrf);
    }

    #[test]
    fn a_new_admin_key_ends_the_old_keys_sessions() {
        let s = Sessions::default();
        let started = s.start(key_fingerprint("sk-old"));
        assert!(s
            .csrf(&started.token, Some(key_fingerprint("sk-new")))
            .is_none());
        // Ended, not hidden: the old key coming back does not revive it.
        assert!(s
            .csrf(&started.token, Some(key_fingerprint("sk-old")))
            .is_none());
        assert!(s
            .csrf(&s.start(key_fingerprint("sk-old")).token, None)
            .is_none());
    }
}
