//! Auto-certificates through the running gateway: an HTTPS listener marked
//! `auto_certificate` terminates TLS with a certificate from the mesh CA for its hostname
//! (a client trusting only the mesh root verifies it), and a hostname edit moves the
//! certificate to the new name.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use weft_identity::tls::{crypto_provider, leaf_info};
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
    let mut roots = rustls::RootCertStore::empty();
    roots.add(fixture.ca.root().clone()).expect("root");
    let config = rustls::ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let addr: SocketAddr = fixture.net.gateway(HTTPS);
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = ServerName::try_from(sni.to_owned()).expect("server name");
    let tls = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let leaf = &tls.get_ref().1.peer_certificates().expect("certificate")[0];
    Ok(leaf_info(leaf).expect("leaf").dns_sans)
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
