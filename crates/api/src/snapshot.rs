//! [`ConfigSnapshot`]: an immutable, indexed view of a set of objects that the control plane,
//! `weft up` and `weft analyze` query.

use crate::expand::{ExpandedPod, expand_pods};
use crate::object::{Kind, LoadedObject, Object, ObjectRef};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

/// An indexed set of objects. When two objects share kind/namespace/name the first one wins
/// (analysis reports the duplicate).
#[derive(Debug, Clone, Default)]
pub struct ConfigSnapshot {
    objects: Vec<LoadedObject>,
    index: HashMap<ObjectRef, usize>,
    by_kind: HashMap<Kind, Vec<usize>>,
    /// The expansion of the workloads, computed on first use (the snapshot is immutable).
    pods: OnceLock<Arc<[ExpandedPod]>>,
    /// Pods are taken as observed (Kubernetes mode), not expanded from workloads.
    observed: bool,
}

impl ConfigSnapshot {
    /// Indexes `objects` (order is kept), after adding the Service of each waypoint and
    /// gateway Gateway (see [`crate::expand::add_gateway_services`]) and giving Services without a `clusterIP` one (see
    /// [`crate::cluster_ip`]).
    #[must_use]
    pub fn new(mut objects: Vec<LoadedObject>) -> Self {
        crate::expand::add_gateway_services(&mut objects);
        crate::cluster_ip::allocate_cluster_ips(&mut objects);
        Self::index(objects, false)
    }

    /// Indexes objects observed in a cluster: its pods are the `Pod` objects as the
    /// cluster placed and addressed them (see [`crate::expand::observed_pods`]); workloads
    /// are not expanded, and Gateways' Services are the cluster's own (the leader deploys
    /// them, [`crate::expand::gateway_deployment`]), never made up here with an address
    /// the cluster does not route.
    #[must_use]
    pub fn observed(mut objects: Vec<LoadedObject>) -> Self {
        crate::cluster_ip::allocate_cluster_ips(&mut objects);
        Self::index(objects, true)
    }

    fn index(objects: Vec<LoadedObject>, observed: bool) -> Self {
        let mut index = HashMap::new();
        let mut by_kind: HashMap<Kind, Vec<usize>> = HashMap::new();
        for (position, loaded) in objects.iter().enumerate() {
            if index.try_insert_compat(loaded.object.object_ref(), position) {
                by_kind
                    .entry(loaded.object.kind())
                    .or_default()
                    .push(position);
            }
        }
        ConfigSnapshot {
            objects,
            index,
            by_kind,
            pods: OnceLock::new(),
            observed,
        }
    }

    /// Whether the objects were observed in a cluster (see [`ConfigSnapshot::observed`]).
    #[must_use]
    pub fn is_observed(&self) -> bool {
        self.observed
    }

    /// Every object, in load order (duplicates included).
    #[must_use]
    pub fn objects(&self) -> &[LoadedObject] {
        &self.objects
    }

    /// The objects of one kind (first of each identity), in load order.
    pub fn of_kind(&self, kind: Kind) -> impl Iterator<Item = &LoadedObject> {
        self.by_kind
            .get(&kind)
            .into_iter()
            .flatten()
            .map(|&i| &self.objects[i])
    }

    /// The object with this identity (`namespace` is ignored for cluster-scoped kinds).
    #[must_use]
    pub fn get(&self, kind: Kind, namespace: Option<&str>, name: &str) -> Option<&LoadedObject> {
        let namespace = if kind.is_namespaced() {
            namespace.map(str::to_owned)
        } else {
            None
        };
        let key = ObjectRef {
            kind,
            namespace,
            name: name.to_owned(),
        };
        self.index.get(&key).map(|&i| &self.objects[i])
    }

    /// Whether an object with this identity exists.
    #[must_use]
    pub fn contains(&self, kind: Kind, namespace: Option<&str>, name: &str) -> bool {
        self.get(kind, namespace, name).is_some()
    }

    /// Every pod the configuration runs: bare `Pod`s plus pods expanded from `Deployment`,
    /// `StatefulSet` and `DaemonSet` templates (see [`expand_pods`]). Expanded once per
    /// snapshot and shared.
    #[must_use]
    pub fn pods(&self) -> Arc<[ExpandedPod]> {
        Arc::clone(self.pods.get_or_init(|| {
            if self.observed {
                crate::expand::observed_pods(self).into()
            } else {
                expand_pods(self).into()
            }
        }))
    }

    /// This snapshot, taking `previous`'s pod expansion when every object the expansion
    /// reads (pods, workloads, nodes) is the same in both, so an edit elsewhere (a policy,
    /// a Service) does not expand and compare every pod again.
    #[must_use]
    pub fn with_pods_of(self, previous: &ConfigSnapshot) -> Self {
        let same_inputs = crate::expand::INPUT_KINDS
            .iter()
            .all(|&kind| self.of_kind(kind).eq(previous.of_kind(kind)));
        if same_inputs {
            let _ = self.pods.set(previous.pods());
        }
        self
    }

    /// Labels of a namespace object (empty if the namespace is not declared).
    #[must_use]
    pub fn namespace_labels(&self, namespace: &str) -> std::collections::BTreeMap<String, String> {
        self.get(Kind::Namespace, None, namespace)
            .map(|o| o.object.labels().clone())
            .unwrap_or_default()
    }
}

macro_rules! typed_accessors {
    ($( $method:ident => $variant:ident : $ty:ty; )*) => {
        impl ConfigSnapshot {
            $(
                #[doc = concat!("Every `", stringify!($variant), "` with where it came from.")]
                pub fn $method(&self) -> impl Iterator<Item = (&$ty, &LoadedObject)> {
                    self.of_kind(Kind::$variant).filter_map(|loaded| match &loaded.object {
                        Object::$variant(inner) => Some((inner, loaded)),
                        _ => None,
                    })
                }
            )*
        }
    };
}

typed_accessors! {
    namespaces => Namespace: k8s_openapi::api::core::v1::Namespace;
    services => Service: k8s_openapi::api::core::v1::Service;
    endpoint_slices => EndpointSlice: k8s_openapi::api::discovery::v1::EndpointSlice;
    bare_pods => Pod: k8s_openapi::api::core::v1::Pod;
    service_accounts => ServiceAccount: k8s_openapi::api::core::v1::ServiceAccount;
    nodes => Node: k8s_openapi::api::core::v1::Node;
    config_maps => ConfigMap: k8s_openapi::api::core::v1::ConfigMap;
    secrets => Secret: k8s_openapi::api::core::v1::Secret;
    deployments => Deployment: k8s_openapi::api::apps::v1::Deployment;
    stateful_sets => StatefulSet: k8s_openapi::api::apps::v1::StatefulSet;
    daemon_sets => DaemonSet: k8s_openapi::api::apps::v1::DaemonSet;
    authorization_policies => AuthorizationPolicy: crate::istio::AuthorizationPolicy;
    peer_authentications => PeerAuthentication: crate::istio::PeerAuthentication;
    request_authentications => RequestAuthentication: crate::istio::RequestAuthentication;
    service_entries => ServiceEntry: crate::istio::ServiceEntry;
    workload_entries => WorkloadEntry: crate::istio::WorkloadEntry;
    gateway_classes => GatewayClass: crate::gateway::GatewayClass;
    gateways => Gateway: crate::gateway::Gateway;
    http_routes => HttpRoute: crate::gateway::HttpRoute;
    grpc_routes => GrpcRoute: crate::gateway::GrpcRoute;
    tls_routes => TlsRoute: crate::gateway::TlsRoute;
    tcp_routes => TcpRoute: crate::gateway::TcpRoute;
    udp_routes => UdpRoute: crate::gateway::UdpRoute;
    reference_grants => ReferenceGrant: crate::gateway::ReferenceGrant;
    backend_tls_policies => BackendTlsPolicy: crate::gateway::BackendTlsPolicy;
}

impl ConfigSnapshot {
    /// Every `ListenerSet` and experimental-channel `XListenerSet` (same spec) with where it
    /// came from; `loaded.object.kind()` tells them apart.
    pub fn listener_sets(
        &self,
    ) -> impl Iterator<Item = (&crate::gateway::ListenerSet, &LoadedObject)> {
        let kinds = [Kind::ListenerSet, Kind::XListenerSet].into_iter();
        kinds
            .flat_map(|kind| self.of_kind(kind))
            .filter_map(|loaded| match &loaded.object {
                Object::ListenerSet(set) | Object::XListenerSet(set) => Some((set, loaded)),
                _ => None,
            })
    }
}

/// `HashMap::try_insert` is unstable; this is the stable equivalent.
trait TryInsertCompat<K, V> {
    fn try_insert_compat(&mut self, key: K, value: V) -> bool;
}

impl<K: std::hash::Hash + Eq, V> TryInsertCompat<K, V> for HashMap<K, V> {
    fn try_insert_compat(&mut self, key: K, value: V) -> bool {
        match self.entry(key) {
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(value);
                true
            }
        }
    }
}
