//! TLS for AMQP clients (AMQPS) and the management API (HTTPS), with rustls.
//!
//! - [`reload`]: the certificate both listeners serve, reloaded from its files on SIGHUP and
//!   when they change, keeping the old one when the new files are broken.
//! - [`peer`]: a client certificate's CN, the user the EXTERNAL mechanism logs in as.
//! - [`listener`]: the HTTPS listener axum serves on (handshakes in their own tasks).
//!
//! [`Tls::new`] builds one rustls `ServerConfig` per protocol (they differ only in ALPN: `http/1.1` for
//! HTTPS, none for AMQP) over
//! one [`CertResolver`]. With a CA file, clients are asked for a certificate verified against
//! it; without `verify_peer` one that sends none is still let in (and can log in with a
//! password), with it the handshake fails (RabbitMQ's `ssl_options.verify = verify_peer`
//! with `fail_if_no_peer_cert`). The ring provider is named explicitly: other dependencies
//! enable rustls's aws-lc provider too, and with two built in rustls picks neither.

pub mod listener;
pub mod peer;
pub mod reload;

use std::path::PathBuf;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use tokio_rustls::TlsAcceptor;

pub use peer::TlsPeer;
pub use reload::CertResolver;

/// Where the TLS material is, and whether clients must present a certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSettings {
    /// The server's certificate chain (PEM, the server's own certificate first).
    pub cert: PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CA certificates (PEM) client certificates are verified against; without it clients
    /// are not asked for one.
    pub ca: Option<PathBuf>,
    /// Refuse a client that presents no certificate (needs `ca`).
    pub verify_peer: bool,
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or holds nothing usable.
    #[error("cannot use the {what} in {}: {reason}", .path.display())]
    Read {
        /// What the file should hold.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The key and the certificate do not make a pair (or the key's type is not supported).
    #[error(
        "the private key in {} cannot serve the certificate in {}: {reason}",
        .key.display(),
        .cert.display()
    )]
    KeyPair {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls's reason.
        reason: String,
    },
    /// rustls refused the configuration (e.g. a CA file whose certificates are not CAs).
    #[error("cannot set up TLS: {0}")]
    Setup(String),
}

/// The cryptography every TLS listener uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The TLS side of the node: an acceptor per protocol over one reloadable certificate.
#[derive(Clone)]
pub struct Tls {
    /// For AMQPS connections.
    pub amqp: TlsAcceptor,
    /// For the management API's HTTPS connections.
    pub https: TlsAcceptor,
    /// The certificate both serve.
    pub resolver: Arc<CertResolver>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("resolver", &self.resolver)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Reads the files in `settings` and builds the acceptors; an error names the file.
    pub fn new(settings: &TlsSettings) -> Result<Tls, TlsError> {
        let provider = provider();
        let resolver = Arc::new(CertResolver::load(
            &settings.cert,
            &settings.key,
            provider.clone(),
        )?);
        let config = |alpn: &[&[u8]]| -> Result<Arc<rustls::ServerConfig>, TlsError> {
            let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(rustls::DEFAULT_VERSIONS)
                .map_err(|e| TlsError::Setup(e.to_string()))?;
            let builder = match &settings.ca {
                None => builder.with_no_client_auth(),
                Some(ca) => {
                    let mut roots = RootCertStore::empty();
                    for cert in reload::read_certificates(ca, "CA certificates")? {
                        roots.add(cert).map_err(|e| TlsError::Read {
                            what: "CA certificates",
                            path: ca.clone(),
                            reason: e.to_string(),
                        })?;
                    }
                    let verifier = WebPkiClientVerifier::builder_with_provider(
                        Arc::new(roots),
                        provider.clone(),
                    );
                    let verifier = if settings.verify_peer {
                        verifier
                    } else {
                        verifier.allow_unauthenticated()
                    };
                    let verifier = verifier
                        .build()
                        .map_err(|e| TlsError::Setup(e.to_string()))?;
                    builder.with_client_cert_verifier(verifier)
                }
            };
            let mut config = builder.with_cert_resolver(resolver.clone());
            config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
            Ok(Arc::new(config))
        };
        Ok(Tls {
            // No ALPN for AMQP: RabbitMQ names none, and one named here would turn away a
            // client that offers others.
            amqp: TlsAcceptor::from(config(&[])?),
            https: TlsAcceptor::from(config(&[b"http/1.1"])?),
            resolver,
        })
    }
}
