//! Shared test fixtures: a real gRPC server on 127.0.0.1 (in its own runtime so a test can
//! kill it like a crashed process) and a raw delta xDS client speaking the wire protocol.

#![allow(dead_code)] // each test binary uses a different subset

use std::net::SocketAddr;
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::sync::mpsc;
use tokio_stream::wrappers::{TcpListenerStream, UnboundedReceiverStream};
use tonic::transport::{Channel, Endpoint};
use weft_proto::discovery::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use weft_proto::discovery::{DeltaDiscoveryRequest, DeltaDiscoveryResponse, Node};
use weft_xds::{
    AllowAnonymous, DebounceConfig, ResourcePublisher, ServerConfig, StreamAuthenticator,
    XdsResource, XdsServer,
};

pub const T: &str = "type.googleapis.com/test.Thing";
pub const WAIT: Duration = Duration::from_secs(10);

/// A resource of type [`T`] whose body is `value`.
pub fn thing(name: &str, aliases: &[&str], value: &str) -> XdsResource {
    XdsResource::new(
        name,
        aliases.iter().map(|a| (*a).to_owned()).collect(),
        prost_types::Any {
            type_url: T.into(),
            value: value.as_bytes().to_vec(),
        },
    )
}

pub fn fast_config() -> ServerConfig {
    ServerConfig {
        debounce: DebounceConfig {
            quiet: Duration::from_millis(20),
            max_delay: Duration::from_millis(200),
        },
        ..ServerConfig::default()
    }
}

/// A server running on its own runtime thread; dropping or [`TestServer::kill`]ing it drops
/// every connection at once.
pub struct TestServer {
    pub addr: SocketAddr,
    pub server: XdsServer,
    pub publisher: ResourcePublisher,
    pub registry: std::sync::Arc<std::sync::Mutex<Registry>>,
    stop: Option<std_mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestServer {
    pub fn start(config: ServerConfig) -> Self {
        Self::start_with(config, AllowAnonymous, "127.0.0.1:0")
    }

    pub fn start_with(config: ServerConfig, auth: impl StreamAuthenticator, bind: &str) -> Self {
        let bind: SocketAddr = bind.parse().expect("valid bind address");
        let (ready_tx, ready_rx) = std_mpsc::channel();
        let (stop_tx, stop_rx) = std_mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("server runtime");
            runtime.block_on(async move {
                let mut registry = Registry::default();
                let (server, publisher) = XdsServer::new(config, auth, &mut registry);
                let listener = tokio::net::TcpListener::bind(bind).await.expect("bind");
                let addr = listener.local_addr().expect("local addr");
                let router = tonic::transport::Server::builder().add_service(server.service());
                tokio::spawn(router.serve_with_incoming(TcpListenerStream::new(listener)));
                ready_tx
                    .send((addr, server, publisher, registry))
                    .expect("test waits for the server");
            });
            // Keep serving until told to stop, then drop the runtime (and every socket).
            let _ = stop_rx.recv();
            drop(runtime);
        });
        let (addr, server, publisher, registry) = ready_rx.recv().expect("server started");
        Self {
            addr,
            server,
            publisher,
            registry: std::sync::Arc::new(std::sync::Mutex::new(registry)),
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// Stops the server abruptly (all connections closed), like a crashed control plane.
    pub fn kill(mut self) -> SocketAddr {
        self.shutdown();
        self.addr
    }

    pub fn channel(&self) -> Channel {
        Endpoint::from_shared(format!("http://{}", self.addr))
            .expect("valid endpoint")
            .connect_lazy()
    }

    pub fn metrics_text(&self) -> String {
        let mut text = String::new();
        let registry = self.registry.lock().expect("registry lock");
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode metrics");
        text
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A delta xDS client written against the wire protocol only.
pub struct RawClient {
    requests: mpsc::UnboundedSender<DeltaDiscoveryRequest>,
    responses: tonic::Streaming<DeltaDiscoveryResponse>,
}

impl RawClient {
    /// Opens a stream on a fresh connection, sending `first` as the first request.
    pub async fn connect(server: &TestServer, first: DeltaDiscoveryRequest) -> Self {
        Self::try_connect(server.channel(), first, None)
            .await
            .expect("stream opens")
    }

    pub async fn try_connect(
        channel: Channel,
        first: DeltaDiscoveryRequest,
        token: Option<&str>,
    ) -> Result<Self, tonic::Status> {
        let authorization = token.map(|token| format!("Bearer {token}"));
        let headers: Vec<(&'static str, &str)> = authorization
            .iter()
            .map(|value| ("authorization", value.as_str()))
            .collect();
        Self::try_connect_with(channel, first, &headers).await
    }

    /// Opens a stream whose call carries the gRPC metadata `headers`.
    pub async fn try_connect_with(
        channel: Channel,
        first: DeltaDiscoveryRequest,
        headers: &[(&'static str, &str)],
    ) -> Result<Self, tonic::Status> {
        let (requests, receiver) = mpsc::unbounded_channel();
        requests.send(first).expect("receiver alive");
        let mut request = tonic::Request::new(UnboundedReceiverStream::new(receiver));
        for (name, value) in headers {
            let value = value.parse().expect("valid header");
            request.metadata_mut().insert(*name, value);
        }
        let mut client = AggregatedDiscoveryServiceClient::new(channel)
            .max_decoding_message_size(64 * 1024 * 1024);
        let responses = client
            .delta_aggregated_resources(request)
            .await?
            .into_inner();
        Ok(Self {
            requests,
            responses,
        })
    }

    pub fn send(&self, request: DeltaDiscoveryRequest) {
        self.requests.send(request).expect("stream open");
    }

    /// The next response, failing the test after [`WAIT`].
    pub async fn recv(&mut self) -> DeltaDiscoveryResponse {
        tokio::time::timeout(WAIT, self.responses.message())
            .await
            .expect("a response within the timeout")
            .expect("stream healthy")
            .expect("stream not closed")
    }

    /// The next message or the stream's end, failing the test after [`WAIT`].
    pub async fn next(&mut self) -> Result<Option<DeltaDiscoveryResponse>, tonic::Status> {
        tokio::time::timeout(WAIT, self.responses.message())
            .await
            .expect("a message within the timeout")
    }

    /// Receives the next response and ACKs it.
    pub async fn recv_ack(&mut self) -> DeltaDiscoveryResponse {
        let response = self.recv().await;
        self.send(ack(&response));
        response
    }
}

pub fn node(id: &str) -> Node {
    Node {
        id: id.to_owned(),
        cluster: "Kubernetes".to_owned(),
        ..Node::default()
    }
}

pub fn subscribe(type_url: &str, names: &[&str]) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        type_url: type_url.to_owned(),
        resource_names_subscribe: names.iter().map(|n| (*n).to_owned()).collect(),
        ..DeltaDiscoveryRequest::default()
    }
}

pub fn unsubscribe(type_url: &str, names: &[&str]) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        type_url: type_url.to_owned(),
        resource_names_unsubscribe: names.iter().map(|n| (*n).to_owned()).collect(),
        ..DeltaDiscoveryRequest::default()
    }
}

pub fn first_request(node_id: &str, subscribe_names: &[&str]) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        node: Some(node(node_id)),
        ..subscribe(T, subscribe_names)
    }
}

pub fn ack(response: &DeltaDiscoveryResponse) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        type_url: response.type_url.clone(),
        response_nonce: response.nonce.clone(),
        ..DeltaDiscoveryRequest::default()
    }
}

pub fn nack(response: &DeltaDiscoveryResponse, message: &str) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        error_detail: Some(weft_proto::google::rpc::Status {
            code: 3,
            message: message.to_owned(),
            details: vec![],
        }),
        ..ack(response)
    }
}

/// Sorted names of the resources in a response.
pub fn names(response: &DeltaDiscoveryResponse) -> Vec<String> {
    let mut names: Vec<String> = response.resources.iter().map(|r| r.name.clone()).collect();
    names.sort();
    names
}

pub fn removed(response: &DeltaDiscoveryResponse) -> Vec<String> {
    let mut removed = response.removed_resources.clone();
    removed.sort();
    removed
}

pub fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// Polls `condition` until it holds, failing the test after [`WAIT`].
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until every edit made so far is published (past the debounce window).
pub async fn settled(server: &TestServer) {
    let target = server.publisher.current().generation();
    eventually("edits to be published", || {
        server.server.published().generation() >= target
    })
    .await;
}
