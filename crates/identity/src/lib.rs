//! Workload identity for weft: SPIFFE ids, the certificate authority's signing logic, the
//! client-side certificate manager (fetch, cache, rotate), trust bundles, and the rustls
//! configurations used for HBONE and the control plane. It must not open listeners itself,
//! and it does not decide who may get which identity (that is the control plane's CA service).

pub mod ca;
mod cert;
pub mod inspect;
mod manager;
pub mod provider;
mod spiffe;
pub mod tls;
mod trust;
pub mod verify;

pub use ca::CertificateAuthority;
pub use cert::{WorkloadCert, WorkloadCertError, split_ca_response};
pub use manager::{
    CertError, CertManager, CertManagerConfig, CertState, key_and_csr, key_and_csr_with_dns,
};
pub use provider::{
    CertRequest, CertificateProvider, FetchError, GrpcCaClient, GrpcCaClientConfig,
    LocalCaProvider, TokenSource,
};
pub use spiffe::{DEFAULT_SERVICE_ACCOUNT, DEFAULT_TRUST_DOMAIN, SpiffeId, SpiffeIdError};
pub use tls::{PeerIdentityError, client_config, peer_identity, server_config};
pub use trust::{TrustBundle, TrustBundleError, roots_from_pem};
