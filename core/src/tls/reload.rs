//! The server's certificate, reloadable while the broker runs.
//!
//! [`CertResolver`] is what rustls asks for the certificate at every handshake, so replacing
//! the one it holds applies to the next connection on every TLS listener (AMQPS and HTTPS
//! share it) without a restart; connections already open keep the session they have.
//!
//! A reload reads both files and builds the new key pair completely before it replaces the
//! old one: files caught half-written, a key that does not match the certificate, or a
//! missing file leave the old certificate in place, and the error is logged. Reloads come
//! from SIGHUP and from a task that looks at the files' modification times every
//! [`CHECK_EVERY`] ([`watch`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::{Mutex, RwLock};
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::watch;

use super::TlsError;

/// How often the certificate and key files are looked at for changes.
pub const CHECK_EVERY: Duration = Duration::from_secs(2);

/// What a file looked like when it was last read: a change in either means "read again".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
}

impl Stamp {
    fn of(path: &Path) -> Option<Stamp> {
        let meta = std::fs::metadata(path).ok()?;
        Some(Stamp {
            modified: meta.modified().ok(),
            len: meta.len(),
        })
    }
}

/// The current certificate and key, and the files they come from.
#[derive(Debug)]
pub struct CertResolver {
    cert_file: PathBuf,
    key_file: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
    /// The files as last tried (loaded or refused), so a broken file is reported once, not at
    /// every check, and the next change to it is tried again.
    tried: Mutex<(Option<Stamp>, Option<Stamp>)>,
}

impl CertResolver {
    /// Loads the certificate chain in `cert_file` and the private key in `key_file` (PEM);
    /// an error if either cannot be used.
    pub fn load(
        cert_file: &Path,
        key_file: &Path,
        provider: Arc<CryptoProvider>,
    ) -> Result<CertResolver, TlsError> {
        let stamps = (Stamp::of(cert_file), Stamp::of(key_file));
        let key = certified_key(cert_file, key_file, &provider)?;
        Ok(CertResolver {
            cert_file: cert_file.to_owned(),
            key_file: key_file.to_owned(),
            provider,
            current: RwLock::new(Arc::new(key)),
            tried: Mutex::new(stamps),
        })
    }

    /// The certificate served now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.read().clone()
    }

    /// Reads the files again and serves what they hold from the next handshake on; on an
    /// error the certificate served does not change.
    pub fn reload(&self) -> Result<(), TlsError> {
        *self.tried.lock() = (Stamp::of(&self.cert_file), Stamp::of(&self.key_file));
        let key = certified_key(&self.cert_file, &self.key_file, &self.provider)?;
        *self.current.write() = Arc::new(key);
        Ok(())
    }

    /// Reloads if either file changed since it was last tried: `None` if neither did.
    pub fn reload_if_changed(&self) -> Option<Result<(), TlsError>> {
        let now = (Stamp::of(&self.cert_file), Stamp::of(&self.key_file));
        if *self.tried.lock() == now {
            return None;
        }
        Some(self.reload())
    }

    /// Logs the outcome of a reload for an operator.
    fn report(&self, outcome: Result<(), TlsError>, why: &str) {
        match outcome {
            Ok(()) => tracing::info!(
                cert = %self.cert_file.display(),
                "TLS certificate reloaded ({why})"
            ),
            Err(e) => tracing::error!(
                "TLS certificate not reloaded ({why}), still serving the previous one: {e}"
            ),
        }
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// Reloads `resolver` on SIGHUP and when its files change, until `shutdown` turns true.
pub fn watch(resolver: Arc<CertResolver>, mut shutdown: watch::Receiver<bool>) {
    tokio::spawn(async move {
        #[cfg(unix)]
        let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        {
            Ok(signal) => Some(signal),
            Err(e) => {
                tracing::warn!("TLS certificate not reloadable by SIGHUP: {e}");
                None
            }
        };
        let mut check = tokio::time::interval(CHECK_EVERY);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            #[cfg(unix)]
            let signalled = async {
                match hangup.as_mut() {
                    Some(signal) => signal.recv().await,
                    None => std::future::pending().await,
                }
            };
            #[cfg(not(unix))]
            let signalled = std::future::pending::<Option<()>>();
            // Decided first, acted on after: the select's output (which can hold a borrow of
            // the shutdown flag) must not live across the awaits below.
            let signalled = tokio::select! {
                _ = shutdown.wait_for(|stop| *stop) => return,
                _ = signalled => true,
                _ = check.tick() => false,
            };
            // Stat and read the files on the blocking pool, never on a reactor thread (a
            // slow or network file system must not stall connections).
            let r = resolver.clone();
            let outcome = tokio::task::spawn_blocking(move || {
                if signalled {
                    Some(r.reload())
                } else {
                    r.reload_if_changed()
                }
            })
            .await;
            if let Ok(Some(outcome)) = outcome {
                let why = if signalled {
                    "SIGHUP"
                } else {
                    "the files changed"
                };
                resolver.report(outcome, why);
            }
        }
    });
}

/// The key pair in the two files, checked to belong together.
fn certified_key(
    cert_file: &Path,
    key_file: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let chain = read_certificates(cert_file, "certificate")?;
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| TlsError::Read {
        what: "private key",
        path: key_file.to_owned(),
        reason: e.to_string(),
    })?;
    CertifiedKey::from_der(chain, key, provider).map_err(|e| TlsError::KeyPair {
        cert: cert_file.to_owned(),
        key: key_file.to_owned(),
        reason: e.to_string(),
    })
}

/// Every certificate in a PEM file (at least one).
pub(super) fn read_certificates(
    path: &Path,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let read_error = |reason: String| TlsError::Read {
        what,
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| read_error(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| read_error(e.to_string()))?;
    if certs.is_empty() {
        return Err(read_error("no PEM certificate in it".to_owned()));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Issued {
        cert: String,
        key: String,
    }

    fn issue(name: &str) -> Issued {
        let key = rcgen::KeyPair::generate().expect("key");
        let params = rcgen::CertificateParams::new(vec![name.to_owned()]).expect("params");
        let cert = params.self_signed(&key).expect("cert");
        Issued {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    fn write(dir: &Path, issued: &Issued) -> (PathBuf, PathBuf) {
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, &issued.cert).expect("write");
        std::fs::write(&key, &issued.key).expect("write");
        (cert, key)
    }

    fn served(resolver: &CertResolver) -> Vec<u8> {
        resolver.current().cert[0].as_ref().to_vec()
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("warren-tls-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        dir
    }

    #[test]
    fn a_reload_serves_the_new_files_and_broken_ones_keep_the_old() {
        let dir = temp_dir("reload");
        let first = issue("localhost");
        let (cert, key) = write(&dir, &first);
        let resolver = CertResolver::load(&cert, &key, super::super::provider()).expect("load");
        let old = served(&resolver);
        assert!(resolver.reload_if_changed().is_none(), "nothing changed");

        let second = issue("localhost");
        write(&dir, &second);
        resolver.reload().expect("new files load");
        let new = served(&resolver);
        assert_ne!(new, old, "the new certificate is served");

        // A key that belongs to another certificate: refused, the current one stays.
        std::fs::write(&key, &first.key).expect("write");
        let err = resolver.reload().expect_err("mismatched key");
        assert!(matches!(err, TlsError::KeyPair { .. }), "{err}");
        assert_eq!(served(&resolver), new);

        // Garbage, then a missing file: the same.
        std::fs::write(&cert, "not a certificate").expect("write");
        let err = resolver.reload().expect_err("garbage");
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
        std::fs::remove_file(&key).expect("remove");
        assert!(resolver.reload().is_err());
        assert_eq!(served(&resolver), new);
        assert!(
            resolver.reload_if_changed().is_none(),
            "a refused change is not retried until the files change again"
        );

        let third = issue("localhost");
        write(&dir, &third);
        assert!(matches!(resolver.reload_if_changed(), Some(Ok(()))));
        assert_ne!(served(&resolver), new);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn broken_files_at_start_are_an_error_naming_the_file() {
        let dir = temp_dir("start");
        let (cert, key) = write(&dir, &issue("localhost"));
        std::fs::write(
            &key,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .expect("write");
        let err = CertResolver::load(&cert, &key, super::super::provider()).expect_err("bad key");
        assert!(err.to_string().contains("key.pem"), "{err}");
        let missing = dir.join("missing.pem");
        let err =
            CertResolver::load(&missing, &key, super::super::provider()).expect_err("missing");
        assert!(err.to_string().contains("missing.pem"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
