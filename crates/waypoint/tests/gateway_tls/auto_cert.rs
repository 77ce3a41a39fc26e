//! Auto-certificates through the running gateway: an HTTPS listener marked
//! `auto_certificate` terminates TLS with a certificate from the mesh CA for its hostname
//! (a client trusting only the mesh root verifies it), a hostname edit moves the
//! certificate to the new name, and a short-lived certificate is renewed before it expires
//! and served to new handshakes while open connections keep working.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;

use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use weft_identity::CertManagerConfig;
use weft_identity::tls::{LeafInfo, crypto_provider, leaf_info};
use weft_proto::l7::{self as pb, listener::Protocol};

use crate::harness::{Fixture, Net, gateway_resource, until};

const HTTPS: u16 = 8443;

fn auto_listener(hostname: &str) -> pb::Listener {
    pb::Listener {
        name: "https".into(),
        port: u32::from(HTTPS),
        protocol: Protocol::Https.into(),
        hostname: hostname.into(),
        auto_certificate: true,
        ..Default::default()
    }
}

/// The DNS names of the certificate a handshake naming `sni` verified against the mesh
/// root, or why it failed.
async fn served_names(fixture: &Fixture, sni: &str) -> Result<Vec<String>, String> {
    let tls = handshake(fixture, sni, &[]).await?;
    let leaf = &tls.get_ref().1.peer_certificates().expect("certificate")[0];
    Ok(leaf_info(leaf).expect("leaf").dns_sans)
}

/// A TLS connection to the HTTPS listener naming `sni`, verified against the mesh root.
async fn handshake(
    fixture: &Fixture,
    sni: &str,
    alpn: &[&[u8]],
) -> Result<TlsStream<TcpStream>, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(fixture.ca.root().clone()).expect("root");
    let mut config = rustls::ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let addr: SocketAddr = fixture.net.gateway(HTTPS);
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = ServerName::try_from(sni.to_owned()).expect("server name");
    TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn an_auto_certificate_listener_serves_a_mesh_certificate_for_its_hostname() {
    let net = Net(weft_testkit::loopback_net());
    let resource = gateway_resource(vec![auto_listener("shop.example.com")]);
    let fixture = Fixture::start(net, &[], &resource).await;

    let names = until("the auto-certificate to be served", || async {
        served_names(&fixture, "shop.example.com").await.ok()
    })
    .await;
    assert_eq!(names, ["shop.example.com"]);

    fixture.update(&gateway_resource(vec![auto_listener("www.example.com")]));
    let names = until("the new hostname's certificate", || async {
        served_names(&fixture, "www.example.com").await.ok()
    })
    .await;
    assert_eq!(names, ["www.example.com"]);
    let old = served_names(&fixture, "shop.example.com").await;
    assert!(
        old.is_err(),
        "the old hostname is no longer served: {old:?}"
    );
}

/// The leaf a new handshake naming `sni` is shown.
async fn served_leaf(fixture: &Fixture, sni: &str) -> Option<LeafInfo> {
    let tls = handshake(fixture, sni, &[]).await.ok()?;
    leaf_info(&tls.get_ref().1.peer_certificates()?[0]).ok()
}

/// Sends a GET on an open HTTP/1.1 connection: the status, or why it failed.
async fn status_on(
    sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
) -> Result<u16, String> {
    sender.ready().await.map_err(|e| e.to_string())?;
    let request = http::Request::get("/")
        .header("host", "shop.example.com")
        .body(Empty::new())
        .unwrap();
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    Ok(response.status().as_u16())
}

#[tokio::test]
async fn a_short_lived_auto_certificate_is_rotated_without_dropping_open_connections() {
    let net = Net(weft_testkit::loopback_net());
    let resource = gateway_resource(vec![auto_listener("shop.example.com")]);
    // The CA backdates certificates by a minute, so a 30 s lifetime is past half-life at
    // issue: the gateway renews it within seconds, long before it expires.
    let certs = CertManagerConfig {
        validity: Duration::from_secs(30),
        ..CertManagerConfig::default()
    };
    let fixture = Fixture::start_with_certs(net, &[], &resource, certs).await;
    let first = until("the first auto-certificate", || async {
        served_leaf(&fixture, "shop.example.com").await
    })
    .await;
    let tls = handshake(&fixture, "shop.example.com", &[b"http/1.1"])
        .await
        .expect("handshake");
    let (mut open, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .expect("HTTP/1.1");
    tokio::spawn(connection);
    // No route: the listener answers 404, which shows it serves the connection.
    assert_eq!(status_on(&mut open).await, Ok(404));

    let renewed = until("a renewed certificate for new handshakes", || async {
        served_leaf(&fixture, "shop.example.com")
            .await
            .filter(|leaf| leaf.serial != first.serial)
    })
    .await;
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs(),
    )
    .expect("fits");
    assert!(first.not_after > now, "renewed before the old one expired");
    assert_eq!(renewed.dns_sans, ["shop.example.com"]);
    assert_eq!(
        status_on(&mut open).await,
        Ok(404),
        "the connection opened with the old certificate keeps serving"
    );
}
