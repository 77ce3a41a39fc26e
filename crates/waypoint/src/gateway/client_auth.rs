//! Client certificate validation on HTTPS ports (the Gateway's `spec.tls.frontend`): the
//! rustls client verifier built from a listener's `weft.l7.v1.ClientValidation`.
//!
//! - `AllowValidOnly` (the default): the client must present a certificate chaining to the
//!   CA bundle; without one, or with one from another CA, the handshake fails.
//! - `AllowInsecureFallback`: the client is asked for a certificate and it is checked, but a
//!   missing or failing one is only logged and the connection is served.
//!
//! A bundle that cannot be used (no certificate parses) makes the listener unusable: the
//! port's HTTPS connections are then refused rather than served unchecked.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DistinguishedName, RootCertStore};
use weft_identity::verify::CheckClientCert;
use weft_proto::l7 as pb;

/// The client verifier for `validation`.
///
/// # Errors
/// The CA bundle holds no usable certificate (the message names the settings' source).
pub(crate) fn client_verifier(
    validation: &pb::ClientValidation,
) -> Result<Arc<dyn ClientCertVerifier>, String> {
    let source = &validation.source;
    let mut roots = RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(validation.ca_bundle.as_bytes()) {
        let certificate = certificate.map_err(|e| format!("{source}: CA bundle: {e}"))?;
        roots
            .add(certificate)
            .map_err(|e| format!("{source}: CA bundle: {e}"))?;
    }
    if roots.is_empty() {
        return Err(format!("{source}: CA bundle holds no certificate"));
    }
    let provider = weft_identity::tls::crypto_provider();
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
    if !validation.allow_insecure_fallback {
        return builder
            .build()
            .map_err(|e| format!("{source}: CA bundle: {e}"));
    }
    let checked = builder
        .allow_unauthenticated()
        .build()
        .map_err(|e| format!("{source}: CA bundle: {e}"))?;
    Ok(weft_identity::verify::client_verifier(InsecureFallback {
        checked,
    }))
}

/// `AllowInsecureFallback`: asks for and checks a certificate, admits the client whatever
/// the outcome.
#[derive(Debug)]
struct InsecureFallback {
    checked: Arc<dyn ClientCertVerifier>,
}

impl CheckClientCert for InsecureFallback {
    fn mandatory(&self) -> bool {
        false
    }

    fn root_hints(&self) -> &[DistinguishedName] {
        self.checked.root_hint_subjects()
    }

    fn check_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .checked
            .verify_client_cert(end_entity, intermediates, now);
        if let Err(error) = &verified {
            tracing::debug!(%error, "client certificate does not verify; admitted (AllowInsecureFallback)");
        }
        Ok(ClientCertVerified::assertion())
    }
}
