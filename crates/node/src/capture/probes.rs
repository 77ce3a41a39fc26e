//! Kubelet probes of captured pods: keeps the node's probe source NAT
//! ([`weft_netns::sync_probe_snat`], in the node's own network namespace) listing exactly
//! the addresses of the pods this proxy captures, whose rules let that source through
//! ([`weft_netns::CaptureConfig::exempt_probe_source`]). So the kubelet's HTTP and TCP
//! probes keep working under STRICT mTLS, as in Istio ambient.

use super::PodEntry;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

/// The node's probe table and what it was last set to.
pub(super) struct ProbeSnat {
    node_netns: PathBuf,
    /// The addresses the table holds (`None`: unknown, write it on the next sync).
    synced: std::sync::Mutex<Option<Vec<IpAddr>>>,
}

impl ProbeSnat {
    pub(super) fn new(node_netns: PathBuf) -> Self {
        Self {
            node_netns,
            synced: std::sync::Mutex::new(None),
        }
    }

    /// Makes the table list the addresses of the captured pods among `pods`; writes only
    /// when that list changed. A failure is logged and retried on the next call.
    pub(super) async fn sync(&self, pods: &BTreeMap<String, PodEntry>) {
        let mut wanted: Vec<IpAddr> = pods
            .values()
            .filter(|entry| entry.active.is_some())
            .flat_map(|entry| entry.pod.ips.iter().copied())
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        if self.synced().as_ref() == Some(&wanted) {
            return;
        }
        let netns = self.node_netns.clone();
        let listed = wanted.clone();
        let result =
            tokio::task::spawn_blocking(move || weft_netns::sync_probe_snat(&netns, &listed)).await;
        match result {
            Ok(Ok(())) => {
                tracing::debug!(pods = wanted.len(), "probe source NAT updated");
                *self.synced() = Some(wanted);
            }
            Ok(Err(error)) => {
                tracing::warn!(netns = %self.node_netns.display(), %error, "cannot update the node's probe source NAT: kubelet probes of newly captured pods are redirected to the proxy until it works");
                *self.synced() = None;
            }
            Err(error) => tracing::warn!(%error, "probe source NAT task failed"),
        }
    }

    /// Removes the table (the mesh leaves the node).
    pub(super) async fn remove(&self) {
        let netns = self.node_netns.clone();
        match tokio::task::spawn_blocking(move || weft_netns::remove_probe_snat(&netns)).await {
            Ok(Ok(())) => *self.synced() = Some(Vec::new()),
            Ok(Err(error)) => {
                tracing::warn!(netns = %self.node_netns.display(), %error, "cannot remove the node's probe source NAT");
            }
            Err(error) => tracing::warn!(%error, "probe source NAT task failed"),
        }
    }

    fn synced(&self) -> std::sync::MutexGuard<'_, Option<Vec<IpAddr>>> {
        self.synced
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
