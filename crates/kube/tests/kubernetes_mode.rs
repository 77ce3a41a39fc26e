//! The control plane in `--kubernetes` mode end to end, in-process on loopback ports
//! against the test API server: its CA root comes from the Secret it creates, callers are
//! authenticated by TokenReview (a node proxy's token gets certificates for the pods on its
//! own node only, over real gRPC and TLS), the leader publishes the root ConfigMap and
//! writes a Gateway's status, and a second replica serves the CA from the same root
//! without leading.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use weft_control::process::{BoundAddrs, Objects, run_with};
use weft_identity::{
    CertManager, CertManagerConfig, GrpcCaClient, GrpcCaClientConfig, SpiffeId, TokenSource,
    TrustBundle,
};
use weft_kube::WatchOptions;
use weft_kube::control::{ClusterControl, ClusterSettings};
use weft_kube::root_configmap::{ROOT_CONFIGMAP, ROOT_CONFIGMAP_KEY};
use weft_kubetest::TestApiServer;
use weft_kubetest::routes::tokenreview::TokenInfo;

mod support;

use support::eventually;

const NAMESPACE: &str = "weft-system";
const NODE_TOKEN: &str = "node-1-projected-token";

fn pod(namespace: &str, name: &str, node: &str, account: &str, ip: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {"nodeName": node, "serviceAccountName": account,
                 "containers": [{"name": "main", "image": name}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]},
    })
}

/// The cluster: namespaces, a node proxy pod on node-1 with its registered token, `web`
/// on node-1, `api` on node-2, and a Gateway.
fn seed(server: &TestApiServer) {
    for namespace in [NAMESPACE, "shop"] {
        server.put(json!({"apiVersion": "v1", "kind": "Namespace",
                          "metadata": {"name": namespace}}));
    }
    let node_proxy = server.put(pod(
        NAMESPACE,
        "weft-node-a1",
        "node-1",
        "weft-node",
        "10.0.0.2",
    ));
    let uid = node_proxy["metadata"]["uid"].as_str().expect("uid");
    server.register_token(
        NODE_TOKEN,
        TokenInfo::new(NAMESPACE, "weft-node", "istio-ca").bound_to("weft-node-a1", uid),
    );
    server.put(pod("shop", "web", "node-1", "web", "10.0.1.1"));
    server.put(pod("shop", "api", "node-2", "api", "10.0.2.1"));
    server.put(
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                      "metadata": {"name": "ingress", "namespace": "shop"},
                      "spec": {"gatewayClassName": "weft",
                               "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}}),
    );
}

/// Runs the control process with the cluster's parts; stops when the sender is dropped.
async fn start_control(cluster: &ClusterControl) -> (BoundAddrs, oneshot::Sender<()>) {
    let config = support::loopback_config(
        Objects::Source(cluster.objects()),
        PathBuf::new(),
        PathBuf::new(),
    );
    let (bound, addrs) = oneshot::channel();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(run_with(
        config,
        cluster.overrides(),
        move |a| {
            let _ = bound.send(a);
        },
        async {
            let _ = stopped.await;
        },
    ));
    (addrs.await.expect("control plane started"), stop)
}

/// A node proxy's certificate manager: the node token, asking for others' identities.
fn node_proxy(addrs: &BoundAddrs, root_pem: &str) -> CertManager {
    let client = GrpcCaClient::new(GrpcCaClientConfig {
        endpoint: format!("https://{}", addrs.secure),
        server_name: format!("weft-control.{NAMESPACE}.svc"),
        trust: TrustBundle::from_pem("cluster.local", root_pem).expect("bundle"),
        token: TokenSource::Static(NODE_TOKEN.into()),
        cluster_id: None,
        impersonate: true,
        timeout: Duration::from_secs(10),
    })
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
