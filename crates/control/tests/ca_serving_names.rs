//! Gateway auto-certificates over real gRPC on the CA's TLS port: a cert manager asking for
//! DNS names beside its SPIFFE id gets them when its identity may have them, and is refused
//! with PERMISSION_DENIED (naming the name) otherwise.

mod common;

use common::{EXTRA_SAN, NODE_TOKEN, RunningCa, SERVER_NAME, id, start_ca_with_serving_names};
use std::sync::Arc;
use tonic::Code;
use weft_control::ca_service::StaticServingNames;
use weft_identity::tls::leaf_info;
use weft_identity::{
    CertError, CertManager, CertManagerConfig, FetchError, GrpcCaClient, GrpcCaClientConfig,
    TokenSource, TrustBundle,
};

/// A node proxy's cert manager (node token, impersonating) asking for `dns_names` too.
fn manager(ca: &RunningCa, dns_names: &[&str]) -> CertManager {
    let client = GrpcCaClient::new(GrpcCaClientConfig::node_proxy(
        ca.endpoint(),
        SERVER_NAME,
        TrustBundle::from_pem("cluster.local", ca.root_pem()).expect("bundle"),
        TokenSource::Static(NODE_TOKEN.into()),
    ))
    .expect("client");
    let config = CertManagerConfig {
        dns_names: dns_names.iter().map(|name| (*name).to_owned()).collect(),
        ..CertManagerConfig::default()
    };
    CertManager::new(Arc::new(client), config)
}

/// The CA's refusal (gRPC code and message) of a certificate request.
fn refusal<T: std::fmt::Debug>(result: Result<T, CertError>) -> (Code, String) {
    match result.expect_err("refused") {
        CertError::Fetch {
            source: FetchError::Refused { code, message },
            ..
        } => (code, message),
        other => panic!("unexpected error {other}"),
    }
}

async fn ca() -> RunningCa {
    // `a` runs on node-1 (the node token's node) and may have the gateway's two hostnames
    let names = StaticServingNames::new()
        .with(id("a"), "shop.example.com")
        .with(id("a"), "*.example.com");
    start_ca_with_serving_names(names).await
}

#[tokio::test]
async fn an_identity_gets_the_dns_names_it_may_have() {
    let ca = ca().await;
    let manager = manager(&ca, &["shop.example.com", "*.example.com"]);
    let cert = manager.get(&id("a")).await.expect("issued");
    let leaf = leaf_info(&cert.chain()[0]).expect("leaf");
    assert_eq!(leaf.spiffe_id, Some(id("a")));
    assert_eq!(leaf.dns_sans, ["shop.example.com", "*.example.com"]);
    assert!(
        ca.metrics_text()
            .contains("weft_control_ca_certificates_issued_total 1")
    );
}

#[tokio::test]
async fn other_names_and_other_identities_are_refused() {
    let ca = ca().await;
    for (identity, names) in [
        (id("a"), ["evil.example"]),
        (id("a"), ["www.shop.example.com"]),
        (id("b"), ["shop.example.com"]),
    ] {
        let (code, message) = refusal(manager(&ca, &names).get(&identity).await);
        assert_eq!(code, Code::PermissionDenied, "{identity}: {message}");
        assert!(message.contains(names[0]), "{identity}: {message}");
    }
    let text = ca.metrics_text();
    let refused = "weft_control_ca_certificates_rejected_total{reason=\"dns_name_not_allowed\"} 3";
    assert!(text.contains(refused), "{text}");
}

/// A Gateway listing the control plane's own name (or a wildcard over it) must not give
/// its identity a certificate that proxies would accept as the control plane's.
#[tokio::test]
async fn the_control_planes_names_are_never_signed_for_a_gateway() {
    let wildcard = format!(
        "*.{}",
        SERVER_NAME.split_once('.').expect("a dotted name").1
    );
    let names = StaticServingNames::new()
        .with(id("a"), SERVER_NAME)
        .with(id("a"), &wildcard)
        .with(id("a"), EXTRA_SAN);
    let ca = start_ca_with_serving_names(names).await;
    for name in [SERVER_NAME, wildcard.as_str(), EXTRA_SAN] {
        let (code, message) = refusal(manager(&ca, &[name]).get(&id("a")).await);
        assert_eq!(code, Code::PermissionDenied, "{name}: {message}");
        assert!(message.contains("control plane"), "{name}: {message}");
    }
    let text = ca.metrics_text();
    let refused = "weft_control_ca_certificates_rejected_total{reason=\"dns_name_reserved\"} 3";
    assert!(text.contains(refused), "{text}");
}
