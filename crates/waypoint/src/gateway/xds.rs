//! The gateway's own xDS resource: `weft.l7.v1.Gateway` by the name `<namespace>/<name>`.
//! A resource that does not decode or compile is NACKed with the field and reason and the
//! previous configuration stays in force; a removed one leaves the gateway without
//! listeners (every port closes).

use std::sync::Arc;

use prost::Message;
use weft_proto::l7 as pb;
use weft_xds::client::{RejectedResource, ResourceHandler, ResourceUpdate};

use super::auto_cert::AutoCerts;
use super::{Gateway, GatewayConfig};
use crate::WaypointConfig;

/// Applies this gateway's Gateway resource.
pub(crate) struct GatewayHandler {
    pub gateway: Gateway,
    /// `<ns>/<name>`.
    pub name: String,
    /// The CA-issued certificates of the `auto_certificate` listeners.
    pub auto: Arc<AutoCerts>,
}

impl ResourceHandler for GatewayHandler {
    fn apply(
        &mut self,
        updates: Vec<ResourceUpdate>,
        removed: Vec<String>,
    ) -> Vec<RejectedResource> {
        let mut rejected = Vec::new();
        for update in updates {
            match self.compile(&update) {
                Ok((config, engine)) => {
                    tracing::info!(
                        resource = %update.name,
                        version = %update.version,
                        ports = ?config.ports.keys().collect::<Vec<_>>(),
                        "applied gateway configuration"
                    );
                    self.auto.update(&config.resource);
                    self.gateway.set_config(config, engine);
                }
                Err(reason) => {
                    tracing::warn!(resource = %update.name, %reason, "rejecting gateway configuration (NACK); keeping the previous one");
                    rejected.push(RejectedResource::new(update.name, reason));
                }
            }
        }
        if removed.contains(&self.name) {
            tracing::warn!(resource = %self.name, "gateway configuration removed: no listener is served");
            self.gateway
                .set_config(GatewayConfig::default(), WaypointConfig::default());
            self.auto.set_hostnames(Vec::new());
        }
        rejected
    }
}

impl GatewayHandler {
    fn compile(&self, update: &ResourceUpdate) -> Result<(GatewayConfig, WaypointConfig), String> {
        if update.name != self.name {
            return Err(format!(
                "this gateway is {}, not {}",
                self.name, update.name
            ));
        }
        let resource = pb::Gateway::decode(update.body.value.as_slice())
            .map_err(|e| format!("cannot decode {}: {e}", update.body.type_url))?;
        GatewayConfig::compile(&update.name, &resource, Some(Arc::clone(&self.auto)))
            .map_err(|e| format!("gateway {}: {}: {}", e.resource, e.field, e.reason))
    }
}
