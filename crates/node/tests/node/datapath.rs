//! Bytes through SOCKS5 / HTTP CONNECT -> HBONE -> inbound -> workload and back, identity
//! on the server side, telemetry, passthrough.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::*;

#[tokio::test]
async fn socks5_to_service_vip_carries_large_transfer_intact_with_half_close() {
    let mesh = TwoNodes::start(&[]).await;
    let (code, stream) = mesh.socks_vip().await;
    assert_eq!(code, 0, "SOCKS reply");
    let len = 8 * 1024 * 1024 + 17;
    let (sent, received, got) = transfer(stream, len).await;
    assert_eq!(got, len);
    assert_eq!(sent, received, "echoed bytes differ");
    assert_eq!(mesh.a.node.pool_stats().handshakes, 1);
}

#[tokio::test]
async fn http_connect_and_socks_domain_reach_the_service() {
    let mesh = TwoNodes::start(&[]).await;
    let explicit = mesh.a.addrs.explicit.unwrap();
    let (code, mut stream) = socks_connect_domain(
        mesh.net.workload(1),
        explicit,
        "echo.default.svc.cluster.local",
        80,
    )
    .await;
    assert_eq!(code, 0);
    assert_eq!(ping(&mut stream, b"by name").await, b"by name");

    let (code, _) = socks_connect_domain(
        mesh.net.workload(1),
        explicit,
        "nope.default.svc.cluster.local",
        80,
    )
    .await;
    assert_eq!(code, 4, "unknown host -> host unreachable");

    let mut stream = connect_from(mesh.net.workload(1), explicit).await;
    let request = format!(
        "CONNECT {} HTTP/1.1\r\nHost: x\r\n\r\nearly",
        mesh.net.vip_addr()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    let mut rest = Vec::new();
    while !rest.ends_with(b"\r\n\r\n") {
        rest.push(stream.read_u8().await.unwrap());
    }
    let mut early = [0u8; 5];
    stream.read_exact(&mut early).await.unwrap();
    assert_eq!(
        &early, b"early",
        "bytes sent with the CONNECT head are forwarded"
    );
    assert_eq!(ping(&mut stream, b"after").await, b"after");

    let mut get = connect_from(mesh.net.workload(1), explicit).await;
    get.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let mut answer = String::new();
    get.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
}

#[tokio::test]
async fn server_side_sees_client_identity_in_connections_metrics_and_access_log() {
    let mesh = TwoNodes::start(&[]).await;
    let (code, mut stream) = mesh.socks_vip().await;
    assert_eq!(code, 0);
    assert_eq!(ping(&mut stream, b"hello").await, b"hello");

    let (status, body) = page(mesh.b.addrs.admin, "/connections").await;
    assert_eq!(status, 200);
    let conns: serde_json::Value = serde_json::from_str(&body).unwrap();
    let inbound = &conns[0];
    assert_eq!(inbound["direction"], "inbound_hbone", "{body}");
    assert_eq!(inbound["src_identity"], CLIENT_ID, "{body}");
    assert_eq!(inbound["dst_addr"], mesh.net.echo_addr().to_string());
    assert_eq!(
        inbound["src_addr"]
            .as_str()
            .unwrap()
            .split(':')
            .next()
            .unwrap(),
        mesh.net.workload(1).to_string(),
        "original source from `forwarded`"
    );

    drop(stream);
    eventually("connection closed on node-b", || async {
        mesh.b.node.connections().is_empty()
    })
    .await;

    let (_, metrics) = page(mesh.b.addrs.metrics, "/metrics").await;
    let opened = metric_line(
        &metrics,
        "istio_tcp_connections_opened_total",
        "reporter=\"destination\"",
    );
    for label in [
        format!("source_principal=\"{CLIENT_ID}\""),
        format!("destination_principal=\"{ECHO_ID}\""),
        "source_workload=\"client-1\"".to_owned(),
        "destination_workload=\"echo-1\"".to_owned(),
        "connection_security_policy=\"mutual_tls\"".to_owned(),
    ] {
        assert!(opened.contains(&label), "missing {label} in {opened}");
    }
    assert!(opened.ends_with(" 1"), "{opened}");
    let received = metric_line(
        &metrics,
        "istio_tcp_received_bytes_total",
        "reporter=\"destination\"",
    );
    assert!(received.ends_with(" 5"), "{received}");

    let (_, metrics) = page(mesh.a.addrs.metrics, "/metrics").await;
    let opened = metric_line(
        &metrics,
        "istio_tcp_connections_opened_total",
        "reporter=\"source\"",
    );
    assert!(
        opened.contains("destination_service=\"echo.default.svc.cluster.local\""),
        "{opened}"
    );
    assert!(
        metrics.contains("weft_hbone_pool_handshakes_total 1"),
        "{metrics}"
    );
    assert!(metrics.contains("process_open_fds"), "process metrics");

    let echo = mesh.net.echo_addr().to_string();
    eventually("access log lines from both sides", || async {
        let lines = access_log_lines(&format!("dst.addr={echo}"));
        lines.iter().any(|l| l.contains("reporter=source"))
            && lines.iter().any(|l| l.contains("reporter=destination"))
    })
    .await;
    let lines = access_log_lines(&format!("dst.addr={echo}"));
    let server = lines
        .iter()
        .find(|l| l.contains("reporter=destination"))
        .unwrap();
    for field in [
        format!("src.identity={CLIENT_ID}"),
        "dst.workload=default/echo-1".into(),
        "bytes_sent=5".into(),
        "bytes_received=5".into(),
        "result=ok".into(),
    ] {
        assert!(server.contains(&field), "missing {field} in {server}");
    }
    let client = lines
        .iter()
        .find(|l| l.contains("reporter=source"))
        .unwrap();
    assert!(
        client.contains("dst.service=echo.default.svc.cluster.local"),
        "{client}"
    );
    assert!(
        client.contains(&format!(
            "dst.hbone_addr={}:{HBONE_PORT}",
            mesh.net.workload(2)
        )),
        "{client}"
    );
}

#[tokio::test]
async fn destination_outside_the_mesh_is_passed_through_as_plain_tcp() {
    let mesh = TwoNodes::start(&[]).await;
    let outside = mesh.net.plain_addr(7000);
    let _echo = echo_server(outside).await;
    let (code, mut stream) = mesh.socks(outside).await;
    assert_eq!(code, 0);
    assert_eq!(ping(&mut stream, b"plain").await, b"plain");
    assert_eq!(
        mesh.a.node.pool_stats().handshakes,
        0,
        "no tunnel for a non-mesh destination"
    );

    let closed = mesh.net.plain_addr(7001);
    let (code, _) = mesh.socks(closed).await;
    assert_eq!(code, 5, "refused destination -> SOCKS connection refused");
}

#[tokio::test]
async fn metrics_page_gives_the_expiry_of_every_workload_certificate_held() {
    let mesh = TwoNodes::start(&[]).await;
    let (_, certs) = page(mesh.b.addrs.admin, "/certs").await;
    let certs: serde_json::Value = serde_json::from_str(&certs).unwrap();
    let echo = certs["identities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["identity"] == ECHO_ID)
        .unwrap_or_else(|| panic!("node-b holds echo's certificate: {certs}"));
    let (status, metrics) = page(mesh.b.addrs.metrics, "/metrics").await;
    assert_eq!(status, 200);
    let identity = format!("identity=\"{ECHO_ID}\"");
    for (name, field) in [
        (
            "weft_certificate_expiry_timestamp_seconds",
            "not_after_unix",
        ),
        (
            "weft_certificate_not_before_timestamp_seconds",
            "not_before_unix",
        ),
    ] {
        let line = metric_line(&metrics, &format!("{name}{{"), &identity);
        let value: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert_eq!(
            value,
            echo[field].as_u64().unwrap(),
            "{line} against {echo}"
        );
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(echo["not_after_unix"].as_u64().unwrap() > now, "{echo}");
    assert!(
        !metrics.contains(CLIENT_ID),
        "node-b holds no certificate of node-a's workload:\n{metrics}"
    );
}

/// The sample line of `name` whose labels contain `filter`.
pub fn metric_line(metrics: &str, name: &str, filter: &str) -> String {
    metrics
        .lines()
        .find(|l| l.starts_with(name) && l.contains(filter))
        .unwrap_or_else(|| panic!("no {name} with {filter} in\n{metrics}"))
        .to_owned()
}
