//! TLS toward clients (rustls): the configured certificate, or a self-signed one generated at
//! start-up when none is configured.

use std::{path::Path, sync::Arc};

use rustls::{
    ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _},
};
use tokio_rustls::TlsAcceptor;

use crate::config::TlsConfig;

/// Why the TLS acceptor could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("listener.tls: {path}: {detail}")]
    Pem {
        /// The file.
        path: String,
        /// What is wrong.
        detail: String,
    },
    /// rustls refused the certificate and key.
    #[error("listener.tls: {0}")]
    Rustls(#[from] rustls::Error),
    /// The self-signed certificate could not be generated.
    #[error("generating a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// A TLS acceptor from the configuration, or self-signed (names `localhost`, `127.0.0.1`, `::1`
/// and this host) when `config` is `None`.
pub fn acceptor(config: Option<&TlsConfig>) -> Result<TlsAcceptor, TlsError> {
    let (certs, key) = match config {
        Some(tls) => (read_certs(&tls.cert)?, read_key(&tls.key)?),
        None => self_signed()?,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(TlsAcceptor::from(Arc::new(server)))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem_error = |detail: String| TlsError::Pem {
        path: path.display().to_string(),
        detail,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(e.to_string()))?;
    if certs.is_empty() {
        return Err(pem_error("no certificate in the file".into()));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::Pem {
        path: path.display().to_string(),
        detail: e.to_string(),
    })
}

fn self_signed() -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    if let Ok(host) = nix::unistd::gethostname()
        && let Ok(host) = host.into_string()
    {
        names.push(host);
    }
    let certified = rcgen::generate_simple_self_signed(names)?;
    let key = PrivateKeyDer::try_from(certified.signing_key.serialize_der()).map_err(|e| {
        TlsError::Pem {
            path: "<generated>".into(),
            detail: e.to_owned(),
        }
    })?;
    Ok((vec![certified.cert.der().clone()], key))
}
