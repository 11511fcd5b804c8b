//! HTTPS on the listeners: the certificate is read from the configured PEM files at start and
//! again on every config reload, so a rotated certificate is served without a restart.

use std::sync::Arc;

use arc_swap::ArcSwap;
use pingora::tls::sign::CertifiedKey;
use pingora::tls::{ClientHello, CryptoProvider, ResolvesServerCert};

use crate::config::TlsFiles;

pub(crate) struct ReloadableCert {
    current: ArcSwap<CertifiedKey>,
}

impl std::fmt::Debug for ReloadableCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReloadableCert")
    }
}

fn load(files: &TlsFiles) -> Result<CertifiedKey, String> {
    pingora::tls::install_default_crypto_provider();
    let (certs, key) = pingora::tls::load_certs_and_key_files(&files.cert, &files.key)
        .map_err(|e| format!("cannot read {} / {}: {e}", files.cert, files.key))?
        .ok_or_else(|| format!("no certificate or key in {} / {}", files.cert, files.key))?;
    let provider = CryptoProvider::get_default().ok_or("no TLS crypto provider")?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("{}: {e}", files.key))?;
    Ok(CertifiedKey::new(certs, signing))
}

impl ReloadableCert {
    pub(crate) fn new(files: &TlsFiles) -> Result<Self, String> {
        Ok(ReloadableCert {
            current: ArcSwap::from_pointee(load(files)?),
        })
    }

    /// Reads the files again; on failure the certificate in use stays.
    pub(crate) fn reload(&self, files: &TlsFiles) {
        match load(files) {
            Ok(cert) => {
                self.current.store(Arc::new(cert));
                log::info!("TLS certificate reloaded from {}", files.cert);
            }
            Err(e) => log::error!("TLS certificate not reloaded, the current one stays: {e}"),
        }
    }
}

impl ResolvesServerCert for ReloadableCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}
