//! The waypoint's xDS subscriptions: every `istio.workload.Address` (the node proxy's
//! handler, into the same [`StateStore`](weft_node::state::StateStore)) and its own
//! `weft.l7.v1.Waypoint` by name. A Waypoint resource that does not decode or compile is
//! NACKed with the reason and the previous configuration stays in force; a removed one
//! leaves the waypoint bound to nothing (every tunnel refused).

use prost::Message;
use weft_proto::l7 as pb;
use weft_xds::client::{RejectedResource, ResourceHandler, ResourceUpdate};

use crate::Waypoint;
use crate::config::WaypointConfig;

/// Applies this waypoint's Waypoint resource.
pub(crate) struct WaypointHandler {
    pub waypoint: Waypoint,
    /// `<ns>/<name>`.
    pub name: String,
}

impl ResourceHandler for WaypointHandler {
    fn apply(
        &mut self,
        updates: Vec<ResourceUpdate>,
        removed: Vec<String>,
    ) -> Vec<RejectedResource> {
        let mut rejected = Vec::new();
        for update in updates {
            match self.compile(&update) {
                Ok(config) => {
                    tracing::info!(
                        resource = %update.name,
                        version = %update.version,
                        services = config.service_count(),
                        "applied waypoint configuration"
                    );
                    self.waypoint.set_config(config);
                }
                Err(reason) => {
                    tracing::warn!(resource = %update.name, %reason, "rejecting waypoint configuration (NACK); keeping the previous one");
                    rejected.push(RejectedResource::new(update.name, reason));
                }
            }
        }
        if removed.contains(&self.name) {
            tracing::warn!(resource = %self.name, "waypoint configuration removed: no service is bound");
            self.waypoint.set_config(WaypointConfig::default());
        }
        rejected
    }
}

impl WaypointHandler {
    fn compile(&self, update: &ResourceUpdate) -> Result<WaypointConfig, String> {
        if update.name != self.name {
            return Err(format!(
                "this waypoint is {}, not {}",
                self.name, update.name
            ));
        }
        let resource = pb::Waypoint::decode(update.body.value.as_slice())
            .map_err(|e| format!("cannot decode {}: {e}", update.body.type_url))?;
        WaypointConfig::compile(&update.name, &resource).map_err(|e| e.to_string())
    }
}
