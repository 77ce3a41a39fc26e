//! The outbound traffic policy in a node proxy, with real sockets in explicit mode:
//! ALLOW_ANY passes an unregistered destination through, REGISTRY_ONLY refuses it (SOCKS
//! reply 2, HTTP 403, an access-log event with reason `registry_only`, the refusal counter)
//! while workloads, service VIPs and ServiceEntry hosts stay reachable; the policy arrives
//! over delta xDS and switches live, and a control plane that never serves the type leaves
//! the node ready with ALLOW_ANY.

#[path = "node/harness.rs"]
mod harness;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use harness::*;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_stream::wrappers::TcpListenerStream;
use weft_node::process::{RunningNode, StateSource};
use weft_proto::mesh::MeshConfig;
use weft_proto::mesh::mesh_config::OutboundTrafficPolicy;
use weft_proto::workload::{Address, Service, Workload, address};
use weft_proto::{ADDRESS_TYPE_URL, MESH_CONFIG_NAME, MESH_CONFIG_TYPE_URL, pack_any};
use weft_xds::{AllowAnonymous, ResourcePublisher, ServerConfig, XdsResource, XdsServer};

/// An address outside every registry (TEST-NET-1): nothing listens there.
const UNREGISTERED: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 443);
/// The ServiceEntry-like service: a hostname with a VIP whose endpoint is `plain-1`.
const EXTERNAL_HOST: &str = "api.example.com";

/// `TwoNodes::resources` plus a service `egress/api.example.com` on VIP `127.<n>.2.9:443`
/// served by `plain-1` (outside the mesh) on port 9443.
fn resources(net: Net) -> (Vec<Workload>, Vec<Service>) {
    let (mut workloads, mut services) = TwoNodes::resources(net);
    let key = format!("egress/{EXTERNAL_HOST}");
    let plain = workloads.pop().expect("plain-1 last");
    workloads.push(with_service(plain, &key, 443, 9443));
    let mut external = service("api", "egress", net.vip(9), 443, 9443);
    external.hostname = EXTERNAL_HOST.to_owned();
    services.push(external);
    (workloads, services)
}

/// node-a (with the client, a short connect timeout) and node-b (serving the echo
/// workload), each fed by its own `state`.
async fn nodes(net: Net, a_state: StateSource, b_state: StateSource) -> (RunningNode, RunningNode) {
    let ca = test_ca();
    let mut config = node_config(&ca, "node-a", net.node(2), a_state);
    config.options.connect_timeout = Duration::from_millis(500);
    let a = start_with(config).await;
    let b = start_with(node_config(&ca, "node-b", net.node(3), b_state)).await;
    (a, b)
}

/// SOCKS CONNECT from the client workload through node-a.
async fn socks(net: Net, a: &RunningNode, dst: SocketAddr) -> (u8, tokio::net::TcpStream) {
    socks_connect(net.workload(1), a.addrs.explicit.unwrap(), dst).await
}

/// The status line of an HTTP CONNECT to `dst` through node-a.
async fn http_connect(net: Net, a: &RunningNode, dst: SocketAddr) -> String {
    let mut stream = connect_from(net.workload(1), a.addrs.explicit.unwrap()).await;
    let head = format!("CONNECT {dst} HTTP/1.1\r\nHost: {dst}\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 64];
    let n = tokio::time::timeout(WAIT, stream.read(&mut answer))
        .await
        .expect("CONNECT answered in time")
        .expect("read CONNECT answer");
    let text = String::from_utf8_lossy(&answer[..n]).into_owned();
    text.lines().next().unwrap_or_default().to_owned()
}

/// Registered destinations answer through node-a: the echo service VIP, the ServiceEntry
/// host by name, and the plain workload's address.
async fn registered_destinations_work(net: Net, a: &RunningNode) {
    let (code, mut stream) = socks(net, a, net.vip_addr()).await;
    assert_eq!(code, 0, "service VIP");
    assert_eq!(ping(&mut stream, b"vip").await, b"vip");
    let explicit = a.addrs.explicit.unwrap();
    let (code, mut stream) =
        socks_connect_domain(net.workload(1), explicit, EXTERNAL_HOST, 443).await;
    assert_eq!(code, 0, "ServiceEntry host");
    assert_eq!(ping(&mut stream, b"entry").await, b"entry");
    let (code, mut stream) = socks(net, a, net.plain_addr(9443)).await;
    assert_eq!(code, 0, "workload outside the mesh, but in the registry");
    assert_eq!(ping(&mut stream, b"plain").await, b"plain");
}

/// The refusal counter of node-a's metrics page.
async fn refused_count(a: &RunningNode) -> String {
    let (_, metrics) = page(a.addrs.metrics, "/metrics").await;
    let line = metrics
        .lines()
        .find(|l| l.starts_with("weft_outbound_refused_total{reason=\"registry_only\"}"));
    line.unwrap_or("none").to_owned()
}

#[tokio::test]
async fn registry_only_refuses_unregistered_destinations_only() {
    capture_logs();
    let net = Net::next();
    let dir = tempfile::tempdir().unwrap();
    let (workloads, services) = resources(net);
    let config = write_config(&dir, &workloads, &services, &[]);
    let _echo = echo_server(net.echo_addr()).await;
    let _plain = echo_server(net.plain_addr(9443)).await;
    let state = || StateSource::LocalFile(config.clone());
    let (a, _b) = nodes(net, state(), state()).await;

    // ALLOW_ANY (the default): the unregistered address is tried (and fails to connect).
    assert_eq!(
        a.node.outbound_traffic_policy(),
        OutboundTrafficPolicy::AllowAny
    );
    let (code, _) = socks(net, &a, UNREGISTERED).await;
    assert_ne!(code, 2, "ALLOW_ANY must not refuse by policy");
    registered_destinations_work(net, &a).await;

    a.node
        .set_outbound_traffic_policy(OutboundTrafficPolicy::RegistryOnly);
    let (code, _) = socks(net, &a, UNREGISTERED).await;
    assert_eq!(code, 2, "SOCKS: not allowed by ruleset");
    let status = http_connect(net, &a, UNREGISTERED).await;
    assert_eq!(status, "HTTP/1.1 403 Forbidden");
    registered_destinations_work(net, &a).await;

    let logged = access_log_lines("192.0.2.1:443");
    assert!(
        logged
            .iter()
            .any(|l| l.contains("result=denied") && l.contains("registry_only")),
        "{logged:#?}"
    );
    assert_eq!(
        refused_count(&a).await,
        "weft_outbound_refused_total{reason=\"registry_only\"} 2"
    );
}

/// A delta xDS server on this runtime serving the mesh state; returns the publisher.
async fn control_plane(
    net: Net,
    workloads: &[Workload],
    services: &[Service],
) -> (tonic::transport::Channel, ResourcePublisher) {
    let mut registry = Registry::default();
    let (server, publisher) =
        XdsServer::new(ServerConfig::default(), AllowAnonymous, &mut registry);
    let addresses = workloads
        .iter()
        .map(|w| (w.uid.clone(), address::Type::Workload(w.clone())))
        .chain(services.iter().map(|s| {
            let name = format!("{}/{}", s.namespace, s.hostname);
            (name, address::Type::Service(s.clone()))
        }))
        .map(|(name, body)| {
            let body = Address { r#type: Some(body) };
            XdsResource::new(name, vec![], pack_any(ADDRESS_TYPE_URL, &body))
        });
    publisher.replace(ADDRESS_TYPE_URL, addresses.collect::<Vec<_>>());
    publisher.replace(weft_proto::AUTHORIZATION_TYPE_URL, Vec::new());
    let listener = tokio::net::TcpListener::bind((net.node(1), 0))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let router = tonic::transport::Server::builder().add_service(server.service());
    tokio::spawn(router.serve_with_incoming(TcpListenerStream::new(listener)));
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy();
    (channel, publisher)
}

fn mesh_config(policy: OutboundTrafficPolicy) -> Vec<XdsResource> {
    let body = MeshConfig {
        outbound_traffic_policy: policy.into(),
    };
    let any = pack_any(MESH_CONFIG_TYPE_URL, &body);
    vec![XdsResource::new(MESH_CONFIG_NAME.to_owned(), vec![], any)]
}

#[tokio::test]
async fn the_policy_arrives_over_xds_and_switches_live() {
    capture_logs();
    let net = Net::next();
    let (workloads, services) = resources(net);
    let _echo = echo_server(net.echo_addr()).await;
    let _plain = echo_server(net.plain_addr(9443)).await;
    let (channel, publisher) = control_plane(net, &workloads, &services).await;
    // No MeshConfig served: the nodes get ready anyway, with ALLOW_ANY.
    let (a, _b) = nodes(net, xds_source(channel.clone()), xds_source(channel)).await;
    assert_eq!(
        a.node.outbound_traffic_policy(),
        OutboundTrafficPolicy::AllowAny
    );

    publisher.replace(
        MESH_CONFIG_TYPE_URL,
        mesh_config(OutboundTrafficPolicy::RegistryOnly),
    );
    eventually("REGISTRY_ONLY reaches node-a", || async {
        a.node.outbound_traffic_policy() == OutboundTrafficPolicy::RegistryOnly
    })
    .await;
    let (code, _) = socks(net, &a, UNREGISTERED).await;
    assert_eq!(code, 2);
    registered_destinations_work(net, &a).await;

    // Removing the resource restores the default.
    publisher.replace(MESH_CONFIG_TYPE_URL, Vec::new());
    eventually("ALLOW_ANY is back", || async {
        a.node.outbound_traffic_policy() == OutboundTrafficPolicy::AllowAny
    })
    .await;
    let (code, _) = socks(net, &a, UNREGISTERED).await;
    assert_ne!(code, 2);
}

/// `egress/<host>` on VIP `.2.<vip>`:443 whose one endpoint is the name `host` (a
/// `resolution: DNS` ServiceEntry's host as its own endpoint: no address), port 9443.
fn named_entry(net: Net, host: &str, vip: u8) -> (Workload, Service) {
    let key = format!("egress/{host}");
    let mut entry = workload(host, "egress", "default", net.workload(9), "");
    entry.addresses.clear();
    entry.hostname = host.into();
    entry.tunnel_protocol = weft_proto::workload::TunnelProtocol::None.into();
    let mut named = service(host, "egress", net.vip(vip), 443, 9443);
    named.hostname = host.to_owned();
    (with_service(entry, &key, 443, 9443), named)
}

/// A `resolution: DNS` ServiceEntry's host as its own endpoint is reached by the node proxy
/// at the address the name resolves to, with the node's DNS servers; a name resolving to
/// a host-local address that is no pod's is refused like any such plain endpoint.
#[tokio::test]
async fn an_endpoint_known_by_name_is_reached_at_its_resolved_address() {
    capture_logs();
    let net = Net::next();
    let dir = tempfile::tempdir().unwrap();
    let (mut workloads, mut services) = resources(net);
    for (host, vip) in [("named.test.example", 10), ("local.test.example", 11)] {
        let (entry, service) = named_entry(net, host, vip);
        workloads.push(entry);
        services.push(service);
    }
    let config = write_config(&dir, &workloads, &services, &[]);
    // named: plain-1's address, where an echo server listens; local: an address of this
    // host that no workload has, where one listens too
    let answers = vec![
        ("named.test.example.", vec![IpAddr::V4(net.workload(3))]),
        ("local.test.example.", vec![IpAddr::V4(net.workload(200))]),
    ];
    let dns = weft_testkit::dns::DnsServer::start(net.vip(53), answers).await;
    let _local = echo_server(SocketAddr::new(IpAddr::V4(net.workload(200)), 9443)).await;
    let _plain = echo_server(net.plain_addr(9443)).await;

    let ca = test_ca();
    let mut config = node_config(&ca, "node-a", net.node(2), StateSource::LocalFile(config));
    config.options.dns_servers = vec![dns.addr];
    // plain-1 is on loopback, like everything in these tests
    config.options.allow_loopback_answers = true;
    let a = start_with(config).await;
    let vip = SocketAddr::new(IpAddr::V4(net.vip(10)), 443);
    let (code, mut stream) = socks(net, &a, vip).await;
    assert_eq!(code, 0, "the named endpoint is reached");
    assert_eq!(ping(&mut stream, b"named").await, b"named");
    let local = SocketAddr::new(IpAddr::V4(net.vip(11)), 443);
    let (code, _) = socks(net, &a, local).await;
    assert_ne!(
        code, 0,
        "a host-local address that is no pod's is not dialled"
    );
    assert!(
        dns.was_asked("local.test.example."),
        "the refusal came after the lookup"
    );
}
