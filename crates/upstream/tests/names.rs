//! Endpoints known by host name only, resolved against a DNS server on loopback: which
//! address of an answer a connection gets.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use weft_hbone::PoolConfig;
use weft_proto::workload::{NetworkAddress, Workload};
use weft_testkit::dns::DnsServer;
use weft_upstream::testing::{Index, ip_bytes, member, service, svc_address, wl_address};
use weft_upstream::{Directory, NameResolver, PortMapping, Route, Upstream};

/// Lookups per case: with two usable addresses, the chance that a random choice never
/// picks one of them is 2^-63.
const LOOKUPS: usize = 64;

async fn chosen(names: &NameResolver, host: &str, prefer_ipv6: bool) -> BTreeSet<IpAddr> {
    let mut seen = BTreeSet::new();
    for _ in 0..LOOKUPS {
        seen.insert(names.resolve(host, prefer_ipv6).await.expect(host));
    }
    seen
}

fn ips(list: &[&str]) -> BTreeSet<IpAddr> {
    list.iter().map(|ip| ip.parse().unwrap()).collect()
}

#[tokio::test]
async fn connections_spread_over_the_answer_in_the_callers_family() {
    let answers = vec![
        (
            "spread.test.example.",
            ["192.0.2.1", "192.0.2.2", "2001:db8::1", "2001:db8::2"]
                .iter()
                .map(|ip| ip.parse().unwrap())
                .collect(),
        ),
        ("v6only.test.example.", vec!["2001:db8::6".parse().unwrap()]),
        (
            "mixed.test.example.",
            vec![
                "169.254.169.254".parse().unwrap(),
                "192.0.2.9".parse().unwrap(),
            ],
        ),
        (
            "metadata.test.example.",
            vec!["169.254.169.254".parse().unwrap()],
        ),
    ];
    let dns = DnsServer::start(Ipv4Addr::LOCALHOST, answers).await;
    let names = NameResolver::new(vec![dns.addr], false);

    assert_eq!(
        chosen(&names, "spread.test.example", false).await,
        ips(&["192.0.2.1", "192.0.2.2"]),
        "an IPv4 caller gets every IPv4 address of the answer, and only those"
    );
    assert_eq!(
        chosen(&names, "spread.test.example", true).await,
        ips(&["2001:db8::1", "2001:db8::2"]),
        "an IPv6 caller gets the IPv6 ones"
    );
    assert_eq!(
        chosen(&names, "v6only.test.example", false).await,
        ips(&["2001:db8::6"]),
        "the other family when the answer has nothing else"
    );
    assert_eq!(
        chosen(&names, "mixed.test.example", false).await,
        ips(&["192.0.2.9"]),
        "a refused address is never chosen"
    );
    let refused = names.resolve("metadata.test.example", false).await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|why| why.contains("169.254.169.254")),
        "an answer of refused addresses only says why: {refused:?}"
    );
}

/// A dual-stack external service `api` (VIPs 240.0.0.1, then 2001:db8:f::1) whose one
/// endpoint is known by the name `dual.test.example`.
fn dual_stack_service() -> Index {
    let mut svc = service("ext", "api", "240.0.0.1", &[(443, 443)]);
    svc.addresses.push(NetworkAddress {
        network: String::new(),
        address: ip_bytes("2001:db8:f::1"),
        length: None,
    });
    let key = format!("ext/{}", svc.hostname);
    let endpoint = Workload {
        uid: "Kubernetes/networking.istio.io/ServiceEntry/ext/api/dual.test.example".into(),
        name: "api".into(),
        namespace: "ext".into(),
        hostname: "dual.test.example".into(),
        ..Workload::default()
    };
    Index::new([
        svc_address(svc),
        wl_address(member(endpoint, &key, &[(443, 443)])),
    ])
}

fn plain_address(route: Route) -> IpAddr {
    match route {
        Route::Plain { addr, .. } => addr.ip(),
        Route::Hbone { .. } => panic!("an endpoint without tunnel is dialled plain"),
    }
}

#[tokio::test]
async fn the_answer_family_follows_the_dialled_vip_or_else_the_services_first() {
    let dual = vec![(
        "dual.test.example.",
        vec!["192.0.2.7".parse().unwrap(), "2001:db8::7".parse().unwrap()],
    )];
    let dns = DnsServer::start(Ipv4Addr::LOCALHOST, dual).await;
    let upstream = Upstream::new(PoolConfig::default(), 15008, "")
        .with_names(NameResolver::new(vec![dns.addr], false));
    let index = dual_stack_service();
    let route = |vip: &str| {
        let dst = SocketAddr::new(vip.parse().unwrap(), 443);
        upstream.route_resolving(&index, None, dst)
    };
    let v4: IpAddr = "192.0.2.7".parse().unwrap();
    let v6: IpAddr = "2001:db8::7".parse().unwrap();
    assert_eq!(plain_address(route("240.0.0.1").await.unwrap()), v4);
    assert_eq!(plain_address(route("2001:db8:f::1").await.unwrap()), v6);

    // no dialled address (a route's backend at a waypoint): the service's first VIP
    let service = |index: &Index| {
        Arc::clone(
            index
                .service_by_key("ext/api.ext.svc.cluster.local")
                .unwrap(),
        )
    };
    let port = PortMapping {
        service_port: 443,
        target_port: None,
    };
    let by_vip = upstream
        .service_route_resolving(service(&index), port, None, None)
        .await;
    assert_eq!(plain_address(by_vip.unwrap()), v4);
    let dialled_v6 = Some("2001:db8:f::1".parse().unwrap());
    let by_dialled = upstream
        .service_route_resolving(service(&index), port, None, dialled_v6)
        .await;
    assert_eq!(plain_address(by_dialled.unwrap()), v6);
}
