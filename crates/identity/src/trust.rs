//! The set of root certificates (and trust domains) a proxy accepts peers from. Holding more
//! than one root lets the mesh rotate its root without an outage: add the new root everywhere,
//! move workloads to certificates from the new root, then remove the old one.
//!
//! A bundle is live: clones share one set of roots, and [`TrustBundle::replace_roots`]
//! changes it for every clone and for every TLS configuration built from it (verifiers read
//! the current roots at each handshake). A proxy's CA client replaces the roots with the ones
//! the CA returns with each certificate, which is how a root rotation reaches running proxies.

use arc_swap::ArcSwap;
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
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

/// Roots plus the trust domains whose SPIFFE ids are accepted. Cheap to clone; clones share
/// the roots (see the module documentation).
#[derive(Debug, Clone)]
pub struct TrustBundle {
    trust_domains: Arc<[String]>,
    current: Arc<ArcSwap<Roots>>,
}

/// One version of the roots with the webpki client verifier built from them (built once per
/// change, not per handshake).
#[derive(Debug)]
pub(crate) struct Roots {
    pub(crate) certs: Arc<[CertificateDer<'static>]>,
    pub(crate) store: Arc<RootCertStore>,
    pub(crate) client_verifier: Arc<dyn ClientCertVerifier>,
}

impl Roots {
    fn build(certs: Vec<CertificateDer<'static>>) -> Result<Self, TrustBundleError> {
        if certs.is_empty() {
            return Err(TrustBundleError::Empty);
        }
        let mut store = RootCertStore::empty();
        for root in &certs {
            store
                .add(root.clone())
                .map_err(|err| TrustBundleError::BadRoot(err.to_string()))?;
        }
        let store = Arc::new(store);
        let provider = crate::tls::crypto_provider();
        let bad =
            |err: rustls::server::VerifierBuilderError| TrustBundleError::BadRoot(err.to_string());
        let client_verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::clone(&store), provider)
                .build()
                .map_err(bad)?;
        Ok(Self {
            certs: certs.into(),
            store,
            client_verifier,
        })
    }
}

impl TrustBundle {
    /// A bundle for `trust_domain` with the given roots (DER; at least one).
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
        Self::new(trust_domain, roots_from_pem(pem)?)
    }

    fn build(
        trust_domains: Vec<String>,
        roots: Vec<CertificateDer<'static>>,
    ) -> Result<Self, TrustBundleError> {
        Ok(Self {
            trust_domains: trust_domains.into(),
            current: Arc::new(ArcSwap::from_pointee(Roots::build(roots)?)),
        })
    }

    /// A separate bundle (not shared with this one) that also trusts `root`.
    pub fn with_root(&self, root: CertificateDer<'static>) -> Result<Self, TrustBundleError> {
        let mut roots = self.roots().to_vec();
        roots.push(root);
        Self::build(self.trust_domains.to_vec(), dedup(roots))
    }

    /// A separate bundle (not shared with this one) without `root`.
    pub fn without_root(&self, root: &CertificateDer<'_>) -> Result<Self, TrustBundleError> {
        let roots = self
            .roots()
            .iter()
            .filter(|r| *r != root)
            .cloned()
            .collect();
        Self::build(self.trust_domains.to_vec(), roots)
    }

    /// Makes `roots` the trusted roots of this bundle and of every clone of it; connections
    /// verified from now on use them. Returns whether anything changed. A set that is empty
    /// or holds an unusable root is refused and the current roots stay.
    pub fn replace_roots(
        &self,
        roots: Vec<CertificateDer<'static>>,
    ) -> Result<bool, TrustBundleError> {
        let roots = dedup(roots);
        if same_set(&self.roots(), &roots) {
            return Ok(false);
        }
        self.current.store(Arc::new(Roots::build(roots)?));
        Ok(true)
    }

    /// The trusted roots now.
    pub fn roots(&self) -> Arc<[CertificateDer<'static>]> {
        Arc::clone(&self.current.load().certs)
    }

    /// The roots now, as a rustls store.
    pub fn root_store(&self) -> Arc<RootCertStore> {
        Arc::clone(&self.current.load().store)
    }

    /// The current roots with their verifiers (read at each handshake).
    pub(crate) fn current(&self) -> Arc<Roots> {
        self.current.load_full()
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

/// Every certificate in PEM text (a bundle of roots); at least one.
pub fn roots_from_pem(pem: &str) -> Result<Vec<CertificateDer<'static>>, TrustBundleError> {
    let roots = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| TrustBundleError::Pem(err.to_string()))?;
    if roots.is_empty() {
        return Err(TrustBundleError::Empty);
    }
    Ok(roots)
}

fn same_set(a: &[CertificateDer<'static>], b: &[CertificateDer<'static>]) -> bool {
    a.len() == b.len() && a.iter().all(|root| b.contains(root))
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
