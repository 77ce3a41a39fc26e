//! The CA's root of trust: a generated root survives restarts, and a plug-in CA directory
//! (Istio `cacerts` layout) is used with its chain verifying to the given root.

mod common;

use common::{handshake, id, issue};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use weft_identity::ca::{
    CA_CERT_FILE, CA_KEY_FILE, CERT_CHAIN_FILE, CaError, ROOT_CERT_FILE, ROOT_KEY_FILE,
};
use weft_identity::inspect::inspect_chain_pem;
use weft_identity::{CertificateAuthority, TrustBundle, client_config, key_and_csr, server_config};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o777
}

fn sign_probe(ca: &CertificateAuthority) -> Vec<String> {
    let identity = id("default", "probe");
    let (_, csr) = key_and_csr(&identity).expect("csr");
    let verified = weft_identity::ca::csr::verify_csr_pem(&csr).expect("valid csr");
    ca.sign_workload(&verified.spki_der, &identity, Duration::from_secs(600))
        .expect("signs")
        .pem
}

#[test]
fn generated_root_is_persisted_privately_and_kept_across_restarts() {
    let base = tempfile::tempdir().expect("tempdir");
    let dir = base.path().join("state/ca");
    let first = CertificateAuthority::load_or_create(None, &dir).expect("first start");
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join(ROOT_KEY_FILE)), 0o600);
    let second = CertificateAuthority::load_or_create(None, &dir).expect("restart");
    assert_eq!(first.root(), second.root(), "restart keeps the same root");

    // A certificate signed after the restart verifies to the root from before it.
    let chain = sign_probe(&second).join("");
    let report = inspect_chain_pem(&chain, Some(first.root_pem())).expect("inspect");
    assert_eq!(report.verification, Ok(()));
    assert_eq!(report.certs.len(), 2, "leaf + root");
    assert_eq!(
        report.certs[0]
            .spiffe_id
            .as_ref()
            .map(ToString::to_string)
            .as_deref(),
        Some("spiffe://cluster.local/ns/default/sa/probe")
    );
}

#[test]
fn half_present_state_is_an_error_not_a_new_root() {
    let base = tempfile::tempdir().expect("tempdir");
    let dir = base.path().join("ca");
    CertificateAuthority::load_or_create_self_signed(&dir).expect("create");
    std::fs::remove_file(dir.join(ROOT_KEY_FILE)).expect("rm key");
    let err = CertificateAuthority::load_or_create_self_signed(&dir).expect_err("key missing");
    assert!(
        matches!(
            err,
            CaError::StateIncomplete {
                missing: ROOT_KEY_FILE,
                ..
            }
        ),
        "{err}"
    );
}

struct PluginCa {
    root_pem: String,
    intermediate_pem: String,
}

/// Writes an Istio-style `cacerts` directory: a root, and an intermediate signed by it.
fn write_plugin_dir(dir: &Path, key_for_intermediate: Option<&KeyPair>) -> PluginCa {
    let ca_params = |cn: &str| {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params
    };
    let root_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).expect("root key");
    let root_params = ca_params("test root");
    let root = root_params.self_signed(&root_key).expect("root");
    let issuer = Issuer::new(root_params, root_key);
    let intermediate_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let intermediate = ca_params("test intermediate")
        .signed_by(&intermediate_key, &issuer)
        .expect("intermediate");
    let written_key = key_for_intermediate.unwrap_or(&intermediate_key);
    std::fs::create_dir_all(dir).expect("mkdir");
    std::fs::write(dir.join(CA_CERT_FILE), intermediate.pem()).expect("write");
    std::fs::write(dir.join(CA_KEY_FILE), written_key.serialize_pem()).expect("write");
    std::fs::write(
        dir.join(CERT_CHAIN_FILE),
        format!("{}{}", intermediate.pem(), root.pem()),
    )
    .expect("write");
    std::fs::write(dir.join(ROOT_CERT_FILE), root.pem()).expect("write");
    PluginCa {
        root_pem: root.pem(),
        intermediate_pem: intermediate.pem(),
    }
}

#[tokio::test]
async fn plugin_ca_signs_with_the_intermediate_and_chains_to_the_given_root() {
    let base = tempfile::tempdir().expect("tempdir");
    let plugin_dir = base.path().join("cacerts");
    let plugin = write_plugin_dir(&plugin_dir, None);
    let state_dir = base.path().join("state");
    let ca = CertificateAuthority::load_or_create(Some(&plugin_dir), &state_dir)
        .expect("plug-in CA loads");
    assert!(
        !state_dir.join(ROOT_KEY_FILE).exists(),
        "no self-signed root generated"
    );
    assert_eq!(ca.root_pem(), plugin.root_pem);

    let chain = sign_probe(&ca);
    assert_eq!(chain.len(), 3, "leaf, intermediate, root (no duplicates)");
    assert_eq!(chain[1], plugin.intermediate_pem);
    assert_eq!(chain[2], plugin.root_pem);
    let report = inspect_chain_pem(&chain.join(""), Some(&plugin.root_pem)).expect("inspect");
    assert_eq!(report.verification, Ok(()), "{report}");
    assert!(report.certs[0].issuer.contains("test intermediate"));

    // Workloads with plug-in CA certificates complete mutual TLS trusting only the given root.
    let ca = Arc::new(ca);
    let (a, b) = (id("default", "a"), id("default", "b"));
    let (cert_a, cert_b) = (issue(&ca, &a).await, issue(&ca, &b).await);
    let trust = TrustBundle::from_pem("cluster.local", &plugin.root_pem).expect("bundle");
    let outcome = handshake(
        client_config(&cert_a, &trust, [b.clone()]).expect("client"),
        server_config(&cert_b, &trust).expect("server"),
    )
    .await;
    assert_eq!(outcome.client_saw, Ok(b));
    assert_eq!(outcome.server_saw, Ok(a));
}

#[test]
fn plugin_ca_with_a_key_that_does_not_match_is_refused() {
    let base = tempfile::tempdir().expect("tempdir");
    let wrong = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    write_plugin_dir(base.path(), Some(&wrong));
    let err = CertificateAuthority::load_plugin(base.path()).expect_err("mismatch detected");
    assert!(matches!(err, CaError::ChainDoesNotVerify { .. }), "{err}");
}

#[test]
fn plugin_ca_missing_a_file_names_it() {
    let base = tempfile::tempdir().expect("tempdir");
    write_plugin_dir(base.path(), None);
    std::fs::remove_file(base.path().join(CA_KEY_FILE)).expect("rm");
    let err = CertificateAuthority::load_plugin(base.path()).expect_err("incomplete");
    assert!(err.to_string().contains(CA_KEY_FILE), "{err}");
}

#[test]
fn inspect_reports_a_chain_that_does_not_verify() {
    let ca = CertificateAuthority::generate_in_memory().expect("ca");
    let other = CertificateAuthority::generate_in_memory().expect("other");
    let chain = sign_probe(&ca);
    let report = inspect_chain_pem(&chain[0], Some(other.root_pem())).expect("inspect");
    assert!(report.verification.is_err());
    let text = report.to_string();
    assert!(
        text.contains("identity:  spiffe://cluster.local/ns/default/sa/probe"),
        "{text}"
    );
    assert!(text.contains("chain: NOT OK"), "{text}");
    let good = inspect_chain_pem(&chain.join(""), None).expect("inspect");
    assert!(good.to_string().contains("chain: ok"), "{good}");
}
