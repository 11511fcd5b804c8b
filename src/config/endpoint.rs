//! Where a provider is: its URL split for the connector and the request line, and the extra
//! CA certificates its TLS connections trust.

use std::fmt;
use std::sync::Arc;

/// An upstream address split into what the connector and the request line need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// Path prefix without a trailing slash, e.g. `/v1`; may be empty.
    pub path_prefix: String,
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
        Ok(Endpoint {
            tls,
            host,
            port,
            path_prefix,
        })
    }

    /// The Host header value: the port is left out when it is the scheme's default.
    pub fn authority(&self) -> String {
        let default = if self.tls { 443 } else { 80 };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// Extra CA certificates a provider's TLS connections trust, ready for Pingora's peer options.
#[derive(Clone)]
pub struct TrustedCa(pub Arc<[pingora::utils::tls::WrappedX509]>);

impl fmt::Debug for TrustedCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TrustedCa({} certificates)", self.0.len())
    }
}

impl TrustedCa {
    pub fn load(path: &str) -> Result<TrustedCa, String> {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::CertificateDer;
        let ders: Vec<Vec<u8>> = CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("cannot read {path}: {e}"))?
            .map(|c| c.map(|c| c.to_vec()).map_err(|e| format!("{path}: {e}")))
            .collect::<Result<_, _>>()?;
        if ders.is_empty() {
            return Err(format!("{path} holds no PEM certificate"));
        }
        let mut certs = Vec::with_capacity(ders.len());
        for der in ders {
            // Pingora's parser panics on a malformed certificate: turn that into a config error.
            let parsed = std::panic::catch_unwind(|| {
                pingora::utils::tls::WrappedX509::new(der, |raw| {
                    pingora::utils::tls::parse_x509(raw)
                })
            })
            .map_err(|_| format!("{path}: a certificate is not valid X.509"))?;
            certs.push(parsed);
        }
        Ok(TrustedCa(certs.into()))
    }
}
