//! A proxy that stops reading must not delay anyone else, and gets the newest state (not a
//! backlog of every version) once it reads again.

mod common;

use std::collections::HashMap;

use common::*;
use weft_proto::discovery::DeltaDiscoveryResponse;

const RESOURCES: usize = 8;
const ROUNDS: usize = 12;

/// Eight resources of 256 KiB each: every push is ~2 MiB, far beyond HTTP/2 flow-control
/// windows, so a client that does not read blocks its stream after the first push.
fn round(round: usize) -> Vec<weft_xds::XdsResource> {
    let padding = "x".repeat(256 * 1024);
    (0..RESOURCES)
        .map(|i| thing(&format!("r{i}"), &[], &format!("{round}:{padding}")))
        .collect()
}

fn round_of(body: &[u8]) -> usize {
    let text = String::from_utf8_lossy(&body[..body.len().min(16)]).into_owned();
    text.split(':')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("round prefix")
}

fn record(state: &mut HashMap<String, usize>, response: &DeltaDiscoveryResponse) {
    for resource in &response.resources {
        let body = resource
            .resource
            .as_ref()
            .map(|a| a.value.as_slice())
            .unwrap_or_default();
        state.insert(resource.name.clone(), round_of(body));
    }
}

#[tokio::test]
async fn a_client_that_stops_reading_does_not_stall_another() {
    // one response per push (2 MiB), so responses count pushes
    let server = TestServer::start(weft_xds::ServerConfig {
        max_response_bytes: 4 * 1024 * 1024,
        ..fast_config()
    });
    server.publisher.replace(T, round(0));
    settled(&server).await;

    let mut stalled = RawClient::connect(&server, first_request("stalled", &[])).await;
    let mut healthy = RawClient::connect(&server, first_request("healthy", &[])).await;
    let mut healthy_state = HashMap::new();
    while healthy_state.len() < RESOURCES {
        record(&mut healthy_state, &healthy.recv_ack().await);
    }

    for n in 1..=ROUNDS {
        server.publisher.replace(T, round(n));
        // recv() fails the test if the healthy client waits longer than the timeout.
        while healthy_state.values().any(|&r| r != n) {
            record(&mut healthy_state, &healthy.recv_ack().await);
        }
    }

    // The stalled client now reads: it converges on the newest round and, thanks to
    // coalescing, receives far fewer responses than there were pushes.
    let mut stalled_state = HashMap::new();
    let mut responses = 0;
    while stalled_state.len() < RESOURCES || stalled_state.values().any(|&r| r != ROUNDS) {
        record(&mut stalled_state, &stalled.recv_ack().await);
        responses += 1;
    }
    assert!(
        responses < ROUNDS,
        "stalled client got {responses} responses for {} pushes: versions were queued, not coalesced",
        ROUNDS + 1
    );
}
