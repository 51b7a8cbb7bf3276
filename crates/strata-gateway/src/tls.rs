//! TLS termination on the public listener (rustls, `ring` backend, TLS 1.2 and 1.3).
//!
//! The certificate and key are PEM files (`gateway.tls_cert`, `gateway.tls_key`). The rustls
//! `ServerConfig` sits behind an [`ArcSwap`]: each accepted connection loads the current one,
//! so a reload (SIGHUP) gives new handshakes the new certificate while connections already
//! open keep theirs. ALPN offers `http/1.1` only: the gateway speaks HTTP/1.1 on both sides.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;

use crate::error::GatewayError;

/// The public listener's TLS settings, reloadable.
pub struct Tls {
    config: ArcSwap<ServerConfig>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").finish_non_exhaustive()
    }
}

impl Tls {
    /// Reads `cert` (a PEM chain, leaf first) and `key` (PEM, PKCS#8, PKCS#1 or SEC1).
    ///
    /// # Errors
    /// [`GatewayError::Config`] naming the file that cannot be read or used.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, GatewayError> {
        Ok(Self {
            config: ArcSwap::new(server_config(cert, key)?),
        })
    }

    /// Reads the files again; new handshakes use them, open connections keep theirs.
    ///
    /// # Errors
    /// As [`Tls::load`]; the certificate in use is kept then.
    pub fn reload(&self, cert: &Path, key: &Path) -> Result<(), GatewayError> {
        self.install(server_config(cert, key)?);
        Ok(())
    }

    /// Uses `config` for new handshakes.
    pub(crate) fn install(&self, config: Arc<ServerConfig>) {
        self.config.store(config);
    }

    /// An acceptor with the current certificate.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.config.load_full())
    }
}

/// The TLS files of a configuration, when both are set.
pub fn paths(config: &crate::config::GatewayConfig) -> Option<(PathBuf, PathBuf)> {
    config
        .tls_enabled()
        .then(|| (config.tls_cert.clone(), config.tls_key.clone()))
}

/// A rustls server configuration from PEM files.
pub(crate) fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, GatewayError> {
    let problem = |key: &str, path: &Path, message: &dyn std::fmt::Display| GatewayError::Config {
        problems: vec![format!("{key}: {}: {message}", path.display())],
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(Iterator::collect)
        .map_err(|e| problem("gateway.tls_cert", cert, &e))?;
    if chain.is_empty() {
        return Err(problem(
            "gateway.tls_cert",
            cert,
            &"no certificate in the file",
        ));
    }
    let private =
        PrivateKeyDer::from_pem_file(key).map_err(|e| problem("gateway.tls_key", key, &e))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| problem("gateway.tls_cert", cert, &e))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| problem("gateway.tls_key", key, &e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
