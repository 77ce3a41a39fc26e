//! One request through the waypoint or gateway (one pipeline for both; the connection it
//! came on is a [`Conn`]): request id and forwarding headers, the tracing hook,
//! authentication and authorization (403 `RBAC: access denied`, 401 for a bad JWT), route
//! selection (no route attached: the original destination; routes that do not match: 404),
//! the rule's filters, a weighted backend (unresolved: 500) or the one a session token
//! names (and a token handed out with the answer), forwarding with the rule's
//! timeouts and retries (`timeouts.request` bounds the response body too), response filters, and at the end of the response body the
//! metrics and the access-log line.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::request::Parts;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use hyper::body::{Body as _, Incoming};
use hyper::upgrade::OnUpgrade;
use weft_l7::{
    Filters, Mirror, RequestVerdict, RequestView, RouteBackend, Rule, Selected, SessionPersistence,
    SessionToken,
};
use weft_proto::l7::Protocol;
use weft_upstream::{MeshService, MeshWorkload, PortMapping};

use super::body::{Deadline, Observed};
use super::conn::Conn;
use super::forward::{Attempts, Backend, forward};
use super::headers::{self, Upgrade};
use super::local::{self, Failure};
use super::series::{Outcome, SeriesCache};
use super::target::{self, Target};
use super::{Body, boxed, empty};
use crate::Waypoint;
use crate::routing::RouteChoice;
use crate::telemetry::{AccessEntry, RequestLabels};
use crate::waypoint::Span;

/// What is known about the exchange when the response ends.
struct Exchange {
    entry: AccessEntry,
    endpoint: Option<Arc<MeshWorkload>>,
    /// The backend service the request went to.
    service: Option<Arc<MeshService>>,
    grpc: bool,
}

/// The request as the pipeline carries it.
struct Pending {
    parts: Parts,
    body: Body,
    target: Target,
    h2: bool,
    replayable: bool,
    upgrade: Option<OnUpgrade>,
}

/// Handles one request; never fails (failures are answered). Its metrics go to the
/// connection's `series`.
pub(crate) async fn handle(
    waypoint: Waypoint,
    conn: Conn,
    series: Arc<SeriesCache>,
    h2: bool,
    mut request: Request<Incoming>,
) -> Response<Body> {
    let started = Instant::now();
    let kind = if h2 {
        Upgrade::None
    } else {
        headers::upgrade(request.headers_mut())
    };
    let upgrade = (kind == Upgrade::WebSocket).then(|| hyper::upgrade::on(&mut request));
    let (mut parts, body) = request.into_parts();
    // Hop-by-hop headers go as received, before the proxy adds its own: a client naming
    // `x-forwarded-for` (or a header a route filter sets) in `Connection` must not remove
    // what the proxy puts there.
    headers::strip_hop_by_hop(&mut parts.headers);
    headers::prepare(&mut parts.headers, conn.scheme(), conn.is_edge());
    let span = waypoint
        .inner()
        .tracer
        .as_ref()
        .map(|tracer| tracer.start(&mut parts));
    let received = Arc::new(AtomicU64::new(0));
    let replayable = body.is_end_stream();
    let admitted = admit(&kind, &mut parts, &conn);
    let logged = admitted.as_ref().ok().cloned();
    let logged = logged.unwrap_or_else(|| Target::unread(&parts));
    let mut exchange = Exchange {
        entry: headers::access_entry(&parts, &logged, h2, &conn, waypoint.options().role),
        endpoint: None,
        service: None,
        grpc: headers::is_grpc(&parts.headers),
    };
    let outcome = match admitted {
        Ok(target) => {
            let request = Pending {
                body: boxed(Observed::counting(boxed(body), Arc::clone(&received))),
                parts,
                target,
                h2,
                replayable,
                upgrade,
            };
            process(&waypoint, &conn, request, &mut exchange).await
        }
        Err(failure) => Err(failure),
    };
    let response = match outcome {
        Ok(response) => response,
        Err(failure) => {
            exchange.entry.flags = failure.flags;
            failure.response()
        }
    };
    let ends = Ends {
        conn,
        series,
        received,
        started,
        span,
    };
    finish(&waypoint, ends, exchange, response)
}

/// The request's canonical target, once its upgrade is one that is served and its path
/// has been normalized.
fn admit(kind: &Upgrade, parts: &mut Parts, conn: &Conn) -> Result<Target, Failure> {
    if let Upgrade::Other(protocol) = kind {
        return Err(Failure::upgrade_refused(protocol));
    }
    target::normalize(parts)?;
    target::target(parts, conn.destination())
}

async fn process(
    waypoint: &Waypoint,
    conn: &Conn,
    mut request: Pending,
    exchange: &mut Exchange,
) -> Result<Response<Body>, Failure> {
    let config = waypoint.config();
    let scope = conn.scope(&config, &request.target)?;
    let service = scope.service.as_deref();
    let remote_ip = headers::client_ip(
        &request.parts.headers,
        config.trusted_hops,
        conn.source_ip(),
    );
    if remote_ip != conn.source_ip() {
        exchange.entry.remote_ip = remote_ip.to_string();
    }
    if conn.is_edge() {
        headers::append_forwarded_for(&mut request.parts.headers, conn.source_ip());
    }
    super::authz::authorize(
        waypoint,
        conn,
        &config,
        service,
        &mut request.parts,
        &request.target,
        remote_ip,
    )?;
    let view = RequestView {
        method: &request.parts.method,
        host: &request.target.host,
        path: &request.target.path,
        headers: &request.parts.headers,
    };
    let choice = service.map_or(RouteChoice::Default, |s| {
        s.routes.select(conn.caller_namespace(), scope.port, &view)
    });
    match choice {
        RouteChoice::NoMatch => Err(Failure::no_route()),
        RouteChoice::Default => {
            let backend = conn.default_backend().ok_or_else(Failure::no_route)?;
            let attempts = Attempts {
                replayable: request.replayable,
                ..Attempts::default()
            };
            send(waypoint, &backend, request, &attempts, exchange).await
        }
        RouteChoice::Rule(selected) => {
            let route = selected.route;
            exchange.entry.route = Some(format!("{}/{}", route.namespace, route.name));
            let plan = routed(waypoint, conn, scope.port, selected, &mut request)?;
            plan.finish(waypoint, request, exchange).await
        }
    }
}

/// A rule's decision before sending: a local answer, or the backend and its filters.
enum Plan<'a> {
    Answer(Response<Body>),
    Send {
        backend: Backend,
        rule: &'a Rule,
        backend_filters: &'a Filters,
        /// The request's `Origin`, kept when a CORS filter needs it for the answer.
        origin: Option<HeaderValue>,
        session: Option<Session<'a>>,
    },
}

/// A request of a rule with session persistence.
#[derive(Debug, Clone, Copy)]
struct Session<'a> {
    persistence: &'a SessionPersistence,
    /// Index of the chosen backend in the rule.
    backend: usize,
    /// The request's token, when it named that backend.
    token: Option<SessionToken>,
}

impl Session<'_> {
    /// Hands the client a token for the endpoint that answered, unless its own named it.
    fn hand_out(
        &self,
        backend: &Backend,
        endpoint: Option<&MeshWorkload>,
        response: &mut Response<Body>,
    ) {
        let Some(endpoint) = endpoint else {
            return;
        };
        let key = match backend {
            Backend::Service { service, .. } => {
                service.endpoint_key(endpoint, weft_l7::session::endpoint_key)
            }
            _ => weft_l7::session::endpoint_key(backend.key(), endpoint.uid()),
        };
        let held = self.token.as_ref();
        if let Some((name, value)) = self.persistence.hand_out(self.backend, &key, held) {
            response.headers_mut().append(name, value);
        }
    }
}

/// The rule's backend for a request: the one its session token names when that backend
/// can take it, else one by weight.
fn pick<'a>(
    rule: &'a Rule,
    headers: &HeaderMap,
) -> Result<(&'a RouteBackend, Option<Session<'a>>), Failure> {
    let persistence = rule.session();
    let token = persistence.and_then(|p| p.token(headers));
    if let (Some(persistence), Some(token)) = (persistence, token)
        && let Some(backend) = rule.usable_backend(token.backend)
    {
        let session = Session {
            persistence,
            backend: token.backend,
            token: Some(token),
        };
        return Ok((backend, Some(session)));
    }
    let (index, backend) = rule
        .pick_indexed(&mut rand::rng())
        .map_err(|e| Failure::unresolved(&e.to_string()))?;
    let session = persistence.map(|persistence| Session {
        persistence,
        backend: index,
        token: None,
    });
    Ok((backend, session))
}

fn routed<'a>(
    waypoint: &Waypoint,
    conn: &Conn,
    port: u16,
    selected: Selected<'a>,
    request: &mut Pending,
) -> Result<Plan<'a>, Failure> {
    let context = selected.context(conn.scheme(), port);
    let rule = selected.rule;
    if let Some(answer) = apply(rule.filters(), &mut request.parts, &context)? {
        return Ok(Plan::Answer(answer));
    }
    let (chosen, session) = pick(rule, &request.parts.headers)?;
    if let Some(answer) = apply(chosen.filters(), &mut request.parts, &context)? {
        return Ok(Plan::Answer(answer));
    }
    request.target = target::target(&request.parts, conn.destination())?;
    let backend = resolve(waypoint, chosen)?;
    let mirrors = rule.filters().mirrors().iter();
    let limit = rule.timeouts().request.unwrap_or(MIRROR_TIMEOUT);
    for mirror in mirrors.chain(chosen.filters().mirrors()) {
        send_mirror(waypoint, mirror, request, limit);
    }
    let headers = &request.parts.headers;
    let origin =
        (rule.filters().cors_origin(headers)).or_else(|| chosen.filters().cors_origin(headers));
    Ok(Plan::Send {
        backend,
        rule,
        backend_filters: chosen.filters(),
        origin,
        session,
    })
}

/// Runs request filters: `Some` answer for a redirect or a CORS preflight.
fn apply(
    filters: &Filters,
    parts: &mut Parts,
    context: &weft_l7::FilterContext<'_>,
) -> Result<Option<Response<Body>>, Failure> {
    match filters.apply_request(parts, context) {
        Ok(RequestVerdict::Forward) => Ok(None),
        Ok(RequestVerdict::Redirect(redirect)) => Ok(Some(local::redirect(&redirect))),
        Ok(RequestVerdict::Preflight(headers)) => Ok(Some(local::preflight(headers))),
        Err(error) => Err(Failure::filter(&error)),
    }
}

impl Plan<'_> {
    async fn finish(
        self,
        waypoint: &Waypoint,
        request: Pending,
        exchange: &mut Exchange,
    ) -> Result<Response<Body>, Failure> {
        let (backend, rule, backend_filters, origin, session) = match self {
            Plan::Answer(answer) => return Ok(answer),
            Plan::Send {
                backend,
                rule,
                backend_filters,
                origin,
                session,
            } => (backend, rule, backend_filters, origin, session),
        };
        let timeouts = rule.timeouts();
        let attempts = Attempts {
            per_try: timeouts.backend_request,
            retry: rule.retry(),
            replayable: request.replayable,
            sticky: session.and_then(|s| Some((s.persistence, s.token?))),
        };
        let deadline = timeouts
            .request
            .map(|limit| tokio::time::Instant::now() + limit);
        let sending = send(waypoint, &backend, request, &attempts, exchange);
        let mut response = match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, sending)
                .await
                .unwrap_or_else(|_| Err(Failure::timeout()))?,
            None => sending.await?,
        };
        if let Some(deadline) = deadline
            && response.status() != StatusCode::SWITCHING_PROTOCOLS
        {
            response = response.map(|body| boxed(Deadline::new(body, deadline)));
        }
        if let Some(session) = session {
            let endpoint = exchange.endpoint.as_deref();
            session.hand_out(&backend, endpoint, &mut response);
        }
        for filters in [rule.filters(), backend_filters] {
            filters.apply_response(response.headers_mut());
            filters.apply_cors(origin.as_ref(), response.headers_mut());
        }
        Ok(response)
    }
}

/// The service a backend names, from the mesh state.
fn resolve(waypoint: &Waypoint, backend: &RouteBackend) -> Result<Backend, Failure> {
    let state = waypoint.state();
    let service = state.service_by_key(backend.service()).ok_or_else(|| {
        Failure::unresolved(&format!("service {} is not in the mesh", backend.service()))
    })?;
    let number = backend.port();
    let port = service.port(number).unwrap_or(PortMapping {
        service_port: number,
        target_port: None,
    });
    let service = Arc::clone(service);
    if backend.via_waypoint()
        && service.proto().waypoint.is_some()
        && let Some(vip) = vip(waypoint, &service)
    {
        let vip = std::net::SocketAddr::new(vip, number);
        return Ok(Backend::ViaWaypoint { service, vip });
    }
    Ok(Backend::Service { service, port })
}

/// The service's VIP in this proxy's network.
fn vip(waypoint: &Waypoint, service: &weft_upstream::MeshService) -> Option<std::net::IpAddr> {
    let network = &waypoint.options().network;
    service
        .record()
        .vips
        .iter()
        .find(|(net, _)| net == network)
        .map(|(_, ip)| *ip)
}

/// Forwards and records where the request went.
async fn send(
    waypoint: &Waypoint,
    backend: &Backend,
    request: Pending,
    attempts: &Attempts<'_>,
    exchange: &mut Exchange,
) -> Result<Response<Body>, Failure> {
    let h2 = request.upgrade.is_none() && upstream_h2(waypoint, backend, &request);
    let Parts {
        method,
        uri,
        headers,
        ..
    } = request.parts;
    let upgrade = request.upgrade.is_some();
    let head = headers::head(method, uri, headers, &request.target, h2, upgrade);
    exchange.entry.upstream_service = Some(backend.key().to_owned());
    if let Backend::Service { service, .. } | Backend::ViaWaypoint { service, .. } = backend {
        exchange.service = Some(Arc::clone(service));
    }
    match forward(waypoint, backend, head, request.body, attempts).await {
        Ok(forwarded) => {
            exchange.entry.upstream_host = Some(forwarded.upstream.to_string());
            exchange.entry.upstream_ms = u64::try_from(forwarded.upstream_time.as_millis()).ok();
            exchange.endpoint = forwarded.endpoint;
            let mut response = forwarded.response;
            let switched = response.status() == StatusCode::SWITCHING_PROTOCOLS;
            match request.upgrade {
                Some(downstream) if switched => {
                    headers::splice(downstream, hyper::upgrade::on(&mut response));
                }
                None if switched => return Err(Failure::unexpected_upgrade()),
                _ => headers::strip_hop_by_hop(response.headers_mut()),
            }
            Ok(response.map(boxed))
        }
        Err((failure, upstream)) => {
            exchange.entry.upstream_host = upstream.map(|u| u.to_string());
            Err(failure)
        }
    }
}

/// Whether to speak HTTP/2 to `backend`, as Istio decides from the service port: a port
/// declared `HTTP2` or `GRPC` (a service bound to this waypoint, or the service's own port
/// in the workload API, e.g. `appProtocol: kubernetes.io/h2c`) gets HTTP/2, one declared
/// HTTP/1.1 gets HTTP/1.1 (except gRPC from an HTTP/2 client: it needs HTTP/2), and an
/// undeclared port, a workload addressed directly or another waypoint get what the client
/// spoke (Istio's "use downstream protocol" for ports it detects).
fn upstream_h2(waypoint: &Waypoint, backend: &Backend, request: &Pending) -> bool {
    let Backend::Service { service, port } = backend else {
        return request.h2;
    };
    let config = waypoint.config();
    let bound = config
        .service(service.key())
        .map(|bound| bound.protocol(port.service_port));
    let declared = match bound {
        Some(Protocol::Http2 | Protocol::Grpc) => Some(true),
        Some(Protocol::Http) => Some(false),
        _ => declared_h2(service, port.service_port),
    };
    match declared {
        Some(h2) => h2 || (request.h2 && headers::needs_h2(&request.parts.headers)),
        None => request.h2,
    }
}

/// What the workload API record of `service` declares for `port`: HTTP/2 (`Some(true)`,
/// HTTP2 or GRPC), HTTP/1.1 (`Some(false)`), or nothing.
fn declared_h2(service: &weft_upstream::MeshService, port: u16) -> Option<bool> {
    use weft_proto::workload::AppProtocol;
    let declared = service
        .proto()
        .ports
        .iter()
        .find(|declared| declared.service_port == u32::from(port))?;
    match AppProtocol::try_from(declared.app_protocol) {
        Ok(AppProtocol::Http2 | AppProtocol::Grpc) => Some(true),
        Ok(AppProtocol::Http11) => Some(false),
        _ => None,
    }
}

/// How long a mirrored copy may take when its rule sets no `timeouts.request` (Envoy's
/// default route timeout).
const MIRROR_TIMEOUT: Duration = Duration::from_secs(15);

/// Sends a bodiless copy of the request to a mirror backend and forgets it; the copy is
/// given up after `limit`, and not sent at all (but counted) while the waypoint's
/// `max_mirrors_in_flight` copies are out.
fn send_mirror(waypoint: &Waypoint, mirror: &Mirror, request: &Pending, limit: Duration) {
    if !mirror.sampled(&mut rand::rng()) {
        return;
    }
    let inner = waypoint.inner();
    let Ok(permit) = Arc::clone(&inner.mirrors).try_acquire_owned() else {
        inner.metrics.mirror_dropped();
        tracing::debug!(
            max = inner.options.max_mirrors_in_flight,
            "mirrored copy dropped: the most allowed are in flight"
        );
        return;
    };
    let Ok(backend) = resolve(waypoint, mirror.backend()) else {
        return;
    };
    let h2 = upstream_h2(waypoint, &backend, request);
    let parts = &request.parts;
    let (method, uri, headers) = (
        parts.method.clone(),
        parts.uri.clone(),
        parts.headers.clone(),
    );
    let mut head = headers::head(method, uri, headers, &request.target, h2, false);
    headers::for_mirror(&mut head.headers);
    let waypoint = waypoint.clone();
    tokio::spawn(async move {
        let _permit = permit;
        let attempts = Attempts::default();
        let sending = forward(&waypoint, &backend, head, empty(), &attempts);
        match tokio::time::timeout(limit, sending).await {
            Ok(Ok(_)) => {}
            Ok(Err((failure, _))) => {
                tracing::debug!(status = %failure.status, "mirrored request failed");
            }
            Err(_) => tracing::debug!(?limit, "mirrored request timed out"),
        }
    });
}

/// What the end of the response needs besides the exchange.
struct Ends {
    conn: Conn,
    series: Arc<SeriesCache>,
    /// Request body bytes received.
    received: Arc<AtomicU64>,
    started: Instant,
    span: Option<Box<dyn Span>>,
}

/// Wraps the response body so that its end records metrics, the access log and the span.
fn finish(
    waypoint: &Waypoint,
    ends: Ends,
    exchange: Exchange,
    response: Response<Body>,
) -> Response<Body> {
    let status = response.status().as_u16();
    let header_grpc = grpc_status(response.headers());
    let waypoint = waypoint.clone();
    let (parts, body) = response.into_parts();
    let body = Observed::on_end(body, move |end| {
        let Exchange {
            mut entry,
            endpoint,
            service,
            grpc,
        } = exchange;
        if end.timed_out {
            entry.flags = "UT";
        } else if !end.complete && entry.flags == "-" {
            // The client went away before the response was sent completely.
            entry.flags = "DC";
        }
        let outcome = Outcome {
            endpoint,
            service,
            grpc,
            flags: entry.flags,
            status,
            grpc_status: end.grpc_status.or(header_grpc).unwrap_or_default(),
        };
        let metrics = &waypoint.inner().metrics;
        let series = ends.series.series(metrics, outcome, |outcome| {
            request_labels(&waypoint, &ends.conn, outcome)
        });
        let elapsed = ends.started.elapsed();
        let received = ends.received.load(Ordering::Relaxed);
        series.observe(elapsed.as_secs_f64() * 1000.0, received, end.bytes);
        entry.status = status;
        entry.duration_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        entry.bytes_received = received;
        entry.bytes_sent = end.bytes;
        entry.log_as(waypoint.options().access_log);
        if let Some(span) = ends.span {
            span.finish(&entry);
        }
    });
    Response::from_parts(parts, boxed(body))
}

/// The metric labels of a request of `conn` that ended in `outcome`.
fn request_labels(waypoint: &Waypoint, conn: &Conn, outcome: &Outcome) -> RequestLabels {
    let (endpoint, service) = (outcome.endpoint.as_deref(), outcome.service.as_deref());
    let mut connection = conn.labels(waypoint, endpoint, service);
    connection.request_protocol = if outcome.grpc { "grpc" } else { "http" };
    connection.response_flags = outcome.flags;
    RequestLabels {
        connection,
        response_code: outcome.status,
        grpc_response_status: outcome.grpc_status.clone(),
    }
}

fn grpc_status(headers: &HeaderMap) -> Option<String> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}
