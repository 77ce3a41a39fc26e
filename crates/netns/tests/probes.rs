//! The kubelet probe source NAT (root; fails, never skips, without root, `ip` or `nft`):
//! the node's own connections to a captured pod reach the workload from the link-local
//! probe source, past the pod's redirect; nothing else does.

mod common;

use common::{Greeter, addr, captured_pair, pod, read_all, require_privileges, unique_prefix};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use weft_netns::{
    CaptureConfig, PROBE_SOURCE_V4, PROBES_TABLE, SocketOptions, connect_in, install_capture,
    open_listener_in, remove_probe_snat, sync_probe_snat,
};

#[test]
fn the_nodes_own_connections_to_a_captured_pod_reach_it_directly_from_the_probe_source() {
    let (cluster, _dir) = captured_pair("workload", "caller");
    let (workload, caller) = (pod(&cluster, "workload"), pod(&cluster, "caller"));
    let node = cluster.node("a").expect("node a");
    let other_node = cluster.node("b").expect("node b");
    let (ns, node_ns) = (workload.netns.path(), node.netns.path());
    let exempting = CaptureConfig {
        exempt_probe_source: true,
        ..CaptureConfig::default()
    };
    install_capture(&ns, &exempting).expect("capture with the probe exemption");
    let app = Greeter::start(
        open_listener_in(&ns, addr(Ipv4Addr::UNSPECIFIED, 8080)).unwrap(),
        "workload",
    );
    let proxy = open_listener_in(&ns, addr(Ipv4Addr::UNSPECIFIED, exempting.inbound_port)).unwrap();
    let probed = [IpAddr::V4(workload.ip)];
    sync_probe_snat(&node_ns, &probed).expect("probe table");
    sync_probe_snat(&node_ns, &probed).expect("probe table again (idempotent)");
    let connect = |from: &std::path::Path| {
        connect_in(from, addr(workload.ip, 8080), SocketOptions::default()).expect("connect")
    };
    let redirected_from = |stream: TcpStream| {
        let (accepted, from) = proxy.accept().expect("the proxy gets the connection");
        drop((accepted, stream));
        from.ip()
    };

    // The node's own connection (the kubelet's probe) skips the proxy, as 169.254.7.127.
    let reply = read_all(connect(&node_ns));
    assert!(
        reply.starts_with(&format!("workload {PROBE_SOURCE_V4}:")),
        "{reply}"
    );
    // Connections the node only forwards keep their source and are captured.
    let from_pod = redirected_from(connect(&caller.netns.path()));
    assert_eq!(from_pod, IpAddr::V4(caller.ip));
    let from_other_node = redirected_from(connect(&other_node.netns.path()));
    assert_eq!(from_other_node, IpAddr::V4(other_node.underlay_ip));

    // A pod the node does not list is captured for the node too, with the node's address.
    sync_probe_snat(&node_ns, &[]).expect("empty the set");
    assert_eq!(redirected_from(connect(&node_ns)), IpAddr::V4(node.gateway));

    // The source NAT alone does not pass the redirect: the pod must exempt the source.
    sync_probe_snat(&node_ns, &probed).expect("probe table");
    install_capture(&ns, &CaptureConfig::default()).expect("capture without exemption");
    assert_eq!(
        redirected_from(connect(&node_ns)),
        IpAddr::V4(PROBE_SOURCE_V4)
    );

    remove_probe_snat(&node_ns).expect("remove");
    remove_probe_snat(&node_ns).expect("remove again");
    let tables = weft_netns::run_in_netns(&node_ns, || {
        std::process::Command::new("nft")
            .args(["list", "tables"])
            .output()
    })
    .unwrap()
    .unwrap();
    let tables = String::from_utf8_lossy(&tables.stdout).into_owned();
    assert!(!tables.contains(PROBES_TABLE), "{tables}");
    assert_eq!(
        app.stop().len(),
        1,
        "only the node's probe reached the workload"
    );
}

/// Namespaces removed when the test ends, however it ends.
struct Scratch(Vec<weft_netns::NetNs>);

impl Drop for Scratch {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = ns.destroy();
        }
    }
}

#[test]
fn the_nodes_own_ipv6_connections_to_a_captured_pod_come_from_the_ipv6_probe_source() {
    require_privileges();
    let prefix = unique_prefix();
    let node = weft_netns::NetNs::create(&format!("{prefix}-node")).expect("node namespace");
    let pod = weft_netns::NetNs::create(&format!("{prefix}-pod")).expect("pod namespace");
    let scratch = Scratch(vec![node, pod]);
    let (node, pod) = (&scratch.0[0], &scratch.0[1]);
    let (node_ip, pod_ip) = ("fd00:7127::1", "fd00:7127::2");
    node.ip(&[
        "link",
        "add",
        "eth-pod",
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        pod.name(),
    ])
    .expect("veth pair");
    node.ip(&[
        "addr",
        "add",
        &format!("{node_ip}/64"),
        "dev",
        "eth-pod",
        "nodad",
    ])
    .unwrap();
    node.ip(&["link", "set", "eth-pod", "up"]).unwrap();
    pod.ip(&[
        "addr",
        "add",
        &format!("{pod_ip}/64"),
        "dev",
        "eth0",
        "nodad",
    ])
    .unwrap();
    pod.ip(&["link", "set", "eth0", "up"]).unwrap();
    pod.ip(&["-6", "route", "add", "default", "via", node_ip])
        .unwrap();

    let exempting = CaptureConfig {
        exempt_probe_source: true,
        ..CaptureConfig::default()
    };
    install_capture(&pod.path(), &exempting).expect("capture with the probe exemption");
    let any = |port| SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port));
    let app = Greeter::start(
        open_listener_in(&pod.path(), any(8080)).unwrap(),
        "workload",
    );
    let _proxy = open_listener_in(&pod.path(), any(exempting.inbound_port)).unwrap();
    let pod_addr: std::net::Ipv6Addr = pod_ip.parse().unwrap();
    sync_probe_snat(&node.path(), &[IpAddr::V6(pod_addr)]).expect("probe table");

    let probe = connect_in(
        &node.path(),
        SocketAddr::from((pod_addr, 8080)),
        SocketOptions::default(),
    )
    .expect("connect from the node");
    let reply = read_all(probe);
    assert!(
        reply.starts_with(&format!("workload [{}]:", weft_netns::PROBE_SOURCE_V6)),
        "{reply}"
    );
    assert_eq!(app.stop().len(), 1);
}
