//! Hot reload: the config file is read and validated by the same code as `modelmux check`; a
//! valid one replaces the live snapshot in one atomic swap (requests in flight finish on the
//! one they started with), an invalid one changes nothing and its problems are reported.
//! Breakers, limit buckets and budget spend are kept by name, so they survive for targets,
//! keys and models that still exist. Triggered by `SIGHUP`, `POST /admin/reload`, and, with
//! `server.watch_config`, by changes to the file.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::config::{self, Config, LiveConfig, Problems};
use crate::metrics;

/// Called with each config put in force (a listener's certificate, say).
pub(crate) type OnReload = Box<dyn Fn(&Config) + Send + Sync>;

pub(crate) struct Reloader {
    path: String,
    live: Arc<LiveConfig>,
    /// One reload at a time: two at once could swap in the older file last.
    running: Mutex<()>,
    hooks: Vec<OnReload>,
}

/// A reload that went through, with what it could not apply without a restart.
pub(crate) struct Reloaded {
    pub(crate) warnings: Vec<String>,
    pub(crate) config: Arc<Config>,
}

impl Reloader {
    pub(crate) fn new(path: String, live: Arc<LiveConfig>, hooks: Vec<OnReload>) -> Self {
        Reloader {
            path,
            live,
            running: Mutex::new(()),
            hooks,
        }
    }

    /// The config file this reloads.
    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    pub(crate) fn reload(&self) -> Result<Reloaded, Problems> {
        let _one = self.running.lock().expect("reload lock is never poisoned");
        let result = config::load_file(&self.path);
        metrics::RELOADS
            .with_label_values(&[if result.is_ok() { "ok" } else { "rejected" }])
            .inc();
        let new = Arc::new(result.inspect_err(|problems| {
            log::error!(
                "config reload rejected, the running config stays: {} problem(s)\n{problems}",
                problems.0.len()
            )
        })?);
        let old = self.live.current();
        let mut warnings = needs_restart(&old, &new);
        // Not refused (the file is the operator's word), but never silent.
        for name in self.live.shadowed_runtime_keys(&new) {
            warnings.push(format!(
                "keys: `{name}` in the file takes the place of the runtime key of that name, whose secret no longer opens the gateway; revoke the runtime key or rename one of them"
            ));
        }
        for w in &warnings {
            log::warn!("config reload: {w}");
        }
        let new = self.live.replace(new);
        for hook in &self.hooks {
            hook(&new);
        }
        log::info!(
            "config reloaded from {}: {} providers, {} models, {} keys",
            self.path,
            new.providers.len(),
            new.models.len(),
            new.keys.len()
        );
        Ok(Reloaded {
            warnings,
            config: new,
        })
    }
}

/// What a reload cannot change in a running process.
fn needs_restart(old: &Config, new: &Config) -> Vec<String> {
    let mut out = Vec::new();
    let mut check = |changed: bool, what: &str| {
        if changed {
            out.push(format!("{what} changed: it takes effect after a restart"));
        }
    };
    check(old.server.listen != new.server.listen, "server.listen");
    check(old.server.threads != new.server.threads, "server.threads");
    check(
        old.server.tls.is_some() != new.server.tls.is_some(),
        "server.tls (on or off)",
    );
    check(old.metrics_listen != new.metrics_listen, "metrics.listen");
    check(
        old.admin.as_ref().map(|a| &a.listen) != new.admin.as_ref().map(|a| &a.listen),
        "admin.listen",
    );
    check(old.limits_backend != new.limits_backend, "limits");
    check(
        old.log.path != new.log.path || old.log.format != new.log.format,
        "log",
    );
    check(
        old.breaker != new.breaker,
        "breaker (for breakers that already exist)",
    );
    out
}

/// Reloads on `SIGHUP` and, with `server.watch_config`, when the file changes.
pub(crate) struct ReloadTriggers {
    pub(crate) reloader: Arc<Reloader>,
    pub(crate) watch: bool,
}

#[async_trait]
impl BackgroundService for ReloadTriggers {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                log::error!("cannot listen for SIGHUP: {e}");
                return;
            }
        };
        let (changed_tx, mut changed) = tokio::sync::mpsc::channel::<()>(1);
        let _watcher = self
            .watch
            .then(|| watch(&self.reloader.path, changed_tx))
            .flatten();
        loop {
            tokio::select! {
                _ = hangup.recv() => {}
                Some(()) = changed.recv() => {
                    // Editors write in several steps: let the file settle.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    while changed.try_recv().is_ok() {}
                }
                _ = shutdown.changed() => return,
            }
            let reloader = self.reloader.clone();
            let _ = tokio::task::spawn_blocking(move || reloader.reload()).await;
        }
    }
}

/// What the config file holds now (through any symlinks), to tell a change from a touch.
fn fingerprint(path: &std::path::Path) -> Option<[u8; 32]> {
    use sha2::Digest;
    std::fs::read(path)
        .ok()
        .map(|b| sha2::Sha256::digest(b).into())
}

/// Watches the config file's directory and sends a note whenever what the file holds changes.
/// Any event in the directory is checked, not only those naming the file: editors replace
/// files rather than write them, and a Kubernetes ConfigMap is updated by swapping the
/// `..data` symlink the file points through, which names neither.
fn watch(path: &str, changed: tokio::sync::mpsc::Sender<()>) -> Option<notify::RecommendedWatcher> {
    use notify::{RecursiveMode, Watcher};
    let file = std::path::PathBuf::from(path);
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let last = std::sync::Mutex::new(fingerprint(&file));
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_err() {
            return;
        }
        let now = fingerprint(&file);
        let mut last = last.lock().expect("watch lock is never poisoned");
        if now.is_some() && now != *last {
            *last = now;
            let _ = changed.try_send(());
        }
    })
    .inspect_err(|e| log::error!("cannot watch {path}: {e}"))
    .ok()?;
    watcher
        .watch(&dir, RecursiveMode::NonRecursive)
        .inspect_err(|e| log::error!("cannot watch {path}: {e}"))
        .ok()?;
    log::info!("watching {path} for changes");
    Some(watcher)
}
