//! Serving-certificate validity on the gateway's metrics page
//! (`weft_gateway_certificate_{expiry,not_before}_timestamp_seconds{listener,certificate}`):
//! a Secret's certificate shows its own notBefore/notAfter and a swapped one its new
//! dates; an auto-certificate shows the CA-issued one and moves on when it is rotated.

use std::time::Duration;

use rcgen::{CertificateParams, DnType, KeyPair};
use weft_identity::CertManagerConfig;
use weft_proto::l7::{self as pb, listener::Protocol};

use crate::harness::{Fixture, Net, certificate, gateway_resource, until};

const HTTPS: u16 = 8443;
const EXPIRY: &str = "weft_gateway_certificate_expiry_timestamp_seconds";
const NOT_BEFORE: &str = "weft_gateway_certificate_not_before_timestamp_seconds";

/// A self-signed serving certificate for `name` valid from `from` to `until` (years, on
/// 1 January), and those two instants in Unix seconds.
fn dated_leaf(name: &str, from: i32, until: i32) -> (crate::pki::Leaf, i64, i64) {
    let mut params = CertificateParams::new(vec![name.to_owned()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.not_before = rcgen::date_time_ymd(from, 1, 1);
    params.not_after = rcgen::date_time_ymd(until, 1, 1);
    let (not_before, not_after) = (
        params.not_before.unix_timestamp(),
        params.not_after.unix_timestamp(),
    );
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let leaf = crate::pki::Leaf {
        chain: cert.pem(),
        key: key.serialize_pem(),
    };
    (leaf, not_before, not_after)
}

fn https_listener(hostname: &str, certificates: Vec<pb::Certificate>) -> pb::Listener {
    pb::Listener {
        name: "https".into(),
        port: u32::from(HTTPS),
        protocol: Protocol::Https.into(),
        hostname: hostname.into(),
        certificates,
        ..Default::default()
    }
}

/// The value of gauge `name` for listener `https` and `certificate`, if the gateway's
/// metrics page has it.
async fn gauge(fixture: &Fixture, name: &str, certificate: &str) -> Option<i64> {
    let addr = fixture
        .gateway
        .metrics
        .expect("metrics address")
        .to_string();
    let (_, body) = weft_serve::get(&addr, "/metrics").await.expect("scrape");
    let text = String::from_utf8(body.to_vec()).unwrap();
    let series = format!("{name}{{listener=\"https\",certificate=\"{certificate}\"}} ");
    let line = text.lines().find_map(|line| line.strip_prefix(&series))?;
    Some(line.trim().parse().expect("an integer gauge"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_certificate_shows_its_validity_and_a_swapped_one_its_new_dates() {
    let net = Net(weft_testkit::loopback_net());
    let (leaf, not_before, not_after) = dated_leaf("site.example.com", 2026, 2031);
    let site = certificate("site", &leaf);
    let resource = gateway_resource(vec![https_listener("site.example.com", vec![site])]);
    let fixture = Fixture::start(net, &[], &resource).await;
    assert_eq!(gauge(&fixture, EXPIRY, "ns/site").await, Some(not_after));
    assert_eq!(
        gauge(&fixture, NOT_BEFORE, "ns/site").await,
        Some(not_before)
    );

    let (leaf, _, renewed_until) = dated_leaf("site.example.com", 2026, 2033);
    let renewed = certificate("site-2026", &leaf);
    fixture.update(&gateway_resource(vec![https_listener(
        "site.example.com",
        vec![renewed],
    )]));
    let shown = until("the swapped certificate's expiry", || async {
        gauge(&fixture, EXPIRY, "ns/site-2026").await
    })
    .await;
    assert_eq!(shown, renewed_until);
    assert_eq!(
        gauge(&fixture, EXPIRY, "ns/site").await,
        None,
        "old one gone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auto_certificate_shows_its_expiry_and_moves_on_when_rotated() {
    let net = Net(weft_testkit::loopback_net());
    let mut listener = https_listener("auto.example.com", Vec::new());
    listener.auto_certificate = true;
    let resource = gateway_resource(vec![listener]);
    // the CA backdates by a minute, so half of this lifetime has passed at issue: the
    // certificate is renewed about every second
    let certs = CertManagerConfig {
        validity: Duration::from_secs(30),
        ..CertManagerConfig::default()
    };
    let fixture = Fixture::start_with_certs(net, &[], &resource, certs).await;
    let first = until("the auto-certificate's expiry", || async {
        gauge(&fixture, EXPIRY, "auto").await
    })
    .await;
    let issued = gauge(&fixture, NOT_BEFORE, "auto")
        .await
        .expect("notBefore");
    assert!(issued < first, "notBefore {issued} < notAfter {first}");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    let now = i64::try_from(now.unwrap().as_secs()).unwrap();
    assert!(first > now, "not expired: {first} (now {now})");
    until("the rotated certificate's later expiry", || async {
        gauge(&fixture, EXPIRY, "auto")
            .await
            .filter(|at| *at > first)
    })
    .await;
}
