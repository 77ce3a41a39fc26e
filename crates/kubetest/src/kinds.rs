//! Resource types: how an object's `apiVersion`/`kind` maps to the URL path segments the
//! API serves it under (group, version, plural) and whether it lives in a namespace.

use crate::store::{ObjectKey, StoreError};
use serde_json::Value;

/// Kinds that are not namespaced (every other kind is; a namespaced object that names no
/// namespace is stored in `default`, as the API server does for requests without one).
const CLUSTER_SCOPED: &[&str] = &[
    "Namespace",
    "Node",
    "GatewayClass",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "TokenReview",
    "PersistentVolume",
    "StorageClass",
    "PriorityClass",
    "IngressClass",
    "RuntimeClass",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
    "CertificateSigningRequest",
];

/// One resource type of the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceType {
    /// API group (`""` for the core group).
    pub group: String,
    /// Version, e.g. `v1`.
    pub version: String,
    /// Kind, e.g. `Pod`.
    pub kind: String,
    /// Plural resource name, e.g. `pods`.
    pub plural: String,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
}

impl ResourceType {
    /// The type of an object from its `apiVersion` and `kind`.
    ///
    /// # Errors
    /// [`StoreError::Incomplete`] when either is missing.
    pub fn of_object(object: &Value) -> Result<ResourceType, StoreError> {
        let api_version = object["apiVersion"]
            .as_str()
            .ok_or(StoreError::Incomplete("apiVersion"))?;
        let kind = object["kind"]
            .as_str()
            .ok_or(StoreError::Incomplete("kind"))?;
        Ok(ResourceType::new(api_version, kind))
    }

    /// The type of `kind` at `api_version` (`group/version`, or `v1` for the core group).
    #[must_use]
    pub fn new(api_version: &str, kind: &str) -> ResourceType {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        ResourceType {
            group: group.to_owned(),
            version: version.to_owned(),
            kind: kind.to_owned(),
            plural: plural_of(kind),
            namespaced: !CLUSTER_SCOPED.contains(&kind),
        }
    }

    /// `apiVersion` of this type.
    #[must_use]
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Where `object` (of this type) is stored.
    ///
    /// # Errors
    /// [`StoreError::Incomplete`] when it has no `metadata.name`.
    pub fn key_of(&self, object: &Value) -> Result<ObjectKey, StoreError> {
        let metadata = &object["metadata"];
        let name = metadata["name"]
            .as_str()
            .filter(|n| !n.is_empty())
            .ok_or(StoreError::Incomplete("metadata.name"))?;
        let namespace = self.namespaced.then(|| {
            metadata["namespace"]
                .as_str()
                .unwrap_or("default")
                .to_owned()
        });
        Ok(ObjectKey {
            group: self.group.clone(),
            plural: self.plural.clone(),
            namespace,
            name: name.to_owned(),
        })
    }

    /// The key of the object `name` (in `namespace`) of this type.
    #[must_use]
    pub fn key(&self, namespace: Option<&str>, name: &str) -> ObjectKey {
        ObjectKey {
            group: self.group.clone(),
            plural: self.plural.clone(),
            namespace: self
                .namespaced
                .then(|| namespace.unwrap_or("default").to_owned()),
            name: name.to_owned(),
        }
    }

    pub(crate) fn index(&self) -> (String, String) {
        (self.group.clone(), self.plural.clone())
    }
}

/// The plural resource name the API uses for `kind` (kube's pluralisation: lower case,
/// `-y` → `-ies`, `-s` → `-ses`, otherwise `-s`; right for every kind weft reads or writes).
#[must_use]
pub fn plural_of(kind: &str) -> String {
    let gvk = kube::core::GroupVersionKind::gvk("", "v1", kind);
    kube::core::ApiResource::from_gvk(&gvk).plural
}
