//! The control plane in `--kubernetes` mode end to end, in-process on loopback ports
//! against the test API server: its CA root comes from the Secret it creates, callers are
//! authenticated by TokenReview (a node proxy's token gets certificates for the pods on its
//! own node only, over real gRPC and TLS), the leader publishes the root ConfigMap and
//! writes a Gateway's status, and a second replica serves the CA from the same root
//! without leading.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use serde_json::Value;
use std::sync::Arc;
use weft_control::process::BoundAddrs;
use weft_identity::{
    CertManager, CertManagerConfig, GrpcCaClient, GrpcCaClientConfig, SpiffeId, TokenSource,
    TrustBundle,
};
use weft_kube::WatchOptions;
use weft_kube::control::{ClusterControl, ClusterSettings};
use weft_kube::root_configmap::{ROOT_CONFIGMAP, ROOT_CONFIGMAP_KEY};
use weft_kubetest::TestApiServer;
use weft_kubetest::fixtures::seed_two_nodes;

mod support;

use support::{eventually, start_control};

const NAMESPACE: &str = "weft-system";
const NODE_TOKEN: &str = "node-1-projected-token";

/// The two-node cluster of [`seed_two_nodes`] with weft in `NAMESPACE`.
fn seed(server: &TestApiServer) {
    seed_two_nodes(server, NAMESPACE, NODE_TOKEN);
}

/// A node proxy's certificate manager: the node token, asking for others' identities.
fn node_proxy(addrs: &BoundAddrs, root_pem: &str) -> CertManager {
    let client = GrpcCaClient::new(GrpcCaClientConfig::node_proxy(
        format!("https://{}", addrs.secure),
        format!("weft-control.{NAMESPACE}.svc"),
        TrustBundle::from_pem("cluster.local", root_pem).expect("bundle"),
        TokenSource::Static(NODE_TOKEN.into()),
    ))
    .expect("client");
    CertManager::new(Arc::new(client), CertManagerConfig::default())
}

fn identity(account: &str) -> SpiffeId {
    format!("spiffe://cluster.local/ns/shop/sa/{account}")
        .parse()
        .expect("id")
}

async fn gateway_conditions(client: kube::Client) -> Option<Value> {
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "gateway.networking.k8s.io",
        "v1",
        "Gateway",
    ));
    let gateways: Api<DynamicObject> = Api::namespaced_with(client, "shop", &resource);
    let stored = gateways.get("ingress").await.ok()?;
    let conditions = &stored.data["status"]["conditions"];
    conditions
        .as_array()
        .is_some_and(|list| !list.is_empty())
        .then(|| conditions.clone())
}

#[tokio::test]
async fn a_kubernetes_mode_control_plane_signs_for_its_nodes_pods_and_publishes_as_leader() {
    let server = TestApiServer::start().await;
    seed(&server);
    let settings = ClusterSettings::new(NAMESPACE, "cluster.local", "control-0");
    let cluster = ClusterControl::start(server.client(), settings, &WatchOptions::default())
        .await
        .expect("cluster CA");
    let (addrs, stop) = start_control(&cluster).await;

    // the leader publishes the root (the Secret's) in every namespace
    let maps: Api<ConfigMap> = Api::namespaced(server.client(), "shop");
    let root_pem = eventually("the root ConfigMap in shop", || {
        let maps = maps.clone();
        async move {
            let map = maps.get_opt(ROOT_CONFIGMAP).await.ok()??;
            map.data?.get(ROOT_CONFIGMAP_KEY).cloned()
        }
    })
    .await;
    assert!(cluster.is_leader());

    // the node proxy's token stands for node-1: web (node-1) is signed, api (node-2) not
    let manager = node_proxy(&addrs, &root_pem);
    let web = eventually("web's certificate", || {
        let manager = &manager;
        async move { manager.get(&identity("web")).await.ok() }
    })
    .await;
    let leaf = weft_identity::tls::leaf_info(&web.chain()[0]).expect("leaf");
    assert_eq!(leaf.spiffe_id, Some(identity("web")));
    let refused = manager
        .get(&identity("api"))
        .await
        .expect_err("api runs on another node");
    let weft_identity::CertError::Fetch {
        source: weft_identity::FetchError::Refused { code, message },
        ..
    } = &refused
    else {
        panic!("unexpected error {refused}");
    };
    assert_eq!(*code, tonic::Code::PermissionDenied, "{message}");
    assert!(message.contains("node-1"), "{message}");

    // the leader writes the Gateway's status
    let conditions = eventually("the Gateway's status", || {
        gateway_conditions(server.client())
    })
    .await;
    assert!(conditions.to_string().contains("Accepted"), "{conditions}");

    // a second replica reads the same root from the Secret and serves the CA without leading
    let settings = ClusterSettings::new(NAMESPACE, "cluster.local", "control-1");
    let follower = ClusterControl::start(server.client(), settings, &WatchOptions::default())
        .await
        .expect("cluster CA");
    let (follower_addrs, stop_follower) = start_control(&follower).await;
    let manager = node_proxy(&follower_addrs, &root_pem);
    eventually("web's certificate from the second replica", || {
        let manager = &manager;
        async move { manager.get(&identity("web")).await.ok() }
    })
    .await;
    assert!(!follower.is_leader() && cluster.is_leader());

    drop((stop, stop_follower));
    follower.stop().await;
    cluster.stop().await;
}
