//! What a Gateway deploys, shared by waypoints ([`super::waypoint`]) and ingress/egress
//! gateways ([`super::gateway`]): one pod owned by the Gateway running one weft container,
//! and a Service selecting it by [`GATEWAY_NAME_LABEL`]. Each kind decides the names, labels,
//! command and ports; the objects are built here. The Gateway's `spec.infrastructure`
//! labels and annotations are copied to both objects ([`Deployment::with_infrastructure`]),
//! weft's own labels winning where a key is in both.

use super::ExpandedPod;
use crate::gateway::Gateway;
use crate::object::{DEFAULT_NAMESPACE, Kind, LoadedObject, Object, ObjectRef};
use crate::snapshot::ConfigSnapshot;
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, Pod, PodSpec, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::{BTreeMap, HashSet};

/// Label on a Gateway's pod and Service naming the Gateway (the Service's selector).
pub const GATEWAY_NAME_LABEL: &str = "gateway.networking.k8s.io/gateway-name";
/// Label on a Gateway's pod and Service naming the Gateway's class.
pub const GATEWAY_CLASS_LABEL: &str = "gateway.networking.k8s.io/gateway-class-name";

/// The pod and Service one Gateway runs.
#[derive(Debug, Clone)]
pub struct Deployment {
    /// The Gateway's namespace.
    pub namespace: String,
    /// The Gateway's name.
    pub gateway: String,
    /// The pod's name.
    pub pod_name: String,
    /// The Service's name.
    pub service_name: String,
    /// The pod's service account (its identity).
    pub service_account: String,
    /// Labels of the pod and the Service.
    pub labels: BTreeMap<String, String>,
    /// Annotations of the pod and the Service (the Gateway's `spec.infrastructure`).
    pub annotations: BTreeMap<String, String>,
    /// The container's name.
    pub container: &'static str,
    /// The container's command (the runtime adds where the control plane is).
    pub command: Vec<String>,
    /// Named container ports.
    pub container_ports: Vec<(String, u16)>,
    /// Named Service ports (target port = port).
    pub service_ports: Vec<(String, u16)>,
}

impl Deployment {
    /// Adds the `spec.infrastructure` labels and annotations of `gateway` (GEP-1762,
    /// feature GatewayInfrastructurePropagation). A label weft sets itself keeps weft's
    /// value: the Service selects the pod by one, and others say what the pod is.
    #[must_use]
    pub(super) fn with_infrastructure(mut self, gateway: &Gateway) -> Self {
        let Some(infrastructure) = &gateway.spec.infrastructure else {
            return self;
        };
        for (key, value) in infrastructure.labels.iter().flatten() {
            (self.labels.entry(key.clone())).or_insert_with(|| value.clone());
        }
        let annotations = infrastructure.annotations.iter().flatten();
        self.annotations
            .extend(annotations.map(|(k, v)| (k.clone(), v.clone())));
        self
    }

    /// The metadata of the pod and the Service: `name`, the namespace, labels,
    /// annotations, owned by the Gateway.
    fn metadata(&self, name: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(self.namespace.clone()),
            labels: Some(self.labels.clone()),
            annotations: (!self.annotations.is_empty()).then(|| self.annotations.clone()),
            owner_references: Some(vec![gateway_owner(&self.gateway)]),
            ..ObjectMeta::default()
        }
    }

    /// The pod (no node or address yet), owned by the Gateway.
    pub(super) fn pod(&self) -> Pod {
        let ports = (self.container_ports.iter())
            .map(|(name, port)| ContainerPort {
                name: Some(name.clone()),
                container_port: i32::from(*port),
                ..ContainerPort::default()
            })
            .collect();
        let container = Container {
            name: self.container.to_owned(),
            image: Some("weft".to_owned()),
            command: Some(self.command.clone()),
            ports: Some(ports),
            ..Container::default()
        };
        Pod {
            metadata: self.metadata(&self.pod_name),
            spec: Some(PodSpec {
                service_account_name: Some(self.service_account.clone()),
                containers: vec![container],
                ..PodSpec::default()
            }),
            status: None,
        }
    }

    /// The pod as an expanded pod of `loaded` (the Gateway), unless the configuration
    /// already has a Pod of that name.
    pub(super) fn expanded_pod(
        &self,
        snapshot: &ConfigSnapshot,
        loaded: &LoadedObject,
    ) -> Option<ExpandedPod> {
        if snapshot.contains(Kind::Pod, Some(&self.namespace), &self.pod_name) {
            return None;
        }
        Some(ExpandedPod {
            pod: self.pod(),
            owner: Some(loaded.object.object_ref()),
            source: loaded.source.clone(),
        })
    }

    /// The Service selecting the pod by [`GATEWAY_NAME_LABEL`].
    pub fn service(&self) -> Service {
        let ports = (self.service_ports.iter())
            .map(|(name, port)| ServicePort {
                name: Some(name.clone()),
                port: i32::from(*port),
                target_port: Some(IntOrString::Int(i32::from(*port))),
                protocol: Some("TCP".to_owned()),
                ..ServicePort::default()
            })
            .collect();
        let selector = BTreeMap::from([(GATEWAY_NAME_LABEL.to_owned(), self.gateway.clone())]);
        Service {
            metadata: self.metadata(&self.service_name),
            spec: Some(ServiceSpec {
                selector: Some(selector),
                ports: Some(ports),
                ..ServiceSpec::default()
            }),
            status: None,
        }
    }
}

/// The namespace of an object's metadata (`default` when unset).
pub(super) fn namespace_of(metadata: &ObjectMeta) -> &str {
    metadata.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE)
}

fn gateway_owner(gateway: &str) -> OwnerReference {
    OwnerReference {
        api_version: "gateway.networking.k8s.io/v1".to_owned(),
        kind: Kind::Gateway.name().to_owned(),
        name: gateway.to_owned(),
        controller: Some(true),
        ..OwnerReference::default()
    }
}

/// The Gateway (`namespace/name`) that controls `pod`, with the class its pod label names
/// (`None` for pods written before that label existed): its owner when expanded from a
/// Gateway, else the Gateway its `ownerReferences` name as controller (as `weft up`'s
/// explicit mode writes the pods it expanded).
pub(super) fn controlling_gateway(pod: &ExpandedPod) -> Option<(String, Option<String>)> {
    let expanded = pod.owner.as_ref().filter(|o| o.kind == Kind::Gateway);
    let gateway = match expanded {
        Some(owner) => owner.name.as_str(),
        None => (pod.pod.metadata.owner_references.iter().flatten())
            .find(|o| o.kind == Kind::Gateway.name() && o.controller == Some(true))
            .map(|o| o.name.as_str())?,
    };
    let class = (pod.pod.metadata.labels.as_ref())
        .and_then(|labels| labels.get(GATEWAY_CLASS_LABEL))
        .cloned();
    Some((format!("{}/{gateway}", pod.namespace()), class))
}

/// Adds the Service `deploy` decides for each Gateway in `objects` (those it returns
/// `Some` for) that has no Service of that name yet, before ClusterIPs are allocated.
pub(super) fn add_services(
    objects: &mut Vec<LoadedObject>,
    deploy: impl Fn(&Gateway) -> Option<Deployment>,
) {
    let mut taken: HashSet<ObjectRef> = (objects.iter())
        .filter(|o| o.object.kind() == Kind::Service)
        .map(|o| o.object.object_ref())
        .collect();
    let mut added = Vec::new();
    for loaded in objects.iter() {
        let Object::Gateway(gateway) = &loaded.object else {
            continue;
        };
        let Some(deployment) = deploy(gateway) else {
            continue;
        };
        let key = ObjectRef {
            kind: Kind::Service,
            namespace: Some(deployment.namespace.clone()),
            name: deployment.service_name.clone(),
        };
        if taken.insert(key) {
            added.push(LoadedObject {
                object: Object::Service(deployment.service()),
                source: loaded.source.clone(),
                layout: None,
            });
        }
    }
    objects.extend(added);
}
