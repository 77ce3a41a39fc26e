//! Real mutual-TLS handshakes over loopback TCP with certificates from the mesh CA: both
//! sides verify the chain and the peer's SPIFFE id; root rotation keeps both roots working.

mod common;

use common::{handshake, id, issue};
use std::sync::Arc;
use weft_identity::{CertificateAuthority, TrustBundle, client_config, server_config};

fn bundle(roots: &[&Arc<CertificateAuthority>]) -> TrustBundle {
    TrustBundle::new("cluster.local", roots.iter().map(|ca| ca.root().clone())).expect("bundle")
}

#[tokio::test]
async fn mutual_tls_verifies_both_spiffe_ids() {
    let ca = Arc::new(CertificateAuthority::generate_in_memory().expect("ca"));
    let (client_id, server_id) = (id("default", "productpage"), id("default", "reviews"));
    let client_cert = issue(&ca, &client_id).await;
    let server_cert = issue(&ca, &server_id).await;
    let trust = bundle(&[&ca]);
    let outcome = handshake(
        client_config(&client_cert, &trust, [server_id.clone()]).expect("client config"),
        server_config(&server_cert, &trust).expect("server config"),
    )
    .await;
    assert_eq!(outcome.client_saw, Ok(server_id));
    assert_eq!(outcome.server_saw, Ok(client_id));
}

#[tokio::test]
async fn client_refuses_a_server_with_an_unexpected_identity() {
    let ca = Arc::new(CertificateAuthority::generate_in_memory().expect("ca"));
    let client_cert = issue(&ca, &id("default", "a")).await;
    let server_cert = issue(&ca, &id("default", "impostor")).await;
    let trust = bundle(&[&ca]);
    let outcome = handshake(
        client_config(&client_cert, &trust, [id("default", "b")]).expect("client config"),
        server_config(&server_cert, &trust).expect("server config"),
    )
    .await;
    let err = outcome
        .client_saw
        .expect_err("wrong server identity is refused");
    assert!(err.contains("impostor"), "error names the peer: {err}");
    assert!(outcome.server_saw.is_err());
}

#[tokio::test]
async fn server_refuses_a_client_from_another_ca_or_trust_domain() {
    let ca = Arc::new(CertificateAuthority::generate_in_memory().expect("ca"));
    let stranger_ca = Arc::new(CertificateAuthority::generate_in_memory().expect("ca"));
    let server_id = id("default", "reviews");
    let server_cert = issue(&ca, &server_id).await;
    let trust = bundle(&[&ca]);
    let server = server_config(&server_cert, &trust).expect("server config");

    // Client certificate from a CA the server does not trust.
    let stranger = issue(&stranger_ca, &id("default", "a")).await;
    let client_trust = bundle(&[&ca]);
    let outcome = handshake(
        client_config(&stranger, &client_trust, [server_id.clone()]).expect("client"),
        server.clone(),
    )
    .await;
    assert!(
        outcome.server_saw.is_err(),
        "untrusted client chain refused"
    );
    assert!(outcome.client_saw.is_err(), "client sees the refusal");

    // Right CA, but a trust domain the server does not accept.
    let foreign_id = weft_identity::SpiffeId::new("other.domain", "default", "a").expect("id");
    let foreign = issue(&ca, &foreign_id).await;
    let outcome = handshake(
        client_config(&foreign, &client_trust, [server_id]).expect("client"),
        server,
    )
    .await;
    let err = outcome
        .server_saw
        .expect_err("foreign trust domain refused");
    assert!(
        err.contains("UntrustedDomain") && err.contains("other.domain"),
        "{err}"
    );
}

#[tokio::test]
async fn root_rotation_accepts_peers_of_both_roots_while_both_are_trusted() {
    let old_ca = Arc::new(CertificateAuthority::generate_in_memory().expect("old ca"));
    let new_ca = Arc::new(CertificateAuthority::generate_in_memory().expect("new ca"));
    let (old_id, new_id) = (id("default", "old"), id("default", "new"));
    let old_cert = issue(&old_ca, &old_id).await;
    let new_cert = issue(&new_ca, &new_id).await;
    let both = bundle(&[&old_ca])
        .with_root(new_ca.root().clone())
        .expect("add root");
    assert_eq!(both.roots().len(), 2);

    for (client, client_id, server, server_id) in [
        (&old_cert, &old_id, &new_cert, &new_id),
        (&new_cert, &new_id, &old_cert, &old_id),
    ] {
        let outcome = handshake(
            client_config(client, &both, [server_id.clone()]).expect("client"),
            server_config(server, &both).expect("server"),
        )
        .await;
        assert_eq!(outcome.client_saw.as_ref(), Ok(server_id));
        assert_eq!(outcome.server_saw.as_ref(), Ok(client_id));
    }

    // Once the old root is removed, a peer still on the old root is refused.
    let new_only = both.without_root(old_ca.root()).expect("remove root");
    let outcome = handshake(
        client_config(&old_cert, &new_only, [new_id.clone()]).expect("client"),
        server_config(&new_cert, &new_only).expect("server"),
    )
    .await;
    assert!(
        outcome.server_saw.is_err(),
        "old-root client refused after rotation"
    );
}

#[tokio::test]
async fn configs_built_before_a_bundle_change_follow_it_both_ways() {
    let old_ca = Arc::new(CertificateAuthority::generate_in_memory().expect("old ca"));
    let new_ca = Arc::new(CertificateAuthority::generate_in_memory().expect("new ca"));
    let (old_id, new_id) = (id("default", "old"), id("default", "new"));
    let old_cert = issue(&old_ca, &old_id).await;
    let new_cert = issue(&new_ca, &new_id).await;
    // One live bundle, as a proxy holds it: every config below is built before the change.
    let trust = bundle(&[&old_ca]);
    let old_server = server_config(&old_cert, &trust).expect("server");
    let old_client = client_config(&old_cert, &trust, [new_id.clone()]).expect("client");
    let new_server = server_config(&new_cert, &trust).expect("server");
    let new_client = client_config(&new_cert, &trust, [old_id.clone()]).expect("client");
    let refused = handshake(new_client.clone(), old_server.clone()).await;
    assert!(refused.server_saw.is_err(), "new root not trusted yet");

    let both = vec![old_ca.root().clone(), new_ca.root().clone()];
    assert!(trust.replace_roots(both.clone()).expect("replace"));
    assert!(!trust.replace_roots(both).expect("same set"), "no change");
    let new_to_old = handshake(new_client, old_server.clone()).await;
    assert_eq!(new_to_old.server_saw, Ok(new_id.clone()));
    assert_eq!(new_to_old.client_saw, Ok(old_id.clone()));
    let old_to_new = handshake(old_client.clone(), new_server.clone()).await;
    assert_eq!(old_to_new.server_saw, Ok(old_id));
    assert_eq!(old_to_new.client_saw, Ok(new_id.clone()));

    trust
        .replace_roots(vec![new_ca.root().clone()])
        .expect("drop old root");
    // A fresh client config: one that already talked to this server would resume its TLS
    // session, which skips certificate checks by design.
    let old_client = client_config(&old_cert, &trust, [new_id]).expect("client");
    let after = handshake(old_client, new_server).await;
    assert!(after.server_saw.is_err(), "old root dropped");
    assert!(
        trust.replace_roots(Vec::new()).is_err(),
        "an empty bundle is refused"
    );
    assert_eq!(trust.roots().len(), 1, "and the roots stay");
}
