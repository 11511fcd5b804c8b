//! The admin listener: the JSON API under `/admin/` and the console (its page, and the
//! `/console/api/` it calls). Off unless `admin:` is configured; it listens on its own address
//! only, never on the public one. Every API request needs the admin key, or a console session
//! (signed in with that key) whose state-changing requests echo the session's CSRF token.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use pingora::protocols::http::ServerSession;
use serde::Deserialize;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;

use crate::http_app;
use crate::proxy::Gateway;

mod api;
mod console;
mod csv;
mod keys;
mod lockout;
mod openapi;
pub(crate) mod reload;
mod sessions;

use reload::Reloader;
use sessions::Sessions;

/// The most a request to the admin listener may carry (a config file edit); read only once
/// the caller is known.
const MAX_BODY: usize = 4 * 1024 * 1024;
/// The most a sign-in may carry (`{"key"}`), read before the caller is known.
const MAX_LOGIN_BODY: usize = 4 * 1024;

pub(crate) struct Admin {
    gateway: Arc<Gateway>,
    reloader: Arc<Reloader>,
    sessions: Sessions,
    lockout: lockout::Lockout,
}

/// What an admin request gets.
enum Reply {
    Json {
        status: u16,
        body: Value,
        headers: Vec<(String, String)>,
    },
    Asset {
        content_type: &'static str,
        body: &'static [u8],
    },
    /// Already written (a stream); whether the connection may be reused.
    Written(bool),
    /// A list exported as CSV (`?format=csv`).
    Csv(String),
}

impl From<(u16, Value)> for Reply {
    fn from((status, body): (u16, Value)) -> Self {
        Reply::Json {
            status,
            body,
            headers: Vec::new(),
        }
    }
}

/// Config problems as JSON: each with the path of the field it is about.
fn problems_json(problems: &crate::config::Problems) -> Value {
    problems
        .0
        .iter()
        .map(|p| json!({"path": p.path, "message": p.message}))
        .collect()
}

fn error(status: u16, kind: &str, message: &str) -> (u16, Value) {
    (status, json!({"error": {"type": kind, "message": message}}))
}

/// Who is calling.
enum Caller {
    /// With the admin key itself (scripts, `curl`).
    Key,
    /// A console session: its cookie token and CSRF token.
    Session { token: String, csrf: String },
}

impl Admin {
    pub(crate) fn new(gateway: Arc<Gateway>, reloader: Arc<Reloader>) -> Self {
        Admin {
            gateway,
            reloader,
            sessions: Sessions::default(),
            lockout: Default::default(),
        }
    }

    fn admin_key_is(&self, presented: &[u8]) -> bool {
        // The key of the config now in force (a reload can change it).
        let config = self.gateway.config();
        config
            .admin
            .as_ref()
            .is_some_and(|a| bool::from(a.key.expose().as_bytes().ct_eq(presented)))
    }

    /// The fingerprint of the admin key in force: sessions of any other key have ended.
    fn admin_key_fingerprint(&self) -> Option<[u8; 32]> {
        let config = self.gateway.config();
        let admin = config.admin.as_ref()?;
        Some(sessions::key_fingerprint(admin.key.expose()))
    }

    fn caller(&self, http: &ServerSession) -> Option<Caller> {
        let h = &http.req_header().headers;
        let presented = crate::traffic::auth::presented_key(
            h.get("authorization").map(|v| v.as_bytes()),
            h.get("x-api-key").map(|v| v.as_bytes()),
        );
        if let Some(p) = presented {
            let ip = peer_ip(http);
            if self.admin_key_is(p) {
                self.lockout.succeeded(ip);
                return Some(Caller::Key);
            }
            self.lockout.failed(ip, "API");
        }
        let cookie = h.get("cookie").and_then(|v| v.to_str().ok())?;
        let token = sessions::cookie_token(cookie)?;
        let csrf = self.sessions.csrf(token, self.admin_key_fingerprint())?;
        Some(Caller::Session {
            token: token.to_string(),
            csrf,
        })
    }

    async fn route(&self, http: &mut ServerSession) -> Reply {
        let method = http.req_header().method.as_str().to_string();
        let path = http.req_header().uri.path().to_string();
        if let ("GET", Some((content_type, body))) = (method.as_str(), console::assets::find(&path))
        {
            return Reply::Asset { content_type, body };
        }
        // An address guessing the key waits before it may present another.
        if let Some(wait) = self.lockout.wait(peer_ip(http)) {
            return Reply::Json {
                status: 429,
                body: error(
                    429,
                    "rate_limit_error",
                    "Too many wrong admin keys from this address; try again later.",
                )
                .1,
                headers: vec![("retry-after".into(), wait.as_secs().max(1).to_string())],
            };
        }
        if (method.as_str(), path.as_str()) == ("POST", "/console/login") {
            let deadline = self.gateway.config().server.clients.body_timeout;
            return match http_app::read_body_within(http, MAX_LOGIN_BODY, deadline).await {
                Ok(body) => self.login(http, &body),
                Err(_) => Reply::Written(false),
            };
        }
        let Some(caller) = self.caller(http) else {
            return error(
                401,
                "authentication_error",
                "The admin key is missing or wrong.",
            )
            .into();
        };
        if method != "GET" {
            if let Err(e) = cross_site_check(http, &caller) {
                return e.into();
            }
        }
        // Only a caller who may use the admin API gets its body read.
        let deadline = self.gateway.config().server.clients.body_timeout;
        let body = match http_app::read_body_within(http, MAX_BODY, deadline).await {
            Ok(b) => b,
            Err(http_app::BodyError::TooLarge { limit }) => {
                let message = format!("The request body is over {limit} bytes.");
                return error(413, "invalid_request_error", &message).into();
            }
            Err(http_app::BodyError::Late) => {
                return error(
                    408,
                    "invalid_request_error",
                    "The request body came too slowly.",
                )
                .into()
            }
            Err(http_app::BodyError::Read(_)) => return Reply::Written(false),
        };
        let actor = actor(http, &caller);
        if let Some(answer) = self.keys_api(&method, &path, &body, &actor).await {
            return answer.into();
        }
        if (method.as_str(), path.as_str()) == ("GET", "/openapi.json") {
            return (200, openapi::document(&self.gateway.config())).into();
        }
        if path.starts_with("/admin/") {
            let query = http.req_header().uri.query().unwrap_or("").to_string();
            let (status, body) = self.api(&method, &path, &query).await;
            if (method.as_str(), path.as_str(), status) == ("POST", "/admin/reload", 200) {
                self.record(&actor, "config.reload", None, json!({}));
            }
            let csv =
                form_urlencoded::parse(query.as_bytes()).any(|(k, v)| k == "format" && v == "csv");
            if csv && status == 200 && matches!(path.as_str(), "/admin/logs" | "/admin/usage") {
                return Reply::Csv(csv::from_list(&body));
            }
            return (status, body).into();
        }
        if let ("POST", "/console/logout", Caller::Session { token, .. }) =
            (method.as_str(), path.as_str(), &caller)
        {
            self.sessions.end(token);
            return Reply::Json {
                status: 200,
                body: json!({"signed_out": true}),
                headers: vec![("set-cookie".into(), sessions::clear_cookie())],
            };
        }
        if let Some(api) = path.strip_prefix("/console/api/") {
            if let ("GET", "session", Caller::Session { csrf, .. }) =
                (method.as_str(), api, &caller)
            {
                return (200, json!({"csrf": csrf})).into();
            }
            let reply = self.console(http, &method, api, &body).await;
            // What a console save changed: the config file, an app, a workflow.
            if let ("POST", "routes/save" | "apps/save" | "workflows/save") = (method.as_str(), api)
            {
                if matches!(reply, Reply::Json { status, .. } if status < 400) {
                    let saved = serde_json::from_slice::<Value>(&body)
                        .ok()
                        .and_then(|b| b.get("name").cloned());
                    let action = format!("{}.save", api.trim_end_matches("/save"));
                    self.record(&actor, &action, None, json!({"name": saved}));
                }
            }
            return reply;
        }
        error(404, "invalid_request_error", "Unknown admin path.").into()
    }

    /// `POST /console/login {"key"}`: a session for the admin key.
    fn login(&self, http: &ServerSession, body: &[u8]) -> Reply {
        #[derive(Deserialize)]
        struct Login {
            key: String,
        }
        let ip = peer_ip(http);
        // One snapshot for the check and the session: a reload between them cannot hand the
        // old key a session of the new one.
        let config = self.gateway.config();
        let admin_key = config.admin.as_ref().map(|a| a.key.expose());
        let key = serde_json::from_slice::<Login>(body).map(|l| l.key);
        let Some(admin_key) =
            admin_key.filter(|a| key.is_ok_and(|k| bool::from(a.as_bytes().ct_eq(k.as_bytes()))))
        else {
            self.lockout.failed(ip, "sign-in");
            return error(401, "authentication_error", "That is not the admin key.").into();
        };
        self.lockout.succeeded(ip);
        let started = self.sessions.start(sessions::key_fingerprint(admin_key));
        Reply::Json {
            status: 200,
            body: json!({"csrf": started.csrf}),
            headers: vec![("set-cookie".into(), sessions::set_cookie(&started.token))],
        }
    }
}

/// A state-changing request from a console session must carry the session's CSRF token and,
/// when the browser names an origin, come from the console's own.
fn cross_site_check(http: &ServerSession, caller: &Caller) -> Result<(), (u16, Value)> {
    let Caller::Session { csrf, .. } = caller else {
        return Ok(());
    };
    let h = &http.req_header().headers;
    let forbidden = |m| error(403, "permission_error", m);
    let sent = h.get(sessions::CSRF_HEADER).and_then(|v| v.to_str().ok());
    if !sent.is_some_and(|s| sessions::same(s, csrf)) {
        return Err(forbidden("The request lacks the console's CSRF token."));
    }
    let host = h.get("host").and_then(|v| v.to_str().ok()).unwrap_or("");
    if let Some(origin) = h.get("origin").and_then(|v| v.to_str().ok()) {
        let own = [format!("http://{host}"), format!("https://{host}")];
        if !own.iter().any(|o| o == origin) {
            return Err(forbidden("Cross-site requests are not accepted."));
        }
    }
    Ok(())
}

/// What every console page and answer carries: no framing, no third-party anything.
const PAGE_HEADERS: [(&str, &str); 4] = [
    (
        "content-security-policy",
        "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    ),
    ("x-frame-options", "DENY"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
];

/// The address of the admin listener's peer.
/// Who is acting, for the audit trail: the admin key, or a console session (named by the
/// start of its token's SHA-256, never the token).
fn actor(http: &ServerSession, caller: &Caller) -> keys::Actor {
    let who = match caller {
        Caller::Key => "admin key".to_string(),
        Caller::Session { token, .. } => {
            let hash = crate::config::hex(&crate::config::key_hash(token.as_bytes()));
            format!("console session {}", &hash[..12])
        }
    };
    keys::Actor {
        who,
        ip: peer_ip(http).map(|ip| ip.to_string()),
    }
}

fn peer_ip(http: &ServerSession) -> Option<std::net::IpAddr> {
    http.client_addr()?.as_inet().map(|a| a.ip())
}

#[async_trait]
impl http_app::Handler for Admin {
    async fn handle(&self, http: &mut ServerSession) -> bool {
        let reply = self.route(http).await;
        // A body left unread (an unknown caller's) is not drained: the connection closes.
        if !http.is_body_empty() && !http.is_body_done() {
            http.set_keepalive(None);
        }
        let mut headers: Vec<(String, String)> = PAGE_HEADERS
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let body = match reply {
            Reply::Written(reusable) => return reusable,
            Reply::Csv(text) => {
                headers.push(("content-type".into(), "text/csv; charset=utf-8".into()));
                headers.push(("cache-control".into(), "no-store".into()));
                let name = "attachment; filename=\"modelmux-export.csv\"";
                headers.push(("content-disposition".into(), name.into()));
                Bytes::from(text)
            }
            Reply::Asset { content_type, body } => {
                headers.push(("content-type".into(), content_type.into()));
                headers.push(("cache-control".into(), "no-cache".into()));
                Bytes::from_static(body)
            }
            Reply::Json {
                status,
                body,
                headers: extra,
            } => {
                headers.push(("content-type".into(), "application/json".into()));
                headers.push(("cache-control".into(), "no-store".into()));
                headers.extend(extra);
                let body = Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
                return http_app::respond(http, status, &headers, body)
                    .await
                    .is_ok();
            }
        };
        http_app::respond(http, 200, &headers, body).await.is_ok()
    }
}
