//! One test per listener behaviour.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use weft_proto::l7::{self as pb, listener::Protocol, listener::TlsMode};

use crate::harness::{
    Fixture, Net, ServiceSpec, backend, certificate, eventually, gateway_resource, l4_route, until,
};
use crate::pki::{self, TestCa};

pub const HTTPS: u16 = 8443;

pub fn https_listener(name: &str, hostname: &str, leaf: &pki::Leaf) -> pb::Listener {
    pb::Listener {
        name: name.into(),
        port: u32::from(HTTPS),
        protocol: Protocol::Https.into(),
        hostname: hostname.into(),
        certificates: vec![certificate(name, leaf)],
        ..Default::default()
    }
}

/// A TLS connection to `addr` naming `sni` (an IP address: no SNI) trusting `ca`.
async fn connect(
    addr: SocketAddr,
    sni: &str,
    ca: &TestCa,
    alpn: &[&str],
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(sni.to_owned()).expect("server name");
    TlsConnector::from(ca.client_config(alpn))
        .connect(name, tcp)
        .await
}

/// The CN of the certificate a handshake naming `sni` is shown.
async fn served_cn(addr: SocketAddr, sni: &str, ca: &TestCa) -> String {
    let tls = connect(addr, sni, ca, &["http/1.1"])
        .await
        .expect("handshake");
    let certs = tls.get_ref().1.peer_certificates().expect("certificate");
    pki::peer_common_name(certs)
}

fn get(host: &str) -> Request<Empty<Bytes>> {
    Request::get("/x")
        .header("host", host)
        .body(Empty::new())
        .unwrap()
}

#[tokio::test]
async fn sni_chooses_exact_then_wildcard_then_the_default_certificate() {
    let net = Net(weft_testkit::loopback_net());
    let ca = TestCa::new("gateway CA");
    let resource = gateway_resource(vec![
        https_listener("default", "", &ca.leaf(&["default.test"])),
        https_listener("wild", "*.example.com", &ca.leaf(&["*.example.com"])),
        https_listener("www", "www.example.com", &ca.leaf(&["www.example.com"])),
    ]);
    let fixture = Fixture::start(net, &[], &resource).await;
    let addr = net.gateway(HTTPS);
    assert_eq!(
        served_cn(addr, "www.example.com", &ca).await,
        "www.example.com"
    );
    assert_eq!(
        served_cn(addr, "shop.example.com", &ca).await,
        "*.example.com"
    );
    assert_eq!(served_cn(addr, "default.test", &ca).await, "default.test");
    // No SNI (an IP address is never sent as a server name): the listener without hostname.
    let tls = connect_without_sni(addr, &ca, &[]).await.unwrap();
    let cn = pki::peer_common_name(tls.get_ref().1.peer_certificates().unwrap());
    assert_eq!(cn, "default.test");
    drop(fixture);
}

#[tokio::test]
async fn alpn_h2_serves_http2_over_tls() {
    let net = Net(weft_testkit::loopback_net());
    let ca = TestCa::new("gateway CA");
    let resource = gateway_resource(vec![https_listener(
        "web",
        "web.example.com",
        &ca.leaf(&["web.example.com"]),
    )]);
    let _fixture = Fixture::start(net, &[], &resource).await;
    let tls = connect(
        net.gateway(HTTPS),
        "web.example.com",
        &ca,
        &["h2", "http/1.1"],
    )
    .await
    .expect("handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .expect("HTTP/2 over TLS");
    tokio::spawn(connection);
    let response = sender
        .send_request(get("web.example.com"))
        .await
        .expect("response");
    assert_eq!(response.version(), http::Version::HTTP_2);
}

#[tokio::test]
async fn a_host_of_another_listener_than_the_sni_gets_421() {
    let net = Net(weft_testkit::loopback_net());
    let ca = TestCa::new("gateway CA");
    let resource = gateway_resource(vec![
        https_listener("a", "a.example.com", &ca.leaf(&["a.example.com"])),
        https_listener("b", "b.example.com", &ca.leaf(&["b.example.com"])),
    ]);
    let _fixture = Fixture::start(net, &[], &resource).await;
    let tls = connect(net.gateway(HTTPS), "a.example.com", &ca, &["http/1.1"])
        .await
        .expect("handshake");
    assert_eq!(
        http1_status(tls, "b.example.com").await,
        StatusCode::MISDIRECTED_REQUEST
    );
}

#[tokio::test]
async fn passthrough_reaches_the_backend_chosen_by_sni() {
    let net = Net(weft_testkit::loopback_net());
    let backend_ca = TestCa::new("backend CA");
    let mut stops = Vec::new();
    for (n, name) in [(1, "a.example.com"), (2, "b.example.com")] {
        let config = pki::server_config(&backend_ca.leaf(&[name]));
        let label = if n == 1 { "a" } else { "b" };
        let (_, stop) = pki::tls_echo(net.backend(n, 9443), label, config).await;
        stops.push(stop.drop_guard());
    }
    let services = [
        ServiceSpec {
            name: "a",
            n: 1,
            port: 9443,
        },
        ServiceSpec {
            name: "b",
            n: 2,
            port: 9443,
        },
    ];
    let listener = pb::Listener {
        name: "tls".into(),
        port: u32::from(HTTPS),
        protocol: Protocol::Tls.into(),
        tls_mode: TlsMode::Passthrough.into(),
        hostname: "*.example.com".into(),
        l4_routes: vec![
            l4_route("to-a", &["a.example.com"], vec![backend("a", 9443)]),
            l4_route("to-b", &["b.example.com"], vec![backend("b", 9443)]),
        ],
        ..Default::default()
    };
    let _fixture = Fixture::start(net, &services, &gateway_resource(vec![listener])).await;
    for (sni, label) in [("a.example.com", "a"), ("b.example.com", "b")] {
        let ca = &backend_ca;
        let answer = until("the backends reach the gateway", || async move {
            let tls = connect(net.gateway(HTTPS), sni, ca, &["http/1.1"])
                .await
                .ok()?;
            // The backend's own certificate, not one of the gateway's.
            let cn = pki::peer_common_name(tls.get_ref().1.peer_certificates().unwrap());
            assert_eq!(cn, sni);
            Some(http1_get(tls, sni).await)
        })
        .await;
        assert_eq!(answer, format!("{label} http/1.1 /x"));
    }
    // A name the listener takes but no TLSRoute does: closed, never another backend.
    let unrouted = connect(net.gateway(HTTPS), "c.example.com", &backend_ca, &[]).await;
    assert!(
        unrouted.is_err(),
        "a connection without TLSRoute was relayed"
    );
}

#[tokio::test]
async fn tcp_routes_relay_bytes() {
    let net = Net(weft_testkit::loopback_net());
    let (_, _echo) = weft_testkit::tcp_echo(net.backend(1, 7000)).await;
    let services = [ServiceSpec {
        name: "echo",
        n: 1,
        port: 7000,
    }];
    let listener = pb::Listener {
        name: "tcp".into(),
        port: 7001,
        protocol: Protocol::Tcp.into(),
        l4_routes: vec![l4_route("echo", &[], vec![backend("echo", 7000)])],
        ..Default::default()
    };
    let fixture = Fixture::start(net, &services, &gateway_resource(vec![listener])).await;
    eventually("bytes come back", || async {
        let Ok(mut stream) = TcpStream::connect(net.gateway(7001)).await else {
            return false;
        };
        stream.write_all(b"ping over tcp").await.unwrap();
        stream.shutdown().await.unwrap();
        let mut back = Vec::new();
        let _ = stream.read_to_end(&mut back).await;
        back == b"ping over tcp"
    })
    .await;
    // Counted as the mesh client of the backend.
    let metrics = fixture.gateway.metrics.expect("metrics").to_string();
    eventually("the closed connection is counted", || async {
        let (_, body) = weft_serve::get(&metrics, "/metrics").await.expect("scrape");
        String::from_utf8_lossy(&body).lines().any(|line| {
            line.starts_with("istio_tcp_connections_closed_total{")
                && line.contains("reporter=\"source\"")
                && line.contains("destination_service=\"echo.ns.svc.cluster.local\"")
        })
    })
    .await;
}

#[tokio::test]
async fn a_listener_with_a_broken_certificate_closes_and_the_others_serve() {
    let net = Net(weft_testkit::loopback_net());
    let ca = TestCa::new("gateway CA");
    let mut broken = https_listener(
        "broken",
        "shop.example.com",
        &ca.leaf(&["shop.example.com"]),
    );
    broken.certificates[0].private_key =
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".into();
    let resource = gateway_resource(vec![
        https_listener("wild", "*.example.com", &ca.leaf(&["*.example.com"])),
        broken,
    ]);
    let fixture = Fixture::start(net, &[], &resource).await;
    let errors = fixture.gateway.gateway.config().tls.errors().to_vec();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("broken") && errors[0].contains("ns/broken"),
        "{errors:?}"
    );
    let addr = net.gateway(HTTPS);
    // Never the wildcard listener's certificate for the broken listener's name.
    assert!(connect(addr, "shop.example.com", &ca, &[]).await.is_err());
    assert_eq!(
        served_cn(addr, "www.example.com", &ca).await,
        "*.example.com"
    );
}

/// The control plane sends a listener it cannot serve (its certificate Secret is gone, or
/// not granted) without certificates: its hostname closes, and a Host naming it over the
/// wildcard listener's session gets 421, rather than the wildcard answering for it.
#[tokio::test]
async fn a_listener_sent_without_certificates_keeps_its_hostname_from_the_wildcard() {
    let net = Net(weft_testkit::loopback_net());
    let ca = TestCa::new("gateway CA");
    let mut admin = https_listener(
        "admin",
        "admin.example.com",
        &ca.leaf(&["admin.example.com"]),
    );
    admin.certificates.clear();
    let resource = gateway_resource(vec![
        https_listener("wild", "*.example.com", &ca.leaf(&["*.example.com"])),
        admin,
    ]);
    let _fixture = Fixture::start(net, &[], &resource).await;
    let addr = net.gateway(HTTPS);
    assert!(connect(addr, "admin.example.com", &ca, &[]).await.is_err());
    let tls = connect(addr, "shop.example.com", &ca, &["http/1.1"])
        .await
        .expect("handshake");
    assert_eq!(
        http1_status(tls, "admin.example.com").await,
        StatusCode::MISDIRECTED_REQUEST
    );
}

/// A client naming no server (SNI) reaches only a listener without hostname; when every
/// listener of the port names one, the connection is closed (it used to get the first).
#[tokio::test]
async fn a_client_without_sni_is_closed_when_every_listener_names_a_host() {
    let net = Net(weft_testkit::loopback_net());
    let ca = TestCa::new("gateway CA");
    let resource = gateway_resource(vec![
        https_listener("a", "a.example.com", &ca.leaf(&["a.example.com"])),
        https_listener("b", "b.example.com", &ca.leaf(&["b.example.com"])),
    ]);
    let _fixture = Fixture::start(net, &[], &resource).await;
    let addr = net.gateway(HTTPS);
    let handshake = connect_without_sni(addr, &ca, &[]).await;
    assert!(handshake.is_err(), "no listener for a client without SNI");
    assert_eq!(served_cn(addr, "b.example.com", &ca).await, "b.example.com");
}

/// A client without SNI is served by the listener without hostname, and only that one:
/// a Host naming another listener of the port is misdirected (421), as with SNI.
#[tokio::test]
async fn without_sni_a_host_of_a_named_listener_gets_421() {
    let net = Net(weft_testkit::loopback_net());
    let ca = TestCa::new("gateway CA");
    let resource = gateway_resource(vec![
        https_listener("default", "", &ca.leaf(&["default.test"])),
        https_listener("a", "a.example.com", &ca.leaf(&["a.example.com"])),
    ]);
    let _fixture = Fixture::start(net, &[], &resource).await;
    let addr = net.gateway(HTTPS);
    let tls = connect_without_sni(addr, &ca, &["http/1.1"])
        .await
        .expect("the listener without hostname");
    assert_eq!(
        http1_status(tls, "a.example.com").await,
        StatusCode::MISDIRECTED_REQUEST
    );
}

#[tokio::test]
async fn a_new_certificate_serves_new_handshakes_and_open_connections_stay() {
    let net = Net(weft_testkit::loopback_net());
    let ca = TestCa::new("gateway CA");
    let first = ca.leaf(&["web.example.com", "first.test"]);
    let second = ca.leaf(&["web.example.com", "second.test"]);
    let resource = gateway_resource(vec![https_listener("web", "web.example.com", &first)]);
    let fixture = Fixture::start(net, &[], &resource).await;
    let addr = net.gateway(HTTPS);
    let open = connect(addr, "web.example.com", &ca, &["http/1.1"])
        .await
        .unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(open))
        .await
        .unwrap();
    tokio::spawn(connection);
    let before = sender.send_request(get("web.example.com")).await.unwrap();
    let _ = before.into_body().collect().await;

    fixture.update(&gateway_resource(vec![https_listener(
        "web",
        "web.example.com",
        &second,
    )]));
    eventually("new handshakes see the new certificate", || async {
        let tls = connect(addr, "web.example.com", &ca, &[]).await.unwrap();
        let der = &tls.get_ref().1.peer_certificates().unwrap()[0];
        der_names(der).contains(&"second.test".to_owned())
    })
    .await;
    sender
        .ready()
        .await
        .expect("the open connection is still up");
    let after = sender.send_request(get("web.example.com")).await;
    assert!(
        after.is_ok(),
        "the open connection keeps serving: {after:?}"
    );
}

/// A TLS connection to `addr` sending no SNI (an IP address as server name), accepting
/// any certificate (only to observe what is served without SNI).
async fn connect_without_sni(
    addr: SocketAddr,
    ca: &TestCa,
    alpn: &[&str],
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let mut config = (*ca.client_config(alpn)).clone();
    config
        .dangerous()
        .set_certificate_verifier(Arc::new(AnyCert));
    let ip = ServerName::IpAddress(addr.ip().into());
    TlsConnector::from(Arc::new(config)).connect(ip, tcp).await
}

/// The status of a GET naming `host` over `tls` (HTTP/1.1).
async fn http1_status(tls: TlsStream<TcpStream>, host: &str) -> StatusCode {
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .expect("HTTP/1.1 over TLS");
    tokio::spawn(connection);
    let response = sender.send_request(get(host)).await.expect("response");
    response.status()
}

async fn http1_get(tls: TlsStream<TcpStream>, host: &str) -> String {
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .expect("HTTP/1.1");
    tokio::spawn(connection);
    let response = sender.send_request(get(host)).await.expect("response");
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    String::from_utf8_lossy(&body).into_owned()
}

fn der_names(der: &[u8]) -> Vec<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).expect("X.509");
    cert.subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    x509_parser::extensions::GeneralName::DNSName(d) => Some((*d).to_owned()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Accepts any server certificate (only to observe which one is served without SNI).
#[derive(Debug)]
struct AnyCert;

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::aws_lc_rs::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[tokio::test]
async fn a_deny_policy_closes_tcp_connections_before_relaying() {
    use weft_proto::security;
    let net = Net(weft_testkit::loopback_net());
    let (_, _echo) = weft_testkit::tcp_echo(net.backend(1, 7000)).await;
    let services = [ServiceSpec {
        name: "echo",
        n: 1,
        port: 7000,
    }];
    let listener = pb::Listener {
        name: "tcp".into(),
        port: 7001,
        protocol: Protocol::Tcp.into(),
        l4_routes: vec![l4_route("echo", &[], vec![backend("echo", 7000)])],
        ..Default::default()
    };
    let deny_port = security::Match {
        destination_ports: vec![7001],
        ..Default::default()
    };
    let mut resource = gateway_resource(vec![listener]);
    resource.policies = vec![pb::Policy {
        policy: Some(security::Authorization {
            name: "no-tcp".into(),
            namespace: "ns".into(),
            scope: security::Scope::WorkloadSelector.into(),
            action: security::Action::Deny.into(),
            rules: vec![security::Rule {
                clauses: vec![security::Clause {
                    matches: vec![deny_port],
                }],
            }],
            ..Default::default()
        }),
        services: vec![],
    }];
    let _fixture = Fixture::start(net, &services, &resource).await;
    let mut stream = TcpStream::connect(net.gateway(7001)).await.unwrap();
    let _ = stream.write_all(b"ping").await;
    let mut back = Vec::new();
    let _ = stream.read_to_end(&mut back).await;
    assert!(back.is_empty(), "denied connection relayed: {back:?}");
}

#[tokio::test]
async fn https_in_tls_out_with_the_backend_policy_ca_and_alpn() {
    let net = Net(weft_testkit::loopback_net());
    let gateway_ca = TestCa::new("gateway CA");
    let backend_ca = TestCa::new("backend CA");
    let config = pki::server_config(&backend_ca.leaf(&["api.internal"]));
    let (_, stop) = pki::tls_echo(net.backend(1, 9443), "api", config).await;
    let _stop = stop.drop_guard();
    let services = [ServiceSpec {
        name: "api",
        n: 1,
        port: 9443,
    }];
    let mut listener = https_listener(
        "web",
        "web.example.com",
        &gateway_ca.leaf(&["web.example.com"]),
    );
    listener.http_routes = vec![pb::Route {
        namespace: "ns".into(),
        name: "to-api".into(),
        rules: vec![pb::Rule {
            backends: vec![backend("api", 9443)],
            ..Default::default()
        }],
        ..Default::default()
    }];
    let mut resource = gateway_resource(vec![listener]);
    resource.backend_tls = vec![pb::BackendTls {
        service: crate::harness::key("api"),
        port: 9443,
        hostname: "api.internal".into(),
        ca_bundle: backend_ca.pem.clone(),
        source: "ns/api-tls".into(),
        ..Default::default()
    }];
    let _fixture = Fixture::start(net, &services, &resource).await;
    let addr = net.gateway(HTTPS);
    let (h1, h2) = until("the backend answers through the gateway", || async {
        let tls = connect(addr, "web.example.com", &gateway_ca, &["http/1.1"])
            .await
            .ok()?;
        let h1 = http1_get(tls, "web.example.com").await;
        if !h1.starts_with("api") {
            return None;
        }
        let tls = connect(addr, "web.example.com", &gateway_ca, &["h2"])
            .await
            .ok()?;
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .ok()?;
        tokio::spawn(connection);
        let response = sender.send_request(get("web.example.com")).await.ok()?;
        let body = response.into_body().collect().await.ok()?.to_bytes();
        Some((h1, String::from_utf8_lossy(&body).into_owned()))
    })
    .await;
    // TLS with ALPN as the client spoke, verified against the policy's CA.
    assert_eq!(h1, "api http/1.1 /x");
    assert_eq!(h2, "api h2 /x");
}
