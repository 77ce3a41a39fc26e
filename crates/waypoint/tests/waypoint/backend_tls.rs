//! TLS origination by the waypoint (BackendTLSPolicy): a service whose endpoint is outside
//! the mesh (no HBONE) serves HTTPS with a certificate from a private CA; the client speaks
//! plain HTTP through the waypoint, which opens TLS with the entry's SNI and CA. A CA that
//! does not match answers 503 `UF`, never plain text.

use std::net::{IpAddr, SocketAddr};

use weft_proto::l7 as pb;
use weft_proto::workload::Address;
use weft_proto::{ADDRESS_TYPE_URL, pack_any};
use weft_upstream::testing as wl;
use weft_xds::XdsResource;

#[path = "../pki/mod.rs"]
mod pki;

use crate::harness::{Mesh, NS, TARGET_PORT, WAIT, get, key, send, waypoint_resource};

/// The mesh with one service `ext` whose only endpoint is a plain (non-HBONE) workload at
/// `.1.1`, serving TLS on the target port with a certificate of `server_ca`; the waypoint
/// originates TLS to it trusting `trusted` (PEM).
async fn mesh_with_external(
    server_ca: &pki::TestCa,
    trusted: &str,
) -> (Mesh, tokio_util::sync::CancellationToken) {
    let mut resource = waypoint_resource(&[("ext", vec![])], vec![]);
    resource.backend_tls = vec![entry(trusted.to_owned())];
    let mesh = Mesh::start(vec![], resource).await;
    let leaf = server_ca.leaf(&["api.example.com"]);
    let addr = SocketAddr::new(IpAddr::V4(mesh.net.ip(1, 1)), TARGET_PORT);
    let (_, stop) = pki::tls_echo(addr, "external", pki::server_config(&leaf)).await;
    let mut pod = wl::pod(NS, "ext-0", &mesh.net.ip(1, 1).to_string());
    pod.tunnel_protocol = weft_proto::workload::TunnelProtocol::None.into();
    let vip = mesh.net.vip(1).ip().to_string();
    let resources: Vec<(String, Address)> = vec![
        wl::svc_address(wl::service(NS, "ext", &vip, &[(80, 8080)])),
        wl::wl_address(wl::member(pod, &key("ext"), &[(80, 8080)])),
        wl::wl_address(wl::pod(NS, "client", &mesh.net.client().to_string())),
    ];
    mesh.publisher.replace(
        ADDRESS_TYPE_URL,
        resources
            .into_iter()
            .map(|(name, a)| XdsResource::new(name, vec![], pack_any(ADDRESS_TYPE_URL, &a))),
    );
    (mesh, stop)
}

fn entry(ca_bundle: String) -> pb::BackendTls {
    pb::BackendTls {
        service: key("ext"),
        port: 80,
        hostname: "api.example.com".into(),
        ca_bundle,
        source: format!("{NS}/ext-tls"),
        ..Default::default()
    }
}

/// GETs `/hello` through the waypoint once the service is known (not 500 `NC`).
async fn get_through(mesh: &Mesh) -> crate::harness::Answer {
    let client = mesh.client().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        // The tunnel is refused (404) until the service reaches the waypoint.
        if client.tunnel(mesh.net.vip(1)).await.is_ok() {
            let mut sender = client.h1(mesh.net.vip(1)).await;
            let answer = send(&mut sender, get("/hello", &[])).await;
            if answer.status != 500 {
                return answer;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the service never reached the waypoint"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_waypoint_originates_tls_verified_by_the_policy_ca() {
    let server_ca = pki::TestCa::new("server CA");
    let (mesh, _stop) = mesh_with_external(&server_ca, &server_ca.pem).await;
    let answer = get_through(&mesh).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body, "external http/1.1 /hello");
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused_with_503() {
    let server_ca = pki::TestCa::new("server CA");
    let other = pki::TestCa::new("some other CA");
    let (mesh, _stop) = mesh_with_external(&server_ca, &other.pem).await;
    let answer = get_through(&mesh).await;
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert!(answer.body.contains("ns/ext-tls"), "{}", answer.body);
    assert!(answer.body.contains("api.example.com"), "{}", answer.body);
}
