//! A root rotation through the real CA over gRPC on the real secure port: the CA client's
//! trust bundle follows the roots the CA sends (both during the rotation, then the new one),
//! the control plane's serving certificate moves to the new root and a client trusting both
//! keeps reconnecting, and `RotationDriver` takes a `weft ca rotate` request file.

mod common;

use common::{NODE_TOKEN, RunningCa, SERVER_NAME, id, start_ca};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use weft_control::ca_service::RotationDriver;
use weft_identity::ca::rotation::{Advanced, fingerprint};
use weft_identity::ca::{DirRootStore, NextRoot, Phase, RootStore};
use weft_identity::{
    CertManager, CertManagerConfig, CertificateAuthority, GrpcCaClient, GrpcCaClientConfig,
    TokenSource, TrustBundle,
};

/// A node-1 certificate manager whose CA client keeps `trust` (a new connection each).
fn node_manager(ca: &RunningCa, trust: &TrustBundle) -> CertManager {
    let client = GrpcCaClient::new(GrpcCaClientConfig::node_proxy(
        ca.endpoint(),
        SERVER_NAME,
        trust.clone(),
        TokenSource::Static(NODE_TOKEN.into()),
    ))
    .expect("client");
    CertManager::new(Arc::new(client), CertManagerConfig::default())
}

fn prints(trust: &TrustBundle) -> Vec<String> {
    trust.roots().iter().map(fingerprint).collect()
}

#[tokio::test]
async fn proxies_follow_the_bundle_and_the_control_plane_moves_to_the_new_root() {
    let ca = start_ca().await;
    let old = fingerprint(ca.ca.root());
    let trust = TrustBundle::from_pem("cluster.local", ca.root_pem()).expect("bundle");
    let manager = node_manager(&ca, &trust);
    manager.get(&id("a")).await.expect("first certificate");
    assert_eq!(prints(&trust), std::slice::from_ref(&old));

    let next = CertificateAuthority::generate_in_memory().expect("next");
    let new = fingerprint(next.root());
    ca.rotation.begin(next).expect("begin");
    // The next fetch brings both roots.
    manager.forget(&id("a"));
    manager
        .get(&id("a"))
        .await
        .expect("certificate with both roots");
    assert_eq!(prints(&trust), [old.clone(), new.clone()]);

    // Every holder the CA knows of (node-1 for `a`, the serving certificate) has both roots.
    assert_eq!(
        ca.rotation.advance(SystemTime::now()),
        Some(Advanced::NewRootSigns)
    );
    manager.forget(&id("a"));
    manager
        .get(&id("a"))
        .await
        .expect("certificate from the new root");
    let status = ca.rotation.status(SystemTime::now());
    assert_eq!(status.phase, Phase::Issuing);
    assert!(status.roots[1].signing);
    assert!(
        status.roots[1].live_certificates >= 1,
        "a from the new root"
    );
    // The serving certificate moved to the new root (re-issued when the signer changed): a
    // new connection verified against the live bundle (both roots) still gets certificates.
    let reconnected = node_manager(&ca, &trust);
    let serving_moved = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if ca.rotation.status(SystemTime::now()).roots[0].live_certificates == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    serving_moved.await.expect("serving certificate re-issued");
    reconnected
        .get(&id("b"))
        .await
        .expect("CA reachable after the serving certificate moved");

    // The old root is dropped once nothing live chains to it; the next answer says so.
    // Nothing live chains to the old root any more.
    assert_eq!(
        ca.rotation.advance(SystemTime::now()),
        Some(Advanced::OldRootDropped)
    );
    manager.forget(&id("a"));
    manager
        .get(&id("a"))
        .await
        .expect("certificate after the rotation");
    assert_eq!(prints(&trust), [new]);
}

#[test]
fn the_driver_takes_a_request_file_and_publishes_the_bundle() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = DirRootStore::new(dir.path(), None);
    let loaded = store.load().expect("load");
    let rotation = Arc::new(weft_identity::ca::RootRotation::new(Arc::new(
        loaded.current,
    )));
    let driver = RotationDriver::new(Arc::clone(&rotation), Arc::new(store.clone()));
    let bundle = || std::fs::read_to_string(store.bundle_path()).expect("bundle");
    assert_eq!(bundle().matches("BEGIN CERTIFICATE").count(), 1);

    DirRootStore::request_rotation(dir.path(), &NextRoot::Generate).expect("request");
    // No certificate is live: both phases end at the next steps.
    assert_eq!(driver.step(SystemTime::now()), Some(Advanced::NewRootSigns));
    assert_eq!(bundle().matches("BEGIN CERTIFICATE").count(), 2);
    assert_eq!(
        driver.step(SystemTime::now()),
        Some(Advanced::OldRootDropped)
    );
    assert_eq!(bundle().matches("BEGIN CERTIFICATE").count(), 1);
    let status = driver.status_json();
    assert_eq!(status["phase"], "steady");
    assert!(status["last_error"].is_null(), "{status}");
    // The stored current root is the new one.
    let reloaded = DirRootStore::new(dir.path(), None).load().expect("reload");
    assert_eq!(
        fingerprint(reloaded.current.root()),
        fingerprint(rotation.signer().root())
    );

    DirRootStore::request_rotation(dir.path(), &NextRoot::Plugin(dir.path().join("none")))
        .expect("request");
    driver.step(SystemTime::now());
    let status = driver.status_json();
    assert_eq!(status["phase"], "steady");
    assert!(
        status["last_error"]
            .as_str()
            .is_some_and(|error| error.contains("none")),
        "{status}"
    );
}
