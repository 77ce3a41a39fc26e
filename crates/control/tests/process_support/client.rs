//! A delta ADS client written against the wire protocol alone (docs/wire.md): the generated
//! `envoy.service.discovery.v3` stubs over a tonic channel with TLS, trusting only the mesh
//! root and checking the control plane's DNS SAN. No weft-xds code.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Request, Status, Streaming};
use weft_proto::discovery::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use weft_proto::discovery::{DeltaDiscoveryRequest, DeltaDiscoveryResponse, Node};

/// DNS SAN of the control plane's serving certificate (namespace `weft-system`).
pub const SERVER_NAME: &str = "weft-control.weft-system.svc";
/// Largest response the client accepts (a first push of 10k workloads is split by the
/// server into responses of a few MB).
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// The mesh root, as the control plane persists it in its state directory.
///
/// # Panics
/// If the file is missing (the control plane has not started).
pub fn root_pem(state_dir: &Path) -> String {
    let path = state_dir.join("ca").join("root-cert.pem");
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

/// A TLS channel to the secure port that trusts `root_pem` and expects [`SERVER_NAME`].
///
/// # Errors
/// TLS set-up or connection failures.
pub async fn tls_channel(
    addr: SocketAddr,
    root_pem: &str,
) -> Result<Channel, tonic::transport::Error> {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(root_pem))
        .domain_name(SERVER_NAME);
    Endpoint::from_shared(format!("https://{addr}"))?
        .tls_config(tls)?
        .connect()
        .await
}

/// Wraps `message` with the caller metadata of docs/wire.md: bearer token (if given), cluster id.
///
/// # Panics
/// If the token is not a valid header value (tests pass ASCII tokens).
pub fn authenticated<T>(message: T, token: Option<&str>) -> Request<T> {
    let mut request = Request::new(message);
    let metadata = request.metadata_mut();
    if let Some(token) = token {
        let value = format!("Bearer {token}").parse().expect("token header");
        metadata.insert("authorization", value);
    }
    metadata.insert("clusterid", "Kubernetes".parse().expect("cluster header"));
    request
}

/// One `DeltaAggregatedResources` stream. Tracks the resources it holds per type URL.
pub struct AdsClient {
    requests: mpsc::UnboundedSender<DeltaDiscoveryRequest>,
    responses: Streaming<DeltaDiscoveryResponse>,
    held: HashMap<String, BTreeMap<String, String>>,
}

impl AdsClient {
    /// Opens a stream as `node_id` (token optional, to test refusals) whose first requests
    /// subscribe to every type in `wildcard_types` (no names = wildcard).
    ///
    /// # Errors
    /// The status the server answered the call with.
    pub async fn open(
        channel: Channel,
        token: Option<&str>,
        node_id: &str,
        wildcard_types: &[&str],
    ) -> Result<Self, Status> {
        let (requests, queued) = mpsc::unbounded_channel();
        for (index, type_url) in wildcard_types.iter().enumerate() {
            let node = (index == 0).then(|| Node {
                id: node_id.to_owned(),
                cluster: "Kubernetes".to_owned(),
                ..Node::default()
            });
            let first = DeltaDiscoveryRequest {
                node,
                type_url: (*type_url).to_owned(),
                ..DeltaDiscoveryRequest::default()
            };
            requests
                .send(first)
                .map_err(|_| Status::internal("request queue closed"))?;
        }
        let mut client = AggregatedDiscoveryServiceClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES);
        let stream = UnboundedReceiverStream::new(queued);
        let responses = client
            .delta_aggregated_resources(authenticated(stream, token))
            .await?
            .into_inner();
        Ok(Self {
            requests,
            responses,
            held: HashMap::new(),
        })
    }

    /// The next response, applied to the held resources (not yet ACKed).
    ///
    /// # Errors
    /// The stream's error status, `UNAVAILABLE` if it ended, `DEADLINE_EXCEEDED` after `wait`.
    pub async fn recv(&mut self, wait: Duration) -> Result<DeltaDiscoveryResponse, Status> {
        let next = tokio::time::timeout(wait, self.responses.message())
            .await
            .map_err(|_| Status::deadline_exceeded(format!("no response within {wait:?}")))?;
        let response = next?.ok_or_else(|| Status::unavailable("stream ended"))?;
        let held = self.held.entry(response.type_url.clone()).or_default();
        for resource in &response.resources {
            held.insert(resource.name.clone(), resource.version.clone());
        }
        for name in &response.removed_resources {
            held.remove(name);
        }
        Ok(response)
    }

    /// ACKs `response` (its nonce, no error detail).
    pub fn ack(&self, response: &DeltaDiscoveryResponse) {
        let ack = DeltaDiscoveryRequest {
            type_url: response.type_url.clone(),
            response_nonce: response.nonce.clone(),
            ..DeltaDiscoveryRequest::default()
        };
        // A closed queue means the stream is gone; the next recv reports it.
        let _ = self.requests.send(ack);
    }

    /// Receives and ACKs the next response.
    ///
    /// # Errors
    /// As [`AdsClient::recv`].
    pub async fn recv_ack(&mut self, wait: Duration) -> Result<DeltaDiscoveryResponse, Status> {
        let response = self.recv(wait).await?;
        self.ack(&response);
        Ok(response)
    }

    /// Resource name -> version held for `type_url`.
    pub fn held(&self, type_url: &str) -> BTreeMap<String, String> {
        self.held.get(type_url).cloned().unwrap_or_default()
    }

    /// How many resources of `type_url` are held.
    pub fn count(&self, type_url: &str) -> usize {
        self.held.get(type_url).map_or(0, BTreeMap::len)
    }

    /// Receives and ACKs until `done` holds for the held state.
    ///
    /// # Errors
    /// As [`AdsClient::recv`] (each response must arrive within `wait`).
    pub async fn sync_until(
        &mut self,
        wait: Duration,
        mut done: impl FnMut(&Self) -> bool,
    ) -> Result<(), Status> {
        while !done(self) {
            self.recv_ack(wait).await?;
        }
        Ok(())
    }
}
