//! The set of root certificates (and trust domains) a proxy accepts peers from. Holding more
//! than one root lets the mesh rotate its root without an outage: add the new root everywhere,
//! move workloads to certificates from the new root, then remove the old one.

use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use std::sync::Arc;

/// Why a root could not be added to a bundle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustBundleError {
    #[error("trust bundle PEM is unreadable: {0}")]
    Pem(String),
    #[error("trust bundle PEM holds no certificate")]
    Empty,
    #[error("root certificate is not a usable trust anchor: {0}")]
    BadRoot(String),
}

/// Roots plus the trust domains whose SPIFFE ids are accepted. Cheap to clone.
#[derive(Debug, Clone)]
pub struct TrustBundle {
    trust_domains: Arc<[String]>,
    roots: Arc<[CertificateDer<'static>]>,
    store: Arc<RootCertStore>,
}

impl TrustBundle {
    /// A bundle for `trust_domain` with the given roots (DER).
    pub fn new(
        trust_domain: impl Into<String>,
        roots: impl IntoIterator<Item = CertificateDer<'static>>,
    ) -> Result<Self, TrustBundleError> {
        Self::build(
            vec![trust_domain.into()],
            dedup(roots.into_iter().collect()),
        )
    }

    /// A bundle for `trust_domain` from PEM text holding one or more root certificates.
    pub fn from_pem(trust_domain: impl Into<String>, pem: &str) -> Result<Self, TrustBundleError> {
        let roots = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| TrustBundleError::Pem(err.to_string()))?;
        if roots.is_empty() {
            return Err(TrustBundleError::Empty);
        }
        Self::new(trust_domain, roots)
    }

    fn build(
        trust_domains: Vec<String>,
        roots: Vec<CertificateDer<'static>>,
    ) -> Result<Self, TrustBundleError> {
        let mut store = RootCertStore::empty();
        for root in &roots {
            store
                .add(root.clone())
                .map_err(|err| TrustBundleError::BadRoot(err.to_string()))?;
        }
        Ok(Self {
            trust_domains: trust_domains.into(),
            roots: roots.into(),
            store: Arc::new(store),
        })
    }

    /// A copy of this bundle that also trusts `root` (root rotation: phase 1).
    pub fn with_root(&self, root: CertificateDer<'static>) -> Result<Self, TrustBundleError> {
        let mut roots = self.roots.to_vec();
        roots.push(root);
        Self::build(self.trust_domains.to_vec(), dedup(roots))
    }

    /// A copy of this bundle without `root` (root rotation: last phase).
    pub fn without_root(&self, root: &CertificateDer<'_>) -> Result<Self, TrustBundleError> {
        let roots = self.roots.iter().filter(|r| *r != root).cloned().collect();
        Self::build(self.trust_domains.to_vec(), roots)
    }

    /// The trusted roots.
    pub fn roots(&self) -> &[CertificateDer<'static>] {
        &self.roots
    }

    /// The roots as a rustls store.
    pub fn root_store(&self) -> &Arc<RootCertStore> {
        &self.store
    }

    /// Trust domains whose identities are accepted; the first is the local one.
    pub fn trust_domains(&self) -> &[String] {
        &self.trust_domains
    }

    /// True if identities from `trust_domain` are accepted.
    pub fn accepts_trust_domain(&self, trust_domain: &str) -> bool {
        self.trust_domains.iter().any(|td| td == trust_domain)
    }
}

fn dedup(roots: Vec<CertificateDer<'static>>) -> Vec<CertificateDer<'static>> {
    let mut unique: Vec<CertificateDer<'static>> = Vec::with_capacity(roots.len());
    for root in roots {
        if !unique.contains(&root) {
            unique.push(root);
        }
    }
    unique
}
