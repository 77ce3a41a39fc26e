//! The leader deploys what each Gateway weft runs needs, against the test API server: a
//! ServiceAccount, a Deployment running `weft gateway` / `weft waypoint run` and a Service,
//! applied by field manager `weft` and owned by the Gateway (its uid); nothing for a class
//! weft does not handle; a listener added to the Gateway reaches its Service; and the
//! Gateway's status addresses follow the Service (its cluster IP, then the load
//! balancer's ingress once the cluster gives one).

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Service, ServiceAccount};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use serde_json::{Value, json};
use weft_kube::WatchOptions;
use weft_kube::control::{ClusterControl, ClusterSettings};
use weft_kubetest::TestApiServer;

mod support;

use support::eventually;

const NAMESPACE: &str = "weft-system";
const IMAGE: &str = "registry.local/weft:test";

fn gateway(name: &str, class: &str, listeners: Value) -> Value {
    json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
           "metadata": {"name": name, "namespace": "shop"},
           "spec": {"gatewayClassName": class, "listeners": listeners}})
}

fn seed(server: &TestApiServer) -> (String, String) {
    for namespace in [NAMESPACE, "shop"] {
        server.put(json!({"apiVersion": "v1", "kind": "Namespace",
                          "metadata": {"name": namespace}}));
    }
    let web = server.put(gateway(
        "web",
        "weft",
        json!([{"name": "http", "port": 80, "protocol": "HTTP"}]),
    ));
    let wp = server.put(gateway(
        "wp",
        "istio-waypoint",
        json!([{"name": "mesh", "port": 15008, "protocol": "HBONE"}]),
    ));
    server.put(gateway(
        "theirs",
        "someone-else",
        json!([{"name": "http", "port": 80, "protocol": "HTTP"}]),
    ));
    let uid = |object: &Value| object["metadata"]["uid"].as_str().unwrap().to_owned();
    (uid(&web), uid(&wp))
}

async fn start(server: &TestApiServer) -> ClusterControl {
    let mut settings = ClusterSettings::new(NAMESPACE, "cluster.local", "control-0");
    settings.proxies.set(&format!("image={IMAGE}")).unwrap();
    ClusterControl::start(server.client(), settings, &WatchOptions::default())
        .await
        .expect("cluster control")
}

/// The stored object, as JSON (with its managedFields).
fn stored(server: &TestApiServer, api_version: &str, kind: &str, name: &str) -> Option<Value> {
    let key = weft_kubetest::ResourceType::new(api_version, kind).key(Some("shop"), name);
    server.store().get(&key)
}

fn managers(object: &Value) -> Vec<String> {
    (object["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten())
    .filter_map(|entry| entry["manager"].as_str().map(str::to_owned))
    .collect()
}

async fn gateway_addresses(client: kube::Client, name: &str) -> Option<Value> {
    let gvk = GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "Gateway");
    let gateways: Api<DynamicObject> =
        Api::namespaced_with(client, "shop", &ApiResource::from_gvk(&gvk));
    let stored = gateways.get(name).await.ok()?;
    Some(stored.data["status"]["addresses"].clone())
}

#[tokio::test]
async fn the_leader_deploys_each_gateway_weft_runs_owned_by_it() {
    let server = TestApiServer::start().await;
    let (web_uid, wp_uid) = seed(&server);
    let cluster = start(&server).await;

    let deployments: Api<Deployment> = Api::namespaced(server.client(), "shop");
    let web = eventually("the gateway's Deployment", || {
        let deployments = deployments.clone();
        async move { deployments.get_opt("web-weft").await.ok()? }
    })
    .await;
    let pod = web.spec.unwrap().template.spec.unwrap();
    let container = &pod.containers[0];
    assert_eq!(container.image.as_deref(), Some(IMAGE));
    let args = container.args.clone().unwrap().join(" ");
    assert!(
        args.starts_with("gateway --gateway shop/web --service-account web-weft --control weft-control.weft-system.svc:15012"),
        "{args}"
    );
    for (kind, api_version, name, uid) in [
        ("ServiceAccount", "v1", "web-weft", &web_uid),
        ("Deployment", "apps/v1", "web-weft", &web_uid),
        ("Service", "v1", "web-weft", &web_uid),
        ("ServiceAccount", "v1", "wp", &wp_uid),
        ("Service", "v1", "wp", &wp_uid),
    ] {
        let object = eventually(&format!("{kind} shop/{name}"), || async {
            stored(&server, api_version, kind, name)
        })
        .await;
        let owner = &object["metadata"]["ownerReferences"][0];
        assert_eq!(owner["kind"], "Gateway", "{kind} {name}");
        assert_eq!(&owner["uid"], uid.as_str(), "{kind} {name}");
        assert_eq!(owner["controller"], true);
        assert_eq!(managers(&object), ["weft"], "{kind} {name}");
    }
    let waypoint = eventually("the waypoint's Deployment", || {
        let deployments = deployments.clone();
        async move { deployments.get_opt("wp").await.ok()? }
    })
    .await;
    let args = waypoint.spec.unwrap().template.spec.unwrap().containers[0]
        .args
        .clone()
        .unwrap();
    assert_eq!(args[..4], ["waypoint", "run", "--gateway", "shop/wp"]);
    let services: Api<Service> = Api::namespaced(server.client(), "shop");
    let wp_service = services.get("wp").await.expect("waypoint Service");
    let spec = wp_service.spec.unwrap();
    assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
    let ports: Vec<i32> = spec.ports.unwrap().iter().map(|p| p.port).collect();
    assert_eq!(ports, [15021, 15008]);
    let accounts: Api<ServiceAccount> = Api::namespaced(server.client(), "shop");
    assert!(
        accounts
            .get_opt("theirs-someone-else")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        deployments
            .get_opt("theirs-someone-else")
            .await
            .unwrap()
            .is_none()
    );

    // a listener added to the Gateway reaches its Service
    let mut changed = stored(&server, "gateway.networking.k8s.io/v1", "Gateway", "web").unwrap();
    changed["spec"]["listeners"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "alt", "port": 8080, "protocol": "HTTP"}));
    server.put(changed);
    eventually("port 8080 on the gateway's Service", || {
        let services = services.clone();
        async move {
            let service = services.get("web-weft").await.ok()?;
            let ports = service.spec?.ports?;
            ports.iter().any(|p| p.port == 8080).then_some(())
        }
    })
    .await;

    // the cluster gives the Service an address: the Gateway's status shows it
    let mut service = stored(&server, "v1", "Service", "web-weft").unwrap();
    service["spec"]["clusterIP"] = json!("10.96.7.7");
    service["spec"]["clusterIPs"] = json!(["10.96.7.7"]);
    server.put(service.clone());
    let cluster_ip = json!([{"type": "IPAddress", "value": "10.96.7.7"}]);
    eventually("the cluster IP in the Gateway's status", || async {
        (gateway_addresses(server.client(), "web").await? == cluster_ip).then_some(())
    })
    .await;
    let mut service = stored(&server, "v1", "Service", "web-weft").unwrap();
    service["status"] = json!({"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}]}});
    server.put(service);
    let balanced = json!([{"type": "IPAddress", "value": "203.0.113.7"}]);
    eventually(
        "the load balancer's address in the Gateway's status",
        || async { (gateway_addresses(server.client(), "web").await? == balanced).then_some(()) },
    )
    .await;
    cluster.stop().await;
}
