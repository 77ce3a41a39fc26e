//! A running CA: the real `CaService` behind the real secure port on an ephemeral loopback
//! port, with a token file and a node placement map.
#![allow(dead_code)]

use prometheus_client::registry::Registry;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use tokio::sync::oneshot;
use weft_control::ca_service::{
    CaMetrics, CaService, CaServiceConfig, StaticNodeIdentities, StaticServingNames,
};
use weft_control::callers::TokenFile;
use weft_control::secure_server::{SecureServer, SecureServerConfig};
use weft_identity::ca::RootRotation;
use weft_identity::{CertificateAuthority, SpiffeId};

pub const NODE_TOKEN: &str = "node-1-token-0123456789abcdef";
pub const WORKLOAD_TOKEN: &str = "batch-token-0123456789abcdef";
pub const NAMESPACE: &str = "weft-test";
pub const SERVER_NAME: &str = "weft-control.weft-test.svc";
pub const EXTRA_SAN: &str = "ca.weft.test";

pub fn id(sa: &str) -> SpiffeId {
    SpiffeId::new("cluster.local", "default", sa).expect("id")
}

pub struct RunningCa {
    pub addr: SocketAddr,
    pub ca: Arc<CertificateAuthority>,
    /// The CA service's root rotation (signing `ca` until a rotation begins).
    pub rotation: Arc<RootRotation>,
    pub registry: Registry,
    stop: Option<oneshot::Sender<()>>,
}

impl RunningCa {
    pub fn endpoint(&self) -> String {
        format!("https://{}", self.addr)
    }

    pub fn root_pem(&self) -> &str {
        self.ca.root_pem()
    }

    /// The metrics in Prometheus text format.
    pub fn metrics_text(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("encode");
        text
    }
}

impl Drop for RunningCa {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Starts a CA where node-1 runs workloads `a` and `b`, the node token belongs to node-1 and
/// the workload token to identity `batch`.
pub async fn start_ca() -> RunningCa {
    start_ca_with_serving_names(StaticServingNames::new()).await
}

/// [`start_ca`] where the identities of `names` may have those DNS names.
pub async fn start_ca_with_serving_names(names: StaticServingNames) -> RunningCa {
    start_ca_with(names, SecureServerConfig::default()).await
}

/// [`start_ca_with_serving_names`] with the secure port's limits and deadlines of `secure`
/// (its names are the test's).
pub async fn start_ca_with(names: StaticServingNames, secure: SecureServerConfig) -> RunningCa {
    let ca = Arc::new(CertificateAuthority::generate_in_memory().expect("ca"));
    let rotation = Arc::new(RootRotation::new(Arc::clone(&ca)));
    let tokens = TokenFile::parse(
        &format!(
            "tokens:\n  - token: {NODE_TOKEN}\n    node: node-1\n  - token: {WORKLOAD_TOKEN}\n    identity: {}\n",
            id("batch")
        ),
        "test tokens",
    )
    .expect("tokens");
    let nodes = StaticNodeIdentities::new()
        .with("node-1", id("a"))
        .with("node-1", id("b"))
        .with("node-2", id("c"));
    let metrics = CaMetrics::new();
    let mut registry = Registry::with_prefix("weft_control");
    metrics.register(&mut registry);
    let secure = SecureServerConfig {
        namespace: NAMESPACE.into(),
        extra_sans: vec![EXTRA_SAN.into()],
        ..secure
    };
    // As `weft control` wires it: the secure port's names are reserved.
    let service = CaService::new(
        Arc::clone(&rotation),
        Arc::new(tokens),
        Arc::new(nodes),
        metrics,
        CaServiceConfig::default(),
    )
    .with_serving_names(Arc::new(names))
    .with_reserved_names(&secure.dns_names());
    let server = SecureServer::bind(
        SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        Arc::clone(&rotation),
        secure,
    )
    .await
    .expect("secure port");
    server.register_metrics(&mut registry);
    let addr = server.local_addr().expect("addr");
    let router = tonic::service::Routes::new(service.into_server());
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        server
            .serve(router, async {
                let _ = stopped.await;
            })
            .await
            .expect("serve");
    });
    RunningCa {
        addr,
        ca,
        rotation,
        registry,
        stop: Some(stop),
    }
}
