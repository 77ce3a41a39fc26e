//! Typed validation errors for incoming xDS resources: the error types and field checks of
//! weft-policy's [`validation`](weft_policy::validation), shared so that workloads, services
//! and policies are rejected (NACKed per resource) the same way.

pub(crate) use weft_policy::validation::Ctx;
pub use weft_policy::validation::{Problem, ValidationError};
