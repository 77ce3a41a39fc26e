//! Bytes through SOCKS5 -> HBONE -> inbound -> workload and back.

use std::net::{IpAddr, SocketAddr};

use crate::harness::*;

/// Two nodes; client on node-a, echo server on node-b behind service VIP :80 -> 8080.
struct TwoNodes {
    net: Net,
    a: weft_node::process::RunningNode,
    _b: weft_node::process::RunningNode,
    _dir: tempfile::TempDir,
    _echo: tokio::task::JoinHandle<()>,
}

async fn two_nodes() -> TwoNodes {
    let net = Net::next();
    let ca = test_ca();
    let dir = tempfile::tempdir().unwrap();
    let client = workload("client-1", "default", "sleep", net.workload(1), "node-a");
    let server = with_service(
        workload("echo-1", "default", "echo", net.workload(2), "node-b"),
        "default/echo.default.svc.cluster.local",
        80,
        8080,
    );
    let svc = service("echo", "default", net.vip(1), 80, 8080);
    let config = write_config(&dir, &[client, server], &[svc], &[]);
    let echo = echo_server(SocketAddr::new(IpAddr::V4(net.workload(2)), 8080)).await;
    let a = start_node(&ca, "node-a", net.node(2), config.clone()).await;
    let b = start_node(&ca, "node-b", net.node(3), config).await;
    TwoNodes {
        net,
        a,
        _b: b,
        _dir: dir,
        _echo: echo,
    }
}

#[tokio::test]
async fn socks5_to_service_vip_carries_large_transfer_intact_with_half_close() {
    let mesh = two_nodes().await;
    let vip = SocketAddr::new(IpAddr::V4(mesh.net.vip(1)), 80);
    let (code, stream) =
        socks_connect(mesh.net.workload(1), mesh.a.addrs.explicit.unwrap(), vip).await;
    assert_eq!(code, 0, "SOCKS reply");
    let (sent, received, len) = transfer(stream, 8 * 1024 * 1024 + 17).await;
    assert_eq!(len, 8 * 1024 * 1024 + 17);
    assert_eq!(sent, received, "echoed bytes differ");
    assert_eq!(mesh.a.node.pool_stats().handshakes, 1);
}
