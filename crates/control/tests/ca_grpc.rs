//! The CA over real gRPC on a real TLS socket: issuance through the cert manager followed by a
//! real mutual-TLS handshake, and every kind of refusal with its status code and no cert.

mod common;

use common::{EXTRA_SAN, NODE_TOKEN, RunningCa, SERVER_NAME, WORKLOAD_TOKEN, id, start_ca};
use prost_types::value::Kind;
use rcgen::{CertificateParams, KeyPair, SanType};
use rustls::pki_types::ServerName;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use weft_identity::{
    CertManager, CertManagerConfig, GrpcCaClient, GrpcCaClientConfig, SpiffeId, TokenSource,
    TrustBundle, WorkloadCert, client_config, peer_identity, server_config,
};
use weft_proto::ca::IstioCertificateRequest;
use weft_proto::ca::istio_certificate_service_client::IstioCertificateServiceClient;

async fn raw_client(
    ca: &RunningCa,
    server_name: &str,
) -> Result<IstioCertificateServiceClient<Channel>, String> {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca.root_pem()))
        .domain_name(server_name);
    let channel = Endpoint::from_shared(ca.endpoint())
        .map_err(|e| e.to_string())?
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))?;
    Ok(IstioCertificateServiceClient::new(channel))
}

fn csr(uris: &[String]) -> String {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let mut params = CertificateParams::default();
    params.subject_alt_names = uris
        .iter()
        .map(|uri| SanType::URI(uri.clone().try_into().expect("uri")))
        .collect();
    params
        .serialize_request(&key)
        .expect("csr")
        .pem()
        .expect("pem")
}

fn request(
    token: Option<&str>,
    csr: String,
    impersonate: Option<&SpiffeId>,
) -> tonic::Request<IstioCertificateRequest> {
    let mut fields = BTreeMap::new();
    if let Some(identity) = impersonate {
        fields.insert(
            "ImpersonatedIdentity".to_owned(),
            prost_types::Value {
                kind: Some(Kind::StringValue(identity.to_string())),
            },
        );
    }
    let mut request = tonic::Request::new(IstioCertificateRequest {
        csr,
        validity_duration: 3600,
        metadata: Some(prost_types::Struct { fields }),
    });
    if let Some(token) = token {
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("header"),
        );
    }
    request
}

fn grpc_manager(ca: &RunningCa, token: &str, server_name: &str) -> CertManager {
    let client = GrpcCaClient::new(GrpcCaClientConfig {
        cluster_id: Some("Kubernetes".into()),
        ..GrpcCaClientConfig::node_proxy(
            ca.endpoint(),
            server_name,
            TrustBundle::from_pem("cluster.local", ca.root_pem()).expect("bundle"),
            TokenSource::Static(token.into()),
        )
    })
    .expect("client");
    CertManager::new(Arc::new(client), CertManagerConfig::default())
}

/// Mutual TLS over loopback between two workload certificates; returns what each side saw.
async fn mtls(
    client: &WorkloadCert,
    server: &WorkloadCert,
    trust: &TrustBundle,
) -> (Result<SpiffeId, String>, Result<SpiffeId, String>) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let acceptor =
        tokio_rustls::TlsAcceptor::from(server_config(server, trust).expect("server config"));
    let server_side = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.map_err(|e| e.to_string())?;
        let mut tls = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
        let peer = peer_identity(tls.get_ref().1.peer_certificates()).map_err(|e| e.to_string())?;
        tls.write_all(b"ok").await.map_err(|e| e.to_string())?;
        tls.flush().await.map_err(|e| e.to_string())?;
        Ok::<_, String>(peer)
    });
    let connector = tokio_rustls::TlsConnector::from(
        client_config(client, trust, [server.identity().clone()]).expect("client config"),
    );
    let client_side = async {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let name = ServerName::IpAddress(IpAddr::from(Ipv4Addr::LOCALHOST).into());
        let mut tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = [0u8; 2];
        tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
        peer_identity(tls.get_ref().1.peer_certificates()).map_err(|e| e.to_string())
    }
    .await;
    (client_side, server_side.await.expect("server task"))
}

#[tokio::test]
async fn node_proxy_gets_certs_over_grpc_and_they_complete_mutual_tls() {
    let ca = start_ca().await;
    let manager = grpc_manager(&ca, NODE_TOKEN, SERVER_NAME);
    let cert_a = manager.get(&id("a")).await.expect("cert for a");
    let cert_b = manager.get(&id("b")).await.expect("cert for b");
    assert_eq!(
        cert_a.roots(),
        [ca.ca.root().clone()],
        "response ends with the root"
    );
    let lifetime = cert_a.lifetime();
    assert!(
        lifetime > Duration::from_secs(23 * 3600)
            && lifetime <= Duration::from_secs(24 * 3600 + 60),
        "{lifetime:?}"
    );

    let trust = TrustBundle::from_pem("cluster.local", ca.root_pem()).expect("bundle");
    let (client_saw, server_saw) = mtls(&cert_a, &cert_b, &trust).await;
    assert_eq!(client_saw, Ok(id("b")));
    assert_eq!(server_saw, Ok(id("a")));

    let metrics = ca.metrics_text();
    assert!(
        metrics.contains("weft_control_ca_certificates_issued_total 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("weft_control_ca_root_expiry_timestamp_seconds"),
        "{metrics}"
    );
}

#[tokio::test]
async fn cert_manager_reports_refusals_from_the_ca() {
    let ca = start_ca().await;
    let manager = grpc_manager(&ca, NODE_TOKEN, SERVER_NAME);
    let err = manager
        .get(&id("c"))
        .await
        .expect_err("c runs on node-2")
        .to_string();
    assert!(
        err.contains("PermissionDenied") && err.contains("node-1"),
        "{err}"
    );
}

#[tokio::test]
async fn serving_certificate_carries_the_service_name_and_extra_sans_only() {
    let ca = start_ca().await;
    for name in [SERVER_NAME, EXTRA_SAN] {
        let mut client = raw_client(&ca, name).await.expect("TLS name accepted");
        let response = client
            .create_certificate(request(
                Some(WORKLOAD_TOKEN),
                csr(&[id("batch").to_string()]),
                None,
            ))
            .await
            .expect("workload token gets its own identity");
        assert_eq!(response.into_inner().cert_chain.len(), 2);
    }
    let err = raw_client(&ca, "weft-control.other.svc")
        .await
        .expect_err("name not in SANs");
    assert!(
        err.contains("NotValidForName") || err.contains("certificate"),
        "{err}"
    );
}

struct Refusal {
    name: &'static str,
    token: Option<&'static str>,
    csr: String,
    impersonate: Option<SpiffeId>,
    code: Code,
    message: &'static str,
}

fn refusals() -> Vec<Refusal> {
    let a = id("a");
    let weak_rsa = include_str!("data/rsa1024.csr.pem").to_owned();
    let k1 = include_str!("data/secp256k1.csr.pem").to_owned();
    let refusal = |name, token, csr, impersonate: Option<&SpiffeId>, code, message| Refusal {
        name,
        token,
        csr,
        impersonate: impersonate.cloned(),
        code,
        message,
    };
    vec![
        refusal("no token", None, csr(&[a.to_string()]), Some(&a), Code::Unauthenticated, "missing"),
        refusal("wrong token", Some("not-a-token-0123456789"), csr(&[a.to_string()]), Some(&a), Code::Unauthenticated, "unknown token"),
        refusal("identity on another node", Some(NODE_TOKEN), csr(&[id("c").to_string()]), Some(&id("c")), Code::PermissionDenied, "is placed on node node-1"),
        refusal("node without impersonation", Some(NODE_TOKEN), csr(&[a.to_string()]), None, Code::PermissionDenied, "ImpersonatedIdentity"),
        refusal("workload asking for another", Some(WORKLOAD_TOKEN), csr(&[a.to_string()]), Some(&a), Code::PermissionDenied, "may not obtain"),
        refusal("CSR SAN mismatch", Some(NODE_TOKEN), csr(&[id("b").to_string()]), Some(&a), Code::PermissionDenied, "exactly one URI SAN"),
        refusal("two SANs", Some(NODE_TOKEN), csr(&[a.to_string(), id("b").to_string()]), Some(&a), Code::PermissionDenied, "exactly one URI SAN"),
        refusal("no SAN", Some(NODE_TOKEN), csr(&[]), Some(&a), Code::PermissionDenied, "exactly one URI SAN"),
        refusal("RSA 1024", Some(NODE_TOKEN), weak_rsa, Some(&a), Code::InvalidArgument, "1024 bits"),
        refusal("secp256k1", Some(NODE_TOKEN), k1, Some(&a), Code::InvalidArgument, "curve"),
        refusal("garbage CSR", Some(NODE_TOKEN), "-----BEGIN CERTIFICATE REQUEST-----\nZ2FyYmFnZQ==\n-----END CERTIFICATE REQUEST-----\n".into(), Some(&a), Code::InvalidArgument, "PKCS#10"),
        refusal("not PEM", Some(NODE_TOKEN), "hello".into(), Some(&a), Code::InvalidArgument, "PEM"),
        refusal("oversize request", Some(NODE_TOKEN), "x".repeat(100 * 1024), Some(&a), Code::OutOfRange, "too large"),
    ]
}

#[tokio::test]
async fn refusals_get_the_right_status_and_no_certificate() {
    let ca = start_ca().await;
    let mut client = raw_client(&ca, SERVER_NAME).await.expect("client");
    for case in refusals() {
        let status = client
            .create_certificate(request(case.token, case.csr, case.impersonate.as_ref()))
            .await
            .expect_err(case.name);
        assert_eq!(status.code(), case.code, "{}: {status:?}", case.name);
        assert!(
            status.message().contains(case.message),
            "{}: {:?} lacks {:?}",
            case.name,
            status.message(),
            case.message
        );
    }
    let metrics = ca.metrics_text();
    for line in [
        r#"weft_control_ca_certificates_rejected_total{reason="unauthenticated"} 2"#,
        r#"weft_control_ca_certificates_rejected_total{reason="identity_not_allowed"} 3"#,
        r#"weft_control_ca_certificates_rejected_total{reason="san_mismatch"} 3"#,
        r#"weft_control_ca_certificates_rejected_total{reason="weak_key"} 2"#,
        r#"weft_control_ca_certificates_rejected_total{reason="invalid_csr"} 2"#,
        "weft_control_ca_certificates_issued_total 0",
    ] {
        assert!(metrics.contains(line), "missing `{line}` in\n{metrics}");
    }
}

#[tokio::test]
async fn requested_validity_is_capped() {
    let ca = start_ca().await;
    let mut client = raw_client(&ca, SERVER_NAME).await.expect("client");
    let mut req = request(Some(WORKLOAD_TOKEN), csr(&[id("batch").to_string()]), None);
    req.get_mut().validity_duration = 365 * 24 * 3600;
    let chain = client
        .create_certificate(req)
        .await
        .expect("issued")
        .into_inner()
        .cert_chain;
    let report = weft_identity::inspect::inspect_chain_pem(&chain.join(""), Some(ca.root_pem()))
        .expect("inspect");
    assert_eq!(report.verification, Ok(()));
    let leaf = &report.certs[0];
    assert!(
        leaf.not_after - leaf.not_before <= 7 * 24 * 3600 + 60,
        "capped at the 7 day maximum"
    );
}

#[tokio::test]
async fn a_client_that_never_handshakes_does_not_block_others() {
    let ca = start_ca().await;
    // Holds a TCP connection open without sending a ClientHello.
    let _silent = TcpStream::connect(ca.addr).await.expect("tcp");
    let mut client = raw_client(&ca, SERVER_NAME).await.expect("client");
    let response = tokio::time::timeout(
        Duration::from_secs(5),
        client.create_certificate(request(
            Some(WORKLOAD_TOKEN),
            csr(&[id("batch").to_string()]),
            None,
        )),
    )
    .await
    .expect("served while another handshake is pending");
    assert!(response.is_ok());
}
