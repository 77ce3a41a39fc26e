//! xDS responses into a node proxy's state: a sequence of `istio.workload.Address` and
//! `istio.security.Authorization` upserts and removals, applied through the node's own
//! resource handlers (decode, validate, compile, index), each followed by the lookups the
//! data path makes: every workload's policies evaluated for a connection from every other,
//! every address resolved as an outbound destination.
//!
//! Input: [`Pieces`]; a piece's tag says which type (bit 0), upsert or removal (bit 1)
//! and which of eight resource names (bits 2-4), the piece is the encoded resource.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::net::SocketAddr;
use std::sync::Arc;
use weft_fuzz::{Pieces, mesh_store};
use weft_node::proxy::{AddressHandler, AuthorizationHandler};
use weft_node::state::MeshState;
use weft_policy::{ConnectionFacts, Transport};
use weft_xds::client::{ResourceHandler, ResourceUpdate};

const NAMES: [&str; 8] = [
    "Kubernetes//Pod/shop/web-1",
    "Kubernetes//Pod/shop/api-1",
    "shop/web.shop.svc.cluster.local",
    "shop/api.shop.svc.cluster.local",
    "shop/allow-web",
    "istio-system/weft-mtls-strict",
    "",
    "other/x",
];

fuzz_target!(|bytes: &[u8]| {
    let store = Arc::new(mesh_store());
    let mut handlers: (AddressHandler, AuthorizationHandler) = (
        AddressHandler(Arc::clone(&store)),
        AuthorizationHandler(Arc::clone(&store)),
    );
    for (tag, piece) in Pieces::new(bytes) {
        let name = NAMES[usize::from(tag >> 2) % NAMES.len()].to_owned();
        let handler: &mut dyn ResourceHandler = if tag & 1 == 0 {
            &mut handlers.0
        } else {
            &mut handlers.1
        };
        let (updates, removed) = if tag & 2 == 0 {
            (vec![update(name, piece)], Vec::new())
        } else {
            (Vec::new(), vec![name])
        };
        let _ = handler.apply(updates, removed);
        exercise(&store.snapshot());
    }
});

fn update(name: String, body: &[u8]) -> ResourceUpdate {
    ResourceUpdate {
        name,
        version: "1".into(),
        aliases: Vec::new(),
        body: prost_types::Any {
            type_url: String::new(),
            value: body.to_vec(),
        },
    }
}

/// The lookups a connection makes against the state.
fn exercise(state: &MeshState) {
    for workload in state.workloads() {
        let policies = state.policies_of(workload);
        for peer in state.workloads() {
            let (Some(&source_ip), Some(&destination)) =
                (peer.addresses().first(), workload.addresses().first())
            else {
                continue;
            };
            let facts = ConnectionFacts {
                source_identity: Some(peer.identity().clone()),
                source_ip,
                destination: SocketAddr::new(destination, 8080),
                transport: Transport::Hbone,
            };
            let _ = policies.evaluate(&facts);
        }
        for &ip in workload.addresses() {
            let _ = state.resolve("", SocketAddr::new(ip, 8080));
        }
    }
    for service in state.services() {
        for (network, ip) in &service.record().vips {
            let _ = state.resolve(network, SocketAddr::new(*ip, 80));
        }
    }
}
