//! Assembles the Pingora server: the proxy service, the metrics listener and, when configured,
//! the mock vendors in the same process.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use pingora::listeners::ListenerConfig;
use pingora::protocols::http::ServerSession;
use pingora::protocols::l4::stream::L4BufferSettings;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::Server;
use pingora::services::listening::Service;

use crate::config::Config;
use crate::proxy::upstream::Upstreams;
use crate::proxy::Gateway;
use crate::{http_app, metrics, mock};

fn base_conf(threads: usize, grace_period_seconds: u64) -> ServerConf {
    ServerConf {
        threads,
        grace_period_seconds: Some(grace_period_seconds),
        graceful_shutdown_timeout_seconds: Some(grace_period_seconds.max(1)),
        ..ServerConf::default()
    }
}

pub fn run_gateway(config: Config) -> ! {
    metrics::init();
    let conf = base_conf(config.server.threads, config.server.grace_period_seconds);
    let mut server = Server::new_with_opt_and_conf(Option::<Opt>::None, conf);
    server.bootstrap();

    let upstreams = Upstreams::new(&server.configuration);
    let config = Arc::new(config);
    let mut proxy = Service::new(
        "modelmux".to_string(),
        Gateway::new(config.clone(), upstreams),
    );
    for addr in &config.server.listen {
        // No read buffer on client connections: Pingora's HTTP layer reads into its own header
        // and body buffers, and a 64 KiB zero-filled one per connection would be 64 KiB of
        // memory per open stream for nothing (measured: docs/performance.md).
        let buffers = L4BufferSettings {
            read: Some(0),
            write: None,
        };
        proxy.add_listener(ListenerConfig::tcp(addr.as_str()).l4_buffer(buffers));
    }
    server.add_service(proxy);

    if let Some(addr) = &config.metrics_listen {
        let mut svc = Service::new("metrics".to_string(), http_app::PlainHttp(MetricsApp));
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
    log::info!("modelmux listening on {}", config.server.listen.join(", "));
    server.run_forever()
}

/// A certificate and key (PEM files) for the mock's TLS listeners.
pub struct MockTls {
    pub cert: String,
    pub key: String,
}

pub fn run_mock(bind: &str, base_port: u16, threads: usize, tls: Option<MockTls>) -> ! {
    let mut server = Server::new_with_opt_and_conf(Option::<Opt>::None, base_conf(threads, 1));
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
        http_app::PlainHttp(mock::MockApp::new(base_port)),
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
