//! What a pod's status says about its workload: its addresses, whether it is ready, whether
//! it has finished (no workload at all), and which pod keeps an IP that several pods report.
//!
//! Kubernetes keeps `status.podIP` on Completed and Evicted pods while the IP already serves a
//! new pod; a node keeps one workload per IP, so a finished pod must not be a workload (as in
//! Istio, only Running and Pending pods are), and when live pods still share an IP the ready,
//! then the newest, pod keeps it.

use super::Warning;
use super::context::{Context, WorkloadSource};
use k8s_openapi::api::core::v1::Pod;
use std::collections::HashMap;
use std::net::IpAddr;
use weft_api::{ExpandedPod, ObjectRef};

/// The pod's IPs (`status.podIPs`, else `status.podIP`).
pub(crate) fn pod_addresses(pod: &Pod) -> Vec<IpAddr> {
    let Some(status) = pod.status.as_ref() else {
        return Vec::new();
    };
    let listed: Vec<IpAddr> = status
        .pod_ips
        .iter()
        .flatten()
        .filter_map(|p| p.ip.parse().ok())
        .collect();
    if listed.is_empty() {
        status
            .pod_ip
            .iter()
            .filter_map(|ip| ip.parse().ok())
            .collect()
    } else {
        listed
    }
}

/// Whether the pod has finished (phase `Succeeded` or `Failed`): it is no workload.
pub(crate) fn pod_finished(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    matches!(phase, Some("Succeeded" | "Failed"))
}

/// Ready unless the pod is terminating, finished, pending or has `Ready` false. Pods without
/// status (expanded from a template, not yet reported by a runtime) count as ready.
pub(crate) fn pod_ready(pod: &Pod) -> bool {
    if pod.metadata.deletion_timestamp.is_some() {
        return false;
    }
    let Some(status) = pod.status.as_ref() else {
        return true;
    };
    if matches!(
        status.phase.as_deref(),
        Some("Failed" | "Succeeded" | "Pending")
    ) {
        return false;
    }
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Ready")
        .is_none_or(|c| c.status == "True")
}

/// IPs reported by more than one (unfinished) pod, each with the uids of those pods.
/// Host-network pods are left out: they all report their node's IP, legitimately.
pub(crate) fn shared_pod_ips<'p>(
    pods: impl Iterator<Item = (String, &'p ExpandedPod)>,
) -> HashMap<IpAddr, Vec<String>> {
    let mut owners: HashMap<IpAddr, Vec<String>> = HashMap::new();
    let own_network = |pod: &&ExpandedPod| {
        let spec = pod.pod.spec.as_ref();
        !spec.and_then(|s| s.host_network).unwrap_or(false)
    };
    for (uid, pod) in pods.filter(|(_, pod)| own_network(pod)) {
        for ip in pod_addresses(&pod.pod) {
            owners.entry(ip).or_default().push(uid.clone());
        }
    }
    owners.retain(|_, uids| uids.len() > 1);
    owners
}

/// The pod that keeps an IP among `uids`: ready first, then the newest, then the first uid.
fn keeper<'u>(context: &Context<'_>, uids: &'u [String]) -> Option<&'u str> {
    let ranked = uids.iter().filter_map(|uid| {
        let Some(WorkloadSource::Pod(index)) = context.workloads.get(uid).map(|i| &i.source) else {
            return None;
        };
        let pod = &context.pods[*index].pod;
        let created = pod.metadata.creation_timestamp.as_ref().map(|t| t.0);
        Some(((pod_ready(pod), created, std::cmp::Reverse(uid)), uid))
    });
    ranked
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, uid)| uid.as_str())
}

/// `addresses` of the pod workload `uid` without the IPs another pod keeps (one warning on
/// `object` for each IP given up).
pub(crate) fn kept_addresses(
    context: &Context<'_>,
    uid: &str,
    object: &ObjectRef,
    addresses: Vec<IpAddr>,
    warnings: &mut Vec<Warning>,
) -> Vec<IpAddr> {
    addresses
        .into_iter()
        .filter(|ip| {
            let Some(uids) = context.shared_pod_ips.get(ip) else {
                return true;
            };
            match keeper(context, uids) {
                Some(keeper) if keeper != uid => {
                    let message = format!(
                        "pod IP {ip} is also reported by {keeper}; that pod (ready or newer) keeps the IP \
                         and workload {uid} is published without it"
                    );
                    warnings.push(Warning {
                        object: object.clone(),
                        message,
                    });
                    false
                }
                _ => true,
            }
        })
        .collect()
}
