//! The mesh CA service: `istio.v1.auth.IstioCertificateService` with bearer-token caller
//! authentication ([`caller`], [`tokens`]), per-node authorization ([`authz`]) and metrics ([`metrics`]).
//! Signing itself is `weft_identity::CertificateAuthority`.

pub mod authz;
pub mod caller;
pub mod metrics;
mod service;
mod token_watch;
pub mod tokens;

pub use authz::{NodeIdentities, StaticNodeIdentities};
pub use caller::{Caller, CallerAuthenticator, XdsCallerAuth};
pub use metrics::CaMetrics;
pub use service::{CaService, CaServiceConfig};
pub use token_watch::{TokenFileWatch, watch_token_file};
pub use tokens::{ReloadableTokenFile, TokenFile, TokenFileError};
