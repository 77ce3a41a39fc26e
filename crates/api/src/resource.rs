//! The generic shape `{apiVersion, kind, metadata, spec, status}` shared by every custom
//! resource weft reads (Istio and Gateway API kinds).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

/// A custom resource with a typed `spec`. `status` is kept verbatim and never interpreted:
/// weft computes its own view of the world from specs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resource<S> {
    /// `group/version`, e.g. `security.istio.io/v1`.
    pub api_version: String,
    /// The kind, e.g. `AuthorizationPolicy`.
    pub kind: String,
    /// Standard Kubernetes object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The desired state.
    pub spec: S,
    /// Status as written by some controller; ignored by weft.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
}
