//! `weft-kube`: weft in a Kubernetes cluster.
//!
//! - [`client`]: the client of a weft process (in-cluster configuration or a kubeconfig);
//! - [`source`]: the API as the control plane's object source (one watcher per kind,
//!   resumption, relists, bookmarks, backoff) feeding [`weft_api::ObservedObjects`];
//! - [`convert`]: each API object into weft's model through the same parser, checks and
//!   findings as a manifest file.

pub mod client;
pub mod convert;
pub mod source;

pub use client::{ClientError, connect};
pub use source::{ApiSource, WatchOptions};
