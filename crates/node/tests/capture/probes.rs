//! Kubelet probes under STRICT mTLS: the node's own connections to the pods it captures
//! reach the workload from the probe source, past the redirect; nothing else skips the
//! proxy.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use crate::mesh::{APP_PORT, Call, Mesh, expect_mtls_call, strict};
use weft_netns::{NetnsWorker, PROBE_SOURCE_V4};
use weft_node::capture::source::PodRequest;

/// The IPv4 addresses listed in the probe table of the namespace at `netns` (`None`: no
/// table).
fn probe_set(netns: &Path) -> Option<Vec<IpAddr>> {
    let output = weft_netns::run_in_netns(netns, || {
        std::process::Command::new("nft")
            .args(["list", "set", "inet", weft_netns::PROBES_TABLE, "pods_v4"])
            .output()
    })
    .expect("enter the node")
    .expect("run nft");
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let listed = text
        .split_once("elements = {")
        .and_then(|(_, rest)| rest.split_once('}'))
        .map_or("", |(inside, _)| inside);
    Some(
        listed
            .split(',')
            .filter_map(|ip| ip.trim().parse().ok())
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nodes_probes_reach_captured_pods_under_strict_and_nothing_else_skips_the_proxy() {
    let mesh = Mesh::start_probing(&[strict()]).await;
    let node_ns = |name: &str| mesh.cluster.node(name).expect("node").netns.path();
    let server_ip = mesh.ip("server");
    let server = SocketAddr::from((server_ip, APP_PORT));

    // The kubelet of the server's node probes it in plaintext: it reaches the workload.
    let kubelet = NetnsWorker::spawn(&node_ns("b")).expect("enter node b");
    let probe = Call::open(&kubelet, server)
        .await
        .expect("the node's probe reaches the workload under STRICT");
    assert_eq!(probe.seen_peer, PROBE_SOURCE_V4.to_string());
    drop(probe);

    // Plaintext from a pod or from another node is still the proxy's, and refused.
    let outsider = mesh.worker("outsider");
    assert!(
        Call::open(&outsider, server).await.is_err(),
        "STRICT refuses a non-mesh pod"
    );
    let other_node = NetnsWorker::spawn(&node_ns("a")).expect("enter node a");
    assert!(
        Call::open(&other_node, server).await.is_err(),
        "another node is not the server's kubelet"
    );
    expect_mtls_call(&mesh, server).await;

    // Each node lists exactly the pods it captures (`plain` on b is not enrolled).
    assert_eq!(probe_set(&node_ns("b")), Some(vec![IpAddr::V4(server_ip)]));
    assert_eq!(
        probe_set(&node_ns("a")),
        Some(vec![IpAddr::V4(mesh.ip("client"))])
    );
    mesh.b
        .request(PodRequest::Remove {
            uid: "uid-server".into(),
        })
        .await;
    assert_eq!(probe_set(&node_ns("b")), Some(Vec::new()));
    mesh.a().request(PodRequest::ReleaseAll).await;
    assert_eq!(
        probe_set(&node_ns("a")),
        None,
        "released: the table is gone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_taking_over_pods_captured_without_the_probe_exemption_lets_probes_through() {
    // An upgrade: pods captured by a proxy without the probe source NAT, taken over by
    // one with it, keep their listeners and get the exemption.
    let mut mesh = Mesh::start(&[strict()]).await;
    let node_b = mesh.cluster.node("b").expect("node").netns.path();
    let server = SocketAddr::from((mesh.ip("server"), APP_PORT));
    let kubelet = NetnsWorker::spawn(&node_b).expect("enter node b");
    assert!(
        Call::open(&kubelet, server).await.is_err(),
        "without the probe source NAT a plaintext probe is refused under STRICT"
    );
    let draining = mesh.hand_b_over(Some(node_b.clone())).await;
    let probe = Call::open(&kubelet, server)
        .await
        .expect("after the takeover the probe reaches the workload");
    assert_eq!(probe.seen_peer, PROBE_SOURCE_V4.to_string());
    drop(probe);
    assert_eq!(draining.await.expect("old proxy drains"), 0);
    expect_mtls_call(&mesh, server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_without_the_probe_source_nat_taking_over_keeps_probes_working() {
    // Turning the flag off (or a rollback) in a rolling update: the node's table stays,
    // and so must the pods' exemption, or every probe under STRICT fails.
    let mut mesh = Mesh::start_probing(&[strict()]).await;
    let node_b = mesh.cluster.node("b").expect("node").netns.path();
    let server = SocketAddr::from((mesh.ip("server"), APP_PORT));
    let kubelet = NetnsWorker::spawn(&node_b).expect("enter node b");
    Call::open(&kubelet, server).await.expect("probe before");
    let draining = mesh.hand_b_over(None).await;
    let probe = Call::open(&kubelet, server)
        .await
        .expect("the probe still reaches the workload after the takeover");
    assert_eq!(probe.seen_peer, PROBE_SOURCE_V4.to_string());
    drop(probe);
    assert_eq!(draining.await.expect("old proxy drains"), 0);
}
