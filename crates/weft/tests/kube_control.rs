//! `weft control --kubernetes --kubeconfig FILE`, the real binary, against the in-process
//! test API server (real HTTP; the kubeconfig names its URL): it creates the CA root Secret,
//! serves the CA over TLS to a node proxy authenticated by TokenReview (certificates for the
//! pods of its own node only), and as the Lease's holder publishes the trust bundle
//! ConfigMap, deploys the Gateway's ServiceAccount, Deployment and Service, and writes the
//! Gateway's status. On SIGTERM it releases the Lease and exits 0.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use weft_identity::{
    CertManager, CertManagerConfig, GrpcCaClient, GrpcCaClientConfig, SpiffeId, TokenSource,
    TrustBundle,
};
use weft_kubetest::fixtures::seed_two_nodes;
use weft_kubetest::{ResourceType, TestApiServer};

const NAMESPACE: &str = "weft-system";
const NODE_TOKEN: &str = "node-1-projected-token";
const WAIT: Duration = Duration::from_secs(30);

/// A kubeconfig whose current context is the test API server (plain HTTP, no credentials:
/// the test server authorizes every request).
fn kubeconfig(url: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {url}\n\
         users:\n- name: test\n  user: {{}}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: test\n\
         current-context: test\n"
    )
}

/// The two-node cluster of [`seed_two_nodes`] with weft in `NAMESPACE`.
fn seed(server: &TestApiServer) {
    seed_two_nodes(server, NAMESPACE, NODE_TOKEN);
}

fn stored(
    server: &TestApiServer,
    api_version: &str,
    kind: &str,
    ns: &str,
    name: &str,
) -> Option<Value> {
    let key = ResourceType::new(api_version, kind).key(Some(ns), name);
    server.store().get(&key)
}

/// The control plane process; killed when dropped (a test that failed midway).
struct Control(Child);

impl Drop for Control {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_control(dir: &Path, addr: Ipv4Addr) -> Control {
    let log = std::fs::File::create(dir.join("control.log")).expect("log file");
    let child = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["control", "--kubernetes", "--kubeconfig"])
        .arg(dir.join("kubeconfig"))
        .args(["--namespace", NAMESPACE])
        .args(["--secure-addr", &format!("{addr}:15012")])
        .args(["--admin-addr", &format!("{addr}:15014")])
        .args(["--proxy-image", "registry.local/weft:e2e"])
        .env("POD_NAME", "weft-control-e2e")
        .env("WEFT_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn weft control");
    Control(child)
}

/// Polls `check` every 50 ms until it returns `Some`, for at most [`WAIT`]; the control
/// plane's log is printed when time runs out.
async fn eventually<T, F>(what: &str, dir: &Path, mut check: impl FnMut() -> F) -> T
where
    F: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(dir.join("control.log")).unwrap_or_default();
            panic!("timed out waiting for {what}; control plane log:\n{log}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn identity(account: &str) -> SpiffeId {
    format!("spiffe://cluster.local/ns/shop/sa/{account}")
        .parse()
        .expect("id")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_binary_follows_the_api_signs_for_its_nodes_and_deploys_gateways() {
    let server = TestApiServer::start().await;
    seed(&server);
    let temp = tempfile::tempdir().expect("temp dir");
    let dir = temp.path();
    std::fs::write(dir.join("kubeconfig"), kubeconfig(&server.url())).expect("kubeconfig");
    let addr = Ipv4Addr::new(127, weft_testkit::loopback_net(), 0, 1);
    let mut control = start_control(dir, addr);

    // the root it created in its Secret is the bundle it publishes in every namespace
    let root_pem = eventually("the root ConfigMap in shop", dir, || async {
        let map = stored(&server, "v1", "ConfigMap", "shop", "istio-ca-root-cert")?;
        map["data"]["root-cert.pem"].as_str().map(str::to_owned)
    })
    .await;
    let secret = stored(&server, "v1", "Secret", NAMESPACE, "istio-ca-secret").expect("Secret");
    assert_eq!(secret["type"], "istio.io/ca-root");

    // the node proxy's token stands for node-1: web is signed, api (node-2) refused
    let client = GrpcCaClient::new(GrpcCaClientConfig::node_proxy(
        format!("https://{}", SocketAddr::from((addr, 15012))),
        format!("weft-control.{NAMESPACE}.svc"),
        TrustBundle::from_pem("cluster.local", &root_pem).expect("bundle"),
        TokenSource::Static(NODE_TOKEN.into()),
    ))
    .expect("CA client");
    let manager = CertManager::new(Arc::new(client), CertManagerConfig::default());
    let web = eventually("web's certificate", dir, || async {
        manager.get(&identity("web")).await.ok()
    })
    .await;
    let leaf = weft_identity::tls::leaf_info(&web.chain()[0]).expect("leaf");
    assert_eq!(leaf.spiffe_id, Some(identity("web")));
    let refused = manager.get(&identity("api")).await;
    assert!(refused.is_err(), "api runs on node-2");

    // as leader: the Gateway's Deployment (with the image given) and its status
    let deployment = eventually("the gateway's Deployment", dir, || async {
        stored(&server, "apps/v1", "Deployment", "shop", "ingress-weft")
    })
    .await;
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "registry.local/weft:e2e");
    assert_eq!(container["args"][0], "gateway");
    eventually("the Gateway's Accepted condition", dir, || async {
        let gateway = stored(
            &server,
            "gateway.networking.k8s.io/v1",
            "Gateway",
            "shop",
            "ingress",
        )?;
        gateway["status"]["conditions"]
            .to_string()
            .contains("Accepted")
            .then_some(())
    })
    .await;

    // SIGTERM: it exits 0 and leaves the Lease to the next replica
    let pid = i32::try_from(control.0.id()).expect("pid");
    let killed = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = eventually("the control plane to exit", dir, || {
        let status = control.0.try_wait().expect("wait");
        async move { status }
    })
    .await;
    assert!(status.success(), "{status}");
    let lease = stored(
        &server,
        "coordination.k8s.io/v1",
        "Lease",
        NAMESPACE,
        "weft-control-leader",
    )
    .expect("the Lease");
    assert!(
        lease["spec"]["holderIdentity"].is_null(),
        "released: {lease}"
    );
}
