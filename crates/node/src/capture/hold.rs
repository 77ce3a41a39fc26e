//! Holding a pod whose workload the mesh does not know yet (see
//! [`super::CaptureOptions::hold_unknown`]): the hold rules go in when such a pod is added
//! and come out when the mesh names its workload, replaced by the capture rules (enrolled)
//! or removed (not enrolled).

use super::pod::blocking;
use super::{CaptureError, PodEntry, PodInfo};
use crate::state::MeshState;
use weft_netns::CaptureConfig;

/// Why a held pod is not captured yet.
const HELD: &str =
    "held: no workload with its address is known yet; its new connections wait for it";

/// Whether the mesh state has any workload (enrolled or not, on any node) with one of the
/// pod's addresses: what a held pod waits for.
pub(super) fn workload_known(pod: &PodInfo, state: &MeshState) -> bool {
    state
        .workloads()
        .any(|w| w.addresses().iter().any(|ip| pod.ips.contains(ip)))
}

/// Puts the hold rules in place unless they are (a failure is kept as the reason and tried
/// again on the next state change).
pub(super) async fn hold(entry: &mut PodEntry, rules: CaptureConfig) {
    if entry.held {
        return;
    }
    let netns = entry.pod.netns.clone();
    let held = blocking(move || {
        weft_netns::install_hold(&netns, &rules).map_err(|source| CaptureError::Netns {
            what: "install the hold rules",
            netns,
            source,
        })
    })
    .await;
    match held {
        Ok(()) => {
            tracing::info!(pod = %entry.pod.key(), "no workload known yet: holding the pod's new connections");
            entry.held = true;
            entry.reason = Some(HELD.into());
        }
        Err(error) => {
            tracing::warn!(pod = %entry.pod.key(), %error, "cannot hold the pod's connections");
            entry.reason = Some(error.to_string());
        }
    }
}

/// Removes the hold rules of a pod the mesh does not capture.
pub(super) async fn let_go(entry: &mut PodEntry, rules: CaptureConfig) {
    if !entry.held {
        return;
    }
    let netns = entry.pod.netns.clone();
    let removed = blocking(move || {
        weft_netns::remove_capture(&netns, &rules).map_err(|source| CaptureError::Netns {
            what: "remove the hold rules",
            netns,
            source,
        })
    })
    .await;
    if let Err(error) = removed {
        // A namespace already gone has no rules left.
        tracing::info!(pod = %entry.pod.key(), %error, "hold rules not removed");
    }
    tracing::info!(pod = %entry.pod.key(), "the mesh does not capture the pod: hold removed");
    entry.held = false;
}
