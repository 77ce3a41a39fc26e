//! The control plane's writes and checks against the API, run against the in-process test
//! API server: TokenReview authentication (node tokens by their bound pod's node, workload
//! tokens, wrong audience, API down), the CA's root in Secrets, the trust bundle ConfigMap
//! in every namespace, status by server-side apply, and leader election by Lease.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::{Value, json};
use std::time::Duration;
use weft_control::callers::{Caller, CallerAuthenticator};
use weft_kube::cluster_ca::{CaOrigin, SELF_SIGNED_SECRET, load_cluster_ca};
use weft_kube::leader::{Leadership, LeaseConfig};
use weft_kube::root_configmap::{ROOT_CONFIGMAP, ROOT_CONFIGMAP_KEY, publish_trust_bundle};
use weft_kube::status::{ENFORCED_CONDITION, StatusWriter};
use weft_kube::tokenreview::{TokenReviewAuthenticator, TokenReviewConfig};
use weft_kubetest::TestApiServer;
use weft_kubetest::routes::tokenreview::TokenInfo;

mod support;

use support::eventually;

const NAMESPACE: &str = "weft-system";

fn pod(namespace: &str, name: &str, node: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": namespace},
           "spec": {"nodeName": node, "serviceAccountName": "weft-node", "containers": []}})
}

fn uid(object: &Value) -> String {
    object["metadata"]["uid"].as_str().expect("uid").to_owned()
}

fn authenticator(client: kube::Client) -> TokenReviewAuthenticator {
    TokenReviewAuthenticator::new(client, TokenReviewConfig::new(NAMESPACE, "cluster.local"))
}

#[tokio::test]
async fn node_tokens_stand_for_their_pods_node_and_workload_tokens_for_one_identity() {
    let server = TestApiServer::start().await;
    let node_pod = server.put(pod(NAMESPACE, "weft-node-a1", "node-1"));
    let other_pod = server.put(pod(NAMESPACE, "weft-node-b1", "node-2"));
    let node_account = TokenInfo::new(NAMESPACE, "weft-node", "istio-ca");
    server.register_token(
        "node-1-token",
        node_account
            .clone()
            .bound_to("weft-node-a1", &uid(&node_pod)),
    );
    server.register_token(
        "node-2-token",
        node_account
            .clone()
            .bound_to("weft-node-b1", &uid(&other_pod)),
    );
    server.register_token(
        "stale-token",
        node_account
            .clone()
            .bound_to("weft-node-a1", "uid-of-a-deleted-pod"),
    );
    server.register_token("unbound-token", node_account);
    server.register_token("web-token", TokenInfo::new("shop", "web", "istio-ca"));
    server.register_token(
        "api-token",
        TokenInfo::new("shop", "web", "https://kubernetes.default.svc"),
    );
    let auth = authenticator(server.client());

    assert_eq!(
        auth.authenticate("node-1-token").await,
        Some(Caller::Node("node-1".into()))
    );
    assert_eq!(
        auth.authenticate("node-2-token").await,
        Some(Caller::Node("node-2".into()))
    );
    let web = "spiffe://cluster.local/ns/shop/sa/web".parse().expect("id");
    assert_eq!(
        auth.authenticate("web-token").await,
        Some(Caller::Workload(web))
    );
    for refused in ["api-token", "unknown-token", "stale-token", "unbound-token"] {
        assert_eq!(
            auth.authenticate(refused).await,
            None,
            "{refused} must be refused"
        );
    }
    let why = auth.review("api-token").await.expect_err("wrong audience");
    assert!(why.contains("audiences"), "{why}");
    let why = auth.review("stale-token").await.expect_err("stale pod");
    assert!(why.contains("replaced"), "{why}");

    // an accepted token is believed for a while without asking again
    let reviews = server.tokens().reviews();
    assert!(auth.authenticate("node-1-token").await.is_some());
    assert_eq!(server.tokens().reviews(), reviews);
}

/// Made-up tokens on the CA port must not turn into requests to the API server: a refused
/// token is reviewed once and then refused from memory for a while, and a string that
/// cannot be a token is never sent.
#[tokio::test]
async fn refused_and_malformed_tokens_cost_the_api_at_most_one_review() {
    let server = TestApiServer::start().await;
    let auth = authenticator(server.client());
    let before = server.tokens().reviews();
    for _ in 0..5 {
        assert_eq!(auth.authenticate("made-up-token").await, None);
    }
    assert_eq!(server.tokens().reviews(), before + 1, "reviewed once");
    let long = "x".repeat(20_000);
    for bad in ["", "has space", "ünïcode", long.as_str()] {
        assert_eq!(auth.authenticate(bad).await, None, "{bad:.20}");
    }
    assert_eq!(server.tokens().reviews(), before + 1, "never sent");
}

#[tokio::test]
async fn an_unreachable_api_refuses_every_token() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url: http::Uri = format!("http://{}", closed.local_addr().expect("addr"))
        .parse()
        .expect("uri");
    drop(closed);
    let client = kube::Client::try_from(kube::Config::new(url)).expect("client");
    let auth = authenticator(client);
    assert_eq!(auth.authenticate("any-token").await, None);
    let why = auth.review("any-token").await.expect_err("refused");
    assert!(why.contains("TokenReview failed"), "{why}");
}

#[tokio::test]
async fn the_self_signed_root_is_created_once_in_a_secret_and_reused() {
    let server = TestApiServer::start().await;
    let (first, origin) = load_cluster_ca(server.client(), NAMESPACE)
        .await
        .expect("ca");
    assert_eq!(origin, CaOrigin::Created);
    let secrets: Api<Secret> = Api::namespaced(server.client(), NAMESPACE);
    let secret = secrets.get(SELF_SIGNED_SECRET).await.expect("secret");
    assert_eq!(secret.type_.as_deref(), Some("istio.io/ca-root"));
    let data = secret.data.expect("data");
    assert!(data.contains_key("ca-cert.pem") && data.contains_key("ca-key.pem"));

    let (again, origin) = load_cluster_ca(server.client(), NAMESPACE)
        .await
        .expect("ca");
    assert_eq!(origin, CaOrigin::SelfSigned);
    assert_eq!(
        again.root_pem(),
        first.root_pem(),
        "a restart keeps the root"
    );
}

#[tokio::test]
async fn a_plugin_cacerts_secret_is_used_and_a_broken_one_named() {
    let server = TestApiServer::start().await;
    let (root_pem, intermediate_pem, key_pem) = plugin_ca();
    let secret = |with_key: bool| {
        let mut data = json!({
            "ca-cert.pem": b64(&intermediate_pem),
            "cert-chain.pem": b64(&intermediate_pem),
            "root-cert.pem": b64(&root_pem),
        });
        if with_key {
            data["ca-key.pem"] = json!(b64(&key_pem));
        }
        json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": "cacerts", "namespace": NAMESPACE}, "data": data})
    };
    server.put(secret(false));
    let error = load_cluster_ca(server.client(), NAMESPACE)
        .await
        .expect_err("no key");
    let message = error.to_string();
    assert!(
        message.contains("weft-system/cacerts") && message.contains("ca-key.pem"),
        "{message}"
    );

    server.put(secret(true));
    let (ca, origin) = load_cluster_ca(server.client(), NAMESPACE)
        .await
        .expect("plug-in ca");
    assert_eq!(origin, CaOrigin::Plugin);
    assert_eq!(ca.root_pem().trim(), root_pem.trim());
    let secrets: Api<Secret> = Api::namespaced(server.client(), NAMESPACE);
    assert!(
        secrets
            .get_opt(SELF_SIGNED_SECRET)
            .await
            .expect("get")
            .is_none()
    );
}

/// A plug-in CA: (root PEM, intermediate certificate PEM, intermediate key PEM).
fn plugin_ca() -> (String, String, String) {
    let ca_params = |name: &str| {
        let mut params = rcgen::CertificateParams::default();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params
    };
    let key = || rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let root = rcgen::CertifiedIssuer::self_signed(ca_params("test root"), key()).expect("root");
    let intermediate_key = key();
    let key_pem = intermediate_key.serialize_pem();
    let intermediate =
        rcgen::CertifiedIssuer::signed_by(ca_params("test intermediate"), intermediate_key, &root)
            .expect("intermediate");
    (root.pem(), intermediate.pem(), key_pem)
}

fn b64(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[tokio::test]
async fn the_trust_bundle_reaches_every_namespace_and_comes_back_when_deleted() {
    let server = TestApiServer::start().await;
    for name in ["shop", "web"] {
        server.put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}));
    }
    let (bundle_tx, bundle) = tokio::sync::watch::channel("ROOT-ONE\n".to_owned());
    let publisher = tokio::spawn(publish_trust_bundle(server.client(), bundle));
    let bundle_in = |namespace: &'static str| {
        let maps: Api<ConfigMap> = Api::namespaced(server.client(), namespace);
        async move {
            let map = maps.get_opt(ROOT_CONFIGMAP).await.ok().flatten()?;
            map.data?.get(ROOT_CONFIGMAP_KEY).cloned()
        }
    };
    for namespace in ["shop", "web"] {
        let pem = eventually("the bundle in each namespace", || bundle_in(namespace)).await;
        assert_eq!(pem, "ROOT-ONE\n");
    }
    server.put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "later"}}));
    eventually("the bundle in a namespace created later", || {
        bundle_in("later")
    })
    .await;

    let maps: Api<ConfigMap> = Api::namespaced(server.client(), "shop");
    maps.delete(ROOT_CONFIGMAP, &DeleteParams::default())
        .await
        .expect("delete");
    eventually("the deleted ConfigMap restored", || bundle_in("shop")).await;

    bundle_tx.send_replace("ROOT-ONE\nROOT-TWO\n".to_owned());
    for namespace in ["shop", "web", "later"] {
        eventually("the new bundle everywhere", || async move {
            bundle_in(namespace)
                .await
                .filter(|pem| pem.contains("ROOT-TWO"))
        })
        .await;
    }
    publisher.abort();
}

fn mesh_objects() -> Vec<Value> {
    vec![
        json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
               "metadata": {"name": "allow-web", "namespace": "shop"},
               "spec": {"selector": {"matchLabels": {"app": "web"}}, "action": "ALLOW",
                        "rules": [{"from": [{"source": {"principals": ["cluster.local/ns/shop/sa/front"]}}]}]}}),
        json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
               "metadata": {"name": "via-missing-waypoint", "namespace": "shop"},
               "spec": {"targetRefs": [{"kind": "Service", "group": "", "name": "nowhere"}],
                        "action": "DENY", "rules": [{}]}}),
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
               "metadata": {"name": "ingress", "namespace": "shop"},
               "spec": {"gatewayClassName": "weft",
                        "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}}),
    ]
}

/// Seeds the server with `objects` and returns the snapshot weft reads from them.
fn seed(server: &TestApiServer, objects: &[Value]) -> weft_api::snapshot::ConfigSnapshot {
    let mut loaded = Vec::new();
    for object in objects {
        server.put(object.clone());
        let text = object.to_string();
        let result = weft_api::parse_manifests(&text, std::path::Path::new("test.yaml"));
        loaded.extend(result.objects);
    }
    weft_api::snapshot::ConfigSnapshot::new(loaded)
}

fn policy_status(server: &TestApiServer, name: &str) -> Value {
    let key = weft_kubetest::ResourceType::new("security.istio.io/v1", "AuthorizationPolicy")
        .key(Some("shop"), name);
    server.store().get(&key).expect("policy")["status"].clone()
}

#[tokio::test]
async fn status_is_applied_as_weft_and_another_manager_conflicts_without_force() {
    let server = TestApiServer::start().await;
    let snapshot = seed(&server, &mesh_objects());
    let mut writer = StatusWriter::new(server.client());
    let applied = writer.write(&snapshot).await;
    assert!(
        applied >= 3,
        "every policy and the gateway get a status ({applied})"
    );
    assert_eq!(
        writer.write(&snapshot).await,
        0,
        "nothing changed, nothing applied"
    );

    let enforced = &policy_status(&server, "allow-web")["conditions"][0];
    assert_eq!(enforced["type"], ENFORCED_CONDITION);
    assert_eq!(
        (enforced["status"].as_str(), enforced["reason"].as_str()),
        (Some("True"), Some("NodeProxies"))
    );
    let missing = &policy_status(&server, "via-missing-waypoint")["conditions"][0];
    assert_eq!(
        (missing["status"].as_str(), missing["reason"].as_str()),
        (Some("False"), Some("NotEnforced"))
    );
    assert!(
        missing["message"]
            .as_str()
            .expect("message")
            .contains("nowhere")
    );

    let gateways = kube::api::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
        "gateway.networking.k8s.io",
        "v1",
        "Gateway",
    ));
    let gateway: Api<kube::api::DynamicObject> =
        Api::namespaced_with(server.client(), "shop", &gateways);
    let stored = gateway.get("ingress").await.expect("gateway");
    assert!(
        stored.data["status"]["conditions"].is_array(),
        "{}",
        stored.data
    );
    let managers = stored.metadata.managed_fields.expect("managed fields");
    assert!(managers.iter().any(
        |m| m.manager.as_deref() == Some("weft") && m.subresource.as_deref() == Some("status")
    ));

    let theirs = json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                        "metadata": {"name": "ingress", "namespace": "shop"},
                        "status": {"conditions": []}});
    let refused = gateway
        .patch_status(
            "ingress",
            &PatchParams::apply("someone-else"),
            &Patch::Apply(theirs),
        )
        .await
        .expect_err("conflict");
    assert!(
        matches!(&refused, kube::Error::Api(s) if s.code == 409),
        "{refused}"
    );
    assert!(
        refused.to_string().contains("conflict with \"weft\""),
        "{refused}"
    );
}

fn lease_config(identity: &str) -> LeaseConfig {
    LeaseConfig {
        lease_duration: Duration::from_millis(600),
        renew_interval: Duration::from_millis(100),
        retry_interval: Duration::from_millis(50),
        ..LeaseConfig::new(NAMESPACE, identity)
    }
}

async fn holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get_opt("weft-control-leader")
        .await
        .ok()??
        .spec?
        .holder_identity
}

#[tokio::test]
async fn one_replica_leads_and_another_takes_over_when_it_stops_renewing() {
    let server = TestApiServer::start().await;
    let leases: Api<Lease> = Api::namespaced(server.client(), NAMESPACE);
    let a = Leadership::start(server.client(), lease_config("replica-a"));
    let b = Leadership::start(server.client(), lease_config("replica-b"));
    let first = eventually("a leader", || async {
        let leaders = [a.is_leader(), b.is_leader()];
        (leaders.iter().filter(|l| **l).count() == 1).then_some(leaders[0])
    })
    .await;
    let (leader, follower, follower_name) = if first {
        (a, b, "replica-b")
    } else {
        (b, a, "replica-a")
    };
    let expected = if first { "replica-a" } else { "replica-b" };
    assert_eq!(holder(&leases).await.as_deref(), Some(expected));
    assert!(!follower.is_leader());

    // the holder dies without releasing: the follower waits for the lease to expire
    leader.abandon();
    eventually("the follower to take over", || async {
        follower.is_leader().then_some(())
    })
    .await;
    assert_eq!(holder(&leases).await.as_deref(), Some(follower_name));
    let lease = leases.get("weft-control-leader").await.expect("lease");
    assert_eq!(lease.spec.expect("spec").lease_transitions, Some(1));
    follower.stop().await;
    assert_eq!(
        holder(&leases).await,
        None,
        "a replica that stops releases the lease"
    );
}
