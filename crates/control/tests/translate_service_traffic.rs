//! How a Kubernetes Service's own fields shape its traffic, as istiod sends them to node
//! proxies: `internalTrafficPolicy: Local` (this node's endpoints only), `publishNotReady
//! Addresses` (unready endpoints serve), `ipFamilies`, and the traffic distribution.

use weft_api::{ConfigSnapshot, parse_manifests};
use weft_control::translate::{ResourceKey, TranslateOptions, translate};
use weft_proto::workload::load_balancing::{HealthPolicy, Mode, Scope};
use weft_proto::workload::{Address, IpFamilies, Service, address};

fn service(spec: &str) -> Service {
    let text = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: agent, namespace: ops}}\nspec:\n  clusterIP: 10.96.7.7\n  selector: {{app: agent}}\n  ports: [{{port: 80}}]\n{spec}"
    );
    let loaded = parse_manifests(&text, "svc.yaml".as_ref());
    assert!(loaded.findings.is_empty(), "{:#?}", loaded.findings);
    let output = translate(
        &ConfigSnapshot::new(loaded.objects),
        &TranslateOptions::default(),
    );
    let key = "ops/agent.ops.svc.cluster.local";
    let address: Address = output
        .get(&ResourceKey::address(key))
        .expect(key)
        .decode()
        .unwrap();
    match address.r#type {
        Some(address::Type::Service(service)) => service,
        other => panic!("not a service: {other:?}"),
    }
}

#[test]
fn internal_traffic_policy_local_keeps_traffic_on_the_callers_node() {
    let local = service("  internalTrafficPolicy: Local\n");
    let lb = local.load_balancing.expect("load balancing");
    assert_eq!(lb.routing_preference, [i32::from(Scope::Node)]);
    assert_eq!(lb.mode(), Mode::Strict);
    assert_eq!(lb.health_policy(), HealthPolicy::OnlyHealthy);
    assert!(
        service("  internalTrafficPolicy: Cluster\n")
            .load_balancing
            .is_none()
    );
}

#[test]
fn publish_not_ready_addresses_lets_unready_endpoints_serve() {
    let lb = service("  publishNotReadyAddresses: true\n")
        .load_balancing
        .expect("load balancing");
    assert_eq!(lb.health_policy(), HealthPolicy::AllowAll);
    assert!(lb.routing_preference.is_empty());
    // with a traffic distribution, both apply
    let both = service("  publishNotReadyAddresses: true\n  trafficDistribution: PreferClose\n")
        .load_balancing
        .expect("load balancing");
    assert_eq!(both.health_policy(), HealthPolicy::AllowAll);
    assert_eq!(both.mode(), Mode::Failover);
}

#[test]
fn ip_families_are_passed_on() {
    let families = |spec: &str| service(spec).ip_families();
    assert_eq!(families(""), IpFamilies::Automatic);
    assert_eq!(families("  ipFamilies: [IPv4]\n"), IpFamilies::Ipv4Only);
    assert_eq!(families("  ipFamilies: [IPv6]\n"), IpFamilies::Ipv6Only);
    assert_eq!(families("  ipFamilies: [IPv6, IPv4]\n"), IpFamilies::Dual);
}
