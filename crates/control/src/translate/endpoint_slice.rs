//! EndpointSlices (`discovery.k8s.io/v1`) -> the endpoints of Services without a selector.
//!
//! A Service with a selector gets its endpoints from the pods and WorkloadEntries it
//! selects; its slices are ignored (they list the same pods). A Service without one (manual
//! EndpointSlices, addresses outside the cluster) gets them only from the slices labelled
//! `kubernetes.io/service-name: <service>` in its namespace. Each address of each endpoint
//! becomes a workload `<cluster>/discovery.k8s.io/EndpointSlice/<ns>/<slice>/<ip>` without
//! identity (plain TCP, never HBONE), mapped into the Service with the slice's ports, unless:
//! - the endpoint's `conditions.ready` is `false` (not ready: no traffic), or
//! - its `targetRef` is a Pod weft already knows: that pod is already a workload, and it
//!   becomes a member of the Service instead (the Service appears in its `services`, with
//!   the slice's ports, as istiod does for pods listed in a selector-less Service's slice), or
//! - the address is not an IP (FQDN slices).

use super::context::{Context, Dep, Unit, WorkloadInfo, WorkloadSource};
use super::service::{kube_hostname, service_key};
use super::{Warning, workload};
use k8s_openapi::api::core::v1::{Service, ServicePort};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort, EndpointSlice};
use std::collections::BTreeMap;
use std::net::IpAddr;
use weft_api::object::DEFAULT_NAMESPACE;
use weft_api::{Kind, ObjectRef};
use weft_proto::workload::{Port, PortList};

/// Label naming the Service an EndpointSlice belongs to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// `<cluster>/discovery.k8s.io/EndpointSlice/<namespace>/<slice>/<ip>`.
#[must_use]
pub fn slice_endpoint_uid(cluster: &str, namespace: &str, slice: &str, address: IpAddr) -> String {
    format!("{cluster}/discovery.k8s.io/EndpointSlice/{namespace}/{slice}/{address}")
}

/// One workload a slice contributes, with the objects that decide whether it exists.
pub(crate) struct SliceWorkload<'a> {
    pub uid: String,
    pub info: WorkloadInfo<'a>,
    /// The slice, its Service, and the Pod its `targetRef` names (if any): a change to any
    /// of them can make this workload appear or disappear.
    pub producers: Vec<ObjectRef>,
}

/// A known pod that a ready endpoint of a selector-less Service's slice names: the pod is
/// a member of that Service, reached on the slice's ports.
pub(crate) struct SliceMember<'a> {
    pub pod_uid: String,
    pub service: &'a Service,
    pub slice: &'a EndpointSlice,
    /// The slice and its Service: a change to either can add or remove the membership.
    pub producers: [ObjectRef; 2],
}

/// What the snapshot's EndpointSlices contribute: workloads of their own, and Service
/// memberships of known pods.
#[derive(Default)]
pub(crate) struct SliceIndex<'a> {
    pub workloads: Vec<SliceWorkload<'a>>,
    pub members: Vec<SliceMember<'a>>,
}

/// Everything the snapshot's EndpointSlices contribute (pods must be indexed first).
pub(crate) fn index_slices<'a>(context: &Context<'a>) -> SliceIndex<'a> {
    let mut out = SliceIndex::default();
    for (slice, _) in context.snapshot.endpoint_slices() {
        let namespace = slice_namespace(slice);
        let Some(service) = selectorless_service(context, slice, namespace) else {
            continue;
        };
        let slice_name = slice.metadata.name.as_deref().unwrap_or_default();
        let service_ref = object_ref(Kind::Service, namespace, service.metadata.name.as_deref());
        let slice_ref = object_ref(Kind::EndpointSlice, namespace, Some(slice_name));
        for (index, endpoint) in slice.endpoints.iter().flatten().enumerate() {
            if !endpoint_ready(endpoint) {
                continue;
            }
            let target_pod = target_pod(endpoint, namespace);
            if let Some(pod) = &target_pod
                && let Some(pod_uid) = known_pod(context, pod)
            {
                // Only pods of the slice's own namespace join its Service (Kubernetes never
                // names others): writing slices in one namespace must not pull another
                // namespace's pods, with their identities, into a Service.
                if pod.namespace.as_deref() == Some(namespace) {
                    out.members.push(SliceMember {
                        pod_uid,
                        service,
                        slice,
                        producers: [slice_ref.clone(), service_ref.clone()],
                    });
                }
                continue;
            }
            for address in endpoint.addresses.iter().filter_map(|a| a.parse().ok()) {
                let uid =
                    slice_endpoint_uid(&context.options.cluster_id, namespace, slice_name, address);
                let producers = [slice_ref.clone(), service_ref.clone()]
                    .into_iter()
                    .chain(target_pod.clone())
                    .collect();
                let info = WorkloadInfo {
                    namespace: namespace.to_owned(),
                    labels: BTreeMap::new(),
                    source: WorkloadSource::SliceEndpoint {
                        slice,
                        service,
                        endpoint: index,
                        address,
                    },
                };
                out.workloads.push(SliceWorkload {
                    uid,
                    info,
                    producers,
                });
            }
        }
    }
    out
}

fn slice_namespace(slice: &EndpointSlice) -> &str {
    let namespace = slice.metadata.namespace.as_deref();
    namespace.unwrap_or(DEFAULT_NAMESPACE)
}

/// The Service the slice belongs to, if it exists and has no selector.
fn selectorless_service<'a>(
    context: &Context<'a>,
    slice: &EndpointSlice,
    namespace: &str,
) -> Option<&'a Service> {
    let name = slice.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
    let service = context
        .kube_services_by_ns
        .get(namespace)?
        .iter()
        .copied()
        .find(|svc| svc.metadata.name.as_ref() == Some(name))?;
    let has_selector = service
        .spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .is_some_and(|s| !s.is_empty());
    (!has_selector).then_some(service)
}

/// Ready unless `conditions.ready` says `false` (unset means ready, as Kubernetes reads it).
fn endpoint_ready(endpoint: &Endpoint) -> bool {
    endpoint
        .conditions
        .as_ref()
        .and_then(|c| c.ready)
        .unwrap_or(true)
}

/// The Pod an endpoint's `targetRef` names.
fn target_pod(endpoint: &Endpoint, namespace: &str) -> Option<ObjectRef> {
    let target = endpoint.target_ref.as_ref()?;
    if target.kind.as_deref() != Some("Pod") {
        return None;
    }
    Some(object_ref(
        Kind::Pod,
        target.namespace.as_deref().unwrap_or(namespace),
        target.name.as_deref(),
    ))
}

/// The workload uid of `pod`, if weft knows that pod.
fn known_pod(context: &Context<'_>, pod: &ObjectRef) -> Option<String> {
    let namespace = pod.namespace.as_deref().unwrap_or_default();
    let uid = workload::pod_uid(&context.options.cluster_id, namespace, &pod.name);
    context.workloads.contains_key(&uid).then_some(uid)
}

/// `<ns>/<hostname>` -> ports of each selector-less Service whose slices list the known pod
/// `pod_uid`: for each Service port, the first of those slices with a port of its name
/// (one slice per address family, or ports split over several slices).
pub(crate) fn member_services(
    context: &Context<'_>,
    pod_uid: &str,
    unit: &mut Unit,
) -> Vec<(String, PortList)> {
    let memberships = context
        .slice_members
        .get(pod_uid)
        .map_or(&[][..], Vec::as_slice);
    let mut out = Vec::new();
    for (index, (service, _)) in memberships.iter().enumerate() {
        if memberships[..index]
            .iter()
            .any(|(s, _)| std::ptr::eq(*s, *service))
        {
            continue;
        }
        // a slice's Service is in the slice's namespace
        let namespace = service
            .metadata
            .namespace
            .as_deref()
            .unwrap_or(DEFAULT_NAMESPACE);
        let name = service.metadata.name.as_deref();
        unit.deps
            .push(Dep::Object(object_ref(Kind::Service, namespace, name)));
        let mut slice_refs = Vec::new();
        let mut port_lists = Vec::new();
        for (_, slice) in memberships
            .iter()
            .filter(|(s, _)| std::ptr::eq(*s, *service))
        {
            let slice_name = slice.metadata.name.as_deref();
            let slice_ref = object_ref(Kind::EndpointSlice, namespace, slice_name);
            unit.deps.push(Dep::Object(slice_ref.clone()));
            slice_refs.push(slice_ref);
            port_lists.push(slice.ports.as_deref().unwrap_or_default());
        }
        let hostname = kube_hostname(service, context.options);
        let ports = service_ports(service)
            .iter()
            .filter_map(|port| slice_port(port, &port_lists, &slice_refs[0], &hostname, unit))
            .collect();
        out.push((service_key(namespace, &hostname), PortList { ports }));
    }
    out
}

fn service_ports(service: &Service) -> &[ServicePort] {
    let ports = service.spec.as_ref().and_then(|s| s.ports.as_deref());
    ports.unwrap_or_default()
}

/// The number of the slice port called `name` (`""` for an unnamed one).
pub(crate) fn port_named(slice_ports: &[EndpointPort], name: &str) -> Option<u32> {
    let port = slice_ports
        .iter()
        .find(|p| p.name.as_deref().unwrap_or_default() == name)?;
    u32::try_from(port.port?).ok()
}

/// A Service port on an address the slices of `port_lists` list: the first slice port of
/// the same name (both unnamed for a single-port Service); `None` (with a warning on
/// `slice`) when none lists such a port.
pub(crate) fn slice_port(
    port: &ServicePort,
    port_lists: &[&[EndpointPort]],
    slice: &ObjectRef,
    hostname: &str,
    unit: &mut Unit,
) -> Option<Port> {
    let service_port = u32::try_from(port.port).ok()?;
    let name = port.name.as_deref().unwrap_or_default();
    let found = port_lists.iter().find_map(|ports| port_named(ports, name));
    let Some(target_port) = found else {
        let message = format!(
            "service {hostname} port {service_port} (name {name:?}) has no port of that name in \
             EndpointSlice {}; that port is left out for its endpoints",
            slice.name
        );
        unit.warnings.push(Warning {
            object: slice.clone(),
            message,
        });
        return None;
    };
    Some(workload::wire_port(port, service_port, target_port))
}

fn object_ref(kind: Kind, namespace: &str, name: Option<&str>) -> ObjectRef {
    ObjectRef {
        kind,
        namespace: Some(namespace.to_owned()),
        name: name.unwrap_or_default().to_owned(),
    }
}
