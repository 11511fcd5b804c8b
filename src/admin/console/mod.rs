//! The console's API (`/console/api/...`), behind the admin listener's sign-in: the models to
//! pick from, the playground (streamed through this gateway's own API as a chosen client key),
//! what each vendor would receive, code generation, and the routes editor.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{error, problems_json, Admin, Reply};
use crate::codegen;
use crate::config::Config;

pub(super) mod assets;
mod flows;
mod preview;
mod routes;

impl Admin {
    pub(super) async fn console(
        &self,
        http: &mut ServerSession,
        method: &str,
        api: &str,
        body: &[u8],
    ) -> Reply {
        let config = self.gateway.config();
        match (method, api) {
            ("GET", "overview") => (200, overview(&config)).into(),
            ("POST", "playground") => self.playground(http, &config, body).await,
            ("POST", "preview") => match preview::preview(&config, body) {
                Ok(v) => (200, v).into(),
                Err(e) => (e.status(), json!({"error": {"message": e.message}})).into(),
            },
            ("POST", "code") => match serde_json::from_slice::<codegen::Spec>(body)
                .map_err(|e| e.to_string())
                .and_then(|spec| codegen::generate(&spec))
            {
                Ok(code) => (200, serde_json::to_value(code).unwrap_or_default()).into(),
                Err(e) => error(400, "invalid_request_error", &e).into(),
            },
            ("GET", "routes") => self.routes().into(),
            ("GET", "apps") => (200, flows::apps(&config)).into(),
            ("GET", "workflows") => (200, flows::workflows(&config)).into(),
            ("POST", "apps/save") => self.save_flow(&config, body, Flow::App).await.into(),
            ("POST", "workflows/save") => {
                self.save_flow(&config, body, Flow::Workflow).await.into()
            }
            ("POST", "routes/check") => self.check_routes(body, false).await.into(),
            ("POST", "routes/save") => self.check_routes(body, true).await.into(),
            _ => error(404, "invalid_request_error", "Unknown console path.").into(),
        }
    }

    /// Runs the playground's request (one model, or several through `/v1/compare`) on this
    /// gateway's own API as the chosen client key, and streams its answer to the page.
    async fn playground(&self, http: &mut ServerSession, config: &Config, body: &[u8]) -> Reply {
        #[derive(Deserialize)]
        struct Playground {
            /// The client key to act as, by name.
            key: Option<String>,
            /// An app's or workflow's API path; else chat, or compare for several models.
            path: Option<String>,
            body: Value,
        }
        let Ok(p) = serde_json::from_slice::<Playground>(body) else {
            return error(
                400,
                "invalid_request_error",
                "Expected {\"key\", \"body\"}.",
            )
            .into();
        };
        // The playground calls the gateway as a key whose secret the config holds: a key kept
        // only as a hash cannot be presented (by design, nobody can).
        let key = match &p.key {
            Some(name) => config.keys.iter().find(|k| &k.name == name),
            None => config.keys.iter().find(|k| k.key.is_some()),
        };
        let Some(key) = key else {
            return error(400, "invalid_request_error", "No such client key.").into();
        };
        let Some(secret) = &key.key else {
            let message = "This key is kept only as a hash: the playground cannot present it. Pick a key the config gives as `key:`.";
            return error(400, "invalid_request_error", message).into();
        };
        let path = match &p.path {
            // Runs of what the console builds: an app or a workflow.
            Some(path)
                if (path.starts_with("/v1/apps/") && path.ends_with("/completions"))
                    || (path.starts_with("/v1/workflows/") && path.ends_with("/run")) =>
            {
                path.as_str()
            }
            // The same request in another client API, for the playground's API switch.
            Some(path) if path == "/v1/responses" || path == "/v1/messages" => path.as_str(),
            Some(_) => {
                return error(400, "invalid_request_error", "Not a path the console runs.").into()
            }
            None if p.body.get("models").is_some() => "/v1/compare",
            None => "/v1/chat/completions",
        };
        let request = Bytes::from(serde_json::to_vec(&p.body).unwrap_or_default());
        let mut exchange = match self.gateway.call_self(path, secret.expose(), request).await {
            Ok(ex) => ex,
            Err(e) => return (e.status(), json!({"error": {"message": e.message}})).into(),
        };
        let content_type = exchange
            .header_str("content-type")
            .unwrap_or("application/json")
            .to_string();
        let Ok(mut header) = ResponseHeader::build(exchange.status(), Some(4)) else {
            return Reply::Written(false);
        };
        let _ = header.insert_header("content-type", content_type);
        let _ = header.insert_header("cache-control", "no-store");
        if http.write_response_header(Box::new(header)).await.is_err() {
            return Reply::Written(false);
        }
        loop {
            match exchange.next_chunk().await {
                Ok(Some(chunk)) => {
                    if http.write_response_body(chunk, false).await.is_err() {
                        return Reply::Written(false);
                    }
                }
                Ok(None) => break,
                Err(_) => return Reply::Written(false),
            }
        }
        Reply::Written(http.finish_body().await.is_ok())
    }

    fn routes(&self) -> (u16, Value) {
        match std::fs::read_to_string(self.reloader.path()) {
            Ok(file) => {
                let text = routes::models_text(&file);
                let models = routes::section_json(&text).unwrap_or(Value::Null);
                let read_only = read_only(config_dir(self.reloader.path()));
                (
                    200,
                    json!({"yaml": text, "models": models, "path": self.reloader.path(),
                           "read_only": read_only}),
                )
            }
            Err(e) => error(
                500,
                "server_error",
                &format!("cannot read the config file: {e}"),
            ),
        }
    }

    /// Checks an edit (`{"yaml"}` or the form's `{"models"}`) against the whole file; with
    /// `save`, writes it and reloads.
    async fn check_routes(&self, body: &[u8], save: bool) -> (u16, Value) {
        let Ok(edit) = serde_json::from_slice::<Value>(body) else {
            return error(
                400,
                "invalid_request_error",
                "Expected {\"yaml\"} or {\"models\"}.",
            );
        };
        let section = match (edit.get("yaml").and_then(Value::as_str), edit.get("models")) {
            (Some(yaml), _) => yaml.to_string(),
            (None, Some(models)) => {
                let current = std::fs::read_to_string(self.reloader.path()).unwrap_or_default();
                routes::section_yaml(models, &routes::models_text(&current))
            }
            (None, None) => {
                return error(
                    400,
                    "invalid_request_error",
                    "Expected {\"yaml\"} or {\"models\"}.",
                )
            }
        };
        if let Err(problems) = routes::bounded(&section) {
            return (400, json!({"problems": problems_json(&problems)}));
        }
        let path = self.reloader.path().to_string();
        let file = match std::fs::read_to_string(&path) {
            Ok(f) => f,
            Err(e) => return error(500, "server_error", &format!("cannot read {path}: {e}")),
        };
        let models = routes::section_json(&section).unwrap_or(Value::Null);
        let diff = routes::diff(&routes::models_text(&file), &section);
        let base = std::path::Path::new(&path).parent();
        let new_file = match routes::check(&file, &section, base) {
            Ok(f) => f,
            Err(problems) => {
                return (
                    400,
                    json!({"yaml": section, "models": models, "diff": diff,
                           "problems": problems_json(&problems)}),
                )
            }
        };
        if !save {
            return (
                200,
                json!({"yaml": section, "models": models, "diff": diff, "problems": []}),
            );
        }
        if let Some(reason) = read_only(config_dir(&path)) {
            return error(409, "invalid_request_error", &reason);
        }
        if let Err(e) = routes::save(&path, &new_file) {
            return error(500, "server_error", &format!("cannot write {path}: {e}"));
        }
        let (status, reloaded) = self.reload().await;
        (
            status,
            json!({"saved": true, "reload": reloaded, "yaml": section, "models": models}),
        )
    }
}

/// What the console saves besides routes.
#[derive(Clone, Copy)]
enum Flow {
    App,
    Workflow,
}

impl Admin {
    /// Checks and saves an app (`{"app"}`) or a workflow (`{"workflow"}`) as its YAML file, then
    /// reloads; the problems at their fields otherwise, with nothing written.
    async fn save_flow(&self, config: &Config, body: &[u8], flow: Flow) -> (u16, Value) {
        let edit: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let unreadable = |e: serde_json::Error| {
            (
                400,
                json!({"problems": [{"path": "", "message": e.to_string()}]}),
            )
        };
        let (name, dir, checked) = match flow {
            Flow::App => {
                match serde_json::from_value::<crate::flows::apps::App>(edit["app"].clone()) {
                    Ok(app) => (
                        app.name.clone(),
                        config.apps.dir.clone(),
                        flows::check_app(config, &app),
                    ),
                    Err(e) => return unreadable(e),
                }
            }
            Flow::Workflow => {
                match serde_json::from_value::<crate::flows::workflow::Workflow>(
                    edit["workflow"].clone(),
                ) {
                    Ok(wf) => (
                        wf.name.clone(),
                        config.workflows.dir.clone(),
                        flows::check_workflow(config, &wf),
                    ),
                    Err(e) => return unreadable(e),
                }
            }
        };
        let yaml = match checked {
            Ok(yaml) => yaml,
            Err(problems) => return (400, json!({"problems": problems})),
        };
        let Some(dir) = dir else {
            let section = match flow {
                Flow::App => "apps",
                Flow::Workflow => "workflows",
            };
            return error(
                400,
                "invalid_request_error",
                &format!("Set `{section}.dir` in the config to save here."),
            );
        };
        if let Some(reason) = read_only(&dir) {
            return error(409, "invalid_request_error", &reason);
        }
        if let Err(e) = flows::save(&dir, &name, &yaml) {
            return error(
                500,
                "server_error",
                &format!("cannot write in {}: {e}", dir.display()),
            );
        }
        let (status, reloaded) = self.reload().await;
        (
            status,
            json!({"saved": true, "yaml": yaml, "reload": reloaded}),
        )
    }
}

/// The public models grouped by the vendor that serves each first, the client keys to act as
/// (names only), and each model's route for the generated YAML.
/// What a model answers, judged from its vendor models' names (the config does not say):
/// `embeddings`, `images` or `chat`. The playground offers only chat models.
fn answers(m: &crate::config::PublicModel) -> &'static str {
    const IMAGES: [&str; 7] = [
        "dall-e",
        "gpt-image",
        "wanx",
        "sd_xl",
        "imagen",
        "flux",
        "-image",
    ];
    let named = |t: &crate::config::Target, words: &[&str]| {
        let name = t.model.to_ascii_lowercase();
        words.iter().any(|w| name.contains(w))
    };
    match m.targets.first() {
        Some(t) if named(t, &["embed"]) => "embeddings",
        Some(t) if named(t, &IMAGES) => "images",
        _ => "chat",
    }
}

fn overview(config: &Config) -> Value {
    let models: Vec<Value> = config
        .models
        .iter()
        .map(|m| {
            let kind = m.targets.first().map_or("none", |t| t.provider.vendor.kind());
            json!({
                "name": m.name,
                "vendor": kind,
                "kind": answers(m),
                "targets": m.targets.iter().map(|t| format!("{}/{}", t.provider.name, t.model)).collect::<Vec<_>>(),
                "route": {"targets": m.targets.iter().map(|t| json!({
                    "provider": t.provider.name, "model": t.model, "weight": t.weight, "priority": t.priority,
                })).collect::<Vec<_>>()},
                "price": m.price.as_ref().map(super::api::price_json),
            })
        })
        .collect();
    let listen = config.server.listen.first().cloned().unwrap_or_default();
    let scheme = if config.server.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let base = format!("{scheme}://{}", listen.replace("0.0.0.0", "127.0.0.1"));
    json!({
        "models": models,
        "keys": config.keys.iter().map(|k| k.name.clone()).collect::<Vec<_>>(),
        "providers": config.providers.iter().map(|p| json!({"name": p.name, "kind": p.vendor.kind()})).collect::<Vec<_>>(),
        "base_url": base,
    })
}

/// The directory of the config file (the save writes a file beside it and renames it).
fn config_dir(path: &str) -> &std::path::Path {
    std::path::Path::new(path)
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."))
}

/// Why the console cannot save into `dir` here (a read-only mount, systemd's
/// `ProtectSystem=strict`, no permission), or None when it can: the console then says so
/// instead of failing on every save.
pub(crate) fn read_only(dir: &std::path::Path) -> Option<String> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: a NUL-terminated path that outlives the call; access(2) only reads it.
    if unsafe { libc::access(path.as_ptr(), libc::W_OK) } == 0 {
        return None;
    }
    let e = std::io::Error::last_os_error();
    Some(format!(
        "{} is read-only here ({e}): edit the config where it is deployed (the ConfigMap, /etc/modelmux), then reload",
        dir.display()
    ))
}
