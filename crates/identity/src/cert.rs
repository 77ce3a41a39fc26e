//! A workload's certificate and private key, ready to hand to rustls.

use crate::SpiffeId;
use crate::ca::unix_to_system;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Why a certificate response could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkloadCertError {
    #[error("certificate chain is empty")]
    EmptyChain,
    #[error("certificate {index} of the chain is not PEM: {reason}")]
    Pem { index: usize, reason: String },
    #[error("leaf certificate cannot be parsed: {0}")]
    Leaf(String),
    #[error("leaf certificate is for {actual}, not the requested {expected}")]
    WrongIdentity { expected: String, actual: String },
    #[error("private key does not fit the certificate: {0}")]
    Key(String),
}

/// A workload certificate: the identity, its chain (leaf + intermediates), the CA roots that
/// came with it and the private key, pre-assembled for rustls.
pub struct WorkloadCert {
    identity: SpiffeId,
    certified_key: Arc<CertifiedKey>,
    roots: Vec<CertificateDer<'static>>,
    not_before: SystemTime,
    not_after: SystemTime,
    serial: Vec<u8>,
}

impl std::fmt::Debug for WorkloadCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkloadCert")
            .field("identity", &self.identity.to_string())
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl WorkloadCert {
    /// Assembles a certificate from a CA response (`chain_pem`: leaf first, root last) and
    /// the key the CSR was made with. The leaf must carry `identity` as its URI SAN.
    /// When the chain has more than one element, the last is the trust bundle: one or more
    /// roots in one PEM string (several while the mesh rotates its root, as Istio sends them).
    pub fn from_ca_response(
        identity: SpiffeId,
        key: PrivateKeyDer<'static>,
        chain_pem: &[String],
    ) -> Result<Self, WorkloadCertError> {
        let (leaf_and_intermediates, roots) = split_ca_response(chain_pem)?;
        Self::new(identity, key, leaf_and_intermediates, roots)
    }

    /// Assembles a certificate from DER parts: `chain` is leaf + intermediates.
    pub fn new(
        identity: SpiffeId,
        key: PrivateKeyDer<'static>,
        chain: Vec<CertificateDer<'static>>,
        roots: Vec<CertificateDer<'static>>,
    ) -> Result<Self, WorkloadCertError> {
        let leaf = chain.first().ok_or(WorkloadCertError::EmptyChain)?;
        let info = crate::tls::leaf_info(leaf).map_err(WorkloadCertError::Leaf)?;
        match &info.spiffe_id {
            Some(actual) if *actual == identity => {}
            other => {
                return Err(WorkloadCertError::WrongIdentity {
                    expected: identity.to_string(),
                    actual: other
                        .as_ref()
                        .map_or_else(|| "no SPIFFE id".to_owned(), ToString::to_string),
                });
            }
        }
        let provider = crate::tls::crypto_provider();
        let certified_key = CertifiedKey::from_der(chain, key, &provider)
            .map_err(|err| WorkloadCertError::Key(err.to_string()))?;
        Ok(Self {
            identity,
            certified_key: Arc::new(certified_key),
            roots,
            not_before: unix_to_system(info.not_before),
            not_after: unix_to_system(info.not_after),
            serial: info.serial,
        })
    }

    /// The identity this certificate proves.
    pub fn identity(&self) -> &SpiffeId {
        &self.identity
    }

    /// Chain (leaf + intermediates) and signing key for rustls.
    pub fn certified_key(&self) -> &Arc<CertifiedKey> {
        &self.certified_key
    }

    /// Leaf + intermediates.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.certified_key.cert
    }

    /// Roots the CA returned with the certificate (may be empty).
    pub fn roots(&self) -> &[CertificateDer<'static>] {
        &self.roots
    }

    /// Start of validity.
    pub fn not_before(&self) -> SystemTime {
        self.not_before
    }

    /// End of validity.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// The leaf's serial number (big-endian bytes).
    pub fn serial(&self) -> &[u8] {
        &self.serial
    }

    /// Total lifetime (`not_after - not_before`).
    pub fn lifetime(&self) -> Duration {
        self.not_after
            .duration_since(self.not_before)
            .unwrap_or_default()
    }
}

/// A CA response's chain as (leaf + intermediates, roots): the last element is the trust
/// bundle (possibly several roots in one PEM string) when there is more than one element.
///
/// # Errors
/// An element that is not PEM, or an empty chain.
#[allow(clippy::type_complexity)]
pub fn split_ca_response(
    chain_pem: &[String],
) -> Result<(Vec<CertificateDer<'static>>, Vec<CertificateDer<'static>>), WorkloadCertError> {
    let parse = |index: usize, pem: &String| {
        CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| WorkloadCertError::Pem {
                index,
                reason: err.to_string(),
            })
    };
    let Some((last, above_leaf)) = chain_pem.split_last() else {
        return Err(WorkloadCertError::EmptyChain);
    };
    if above_leaf.is_empty() {
        return Ok((parse(0, last)?, Vec::new()));
    }
    let mut chain = Vec::with_capacity(above_leaf.len());
    for (index, pem) in above_leaf.iter().enumerate() {
        chain.extend(parse(index, pem)?);
    }
    let roots = parse(above_leaf.len(), last)?;
    if chain.is_empty() {
        return Err(WorkloadCertError::EmptyChain);
    }
    Ok((chain, roots))
}
