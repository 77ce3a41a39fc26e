//! Small clusters tests seed the server with, shared so each test binary does not write
//! its own copy.

use crate::TestApiServer;
use crate::routes::tokenreview::TokenInfo;
use serde_json::{Value, json};

/// A running Pod `namespace/name` on `node`, with service account `account`, address `ip`
/// and label `app: name`.
#[must_use]
pub fn pod(namespace: &str, name: &str, node: &str, account: &str, ip: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {"nodeName": node, "serviceAccountName": account,
                 "containers": [{"name": "main", "image": name}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]},
    })
}

/// Two nodes: namespaces `weft_namespace` and `shop`; the node proxy pod `weft-node-a1`
/// on node-1 (account `weft-node`) with `node_token` registered as its bound token
/// (audience `istio-ca`); `shop/web` on node-1, `shop/api` on node-2; and the Gateway
/// `shop/ingress` of class `weft` with one HTTP listener on port 80.
pub fn seed_two_nodes(server: &TestApiServer, weft_namespace: &str, node_token: &str) {
    for namespace in [weft_namespace, "shop"] {
        server.put(json!({"apiVersion": "v1", "kind": "Namespace",
                          "metadata": {"name": namespace}}));
    }
    let proxy = server.put(pod(
        weft_namespace,
        "weft-node-a1",
        "node-1",
        "weft-node",
        "10.0.0.2",
    ));
    let uid = proxy["metadata"]["uid"]
        .as_str()
        .expect("a stored pod has a uid");
    server.register_token(
        node_token,
        TokenInfo::new(weft_namespace, "weft-node", "istio-ca").bound_to("weft-node-a1", uid),
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
