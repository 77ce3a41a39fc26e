//! Custom rustls certificate verifiers without the boilerplate: a verifier states only how
//! it checks a certificate ([`CheckServerCert`], [`CheckClientCert`]); [`server_verifier`]
//! and [`client_verifier`] wrap it into the rustls trait, whose handshake signature checks
//! and signature scheme list are webpki's with weft's crypto provider
//! ([`crate::tls::crypto_provider`], aws-lc-rs), the same as rustls' own
//! `WebPkiServerVerifier` and `WebPkiClientVerifier` built with that provider do.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use std::fmt::Debug;
use std::sync::Arc;

/// How a client checks a server's certificate (rustls'
/// [`ServerCertVerifier::verify_server_cert`]).
pub trait CheckServerCert: Debug + Send + Sync + 'static {
    /// Accepts or refuses the server's chain for `server_name`.
    ///
    /// # Errors
    /// Why the certificate is refused.
    fn check_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error>;
}

/// How a server checks a client's certificate (rustls'
/// [`ClientCertVerifier::verify_client_cert`]), and whether one is required.
pub trait CheckClientCert: Debug + Send + Sync + 'static {
    /// Accepts or refuses the client's chain.
    ///
    /// # Errors
    /// Why the certificate is refused.
    fn check_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error>;

    /// Whether a client without a certificate is refused (default: yes).
    fn mandatory(&self) -> bool {
        true
    }

    /// The CA names sent with the certificate request (default: none).
    fn root_hints(&self) -> &[DistinguishedName] {
        &[]
    }
}

/// `check` as a rustls server certificate verifier.
pub fn server_verifier(check: impl CheckServerCert) -> Arc<dyn ServerCertVerifier> {
    Arc::new(Verifier::new(check))
}

/// `check` as a rustls client certificate verifier (a certificate is always asked for).
pub fn client_verifier(check: impl CheckClientCert) -> Arc<dyn ClientCertVerifier> {
    Arc::new(Verifier::new(check))
}

/// A check plus the provider's signature algorithms.
#[derive(Debug)]
struct Verifier<C> {
    check: C,
    algorithms: WebPkiSupportedAlgorithms,
}

impl<C> Verifier<C> {
    fn new(check: C) -> Self {
        let algorithms = crate::tls::crypto_provider().signature_verification_algorithms;
        Self { check, algorithms }
    }
}

/// The handshake signature methods, the same in both verifier traits: webpki with the
/// provider's algorithms.
macro_rules! signature_methods {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.algorithms.supported_schemes()
        }
    };
}

impl<C: CheckServerCert> ServerCertVerifier for Verifier<C> {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check
            .check_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    signature_methods!();
}

impl<C: CheckClientCert> ClientCertVerifier for Verifier<C> {
    fn client_auth_mandatory(&self) -> bool {
        self.check.mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.check.root_hints()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check.check_client_cert(end_entity, intermediates, now)
    }

    signature_methods!();
}
