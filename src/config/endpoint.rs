//! Where a provider is: its URL split for the connector and the request line, and the CA
//! certificates its TLS connections trust.

use std::fmt;
use std::sync::Arc;

use once_cell::sync::Lazy;
use pingora::tls::{
    install_default_crypto_provider, load_native_certs, version, CertificateDer, ClientConfig,
    RootCertStore,
};

/// An upstream address split into what the connector and the request line need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// Path prefix without a trailing slash, e.g. `/v1`; may be empty.
    pub path_prefix: String,
    /// The Host header value, made once: every vendor request sends it.
    authority: String,
}

impl Endpoint {
    pub fn parse(url: &str) -> Result<Endpoint, String> {
        let uri: http::Uri = url.parse().map_err(|e| format!("not a URL ({e})"))?;
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            Some(other) => return Err(format!("scheme `{other}` is not http or https")),
            None => return Err("missing scheme (http:// or https://)".into()),
        };
        let host = uri.host().ok_or("missing host")?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if uri.query().is_some() {
            return Err("must not have a query string".into());
        }
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let path_prefix = uri.path().trim_end_matches('/').to_string();
        let default = if tls { 443 } else { 80 };
        let bracketed = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.clone()
        };
        let authority = if port == default {
            bracketed
        } else {
            format!("{bracketed}:{port}")
        };
        Ok(Endpoint {
            tls,
            host,
            port,
            path_prefix,
            authority,
        })
    }

    /// The Host header value: the port is left out when it is the scheme's default.
    pub fn authority(&self) -> &str {
        &self.authority
    }
}

/// The roots a provider's TLS connections verify against: the system's, or those of the
/// provider's `ca_file` instead. Holds the TLS client configuration built from them once, so
/// new connections to a provider share its session-resumption cache.
#[derive(Clone)]
pub struct TrustedCa(pub Arc<ClientConfig>);

impl fmt::Debug for TrustedCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TrustedCa")
    }
}

/// Two are the same when they are one loaded configuration (connections are pooled by it).
impl PartialEq for TrustedCa {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for TrustedCa {}

impl std::hash::Hash for TrustedCa {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        Arc::as_ptr(&self.0).hash(state)
    }
}

impl TrustedCa {
    pub fn load(path: &str) -> Result<TrustedCa, String> {
        use rustls_pki_types::pem::PemObject;
        let mut roots = RootCertStore::empty();
        for cert in
            CertificateDer::pem_file_iter(path).map_err(|e| format!("cannot read {path}: {e}"))?
        {
            let cert = cert.map_err(|e| format!("{path}: {e}"))?;
            roots.add(cert).map_err(|e| {
                format!("{path}: a certificate is not a valid CA certificate ({e})")
            })?;
        }
        if roots.is_empty() {
            return Err(format!("{path} holds no PEM certificate"));
        }
        Ok(TrustedCa(client_config(roots)))
    }

    /// The system's roots (loaded once; `SSL_CERT_FILE` and `SSL_CERT_DIR` are honoured).
    pub fn system() -> &'static TrustedCa {
        static SYSTEM: Lazy<TrustedCa> = Lazy::new(|| {
            let mut roots = RootCertStore::empty();
            match load_native_certs() {
                Ok(certs) => {
                    let (_, ignored) = roots.add_parsable_certificates(certs);
                    if ignored > 0 {
                        log::warn!("{ignored} system CA certificates could not be parsed");
                    }
                }
                Err(e) => log::warn!("could not load the system's CA certificates: {e}"),
            }
            TrustedCa(client_config(roots))
        });
        &SYSTEM
    }
}

fn client_config(roots: RootCertStore) -> Arc<ClientConfig> {
    install_default_crypto_provider();
    let mut config =
        ClientConfig::builder_with_protocol_versions(&[&version::TLS12, &version::TLS13])
            .with_root_certificates(roots)
            .with_no_client_auth();
    // The vendor leg speaks HTTP/1.1 only.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}
