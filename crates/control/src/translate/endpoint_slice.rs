//! EndpointSlices (`discovery.k8s.io/v1`) -> the endpoints of Services without a selector.
//!
//! A Service with a selector gets its endpoints from the pods and WorkloadEntries it
//! selects; its slices are ignored (they list the same pods). A Service without one (manual
//! EndpointSlices, addresses outside the cluster) gets them only from the slices labelled
//! `kubernetes.io/service-name: <service>` in its namespace. Each address of each endpoint
//! becomes a workload `<cluster>/discovery.k8s.io/EndpointSlice/<ns>/<slice>/<ip>` without
//! identity (plain TCP, never HBONE), mapped into the Service with the slice's ports, unless:
//! - the endpoint's `conditions.ready` is `false` (not ready: no traffic), or
//! - its `targetRef` is a Pod weft already knows (that pod is already a workload), or
//! - the address is not an IP (FQDN slices).

use super::context::{Context, WorkloadInfo, WorkloadSource};
use super::workload;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
use std::collections::BTreeMap;
use std::net::IpAddr;
use weft_api::object::DEFAULT_NAMESPACE;
use weft_api::{Kind, ObjectRef};

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

/// Every workload the snapshot's EndpointSlices contribute (pods must be indexed first).
pub(crate) fn slice_workloads<'a>(context: &Context<'a>) -> Vec<SliceWorkload<'a>> {
    let mut out = Vec::new();
    for (slice, _) in context.snapshot.endpoint_slices() {
        let namespace = slice
            .metadata
            .namespace
            .as_deref()
            .unwrap_or(DEFAULT_NAMESPACE);
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
            if target_pod
                .as_ref()
                .is_some_and(|pod| pod_known(context, pod))
            {
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
                out.push(SliceWorkload {
                    uid,
                    info,
                    producers,
                });
            }
        }
    }
    out
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

fn pod_known(context: &Context<'_>, pod: &ObjectRef) -> bool {
    let namespace = pod.namespace.as_deref().unwrap_or_default();
    let uid = workload::pod_uid(&context.options.cluster_id, namespace, &pod.name);
    context.workloads.contains_key(&uid)
}

fn object_ref(kind: Kind, namespace: &str, name: Option<&str>) -> ObjectRef {
    ObjectRef {
        kind,
        namespace: Some(namespace.to_owned()),
        name: name.unwrap_or_default().to_owned(),
    }
}
