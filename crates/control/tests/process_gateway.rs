//! The control-plane process serves `weft.l7.v1.Gateway` (which carries private keys) over
//! delta ADS only to whom it belongs: the node proxy of the node running the gateway's pod
//! and the gateway's own workload identity receive it; another node's proxy and another
//! workload subscribing to the same type receive nothing of it. Editing a certificate's
//! Secret reaches the gateway's node as a new version (rotation).

mod process_support;

use std::path::Path;
use std::time::Duration;

use process_support::client::{AdsClient, tls_channel};
use process_support::control::{
    NODE_A_TOKEN, NODE_B_TOKEN, RunningControl, eventually, start_control,
};
use prost::Message;
use weft_proto::GATEWAY_TYPE_URL;
use weft_proto::discovery::DeltaDiscoveryResponse;
use weft_proto::l7::Gateway;

const WAIT: Duration = Duration::from_secs(20);
const NAME: &str = "shop/ingress";
const GATEWAY_TOKEN: &str = "gateway-ingress-token-3c9a1e7d5b";
const OTHER_TOKEN: &str = "productpage-token-8e2f4a6c0d";

/// The gateway test mesh with node-a as its only node (so every pod of the gateway, written
/// or expanded, runs there).
fn gateway_mesh(dir: &Path) {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/gateway-mesh/mesh.yaml");
    let text = std::fs::read_to_string(source).expect("mesh.yaml");
    let node_b = "apiVersion: v1\nkind: Node\nmetadata: {name: node-b}\nspec: {podCIDR: 10.244.2.0/24}\n---\n";
    assert!(text.contains(node_b), "the test mesh declares node-b");
    std::fs::write(dir.join("mesh.yaml"), text.replace(node_b, "")).expect("write mesh");
}

/// Adds workload tokens for the gateway's identity and another one, and waits until the
/// control plane accepts them.
async fn add_workload_tokens(control: &RunningControl) {
    let text = format!(
        "tokens:\n  - {{token: {NODE_A_TOKEN}, node: node-a}}\n  - {{token: {NODE_B_TOKEN}, node: node-b}}\n  \
         - {{token: {GATEWAY_TOKEN}, identity: spiffe://cluster.local/ns/shop/sa/ingress-istio}}\n  \
         - {{token: {OTHER_TOKEN}, identity: spiffe://cluster.local/ns/shop/sa/productpage}}\n"
    );
    let path = control.token_file();
    let temporary = path.with_extension("yaml.tmp");
    std::fs::write(&temporary, text).expect("write token file");
    std::fs::rename(&temporary, &path).expect("replace token file");
    eventually("the workload tokens to be accepted", WAIT, || async {
        open(control, OTHER_TOKEN).await.ok()
    })
    .await;
}

async fn open(control: &RunningControl, token: &str) -> Result<AdsClient, tonic::Status> {
    let channel = tls_channel(control.addrs.secure, &control.root_pem())
        .await
        .expect("TLS to the secure port");
    AdsClient::open(channel, Some(token), "gateway-test", &[GATEWAY_TYPE_URL]).await
}

/// The Gateway resources a wildcard subscriber with `token` holds after its first response.
async fn received(control: &RunningControl, token: &str) -> Vec<Gateway> {
    let mut ads = open(control, token).await.expect("stream opens");
    gateways(&ads.recv_ack(WAIT).await.expect("first response"))
}

/// The Gateway resources of one response.
fn gateways(response: &DeltaDiscoveryResponse) -> Vec<Gateway> {
    assert_eq!(response.type_url, GATEWAY_TYPE_URL);
    let bodies = response
        .resources
        .iter()
        .filter_map(|r| r.resource.as_ref());
    bodies
        .map(|body| Gateway::decode(body.value.as_slice()).expect("a Gateway"))
        .collect()
}

/// Editing the Secret of the HTTPS listener (a rotation) sends the gateway's node the new
/// certificate.
async fn rotate_certificate(control: &RunningControl, stream: &mut AdsClient) {
    let path = control.config_dir().join("mesh.yaml");
    let text = std::fs::read_to_string(&path).expect("mesh.yaml");
    let marker = "metadata: {name: shop-cert, namespace: shop}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n";
    assert!(text.contains(marker), "the shop-cert Secret");
    let rotated = text.replace(marker, &format!("{marker}      # rotated\n"));
    std::fs::write(&path, rotated).expect("rotate");
    let update = gateways(&stream.recv_ack(WAIT).await.expect("the rotation arrives"));
    let https = update[0]
        .listeners
        .iter()
        .find(|l| l.name == "https")
        .expect("https");
    let chain = &https.certificates[0].cert_chain;
    assert!(chain.starts_with("# rotated"), "{chain}");
}

#[tokio::test]
async fn a_gateway_resource_reaches_only_its_node_and_its_identity() {
    let control = start_control(gateway_mesh).await;
    let mut node_a_stream = open(&control, NODE_A_TOKEN).await.expect("stream opens");
    let node_a = gateways(&node_a_stream.recv_ack(WAIT).await.expect("first response"));
    let names: Vec<String> = node_a
        .iter()
        .map(|g| format!("{}/{}", g.namespace, g.name))
        .collect();
    assert_eq!(names, [NAME], "the node running the gateway's pod");
    let https = node_a[0]
        .listeners
        .iter()
        .find(|l| l.name == "https")
        .expect("https");
    assert!(https.certificates[0].private_key.contains("PRIVATE KEY"));

    assert!(
        received(&control, NODE_B_TOKEN).await.is_empty(),
        "another node"
    );

    rotate_certificate(&control, &mut node_a_stream).await;

    add_workload_tokens(&control).await;
    let own = received(&control, GATEWAY_TOKEN).await;
    assert_eq!(own.len(), 1, "the gateway's own identity");
    assert!(
        received(&control, OTHER_TOKEN).await.is_empty(),
        "another workload"
    );
}
