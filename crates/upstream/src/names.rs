//! [`WorkloadNames`]: the strings every connection of a workload logs, lists or sends,
//! built once per workload record, on its first connection ([`MeshWorkload::names`]), and
//! shared (`Arc<str>`) by each connection's access-log entry, open-connection table entry
//! and CONNECT request, instead of being formatted and allocated per connection. A
//! workload no connection ever touched (most of a large mesh, seen from one node) costs
//! nothing more than an empty slot.

use std::sync::Arc;

use crate::MeshWorkload;

/// A workload's per-connection strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadNames {
    /// `<namespace>/<name>`: `src.workload` / `dst.workload` in the access log and on
    /// `/connections`.
    pub reference: Arc<str>,
    /// The SPIFFE identity as a URI (`spiffe://...`).
    pub identity: Arc<str>,
    /// The namespace (denial metrics of a cut connection).
    pub namespace: Arc<str>,
    /// The uid (the xDS resource name), which enforced connections are rechecked by.
    pub uid: Arc<str>,
    /// The W3C `baggage` header value the node proxy sends on this workload's CONNECT
    /// requests (read by the destination's telemetry).
    pub baggage: Arc<str>,
}

impl WorkloadNames {
    /// Builds the strings from the workload's record.
    #[must_use]
    pub fn of(workload: &MeshWorkload) -> Self {
        let proto = workload.proto();
        Self {
            reference: format!("{}/{}", proto.namespace, proto.name).into(),
            identity: workload.identity().to_string().into(),
            namespace: proto.namespace.as_str().into(),
            uid: proto.uid.as_str().into(),
            baggage: baggage(workload).into(),
        }
    }
}

/// W3C baggage with the workload's metadata: namespace, workload name (the pod's
/// controller, else its own name), canonical service and revision, and the cluster when
/// known.
fn baggage(workload: &MeshWorkload) -> String {
    let w = workload.proto();
    let name = if w.workload_name.is_empty() {
        &w.name
    } else {
        &w.workload_name
    };
    let service = if w.canonical_name.is_empty() {
        name
    } else {
        &w.canonical_name
    };
    let revision = if w.canonical_revision.is_empty() {
        "latest"
    } else {
        &w.canonical_revision
    };
    let mut out = format!(
        "k8s.namespace.name={},k8s.workload.name={name},service.name={service},service.version={revision}",
        w.namespace
    );
    if !w.cluster_id.is_empty() {
        out.push_str(",k8s.cluster.name=");
        out.push_str(&w.cluster_id);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AddressRecord;
    use std::sync::atomic::AtomicUsize;
    use weft_proto::workload::{Address, Workload, address};

    fn workload(proto: Workload) -> MeshWorkload {
        let address = Address {
            r#type: Some(address::Type::Workload(proto)),
        };
        let Ok(AddressRecord::Workload(record)) = AddressRecord::validate(None, address) else {
            panic!("the test workload is valid");
        };
        MeshWorkload::new(record, Arc::new(AtomicUsize::new(0)))
    }

    fn base() -> Workload {
        Workload {
            uid: "c1/Pod/shop/web-7d9-abc".into(),
            name: "web-7d9-abc".into(),
            namespace: "shop".into(),
            service_account: "web".into(),
            addresses: vec![vec![10, 0, 1, 1]],
            ..Workload::default()
        }
    }

    #[test]
    fn names_are_what_connections_formatted_before() {
        let names = WorkloadNames::of(&workload(base()));
        assert_eq!(&*names.reference, "shop/web-7d9-abc");
        assert_eq!(&*names.identity, "spiffe://cluster.local/ns/shop/sa/web");
        assert_eq!(&*names.namespace, "shop");
        assert_eq!(&*names.uid, "c1/Pod/shop/web-7d9-abc");
        assert_eq!(
            &*names.baggage,
            "k8s.namespace.name=shop,k8s.workload.name=web-7d9-abc,\
             service.name=web-7d9-abc,service.version=latest"
        );
    }

    #[test]
    fn baggage_prefers_workload_and_canonical_names_and_adds_the_cluster() {
        let names = WorkloadNames::of(&workload(Workload {
            workload_name: "web".into(),
            canonical_name: "web-svc".into(),
            canonical_revision: "v2".into(),
            cluster_id: "east".into(),
            ..base()
        }));
        assert_eq!(
            &*names.baggage,
            "k8s.namespace.name=shop,k8s.workload.name=web,service.name=web-svc,\
             service.version=v2,k8s.cluster.name=east"
        );
    }
}
