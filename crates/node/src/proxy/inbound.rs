//! Inbound: connections into local workloads, over HBONE (mutual TLS, the client identity
//! from its certificate) or as plain TCP (no identity, so principal/namespace rules cannot
//! match and STRICT's compiled DENY rejects it).
//!
//! Both paths share [`Node::inbound_connect`]: the destination must be a local workload
//! (and the one the listener belongs to), the policy evaluator must allow the connection,
//! then the workload is dialled. HBONE answers are:
//! - 400 when the `:authority` is not a local workload address served by this listener
//!   (unknown, remote, or another pod's), or names one of the proxy's own handler ports
//!   (a self-call, refused before policy and not counted as a denial): the request is
//!   wrong, retrying cannot help;
//! - 401 when authorization denies the connection (logged and counted);
//! - 503 when the workload refuses or does not answer the connection, or when the first
//!   mesh configuration has not arrived in time (nothing is decided on an empty state).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use http::StatusCode;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use weft_hbone::{
    Accepted, InboundDecision, InboundHandler, InboundRequest, RelayError, RelayOptions, RelayStats,
};

use super::connections::{ConnectionInfo, Direction, Registration};
use super::{Node, unix_ms};
use crate::state::{ActiveConnection, MeshWorkload, WorkloadNames};
use crate::telemetry::{
    AccessLogEntry, AccessLogFormat, ConnectionEnds, ConnectionLabels, ConnectionMetrics,
    ConnectionResult, Reporter,
};
use weft_identity::SpiffeId;
use weft_policy::{ConnectionFacts, Decision, Transport};

/// How the plaintext inbound listener learns each connection's real destination.
#[derive(Debug, Clone, Copy)]
pub enum InboundDestination {
    /// `SO_ORIGINAL_DST` of the redirected connection (capture rules in the pod).
    OriginalDst,
    /// Every connection goes to this workload address (a listener dedicated to one
    /// workload port, e.g. in loopback tests or a capture that knows the target).
    Fixed(SocketAddr),
}

/// Why an inbound connection was refused.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The destination is not a local workload served by this listener.
    #[error("{dst} is not a local workload address served by this listener")]
    NotLocal {
        /// Requested destination.
        dst: SocketAddr,
    },
    /// The destination port is one of the proxy's own handler ports: dialling it would
    /// loop back into the proxy.
    #[error("{dst} is a port of the node proxy itself (self-call)")]
    SelfCall {
        /// Requested destination.
        dst: SocketAddr,
    },
    /// Authorization denied it.
    #[error("denied: {0}")]
    Denied(Decision),
    /// The workload did not accept the connection.
    #[error("workload {dst} unreachable: {source}")]
    Unreachable {
        /// Workload address.
        dst: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The client's certificate carries no usable identity.
    #[error("client identity unusable: {0}")]
    BadPeer(String),
}

impl Refusal {
    /// The HBONE status answering this refusal.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NotLocal { .. } | Self::SelfCall { .. } => StatusCode::BAD_REQUEST,
            Self::Denied(_) | Self::BadPeer(_) => StatusCode::UNAUTHORIZED,
            Self::Unreachable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// One inbound connection attempt.
struct Attempt {
    /// Listener's workload address (per-pod listeners), `None` for a node-wide listener.
    scope: Option<IpAddr>,
    src: SocketAddr,
    identity: Option<SpiffeId>,
    dst: SocketAddr,
    transport: Transport,
}

/// Accounting for an accepted inbound connection, completed when its relay ends.
struct InboundFinish {
    metrics: ConnectionMetrics,
    log: AccessLogEntry,
    registration: Registration,
    started: Instant,
    format: AccessLogFormat,
    relay: RelayOptions,
    _active: ActiveConnection,
}

impl InboundFinish {
    fn finish(mut self, result: Result<RelayStats, RelayError>) {
        let (stats, error) = match result {
            Ok(stats) => (stats, None),
            Err(error) => (error.stats, Some(error.cause.to_string())),
        };
        self.metrics.add_source_to_destination(stats.a_to_b);
        self.metrics.add_destination_to_source(stats.b_to_a);
        self.log.bytes_sent = stats.a_to_b;
        self.log.bytes_received = stats.b_to_a;
        let closed_by_policy = self.registration.close_reason();
        let result = match (&closed_by_policy, &error) {
            (Some(_), _) => ConnectionResult::Denied,
            (None, Some(_)) => ConnectionResult::Failed,
            (None, None) => ConnectionResult::Ok,
        };
        if result == ConnectionResult::Ok {
            self.metrics.closed();
        } else {
            self.metrics.failed();
        }
        self.log
            .finish(self.started.elapsed(), result, closed_by_policy.or(error));
        self.log.emit(self.format);
    }
}

impl Node {
    /// Checks, authorizes and dials one inbound connection. Boxed: the dial's future
    /// state is freed once the connection is open instead of staying in its task.
    async fn inbound_connect(
        &self,
        attempt: Attempt,
    ) -> Result<(TcpStream, InboundFinish), Refusal> {
        Box::pin(self.authorize_and_dial(attempt)).await
    }

    async fn authorize_and_dial(
        &self,
        attempt: Attempt,
    ) -> Result<(TcpStream, InboundFinish), Refusal> {
        let started = Instant::now();
        let state = self.inner.store.snapshot();
        let network = self.inner.options.network.as_str();
        let source = state.workload_by_addr(network, attempt.src.ip()).cloned();
        let destination = state
            .workload_by_addr(network, attempt.dst.ip())
            .filter(|w| self.is_local(w))
            .filter(|w| attempt.scope.is_none_or(|ip| w.addresses().contains(&ip)))
            .cloned();
        let labels = ConnectionLabels::derive(&ConnectionEnds {
            reporter: Reporter::Destination,
            source_workload: source.as_deref(),
            source_identity: attempt.identity.as_ref(),
            destination_workload: destination.as_deref(),
            destination_service: None,
            transport: attempt.transport,
        });
        let source_names = source.as_deref().map(MeshWorkload::names);
        let destination_names = destination.as_deref().map(MeshWorkload::names);
        let identity = peer_identity_name(&attempt, source.as_deref(), source_names.as_deref());
        let log = AccessLogEntry::new(
            Reporter::Destination,
            attempt.src,
            attempt.dst,
            unix_ms(SystemTime::now()),
        )
        .with_source(source_names.as_deref(), identity)
        .with_destination(destination_names.as_deref(), None);
        let refuse = |refusal: Refusal, mut log: AccessLogEntry| {
            self.inner.metrics.connection_failed(&labels);
            let result = match refusal {
                Refusal::Denied(_) | Refusal::BadPeer(_) => ConnectionResult::Denied,
                _ => ConnectionResult::Failed,
            };
            log.finish(started.elapsed(), result, Some(refusal.to_string()));
            log.emit(self.inner.options.access_log);
            refusal
        };
        if self.is_self_call(attempt.dst.port()) {
            tracing::info!(src = %attempt.src, dst = %attempt.dst, "inbound connection to a port of the proxy itself refused");
            return Err(refuse(Refusal::SelfCall { dst: attempt.dst }, log));
        }
        let (Some(workload), Some(names)) = (destination, destination_names) else {
            return Err(refuse(Refusal::NotLocal { dst: attempt.dst }, log));
        };
        let facts = ConnectionFacts {
            source_identity: attempt.identity.clone(),
            source_ip: attempt.src.ip(),
            destination: attempt.dst,
            transport: attempt.transport,
        };
        let decision = state.policies_of(&workload).evaluate(&facts);
        self.inner
            .metrics
            .record_decision(&decision, &workload.proto().namespace);
        if !decision.is_allowed() {
            tracing::info!(src = %attempt.src, identity = ?attempt.identity.as_ref().map(SpiffeId::to_string), dst = %attempt.dst, %decision, "inbound connection denied");
            return Err(refuse(Refusal::Denied(decision), log));
        }
        let upstream = match self.dial_workload(attempt.src, attempt.dst).await {
            Ok(upstream) => upstream,
            Err(source) => {
                return Err(refuse(
                    Refusal::Unreachable {
                        dst: attempt.dst,
                        source,
                    },
                    log,
                ));
            }
        };
        let info = ConnectionInfo {
            direction: match attempt.transport {
                Transport::Hbone => Direction::InboundHbone,
                Transport::Plaintext => Direction::InboundPlaintext,
            },
            src_addr: attempt.src,
            src_identity: log.src_identity.clone(),
            dst_addr: attempt.dst,
            dst_workload: log.dst_workload.clone(),
            dst_namespace: Some(Arc::clone(&names.namespace)),
            start_unix_ms: log.start_unix_ms,
        };
        let registration = self.inner.connections.register(
            info,
            Some((Arc::clone(&names.uid), facts)),
            &self.inner.kill,
        );
        let relay = RelayOptions {
            idle_timeout: self.inner.options.idle_timeout,
            cancel: Some(registration.cancel.clone()),
        };
        let finish = InboundFinish {
            metrics: self.inner.metrics.connection_opened(&labels),
            log,
            registration,
            started,
            format: self.inner.options.access_log,
            relay,
            _active: track(&workload),
        };
        Ok((upstream, finish))
    }

    /// Connects to the workload at `dst`; from inside its pod (as `src`, transparently)
    /// when capture registered the pod's network.
    async fn dial_workload(&self, src: SocketAddr, dst: SocketAddr) -> std::io::Result<TcpStream> {
        self.connect_for_pod(dst.ip(), dst, Some(src.ip())).await
    }

    /// The HBONE request handler of a listener; `scope` is the workload address the
    /// listener belongs to (`None`: any local workload).
    pub(crate) fn hbone_handler(
        &self,
        scope: Option<IpAddr>,
    ) -> impl InboundHandler<Upstream = TcpStream> {
        let node = self.clone();
        move |request: InboundRequest| {
            let node = node.clone();
            async move { node.handle_hbone(scope, request).await }
        }
    }

    async fn handle_hbone(
        &self,
        scope: Option<IpAddr>,
        request: InboundRequest,
    ) -> InboundDecision<TcpStream> {
        if !self.await_config("inbound HBONE", request.peer_addr).await {
            return InboundDecision::Reject(StatusCode::SERVICE_UNAVAILABLE);
        }
        let identity = match weft_identity::peer_identity(Some(&request.peer_certificates))
            .map_err(|err| err.to_string())
        {
            Ok(identity) => identity,
            Err(reason) => {
                tracing::info!(peer = %request.peer_addr, %reason, "HBONE client identity unusable");
                return InboundDecision::Reject(Refusal::BadPeer(reason).status());
            }
        };
        let src = self.hbone_source(&request, &identity);
        let attempt = Attempt {
            scope,
            src,
            identity: Some(identity),
            dst: request.authority,
            transport: Transport::Hbone,
        };
        match self.inbound_connect(attempt).await {
            Ok((upstream, finish)) => InboundDecision::Accept(
                Accepted::new(upstream)
                    .with_relay_options(finish.relay.clone())
                    .on_complete(move |result| finish.finish(result)),
            ),
            Err(refusal) => InboundDecision::Reject(refusal.status()),
        }
    }

    /// The source address of an HBONE stream, as used for policy (`ipBlocks`), telemetry
    /// and the transparent connect to the workload.
    ///
    /// The `forwarded` header is only the client's claim: any holder of a mesh certificate
    /// could name any address there and so pass (or dodge) an `ipBlocks` rule. Therefore:
    /// - when the TCP peer address belongs to a workload with the client's identity (in-pod
    ///   mode, where the source node proxy dials from inside the source pod), the peer
    ///   address is the source: the kernel vouches for it, and the header is ignored;
    /// - otherwise (a node proxy dialling from its own address, as in explicit mode) the
    ///   header is believed only when it names a workload whose identity is the client's:
    ///   a client speaks for workloads whose certificate it holds, never for others;
    /// - anything else keeps the TCP peer address.
    ///
    /// Left open: outside in-pod mode, a client can still claim the address of another
    /// workload that shares its service account (same identity).
    fn hbone_source(&self, request: &InboundRequest, identity: &SpiffeId) -> SocketAddr {
        let peer = request.peer_addr;
        let state = self.inner.store.snapshot();
        let network = self.inner.options.network.as_str();
        let holds = |ip: IpAddr| {
            state
                .workload_by_addr(network, ip)
                .is_some_and(|w| w.identity() == identity)
        };
        if holds(peer.ip()) {
            return peer;
        }
        match request.forwarded_for() {
            Some(claimed) if holds(claimed) => SocketAddr::new(claimed, peer.port()),
            Some(claimed) => {
                tracing::debug!(%peer, %claimed, %identity, "`forwarded` names an address this client does not hold; using the peer address");
                peer
            }
            None => peer,
        }
    }

    /// Serves plaintext inbound connections on `listener` (15006) until shutdown.
    pub fn serve_inbound_plaintext(&self, listener: TcpListener, destination: InboundDestination) {
        self.add_own_listener(&listener);
        let stop = self.inner.stop_accepting.clone();
        self.serve_plaintext_scoped(listener, destination, None, stop);
    }

    pub(crate) fn serve_plaintext_scoped(
        &self,
        listener: TcpListener,
        destination: InboundDestination,
        scope: Option<IpAddr>,
        stop: CancellationToken,
    ) {
        let own = listener.local_addr().ok().map(|addr| addr.port());
        self.serve_accept_loop(listener, stop, move |node, stream, peer| async move {
            node.handle_plaintext(stream, peer, destination, scope, own)
                .await;
        });
    }

    async fn handle_plaintext(
        &self,
        mut stream: TcpStream,
        peer: SocketAddr,
        destination: InboundDestination,
        scope: Option<IpAddr>,
        own: Option<u16>,
    ) {
        if !self.await_config("plaintext inbound", peer).await {
            return;
        }
        let dst = match destination {
            InboundDestination::Fixed(dst) => dst,
            InboundDestination::OriginalDst => match super::original_dst::original_dst(&stream) {
                Ok(dst) if Some(dst.port()) != own => dst,
                Ok(_) => {
                    tracing::debug!(%peer, "plaintext inbound connection was not redirected (or aimed at this listener's port); closing");
                    return;
                }
                Err(error) => {
                    tracing::debug!(%peer, %error, "no original destination; closing");
                    return;
                }
            },
        };
        let attempt = Attempt {
            scope,
            src: peer,
            identity: None,
            dst,
            transport: Transport::Plaintext,
        };
        // A refusal is already logged and counted; dropping the stream closes it.
        if let Ok((mut upstream, finish)) = self.inbound_connect(attempt).await {
            let result = weft_hbone::relay(&mut stream, &mut upstream, &finish.relay).await;
            finish.finish(result);
        }
    }
}

/// The identity the client presented, for the log and the table: the source workload's
/// shared string when the certificate names that workload's identity (the usual case),
/// else formatted for this connection.
fn peer_identity_name(
    attempt: &Attempt,
    source: Option<&MeshWorkload>,
    names: Option<&WorkloadNames>,
) -> Option<Arc<str>> {
    let identity = attempt.identity.as_ref()?;
    match (source, names) {
        (Some(source), Some(names)) if source.identity() == identity => {
            Some(Arc::clone(&names.identity))
        }
        _ => Some(identity.to_string().into()),
    }
}

fn track(workload: &Arc<MeshWorkload>) -> ActiveConnection {
    workload.track_connection()
}

/// The mesh's inbound HBONE limits (of the node proxy and of waypoints): peers are counted
/// under the SPIFFE id of their certificate, refusals in
/// `weft_hbone_inbound_refused_total{kind, limit}` of `registry`.
pub fn inbound_limits(
    config: weft_hbone::LimitConfig,
    registry: &mut prometheus_client::registry::Registry,
) -> Arc<weft_hbone::InboundLimits> {
    let identify = |certs: &weft_hbone::PeerCertificates| {
        weft_identity::peer_identity(Some(certs))
            .ok()
            .map(|id| id.to_string())
    };
    weft_hbone::InboundLimits::counted(config, Box::new(identify), registry)
}
