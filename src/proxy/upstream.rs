//! The upstream leg: name resolution, pooled connections, one HTTP exchange with timeouts.
//!
//! The gateway drives this leg itself from its router (see docs/architecture.md) so that
//! a request body of any size can be rewritten and re-sent; Pingora's own upstream phases
//! would cap replay at 64 KiB.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::RwLock;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use pingora::connectors::http::Connector;
use pingora::connectors::{ConnectorOptions, TransportConnector};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::http::client::HttpSession;
use pingora::protocols::http::v1::client::HttpSession as Http1Session;
use pingora::server::configuration::ServerConf;
use pingora::upstreams::peer::HttpPeer;
use pingora::ErrorType;

use crate::config::{Endpoint, Timeouts, TrustedCa};
use crate::error::{ErrorKind, GatewayError, GwResult};
use crate::providers::UpstreamRequest;

/// How long a resolved address is used before the name is looked up again, so that a vendor's
/// DNS change is followed without a restart.
const DNS_TTL: Duration = Duration::from_secs(30);
/// How long an idle pooled connection is kept.
const POOL_IDLE: Duration = Duration::from_secs(90);
/// The most the gateway reads of a non-streaming upstream body or error body.
pub(crate) const MAX_UPSTREAM_BODY: usize = 64 * 1024 * 1024;

pub(crate) struct Upstreams {
    connector: Connector,
    /// For a connection that must be new (after a pooled one turned out stale).
    transport: TransportConnector,
    resolver: Resolver,
}

/// A sent request whose response header has arrived.
pub(crate) struct Exchange {
    session: HttpSession,
    peer: HttpPeer,
    deadline: Instant,
    idle: Duration,
}

impl Upstreams {
    pub(crate) fn new(conf: &ServerConf) -> Self {
        Upstreams {
            connector: Connector::new(Some(ConnectorOptions::from_server_conf(conf))),
            transport: TransportConnector::new(Some(ConnectorOptions::from_server_conf(conf))),
            resolver: Resolver::default(),
        }
    }

    /// Sends one request and waits for the response header within the first-byte timeout.
    /// A pooled connection that turns out to be stale is retried once on a fresh one.
    pub(crate) async fn send(
        &self,
        endpoint: &Endpoint,
        timeouts: &Timeouts,
        ca: Option<&TrustedCa>,
        method: &str,
        req: &UpstreamRequest,
    ) -> GwResult<Exchange> {
        let addr = self.resolver.resolve(&endpoint.host, endpoint.port).await?;
        let peer = build_peer(endpoint, timeouts, ca, addr);
        self.exchange(peer, endpoint, timeouts, method, req).await
    }

    /// Sends one request to this gateway itself over its Unix socket (side-by-side compare).
    pub(crate) async fn send_local(
        &self,
        socket: &str,
        timeouts: &Timeouts,
        req: &UpstreamRequest,
    ) -> GwResult<Exchange> {
        let local = Endpoint {
            tls: false,
            host: "localhost".into(),
            port: 80,
            path_prefix: String::new(),
        };
        let mut peer =
            HttpPeer::new_uds(socket, false, String::new()).map_err(|e| connect_error(&e))?;
        peer.options.connection_timeout = Some(timeouts.connect);
        peer.options.write_timeout = Some(timeouts.idle);
        peer.options.idle_timeout = Some(POOL_IDLE);
        self.exchange(peer, &local, timeouts, "POST", req).await
    }

    async fn exchange(
        &self,
        peer: HttpPeer,
        endpoint: &Endpoint,
        timeouts: &Timeouts,
        method: &str,
        req: &UpstreamRequest,
    ) -> GwResult<Exchange> {
        let deadline = Instant::now() + timeouts.total;
        let mut fresh_only = false;
        loop {
            let (mut session, reused) = if fresh_only {
                (self.connect_fresh(&peer).await?, false)
            } else {
                self.connector
                    .get_http_session(&peer)
                    .await
                    .map_err(|e| connect_error(&e))?
            };
            let header = request_header(endpoint, method, req)?;
            let first_byte = timeouts.first_byte.min(remaining(deadline));
            session.set_read_timeout(Some(first_byte));
            let written = async {
                session.write_request_header(Box::new(header)).await?;
                if !req.body.is_empty() {
                    session.write_request_body(req.body.clone(), false).await?;
                }
                session.finish_request_body().await
            }
            .await;
            match written {
                Ok(_) => {}
                // The vendor closed a pooled connection while it sat idle and the request
                // could not even be written: nothing reached it, so one retry on a new
                // connection is safe. Once the request is out it is never replayed here: the
                // vendor may be working on it (and billing it).
                Err(_) if reused => {
                    fresh_only = true;
                    continue;
                }
                Err(e) => return Err(exchange_error(&e)),
            }
            session
                .read_response_header()
                .await
                .map_err(|e| exchange_error(&e))?;
            return Ok(Exchange {
                session,
                peer,
                deadline,
                idle: timeouts.idle,
            });
        }
    }

    /// A new HTTP/1.1 connection, never one from the pool (which may hold more stale ones).
    async fn connect_fresh(&self, peer: &HttpPeer) -> GwResult<HttpSession> {
        let stream = self
            .transport
            .new_stream(peer)
            .await
            .map_err(|e| connect_error(&e))?;
        Ok(HttpSession::H1(Http1Session::new_with_options(
            stream, peer,
        )))
    }

    /// Hands a connection back to the pool after a complete, clean response.
    pub(crate) async fn release(&self, ex: Exchange) {
        self.connector
            .release_http_session(ex.session, &ex.peer, Some(POOL_IDLE))
            .await;
    }
}

impl Exchange {
    pub(crate) fn header(&self) -> &ResponseHeader {
        self.session
            .response_header()
            .expect("send() returns only after the header was read")
    }

    pub(crate) fn status(&self) -> u16 {
        self.header().status.as_u16()
    }

    pub(crate) fn header_str(&self, name: &str) -> Option<&str> {
        self.header()
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
    }

    /// The next piece of the body within the idle and total timeouts; None at the end.
    pub(crate) async fn next_chunk(&mut self) -> GwResult<Option<Bytes>> {
        let left = remaining(self.deadline);
        if left.is_zero() {
            return Err(GatewayError::new(
                ErrorKind::UpstreamTimeout,
                "The upstream provider did not finish within the total timeout.",
            ));
        }
        self.session.set_read_timeout(Some(self.idle.min(left)));
        self.session
            .read_response_body()
            .await
            .map_err(|e| exchange_error(&e))
    }

    /// Reads the whole body, up to `limit` bytes.
    pub(crate) async fn read_all(&mut self, limit: usize) -> GwResult<Bytes> {
        let mut buf = BytesMut::new();
        while let Some(chunk) = self.next_chunk().await? {
            if buf.len() + chunk.len() > limit {
                return Err(GatewayError::new(
                    ErrorKind::UpstreamBadResponse,
                    "The upstream response was larger than the gateway accepts.",
                ));
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf.freeze())
    }
}

fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

fn build_peer(
    endpoint: &Endpoint,
    timeouts: &Timeouts,
    ca: Option<&TrustedCa>,
    addr: SocketAddr,
) -> HttpPeer {
    let mut peer = HttpPeer::new(addr, endpoint.tls, endpoint.host.clone());
    peer.options.connection_timeout = Some(timeouts.connect);
    peer.options.total_connection_timeout = Some(timeouts.connect * 2);
    peer.options.write_timeout = Some(timeouts.idle);
    peer.options.idle_timeout = Some(POOL_IDLE);
    peer.options.verify_cert = true;
    peer.options.verify_hostname = true;
    peer.options.ca = ca.map(|c| c.0.clone());
    peer
}

fn request_header(
    endpoint: &Endpoint,
    method: &str,
    req: &UpstreamRequest,
) -> GwResult<RequestHeader> {
    // The request line can hold a vendor credential (Qianfan's token): neither the client
    // nor the log gets its text.
    let internal = |e: pingora::BError| {
        log::warn!("could not build an upstream request: {:?}", e.etype());
        GatewayError::new(
            ErrorKind::Internal,
            "The gateway could not build the request for the upstream provider.",
        )
    };
    let mut h = RequestHeader::build(
        method,
        req.path_and_query.as_bytes(),
        Some(4 + req.headers.len()),
    )
    .map_err(internal)?;
    h.insert_header("host", endpoint.authority())
        .map_err(internal)?;
    h.insert_header("content-type", "application/json")
        .map_err(internal)?;
    h.insert_header("content-length", req.body.len().to_string())
        .map_err(internal)?;
    for (name, value) in &req.headers {
        h.insert_header(*name, value.as_str()).map_err(internal)?;
    }
    Ok(h)
}

fn connect_error(e: &pingora::Error) -> GatewayError {
    log::warn!("upstream connect failed: {e}");
    let kind = if e.etype() == &ErrorType::ConnectTimedout {
        ErrorKind::UpstreamTimeout
    } else {
        ErrorKind::UpstreamConnect
    };
    GatewayError::new(
        kind,
        "The gateway could not connect to the upstream provider.",
    )
}

fn exchange_error(e: &pingora::Error) -> GatewayError {
    match e.etype() {
        ErrorType::ReadTimedout | ErrorType::WriteTimedout => GatewayError::new(
            ErrorKind::UpstreamTimeout,
            "The upstream provider did not respond in time.",
        ),
        ErrorType::ConnectTimedout
        | ErrorType::ConnectRefused
        | ErrorType::ConnectError
        | ErrorType::TLSHandshakeFailure => connect_error(e),
        _ => {
            log::warn!("upstream exchange failed: {e}");
            GatewayError::new(
                ErrorKind::UpstreamBadResponse,
                "The upstream provider closed the connection or sent an invalid response.",
            )
        }
    }
}

/// Resolves vendor host names with the runtime's non-blocking lookup and caches them for
/// `DNS_TTL`; a failed refresh keeps serving the last good addresses.
/// Addresses of one `(host, port)` and when they were looked up.
type Resolved = (Vec<SocketAddr>, Instant);

#[derive(Default)]
pub(crate) struct Resolver {
    cache: RwLock<HashMap<(String, u16), Resolved>>,
}

impl Resolver {
    pub(crate) async fn resolve(&self, host: &str, port: u16) -> GwResult<SocketAddr> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, port));
        }
        let key = (host.to_string(), port);
        let cached = self
            .cache
            .read()
            .expect("resolver lock is never poisoned: no panics while held")
            .get(&key)
            .cloned();
        if let Some((addrs, at)) = &cached {
            if at.elapsed() < DNS_TTL {
                return Ok(pick(addrs));
            }
        }
        match tokio::net::lookup_host((host, port)).await {
            Ok(found) => {
                let addrs: Vec<SocketAddr> = found.collect();
                if addrs.is_empty() {
                    return stale_or(cached, host);
                }
                let addr = pick(&addrs);
                self.cache
                    .write()
                    .expect("resolver lock is never poisoned: no panics while held")
                    .insert(key, (addrs, Instant::now()));
                Ok(addr)
            }
            Err(e) => {
                log::warn!("resolving {host} failed: {e}");
                stale_or(cached, host)
            }
        }
    }
}

fn stale_or(cached: Option<Resolved>, host: &str) -> GwResult<SocketAddr> {
    match cached {
        Some((addrs, _)) => Ok(pick(&addrs)),
        None => Err(GatewayError::new(
            ErrorKind::UpstreamConnect,
            format!("The gateway could not resolve the upstream host {host}."),
        )),
    }
}

fn pick(addrs: &[SocketAddr]) -> SocketAddr {
    addrs[fastrand::usize(..addrs.len())]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn resolves_literals_and_names() {
        let r = Resolver::default();
        let a = r.resolve("127.0.0.1", 80).await.unwrap();
        assert_eq!(a, "127.0.0.1:80".parse().unwrap());
        let a = r.resolve("localhost", 81).await.unwrap();
        assert_eq!(a.port(), 81);
        assert!(r
            .cache
            .read()
            .unwrap()
            .contains_key(&("localhost".into(), 81)));
        assert!(r.resolve("no-such-host.invalid", 80).await.is_err());
    }
}
