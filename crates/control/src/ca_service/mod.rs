//! The mesh CA service: `istio.v1.auth.IstioCertificateService`. A caller (see
//! [`crate::callers`]) gets a certificate only for an identity the configuration places on
//! its node ([`placement`]), with DNS names only a gateway's auto-certificate hostnames
//! ([`serving_names`]); [`metrics`] counts what was issued and refused; [`rotation`] moves the
//! running mesh to a new root. Signing itself is `weft_identity::CertificateAuthority`, behind
//! `weft_identity::ca::RootRotation`.

pub mod metrics;
pub mod placement;
pub mod rotation;
mod service;
pub mod serving_names;

pub use metrics::CaMetrics;
pub use placement::{NodeIdentities, StaticNodeIdentities};
pub use rotation::RotationDriver;
pub use service::{CaService, CaServiceConfig};
pub use serving_names::{GatewayServingNames, NoServingNames, ServingNames, StaticServingNames};
