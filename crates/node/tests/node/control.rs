//! State from a control plane over delta xDS (an in-process weft-xds server on its own
//! runtime, killable like a crashed process): bad resources are NACKed by name while the
//! rest apply, state keeps serving while the control plane is down, reconnect resyncs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;

use prometheus_client::registry::Registry;
use tokio_stream::wrappers::TcpListenerStream;
use weft_node::process::RunningNode;
use weft_proto::security::{Action, Authorization};
use weft_proto::workload::{Address, Service, Workload, address};
use weft_proto::{ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL, pack_any};
use weft_xds::{AllowAnonymous, ServerConfig, XdsResource, XdsServer};

use crate::harness::*;

/// An xDS server on its own runtime thread.
struct ControlPlane {
    addr: SocketAddr,
    server: XdsServer,
    stop: Option<std_mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ControlPlane {
    fn start(
        bind: SocketAddr,
        workloads: &[Workload],
        services: &[Service],
        policies: &[Authorization],
    ) -> Self {
        let (ready_tx, ready_rx) = std_mpsc::channel();
        let (stop_tx, stop_rx) = std_mpsc::channel::<()>();
        let (workloads, services, policies) =
            (workloads.to_vec(), services.to_vec(), policies.to_vec());
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let mut registry = Registry::default();
                let (server, publisher) =
                    XdsServer::new(ServerConfig::default(), AllowAnonymous, &mut registry);
                publisher.replace(ADDRESS_TYPE_URL, address_resources(&workloads, &services));
                publisher.replace(
                    AUTHORIZATION_TYPE_URL,
                    policies.iter().map(|p| {
                        XdsResource::new(
                            format!("{}/{}", p.namespace, p.name),
                            vec![],
                            pack_any(AUTHORIZATION_TYPE_URL, p),
                        )
                    }),
                );
                let listener = tokio::net::TcpListener::bind(bind)
                    .await
                    .expect("bind control plane");
                let addr = listener.local_addr().unwrap();
                let router = tonic::transport::Server::builder().add_service(server.service());
                tokio::spawn(router.serve_with_incoming(TcpListenerStream::new(listener)));
                ready_tx.send((addr, server, publisher)).unwrap();
            });
            let _ = stop_rx.recv();
            drop(runtime);
        });
        let (addr, server, _publisher) = ready_rx.recv().expect("control plane started");
        Self {
            addr,
            server,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// Stops abruptly, closing every stream.
    fn kill(mut self) -> SocketAddr {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.addr
    }

    fn channel(&self) -> tonic::transport::Channel {
        tonic::transport::Endpoint::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect_lazy()
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn address_resources(workloads: &[Workload], services: &[Service]) -> Vec<XdsResource> {
    let workloads = workloads.iter().map(|w| {
        let body = Address {
            r#type: Some(address::Type::Workload(w.clone())),
        };
        XdsResource::new(w.uid.clone(), vec![], pack_any(ADDRESS_TYPE_URL, &body))
    });
    let services = services.iter().map(|s| {
        let body = Address {
            r#type: Some(address::Type::Service(s.clone())),
        };
        XdsResource::new(
            format!("{}/{}", s.namespace, s.hostname),
            vec![],
            pack_any(ADDRESS_TYPE_URL, &body),
        )
    });
    workloads.chain(services).collect()
}

async fn xds_node(
    ca: &Arc<weft_identity::CertificateAuthority>,
    cp: &ControlPlane,
    name: &str,
    ip: std::net::Ipv4Addr,
) -> RunningNode {
    start_with(node_config(ca, name, ip, xds_source(cp.channel()))).await
}

#[tokio::test]
async fn xds_state_nacks_bad_resources_survives_control_plane_outage_and_resyncs() {
    capture_logs();
    let net = Net::next();
    let ca = test_ca();
    let (mut workloads, services) = TwoNodes::resources(net);
    let mut bad = workload("bad-1", "default", "bad", net.workload(9), "node-b");
    bad.addresses = vec![vec![1, 2, 3]];
    workloads.push(bad);
    let _echo = echo_server(net.echo_addr()).await;
    let cp = ControlPlane::start("127.0.0.1:0".parse().unwrap(), &workloads, &services, &[]);
    let a = xds_node(&ca, &cp, "node-a", net.node(2)).await;
    let b = xds_node(&ca, &cp, "node-b", net.node(3)).await;

    let socks =
        |a: &RunningNode| socks_connect(net.workload(1), a.addrs.explicit.unwrap(), net.vip_addr());
    let (code, mut stream) = socks(&a).await;
    assert_eq!(code, 0);
    assert_eq!(ping(&mut stream, b"via xds").await, b"via xds");

    let (_, dump) = page(a.addrs.admin, "/config_dump").await;
    assert!(dump.contains("Kubernetes//Pod/default/echo-1"), "{dump}");
    assert!(
        !dump.contains("bad-1"),
        "invalid resource must not be applied: {dump}"
    );
    let nack = cp
        .server
        .sync_status()
        .iter()
        .filter_map(|p| p.types.get(ADDRESS_TYPE_URL)?.last_nack.clone())
        .map(|n| n.error)
        .next();
    let nack = nack.expect("the bad resource was NACKed");
    assert!(
        nack.contains("Kubernetes//Pod/default/bad-1"),
        "NACK names the resource: {nack}"
    );

    let addr = cp.kill();
    let (code, mut stream2) = socks(&a).await;
    assert_eq!(
        code, 0,
        "last good state keeps serving without the control plane"
    );
    assert_eq!(ping(&mut stream2, b"offline").await, b"offline");
    assert_eq!(ping(&mut stream, b"still open").await, b"still open");
    let (status, _) = page(a.addrs.readiness, "/healthz/ready").await;
    assert_eq!(status, 200, "still ready while the control plane is down");

    let deny = policy(
        "deny-sleep",
        "default",
        Action::Deny,
        vec![principal_match("cluster.local/ns/default/sa/sleep")],
    );
    let _cp = ControlPlane::start(addr, &workloads, &services, &[deny]);
    eventually("node-b resyncs and enforces the new policy", || async {
        b.node
            .store()
            .snapshot()
            .policy("default/deny-sleep")
            .is_some()
    })
    .await;
    let (code, _) = socks(&a).await;
    assert_eq!(
        code, 2,
        "policy from the restarted control plane is enforced"
    );
    let mut buf = [0u8; 4];
    let read = tokio::time::timeout(WAIT, tokio::io::AsyncReadExt::read(&mut stream, &mut buf))
        .await
        .expect("closed in time");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "open connection closed by the resynced policy"
    );
}

#[tokio::test]
async fn a_request_made_before_the_first_configuration_is_served_once_it_arrives() {
    let net = Net::next();
    let ca = test_ca();
    let (workloads, services) = TwoNodes::resources(net);
    let _echo = echo_server(net.echo_addr()).await;
    // The control plane's address, taken now; it starts listening only later.
    let cp_addr = std::net::TcpListener::bind((net.node(1), 0))
        .and_then(|l| l.local_addr())
        .unwrap();
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{cp_addr}"))
        .unwrap()
        .connect_lazy();
    let mut config = node_config(&ca, "node-a", net.node(2), xds_source(channel));
    config.options.config_wait = WAIT;
    let a = weft_node::process::run(config)
        .await
        .expect("node proxy starts");
    // Accepted and greeted before there is any control plane, then the request.
    let mut stream = connect_from(net.workload(1), a.addrs.explicit.unwrap()).await;
    socks_greet(&mut stream).await;
    socks_request(&mut stream, net.vip_addr()).await;

    let cp = ControlPlane::start(cp_addr, &workloads, &services, &[]);
    let _b = xds_node(&ca, &cp, "node-b", net.node(3)).await;
    let code = read_socks_reply(&mut stream).await;
    assert_eq!(code, 0, "the request waited for the configuration");
    assert_eq!(ping(&mut stream, b"late").await, b"late");
}
