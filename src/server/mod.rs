//! Assembles the Pingora server: the gateway service (HTTP or HTTPS), the reload triggers, the
//! admin and metrics listeners and, when configured, the mock vendors in the same process.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use pingora::listeners::ListenerConfig;
use pingora::protocols::http::ServerSession;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::Server;
use pingora::services::listening::Service;

use pingora::listeners::tls::TlsSettings;
use pingora::services::background::background_service;

use crate::admin::reload::{OnReload, ReloadTriggers, Reloader};
use crate::admin::Admin;
use crate::config::Config;
use crate::proxy::upstream::Upstreams;
use crate::proxy::{Gateway, Served};
use crate::{http_app, metrics, mock};
use listen::{Endpoint, GatewayListeners};
use tls::ReloadableCert;

mod corked;
mod listen;
mod tls;
mod upgrade;

/// Pingora's settings. The gateway drains itself before Pingora's shutdown begins
/// (`drain`, from the signal watch), so Pingora waits no grace period of its own, and gives
/// its runtimes a second to stop.
fn base_conf(threads: usize) -> ServerConf {
    ServerConf {
        threads,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    }
}

/// How the gateway was started: its config file, and whether it takes over the listening
/// sockets of a running instance (graceful upgrade).
pub struct Launch {
    pub config_path: String,
    pub upgrade: bool,
}

pub fn run_gateway(config: Config, launch: Launch) -> ! {
    metrics::init();
    let mut conf = base_conf(config.server.threads);
    let upgrade_sock = config
        .server
        .upgrade_sock
        .as_ref()
        .map_or_else(upgrade::default_socket, std::path::PathBuf::from);
    if let Err(e) = upgrade::prepare(&upgrade_sock) {
        eprintln!("server.upgrade_sock: {e}");
        std::process::exit(1);
    }
    // An upgrade receives the running gateway's sockets itself (`upgrade::receive`), then
    // hands them to Pingora's bootstrap over a socket of this process's own.
    let handed = launch.upgrade.then(|| {
        let received = upgrade::receive(&upgrade_sock).unwrap_or_else(|e| {
            eprintln!("--upgrade: {e}");
            std::process::exit(1)
        });
        let internal =
            upgrade_sock.with_file_name(format!("bootstrap-{}.sock", std::process::id()));
        conf.upgrade_sock = internal.to_string_lossy().into_owned();
        std::thread::spawn(move || upgrade::forward(received, &internal))
    });
    let opt = Opt {
        upgrade: launch.upgrade,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(Some(opt), conf);
    server.bootstrap();
    if let Some(Ok(Err(e))) = handed.map(|h| h.join()) {
        log::error!("--upgrade: {e}");
    }

    let upstreams = Upstreams::default();
    let config = Arc::new(config);
    // The gateway's own requests (side-by-side compare) come back in on this socket, which
    // only this user may open.
    remove_stale_sockets();
    let local_socket = std::env::temp_dir()
        .join(format!("modelmux-{}.sock", std::process::id()))
        .to_string_lossy()
        .into_owned();
    let local_socket_path = local_socket.clone();
    let gateway = Arc::new(Gateway::new(
        config.clone(),
        upstreams,
        local_socket.clone(),
    ));
    let cert = config.server.tls.as_ref().map(|files| {
        Arc::new(ReloadableCert::new(files).unwrap_or_else(|e| {
            eprintln!("server.tls: {e}");
            std::process::exit(1)
        }))
    });
    let served = Arc::new(Served(gateway.clone()));
    let listen_fds = Arc::new(std::sync::OnceLock::new());
    server.add_service(gateway_service(
        &config,
        served,
        cert.clone(),
        listen_fds.clone(),
    ));
    // Internal traffic only, so Pingora's own listening service is good enough here.
    let mut local = Service::new("modelmux-local".to_string(), Served(gateway.clone()));
    local.add_listener(
        ListenerConfig::uds(local_socket).permissions(std::fs::Permissions::from_mode(0o600)),
    );
    server.add_service(local);

    let mut hooks: Vec<OnReload> = vec![Box::new(forget_removed_series)];
    // The exporter is made once: where spans go changes at the next start (or upgrade); which
    // are kept and what they hold (sample_ratio, capture_content) change with the snapshot.
    let exporting = config.telemetry.clone();
    hooks.push(Box::new(move |c: &Config| {
        let destination = |t: &crate::config::Telemetry| {
            (t.endpoint.clone(), t.protocol, t.headers.clone(), t.service_name.clone())
        };
        if exporting.as_deref().map(destination) != c.telemetry.as_deref().map(destination) {
            log::warn!("telemetry.otlp: a new collector (endpoint, protocol, headers, service_name) takes effect at the next start or upgrade");
        }
    }));
    if let Some(cert) = cert {
        hooks.push(Box::new(move |c: &Config| {
            if let Some(files) = &c.server.tls {
                cert.reload(files);
            }
        }));
    }
    let reloader = Arc::new(Reloader::new(
        launch.config_path,
        gateway.live_config(),
        hooks,
    ));
    let mut triggers = background_service(
        "reload",
        ReloadTriggers {
            reloader: reloader.clone(),
            watch: config.server.watch_config,
        },
    );
    triggers.threads = Some(1);
    server.add_service(triggers);
    if let Some(admin) = &config.admin {
        // The public listener's bounds: header deadline, body deadline, connection cap.
        let bounds = http_app::Bounds::from(&config.server.clients);
        let app = http_app::PlainHttp::new(Admin::new(gateway, reloader), bounds);
        let mut svc = Service::new("admin".to_string(), app);
        svc.add_tcp(&admin.listen);
        svc.threads = Some(1);
        server.add_service(svc);
        log::info!("admin listener on {}", admin.listen);
    }
    if let Some(addr) = &config.metrics_listen {
        let bounds = http_app::Bounds::from(&config.server.clients);
        let app = http_app::PlainHttp::new(MetricsApp, bounds);
        let mut svc = Service::new("metrics".to_string(), app);
        svc.add_tcp(addr);
        svc.threads = Some(1);
        server.add_service(svc);
    }
    if let Some(m) = &config.mock {
        server.add_service(mock_service(&m.bind, m.base_port, 1, None));
        log::info!(
            "mock vendors on {}",
            mock::listen_addresses(&m.bind, m.base_port).join(", ")
        );
    }
    warn_of_local_budgets(&config);
    log::info!("modelmux listening on {}", config.server.listen.join(", "));
    server.run(pingora::server::RunArgs {
        shutdown_signal: Box::new(upgrade::Signals {
            socket: upgrade_sock,
            grace: std::time::Duration::from_secs(config.server.grace_period_seconds),
            fds: listen_fds,
        }),
    });
    // The gateway's own socket (compare) goes with it.
    let _ = std::fs::remove_file(&local_socket_path);
    std::process::exit(0)
}

/// After a reload: the metrics series of targets, models, providers and keys that are gone.
fn forget_removed_series(c: &Config) {
    let targets: std::collections::HashSet<String> = c
        .models
        .iter()
        .flat_map(|m| m.targets.iter())
        .flat_map(|t| [format!("{}/{}", t.provider.name, t.model), t.model.clone()])
        .collect();
    let known = |label: &str, value: &str| match label {
        // "-": not known when the request ended (refused before routing); "cache": a hit.
        _ if value == "-" || value == "cache" => true,
        "model" => {
            c.model(value).is_some() || value.starts_with("app/") || value.starts_with("workflow/")
        }
        "provider" => c.providers.iter().any(|p| p.name == value),
        "target" | "vendor_model" => targets.contains(value),
        // Rate-limit gauges name a key or a model in `name`.
        "name" => c.keys.iter().any(|k| k.name == value) || c.model(value).is_some(),
        _ => true,
    };
    metrics::forget(&known);
}

/// Budget spend kept in this process's memory starts again at zero on every restart: say so
/// once, at start, when any key has a budget and no Redis keeps the spend.
fn warn_of_local_budgets(config: &Config) {
    let budgeted = config.keys.iter().filter(|k| !k.budgets.is_empty()).count();
    if budgeted > 0 && matches!(config.limits_backend, crate::config::LimitsBackend::Local) {
        log::warn!(
            "{budgeted} client key(s) have budgets, but limits.backend is local: their spend is kept in this process only and starts again at zero when it restarts; set limits.backend: redis to keep it"
        );
    }
}

/// The gateway on every listen address, over TLS when a certificate is configured.
fn gateway_service(
    config: &Config,
    served: Arc<Served>,
    cert: Option<Arc<ReloadableCert>>,
    fds_out: Arc<std::sync::OnceLock<pingora::server::ListenFds>>,
) -> GatewayListeners {
    let tls = cert.map(|cert| {
        let mut tls =
            TlsSettings::with_callbacks(Box::new(NoCallbacks)).expect("TLS settings without files");
        tls.set_cert_resolver(cert);
        tls.enable_h2();
        Arc::new(tls.build())
    });
    let endpoints = config
        .server
        .listen
        .iter()
        .map(|addr| Endpoint {
            addr: addr.clone(),
            tls: tls.clone(),
        })
        .collect();
    GatewayListeners {
        served,
        endpoints,
        fds_out,
    }
}

/// Sockets left in the temporary directory by gateways that have exited (a process stopped at
/// once leaves its socket behind); a running gateway's is kept.
fn remove_stale_sockets() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("modelmux-"))
            .and_then(|n| n.strip_suffix(".sock"))
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// The TLS handshake needs no callbacks of ours; the certificate comes from the resolver.
struct NoCallbacks;

#[async_trait]
impl pingora::listeners::TlsAccept for NoCallbacks {}

/// A certificate and key (PEM files) for the mock's TLS listeners.
pub struct MockTls {
    pub cert: String,
    pub key: String,
}

pub fn run_mock(bind: &str, base_port: u16, threads: usize, tls: Option<MockTls>) -> ! {
    let mut server = Server::new_with_opt_and_conf(Option::<Opt>::None, base_conf(threads));
    server.bootstrap();
    let with_tls = tls.is_some();
    server.add_service(mock_service(bind, base_port, threads, tls.as_ref()));
    for (vendor, addr) in mock::VENDORS
        .iter()
        .zip(mock::listen_addresses(bind, base_port))
    {
        println!("mock {:<9} http://{addr}", vendor.name());
        if with_tls {
            let port = vendor.port(base_port) + mock::TLS_PORT_OFFSET;
            println!("mock {:<9} https://{bind}:{port}", vendor.name());
        }
    }
    server.run_forever()
}

fn mock_service(
    bind: &str,
    base_port: u16,
    threads: usize,
    tls: Option<&MockTls>,
) -> Service<http_app::PlainHttp<mock::MockApp>> {
    let mut svc = Service::new(
        "mock-vendors".to_string(),
        http_app::PlainHttp::new(
            mock::MockApp::new(base_port),
            http_app::Bounds::from(&crate::config::ClientLimits::default()),
        ),
    );
    for addr in mock::listen_addresses(bind, base_port) {
        svc.add_tcp(&addr);
    }
    if let Some(tls) = tls {
        for v in mock::VENDORS {
            let addr = format!("{bind}:{}", v.port(base_port) + mock::TLS_PORT_OFFSET);
            if let Err(e) = svc.add_tls(&addr, &tls.cert, &tls.key) {
                eprintln!("mock: cannot listen with TLS on {addr}: {e}");
                std::process::exit(1);
            }
        }
    }
    svc.threads = Some(threads);
    svc
}

/// Serves `/metrics` (Prometheus text) and `/health` on the metrics listener.
struct MetricsApp;

#[async_trait]
impl http_app::Handler for MetricsApp {
    async fn handle(&self, http: &mut ServerSession) -> bool {
        let (status, content_type, body) = match http.req_header().uri.path() {
            "/metrics" => (
                200,
                "text/plain; version=0.0.4",
                Bytes::from(metrics::render()),
            ),
            "/health" => (
                200,
                "application/json",
                Bytes::from_static(b"{\"status\":\"ok\"}"),
            ),
            _ => (404, "text/plain", Bytes::from_static(b"not found\n")),
        };
        let headers = [("content-type".to_string(), content_type.to_string())];
        http_app::respond(http, status, &headers, body)
            .await
            .is_ok()
    }
}
