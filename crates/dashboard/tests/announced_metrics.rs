//! The metrics address a proxy announces (`WEFT_METRICS_ADDR`) is not trusted: against the
//! real control plane (`weft_control::process::run`, loopback ports) two real xDS clients
//! connect, one announcing its metrics page at the address it connects from, one
//! announcing a foreign address. The dashboard scrapes the first and never dials the
//! second; its reason is shown on the proxy.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use weft_control::process::{BoundAddrs, ControlConfig, Objects, run};
use weft_dashboard::{Dialer, DirectDialer, Sources};
use weft_xds::client::{RejectedResource, ResourceHandler, ResourceUpdate, XdsClient};

const HONEST_TOKEN: &str = "honest-token-3c1f9e2a";
const FOREIGN_TOKEN: &str = "foreign-token-7b4d0a6e";
/// An address outside this machine (TEST-NET-1); the dashboard must not connect to it.
const FOREIGN_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const WAIT: Duration = Duration::from_secs(20);

/// Records every address the dashboard dials; connects only on loopback (so even a
/// dashboard that trusted the announcement sends nothing off this machine).
#[derive(Clone, Default)]
struct RecordingDialer(Arc<Mutex<Vec<SocketAddr>>>);

impl Dialer for RecordingDialer {
    fn dial(&self, addr: SocketAddr) -> std::io::Result<std::net::TcpStream> {
        self.0.lock().expect("dialed list").push(addr);
        if !addr.ip().is_loopback() {
            return Err(std::io::Error::other("test dialer: not loopback"));
        }
        DirectDialer.dial(addr)
    }
}

struct Ignore;

impl ResourceHandler for Ignore {
    fn apply(&mut self, _: Vec<ResourceUpdate>, _: Vec<String>) -> Vec<RejectedResource> {
        Vec::new()
    }
}

/// The control plane on 127.0.0.1 (admin and plaintext xDS on ephemeral ports) with an
/// empty config directory and a token for each proxy; stops when `stop` is dropped.
async fn start_control(dir: &Path, stop: oneshot::Receiver<()>) -> BoundAddrs {
    let config_dir = dir.join("config");
    std::fs::create_dir(&config_dir).expect("config dir");
    let token_file = dir.join("tokens.yaml");
    let tokens = format!(
        "tokens:\n  - token: {HONEST_TOKEN}\n    node: node-a\n  - token: {FOREIGN_TOKEN}\n    node: node-b\n"
    );
    std::fs::write(&token_file, tokens).expect("token file");
    let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let config = ControlConfig {
        objects: Objects::Directory(config_dir),
        state_dir: dir.join("state"),
        ca_dir: None,
        token_file,
        secure_addr: loopback,
        plaintext_xds_addr: Some(loopback),
        admin_addr: loopback,
        translate: Default::default(),
        secure: Default::default(),
        ca: Default::default(),
        watch_debounce: Duration::from_millis(100),
        xds: weft_xds::ServerConfig::default(),
    };
    let (bound_tx, bound_rx) = oneshot::channel();
    let shutdown = async {
        let _ = stop.await;
    };
    let on_bound = move |addrs| {
        let _ = bound_tx.send(addrs);
    };
    let task = tokio::spawn(run(config, on_bound, shutdown));
    let Ok(addrs) = bound_rx.await else {
        panic!("control plane did not start: {:?}", task.await)
    };
    addrs
}

/// A real xDS client (weft's own) named `node`, announcing `metrics` as its metrics page.
fn connect_proxy(xds: SocketAddr, node: &str, token: &str, metrics: SocketAddr) {
    let value = prost_types::Value {
        kind: Some(prost_types::value::Kind::StringValue(metrics.to_string())),
    };
    let metadata = prost_types::Struct {
        fields: [(weft_xds::METRICS_ADDR_METADATA.to_owned(), value)].into(),
    };
    let node = weft_proto::discovery::Node {
        id: format!("weft-node~{node}"),
        metadata: Some(metadata),
        ..Default::default()
    };
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{xds}"))
        .expect("endpoint")
        .connect_lazy();
    let (client, handle) = XdsClient::builder(node)
        .bearer_token(token)
        .wildcard(weft_proto::ADDRESS_TYPE_URL, Ignore)
        .build(channel);
    tokio::spawn(async move {
        let _handle = handle;
        client.run().await;
    });
}

/// A metrics page on 127.0.0.1 answering every request with one counter.
async fn metrics_page() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind metrics page");
    let addr = listener.local_addr().expect("metrics address");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut request = [0_u8; 1024];
            let _ = stream.read(&mut request).await;
            let body = "istio_tcp_connections_opened_total 1\n";
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(answer.as_bytes()).await;
        }
    });
    addr
}

/// The dashboard's `/api/proxies`, polled until `done` holds for it.
async fn proxies_when(
    dashboard: SocketAddr,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let page = weft_serve::get(&dashboard.to_string(), "/api/proxies").await;
        let json = page
            .ok()
            .and_then(|(_, body)| serde_json::from_slice(&body).ok())
            .unwrap_or_default();
        if done(&json) {
            return json;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "last /api/proxies: {json}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn proxy<'a>(proxies: &'a serde_json::Value, id: &str) -> Option<&'a serde_json::Value> {
    proxies["proxies"]
        .as_array()?
        .iter()
        .find(|p| p["id"] == id)
}

#[tokio::test]
async fn a_proxy_announcing_a_foreign_metrics_address_is_not_scraped() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_stop, stop) = oneshot::channel();
    let control = start_control(dir.path(), stop).await;
    let xds = control.plaintext_xds.expect("plaintext xDS port");
    let page = metrics_page().await;
    // The honest proxy announces the unspecified address (read at its peer address, here
    // 127.0.0.1); the other points the dashboard at a machine elsewhere, same port.
    let unspecified = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), page.port());
    connect_proxy(xds, "node-a", HONEST_TOKEN, unspecified);
    let foreign = SocketAddr::new(IpAddr::V4(FOREIGN_IP), page.port());
    connect_proxy(xds, "node-b", FOREIGN_TOKEN, foreign);

    let dialed = RecordingDialer::default();
    let sources = Sources {
        control: control.admin,
        dialer: Arc::new(dialed.clone()),
        interval: Duration::from_millis(100),
    };
    let dashboard = weft_dashboard::start(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), sources)
        .await
        .expect("dashboard starts");
    let proxies = proxies_when(dashboard.addr, |json| {
        let honest = proxy(json, "weft-node~node-a").is_some_and(|p| p["reachable"] == true);
        let other = proxy(json, "weft-node~node-b").is_some_and(|p| p["error"].is_string());
        honest && other
    })
    .await;

    let honest = proxy(&proxies, "weft-node~node-a").expect("node-a");
    assert_eq!(honest["metrics_addr"], page.to_string(), "{honest}");
    let refused = proxy(&proxies, "weft-node~node-b").expect("node-b");
    assert_eq!(refused["reachable"], false, "{refused}");
    assert!(refused["metrics_addr"].is_null(), "{refused}");
    let reason = refused["error"].as_str().unwrap_or_default();
    assert!(
        reason.contains("not scraped") && reason.contains(&foreign.to_string()),
        "{reason}"
    );
    let dialed = dialed.0.lock().expect("dialed list").clone();
    assert!(dialed.contains(&page), "{dialed:?}");
    assert!(
        dialed
            .iter()
            .all(|addr| addr.ip() != IpAddr::V4(FOREIGN_IP)),
        "the dashboard dialed the announced foreign address: {dialed:?}"
    );
}
