//! Gateway pods of a running mesh: whether one can run here, what its `weft gateway` is
//! told besides its Gateway (where the control plane is, the pod address its listeners bind),
//! making its address reachable from the machine's shell (root mode: a /32 route in the
//! root namespace through the cluster's host link), and the lines `weft up` prints about it.

use super::{Mesh, Network};
use crate::UpError;
use crate::components;
use crate::plan::PodPlan;
use std::net::Ipv4Addr;

/// Lowest port an unprivileged process may bind (`net.ipv4.ip_unprivileged_port_start`).
const UNPRIVILEGED_PORT_START: &str = "/proc/sys/net/ipv4/ip_unprivileged_port_start";

impl Mesh {
    /// Refuses a gateway pod that cannot run: this weft has no `weft gateway`, or explicit
    /// mode without root would have to bind a privileged listener port.
    pub(super) fn check_gateway(&self, pod: &PodPlan) -> Result<(), UpError> {
        let Some(gateway) = &pod.gateway else {
            return Ok(());
        };
        if self.gateway_help.is_empty() {
            return Err(UpError::Prerequisite(format!(
                "gateway {}: this weft binary has no `weft gateway` command",
                gateway.name
            )));
        }
        if self.is_explicit() && !nix::unistd::geteuid().is_root() {
            let start: u16 = std::fs::read_to_string(UNPRIVILEGED_PORT_START)
                .ok()
                .and_then(|text| text.trim().parse().ok())
                .unwrap_or(1024);
            if let Some((_, port)) = gateway.listeners.iter().find(|(_, p)| *p < start) {
                return Err(UpError::Prerequisite(format!(
                    "gateway {}: listener port {port} needs root (ports below {start} are \
                     privileged; run weft up as root, or lower {UNPRIVILEGED_PORT_START})",
                    gateway.name
                )));
            }
        }
        Ok(())
    }

    /// The runtime flags of a gateway pod's container.
    pub(super) fn gateway_args(&self, pod: &PodPlan) -> Vec<String> {
        let control = self.control_site();
        let layout = &self.settings.layout;
        let mut args =
            components::gateway_args(layout, &pod.node, control.ip, pod.ip, &self.gateway_help);
        let handoff = layout.handoff_socket(&pod.key());
        args.extend(components::handoff_args(&handoff, &self.gateway_help));
        args.extend(components::trace_args(
            self.settings.trace_sampling,
            &self.gateway_help,
        ));
        args
    }

    /// The port a gateway pod answers `/healthz/ready` on: its readiness port when its
    /// `weft gateway` takes one, else its metrics port (as a waypoint).
    pub(super) fn gateway_ready_port(&self) -> u16 {
        if components::lists_flag(&self.gateway_help, "--readiness-addr") {
            components::WAYPOINT_READINESS_PORT
        } else {
            components::WAYPOINT_METRICS_PORT
        }
    }

    /// Root mode: routes the gateway pod's address from the machine's root namespace.
    pub(super) fn expose_gateway(&mut self, pod: &PodPlan) {
        let Network::Namespaces(cluster) = &mut self.network else {
            return;
        };
        if pod.gateway.is_none() {
            return;
        }
        match cluster.expose_to_host(pod.ip) {
            Ok(true) => {
                self.host_routed.insert(pod.key());
            }
            Ok(false) => {
                tracing::warn!(
                    pod = %pod.key(),
                    "the machine already routes {} elsewhere (another weft up?): the gateway \
                     is reachable from pods only",
                    pod.ip
                );
            }
            Err(e) => {
                tracing::warn!(pod = %pod.key(), error = %e, "gateway not routed from the host");
            }
        }
    }

    /// Removes the root namespace's route to a gateway pod being removed.
    pub(super) fn unexpose_gateway(&mut self, pod: &PodPlan) {
        if !self.host_routed.remove(&pod.key()) {
            return;
        }
        if let Network::Namespaces(cluster) = &mut self.network
            && let Err(e) = cluster.unexpose_from_host(pod.ip)
        {
            tracing::warn!(pod = %pod.key(), error = %e, "could not remove the host route");
        }
    }

    /// Whether the machine's shell reaches pod `key` (a gateway's pod this mesh routed; in
    /// explicit mode every pod listens on a loopback address of the machine).
    #[must_use]
    pub fn reachable_from_host(&self, key: &str) -> bool {
        self.is_explicit() || self.host_routed.contains(key)
    }

    /// One line per running gateway pod: `gateway NS/NAME: http://IP:80/, ...`, saying
    /// when its address is not reachable from this machine's shell; then, when there are
    /// gateways, where the mesh root is (clients of auto-certificate listeners trust it).
    #[must_use]
    pub fn gateway_lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = (self.plan.pods.values())
            .filter(|pod| self.pods.contains_key(&pod.key()))
            .filter_map(|pod| {
                let gateway = pod.gateway.as_ref()?;
                let mut line = format!("gateway {}: {}", gateway.name, urls(gateway, pod.ip));
                if !self.reachable_from_host(&pod.key()) {
                    line.push_str(
                        " (another weft up on this machine routes this address: reach it from \
                         a pod with `weft exec POD -- curl URL`)",
                    );
                }
                Some(line)
            })
            .collect();
        if !lines.is_empty() {
            let root = self.settings.layout.ca_root();
            lines.push(format!("mesh root CA (curl --cacert): {}", root.display()));
        }
        lines
    }
}

fn urls(gateway: &crate::plan::GatewayPlan, ip: Ipv4Addr) -> String {
    let urls = gateway.urls(ip);
    if urls.is_empty() {
        format!("{ip} (no listeners)")
    } else {
        urls.join(", ")
    }
}
