//! Caller authentication and authorization on the control plane's one secure port, end to
//! end through `run()` with the example mesh: the bearer token decides everything. Missing
//! or unknown tokens get UNAUTHENTICATED from both xDS and the CA; a node token gets
//! certificates only for identities of pods the config places on that node. Token file
//! edits apply to new requests; a broken edit keeps the last good tokens.

mod process_support;

use process_support::client::{AdsClient, authenticated, tls_channel};
use process_support::control::{
    NODE_A_TOKEN, NODE_B_TOKEN, RunningControl, copy_examples, eventually, start_control,
};
use prost_types::value::Kind;
use rcgen::{CertificateParams, KeyPair, SanType};
use std::collections::BTreeMap;
use std::time::Duration;
use tonic::Code;
use tonic::transport::Channel;
use weft_proto::ADDRESS_TYPE_URL;
use weft_proto::ca::IstioCertificateRequest;
use weft_proto::ca::istio_certificate_service_client::IstioCertificateServiceClient;
use x509_parser::extensions::GeneralName;

const WAIT: Duration = Duration::from_secs(20);
/// web-0 runs on node-a (web-1 on node-b).
const WEB: &str = "spiffe://cluster.local/ns/frontend/sa/web";
/// reports-0 is the only pod with this identity, on node-b.
const REPORTS: &str = "spiffe://cluster.local/ns/frontend/sa/reports";
const UNKNOWN_TOKEN: &str = "not-a-token-in-the-file";

async fn channel(control: &RunningControl) -> Channel {
    tls_channel(control.addrs.secure, &control.root_pem())
        .await
        .expect("TLS to the secure port")
}

/// The status code the xDS stream ends with (from the call or its first message).
async fn xds_refusal(control: &RunningControl, token: Option<&str>) -> Code {
    let opened = AdsClient::open(
        channel(control).await,
        token,
        "ztunnel~x",
        &[ADDRESS_TYPE_URL],
    )
    .await;
    match opened {
        Err(status) => status.code(),
        Ok(mut ads) => ads
            .recv(WAIT)
            .await
            .expect_err("stream must be refused")
            .code(),
    }
}

fn csr_request(identity: &str, token: Option<&str>) -> tonic::Request<IstioCertificateRequest> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let mut params = CertificateParams::default();
    params.subject_alt_names = vec![SanType::URI(identity.try_into().expect("uri"))];
    let csr = params
        .serialize_request(&key)
        .expect("csr")
        .pem()
        .expect("pem");
    let metadata = prost_types::Struct {
        fields: BTreeMap::from([(
            "ImpersonatedIdentity".to_owned(),
            prost_types::Value {
                kind: Some(Kind::StringValue(identity.to_owned())),
            },
        )]),
    };
    authenticated(
        IstioCertificateRequest {
            csr,
            validity_duration: 3600,
            metadata: Some(metadata),
        },
        token,
    )
}

async fn create_certificate(
    control: &RunningControl,
    identity: &str,
    token: Option<&str>,
) -> Result<Vec<String>, tonic::Status> {
    let mut ca = IstioCertificateServiceClient::new(channel(control).await);
    let response = ca.create_certificate(csr_request(identity, token)).await?;
    Ok(response.into_inner().cert_chain)
}

fn uri_sans(pem: &str) -> Vec<String> {
    let (_, parsed) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).expect("pem");
    let cert = parsed.parse_x509().expect("x509");
    let sans = cert
        .subject_alternative_name()
        .expect("SAN ext")
        .expect("has SANs");
    sans.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::URI(uri) => Some((*uri).to_owned()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn missing_or_unknown_tokens_are_unauthenticated_for_xds_and_ca() {
    let control = start_control(copy_examples).await;
    for token in [None, Some(UNKNOWN_TOKEN)] {
        assert_eq!(
            xds_refusal(&control, token).await,
            Code::Unauthenticated,
            "xDS, token {token:?}"
        );
        let refused = create_certificate(&control, WEB, token)
            .await
            .expect_err("CA refuses");
        assert_eq!(
            refused.code(),
            Code::Unauthenticated,
            "CA, token {token:?}: {refused:?}"
        );
    }
    let (_, metrics) = control.admin_get("/metrics").await;
    assert!(
        metrics.contains("weft_control_xds_connected_proxies 0"),
        "{metrics}"
    );
}

#[tokio::test]
async fn node_token_gets_certificates_only_for_pods_on_its_node() {
    let control = start_control(copy_examples).await;
    let chain = create_certificate(&control, WEB, Some(NODE_A_TOKEN))
        .await
        .expect("web-0 runs on node-a");
    assert_eq!(uri_sans(&chain[0]), [WEB]);
    assert_eq!(
        chain.last().map(String::as_str),
        Some(control.root_pem().as_str()),
        "root last"
    );

    let refused = create_certificate(&control, REPORTS, Some(NODE_A_TOKEN))
        .await
        .expect_err("reports runs only on node-b");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");

    let chain = create_certificate(&control, REPORTS, Some(NODE_B_TOKEN))
        .await
        .expect("node-b may act for reports");
    assert_eq!(uri_sans(&chain[0]), [REPORTS]);
}

#[tokio::test]
async fn node_placement_follows_config_edits() {
    let control = start_control(copy_examples).await;
    assert!(
        create_certificate(&control, REPORTS, Some(NODE_A_TOKEN))
            .await
            .is_err()
    );
    // Pin the reports Deployment to node-a: node-a may now act for it, node-b no longer.
    let path = control.config_dir().join("frontend.yaml");
    let frontend = std::fs::read_to_string(&path).expect("frontend.yaml");
    let pinned = frontend.replace(
        "      serviceAccountName: reports\n",
        "      serviceAccountName: reports\n      nodeName: node-a\n",
    );
    assert_ne!(pinned, frontend, "edit applies");
    std::fs::write(&path, pinned).expect("edit");
    eventually("node-a may act for reports", WAIT, || async {
        create_certificate(&control, REPORTS, Some(NODE_A_TOKEN))
            .await
            .ok()
    })
    .await;
    let refused = create_certificate(&control, REPORTS, Some(NODE_B_TOKEN))
        .await
        .expect_err("reports left node-b");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
}

/// Replaces the token file the way editors do: a new file renamed over the old one.
fn replace_token_file(control: &RunningControl, text: &str) {
    let path = control.token_file();
    let temporary = path.with_extension("yaml.tmp");
    std::fs::write(&temporary, text).expect("write new token file");
    std::fs::rename(&temporary, &path).expect("rename over the token file");
}

/// The `weft_control_token_file_reloads_total{result}` counter.
async fn token_reloads(control: &RunningControl, result: &str) -> u64 {
    let (_, metrics) = control.admin_get("/metrics").await;
    let prefix = format!("weft_control_token_file_reloads_total{{result=\"{result}\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map_or(0, |count| count.parse().expect("counter value"))
}

#[tokio::test]
async fn token_file_edits_apply_to_new_requests_and_a_broken_edit_keeps_the_last_good_tokens() {
    let control = start_control(copy_examples).await;
    create_certificate(&control, WEB, Some(NODE_A_TOKEN))
        .await
        .expect("node-a's token works at start");
    let mut node_a_stream = AdsClient::open(
        channel(&control).await,
        Some(NODE_A_TOKEN),
        "ztunnel~a",
        &[ADDRESS_TYPE_URL],
    )
    .await
    .expect("xDS stream opens with node-a's token");
    node_a_stream.recv(WAIT).await.expect("node-a gets config");

    let only_b = format!("tokens:\n  - token: {NODE_B_TOKEN}\n    node: node-b\n");
    replace_token_file(&control, &only_b);
    let refused = eventually("node-a's removed token to be refused", WAIT, || async {
        create_certificate(&control, WEB, Some(NODE_A_TOKEN))
            .await
            .err()
    })
    .await;
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    assert_eq!(
        xds_refusal(&control, Some(NODE_A_TOKEN)).await,
        Code::Unauthenticated
    );
    let closed = node_a_stream
        .recv(WAIT)
        .await
        .expect_err("the stream opened with the removed token is closed");
    assert_eq!(closed.code(), Code::Unauthenticated, "{closed:?}");

    let good_reloads = eventually("the good edit to be counted", WAIT, || async {
        Some(token_reloads(&control, "ok").await).filter(|count| *count > 0)
    })
    .await;
    let failed_reloads = token_reloads(&control, "error").await;
    std::fs::write(control.token_file(), "tokens: [ {token: broken").expect("bad edit");
    eventually("the broken edit to be read and refused", WAIT, || async {
        (token_reloads(&control, "error").await > failed_reloads).then_some(())
    })
    .await;
    assert_eq!(token_reloads(&control, "ok").await, good_reloads);
    create_certificate(&control, REPORTS, Some(NODE_B_TOKEN))
        .await
        .expect("node-b's token still works after the broken edit");
    let mut ads = AdsClient::open(
        channel(&control).await,
        Some(NODE_B_TOKEN),
        "ztunnel~b",
        &[ADDRESS_TYPE_URL],
    )
    .await
    .expect("xDS stream opens");
    ads.recv(WAIT).await.expect("xDS with node-b's token");
    assert!(
        create_certificate(&control, WEB, Some(NODE_A_TOKEN))
            .await
            .is_err(),
        "the broken edit did not bring back node-a"
    );
}

/// A token moved to another node in the token file stands for that node from then on: a
/// stream opened with it as node-a (filtered for node-a, e.g. a gateway's keys) is closed,
/// and reopening gets node-b's view.
#[tokio::test]
async fn a_token_moved_to_another_node_closes_the_streams_opened_with_it() {
    let control = start_control(copy_examples).await;
    let mut stream = AdsClient::open(
        channel(&control).await,
        Some(NODE_A_TOKEN),
        "ztunnel~a",
        &[ADDRESS_TYPE_URL],
    )
    .await
    .expect("xDS stream opens with node-a's token");
    stream.recv(WAIT).await.expect("node-a gets config");
    let moved = format!(
        "tokens:\n  - token: {NODE_A_TOKEN}\n    node: node-b\n  - token: {NODE_B_TOKEN}\n    node: node-b\n"
    );
    replace_token_file(&control, &moved);
    let closed = loop {
        match stream.recv(WAIT).await {
            Ok(_) => {}
            Err(status) => break status,
        }
    };
    assert_eq!(closed.code(), Code::Unauthenticated, "{closed:?}");
    create_certificate(&control, REPORTS, Some(NODE_A_TOKEN))
        .await
        .expect("the moved token now gets node-b's identities");
}
