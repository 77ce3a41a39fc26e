//! Serving certificates (a gateway's auto-certificates): a `CertManager` configured with DNS
//! names asks for and gets a leaf with the SPIFFE id plus those names; the local provider
//! signs only the names the request asked for.

mod common;

use common::id;
use std::sync::Arc;
use std::time::Duration;
use weft_identity::tls::leaf_info;
use weft_identity::{
    CertManager, CertManagerConfig, CertRequest, CertificateAuthority, CertificateProvider,
    FetchError, LocalCaProvider, key_and_csr_with_dns,
};

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|name| (*name).to_owned()).collect()
}

#[tokio::test]
async fn a_manager_with_dns_names_gets_them_beside_the_spiffe_id() {
    let ca = Arc::new(CertificateAuthority::generate_in_memory().expect("ca"));
    let manager = CertManager::new(
        Arc::new(LocalCaProvider::new(ca)),
        CertManagerConfig {
            dns_names: names(&["*.example.com"]),
            ..CertManagerConfig::default()
        },
    );
    let identity = id("edge", "public-weft");
    let cert = manager.get(&identity).await.expect("issued");
    let leaf = leaf_info(&cert.chain()[0]).expect("leaf");
    assert_eq!(leaf.spiffe_id.as_ref(), Some(&identity));
    assert_eq!(leaf.dns_sans, ["*.example.com"]);
    assert!(!leaf.is_ca);
}

#[tokio::test]
async fn the_local_provider_signs_only_the_names_the_request_asked_for() {
    let ca = Arc::new(CertificateAuthority::generate_in_memory().expect("ca"));
    let provider = LocalCaProvider::new(ca);
    let identity = id("edge", "public-weft");
    let (_, csr_pem) =
        key_and_csr_with_dns(&identity, &names(&["shop.example.com", "evil.example"]))
            .expect("csr");
    let request = CertRequest {
        identity,
        csr_pem,
        validity: Duration::from_secs(600),
        dns_names: names(&["shop.example.com"]),
    };
    let err = provider
        .fetch(&request)
        .await
        .expect_err("extra name refused");
    assert!(
        matches!(&err, FetchError::Local(message) if message.contains("evil.example")),
        "{err}"
    );
}
