//! `weft-kube`: weft in a Kubernetes cluster.
//!
//! - [`client`]: the client of a weft process (in-cluster configuration or a kubeconfig);
//! - [`source`]: the API as the control plane's object source (one watcher per kind,
//!   resumption, relists, bookmarks, backoff) feeding [`weft_api::ObservedObjects`];
//! - [`convert`]: each API object into weft's model through the same parser, checks and
//!   findings as a manifest file.
//! - [`tokenreview`]: callers authenticated by their projected service account token
//!   (TokenReview; a node proxy's token stands for its pod's node);
//! - [`cluster_ca`]: the CA root from Secret `cacerts` or `istio-ca-secret`;
//!   [`root_configmap`]: the trust bundle as ConfigMap `istio-ca-root-cert` everywhere;
//! - [`deploy`]: the ServiceAccount, Deployment and Service of each Gateway weft runs,
//!   applied by the leader;
//! - [`status`]: conditions written back with server-side apply; [`leader`]: the Lease
//!   that decides which replica writes;
//! - [`control`]: all of the above around the control process (`weft control --kubernetes`).

pub mod client;
pub mod cluster_ca;
pub mod control;
pub mod convert;
pub mod deploy;
pub mod leader;
pub mod root_configmap;
pub mod source;
pub mod status;
pub mod tokenreview;

pub use client::{ClientError, connect};
pub use source::{ApiSource, WatchOptions};
