//! Waypoint pods of a running mesh: what their `weft waypoint run` is told besides its
//! Gateway (where the control plane is, listeners on the pod's address), and waiting for
//! them and gateway pods to report ready (certificate and first configuration received).

use super::{Mesh, Network};
use crate::components;
use crate::plan::PodPlan;
use crate::probe::{Probe, wait_all_ready};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};

impl Mesh {
    /// The runtime flags of a waypoint pod's container.
    pub(super) fn waypoint_args(&self, pod: &PodPlan) -> Vec<String> {
        let control = self.control_site();
        let layout = &self.settings.layout;
        let mut args =
            components::waypoint_args(layout, &pod.node, control.ip, pod.ip, &self.waypoint_help);
        let handoff = layout.handoff_socket(&pod.key());
        args.extend(components::handoff_args(&handoff, &self.waypoint_help));
        args.extend(components::trace_args(
            self.settings.trace_sampling,
            &self.waypoint_help,
        ));
        args
    }

    /// Waits until every running waypoint or gateway pod that has not reported ready yet does
    /// (`/healthz/ready` on its metrics port), up to the ready timeout or until `cancel` is
    /// set; returns one line per waypoint (or what is not ready).
    pub fn wait_waypoints_ready(&mut self, cancel: &AtomicBool) -> Vec<String> {
        let pending: Vec<(String, Probe)> = (self.plan.pods.values())
            .filter(|pod| !self.ready_waypoints.contains(&pod.key()))
            .filter(|pod| self.pods.contains_key(&pod.key()))
            .filter_map(|pod| Some((pod.key(), self.readiness_probe(pod)?)))
            .collect();
        if pending.is_empty() {
            return Vec::new();
        }
        let probes: Vec<Probe> = pending.iter().map(|(_, probe)| probe.clone()).collect();
        let waited = wait_all_ready(&probes, self.settings.ready_timeout, || {
            if cancel.load(Ordering::Relaxed) {
                return Err("interrupted".to_owned());
            }
            Ok(())
        });
        match waited {
            Ok(_) => pending
                .into_iter()
                .map(|(key, probe)| {
                    self.ready_waypoints.insert(key);
                    format!("{} is ready", probe.what)
                })
                .collect(),
            Err(reason) => vec![format!(
                "waypoints and gateways: {reason} (logs: weft logs NAMESPACE/POD)"
            )],
        }
    }

    /// A waypoint's or gateway's readiness endpoint, asked from inside its namespace.
    fn readiness_probe(&self, pod: &PodPlan) -> Option<Probe> {
        let (what, port) = match (&pod.waypoint, &pod.gateway) {
            (Some(waypoint), _) => (
                format!("waypoint {waypoint}"),
                components::WAYPOINT_METRICS_PORT,
            ),
            (None, Some(gateway)) => (
                format!("gateway {}", gateway.name),
                self.gateway_ready_port(),
            ),
            (None, None) => return None,
        };
        let netns = match &self.network {
            Network::Namespaces(cluster) => Some(cluster.pod(&pod.cluster_name())?.netns.path()),
            Network::Loopback(_) => None,
        };
        Some(Probe {
            what: format!("{what} ({})", pod.key()),
            netns,
            addr: SocketAddr::new(IpAddr::V4(pod.ip), port),
            path: "/healthz/ready".into(),
        })
    }
}
