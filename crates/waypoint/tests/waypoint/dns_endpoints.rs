//! Endpoints known by host name only (a ServiceEntry with `resolution: DNS` and no
//! endpoints): the waypoint resolves the name with its DNS servers (here a test server on
//! loopback) and connects to the answer; a name that resolves to the proxy's own host is
//! answered 503 and never dialled.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use weft_proto::{ADDRESS_TYPE_URL, pack_any};
use weft_testkit::dns::DnsServer;
use weft_upstream::testing as wl;
use weft_waypoint::{OutlierConfig, WaypointOptions};
use weft_xds::XdsResource;

use crate::harness::*;

/// The echo app on plain TCP `<ip>:8080`, as an endpoint outside the mesh.
async fn external_echo(name: &str, ip: Ipv4Addr, stop: CancellationToken) -> Arc<Backend> {
    let backend = Backend::new(name, ip, Behaviour::default());
    let listener = TcpListener::bind((ip, TARGET_PORT)).await.unwrap();
    let serving = Arc::clone(&backend);
    tokio::spawn(async move {
        weft_serve::accept_until(&listener, stop.cancelled(), "external", |stream, _| {
            tokio::spawn(serve_echo(Arc::clone(&serving), "none".into(), stream));
        })
        .await;
    });
    backend
}

/// Service `name` (VIP `.2.<vip>`) whose one endpoint is the plain-TCP host `host`.
fn named_service(net: Net, name: &str, vip: u8, host: &str) -> Vec<XdsResource> {
    let service = wl::service(NS, name, &net.vip(vip).ip().to_string(), &[(80, 8080)]);
    let mut endpoint = wl::pod(NS, &format!("{name}-entry"), "0.0.0.0");
    endpoint.addresses.clear();
    endpoint.hostname = host.into();
    endpoint.tunnel_protocol = weft_proto::workload::TunnelProtocol::None.into();
    let member = wl::member(endpoint, &key(name), &[(80, 8080)]);
    [wl::svc_address(service), wl::wl_address(member)]
        .into_iter()
        .map(|(name, address)| XdsResource::new(name, vec![], pack_any(ADDRESS_TYPE_URL, &address)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_known_by_name_is_resolved_and_its_own_host_refused() {
    let stop = CancellationToken::new();
    let _stop = stop.clone().drop_guard();
    let net = Net::next();
    let external_ip = net.ip(3, 1);
    // api also has an IPv6 answer, ::1, dialled only if IPv6 answers came first
    let names = vec![
        (
            "api.test.example.",
            vec![IpAddr::V4(external_ip), IpAddr::V6(Ipv6Addr::LOCALHOST)],
        ),
        (
            "trap.test.example.",
            vec![IpAddr::V4(Ipv4Addr::UNSPECIFIED)],
        ),
    ];
    let dns = DnsServer::start(net.ip(3, 53), names).await;
    let external = external_echo("api-external", external_ip, stop.clone()).await;

    let specs = || vec![backend("echo-a", "echo")];
    let services = [("echo", vec![]), ("api", vec![]), ("trap", vec![])];
    let options = WaypointOptions {
        dns_servers: vec![dns.addr],
        // the "external" host is on loopback, like everything in these tests
        allow_loopback_answers: true,
        ..options(OutlierConfig::default())
    };
    let resource = waypoint_resource(&services, vec![]);
    let mesh = Mesh::start_with_options(specs(), resource, options, None).await;
    let mut resources = addresses(mesh.net, &specs());
    resources.extend(named_service(mesh.net, "api", 2, "api.test.example"));
    resources.extend(named_service(mesh.net, "trap", 3, "trap.test.example"));
    mesh.publisher.replace(ADDRESS_TYPE_URL, resources);
    let client = mesh.client().await;

    // The new services reach the waypoint with the next xDS push (a tunnel to a service
    // it does not know yet is refused with 404).
    for vip in [mesh.net.vip(2), mesh.net.vip(3)] {
        let deadline = tokio::time::Instant::now() + WAIT;
        while let Err(refused) = client.tunnel(vip).await {
            assert!(tokio::time::Instant::now() < deadline, "{vip}: {refused}");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    let mut api = client.h1(mesh.net.vip(2)).await;
    let answer = send(&mut api, get("/orders", &[])).await;
    assert_eq!(answer.header("x-backend"), "api-external", "{answer:?}");
    assert_eq!(
        answer.header("x-peer"),
        "none",
        "plain TCP, outside the mesh"
    );
    assert_eq!(answer.body, "api-external GET /orders 0");
    assert!(dns.was_asked("api.test.example."));

    // 503 with flag DF, not the 502 a refused dial would give: the unspecified address
    // (this host) is never dialled.
    let mut trap = client.h1(mesh.net.vip(3)).await;
    let refused = send(&mut trap, get("/", &[])).await;
    assert_eq!(refused.status, 503, "{refused:?}");
    assert!(dns.was_asked("trap.test.example."));
    // the request is counted once its response has ended
    eventually("a DNS failure counted with flag DF", || async {
        mesh.metrics().await.lines().any(|l| {
            l.starts_with("istio_requests_total{")
                && l.contains("response_code=\"503\"")
                && l.contains("response_flags=\"DF\"")
        })
    })
    .await;
    assert_eq!(mesh.backend("echo-a").requests.load(Ordering::Relaxed), 0);
    assert!(external.requests.load(Ordering::Relaxed) >= 1);
}
