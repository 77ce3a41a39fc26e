//! The install as a list of objects: each built from its typed model (k8s-openapi, and
//! `weft_api`'s GatewayClass), kept with what applying and deleting it needs (API path
//! pieces, scope), and rendered as multi-document YAML.

use crate::settings::Settings;
use crate::{control_plane, node};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;
use std::collections::BTreeMap;
use weft_api::gateway::{GatewayClass, GatewayClassSpec};
use weft_api::gateway_status::WEFT_CONTROLLER;

/// The label every installed object carries, so what an install made can be found again.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "weft");
/// Field manager of server-side apply.
pub const FIELD_MANAGER: &str = "weft";

/// One object of the install.
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestObject {
    /// `group/version` (`v1` for the core group).
    pub api_version: &'static str,
    /// The kind.
    pub kind: &'static str,
    /// The resource's plural name in API paths.
    pub plural: &'static str,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace` (None for cluster-scoped kinds).
    pub namespace: Option<String>,
    /// The whole object as JSON (`apiVersion`, `kind`, `metadata`, `spec`...).
    pub body: serde_json::Value,
}

impl ManifestObject {
    /// Wraps a typed k8s-openapi object.
    ///
    /// # Panics
    /// If the object does not serialize (k8s-openapi types always do).
    pub fn typed<K>(object: &K) -> ManifestObject
    where
        K: k8s_openapi::Resource + k8s_openapi::Metadata<Ty = ObjectMeta> + Serialize,
    {
        ManifestObject::from_parts(
            K::API_VERSION,
            K::KIND,
            K::URL_PATH_SEGMENT,
            object.metadata(),
            object,
        )
    }

    fn from_parts(
        api_version: &'static str,
        kind: &'static str,
        plural: &'static str,
        metadata: &ObjectMeta,
        object: &impl Serialize,
    ) -> ManifestObject {
        ManifestObject {
            api_version,
            kind,
            plural,
            name: metadata.name.clone().unwrap_or_default(),
            namespace: metadata.namespace.clone(),
            body: serde_json::to_value(object).expect("manifest objects serialize"),
        }
    }
}

/// Everything an install applies, in apply order (namespace first).
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// The objects.
    pub objects: Vec<ManifestObject>,
}

impl Manifest {
    /// The install for `settings`.
    #[must_use]
    pub fn generate(settings: &Settings) -> Manifest {
        let mut objects = vec![ManifestObject::typed(&namespace(settings))];
        objects.extend(control_plane::objects(settings));
        objects.extend(node::objects(settings));
        objects.push(gateway_class());
        Manifest { objects }
    }

    /// Multi-document YAML, one object per document.
    ///
    /// # Panics
    /// If an object does not serialize as YAML (JSON values always do).
    #[must_use]
    pub fn to_yaml(&self) -> String {
        let documents: Vec<String> = self
            .objects
            .iter()
            .map(|object| weft_api::yaml::to_string(&object.body).expect("JSON values are YAML"))
            .collect();
        documents.join("---\n")
    }

    /// The objects in the order to delete them (reverse of apply: the namespace last).
    pub fn deletion_order(&self) -> impl Iterator<Item = &ManifestObject> {
        self.objects.iter().rev()
    }
}

/// Metadata of an installed object: name, namespace (if any), labels incl. [`MANAGED_BY`].
#[must_use]
pub fn meta(name: &str, namespace: Option<&str>, labels: &[(&str, &str)]) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespace.map(str::to_owned),
        labels: Some(label_map(labels.iter().copied().chain([MANAGED_BY]))),
        ..ObjectMeta::default()
    }
}

/// Metadata of a pod template: labels only (pods get generated names).
#[must_use]
pub fn template_meta(labels: &[(&str, &str)]) -> ObjectMeta {
    ObjectMeta {
        labels: Some(label_map(labels.iter().copied().chain([MANAGED_BY]))),
        ..ObjectMeta::default()
    }
}

/// A label map from pairs.
pub fn label_map<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> BTreeMap<String, String> {
    pairs
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// A ServiceAccount in the install's namespace.
#[must_use]
pub fn service_account(settings: &Settings, name: &str) -> ServiceAccount {
    ServiceAccount {
        metadata: meta(name, Some(settings.namespace()), &[]),
        ..ServiceAccount::default()
    }
}

fn namespace(settings: &Settings) -> Namespace {
    Namespace {
        metadata: meta(settings.namespace(), None, &[]),
        ..Namespace::default()
    }
}

/// GatewayClass `weft`: Gateways of this class are run by weft's gateway.
fn gateway_class() -> ManifestObject {
    let class = GatewayClass {
        api_version: "gateway.networking.k8s.io/v1".to_owned(),
        kind: "GatewayClass".to_owned(),
        metadata: meta("weft", None, &[]),
        spec: GatewayClassSpec {
            controller_name: WEFT_CONTROLLER.to_owned(),
            description: Some("weft ingress and egress gateways".to_owned()),
            parameters_ref: None,
        },
        status: None,
    };
    ManifestObject::from_parts(
        "gateway.networking.k8s.io/v1",
        "GatewayClass",
        "gatewayclasses",
        &class.metadata,
        &class,
    )
}
