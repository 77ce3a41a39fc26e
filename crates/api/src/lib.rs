//! weft's configuration model: typed Kubernetes, Istio and Gateway API resources parsed from
//! YAML, per-object validation, cross-object analysis, and the config store fed by a watched
//! directory. It owns the user-facing schema; it must not know about xDS or the data plane.
//!
//! - Core kinds are `k8s-openapi`'s types. Istio kinds ([`istio`]) are written here from the
//!   public API reference. Gateway API specs ([`gateway`]) come from the `gateway-api` crate,
//!   generated from the upstream CRDs: it has every standard-channel kind of the current
//!   release (including `ListenerSet` and `BackendTLSPolicy` at v1) and shares our
//!   `k8s-openapi` version; its cost is compiling `kube-core`/`schemars` once, which is far
//!   cheaper than keeping ~3000 lines of hand-written route/filter schemas complete.
//! - [`load`] parses multi-document YAML into [`Object`]s with a [`Source`] each; unknown
//!   fields become [`Finding`]s with a "did you mean" hint ([`suggest`]).
//! - [`ConfigSnapshot`] indexes objects; [`expand_pods`] turns workloads into pods (the one
//!   place that decides pod names, nodes and IPs).
//! - [`gateway_status`]: the Gateway API attachment model (which Gateways weft runs, which
//!   routes attach to which listeners) and every object's status conditions, shared by the
//!   control plane's translation, `weft x status`, `weft status --gateways` and analysis.

pub mod analyze;
pub mod authz_fields;
pub mod ca_refs;
pub mod cluster_ip;
pub mod cluster_kinds;
pub mod constraints;
pub mod expand;
pub mod files;
pub mod finding;
pub mod gateway;
pub mod gateway_status;
pub mod istio;
pub mod load;
pub mod locate;
pub mod object;
pub mod report;
pub mod resource;
pub mod routes;
pub mod schema;
pub mod selector;
pub mod snapshot;
pub mod source;
pub mod store;
pub mod suggest;
pub mod validate;
pub mod watch;
pub mod waypoint;
pub mod yaml;

pub use analyze::{analyze, check_duplicates};
pub use expand::{ExpandedPod, expand_pods};
pub use finding::{Code, Finding, Severity};
pub use load::{LoadResult, load_file, load_paths, parse_manifests};
pub use object::{Kind, LoadedObject, Object, ObjectRef, Source};
pub use report::{Report, analyze_paths, validate_paths};
pub use resource::Resource;
pub use snapshot::ConfigSnapshot;
pub use source::{ObjectSource, ObservedObjects};
pub use store::{ConfigEvent, ConfigStore, StoreError};
pub use watch::WatchHandle;
