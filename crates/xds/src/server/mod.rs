//! The delta ADS server: a tonic service that streams the published resources to every
//! connected proxy.

mod caller_limit;
mod client_view;
mod credentials;
mod held;
mod stream;
mod subscription;

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::Stream;
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use weft_proto::discovery::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use weft_proto::discovery::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};

use crate::auth::StreamAuthenticator;
use crate::metrics::ServerMetrics;
use crate::publisher::{DebounceConfig, Published, ResourcePublisher};
use crate::resource::Snapshot;
use crate::status::{ProxyStatus, StatusTable, unix_now};

/// Tuning of the server.
#[derive(Debug, Clone, Copy)]
pub struct ServerConfig {
    /// How edits are grouped into pushes.
    pub debounce: DebounceConfig,
    /// Responses queued per stream before the stream waits for the client to read. When
    /// full, changes accumulate as "dirty" state and the newest state is sent once it drains.
    pub send_queue: usize,
    /// Soft cap on the resource bytes in one response; larger updates are split across
    /// several responses (each with its own nonce). Default 128 KiB: a stream holds a
    /// response, its encoding and its queue at once, so with 100 proxies syncing a 2 MB
    /// mesh this decides most of the control plane's memory (bench/README.md).
    pub max_response_bytes: usize,
    /// Largest request/response message tonic accepts or produces on this service.
    pub max_message_bytes: usize,
    /// Streams one caller (authenticated principal) may hold open at once; a new one
    /// over the limit is refused with `RESOURCE_EXHAUSTED`.
    pub max_streams_per_caller: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            debounce: DebounceConfig::default(),
            send_queue: 2,
            max_response_bytes: 128 * 1024,
            max_message_bytes: 16 * 1024 * 1024,
            max_streams_per_caller: 64,
        }
    }
}

/// State shared by the service and all its streams.
pub(crate) struct Shared {
    config: ServerConfig,
    authenticator: Arc<dyn StreamAuthenticator>,
    metrics: ServerMetrics,
    status: StatusTable,
    snapshots: watch::Receiver<Arc<Published>>,
    next_stream_id: AtomicU64,
    open: credentials::OpenStreams,
    callers: Arc<caller_limit::CallerStreams>,
}

/// Longest wait for the authenticator to admit or refuse a stream (it may do I/O, such as
/// a Kubernetes TokenReview); a stream not decided by then is refused as unavailable.
const AUTHENTICATION_TIMEOUT: Duration = Duration::from_secs(10);

/// The delta ADS server. Cheap to clone; clones share everything.
///
/// Create it with [`XdsServer::new`], feed it through the returned [`ResourcePublisher`],
/// and mount [`XdsServer::service`] on a tonic router.
#[derive(Clone)]
pub struct XdsServer {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for XdsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdsServer")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl XdsServer {
    /// Creates a server and the publisher that feeds it, registering metrics
    /// (`xds_pushes`, `xds_nacks`, `xds_push_latency_seconds`, `xds_connected_proxies`,
    /// under the registry's prefix) into `registry`.
    ///
    /// # Panics
    /// When called outside a tokio runtime (the publisher's debounce task is spawned here).
    pub fn new(
        config: ServerConfig,
        authenticator: impl StreamAuthenticator,
        registry: &mut Registry,
    ) -> (Self, ResourcePublisher) {
        let (publisher, snapshots) = ResourcePublisher::spawn(config.debounce);
        let metrics = ServerMetrics::default();
        metrics.register(registry);
        let shared = Shared {
            config,
            authenticator: Arc::new(authenticator),
            metrics,
            status: StatusTable::default(),
            snapshots,
            next_stream_id: AtomicU64::new(1),
            open: credentials::OpenStreams::default(),
            callers: Arc::new(caller_limit::CallerStreams::new(
                config.max_streams_per_caller,
            )),
        };
        let server = Self {
            shared: Arc::new(shared),
        };
        (server, publisher)
    }

    /// The tonic service to add to a router (TLS or plaintext is the router's business).
    #[must_use]
    pub fn service(&self) -> AggregatedDiscoveryServiceServer<Self> {
        AggregatedDiscoveryServiceServer::new(self.clone())
            .max_decoding_message_size(self.shared.config.max_message_bytes)
            .max_encoding_message_size(self.shared.config.max_message_bytes)
    }

    /// Every connected proxy with its per-type sync state, sorted by node id.
    #[must_use]
    pub fn sync_status(&self) -> Vec<ProxyStatus> {
        self.shared.status.list()
    }

    /// The snapshot streams are currently serving (after debouncing).
    #[must_use]
    pub fn published(&self) -> Snapshot {
        self.shared.snapshots.borrow().snapshot.clone()
    }

    async fn open_stream(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<ReceiverStream<Result<DeltaDiscoveryResponse, Status>>, Status> {
        let checked = tokio::time::timeout(
            AUTHENTICATION_TIMEOUT,
            self.shared.authenticator.authenticate(request.metadata()),
        )
        .await
        .map_err(|_| {
            tracing::warn!(remote = ?request.remote_addr(), "xDS stream authentication timed out");
            Status::unavailable("authentication did not complete in time; retry")
        })?;
        let identity = checked.map_err(|error| {
            tracing::warn!(remote = ?request.remote_addr(), %error, "refusing xDS stream");
            Status::unauthenticated(error.to_string())
        })?;
        let Some(caller_slot) = self.shared.callers.admit(&identity.principal) else {
            self.shared.metrics.record_stream_refused();
            let limit = self.shared.callers.limit();
            tracing::warn!(principal = %identity.principal, limit, remote = ?request.remote_addr(), "refusing xDS stream: the caller holds its limit of open streams");
            return Err(Status::resource_exhausted(format!(
                "too many open xDS streams for this caller (limit {limit})"
            )));
        };
        let stream_id = self.shared.next_stream_id.fetch_add(1, Ordering::Relaxed);
        let revoked = self.shared.open.insert(
            stream_id,
            request.metadata().clone(),
            identity.principal.clone(),
        );
        let header_cluster = cluster_header(request.metadata());
        let principal = identity.principal.clone();
        let status = self.shared.status.insert(ProxyStatus {
            stream_id,
            node_id: String::new(),
            cluster: header_cluster.clone(),
            identity,
            remote_addr: request.remote_addr().map(|addr| addr.to_string()),
            connected_at_unix: unix_now(),
            metadata: std::collections::BTreeMap::new(),
            types: std::collections::BTreeMap::new(),
        });
        let (responses, receiver) = mpsc::channel(self.shared.config.send_queue.max(1));
        let connected = self.shared.metrics.proxy_connected();
        let state = stream::StreamState::new(
            Arc::clone(&self.shared),
            stream_id,
            header_cluster,
            status,
            principal,
        );
        let snapshots = self.shared.snapshots.clone();
        let shared = Arc::clone(&self.shared);
        tokio::spawn(async move {
            (state.run(request.into_inner(), responses, snapshots, revoked)).await;
            shared.open.remove(stream_id);
            drop((connected, caller_slot));
        });
        Ok(ReceiverStream::new(receiver))
    }

    /// Checks every open stream's credential again (after credentials changed, e.g. a
    /// token was removed or now stands for another principal) and closes with
    /// UNAUTHENTICATED those that no longer pass as the principal they were admitted as
    /// (its resources are what they receive). Returns how many were closed.
    pub async fn reauthenticate(&self) -> usize {
        let mut closed = 0;
        for (id, metadata, principal) in self.shared.open.list() {
            let check = self.shared.authenticator.authenticate(&metadata);
            let passes = tokio::time::timeout(AUTHENTICATION_TIMEOUT, check).await;
            // a check that cannot complete keeps the stream: only an answer revokes it
            let changed = match passes {
                Ok(Err(_)) => true,
                Ok(Ok(identity)) => identity.principal != principal,
                Err(_) => false,
            };
            if changed && self.shared.open.revoke(id) {
                closed += 1;
            }
        }
        closed
    }
}

/// The `clusterid` gRPC metadata header: Istio's node proxy names its cluster there (and
/// may leave `Node.cluster` empty). Empty when absent or not text.
fn cluster_header(metadata: &tonic::metadata::MetadataMap) -> String {
    metadata
        .get("clusterid")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

type BoxedStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl AggregatedDiscoveryService for XdsServer {
    type StreamAggregatedResourcesStream = BoxedStream<DiscoveryResponse>;
    type DeltaAggregatedResourcesStream = ReceiverStream<Result<DeltaDiscoveryResponse, Status>>;

    async fn stream_aggregated_resources(
        &self,
        _request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        Err(Status::unimplemented(
            "state-of-the-world xDS (StreamAggregatedResources) is not served by weft; \
             use the delta protocol (DeltaAggregatedResources)",
        ))
    }

    async fn delta_aggregated_resources(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        self.open_stream(request).await.map(Response::new)
    }
}
