//! Layer-4 routes on gateway ports — TLSRoutes (chosen by SNI) and TCPRoutes — and the
//! relay of one client connection to a weighted backend of the chosen route: endpoint
//! choice and connection through weft-upstream as the HTTP path does (mesh endpoints over
//! HBONE with the gateway's own identity, others directly, `via_waypoint` backends through
//! the service's waypoint), after the Gateway's AuthorizationPolicies allowed the client
//! (evaluated without request facts: rules with L7 conditions fail safe), bytes already
//! read replayed first, then both directions copied
//! until either side closes. Each connection is counted in the `istio_tcp_*` metrics with
//! `reporter="source"` and writes one access-log line.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rand::Rng;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use weft_hbone::{Plain, RelayOptions, relay as relay_bytes};
use weft_node::telemetry::{
    AccessLogEntry, ConnectionEnds, ConnectionLabels, ConnectionResult, Reporter,
};
use weft_policy::{ConnectionFacts, Transport};
use weft_proto::l7 as pb;
use weft_upstream::{MeshService, PortMapping, Route, UpstreamConnection};

use super::Gateway;
use super::sni::HostTable;

/// A weighted backend of an L4 route.
#[derive(Debug, Clone)]
pub(crate) struct L4Backend {
    /// Service key `<namespace>/<hostname>`.
    pub service: String,
    /// Service port.
    pub port: u16,
    weight: u32,
    /// Why the reference cannot be used, when it cannot.
    unresolved: Option<String>,
    via_waypoint: bool,
}

/// One TLSRoute or TCPRoute on a listener.
#[derive(Debug, Clone)]
pub(crate) struct L4Route {
    /// `<namespace>/<name>`.
    pub name: String,
    backends: Vec<L4Backend>,
}

/// The L4 routes of one listener, chosen by SNI with Gateway API precedence: the most
/// specific matching hostname, then the oldest route, then by namespace/name.
#[derive(Debug, Clone, Default)]
pub(crate) struct L4Routes {
    routes: Vec<L4Route>,
    by_sni: HostTable<usize>,
}

impl L4Routes {
    /// Compiles a listener's routes.
    ///
    /// # Errors
    /// `l4_routes[i].backends[j].port: reason` for a malformed entry.
    pub fn compile(routes: &[pb::L4Route]) -> Result<Self, String> {
        let mut ordered: Vec<&pb::L4Route> = routes.iter().collect();
        ordered.sort_by(|a, b| {
            let created = |r: &pb::L4Route| r.created.unwrap_or(i64::MAX);
            (created(a), &a.namespace, &a.name).cmp(&(created(b), &b.namespace, &b.name))
        });
        let mut compiled = Self::default();
        for route in ordered {
            let index = routes
                .iter()
                .position(|r| std::ptr::eq(r, route))
                .unwrap_or_default();
            let backends = route
                .backends
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    backend(b).map_err(|e| format!("l4_routes[{index}].backends[{i}].{e}"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let position = compiled.routes.len();
            if route.hostnames.is_empty() {
                compiled.by_sni.push(None, position);
            }
            for hostname in &route.hostnames {
                compiled.by_sni.push(Some(hostname), position);
            }
            compiled.routes.push(L4Route {
                name: format!("{}/{}", route.namespace, route.name),
                backends,
            });
        }
        Ok(compiled)
    }

    /// The route for a connection that asked for `sni` (TCP: `None`, the first route).
    #[must_use]
    pub fn select(&self, sni: Option<&str>) -> Option<&L4Route> {
        match sni {
            Some(_) => self.by_sni.select(sni).map(|&i| &self.routes[i]),
            None => self
                .by_sni
                .select(None)
                .map(|&i| &self.routes[i])
                .or_else(|| self.routes.first()),
        }
    }
}

fn backend(backend: &pb::Backend) -> Result<L4Backend, String> {
    let port = u16::try_from(backend.port)
        .map_err(|_| format!("port: {} is not a port number", backend.port))?;
    Ok(L4Backend {
        service: backend.service.clone(),
        port,
        weight: backend.weight,
        unresolved: (!backend.unresolved.is_empty()).then(|| backend.unresolved.clone()),
        via_waypoint: backend.via_waypoint,
    })
}

impl L4Route {
    /// A backend chosen by weight.
    ///
    /// # Errors
    /// Every weight is 0, or the chosen reference is unresolved.
    pub fn pick(&self, rng: &mut impl Rng) -> Result<&L4Backend, String> {
        let total: u64 = self.backends.iter().map(|b| u64::from(b.weight)).sum();
        if total == 0 {
            return Err(format!("route {}: no backend with a weight", self.name));
        }
        let mut ticket = rng.random_range(0..total);
        let chosen = self
            .backends
            .iter()
            .find(|b| {
                let weight = u64::from(b.weight);
                if ticket < weight {
                    return true;
                }
                ticket -= weight;
                false
            })
            .ok_or_else(|| format!("route {}: no backend chosen", self.name))?;
        match &chosen.unresolved {
            Some(reason) => Err(format!("route {}: {reason}", self.name)),
            None => Ok(chosen),
        }
    }
}

/// Where a relay goes, with what the telemetry needs.
struct Target {
    route: Route,
    service: Arc<MeshService>,
}

/// The endpoint (or the waypoint) for `backend`, from the mesh state.
async fn target(gateway: &Gateway, backend: &L4Backend) -> Result<Target, String> {
    let engine = gateway.engine();
    let state = engine.state();
    let service = state
        .service_by_key(&backend.service)
        .ok_or_else(|| format!("service {} is not in the mesh", backend.service))?;
    let inner = engine.inner();
    if backend.via_waypoint
        && service.proto().waypoint.is_some()
        && let Some(vip) = service.first_vip()
    {
        let route = inner
            .upstream
            .route(&*state, None, SocketAddr::new(vip, backend.port))
            .map_err(|e| e.to_string())?;
        return Ok(Target {
            route,
            service: Arc::clone(service),
        });
    }
    let port = service.port(backend.port).unwrap_or(PortMapping {
        service_port: backend.port,
        target_port: None,
    });
    let route = (inner.upstream)
        .service_route_resolving(inner.outlier.filter(service), port, None, None)
        .await
        .map_err(|e| e.to_string())?;
    Ok(Target {
        route,
        service: Arc::clone(service),
    })
}

/// Whether the Gateway's AuthorizationPolicies let the client at `peer` connect to
/// listener `port` (no request facts: an ALLOW rule with L7 conditions matches nothing, a
/// DENY rule matches on its L4 part). The decision is counted; a denial is logged.
fn authorized(gateway: &Gateway, port: u16, peer: SocketAddr) -> bool {
    let engine = gateway.engine();
    let facts = ConnectionFacts {
        source_identity: None,
        source_ip: peer.ip(),
        destination: SocketAddr::new(IpAddr::from([0, 0, 0, 0]), port),
        transport: Transport::Plaintext,
    };
    let decision = engine.config().policies(None).evaluate(&facts);
    let namespace = &engine.options().namespace;
    engine
        .inner()
        .metrics
        .tcp
        .record_decision(&decision, namespace);
    if !decision.is_allowed() {
        tracing::info!(target: "weft::access", reporter = "source", %peer, port, %decision,
            "tcp connection denied");
    }
    decision.is_allowed()
}

/// Relays the client connection `downstream` on listener `port` (whose first bytes
/// `prefix` were already read) to a backend of `route`, if policy allows. Failures close
/// the connection and are logged.
pub(crate) async fn relay<IO>(
    gateway: &Gateway,
    port: u16,
    route: &L4Route,
    prefix: Bytes,
    downstream: IO,
    peer: SocketAddr,
) where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    if !authorized(gateway, port, peer) {
        return;
    }
    let started = Instant::now();
    let backend = match route.pick(&mut rand::rng()) {
        Ok(backend) => backend,
        Err(reason) => {
            tracing::warn!(%peer, %reason, "tcp: no usable backend; closing");
            return;
        }
    };
    let target = match target(gateway, backend).await {
        Ok(target) => target,
        Err(reason) => {
            tracing::warn!(%peer, route = %route.name, backend = %backend.service, %reason, "tcp: no route to the backend; closing");
            return;
        }
    };
    let mut log = access_entry(gateway, peer, &target);
    let labels = labels(gateway, &target);
    let engine = gateway.engine();
    let connected = engine
        .inner()
        .upstream
        .connect(&target.route, &engine.client())
        .await;
    let upstream = match connected {
        Ok(upstream) => upstream,
        Err(error) => {
            engine.inner().metrics.tcp.connection_failed(&labels);
            log.finish(
                started.elapsed(),
                ConnectionResult::Failed,
                Some(error.to_string()),
            );
            log.emit(gateway.engine().options().access_log);
            return;
        }
    };
    let metrics = engine.inner().metrics.tcp.connection_opened(&labels);
    let result = match upstream {
        UpstreamConnection::Hbone(stream) => copy(prefix, downstream, stream).await,
        UpstreamConnection::Tcp(stream) => copy(prefix, downstream, stream).await,
    };
    match result {
        Ok((sent, received)) => {
            metrics.add_source_to_destination(sent);
            metrics.add_destination_to_source(received);
            metrics.closed();
            log.bytes_sent = sent;
            log.bytes_received = received;
            log.finish(started.elapsed(), ConnectionResult::Ok, None);
        }
        Err(error) => {
            metrics.failed();
            log.finish(started.elapsed(), ConnectionResult::Failed, Some(error));
        }
    }
    log.emit(gateway.engine().options().access_log);
}

/// Writes `prefix` upstream, then copies both ways; the bytes moved each way.
async fn copy<D, U>(prefix: Bytes, downstream: D, mut upstream: U) -> Result<(u64, u64), String>
where
    D: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    upstream
        .write_all(&prefix)
        .await
        .map_err(|e| e.to_string())?;
    let stats = relay_bytes(
        &mut Plain(downstream),
        &mut Plain(upstream),
        &RelayOptions::default(),
    )
    .await
    .map_err(|e| e.to_string())?;
    let sent = stats.a_to_b + u64::try_from(prefix.len()).unwrap_or(u64::MAX);
    Ok((sent, stats.b_to_a))
}

fn transport(route: &Route) -> Transport {
    match route {
        Route::Hbone { .. } => Transport::Hbone,
        Route::Plain { .. } => Transport::Plaintext,
    }
}

fn labels(gateway: &Gateway, target: &Target) -> ConnectionLabels {
    let own = super::http::own_workload(gateway);
    ConnectionLabels::derive(&ConnectionEnds {
        reporter: Reporter::Source,
        source_workload: own.as_deref(),
        source_identity: Some(gateway.engine().identity()),
        destination_workload: target.route.destination().map(|w| &**w),
        destination_service: Some(&target.service),
        transport: transport(&target.route),
    })
}

fn access_entry(gateway: &Gateway, peer: SocketAddr, target: &Target) -> AccessLogEntry {
    let (dst, hbone) = match &target.route {
        Route::Hbone {
            tunnel, authority, ..
        } => (*authority, Some(*tunnel)),
        Route::Plain { addr, .. } => (*addr, None),
    };
    let start = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let own = super::http::own_workload(gateway).map(|w| w.names());
    let destination = target.route.destination().map(|w| w.names());
    let identity = Arc::from(gateway.engine().identity().to_string());
    let mut entry = AccessLogEntry::new(Reporter::Source, peer, dst, start)
        .with_source(own.as_deref(), Some(identity))
        .with_destination(destination.as_deref(), Some(&target.service));
    entry.dst_hbone_addr = hbone;
    entry
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(name: &str, created: Option<i64>, hostnames: &[&str]) -> pb::L4Route {
        pb::L4Route {
            namespace: "ns".into(),
            name: name.into(),
            created,
            hostnames: hostnames.iter().map(|h| (*h).to_owned()).collect(),
            backends: vec![pb::Backend {
                service: format!("ns/{name}"),
                port: 443,
                weight: 1,
                ..Default::default()
            }],
        }
    }

    #[test]
    fn sni_picks_the_most_specific_then_the_oldest_route() {
        let routes = L4Routes::compile(&[
            route("young", Some(20), &["a.example.com"]),
            route("old", Some(10), &["a.example.com"]),
            route("wild", Some(1), &["*.example.com"]),
        ])
        .expect("valid");
        assert_eq!(routes.select(Some("a.example.com")).unwrap().name, "ns/old");
        assert_eq!(
            routes.select(Some("b.example.com")).unwrap().name,
            "ns/wild"
        );
        assert!(routes.select(Some("other.org")).is_none());
    }

    #[test]
    fn weights_decide_and_unresolved_backends_refuse() {
        let mut broken = route("r", None, &[]);
        broken.backends[0].unresolved = "no ReferenceGrant".into();
        let routes = L4Routes::compile(&[broken]).expect("valid");
        let chosen = routes.select(None).unwrap().pick(&mut rand::rng());
        assert!(chosen.expect_err("unresolved").contains("ReferenceGrant"));
        let mut zero = route("z", None, &[]);
        zero.backends[0].weight = 0;
        let routes = L4Routes::compile(&[zero]).expect("valid");
        assert!(routes.select(None).unwrap().pick(&mut rand::rng()).is_err());
    }
}
