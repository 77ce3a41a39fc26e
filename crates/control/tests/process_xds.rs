//! The control-plane process end to end: `run()` on ephemeral loopback ports with the
//! example mesh, and a delta ADS client written against the wire spec alone (generated
//! stubs, tonic, TLS trusting the generated root and checking the `weft-control` DNS SAN).
//! Checked: the example's workloads, services and policies arrive; the admin pages show
//! the proxy in sync; a policy edit arrives as exactly one changed resource; a broken file
//! keeps its last good objects; deleting the policy file removes it.

mod process_support;

use process_support::client::{AdsClient, tls_channel};
use process_support::control::{
    NODE_A_TOKEN, RunningControl, copy_examples, eventually, start_control,
};
use prost::Message;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;
use weft_proto::discovery::DeltaDiscoveryResponse;
use weft_proto::security::{Action, Authorization, string_match};
use weft_proto::workload::{Address, TunnelProtocol, Workload, address};
use weft_proto::{ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL};

const WAIT: Duration = Duration::from_secs(20);
const NODE_ID: &str = "ztunnel~10.244.1.2~ztunnel-a.istio-system~istio-system.svc.cluster.local";
const POLICY_FILE: &str = "shop-policy.yaml";
const CATALOG_POLICY: &str = "shop/catalog-allow-web";
const STRICT_POLICY: &str = "istio-system/weft-mtls-strict";
/// examples/reviews.yaml: only the waypoint may reach the reviews pods.
const REVIEWS_POLICY: &str = "shop/reviews-only-via-waypoint";
const WEB_PRINCIPAL: &str = "cluster.local/ns/frontend/sa/web";
const REPORTS_PRINCIPAL: &str = "cluster.local/ns/frontend/sa/reports";
/// The shop gateway's identity, which catalog's policy also admits.
const GATEWAY_PRINCIPAL: &str = "cluster.local/ns/shop/sa/shop-gateway-weft";
const CATALOG_PODS: [&str; 3] = [
    "Kubernetes//Pod/shop/catalog-v1-0",
    "Kubernetes//Pod/shop/catalog-v1-1",
    "Kubernetes//Pod/shop/catalog-v2-0",
];

/// The examples, with shop's AuthorizationPolicy moved into a file of its own.
fn examples_with_policy_file(dir: &Path) {
    copy_examples(dir);
    let shop = std::fs::read_to_string(dir.join("shop.yaml")).expect("shop.yaml");
    let (policy, rest): (Vec<&str>, Vec<&str>) = shop
        .split("\n---\n")
        .partition(|doc| doc.contains("kind: AuthorizationPolicy"));
    assert_eq!(policy.len(), 1, "shop.yaml holds one AuthorizationPolicy");
    std::fs::write(dir.join("shop.yaml"), rest.join("\n---\n")).expect("write shop.yaml");
    std::fs::write(dir.join(POLICY_FILE), policy[0]).expect("write policy file");
}

fn expected_addresses() -> BTreeSet<String> {
    let pods = [
        "frontend/reports-0",
        "frontend/web-0",
        "frontend/web-1",
        "legacy/httpbin-0",
        "legacy/legacy-client-0",
        "shop/catalog-v1-0",
        "shop/catalog-v1-1",
        "shop/catalog-v2-0",
        "shop/reviews-v1-0",
        "shop/reviews-v2-0",
        &format!(
            "shop/{}",
            weft_api::expand::waypoint::waypoint_pod_name("shop", "waypoint")
        ),
        &format!(
            "shop/{}",
            weft_api::expand::gateway::gateway_pod_name("shop", "shop-gateway", "weft")
        ),
    ]
    .map(|pod| format!("Kubernetes//Pod/{pod}"));
    let services = [
        "frontend/web.frontend",
        "legacy/httpbin.legacy",
        "shop/catalog.shop",
        "shop/catalog-v1.shop",
        "shop/catalog-v2.shop",
        "shop/reviews.shop",
        "shop/reviews-v1.shop",
        "shop/reviews-v2.shop",
        "shop/waypoint.shop",
        "shop/shop-gateway-weft.shop",
    ]
    .map(|service| format!("{service}.svc.cluster.local"));
    pods.into_iter().chain(services).collect()
}

fn decode<M: Message + Default>(response: &DeltaDiscoveryResponse, name: &str) -> M {
    let resource = response
        .resources
        .iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("{name} not in the response"));
    let any = resource.resource.as_ref().expect("resource body");
    M::decode(any.value.as_slice()).expect("decodes per the spec")
}

fn workload(responses: &[DeltaDiscoveryResponse], uid: &str) -> Workload {
    let response = responses
        .iter()
        .find(|r| r.resources.iter().any(|res| res.name == uid))
        .unwrap_or_else(|| panic!("{uid} never sent"));
    match decode::<Address>(response, uid).r#type {
        Some(address::Type::Workload(workload)) => workload,
        other => panic!("{uid} is not a workload: {other:?}"),
    }
}

fn exact_principals(policy: &Authorization) -> Vec<String> {
    policy
        .rules
        .iter()
        .flat_map(|rule| &rule.clauses)
        .flat_map(|clause| &clause.matches)
        .flat_map(|m| &m.principals)
        .filter_map(|p| match &p.match_type {
            Some(string_match::MatchType::Exact(exact)) => Some(exact.clone()),
            _ => None,
        })
        .collect()
}

/// Connects as node-a and receives + ACKs the initial state of both types.
async fn connect_and_sync(control: &RunningControl) -> (AdsClient, Vec<DeltaDiscoveryResponse>) {
    let channel = tls_channel(control.addrs.secure, &control.root_pem())
        .await
        .expect("TLS to the secure port with the generated root and the weft-control SAN");
    let mut ads = AdsClient::open(
        channel,
        Some(NODE_A_TOKEN),
        NODE_ID,
        &[ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL],
    )
    .await
    .expect("stream opens");
    let mut responses = Vec::new();
    let mut seen = BTreeSet::new();
    while seen.len() < 2 {
        let response = ads.recv_ack(WAIT).await.expect("initial response");
        seen.insert(response.type_url.clone());
        responses.push(response);
    }
    (ads, responses)
}

async fn proxy_in_sync(control: &RunningControl) -> bool {
    let syncz = control.admin_json("/debug/syncz").await;
    syncz.as_array().into_iter().flatten().any(|proxy| {
        proxy["node_id"] == NODE_ID
            && [ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL]
                .iter()
                .all(|t| proxy["types"][t]["in_sync"] == true)
    })
}

#[tokio::test]
async fn spec_client_receives_the_example_mesh_and_each_policy_edit_as_one_delta() {
    let control = start_control(examples_with_policy_file).await;
    let (mut ads, initial) = connect_and_sync(&control).await;

    let addresses: BTreeSet<String> = ads.held(ADDRESS_TYPE_URL).into_keys().collect();
    assert_eq!(addresses, expected_addresses());
    let policies: BTreeSet<String> = ads.held(AUTHORIZATION_TYPE_URL).into_keys().collect();
    assert_eq!(
        policies,
        BTreeSet::from([
            CATALOG_POLICY.to_owned(),
            REVIEWS_POLICY.to_owned(),
            STRICT_POLICY.to_owned()
        ])
    );

    let web = workload(&initial, "Kubernetes//Pod/frontend/web-0");
    assert_eq!(
        (web.node.as_str(), web.service_account.as_str()),
        ("node-a", "web")
    );
    assert_eq!(web.tunnel_protocol, TunnelProtocol::Hbone as i32);
    let catalog = workload(&initial, CATALOG_PODS[0]);
    assert_eq!(
        catalog.authorization_policies,
        [STRICT_POLICY, CATALOG_POLICY]
    );
    assert!(
        catalog
            .services
            .contains_key("shop/catalog.shop.svc.cluster.local")
    );
    let authz = initial
        .iter()
        .find(|r| r.type_url == AUTHORIZATION_TYPE_URL)
        .expect("authz");
    let strict: Authorization = decode(authz, STRICT_POLICY);
    assert_eq!(
        strict.action,
        Action::Deny as i32,
        "STRICT = deny callers without identity"
    );
    assert_eq!(
        exact_principals(&decode(authz, CATALOG_POLICY)),
        [WEB_PRINCIPAL, GATEWAY_PRINCIPAL]
    );

    assert_admin_pages(&control).await;

    // Edit the policy: exactly that resource, and nothing else, is the next response.
    let policy_path = control.config_dir().join(POLICY_FILE);
    let original = std::fs::read_to_string(&policy_path).expect("policy");
    std::fs::write(
        &policy_path,
        original.replace(WEB_PRINCIPAL, REPORTS_PRINCIPAL),
    )
    .expect("edit");
    let edit = ads.recv_ack(WAIT).await.expect("the edit arrives");
    assert_eq!(edit.type_url, AUTHORIZATION_TYPE_URL);
    let names: Vec<&str> = edit.resources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, [CATALOG_POLICY]);
    assert!(
        edit.removed_resources.is_empty(),
        "{:?}",
        edit.removed_resources
    );
    assert_eq!(
        exact_principals(&decode(&edit, CATALOG_POLICY)),
        [REPORTS_PRINCIPAL, GATEWAY_PRINCIPAL]
    );

    broken_file_keeps_last_good_policy(&control, &mut ads, &policy_path).await;
    deleting_the_file_removes_the_policy(&control, &mut ads, &policy_path).await;
}

async fn assert_admin_pages(control: &RunningControl) {
    assert_eq!(control.admin_get("/ready").await.0, 200);
    eventually("the proxy ACKs both types", WAIT, || async {
        proxy_in_sync(control).await.then_some(())
    })
    .await;
    let configz = control.admin_json("/debug/configz").await.to_string();
    for name in [
        "Kubernetes//Pod/frontend/web-0",
        CATALOG_POLICY,
        STRICT_POLICY,
    ] {
        assert!(configz.contains(name), "configz lacks {name}");
    }
    let (status, metrics) = control.admin_get("/metrics").await;
    assert_eq!(status, 200);
    let pushes: Vec<&str> = metrics
        .lines()
        .filter(|line| line.starts_with("weft_control_xds_pushes_total{"))
        .collect();
    assert!(
        pushes
            .iter()
            .any(|line| line.contains("istio.workload.Address") && !line.ends_with(" 0")),
        "no Address push counted: {metrics}"
    );
    assert!(
        metrics.contains("weft_control_xds_connected_proxies 1"),
        "{metrics}"
    );
}

async fn broken_file_keeps_last_good_policy(
    control: &RunningControl,
    ads: &mut AdsClient,
    policy_path: &Path,
) {
    std::fs::write(policy_path, "kind: AuthorizationPolicy\nspec: [unclosed\n").expect("break");
    eventually("config_errors names the broken file", WAIT, || async {
        let errors = control.admin_json("/debug/config_errors").await.to_string();
        errors.contains(POLICY_FILE).then_some(())
    })
    .await;
    // A later, valid edit elsewhere is the next response: nothing was removed in between.
    let namespace_policy = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n\
        metadata:\n  name: deny-unknown\n  namespace: legacy\nspec:\n  action: DENY\n  rules:\n\
        \x20 - from:\n    - source:\n        namespaces: [\"nowhere\"]\n";
    std::fs::write(
        control.config_dir().join("legacy-policy.yaml"),
        namespace_policy,
    )
    .expect("add");
    let next = ads.recv_ack(WAIT).await.expect("the valid edit arrives");
    assert_eq!(next.type_url, AUTHORIZATION_TYPE_URL);
    let names: Vec<&str> = next.resources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["legacy/deny-unknown"]);
    assert!(
        next.removed_resources.is_empty(),
        "{:?}",
        next.removed_resources
    );
    assert!(
        ads.held(AUTHORIZATION_TYPE_URL)
            .contains_key(CATALOG_POLICY)
    );
    let configz = control.admin_json("/debug/configz").await.to_string();
    assert!(
        configz.contains(CATALOG_POLICY),
        "last good policy still served"
    );
}

async fn deleting_the_file_removes_the_policy(
    control: &RunningControl,
    ads: &mut AdsClient,
    policy_path: &Path,
) {
    std::fs::remove_file(policy_path).expect("delete");
    let mut removed = Vec::new();
    let mut updated_workloads = BTreeSet::new();
    while removed.is_empty() || updated_workloads.len() < CATALOG_PODS.len() {
        let response = ads.recv_ack(WAIT).await.expect("the deletion arrives");
        if response.type_url == AUTHORIZATION_TYPE_URL {
            assert!(response.resources.is_empty(), "{:?}", response.resources);
            removed.extend(response.removed_resources);
        } else {
            assert!(
                response.removed_resources.is_empty(),
                "{:?}",
                response.removed_resources
            );
            updated_workloads.extend(response.resources.into_iter().map(|r| r.name));
        }
    }
    assert_eq!(removed, [CATALOG_POLICY]);
    assert_eq!(
        updated_workloads,
        CATALOG_PODS.map(str::to_owned).into_iter().collect()
    );
    assert!(
        !ads.held(AUTHORIZATION_TYPE_URL)
            .contains_key(CATALOG_POLICY)
    );
    let errors = control.admin_json("/debug/config_errors").await;
    assert_eq!(errors, serde_json::json!([]), "the broken file is gone");
}
