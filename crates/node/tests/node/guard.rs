//! Who may use the explicit port, when, and to reach what: nothing is relayed before the
//! first configuration, only local workloads may call, and the node's own loopback
//! services and the proxy's ports are never a destination.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use std::net::TcpListener;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weft_node::process::run;

use crate::datapath::metric_line;
use crate::harness::*;

const SOCKS_GENERAL_FAILURE: u8 = 1;
const SOCKS_NOT_ALLOWED: u8 = 2;

/// HTTP CONNECT to `dst` through `proxy` from `source`; returns the status line.
async fn http_connect(source: Ipv4Addr, proxy: SocketAddr, dst: SocketAddr) -> String {
    let mut stream = connect_from(source, proxy).await;
    let request = format!("CONNECT {dst} HTTP/1.1\r\nHost: {dst}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    while !answer.ends_with(b"\r\n") {
        let byte = tokio::time::timeout(WAIT, stream.read_u8())
            .await
            .expect("HTTP answer in time")
            .expect("HTTP answer");
        answer.push(byte);
    }
    String::from_utf8_lossy(&answer).trim_end().to_owned()
}

/// A listener standing for a destination; [`was_dialled`] asks the kernel whether
/// anything connected to it.
fn listen_target(addr: SocketAddr) -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind(addr).expect("bind target");
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

/// Whether a connection to `target` is waiting to be accepted. The proxy answers only
/// once the upstream is open, so after its answer this is exact.
fn was_dialled(target: &TcpListener) -> bool {
    match target.accept() {
        Ok(_) => true,
        Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => false,
        Err(error) => panic!("accept: {error}"),
    }
}

#[tokio::test]
async fn explicit_port_relays_nothing_before_the_first_configuration() {
    let net = Net::next();
    let ca = test_ca();
    let (_silent, state) = silent_control_plane(net.node(1));
    let mut config = node_config(&ca, "node-a", net.node(2), state);
    config.options.config_wait = Duration::from_millis(200);
    let node = run(config).await.expect("node proxy starts");
    let explicit = node.addrs.explicit.unwrap();
    let (target, dst) = listen_target(net.plain_addr(0));

    let (code, _) = socks_connect(net.workload(1), explicit, dst).await;
    assert_eq!(
        code, SOCKS_GENERAL_FAILURE,
        "SOCKS before any configuration"
    );
    let status = http_connect(net.workload(1), explicit, dst).await;
    assert!(status.starts_with("HTTP/1.1 503"), "{status}");
    assert!(!was_dialled(&target), "the destination must not be reached");

    let (_, metrics) = page(node.addrs.metrics, "/metrics").await;
    let refused = metric_line(&metrics, "weft_connections_refused_not_ready_total", "");
    assert!(refused.ends_with(" 2"), "{refused}");
}

/// The capture listeners make mesh decisions too: before the first configuration the
/// plaintext inbound listener holds a connection for `config_wait`, then closes it without
/// serving it (counted); the outbound one serves only redirected connections, so a direct
/// one is closed at once (its gate needs redirected traffic: see the capture tests).
#[tokio::test]
async fn capture_listeners_serve_nothing_before_the_first_configuration() {
    let net = Net::next();
    let ca = test_ca();
    let (_silent, state) = silent_control_plane(net.node(1));
    let mut config = node_config(&ca, "node-a", net.node(2), state);
    config.options.config_wait = Duration::from_millis(200);
    config.listen.outbound = Some(SocketAddr::new(IpAddr::V4(net.node(2)), 0));
    config.listen.inbound_plaintext = Some(SocketAddr::new(IpAddr::V4(net.node(2)), 0));
    let node = run(config).await.expect("node proxy starts");
    for listener in [node.addrs.outbound, node.addrs.inbound_plaintext] {
        let mut stream = connect_from(net.workload(1), listener.unwrap()).await;
        let mut rest = Vec::new();
        let read = tokio::time::timeout(WAIT, stream.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "the connection is closed in time");
        assert!(rest.is_empty(), "nothing is answered");
    }
    let (_, metrics) = page(node.addrs.metrics, "/metrics").await;
    let refused = metric_line(&metrics, "weft_connections_refused_not_ready_total", "");
    assert!(
        refused.ends_with(" 1"),
        "the inbound connection waited: {refused}"
    );
}

#[tokio::test]
async fn explicit_port_serves_only_workloads_of_this_node() {
    let mesh = TwoNodes::start(&[]).await;
    let explicit = mesh.a.addrs.explicit.unwrap();
    let (target, dst) = listen_target(mesh.net.plain_addr(0));

    let (code, mut stream) = socks_connect(mesh.net.workload(1), explicit, dst).await;
    assert_eq!(
        code, 0,
        "a local workload may reach a workload outside the mesh"
    );
    assert!(was_dialled(&target));
    stream.shutdown().await.unwrap();

    // 127.<n>.1.7 is no workload; echo-1 is a workload, but on node-b.
    for stranger in [mesh.net.workload(7), mesh.net.workload(2)] {
        let (code, _) = socks_connect(stranger, explicit, dst).await;
        assert_eq!(code, SOCKS_NOT_ALLOWED, "SOCKS from {stranger}");
        let status = http_connect(stranger, explicit, dst).await;
        assert!(status.starts_with("HTTP/1.1 403"), "{stranger}: {status}");
    }
    assert!(
        !was_dialled(&target),
        "a stranger's destination is not dialled"
    );

    let (_, metrics) = page(mesh.a.addrs.metrics, "/metrics").await;
    let refused = metric_line(&metrics, "weft_explicit_proxy_unknown_source_total", "");
    assert!(refused.ends_with(" 4"), "{refused}");
}

#[tokio::test]
async fn explicit_port_never_reaches_loopback_services_or_proxy_ports() {
    let mesh = TwoNodes::start(&[]).await;
    let explicit = mesh.a.addrs.explicit.unwrap();
    let client = mesh.net.workload(1);
    // A control plane's admin port on the node's loopback network.
    let (control_admin, control_admin_addr) =
        listen_target(SocketAddr::new(IpAddr::V4(mesh.net.node(1)), 15014));
    let echo_hbone = SocketAddr::new(IpAddr::V4(mesh.net.workload(2)), HBONE_PORT);
    let forbidden = [
        control_admin_addr,
        mesh.a.addrs.admin.unwrap(),
        mesh.b.addrs.metrics.unwrap(),
        echo_hbone,
        // not proxy ports: refused for their host-local address alone
        "[::1]:8080".parse().unwrap(),
        SocketAddr::new(IpAddr::V6(mesh.net.node(1).to_ipv6_mapped()), 15014),
        "169.254.169.254:80".parse().unwrap(),
    ];
    for dst in forbidden {
        let (code, _) = socks_connect(client, explicit, dst).await;
        assert_eq!(code, SOCKS_NOT_ALLOWED, "SOCKS to {dst}");
        let status = http_connect(client, explicit, dst).await;
        assert!(status.starts_with("HTTP/1.1 403"), "{dst}: {status}");
    }
    assert!(!was_dialled(&control_admin), "control plane admin reached");

    let (code, mut stream) = mesh.socks_vip().await;
    assert_eq!(code, 0, "mesh addresses on loopback stay reachable");
    assert_eq!(ping(&mut stream, b"still").await, b"still");
    let (_, metrics) = page(mesh.a.addrs.metrics, "/metrics").await;
    let refused = metric_line(
        &metrics,
        "weft_explicit_proxy_forbidden_destination_total",
        "",
    );
    assert!(refused.ends_with(" 14"), "{refused}");
}

/// A service whose endpoint is on a host-local address (a ServiceEntry or WorkloadEntry
/// at `127.x` or `169.254.169.254`): the request names a mesh VIP, but the route would
/// lead plain TCP into the node or to its metadata service, so it is refused.
#[tokio::test]
async fn a_route_that_leads_into_the_node_is_refused_whatever_was_asked() {
    let net = Net::next();
    let ca = test_ca();
    let dir = tempfile::tempdir().unwrap();
    let (control_admin, control_admin_addr) =
        listen_target(SocketAddr::new(IpAddr::V4(net.node(1)), 0));
    let port = u32::from(control_admin_addr.port());
    let entry = |name: &str, ip: Ipv4Addr, key: &str, target: u32| {
        let record = weft_proto::workload::Workload {
            uid: format!("Kubernetes/networking.istio.io/WorkloadEntry/default/{name}"),
            node: String::new(),
            tunnel_protocol: weft_proto::workload::TunnelProtocol::None as i32,
            ..workload(name, "default", "default", ip, "")
        };
        with_service(record, key, 80, target)
    };
    let workloads = [
        workload("client-1", "default", "sleep", net.workload(1), "node-a"),
        entry(
            "admin",
            net.node(1),
            "default/admin.default.svc.cluster.local",
            port,
        ),
        entry(
            "metadata",
            Ipv4Addr::new(169, 254, 169, 254),
            "default/metadata.default.svc.cluster.local",
            80,
        ),
    ];
    let services = [
        service("admin", "default", net.vip(1), 80, port),
        service("metadata", "default", net.vip(2), 80, 80),
    ];
    let config = write_config(&dir, &workloads, &services, &[]);
    let node = start_node(&ca, "node-a", net.node(2), config).await;
    let explicit = node.addrs.explicit.unwrap();
    for vip in [net.vip(1), net.vip(2)] {
        let dst = SocketAddr::new(IpAddr::V4(vip), 80);
        let (code, _) = socks_connect(net.workload(1), explicit, dst).await;
        assert_eq!(code, SOCKS_NOT_ALLOWED, "SOCKS to {dst}");
    }
    assert!(
        !was_dialled(&control_admin),
        "the node's loopback service was reached"
    );
}
