//! `weft x cert inspect`, run as a user would, on chains issued by the mesh CA.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;
use weft_identity::ca::csr::verify_csr_pem;
use weft_identity::{CertificateAuthority, SpiffeId, key_and_csr};

fn scratch_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weft-cert-cli-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    dir
}

fn issued_chain(ca: &CertificateAuthority) -> Vec<String> {
    let identity = SpiffeId::new("cluster.local", "default", "reviews").expect("id");
    let (_, csr) = key_and_csr(&identity).expect("csr");
    let csr = verify_csr_pem(&csr).expect("csr verifies");
    ca.sign_workload(&csr.spki_der, &identity, Duration::from_secs(3600))
        .expect("sign")
        .pem
}

fn inspect(args: &[&std::path::Path]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["x", "cert", "inspect"])
        .args(args)
        .output()
        .expect("run weft");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[test]
fn inspect_shows_identity_and_verifies_the_chain() {
    let dir = scratch_dir("ok");
    let ca = CertificateAuthority::generate_in_memory().expect("ca");
    let chain = issued_chain(&ca);
    let pem_path = dir.join("chain.pem");
    std::fs::write(&pem_path, chain.join("")).expect("write");
    let (code, stdout) = inspect(&[&pem_path]);
    assert_eq!(code, 0, "{stdout}");
    assert!(
        stdout.contains("identity:  spiffe://cluster.local/ns/default/sa/reviews"),
        "{stdout}"
    );
    assert!(
        stdout.contains("issuer:    O=weft, CN=weft mesh root CA"),
        "{stdout}"
    );
    assert!(stdout.contains("(valid now)"), "{stdout}");
    assert!(stdout.contains("chain: ok"), "{stdout}");

    // The JSON form of a CA response works too.
    let json_path = dir.join("response.json");
    std::fs::write(
        &json_path,
        serde_json::json!({ "certChain": chain }).to_string(),
    )
    .expect("write");
    let (code, stdout) = inspect(&[&json_path]);
    assert_eq!(code, 0, "{stdout}");
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn inspect_against_a_foreign_root_fails_with_exit_one() {
    let dir = scratch_dir("foreign");
    let ca = CertificateAuthority::generate_in_memory().expect("ca");
    let other = CertificateAuthority::generate_in_memory().expect("other ca");
    let leaf_path = dir.join("leaf.pem");
    let root_path = dir.join("root.pem");
    std::fs::write(&leaf_path, &issued_chain(&ca)[0]).expect("write");
    std::fs::write(&root_path, other.root_pem()).expect("write");
    let (code, stdout) = inspect(&[&leaf_path, std::path::Path::new("--root"), &root_path]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("chain: NOT OK"), "{stdout}");
    std::fs::remove_dir_all(&dir).expect("cleanup");
}
