//! The weft control plane (`weft control`): config store, translation, xDS push, the CA
//! service and the admin API. Today it holds the CA parts: [`ca`] (the Istio certificate
//! service with caller authentication and authorization), [`secure_server`] (the TLS listener
//! on the secure port that serves gRPC services) and [`state_dir`] (the private state
//! directory), plus [`translate`] (config model -> workload API resources). It must not
//! contain data-plane logic or sign certificates itself: signing is
//! `weft_identity::CertificateAuthority`.

pub mod admin;
pub mod ca;
pub mod process;
pub mod push;
pub mod secure_server;
pub mod state_dir;
pub mod translate;
