//! `weft status` (the real binary) against a running control plane with the example mesh:
//! a spec-only delta xDS client connects and ACKs, and the status table shows it SYNCED
//! for both types; once it disconnects the table says no proxies are connected. Also:
//! `weft control` refuses to start without a readable token file and says why.

#[path = "../../control/tests/process_support/mod.rs"]
mod process_support;

use process_support::client::{AdsClient, tls_channel};
use process_support::control::{NODE_A_TOKEN, copy_examples, eventually, start_control};
use std::time::Duration;
use weft_proto::{ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL};

const WAIT: Duration = Duration::from_secs(20);
const NODE_ID: &str = "ztunnel~10.244.1.9~ztunnel-a.istio-system~istio-system.svc.cluster.local";

async fn weft_status(admin: &str) -> String {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["status", "--control", admin])
        .output()
        .await
        .expect("run weft status");
    assert!(output.status.success(), "weft status failed: {output:?}");
    String::from_utf8(output.stdout).expect("utf-8 table")
}

/// True when the table has a SYNCED row for `NODE_ID` (cluster `Kubernetes`) for both
/// resource types.
fn synced(table: &str) -> bool {
    ["Address", "Authorization"].iter().all(|short_type| {
        table.lines().any(|line| {
            let cells: Vec<&str> = line.split_whitespace().collect();
            cells.first() == Some(&NODE_ID)
                && cells.get(1) == Some(&"Kubernetes")
                && cells.get(2) == Some(short_type)
                && cells.last() == Some(&"SYNCED")
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weft_status_shows_a_connected_proxy_as_synced() {
    let control = start_control(copy_examples).await;
    let admin = control.addrs.admin.to_string();
    assert!(
        weft_status(&admin)
            .await
            .starts_with("no proxies connected\n")
    );

    let channel = tls_channel(control.addrs.secure, &control.root_pem())
        .await
        .expect("TLS");
    let mut ads = AdsClient::open(
        channel,
        Some(NODE_A_TOKEN),
        NODE_ID,
        &[ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL],
    )
    .await
    .expect("stream");
    ads.sync_until(WAIT, |ads| {
        ads.count(ADDRESS_TYPE_URL) > 0 && ads.count(AUTHORIZATION_TYPE_URL) > 0
    })
    .await
    .expect("initial state");

    let table = eventually("weft status shows the proxy SYNCED", WAIT, || async {
        let table = weft_status(&admin).await;
        synced(&table).then_some(table)
    })
    .await;
    assert!(table.starts_with("PROXY"), "{table}");

    drop(ads);
    eventually("weft status shows the proxy gone", WAIT, || async {
        (weft_status(&admin)
            .await
            .starts_with("no proxies connected\n"))
        .then_some(())
    })
    .await;
}

#[test]
fn weft_control_without_a_token_file_exits_naming_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("no-such-tokens.yaml");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_weft"))
        .arg("control")
        .arg("--config-dir")
        .arg(dir.path())
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("--token-file")
        .arg(&missing)
        .args([
            "--secure-addr",
            "127.0.0.1:0",
            "--admin-addr",
            "127.0.0.1:0",
        ])
        .output()
        .expect("run weft control");
    assert!(!output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no-such-tokens.yaml"), "{stderr}");
}
