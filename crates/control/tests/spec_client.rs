//! "Done when": a client written against the wire protocol alone (Istio CA API, see
//! docs/wire.md) using only the generated gRPC stubs, rcgen and rustls — no weft-identity
//! code — gets a certificate for a workload on its node and is refused for any other.

mod common;

use common::{NODE_TOKEN, SERVER_NAME, start_ca};
use prost_types::value::Kind;
use rcgen::{CertificateParams, KeyPair, SanType};
use std::collections::BTreeMap;
use tonic::Code;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};
use weft_proto::ca::IstioCertificateRequest;
use weft_proto::ca::istio_certificate_service_client::IstioCertificateServiceClient;
use x509_parser::extensions::GeneralName;

fn spec_request(spiffe_id: &str) -> tonic::Request<IstioCertificateRequest> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let mut params = CertificateParams::default();
    params.subject_alt_names = vec![SanType::URI(spiffe_id.try_into().expect("uri"))];
    let csr = params
        .serialize_request(&key)
        .expect("csr")
        .pem()
        .expect("pem");
    let metadata = prost_types::Struct {
        fields: BTreeMap::from([(
            "ImpersonatedIdentity".to_owned(),
            prost_types::Value {
                kind: Some(Kind::StringValue(spiffe_id.to_owned())),
            },
        )]),
    };
    let mut request = tonic::Request::new(IstioCertificateRequest {
        csr,
        validity_duration: 3600,
        metadata: Some(metadata),
    });
    let headers = request.metadata_mut();
    headers.insert(
        "authorization",
        format!("Bearer {NODE_TOKEN}").parse().expect("header"),
    );
    headers.insert("clusterid", "Kubernetes".parse().expect("header"));
    request
}

#[tokio::test]
async fn spec_only_client_gets_its_nodes_workload_and_nothing_else() {
    let ca = start_ca().await;
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca.root_pem()))
        .domain_name(SERVER_NAME);
    let channel = Endpoint::from_shared(ca.endpoint())
        .expect("endpoint")
        .tls_config(tls)
        .expect("tls")
        .connect()
        .await
        .expect("connect");
    let mut client = IstioCertificateServiceClient::new(channel);

    let on_node = "spiffe://cluster.local/ns/default/sa/a";
    let chain = client
        .create_certificate(spec_request(on_node))
        .await
        .expect("workload on node-1 is issued")
        .into_inner()
        .cert_chain;
    assert_eq!(chain.len(), 2, "leaf then root");
    assert_eq!(chain[1], ca.root_pem(), "root last");
    let leaf_pem = x509_parser::pem::parse_x509_pem(chain[0].as_bytes())
        .expect("pem")
        .1;
    let leaf = leaf_pem.parse_x509().expect("x509");
    let sans: Vec<String> = leaf
        .subject_alternative_name()
        .expect("san ext")
        .expect("has SAN")
        .value
        .general_names
        .iter()
        .map(|name| match name {
            GeneralName::URI(uri) => (*uri).to_owned(),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(sans, [on_node]);

    for elsewhere in [
        "spiffe://cluster.local/ns/default/sa/c",
        "spiffe://cluster.local/ns/kube-system/sa/a",
    ] {
        let status = client
            .create_certificate(spec_request(elsewhere))
            .await
            .expect_err("not on node-1");
        assert_eq!(
            status.code(),
            Code::PermissionDenied,
            "{elsewhere}: {status:?}"
        );
    }
}
