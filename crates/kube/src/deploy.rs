//! Gateways and waypoints deployed in the cluster by the leader: for every Gateway weft
//! runs (its class is `istio-waypoint`, or a class whose controller is weft's or Istio's,
//! see [`weft_api::expand::gateway_deployment`]), the ServiceAccount, Deployment and
//! Service of [`weft_install::gateway::gateway_objects`] are applied with server-side
//! apply, field manager `weft`, forced (weft is their controller, as Istio is of the ones
//! it deploys). Only objects whose content changed since the last apply are applied again.
//!
//! Deletion is the API's: every object is owned by its Gateway, so the garbage collector
//! removes them with it, and this module never deletes. A refused apply is logged with the
//! object and the API's reason and tried again after the next change.

use serde_json::Value;
use std::collections::HashMap;
use weft_api::ConfigSnapshot;
use weft_install::apply::api_for;
use weft_install::gateway::gateway_objects;
use weft_install::{FIELD_MANAGER, ManifestObject, Settings};

/// Applies what each Gateway deploys, remembering what was applied.
pub struct GatewayDeployer {
    client: kube::Client,
    settings: Settings,
    applied: HashMap<(&'static str, Option<String>, String), Value>,
}

impl GatewayDeployer {
    /// A deployer for the install described by `settings` (its namespace, image, pull
    /// policy, log level and trust domain go into every proxy's pod).
    #[must_use]
    pub fn new(client: kube::Client, settings: Settings) -> Self {
        Self {
            client,
            settings,
            applied: HashMap::new(),
        }
    }

    /// Forgets what was applied (a new leader applies everything once).
    pub fn forget(&mut self) {
        self.applied.clear();
    }

    /// Applies every object of `snapshot`'s Gateways that differs from the last applied;
    /// returns how many were applied.
    pub async fn deploy(&mut self, snapshot: &ConfigSnapshot) -> usize {
        let mut count = 0;
        for object in desired_objects(&self.settings, snapshot) {
            let key = (object.kind, object.namespace.clone(), object.name.clone());
            if self.applied.get(&key) == Some(&object.body) {
                continue;
            }
            let params = kube::api::PatchParams::apply(FIELD_MANAGER).force();
            let patch = kube::api::Patch::Apply(&object.body);
            match api_for(&self.client, &object)
                .patch(&object.name, &params, &patch)
                .await
            {
                Ok(_) => {
                    count += 1;
                    self.applied.insert(key, object.body);
                }
                Err(error) => tracing::warn!(
                    %error,
                    kind = object.kind,
                    namespace = ?object.namespace,
                    name = %object.name,
                    "gateway object not applied"
                ),
            }
        }
        count
    }
}

/// The objects every Gateway of `snapshot` weft runs deploys, in Gateway order.
#[must_use]
pub fn desired_objects(settings: &Settings, snapshot: &ConfigSnapshot) -> Vec<ManifestObject> {
    let mut objects = Vec::new();
    for (gateway, loaded) in snapshot.gateways() {
        let Some(deployed) = weft_api::expand::gateway_deployment(snapshot, gateway) else {
            continue;
        };
        match gateway_objects(settings, gateway, &deployed) {
            Ok(built) => objects.extend(built),
            Err(error) => tracing::warn!(%error, source = %loaded.source, "gateway not deployed"),
        }
    }
    objects
}
