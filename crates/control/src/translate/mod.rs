//! Translation: pure functions from the configuration model ([`weft_api::ConfigSnapshot`]) to
//! the resources an ambient node proxy consumes: `istio.workload.Address` (workloads and
//! services) and `istio.security.Authorization` (L4 policies).
//!
//! Nothing here touches the network or the clock; the same snapshot always gives the same
//! output, byte for byte, with each resource versioned by a hash of its content.
//!
//! - [`translate`] translates a whole snapshot once.
//! - [`Translator`] keeps the last output plus an index from config objects to the resources
//!   that depend on them, so [`Translator::apply_change`] re-translates only those.
//!
//! Naming and choices (beyond `docs/wire.md`):
//! - Workload uids: `<cluster>//Pod/<ns>/<name>`,
//!   `<cluster>/networking.istio.io/WorkloadEntry/<ns>/<name>`, and for a ServiceEntry's
//!   inline endpoints `<cluster>/networking.istio.io/ServiceEntry/<ns>/<entry>/<address>`
//!   (the endpoint's index when it has no address).
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
mod incremental;
mod peer_authn;
pub mod render;
mod service;
mod version;
mod waypoint;
mod workload;

pub use authz::{
    DRY_RUN_ANNOTATION, PolicyTranslation, translate_authorization_policy, wildcard_match,
};
pub use incremental::{Change, Translator, changed_objects};
pub use peer_authn::MTLS_POLICY_PREFIX;
pub use service::{TRAFFIC_DISTRIBUTION_ANNOTATION, app_protocol, kube_hostname, service_key};
pub use version::content_version;
pub use waypoint::{
    USE_WAYPOINT_LABEL, USE_WAYPOINT_NAMESPACE_LABEL, WAYPOINT_FOR_LABEL, WAYPOINT_HBONE_PORT,
};
pub use workload::{DATAPLANE_MODE_LABEL, entry_uid, pod_uid};

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use weft_api::{ConfigSnapshot, ObjectRef};
use weft_proto::security::Authorization;
use weft_proto::workload::Address;

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
}

impl Default for TranslateOptions {
    fn default() -> Self {
        TranslateOptions {
            trust_domain: "cluster.local".to_owned(),
            domain_suffix: "cluster.local".to_owned(),
            root_namespace: "istio-system".to_owned(),
            cluster_id: "Kubernetes".to_owned(),
            network: String::new(),
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

/// Identity of one output resource: its type and xDS resource name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceKey {
    /// `istio.workload.Address`, named by workload uid or `<ns>/<hostname>`.
    Address(String),
    /// `istio.security.Authorization`, named `<ns>/<name>`.
    Authorization(String),
}

impl ResourceKey {
    /// The xDS resource name.
    #[must_use]
    pub fn name(&self) -> &str {
        match self {
            ResourceKey::Address(name) | ResourceKey::Authorization(name) => name,
        }
    }
}

impl fmt::Display for ResourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResourceKey::Address(name) => write!(f, "Address {name}"),
            ResourceKey::Authorization(name) => write!(f, "Authorization {name}"),
        }
    }
}

/// One translated resource with its xDS name, content version and aliases.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<M> {
    /// xDS resource name.
    pub name: String,
    /// Hash of the encoded content (see [`content_version`]).
    pub version: String,
    /// Other names the resource answers to (`<network>/<ip>` per address).
    pub aliases: Vec<String>,
    /// Size of the protobuf encoding, in bytes.
    pub encoded_len: usize,
    /// The resource.
    pub message: M,
}

/// Everything translated from one snapshot.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Output {
    /// Workloads and services, by resource name.
    pub addresses: BTreeMap<String, Arc<Versioned<Address>>>,
    /// L4 policies, by resource name.
    pub authorizations: BTreeMap<String, Arc<Versioned<Authorization>>>,
    /// Warnings, grouped by the resource whose translation raised them (a skipped policy keeps
    /// its warnings under the name it would have had).
    pub warnings: BTreeMap<ResourceKey, Vec<Warning>>,
}

impl Output {
    /// Every warning, in resource order.
    pub fn all_warnings(&self) -> impl Iterator<Item = &Warning> {
        self.warnings.values().flatten()
    }

    /// Number of resources of both types.
    #[must_use]
    pub fn resource_count(&self) -> usize {
        self.addresses.len() + self.authorizations.len()
    }

    /// Sum of the encoded sizes of every resource: what a first full push carries.
    #[must_use]
    pub fn encoded_size(&self) -> usize {
        let addresses: usize = self.addresses.values().map(|r| r.encoded_len).sum();
        let authorizations: usize = self.authorizations.values().map(|r| r.encoded_len).sum();
        addresses + authorizations
    }

    /// The version of one resource, if it exists.
    #[must_use]
    pub fn version(&self, key: &ResourceKey) -> Option<&str> {
        match key {
            ResourceKey::Address(name) => self.addresses.get(name).map(|r| r.version.as_str()),
            ResourceKey::Authorization(name) => {
                self.authorizations.get(name).map(|r| r.version.as_str())
            }
        }
    }
}

/// Translates a whole snapshot.
#[must_use]
pub fn translate(snapshot: &ConfigSnapshot, options: &TranslateOptions) -> Output {
    let mut translator = Translator::new(options.clone());
    translator.full(snapshot);
    translator.into_output()
}
