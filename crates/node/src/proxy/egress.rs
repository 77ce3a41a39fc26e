//! The outbound traffic policy: what the node proxy does with a destination that is
//! neither a mesh workload, a service VIP nor a ServiceEntry address (Istio's mesh config
//! `outboundTrafficPolicy.mode`).
//!
//! - `ALLOW_ANY` (the default, and what applies until the control plane sends a
//!   `weft.mesh.v1.MeshConfig`, or when it never does, as Istio's does not): such a
//!   destination is passed through as plain TCP.
//! - `REGISTRY_ONLY`: it is refused before any connection is attempted: the client's
//!   connection is closed (explicit mode: SOCKS reply 2 / HTTP 403), an access-log event is
//!   written with result `denied` and a reason starting with `registry_only`, and
//!   `weft_outbound_refused_total{reason="registry_only"}` is incremented.
//!
//! The policy changes live: the next connection sees the new value (open connections are
//! left alone).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use weft_proto::MESH_CONFIG_NAME;
use weft_proto::mesh::MeshConfig;
use weft_proto::mesh::mesh_config::OutboundTrafficPolicy;
use weft_upstream::Route;
use weft_xds::client::{RejectedResource, ResourceHandler, ResourceUpdate};

use super::Node;

/// Label set of the refusal counter.
type ReasonLabel = [(&'static str, &'static str); 1];

/// The policy in force and the refusal counter.
#[derive(Debug, Default)]
pub(crate) struct EgressPolicy {
    registry_only: AtomicBool,
    refused: Family<ReasonLabel, Counter>,
}

impl EgressPolicy {
    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "weft_outbound_refused",
            "Outbound connections refused by the node proxy, by reason (registry_only: the \
             destination is not in the mesh registry and the outbound traffic policy is \
             REGISTRY_ONLY)",
            self.refused.clone(),
        );
    }
}

/// Why an outbound connection was refused by the outbound traffic policy.
pub const REGISTRY_ONLY_REASON: &str = "registry_only";

impl Node {
    /// Sets the outbound traffic policy (applies to connections opened from now on).
    pub fn set_outbound_traffic_policy(&self, policy: OutboundTrafficPolicy) {
        let registry_only = policy == OutboundTrafficPolicy::RegistryOnly;
        let before = self
            .inner
            .egress
            .registry_only
            .swap(registry_only, Ordering::AcqRel);
        if before != registry_only {
            tracing::info!(
                policy = policy.as_str_name(),
                "outbound traffic policy changed"
            );
        }
    }

    /// The outbound traffic policy in force.
    #[must_use]
    pub fn outbound_traffic_policy(&self) -> OutboundTrafficPolicy {
        if self.inner.egress.registry_only.load(Ordering::Acquire) {
            OutboundTrafficPolicy::RegistryOnly
        } else {
            OutboundTrafficPolicy::AllowAny
        }
    }

    /// Whether `route` must be refused: REGISTRY_ONLY and the route leads to neither a
    /// workload nor a service (the directory did not know the destination). Counts it.
    pub(crate) fn refused_by_registry(&self, route: &Route) -> bool {
        let unknown = matches!(
            route,
            Route::Plain {
                destination: None,
                service: None,
                ..
            }
        );
        let refused = unknown && self.inner.egress.registry_only.load(Ordering::Acquire);
        if refused {
            let label = [("reason", REGISTRY_ONLY_REASON)];
            self.inner.egress.refused.get_or_create(&label).inc();
        }
        refused
    }
}

/// The access-log reason of a REGISTRY_ONLY refusal.
pub(crate) fn registry_only_message(destination: SocketAddr) -> String {
    format!(
        "{REGISTRY_ONLY_REASON}: {destination} is neither a mesh workload, a service nor a \
         ServiceEntry address, and the outbound traffic policy is REGISTRY_ONLY"
    )
}

/// Applies `weft.mesh.v1.MeshConfig` to the node: the resource `mesh` sets the outbound
/// traffic policy; its removal restores the default (ALLOW_ANY). A resource that does not
/// decode or names an unknown policy is rejected (NACKed) and the previous value stays.
#[derive(Debug, Clone)]
pub struct MeshConfigHandler(pub Node);

impl ResourceHandler for MeshConfigHandler {
    fn apply(
        &mut self,
        updates: Vec<ResourceUpdate>,
        removed: Vec<String>,
    ) -> Vec<RejectedResource> {
        let mut rejected = Vec::new();
        if removed.iter().any(|name| name == MESH_CONFIG_NAME) {
            self.0
                .set_outbound_traffic_policy(OutboundTrafficPolicy::AllowAny);
        }
        for update in updates {
            match mesh_config(&update) {
                Ok(policy) => self.0.set_outbound_traffic_policy(policy),
                Err(error) => {
                    tracing::warn!(resource = %update.name, %error, "rejecting xDS resource (NACK); keeping its previous version");
                    rejected.push(RejectedResource::new(update.name, error));
                }
            }
        }
        rejected
    }
}

/// The outbound traffic policy of one MeshConfig update, or why it is refused.
fn mesh_config(update: &ResourceUpdate) -> Result<OutboundTrafficPolicy, String> {
    if update.name != MESH_CONFIG_NAME {
        return Err(format!(
            "MeshConfig {:?}: only the resource named {MESH_CONFIG_NAME:?} is used",
            update.name
        ));
    }
    let config = <MeshConfig as prost::Message>::decode(update.body.value.as_slice())
        .map_err(|e| format!("cannot decode {}: {e}", update.body.type_url))?;
    OutboundTrafficPolicy::try_from(config.outbound_traffic_policy).map_err(|_| {
        format!(
            "MeshConfig mesh: outbound_traffic_policy: {} is not a known policy",
            config.outbound_traffic_policy
        )
    })
}
