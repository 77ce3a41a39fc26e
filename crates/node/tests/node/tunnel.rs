//! HBONE pool behaviour, peer verification, and malformed requests to the inbound listener.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weft_identity::{CertManager, CertManagerConfig, LocalCaProvider, SpiffeId};

use crate::harness::*;

#[tokio::test]
async fn two_hundred_sequential_connections_share_one_tls_handshake() {
    let mesh = TwoNodes::start(&[]).await;
    for i in 0..200u32 {
        let (code, mut stream) = mesh.socks_vip().await;
        assert_eq!(code, 0, "connection {i}");
        let msg = i.to_be_bytes();
        assert_eq!(ping(&mut stream, &msg).await, msg);
    }
    let stats = mesh.a.node.pool_stats();
    assert_eq!(stats.handshakes, 1, "{stats:?}");
    assert_eq!(stats.streams_opened, 200, "{stats:?}");
    let (_, pool) = page(mesh.a.addrs.admin, "/pool").await;
    assert!(pool.contains("\"handshakes\": 1"), "{pool}");
}

#[tokio::test]
async fn streams_over_the_cap_open_a_second_connection() {
    let mesh = TwoNodes::start_with(&[], |o| o.pool.max_streams_per_connection = 2).await;
    let mut open = Vec::new();
    for i in 0..3u8 {
        let (code, mut stream) = mesh.socks_vip().await;
        assert_eq!(code, 0);
        assert_eq!(ping(&mut stream, &[i]).await, [i]);
        open.push(stream);
    }
    let stats = mesh.a.node.pool_stats();
    assert_eq!(stats.handshakes, 2, "{stats:?}");
    assert_eq!(stats.connections_open, 2, "{stats:?}");
}

#[tokio::test]
async fn peer_with_a_cert_from_another_root_is_refused() {
    let net = Net::next();
    let dir = tempfile::tempdir().unwrap();
    let (workloads, services) = TwoNodes::resources(net);
    let config = write_config(&dir, &workloads, &services, &[]);
    let _echo = echo_server(net.echo_addr()).await;
    let a = start_node(&test_ca(), "node-a", net.node(2), config.clone()).await;
    let _b = start_node(&test_ca(), "node-b", net.node(3), config).await;
    let (code, _) = socks_connect(net.workload(1), a.addrs.explicit.unwrap(), net.vip_addr()).await;
    assert_eq!(code, 5, "untrusted peer -> SOCKS connection refused");
    assert_eq!(a.node.pool_stats().handshake_failures, 1);
}

#[tokio::test]
async fn peer_presenting_an_unexpected_identity_is_refused() {
    let net = Net::next();
    let ca = test_ca();
    let dir = tempfile::tempdir().unwrap();
    let (workloads, services) = TwoNodes::resources(net);
    let client_view = write_config(&dir, &workloads, &services, &[]);
    let mut impostor = workloads.clone();
    impostor[1].service_account = "impostor".into();
    let server_view = write_config(&dir, &impostor, &services, &[]);
    let _echo = echo_server(net.echo_addr()).await;
    let a = start_node(&ca, "node-a", net.node(2), client_view).await;
    let _b = start_node(&ca, "node-b", net.node(3), server_view).await;
    let (code, _) = socks_connect(net.workload(1), a.addrs.explicit.unwrap(), net.vip_addr()).await;
    assert_eq!(code, 5, "wrong SAN -> refused");
    assert_eq!(a.node.pool_stats().handshake_failures, 1);
}

#[derive(Debug)]
struct NoClientCert;

impl rustls::client::ResolvesClientCert for NoClientCert {
    fn resolve(
        &self,
        _: &[&[u8]],
        _: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        None
    }
    fn has_certs(&self) -> bool {
        false
    }
}

/// A raw TLS + HTTP/2 client to node-b's listener for the echo workload.
async fn raw_h2(
    mesh: &TwoNodes,
    with_client_cert: bool,
) -> Result<h2::client::SendRequest<Bytes>, String> {
    raw_h2_as(
        mesh,
        "cluster.local/ns/default/sa/tester",
        with_client_cert,
        None,
    )
    .await
}

/// [`raw_h2`] with a certificate for `principal`, its TCP connection bound to `source`.
async fn raw_h2_as(
    mesh: &TwoNodes,
    principal: &str,
    with_client_cert: bool,
    source: Option<std::net::Ipv4Addr>,
) -> Result<h2::client::SendRequest<Bytes>, String> {
    let id = SpiffeId::from_principal(principal).unwrap();
    let manager = CertManager::new(
        Arc::new(LocalCaProvider::new(Arc::clone(&mesh.ca))),
        CertManagerConfig::default(),
    );
    let cert = manager.get(&id).await.unwrap();
    let mut config = (*weft_identity::client_config(
        &cert,
        &trust(&mesh.ca),
        [SpiffeId::from_principal("cluster.local/ns/default/sa/echo").unwrap()],
    )
    .unwrap())
    .clone();
    if !with_client_cert {
        config.client_auth_cert_resolver = Arc::new(NoClientCert);
    }
    let listener = SocketAddr::new(IpAddr::V4(mesh.net.workload(2)), HBONE_PORT);
    let tcp = match source {
        Some(source) => connect_from(source, listener).await,
        None => TcpStream::connect(listener)
            .await
            .map_err(|e| e.to_string())?,
    };
    let name = ServerName::IpAddress(IpAddr::V4(mesh.net.workload(2)).into());
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (send, conn) = h2::client::handshake(tls)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    send.ready().await.map_err(|e| e.to_string())
}

async fn status_of(send: &mut h2::client::SendRequest<Bytes>, method: Method, uri: &str) -> u16 {
    let request = Request::builder().method(method).uri(uri).body(()).unwrap();
    status_of_request(send, request).await
}

async fn status_of_request(send: &mut h2::client::SendRequest<Bytes>, request: Request<()>) -> u16 {
    let (response, _stream) = send.send_request(request, false).unwrap();
    tokio::time::timeout(WAIT, response)
        .await
        .expect("answer in time")
        .expect("response")
        .status()
        .as_u16()
}

/// The status of a CONNECT to the echo workload carrying `forwarded: for=<claimed>`.
async fn connect_claiming(
    send: &mut h2::client::SendRequest<Bytes>,
    echo: SocketAddr,
    claimed: IpAddr,
) -> u16 {
    let request = Request::builder()
        .method(Method::CONNECT)
        .uri(echo.to_string())
        .header("forwarded", format!("for={claimed}"))
        .body(())
        .unwrap();
    status_of_request(send, request).await
}

#[tokio::test]
async fn forwarded_cannot_claim_a_source_address_the_client_does_not_hold() {
    let net = Net::next();
    let client_ip = IpAddr::V4(net.workload(1));
    let allow_client_ip = policy(
        "allow-client-ip",
        "default",
        weft_proto::security::Action::Allow,
        vec![weft_proto::security::Match {
            source_ips: vec![weft_proto::security::Address {
                address: net.workload(1).octets().to_vec(),
                length: 32,
            }],
            ..Default::default()
        }],
    );
    let mesh = TwoNodes::start_on(net, &[allow_client_ip]).await;
    let sleep = CLIENT_ID.trim_start_matches("spiffe://");
    let echo = net.echo_addr();

    // Another mesh identity, not a workload at that address: the claim is ignored.
    let mut stranger = raw_h2_as(&mesh, "cluster.local/ns/default/sa/tester", true, None)
        .await
        .expect("mTLS");
    assert_eq!(connect_claiming(&mut stranger, echo, client_ip).await, 401);

    // A node proxy holding client-1's identity speaks for client-1's address (explicit mode).
    let mut proxy = raw_h2_as(&mesh, sleep, true, None).await.expect("mTLS");
    assert_eq!(connect_claiming(&mut proxy, echo, client_ip).await, 200);

    // From client-1's own address (in-pod mode) the TCP source wins over the header, both ways.
    let mut in_pod = raw_h2_as(&mesh, sleep, true, Some(net.workload(1)))
        .await
        .expect("mTLS");
    assert_eq!(
        connect_claiming(&mut in_pod, echo, IpAddr::V4(net.vip(9))).await,
        200
    );
    let mut echo_pod = raw_h2_as(
        &mesh,
        ECHO_ID.trim_start_matches("spiffe://"),
        true,
        Some(net.workload(2)),
    )
    .await
    .expect("mTLS");
    assert_eq!(connect_claiming(&mut echo_pod, echo, client_ip).await, 401);
}

#[tokio::test]
async fn malformed_hbone_gets_an_error_status_or_a_closed_connection_and_the_proxy_keeps_serving() {
    let mesh = TwoNodes::start(&[]).await;
    let mut send = raw_h2(&mesh, true)
        .await
        .expect("mTLS + h2 with a mesh cert");
    let echo = mesh.net.echo_addr();
    assert_eq!(
        status_of(&mut send, Method::GET, &format!("http://{echo}/")).await,
        400,
        "not CONNECT"
    );
    assert_eq!(
        status_of(&mut send, Method::CONNECT, "echo.default:8080").await,
        400,
        "authority not ip:port"
    );
    let remote = SocketAddr::new(IpAddr::V4(mesh.net.workload(1)), 8080);
    assert_eq!(
        status_of(&mut send, Method::CONNECT, &remote.to_string()).await,
        400,
        "workload on another node"
    );
    let closed = SocketAddr::new(echo.ip(), 9);
    assert_eq!(
        status_of(&mut send, Method::CONNECT, &closed.to_string()).await,
        503,
        "workload port closed"
    );
    assert_eq!(
        status_of(&mut send, Method::CONNECT, &echo.to_string()).await,
        200,
        "valid CONNECT"
    );

    // TLS 1.3: the client may finish its handshake before the server checks the (absent)
    // certificate, so the refusal shows on the first request at the latest.
    if let Ok(mut no_cert) = raw_h2(&mesh, false).await {
        let request = Request::builder()
            .method(Method::CONNECT)
            .uri(echo.to_string())
            .body(())
            .unwrap();
        let answered = match no_cert.send_request(request, false) {
            Ok((response, _)) => tokio::time::timeout(WAIT, response)
                .await
                .expect("refused in time")
                .ok(),
            Err(_) => None,
        };
        assert!(
            answered.is_none(),
            "a client without certificate got an answer: {answered:?}"
        );
    }

    let mut garbage = TcpStream::connect(SocketAddr::new(echo.ip(), HBONE_PORT))
        .await
        .unwrap();
    garbage
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n\x00\x01garbage")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(WAIT, async {
        loop {
            match garbage.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(read.is_ok(), "garbage connection closed in time");

    let (code, mut stream) = mesh.socks_vip().await;
    assert_eq!(code, 0, "proxy still serves");
    assert_eq!(ping(&mut stream, b"still").await, b"still");
}

#[tokio::test]
async fn hbone_connect_to_a_port_of_the_proxy_itself_is_a_bad_request_and_dials_nothing() {
    let mesh = TwoNodes::start(&[]).await;
    let mut send = raw_h2(&mesh, true).await.expect("mTLS + h2");
    let echo_ip = mesh.net.echo_addr().ip();
    // 15008 is node-b's own HBONE listener on the echo address: dialled, it would answer.
    for port in [HBONE_PORT, 15006, 15001] {
        let own = SocketAddr::new(echo_ip, port);
        assert_eq!(
            status_of(&mut send, Method::CONNECT, &own.to_string()).await,
            400,
            "self-call to {own}"
        );
        let open = mesh.b.node.connections();
        assert!(open.is_empty(), "{own} was dialled: {open:?}");
    }
    assert_eq!(
        status_of(
            &mut send,
            Method::CONNECT,
            &mesh.net.echo_addr().to_string()
        )
        .await,
        200,
        "the workload's own port still works"
    );
}
