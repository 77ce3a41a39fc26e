//! The install's RBAC against what the control plane really asks of the API: two replicas
//! run through a realistic start (CA Secret created, then read by the second; election;
//! every kind listed and watched; referenced Secrets and ConfigMaps by name; a node proxy's
//! token reviewed; trust bundle, Gateway deployment and status applied by the leader)
//! against the test API server, whose request log is then checked against the generated
//! ClusterRole and Role: every request is allowed, and every granted verb is used.

use k8s_openapi::api::rbac::v1::PolicyRule;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use weft_control::process::{Objects, run_with};
use weft_install::{Manifest, Settings};
use weft_kube::WatchOptions;
use weft_kube::control::{ClusterControl, ClusterSettings};
use weft_kubetest::routes::tokenreview::TokenInfo;
use weft_kubetest::{ApiRequest, TestApiServer};

mod support;

const NAMESPACE: &str = "weft-system";
const NODE_TOKEN: &str = "node-1-token";
const GATEWAY_API: &str = "gateway.networking.k8s.io/v1";

fn object(api_version: &str, kind: &str, namespace: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": api_version, "kind": kind,
           "metadata": {"name": name, "namespace": namespace}, "spec": spec})
}

/// A cluster using every kind weft reads, a Gateway of weft's class with TLS, routes of
/// each kind, a policy, a BackendTLSPolicy (with a ClusterTrustBundle), a selector-less
/// Service with an EndpointSlice and the mesh config.
fn seed(server: &TestApiServer) {
    for namespace in [NAMESPACE, "shop", "istio-system"] {
        server
            .put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}));
    }
    let node_proxy = server.put(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "weft-node-a", "namespace": NAMESPACE},
        "spec": {"nodeName": "node-1", "serviceAccountName": "weft-node",
                 "containers": [{"name": "node", "image": "weft"}]},
        "status": {"podIPs": [{"ip": "10.0.0.2"}]},
    }));
    let uid = node_proxy["metadata"]["uid"].as_str().expect("uid");
    server.register_token(
        NODE_TOKEN,
        TokenInfo::new(NAMESPACE, "weft-node", "istio-ca").bound_to("weft-node-a", uid),
    );
    server.put(
        json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": "web-cert", "namespace": "shop"},
        "stringData": {"tls.crt": "cert", "tls.key": "key"}}),
    );
    server.put(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "istio", "namespace": "istio-system"},
        "data": {"mesh": "outboundTrafficPolicy: {mode: ALLOW_ANY}"}}));
    server.put(json!({"apiVersion": GATEWAY_API, "kind": "GatewayClass",
        "metadata": {"name": "weft"}, "spec": {"controllerName": "weft.dev/gateway"}}));
    server.put(object(
        GATEWAY_API,
        "Gateway",
        "shop",
        "ingress",
        json!({
        "gatewayClassName": "weft",
        "listeners": [
            {"name": "http", "port": 80, "protocol": "HTTP"},
            {"name": "https", "port": 443, "protocol": "HTTPS",
             "tls": {"certificateRefs": [{"name": "web-cert"}]}},
            {"name": "tls", "port": 8443, "protocol": "TLS", "tls": {"mode": "Passthrough"}},
            {"name": "tcp", "port": 9000, "protocol": "TCP"},
            {"name": "udp", "port": 9001, "protocol": "UDP"},
        ]}),
    ));
    let parent = json!([{"name": "ingress"}]);
    let backend = json!([{"name": "web", "port": 80}]);
    let rule = json!([{"backendRefs": backend}]);
    server.put(object(
        GATEWAY_API,
        "HTTPRoute",
        "shop",
        "web",
        json!({"parentRefs": parent, "rules": rule}),
    ));
    server.put(object(
        GATEWAY_API,
        "GRPCRoute",
        "shop",
        "grpc",
        json!({"parentRefs": parent, "rules": rule}),
    ));
    server.put(object(
        GATEWAY_API,
        "TLSRoute",
        "shop",
        "tls",
        json!({"parentRefs": parent, "hostnames": ["web.example"], "rules": rule}),
    ));
    let alpha = "gateway.networking.k8s.io/v1alpha2";
    server.put(object(
        alpha,
        "TCPRoute",
        "shop",
        "tcp",
        json!({"parentRefs": parent, "rules": rule}),
    ));
    server.put(object(
        alpha,
        "UDPRoute",
        "shop",
        "udp",
        json!({"parentRefs": parent, "rules": rule}),
    ));
    server.put(object(
        GATEWAY_API,
        "ListenerSet",
        "shop",
        "extra",
        json!({
        "parentRef": {"name": "ingress"},
        "listeners": [{"name": "extra", "port": 8080, "protocol": "HTTP"}]}),
    ));
    server.put(object(
        "gateway.networking.x-k8s.io/v1alpha1",
        "XListenerSet",
        "shop",
        "extra-x",
        json!({
        "parentRef": {"name": "ingress"},
        "listeners": [{"name": "extra-x", "port": 8081, "protocol": "HTTP"}]}),
    ));
    server.put(object(
        GATEWAY_API,
        "BackendTLSPolicy",
        "shop",
        "web",
        json!({
        "targetRefs": [{"group": "", "kind": "Service", "name": "web"}],
        "validation": {"hostname": "web.shop",
                       "caCertificateRefs": [
                           {"group": "", "kind": "ConfigMap", "name": "web-ca"},
                           {"group": "certificates.k8s.io", "kind": "ClusterTrustBundle",
                            "name": "partners"}]}}),
    ));
    server.put(
        json!({"apiVersion": "certificates.k8s.io/v1beta1", "kind": "ClusterTrustBundle",
        "metadata": {"name": "partners"}, "spec": {"trustBundle": "roots"}}),
    );
    server.put(object(
        "security.istio.io/v1",
        "AuthorizationPolicy",
        "shop",
        "allow",
        json!({
        "action": "ALLOW", "rules": [{}]}),
    ));
    server.put(object(
        "v1",
        "Service",
        "shop",
        "web",
        json!({
        "selector": {"app": "web"}, "ports": [{"port": 80}]}),
    ));
    server.put(object(
        "v1",
        "Service",
        "shop",
        "db",
        json!({"ports": [{"port": 5432}]}),
    ));
    server.put(
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "db-1", "namespace": "shop",
                     "labels": {"kubernetes.io/service-name": "db"}},
        "addressType": "IPv4", "ports": [{"port": 5432}],
        "endpoints": [{"addresses": ["192.0.2.10"]}]}),
    );
}

/// The rules of the install's `kind` (ClusterRole or Role) of the control plane.
fn rules(manifest: &Manifest, kind: &str) -> Vec<PolicyRule> {
    let role = (manifest.objects.iter())
        .find(|o| o.kind == kind && o.name == "weft-control")
        .unwrap_or_else(|| panic!("{kind} weft-control in the install"));
    serde_json::from_value(role.body["rules"].clone()).expect("rules")
}

fn grants(rules: &[PolicyRule], group: &str, resource: &str, verb: &str) -> bool {
    rules.iter().any(|rule| {
        let has = |list: &Option<Vec<String>>, item: &str| {
            list.as_ref().is_some_and(|l| l.iter().any(|i| i == item))
        };
        has(&rule.api_groups, group)
            && has(&rule.resources, resource)
            && rule.verbs.iter().any(|v| v == verb)
    })
}

/// Whether a request is in the control plane's own namespace (a Role covers it).
fn own(request: &ApiRequest) -> bool {
    request.namespace.as_deref() == Some(NAMESPACE)
}

/// Granted (scope, group, resource, verb) that no request used.
fn unused(requests: &[ApiRequest], cluster: &[PolicyRule], role: &[PolicyRule]) -> Vec<String> {
    let mut out = Vec::new();
    for (scope, rules, in_scope) in [
        (
            "cluster",
            cluster,
            (|r: &ApiRequest| !own(r)) as fn(&ApiRequest) -> bool,
        ),
        ("own namespace", role, own as fn(&ApiRequest) -> bool),
    ] {
        for rule in rules {
            for group in rule.api_groups.iter().flatten() {
                for resource in rule.resources.iter().flatten() {
                    for verb in &rule.verbs {
                        let used = requests.iter().any(|r| {
                            in_scope(r)
                                && r.group == *group
                                && r.resource == *resource
                                && r.verb == verb
                        });
                        if !used {
                            out.push(format!("{scope}: {verb} {resource} ({group:?})"));
                        }
                    }
                }
            }
        }
    }
    out
}

#[tokio::test]
async fn the_control_plane_uses_exactly_the_permissions_the_install_grants() {
    let server = TestApiServer::start().await;
    seed(&server);
    let manifest = Manifest::generate(&Settings::default());
    let (cluster_rules, role_rules) = (rules(&manifest, "ClusterRole"), rules(&manifest, "Role"));

    let watch = WatchOptions::for_root_namespace("istio-system");
    let settings = ClusterSettings::new(NAMESPACE, "cluster.local", "control-0");
    let leader = ClusterControl::start(server.client(), settings, &watch)
        .await
        .expect("leader");
    let config = support::loopback_config(
        Objects::Source(leader.objects()),
        PathBuf::new(),
        PathBuf::new(),
    );
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(run_with(config, leader.overrides(), |_| {}, async {
        let _ = stopped.await;
    }));
    let callers = leader.overrides().callers.expect("TokenReview callers");
    let caller = callers.authenticate(NODE_TOKEN).await;
    assert!(caller.is_some(), "the node proxy's token is accepted");
    let settings = ClusterSettings::new(NAMESPACE, "cluster.local", "control-1");
    let follower = ClusterControl::start(server.client(), settings, &watch)
        .await
        .expect("follower");

    // the leader's writes come after its election: wait until every grant was used
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut left = unused(&server.requests(), &cluster_rules, &role_rules);
    while !left.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        left = unused(&server.requests(), &cluster_rules, &role_rules);
    }
    let requests = server.requests();
    let refused: BTreeSet<String> = (requests.iter())
        .filter(|r| {
            let (group, resource, verb) = (r.group.as_str(), r.resource.as_str(), r.verb);
            !(grants(&cluster_rules, group, resource, verb)
                || own(r) && grants(&role_rules, group, resource, verb))
        })
        .map(|r| {
            format!(
                "{} {} ({:?}) in {:?}",
                r.verb, r.resource, r.group, r.namespace
            )
        })
        .collect();
    assert_eq!(
        (refused, left),
        (BTreeSet::new(), Vec::new()),
        "requests the install does not allow, and grants no request used"
    );

    drop(stop);
    follower.stop().await;
    leader.stop().await;
}
