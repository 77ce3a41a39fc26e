//! Who keeps a service VIP that several objects claim: a Kubernetes Service keeps its
//! ClusterIP over any ServiceEntry; between ServiceEntries the oldest (creationTimestamp, then
//! namespace/name) keeps it. Translation drops the VIP from the others; analyze reports them.
//! Also: a WorkloadEntry whose address is already a pod's (or another entry's) on the same
//! network, which proxies cannot tell apart.

use super::Context;
use crate::finding::{Code, Finding};
use crate::object::{Kind, LoadedObject, ObjectRef};
use crate::snapshot::ConfigSnapshot;
use crate::suggest::Segment;
use std::collections::HashMap;
use std::net::IpAddr;

/// How one claimant ranks for a VIP: lower keeps it (kind, then age: an object without
/// creationTimestamp, written in a file, counts as newer than any that has one).
type Rank = (u8, bool, Option<String>, ObjectRef);

fn rank(kind_order: u8, loaded: &LoadedObject) -> Rank {
    let created = loaded.object.metadata().creation_timestamp.as_ref();
    let created = created.map(|t| t.0.to_string());
    (
        kind_order,
        created.is_none(),
        created,
        loaded.object.object_ref(),
    )
}

/// Every plain IP (not CIDR) that more than one Service or ServiceEntry claims, with the
/// claimants in order: the first keeps the VIP.
#[must_use]
pub fn vip_claims(snapshot: &ConfigSnapshot) -> HashMap<IpAddr, Vec<ObjectRef>> {
    let mut claims: HashMap<IpAddr, Vec<Rank>> = HashMap::new();
    for (service, loaded) in snapshot.services() {
        let spec = service.spec.as_ref();
        let listed = spec.and_then(|s| s.cluster_ips.clone());
        let ips = listed.unwrap_or_else(|| {
            spec.and_then(|s| s.cluster_ip.clone())
                .into_iter()
                .collect()
        });
        for ip in ips.iter().filter_map(|ip| ip.parse().ok()) {
            claims.entry(ip).or_default().push(rank(0, loaded));
        }
    }
    for (entry, loaded) in snapshot.service_entries() {
        let addresses = entry.spec.addresses.iter().flatten();
        for ip in addresses.filter_map(|value| value.parse().ok()) {
            let ranked = rank(1, loaded);
            let list = claims.entry(ip).or_default();
            if !list.contains(&ranked) {
                list.push(ranked);
            }
        }
    }
    claims.retain(|_, list| list.len() > 1);
    let ordered = claims.into_iter().map(|(ip, mut list)| {
        list.sort();
        (
            ip,
            list.into_iter().map(|(_, _, _, object)| object).collect(),
        )
    });
    ordered.collect()
}

/// Why `keeper` keeps a VIP over a ServiceEntry.
#[must_use]
pub fn vip_conflict_message(ip: IpAddr, keeper: &ObjectRef) -> String {
    let why = if keeper.kind == Kind::Service {
        "a Kubernetes Service keeps its ClusterIP over any ServiceEntry"
    } else {
        "the oldest ServiceEntry keeps a shared address"
    };
    format!(
        "address {ip} is already the VIP of {keeper} ({why}); it is dropped from this ServiceEntry"
    )
}

pub(super) fn check_service_addresses(context: &Context<'_>, findings: &mut Vec<Finding>) {
    let mut claims: Vec<_> = vip_claims(context.snapshot).into_iter().collect();
    claims.sort();
    for (ip, claimants) in claims {
        let Some((keeper, losers)) = claimants.split_first() else {
            continue;
        };
        for loser in losers.iter().filter(|l| l.kind == Kind::ServiceEntry) {
            let ns = loser.namespace.as_deref();
            let Some(loaded) = context.snapshot.get(loser.kind, ns, &loser.name) else {
                continue;
            };
            findings.push(Finding::new(
                Code::ServiceAddressConflict,
                Some(loser.clone()),
                loaded.source.clone(),
                vip_conflict_message(ip, keeper),
            ));
        }
    }
}

/// A WorkloadEntry whose IP (on the default network, as pods are, or on the network another
/// entry names) is also a pod's or an earlier entry's: proxies find workloads by address, so
/// traffic to it may get either one's policies and identity.
pub(super) fn check_workload_addresses(context: &Context<'_>, findings: &mut Vec<Finding>) {
    let mut holders: HashMap<(String, IpAddr), ObjectRef> = HashMap::new();
    for pod in context.snapshot.pods().iter() {
        let spec = pod.pod.spec.as_ref();
        if spec.and_then(|s| s.host_network).unwrap_or(false) {
            continue; // shares its node's address by design
        }
        if let Some(ip) = pod.ip() {
            let owner = ObjectRef {
                kind: Kind::Pod,
                namespace: Some(pod.namespace().to_owned()),
                name: pod.name().to_owned(),
            };
            holders.entry((String::new(), ip)).or_insert(owner);
        }
    }
    let mut entries: Vec<_> = context.snapshot.workload_entries().collect();
    entries.sort_by_key(|(_, loaded)| rank(0, loaded));
    for (entry, loaded) in entries {
        let Some(ip) = entry.spec.address.as_deref().and_then(|a| a.parse().ok()) else {
            continue;
        };
        let network = entry.spec.network.clone().unwrap_or_default();
        let me = loaded.object.object_ref();
        let holder = holders
            .entry((network.clone(), ip))
            .or_insert_with(|| me.clone());
        if *holder == me {
            continue;
        }
        let on = if network.is_empty() {
            String::new()
        } else {
            format!(" on network {network:?}")
        };
        findings.push(Finding::new(
            Code::WorkloadAddressConflict,
            Some(me),
            loaded.source_at(&[Segment::from("spec"), Segment::from("address")]),
            format!(
                "address {ip}{on} is already the address of {holder}: proxies find workloads by \
                 address, so traffic to {ip} may get the policies and identity of either"
            ),
        ));
    }
}
