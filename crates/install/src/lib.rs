//! Installing weft in a Kubernetes cluster: the manifests `weft manifest generate` prints
//! and `weft install` applies, built from typed models (k8s-openapi structs, serialized),
//! never from text templates.
//!
//! - [`settings`]: the `--set key=value` values, their defaults and checks.
//! - [`rbac`]: every API permission the processes use, in one list the roles are written from.
//! - [`manifest`]: the object list (namespace, control plane, node proxy, GatewayClass) and
//!   its YAML; [`control_plane`] and [`node`] build their parts, [`pod`] what they share.
//! - [`gateway`]: what the leader control plane deploys for each Gateway weft runs
//!   (ServiceAccount, Deployment, Service owned by the Gateway);
//! - [`apply`]: server-side apply of the manifest (`weft install`) and its removal
//!   (`weft uninstall`), after [`teardown`]'s Jobs released every node's pods.

pub mod apply;
pub mod control_plane;
pub mod gateway;
pub mod manifest;
pub mod node;
pub mod pod;
pub mod rbac;
pub mod settings;
pub mod teardown;

pub use kube;
pub use manifest::{FIELD_MANAGER, Manifest, ManifestObject};
pub use settings::{KEYS, SettingError, Settings};
