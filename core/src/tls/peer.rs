//! Who a TLS client is, by its certificate: the user name the EXTERNAL mechanism logs in as.
//!
//! As `rabbitmq_auth_mechanism_ssl` with `ssl_cert_login_from = common_name`: the name is the
//! common name (CN) of the subject of the client's end-entity certificate. rustls has already
//! verified the certificate against the CA before the name is read.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls_pki_types::CertificateDer;

use crate::auth::User;
use crate::broker::{Broker, replies};
use crate::error::AmqpError;

/// The subject CN of `cert` (DER); `None` if it is not a certificate, has no CN, or its CN is
/// not text. With several CNs, the first is taken.
pub fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let name = parsed.subject().iter_common_name().next()?;
    name.as_str().ok().map(str::to_owned)
}

/// What a TLS connection knows about its client once the handshake is over.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsPeer {
    /// The verified client certificate's CN, if the client presented a certificate (and it
    /// has one).
    pub common_name: Option<String>,
    /// The negotiated protocol in RabbitMQ's spelling (`tlsv1.3`), for `/api/connections`.
    pub protocol: Option<String>,
    /// The negotiated cipher suite's IANA name (`TLS13_AES_256_GCM_SHA384`).
    pub cipher: Option<String>,
}

impl TlsPeer {
    /// From the certificates the client presented (the end-entity one first).
    pub fn from_certificates(chain: Option<&[CertificateDer<'_>]>) -> TlsPeer {
        TlsPeer {
            common_name: chain.and_then(<[_]>::first).and_then(common_name),
            ..TlsPeer::default()
        }
    }

    /// What the finished handshake of `session` settled: the client certificate's CN, the
    /// protocol version and the cipher suite.
    pub fn of_session(session: &rustls::ServerConnection) -> TlsPeer {
        let protocol = session.protocol_version().map(|v| match v {
            rustls::ProtocolVersion::TLSv1_3 => "tlsv1.3".to_owned(),
            rustls::ProtocolVersion::TLSv1_2 => "tlsv1.2".to_owned(),
            other => format!("{other:?}").to_lowercase(),
        });
        let cipher = session
            .negotiated_cipher_suite()
            .and_then(|suite| suite.suite().as_str())
            .map(str::to_owned);
        TlsPeer {
            protocol,
            cipher,
            ..TlsPeer::from_certificates(session.peer_certificates())
        }
    }
}

/// The EXTERNAL mechanism: logs in as the user the client certificate names, without a
/// password. Refused (403, RabbitMQ's text) without a TLS client certificate with a CN, for a
/// user that does not exist, or against the loopback rule; the reason goes to the log.
pub fn login_external(
    broker: &Broker,
    tls: Option<&TlsPeer>,
    peer: SocketAddr,
) -> Result<Arc<User>, AmqpError> {
    let refused = || replies::login_refused("EXTERNAL");
    let Some(name) = tls.and_then(|t| t.common_name.as_deref()) else {
        tracing::warn!(
            %peer,
            "login refused: EXTERNAL needs a TLS connection whose client certificate has a CN"
        );
        return Err(refused());
    };
    broker
        .auth()
        .login_external(name, peer.ip())
        .map_err(|why| {
            tracing::warn!(%peer, mechanism = "EXTERNAL", "login refused: {why}");
            refused()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_subject(cn: Option<&str>, org: &str) -> CertificateDer<'static> {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::new()).expect("params");
        let mut subject = rcgen::DistinguishedName::new();
        subject.push(rcgen::DnType::OrganizationName, org);
        if let Some(cn) = cn {
            subject.push(rcgen::DnType::CommonName, cn);
        }
        params.distinguished_name = subject;
        params.self_signed(&key).expect("cert").der().clone()
    }

    #[test]
    fn the_subject_common_name_is_the_user() {
        let cert = with_subject(Some("alice"), "Example Org");
        assert_eq!(common_name(&cert).as_deref(), Some("alice"));
        let peer = TlsPeer::from_certificates(Some(std::slice::from_ref(&cert)));
        assert_eq!(peer.common_name.as_deref(), Some("alice"));
    }

    #[test]
    fn no_common_name_no_certificate_or_garbage_is_no_user() {
        assert_eq!(common_name(&with_subject(None, "Example Org")), None);
        assert_eq!(
            common_name(&CertificateDer::from(vec![0x30, 0x03, 1, 2, 3])),
            None
        );
        assert_eq!(TlsPeer::from_certificates(None).common_name, None);
        assert_eq!(TlsPeer::from_certificates(Some(&[])).common_name, None);
    }
}
