//! xDS handlers: decode `istio.workload.Address` and `istio.security.Authorization`
//! resources into the [`StateStore`]. A resource that does not decode or validate is
//! returned as rejected (the client NACKs it by name) and its previous version stays in
//! force; the rest of the response is applied.

use std::sync::Arc;

use prost::Message;
use weft_proto::security::Authorization;
use weft_proto::workload::Address;
use weft_xds::client::{RejectedResource, ResourceHandler, ResourceUpdate};

use crate::state::{StateStore, UpdateOutcome};

/// Applies Address resources to the store.
#[derive(Debug, Clone)]
pub struct AddressHandler(pub Arc<StateStore>);

/// Applies Authorization resources to the store.
#[derive(Debug, Clone)]
pub struct AuthorizationHandler(pub Arc<StateStore>);

impl ResourceHandler for AddressHandler {
    fn apply(
        &mut self,
        updates: Vec<ResourceUpdate>,
        removed: Vec<String>,
    ) -> Vec<RejectedResource> {
        let (decoded, mut rejected) = decode_all::<Address>(updates);
        let outcome = self.0.update_addresses(decoded, &removed);
        rejected.extend(rejections(outcome));
        rejected
    }
}

impl ResourceHandler for AuthorizationHandler {
    fn apply(
        &mut self,
        updates: Vec<ResourceUpdate>,
        removed: Vec<String>,
    ) -> Vec<RejectedResource> {
        let (decoded, mut rejected) = decode_all::<Authorization>(updates);
        let outcome = self.0.update_authorizations(decoded, &removed);
        rejected.extend(rejections(outcome));
        rejected
    }
}

fn decode_all<M: Message + Default>(
    updates: Vec<ResourceUpdate>,
) -> (Vec<(String, M)>, Vec<RejectedResource>) {
    let mut decoded = Vec::with_capacity(updates.len());
    let mut rejected = Vec::new();
    for update in updates {
        match M::decode(update.body.value.as_slice()) {
            Ok(message) => decoded.push((update.name, message)),
            Err(error) => rejected.push(RejectedResource::new(
                update.name,
                format!("cannot decode {}: {error}", update.body.type_url),
            )),
        }
    }
    (decoded, rejected)
}

fn rejections(outcome: UpdateOutcome) -> impl Iterator<Item = RejectedResource> {
    outcome.rejected.into_iter().map(|error| {
        tracing::warn!(resource = %error.resource, %error, "rejecting xDS resource (NACK); keeping its previous version");
        RejectedResource::new(error.resource.clone(), &error)
    })
}
