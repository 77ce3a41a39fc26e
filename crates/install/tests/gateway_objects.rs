//! What the leader control plane deploys for a Gateway, read back as k8s-openapi types: the
//! names Istio's deployment controller uses, ownership by the Gateway (its uid), the labels
//! and `spec.infrastructure` propagation, the container's command and credentials, the
//! Service's ports and type, and a Gateway of a class weft does not handle deploys nothing.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Service, ServiceAccount};
use serde::de::DeserializeOwned;
use weft_api::ConfigSnapshot;
use weft_api::expand::gateway_deployment;
use weft_api::gateway::Gateway;
use weft_api::object::Object;
use weft_install::gateway::{GatewayObjectsError, gateway_objects};
use weft_install::{ManifestObject, Settings};

const GATEWAYS: &str = "\
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: web, namespace: shop, uid: uid-web}
spec:
  gatewayClassName: istio
  infrastructure:
    labels: {team: payments, istio.io/gateway-name: spoofed}
    annotations: {example.com/owner: alice}
  listeners:
  - {name: http, port: 80, protocol: HTTP}
  - {name: https, port: 443, protocol: HTTPS, tls: {certificateRefs: [{name: cert}]}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: wp, namespace: shop, uid: uid-wp}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{name: mesh, port: 15008, protocol: HBONE}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: theirs, namespace: shop, uid: uid-theirs}
spec:
  gatewayClassName: someone-else
  listeners: [{name: http, port: 80, protocol: HTTP}]
";

fn snapshot(text: &str) -> ConfigSnapshot {
    let loaded = weft_api::parse_manifests(text, std::path::Path::new("gateways.yaml"));
    assert!(loaded.findings.is_empty(), "{:?}", loaded.findings);
    ConfigSnapshot::observed(loaded.objects)
}

fn gateway<'a>(snapshot: &'a ConfigSnapshot, name: &str) -> &'a Gateway {
    match &snapshot
        .get(weft_api::Kind::Gateway, Some("shop"), name)
        .unwrap()
        .object
    {
        Object::Gateway(gateway) => gateway,
        other => panic!("{other:?}"),
    }
}

/// The objects `name` deploys (`None` when weft does not run it).
fn deployed(snapshot: &ConfigSnapshot, name: &str) -> Option<Vec<ManifestObject>> {
    let settings = Settings::from_sets(&["namespace=mesh", "image=registry.local/weft:dev"])
        .expect("settings");
    let gateway = gateway(snapshot, name);
    let description = gateway_deployment(snapshot, gateway)?;
    Some(gateway_objects(&settings, gateway, &description).expect("objects"))
}

fn typed<K: DeserializeOwned + k8s_openapi::Resource>(objects: &[ManifestObject]) -> K {
    let object = (objects.iter())
        .find(|o| o.kind == K::KIND)
        .unwrap_or_else(|| panic!("a {}", K::KIND));
    serde_json::from_value(object.body.clone()).expect("parses as its k8s-openapi type")
}

#[test]
fn an_ingress_gateway_gets_an_owned_account_deployment_and_load_balancer_service() {
    let snapshot = snapshot(GATEWAYS);
    let objects = deployed(&snapshot, "web").expect("weft runs class istio");
    let kinds: Vec<&str> = objects.iter().map(|o| o.kind).collect();
    assert_eq!(kinds, ["ServiceAccount", "Deployment", "Service"]);
    for object in &objects {
        assert_eq!(object.name, "web-istio", "Istio's <gateway>-<class> name");
        assert_eq!(object.namespace.as_deref(), Some("shop"));
        let owner = &object.body["metadata"]["ownerReferences"][0];
        assert_eq!(owner["kind"], "Gateway");
        assert_eq!(owner["name"], "web");
        assert_eq!(
            owner["uid"], "uid-web",
            "garbage collected with the Gateway"
        );
        assert_eq!(owner["controller"], true);
        let labels = &object.body["metadata"]["labels"];
        assert_eq!(labels["gateway.networking.k8s.io/gateway-name"], "web");
        assert_eq!(labels["istio.io/gateway-name"], "web", "weft's value wins");
        assert_eq!(
            labels["team"], "payments",
            "infrastructure labels propagate"
        );
        assert_eq!(labels["app.kubernetes.io/managed-by"], "weft");
        let annotations = &object.body["metadata"]["annotations"];
        assert_eq!(annotations["example.com/owner"], "alice");
    }
    let _: ServiceAccount = typed(&objects);

    let deployment: Deployment = typed(&objects);
    let spec = deployment.spec.expect("spec");
    let selector = spec.selector.match_labels.expect("selector");
    assert_eq!(selector["gateway.networking.k8s.io/gateway-name"], "web");
    let template = spec.template.metadata.expect("template metadata");
    assert_eq!(template.labels.unwrap()["istio.io/dataplane-mode"], "none");
    let pod = spec.template.spec.expect("pod");
    assert_eq!(pod.service_account_name.as_deref(), Some("web-istio"));
    let container = &pod.containers[0];
    assert_eq!(container.image.as_deref(), Some("registry.local/weft:dev"));
    assert_eq!(container.command.as_deref(), Some(&["weft".to_owned()][..]));
    let args = container.args.clone().unwrap().join(" ");
    assert!(
        args.starts_with("gateway --gateway shop/web --service-account web-istio --control weft-control.mesh.svc:15012 --control-san weft-control.mesh.svc --token-file /var/run/secrets/tokens/istio-token --ca-root /var/run/secrets/istio/root-cert.pem"),
        "{args}"
    );
    let ports: Vec<i32> = (container.ports.iter().flatten())
        .map(|p| p.container_port)
        .collect();
    assert!(ports.contains(&80) && ports.contains(&443) && ports.contains(&15021));
    let probe = container
        .readiness_probe
        .as_ref()
        .unwrap()
        .http_get
        .as_ref();
    assert_eq!(probe.unwrap().path.as_deref(), Some("/healthz/ready"));
    let security = container.security_context.as_ref().unwrap();
    assert_eq!(security.run_as_non_root, Some(true));
    assert_eq!(security.capabilities.as_ref().unwrap().add, None);
    let sysctls = pod.security_context.unwrap().sysctls.unwrap();
    assert_eq!(sysctls[0].name, "net.ipv4.ip_unprivileged_port_start");
    let volumes: Vec<String> = pod.volumes.unwrap().into_iter().map(|v| v.name).collect();
    assert_eq!(volumes, ["istio-token", "istio-root"]);

    let service: Service = typed(&objects);
    let spec = service.spec.unwrap();
    assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"));
    let ports: Vec<(Option<String>, i32)> = (spec.ports.into_iter().flatten())
        .map(|p| (p.name, p.port))
        .collect();
    assert_eq!(
        ports,
        [
            (Some("status-port".to_owned()), 15021),
            (Some("http-80".to_owned()), 80),
            (Some("https-443".to_owned()), 443)
        ]
    );
}

#[test]
fn a_waypoint_gets_a_cluster_ip_service_on_15008_and_runs_weft_waypoint_run() {
    let snapshot = snapshot(GATEWAYS);
    let objects = deployed(&snapshot, "wp").expect("weft runs waypoints");
    assert!(
        objects.iter().all(|o| o.name == "wp"),
        "named as the Gateway"
    );
    let deployment: Deployment = typed(&objects);
    let pod = deployment.spec.unwrap().template.spec.unwrap();
    let args = pod.containers[0].args.clone().unwrap();
    assert_eq!(args[..4], ["waypoint", "run", "--gateway", "shop/wp"]);
    assert!(pod.security_context.unwrap().sysctls.is_none());
    let service: Service = typed(&objects);
    let spec = service.spec.unwrap();
    assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
    let ports: Vec<i32> = (spec.ports.into_iter().flatten()).map(|p| p.port).collect();
    assert_eq!(ports, [15021, 15008]);
}

#[test]
fn other_classes_deploy_nothing_and_a_gateway_without_uid_is_refused_by_name() {
    let snapshot = snapshot(GATEWAYS);
    assert!(deployed(&snapshot, "theirs").is_none());

    let without_uid = GATEWAYS.replace(", uid: uid-web", "");
    let snapshot = self::snapshot(&without_uid);
    let gateway = gateway(&snapshot, "web");
    let description = gateway_deployment(&snapshot, gateway).unwrap();
    let error = gateway_objects(&Settings::default(), gateway, &description).unwrap_err();
    assert_eq!(error, GatewayObjectsError::NoUid("web".to_owned()));
    assert!(error.to_string().contains("Gateway web"), "{error}");
}

#[test]
fn the_service_type_annotation_chooses_a_gateways_service_type() {
    let annotated = GATEWAYS.replace(
        "metadata: {name: web, namespace: shop, uid: uid-web}",
        "metadata: {name: web, namespace: shop, uid: uid-web, annotations: {networking.istio.io/service-type: ClusterIP}}",
    );
    let objects = deployed(&snapshot(&annotated), "web").unwrap();
    let service: Service = typed(&objects);
    assert_eq!(service.spec.unwrap().type_.as_deref(), Some("ClusterIP"));
}
