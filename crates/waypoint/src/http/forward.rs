//! Forwarding one request to a backend: endpoint choice (the upstream's least-request
//! power of two choices, ejected outliers skipped), a pooled HTTP connection over HBONE
//! with the waypoint's identity, the per-attempt timeout, and retries within the rule's
//! policy and the service's retry budget.
//!
//! Only requests without a body are retried (their attempts can be rebuilt from the head);
//! a request with a body streams to its one attempt. A pooled HTTP/1.1 connection the
//! endpoint closed while idle is replaced transparently: hyper hands the unsent request
//! back, so that is not a retry.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderMap, Method, Request, Response, Uri, Version};
use hyper::body::Incoming;
use weft_l7::{Outcome, RetryPolicy, SessionPersistence, SessionToken};
use weft_upstream::{MeshService, MeshWorkload, PortMapping, Route, UpstreamError};

use super::client::{self, HandshakeError, PoolKey, Sender};
use super::local::Failure;
use super::{Body, empty};
use crate::Waypoint;
use crate::backend_tls::BackendTls;

/// Where a request goes.
#[derive(Debug, Clone)]
pub(crate) enum Backend {
    /// A port of a service: one of its endpoints.
    Service {
        service: Arc<MeshService>,
        port: PortMapping,
    },
    /// A workload addressed directly.
    Workload {
        workload: Arc<MeshWorkload>,
        addr: SocketAddr,
    },
    /// A service reached through its waypoint (a gateway backend marked `via_waypoint`):
    /// HBONE to the waypoint with the service `vip` (VIP:port) as authority, as a node
    /// proxy does.
    ViaWaypoint {
        service: Arc<MeshService>,
        vip: SocketAddr,
    },
}

impl Backend {
    /// Its BackendTLSPolicy settings in the configuration in force, if any.
    fn tls(&self, waypoint: &Waypoint) -> Option<Arc<BackendTls>> {
        let Self::Service { service, port } = self else {
            return None;
        };
        let config = waypoint.config();
        config
            .backend_tls
            .find(service.key(), port.service_port)
            .cloned()
    }

    /// The service key or workload uid (retry budgets, logs).
    pub fn key(&self) -> &str {
        match self {
            Self::Service { service, .. } | Self::ViaWaypoint { service, .. } => service.key(),
            Self::Workload { workload, .. } => workload.uid(),
        }
    }
}

/// The head of the request to send (each attempt gets a copy).
#[derive(Debug, Clone)]
pub(crate) struct Head {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    /// HTTP/2 upstream (else HTTP/1.1).
    pub h2: bool,
    /// An HTTP/1.1 upgrade (WebSocket): a connection of its own, never pooled.
    pub upgrade: bool,
}

impl Head {
    /// A request with this head; its headers are `taken` (the last attempt) or copied.
    fn request(&mut self, body: Body, take: bool) -> Request<Body> {
        let mut request = Request::new(body);
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = if take {
            std::mem::take(&mut self.headers)
        } else {
            self.headers.clone()
        };
        *request.version_mut() = if self.h2 {
            Version::HTTP_2
        } else {
            Version::HTTP_11
        };
        request
    }
}

/// How many attempts, and how long each may take.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Attempts<'a> {
    /// `backendRequest` timeout.
    pub per_try: Option<Duration>,
    /// The rule's retry policy.
    pub retry: Option<&'a RetryPolicy>,
    /// Whether the request can be sent again (it has no body).
    pub replayable: bool,
    /// A session token: its endpoint is chosen while it is a healthy candidate.
    pub sticky: Option<(&'a SessionPersistence, SessionToken)>,
}

/// A response from the backend.
#[derive(Debug)]
pub(crate) struct Forwarded {
    pub response: Response<Incoming>,
    /// The endpoint's `<ip>:<port>`.
    pub upstream: SocketAddr,
    /// The endpoint's workload.
    pub endpoint: Option<Arc<MeshWorkload>>,
    /// Time to the response headers of the last attempt.
    pub upstream_time: Duration,
}

/// What an attempt ended with (the endpoint is known even when it failed).
type Attempt = Result<Forwarded, (Failure, Option<SocketAddr>)>;

/// Sends the request with `head`, retrying as `attempts` allows.
pub(crate) async fn forward(
    waypoint: &Waypoint,
    backend: &Backend,
    mut head: Head,
    body: Body,
    attempts: &Attempts<'_>,
) -> Attempt {
    let budget = waypoint.inner().budgets.of(backend.key());
    let _request = budget.start_request();
    let mut body = Some(body);
    let mut attempt = 1;
    let mut _retry = None;
    let mut tried = Vec::new();
    // Without retries the one attempt takes the headers instead of a copy, and the
    // endpoints tried are not kept.
    let retries = attempts.retry.is_some() && attempts.replayable;
    loop {
        let request = head.request(body.take().unwrap_or_else(empty), !retries);
        let sending = one_attempt(
            waypoint,
            backend,
            &head,
            request,
            retries.then_some(&mut tried),
            attempts.sticky,
        );
        let result = match attempts.per_try {
            Some(limit) => tokio::time::timeout(limit, sending)
                .await
                .unwrap_or_else(|_| Err((Failure::attempt_timeout(), None))),
            None => sending.await,
        };
        let Some(policy) = attempts.retry.filter(|_| attempts.replayable) else {
            return result;
        };
        let outcome = match &result {
            Ok(forwarded) => Some(Outcome::Status(forwarded.response.status())),
            Err((failure, _)) => failure.outcome,
        };
        if !outcome.is_some_and(|o| policy.should_retry(attempt, o)) {
            return result;
        }
        let Some(guard) = budget.try_retry() else {
            tracing::debug!(backend = backend.key(), "retry budget spent");
            return result;
        };
        _retry = Some(guard);
        tokio::time::sleep(policy.backoff(attempt)).await;
        attempt += 1;
    }
}

/// One attempt; the endpoint it chose is added to `tried` (when the request can be
/// retried), which later attempts avoid.
async fn one_attempt(
    waypoint: &Waypoint,
    backend: &Backend,
    head: &Head,
    request: Request<Body>,
    tried: Option<&mut Vec<String>>,
    sticky: Option<(&SessionPersistence, SessionToken)>,
) -> Attempt {
    let avoid = tried.as_deref().map_or(&[][..], Vec::as_slice);
    let route = choose(waypoint, backend, avoid, sticky)
        .await
        .map_err(|f| (f, None))?;
    let endpoint = route.destination().cloned();
    if let (Some(workload), Some(tried)) = (&endpoint, tried) {
        tried.push(workload.uid().to_owned());
    }
    let upstream = match &route {
        Route::Hbone { authority, .. } => *authority,
        Route::Plain { addr, .. } => *addr,
    };
    let outlier = |failed: bool| {
        if let Some(workload) = &endpoint {
            waypoint.inner().outlier.record(workload.uid(), failed);
        }
    };
    let _active = endpoint.as_ref().map(|w| w.track_connection());
    let started = Instant::now();
    let tls = backend.tls(waypoint);
    let key = PoolKey::new(upstream, tls.as_deref());
    let (sender, response) = match send(waypoint, &route, key, tls.as_deref(), head, request).await
    {
        Ok(sent) => sent,
        Err(failure) => {
            outlier(true);
            return Err((failure, Some(upstream)));
        }
    };
    outlier(response.status().is_server_error());
    if let Sender::H1(sender) = sender
        && !head.upgrade
    {
        waypoint.inner().clients.put_h1(key, sender);
    }
    Ok(Forwarded {
        response,
        upstream,
        endpoint,
        upstream_time: started.elapsed(),
    })
}

/// Sends on a pooled connection, or a new one when none is idle or the pooled one turned
/// out closed before the request left.
async fn send(
    waypoint: &Waypoint,
    route: &Route,
    upstream: PoolKey,
    tls: Option<&BackendTls>,
    head: &Head,
    request: Request<Body>,
) -> Result<(Sender, Response<Incoming>), Failure> {
    let pool = &waypoint.inner().clients;
    let pooled = if head.upgrade {
        None
    } else {
        pool.checkout(upstream, head.h2)
    };
    let request = match pooled {
        Some(mut sender) => match sender.try_send(request).await {
            Ok(response) => return Ok((sender, response)),
            Err((error, None)) => return Err(Failure::reset(&error.to_string())),
            Err((_, Some(unsent))) => unsent,
        },
        None => request,
    };
    let mut sender = connect(waypoint, route, tls, head).await?;
    if let Sender::H2(shared) = &sender {
        pool.share_h2(upstream, shared);
    }
    match sender.try_send(request).await {
        Ok(response) => Ok((sender, response)),
        Err((error, _)) => Err(Failure::reset(&error.to_string())),
    }
}

/// An endpoint of the backend: not ejected, and not one an earlier attempt of this request
/// tried (as long as others are left); the one a session token names when it is among them
/// and healthy.
async fn choose(
    waypoint: &Waypoint,
    backend: &Backend,
    tried: &[String],
    sticky: Option<(&SessionPersistence, SessionToken)>,
) -> Result<Route, Failure> {
    match backend {
        Backend::Service { service, port } => {
            let inner = waypoint.inner();
            let candidates = inner.outlier.filter_except(service, tried);
            let candidates = sticky
                .and_then(|(_, token)| pinned(service, &candidates, &token))
                .unwrap_or(candidates);
            (inner.upstream)
                .service_route_resolving(candidates, *port, None, None)
                .await
                .map_err(|e| route_failure(&e))
        }
        Backend::Workload { workload, addr } => {
            Ok(crate::tcp::direct_route(waypoint, workload, *addr))
        }
        Backend::ViaWaypoint { vip, .. } => waypoint
            .inner()
            .upstream
            .route(&*waypoint.state(), None, *vip)
            .map_err(|e| route_failure(&e)),
    }
}

/// The answer for a request no endpoint could be routed to: `DF` when its name did not
/// resolve, `UH` otherwise.
fn route_failure(error: &UpstreamError) -> Failure {
    match error {
        UpstreamError::Unresolved { .. } => Failure::dns_failure(&error.to_string()),
        _ => Failure::no_healthy_upstream(&error.to_string()),
    }
}

/// `service` narrowed to the endpoint `token` names (one lookup by its key) while it is
/// healthy and among the `candidates` (not ejected, not tried).
fn pinned(
    service: &Arc<MeshService>,
    candidates: &Arc<MeshService>,
    token: &SessionToken,
) -> Option<Arc<MeshService>> {
    let endpoint = service.endpoint_by_key(token.endpoint_key(), weft_l7::session::endpoint_key)?;
    let workload = &endpoint.workload;
    let candidate = Arc::ptr_eq(service, candidates)
        || (candidates.endpoints().iter()).any(|e| Arc::ptr_eq(&e.workload, workload));
    if !workload.is_healthy() || !candidate {
        return None;
    }
    let record = Arc::clone(service.record());
    Some(Arc::new(MeshService::new(record, vec![endpoint.clone()])))
}

async fn connect(
    waypoint: &Waypoint,
    route: &Route,
    tls: Option<&BackendTls>,
    head: &Head,
) -> Result<Sender, Failure> {
    let connection = waypoint
        .inner()
        .upstream
        .connect(route, &waypoint.client())
        .await
        .map_err(|e| Failure::connect(&e.to_string()))?;
    client::handshake(connection, head.h2, head.upgrade, tls)
        .await
        .map_err(|error| match error {
            HandshakeError::Tls(error) => Failure::backend_tls(&error),
            HandshakeError::Http(error) => Failure::connect(&error.to_string()),
        })
}
