//! Translation: pure functions from the configuration model ([`weft_api::ConfigSnapshot`]) to
//! the resources an ambient node proxy consumes, `istio.workload.Address` (workloads and
//! services) and `istio.security.Authorization` (L4 policies), the one a waypoint
//! consumes, `weft.l7.v1.Waypoint` (its services, routes, L7 policies and JWT rules), and
//! the one an ingress or egress gateway consumes, `weft.l7.v1.Gateway` (its listeners with
//! certificates and attached routes, policies; sent only to that gateway).
//!
//! Nothing here touches the network or the clock; the same snapshot always gives the same
//! output, byte for byte, with each resource versioned by a hash of its content.
//!
//! - [`translate`] translates a whole snapshot once.
//! - [`Output`] holds every resource encoded once, keyed by (type URL, name)
//!   ([`ResourceKey`]); [`RESOURCE_TYPES`] lists the types (`resource.rs` says how to add one).
//! - [`Translator`] keeps the last output plus an index from config objects to the resources
//!   that depend on them, so [`Translator::apply_change`] re-translates only those.
//!
//! Naming and choices (beyond `docs/wire.md`):
//! - Workload uids: `<cluster>//Pod/<ns>/<name>`,
//!   `<cluster>/networking.istio.io/WorkloadEntry/<ns>/<name>`, and for a ServiceEntry's
//!   inline endpoints `<cluster>/networking.istio.io/ServiceEntry/<ns>/<entry>/<address>`
//!   (the endpoint's index when it has no address), and for the addresses of a selector-less
//!   Service's EndpointSlices `<cluster>/discovery.k8s.io/EndpointSlice/<ns>/<slice>/<ip>`.
//! - STRICT peer authentication becomes DENY policies in the root namespace named
//!   `weft-mtls-strict`, `weft-mtls-strict-except-<ports>` or `weft-mtls-strict-only-<ports>`,
//!   scoped WORKLOAD_SELECTOR and listed on exactly the workloads whose effective mode they
//!   express. A GLOBAL or NAMESPACE scoped DENY could not be overridden by a more specific
//!   PERMISSIVE setting, so per-workload binding is the only exact encoding of the precedence.
//! - An AuthorizationPolicy with a non-empty selector is WORKLOAD_SELECTOR (in the root
//!   namespace it selects across all namespaces); without one it is GLOBAL in the root
//!   namespace and NAMESPACE elsewhere.

mod authz;
mod context;
mod endpoint_slice;
mod gateway;
mod incremental;
mod l7;
mod mesh;
mod peer_authn;
mod pod_status;
pub mod render;
mod resource;
mod service;
mod version;
mod waypoint;
mod workload;

pub use authz::{DRY_RUN_ANNOTATION, PolicyTranslation, translate_authorization_policy};
pub use endpoint_slice::{SERVICE_NAME_LABEL, slice_endpoint_uid};
pub use gateway::{GATEWAY_NAME_LABEL, gateway_service_account};
pub use incremental::{Change, Translator, changed_objects};
pub use l7::port_protocol;
pub use mesh::{MESH_CONFIG_KEY, MESH_CONFIG_MAP, outbound_traffic_policy};
pub use peer_authn::MTLS_POLICY_PREFIX;
pub use resource::{
    ADDRESS, AUTHORIZATION, GATEWAY, RESOURCE_TYPES, Resource, ResourceKey, ResourceType, WAYPOINT,
    message_name, resource_type,
};
pub use service::{TRAFFIC_DISTRIBUTION_ANNOTATION, app_protocol, kube_hostname, service_key};
pub use version::content_version;
pub use waypoint::{
    USE_WAYPOINT_LABEL, USE_WAYPOINT_NAMESPACE_LABEL, WAYPOINT_FOR_LABEL, WAYPOINT_HBONE_PORT,
};
pub use weft_policy::wire::wildcard as wildcard_match;
pub use workload::{DATAPLANE_MODE_LABEL, entry_uid, pod_uid};

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use weft_api::{ConfigSnapshot, ObjectRef};

/// Settings that shape translation (flags of `weft control`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranslateOptions {
    /// SPIFFE trust domain of workload identities.
    pub trust_domain: String,
    /// DNS suffix of service hostnames: `<name>.<ns>.svc.<domain_suffix>`.
    pub domain_suffix: String,
    /// Policies here apply mesh-wide; mesh-level PeerAuthentication lives here.
    pub root_namespace: String,
    /// Cluster id: first part of workload uids and `Workload.cluster_id`.
    pub cluster_id: String,
    /// Network of every address (empty = the default network).
    pub network: String,
    /// Outbound traffic policy when the mesh config (ConfigMap `istio`) sets none.
    pub outbound_traffic_policy: weft_proto::mesh::mesh_config::OutboundTrafficPolicy,
}

impl Default for TranslateOptions {
    fn default() -> Self {
        TranslateOptions {
            trust_domain: "cluster.local".to_owned(),
            domain_suffix: "cluster.local".to_owned(),
            root_namespace: "istio-system".to_owned(),
            cluster_id: "Kubernetes".to_owned(),
            network: String::new(),
            outbound_traffic_policy: weft_proto::mesh::mesh_config::OutboundTrafficPolicy::AllowAny,
        }
    }
}

/// Something translation changed, dropped or could not do, about one config object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Warning {
    /// The object the warning is about.
    pub object: ObjectRef,
    /// What happened and what to do.
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.object, self.message)
    }
}

/// Everything translated from one snapshot: resources by type URL, each type's by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Output {
    resources: BTreeMap<&'static str, BTreeMap<String, Arc<Resource>>>,
    /// Warnings, grouped by the resource whose translation raised them (a skipped policy keeps
    /// its warnings under the name it would have had).
    pub warnings: BTreeMap<ResourceKey, Vec<Warning>>,
}

/// What [`Output::of_type`] gives for a type with no resources.
static NO_RESOURCES: BTreeMap<String, Arc<Resource>> = BTreeMap::new();

impl Output {
    /// Every warning, in resource order.
    pub fn all_warnings(&self) -> impl Iterator<Item = &Warning> {
        self.warnings.values().flatten()
    }

    /// The resources of one type, by name.
    #[must_use]
    pub fn of_type(&self, type_url: &str) -> &BTreeMap<String, Arc<Resource>> {
        self.resources.get(type_url).unwrap_or(&NO_RESOURCES)
    }

    /// The type URLs that have resources.
    pub fn type_urls(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.resources.keys().copied()
    }

    /// Every resource's key.
    pub fn keys(&self) -> impl Iterator<Item = ResourceKey> + '_ {
        self.resources.iter().flat_map(|(type_url, resources)| {
            resources
                .keys()
                .map(|name| ResourceKey::new(type_url, name.clone()))
        })
    }

    /// One resource, if it exists.
    #[must_use]
    pub fn get(&self, key: &ResourceKey) -> Option<&Arc<Resource>> {
        self.resources.get(key.type_url)?.get(&key.name)
    }

    /// The version of one resource, if it exists.
    #[must_use]
    pub fn version(&self, key: &ResourceKey) -> Option<&str> {
        self.get(key).map(|r| r.version.as_str())
    }

    /// Stores `resource` under `key`, replacing what was there.
    pub fn insert(&mut self, key: &ResourceKey, resource: Resource) {
        let resources = self.resources.entry(key.type_url).or_default();
        resources.insert(key.name.clone(), Arc::new(resource));
    }

    /// Drops the resource under `key`, if any.
    pub fn remove(&mut self, key: &ResourceKey) {
        if let Some(resources) = self.resources.get_mut(key.type_url) {
            resources.remove(&key.name);
            if resources.is_empty() {
                self.resources.remove(key.type_url);
            }
        }
    }

    /// Every resource of one type as its message `M`, in name order.
    ///
    /// # Errors
    /// Fails if `M` is not the type's message.
    pub fn decode_all<M: prost::Message + Default>(
        &self,
        type_url: &str,
    ) -> Result<Vec<M>, prost::DecodeError> {
        self.of_type(type_url)
            .values()
            .map(|r| r.decode())
            .collect()
    }

    /// Number of resources of every type.
    #[must_use]
    pub fn resource_count(&self) -> usize {
        self.resources.values().map(BTreeMap::len).sum()
    }

    /// Sum of the encoded sizes of every resource: what a first full push carries.
    #[must_use]
    pub fn encoded_size(&self) -> usize {
        let sizes = self.resources.values().flat_map(BTreeMap::values);
        sizes.map(|r| r.encoded_len()).sum()
    }
}

/// Translates a whole snapshot.
#[must_use]
pub fn translate(snapshot: &ConfigSnapshot, options: &TranslateOptions) -> Output {
    let mut translator = Translator::new(options.clone());
    translator.full(snapshot);
    translator.into_output()
}
