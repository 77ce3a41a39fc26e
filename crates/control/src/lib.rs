//! The weft control plane (`weft control`). It owns: [`translate`] (pure functions from the
//! config model to the ambient workload API, with an incremental translator), [`push`]
//! (keeping the xDS snapshot equal to the translation of the watched config store, and
//! placing identities on nodes for the CA), [`callers`] (bearer tokens -> callers, for the CA
//! and xDS, from a watched token file), [`ca_service`] (the Istio certificate service with
//! per-node authorization), [`secure_server`] (the TLS port serving CA and xDS, with
//! [`connection_guard`]'s deadline and per-source limit), [`admin`] (readiness, metrics,
//! debug pages) with [`readiness`] (what start-up still waits for), [`state_dir`] and
//! [`process`] (wiring it all into the running process); [`authz_l7`] answers what a
//! waypoint's L7 policies decide for one request, and [`authz`] chains it with the node
//! proxies' L4 decisions into `weft x authz check`'s whole answer (also the dashboard's
//! `/api/authz`).
//!
//! It must not contain data-plane logic, and it does not sign certificates itself: signing
//! is `weft_identity::CertificateAuthority`; delta xDS mechanics are `weft_xds`.

pub mod admin;
pub mod authz;
pub mod authz_l7;
pub mod ca_service;
pub mod callers;
pub mod connection_guard;
pub mod process;
pub mod push;
pub mod readiness;
pub mod secure_server;
pub mod state_dir;
pub mod translate;
