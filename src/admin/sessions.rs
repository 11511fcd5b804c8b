//! Console sign-in: a session is an unguessable token kept in an HttpOnly, SameSite=Strict
//! cookie, with a second token the page must echo in a header on every state-changing request
//! (so another site can neither read nor forge one).

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
    pub(crate) fn start(&self) -> Started {
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
            },
        );
        Started { token, csrf }
    }

    /// The CSRF token of a live session.
    pub(crate) fn csrf(&self, token: &str) -> Option<String> {
        let live = self.live.lock().expect("sessions lock");
        live.get(token)
            .filter(|s| s.expires > Instant::now())
            .map(|s| s.csrf.clone())
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
        let started = s.start();
        let header = format!("a=b; {COOKIE}={}; c=d", started.token);
        let token = cookie_token(&header).unwrap();
        assert_eq!(s.csrf(token).as_deref(), Some(started.csrf.as_str()));
        assert!(s.csrf("forged").is_none());
        s.end(token);
        assert!(s.csrf(token).is_none());
        assert_ne!(started.token, started.csrf);
    }
}
