//! A `CreateCertificate` call to the control plane's CA from an authenticated node:
//! the request message, its `ImpersonatedIdentity` metadata and the CSR (PEM, then DER:
//! signature, key, SANs) go through the real service, which signs what it accepts.
//!
//! The first byte picks what the rest is: 0, a CSR in DER (sent as PEM for an identity
//! the node may have); 1, the CSR's PEM text; otherwise an encoded `IstioCertificateRequest`.

#![no_main]

use base64::Engine;
use libfuzzer_sys::fuzz_target;
use prost::Message;
use std::sync::{Arc, LazyLock};
use tonic::Request;
use weft_control::ca_service::{
    CaMetrics, CaService, CaServiceConfig, StaticNodeIdentities, StaticServingNames,
};
use weft_control::callers::TokenFile;
use weft_identity::CertificateAuthority;
use weft_identity::ca::RootRotation;
use weft_identity::provider::IMPERSONATED_IDENTITY_KEY;
use weft_proto::ca::IstioCertificateRequest;
use weft_proto::ca::istio_certificate_service_server::IstioCertificateService;

const NODE_TOKEN: &str = "node-token-0123456789";
const IDENTITY: &str = "spiffe://cluster.local/ns/shop/sa/web";

static SERVICE: LazyLock<(tokio::runtime::Runtime, CaService)> = LazyLock::new(|| {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let tokens = TokenFile::parse(
        &format!("tokens: [{{token: {NODE_TOKEN}, node: n1}}]"),
        "fuzz",
    )
    .expect("tokens");
    let identity = IDENTITY.parse().expect("identity");
    let service = CaService::new(
        Arc::new(RootRotation::new(Arc::new(
            CertificateAuthority::generate_in_memory().expect("ca"),
        ))),
        Arc::new(tokens),
        Arc::new(StaticNodeIdentities::new().with("n1", IDENTITY.parse().expect("identity"))),
        CaMetrics::new(),
        CaServiceConfig::default(),
    )
    .with_serving_names(Arc::new(
        StaticServingNames::new().with(identity, "shop.example.com"),
    ));
    (runtime, service)
});

fuzz_target!(|bytes: &[u8]| {
    let Some((&mode, rest)) = bytes.split_first() else {
        return;
    };
    let message = match mode {
        0 => request_for(pem("CERTIFICATE REQUEST", rest)),
        1 => request_for(String::from_utf8_lossy(rest).into_owned()),
        _ => match IstioCertificateRequest::decode(rest) {
            Ok(message) => message,
            Err(_) => return,
        },
    };
    let mut request = Request::new(message);
    let bearer = format!("Bearer {NODE_TOKEN}").parse().expect("ascii");
    request.metadata_mut().insert("authorization", bearer);
    let (runtime, service) = &*SERVICE;
    let _ = runtime.block_on(service.create_certificate(request));
});

fn request_for(csr: String) -> IstioCertificateRequest {
    let identity = prost_types::Value {
        kind: Some(prost_types::value::Kind::StringValue(IDENTITY.into())),
    };
    IstioCertificateRequest {
        csr,
        validity_duration: 3600,
        metadata: Some(prost_types::Struct {
            fields: [(IMPERSONATED_IDENTITY_KEY.to_owned(), identity)].into(),
        }),
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    format!("-----BEGIN {label}-----\n{body}\n-----END {label}-----\n")
}
