//! Helpers shared by this crate's tests (each test binary uses some of them).
#![allow(dead_code)]

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use weft_control::process::{BoundAddrs, ControlConfig, Objects, run_with};
use weft_kube::control::ClusterControl;

/// A control process on `objects` listening on ephemeral loopback ports, with default
/// translation, CA and xDS settings.
pub fn loopback_config(objects: Objects, state_dir: PathBuf, token_file: PathBuf) -> ControlConfig {
    let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    ControlConfig {
        objects,
        state_dir,
        ca_dir: None,
        token_file,
        secure_addr: loopback,
        plaintext_xds_addr: None,
        admin_addr: loopback,
        translate: weft_control::translate::TranslateOptions::default(),
        secure: weft_control::secure_server::SecureServerConfig::default(),
        ca: weft_control::ca_service::CaServiceConfig::default(),
        watch_debounce: Duration::from_millis(20),
        xds: weft_xds::ServerConfig::default(),
    }
}

/// Polls `check` until it returns `Some`, for at most 20 s.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs the control process with the cluster's parts on loopback; it stops when the
/// returned sender is dropped.
pub async fn start_control(cluster: &ClusterControl) -> (BoundAddrs, oneshot::Sender<()>) {
    let config = loopback_config(
        Objects::Source(cluster.objects()),
        PathBuf::new(),
        PathBuf::new(),
    );
    let (bound, addrs) = oneshot::channel();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(run_with(
        config,
        cluster.overrides(),
        move |a| {
            let _ = bound.send(a);
        },
        async {
            let _ = stopped.await;
        },
    ));
    (addrs.await.expect("control plane started"), stop)
}
