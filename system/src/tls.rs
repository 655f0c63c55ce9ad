//! Optional TLS (rustls, ring provider) for the TCP server and the gateway:
//! loads a PEM certificate chain and private key into an acceptor.

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {reason}")]
    Pem { path: String, reason: String },
    #[error("TLS configuration: {0}")]
    Config(#[from] tokio_rustls::rustls::Error),
}

/// An acceptor from PEM files, or `None` when both paths are empty (plain TCP).
pub fn acceptor(cert_path: &str, key_path: &str) -> Result<Option<TlsAcceptor>, TlsError> {
    if cert_path.is_empty() && key_path.is_empty() {
        return Ok(None);
    }
    let pem_err = |path: &str, e: &dyn std::fmt::Display| TlsError::Pem {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(Path::new(cert_path))
        .map_err(|e| pem_err(cert_path, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| pem_err(cert_path, &e))?;
    if certs.is_empty() {
        return Err(pem_err(cert_path, &"no certificate found"));
    }
    let key =
        PrivateKeyDer::from_pem_file(Path::new(key_path)).map_err(|e| pem_err(key_path, &e))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(Some(TlsAcceptor::from(Arc::new(config))))
}
