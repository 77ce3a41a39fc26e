//! Gateway auto-certificates through the real control-plane process: the CA signs a
//! listener hostname for the identity the Gateway runs under (`<gw>-<class>`), as decided by
//! the config directory it watches, refuses other names and other identities, and follows an
//! edit of the listener's hostname.

mod process_support;

use process_support::control::{NODE_A_TOKEN, eventually, start_control};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tonic::Code;
use weft_identity::tls::leaf_info;
use weft_identity::{
    CertManager, CertManagerConfig, FetchError, GrpcCaClient, GrpcCaClientConfig, SpiffeId,
    TokenSource, TrustBundle, WorkloadCert,
};

const WAIT: Duration = Duration::from_secs(20);
const FILE: &str = "gateway.yaml";

/// One node and a Gateway `edge/public` of class `weft` with an auto-certificate listener.
fn gateway_yaml(hostname: &str) -> String {
    format!(
        "apiVersion: v1
kind: Node
metadata: {{name: node-a}}
spec: {{podCIDR: 10.244.1.0/24}}
---
apiVersion: v1
kind: Namespace
metadata: {{name: edge}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: public, namespace: edge}}
spec:
  gatewayClassName: weft
  listeners:
  - name: https
    port: 443
    protocol: HTTPS
    hostname: {hostname}
    tls:
      mode: Terminate
      options: {{weft.dev/auto-certificate: \"true\"}}
"
    )
}

fn id(sa: &str) -> SpiffeId {
    SpiffeId::new("cluster.local", "edge", sa).expect("id")
}

/// What node-a's proxy would get asking for `identity`'s certificate with `dns_names`.
async fn ask(
    secure: std::net::SocketAddr,
    root_pem: &str,
    identity: &SpiffeId,
    dns_names: &[&str],
) -> Result<Arc<WorkloadCert>, FetchError> {
    let client = GrpcCaClient::new(GrpcCaClientConfig {
        timeout: WAIT,
        ..GrpcCaClientConfig::node_proxy(
            format!("https://{secure}"),
            "weft-control.weft-system.svc",
            TrustBundle::from_pem("cluster.local", root_pem).expect("bundle"),
            TokenSource::Static(NODE_A_TOKEN.into()),
        )
    })
    .expect("client");
    let config = CertManagerConfig {
        dns_names: dns_names.iter().map(|name| (*name).to_owned()).collect(),
        ..CertManagerConfig::default()
    };
    let manager = CertManager::new(Arc::new(client), config);
    manager.get(identity).await.map_err(|err| match err {
        weft_identity::CertError::Fetch { source, .. } => source,
        other => panic!("{other}"),
    })
}

fn refused_code(result: Result<Arc<WorkloadCert>, FetchError>) -> Option<Code> {
    match result {
        Err(FetchError::Refused { code, .. }) => Some(code),
        _ => None,
    }
}

#[tokio::test]
async fn the_ca_signs_the_hostnames_of_the_gateway_the_identity_runs_and_follows_edits() {
    let control = start_control(|dir: &Path| {
        std::fs::write(dir.join(FILE), gateway_yaml("shop.example.com")).expect("write");
    })
    .await;
    let (secure, root) = (control.addrs.secure, control.root_pem());
    let gateway = id("public-weft");

    let cert = ask(secure, &root, &gateway, &["shop.example.com"])
        .await
        .expect("the gateway's hostname is signed");
    let leaf = leaf_info(&cert.chain()[0]).expect("leaf");
    assert_eq!(leaf.spiffe_id, Some(gateway.clone()));
    assert_eq!(leaf.dns_sans, ["shop.example.com"]);

    let other_name = ask(secure, &root, &gateway, &["evil.example"]).await;
    assert_eq!(refused_code(other_name), Some(Code::PermissionDenied));
    // without DNS names the gateway's identity is served as any workload's
    ask(secure, &root, &gateway, &[])
        .await
        .expect("SPIFFE only");

    let edit = gateway_yaml("www.example.com");
    std::fs::write(control.config_dir().join(FILE), edit).expect("edit");
    eventually("the new hostname to be signed", WAIT, || {
        let root = root.clone();
        let gateway = gateway.clone();
        async move {
            let result = ask(secure, &root, &gateway, &["www.example.com"]).await;
            result.ok()
        }
    })
    .await;
    let old_name = ask(secure, &root, &gateway, &["shop.example.com"]).await;
    assert_eq!(refused_code(old_name), Some(Code::PermissionDenied));
}
