//! The gateway's auto-certificates from a real in-process CA: one per listener hostname,
//! chosen by SNI in a real TLS handshake that verifies against the mesh root, renewed before
//! expiry, and dropped with their listener.

use rustls::pki_types::{CertificateDer, ServerName};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;
use weft_identity::tls::{crypto_provider, leaf_info};
use weft_identity::{CertManagerConfig, CertificateAuthority, LocalCaProvider, SpiffeId};
use weft_waypoint::gateway::auto_cert::AutoCerts;

/// Upper bound of every wait on a condition (never a guess at how long something takes).
const WAIT: Duration = Duration::from_secs(20);

fn identity() -> SpiffeId {
    SpiffeId::new("cluster.local", "edge", "public-weft").expect("id")
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|name| (*name).to_owned()).collect()
}

fn auto_certs(ca: &Arc<CertificateAuthority>, validity: Duration) -> Arc<AutoCerts> {
    let provider = Arc::new(LocalCaProvider::new(Arc::clone(ca)));
    let config = CertManagerConfig {
        validity,
        ..CertManagerConfig::default()
    };
    Arc::new(AutoCerts::new(provider, identity(), config))
}

/// Waits until `hostname` has a certificate from at least `attempts` fetches.
async fn wait_issued(certs: &AutoCerts, hostname: &str, attempts: u64) {
    let mut state = certs.subscribe(hostname).expect("hostname held");
    let issued = state.wait_for(|s| s.cert.is_some() && s.attempts >= attempts);
    let result = tokio::time::timeout(WAIT, issued).await;
    result.expect("certificate in time").expect("manager alive");
}

/// A real TLS handshake over loopback TCP: a server resolving certificates with `certs`, a
/// client trusting only `root` and asking for `sni`. The client's view: the leaf it
/// verified, or why the handshake failed.
async fn handshake(
    certs: &Arc<AutoCerts>,
    root: &CertificateDer<'static>,
    sni: &str,
) -> Result<CertificateDer<'static>, String> {
    let (certs, root, sni) = (Arc::clone(certs), root.clone(), sni.to_owned());
    tokio::task::spawn_blocking(move || blocking_handshake(certs, root, &sni))
        .await
        .expect("handshake thread")
}

fn blocking_handshake(
    certs: Arc<AutoCerts>,
    root: CertificateDer<'static>,
    sni: &str,
) -> Result<CertificateDer<'static>, String> {
    let provider = crypto_provider();
    let server_config = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_cert_resolver(certs);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = std::thread::spawn(move || {
        let (mut tcp, _) = listener.accept().expect("accept");
        tcp.set_read_timeout(Some(WAIT)).expect("timeout");
        let mut conn = rustls::ServerConnection::new(Arc::new(server_config)).expect("server");
        while conn.is_handshaking() {
            if conn.complete_io(&mut tcp).is_err() {
                return;
            }
        }
    });
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root).expect("root");
    let client_config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from(sni.to_owned()).expect("server name");
    let mut conn = rustls::ClientConnection::new(Arc::new(client_config), name).expect("client");
    let mut tcp = TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut result = Ok(());
    while conn.is_handshaking() {
        if let Err(err) = conn.complete_io(&mut tcp) {
            result = Err(err.to_string());
            break;
        }
    }
    drop(tcp);
    server.join().expect("server thread");
    result?;
    let leaf = conn.peer_certificates().and_then(|chain| chain.first());
    Ok(leaf
        .expect("server sent a certificate")
        .clone()
        .into_owned())
}

fn unix_now() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    i64::try_from(now.expect("after 1970").as_secs()).expect("fits")
}

#[tokio::test]
async fn each_hostname_gets_a_certificate_that_verifies_against_the_mesh_root_for_its_sni() {
    let ca = Arc::new(CertificateAuthority::generate_in_memory().expect("ca"));
    let certs = auto_certs(&ca, Duration::from_secs(3600));
    certs.set_hostnames(names(&["Shop.Example.com", "*.example.com"]));
    assert_eq!(certs.hostnames(), ["*.example.com", "shop.example.com"]);
    wait_issued(&certs, "shop.example.com", 1).await;
    wait_issued(&certs, "*.example.com", 1).await;
    assert!(certs.pending().is_empty());

    for (sni, san) in [
        ("shop.example.com", "shop.example.com"),
        ("SHOP.example.com", "shop.example.com"),
        ("api.example.com", "*.example.com"),
    ] {
        let leaf = handshake(&certs, ca.root(), sni)
            .await
            .unwrap_or_else(|err| panic!("{sni}: {err}"));
        let info = leaf_info(&leaf).expect("leaf");
        assert_eq!(info.dns_sans, [san], "{sni}");
        assert_eq!(info.spiffe_id, Some(identity()), "{sni}");
    }
    // no listener hostname covers it: no certificate, the handshake fails
    assert!(certs.certificate("shop.example.org").is_none());
    let refused = handshake(&certs, ca.root(), "shop.example.org").await;
    assert!(refused.is_err(), "{refused:?}");
}

#[tokio::test]
async fn a_certificate_is_renewed_while_still_valid() {
    let ca = Arc::new(CertificateAuthority::generate_in_memory().expect("ca"));
    // the CA backdates certificates by a minute, so half of this lifetime has passed at
    // issue: renewal follows about a second later, well before expiry
    let certs = auto_certs(&ca, Duration::from_secs(30));
    certs.set_hostnames(names(&["shop.example.com"]));
    wait_issued(&certs, "shop.example.com", 1).await;
    let first = certs.certificate("shop.example.com").expect("first");
    let first_info = leaf_info(&first.cert[0]).expect("leaf");

    wait_issued(&certs, "shop.example.com", 2).await;
    assert!(first_info.not_after > unix_now(), "renewed before expiry");
    let renewed = certs.certificate("shop.example.com").expect("renewed");
    let renewed_info = leaf_info(&renewed.cert[0]).expect("leaf");
    assert_ne!(renewed_info.serial, first_info.serial);
    assert!(renewed_info.not_after >= first_info.not_after);
    assert_eq!(renewed_info.dns_sans, ["shop.example.com"]);
    let leaf = handshake(&certs, ca.root(), "shop.example.com")
        .await
        .expect("handshake with a renewed certificate");
    assert_eq!(
        leaf_info(&leaf).expect("leaf").dns_sans,
        ["shop.example.com"]
    );
}

#[tokio::test]
async fn a_dropped_hostname_is_no_longer_served_and_a_kept_one_keeps_its_certificate() {
    let ca = Arc::new(CertificateAuthority::generate_in_memory().expect("ca"));
    let certs = auto_certs(&ca, Duration::from_secs(3600));
    certs.set_hostnames(names(&["a.example.com", "b.example.com"]));
    wait_issued(&certs, "a.example.com", 1).await;
    wait_issued(&certs, "b.example.com", 1).await;
    let kept = certs.certificate("a.example.com").expect("a");

    certs.set_hostnames(names(&["a.example.com", "c.example.com"]));
    assert!(certs.certificate("b.example.com").is_none());
    assert!(certs.subscribe("b.example.com").is_none());
    let still = certs.certificate("a.example.com").expect("a kept");
    assert!(
        Arc::ptr_eq(&kept, &still),
        "a kept hostname is not fetched again"
    );
    wait_issued(&certs, "c.example.com", 1).await;
    let leaf = handshake(&certs, ca.root(), "c.example.com")
        .await
        .expect("c");
    assert_eq!(leaf_info(&leaf).expect("leaf").dns_sans, ["c.example.com"]);
    let dropped = handshake(&certs, ca.root(), "b.example.com").await;
    assert!(dropped.is_err(), "{dropped:?}");
}
