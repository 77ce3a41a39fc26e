//! Authentication and authorization of one request: the request principal from a JWT the
//! RequestAuthentication rules accept (a token that fails them answers 401), then the
//! waypoint's policies for the destination service evaluated with the request's facts
//! (a denial answers 403 `RBAC: access denied`).
//!
//! JWT validation is `weft_l7::jwt`'s (the JwtRule set of the resource); until it is wired
//! in, [`request_principal`] reports no principal, so `requestPrincipals` conditions behave
//! as for a request without a token (positive ones do not match: fail closed).

use std::net::IpAddr;

use http::HeaderMap;
use http::request::Parts;
use weft_policy::RequestFacts;

use super::filters::Target;
use super::local::Failure;
use crate::Waypoint;
use crate::config::{BoundService, WaypointConfig};
use crate::tunnel::{Target as TunnelTarget, Tunnel};

/// The `<iss>/<sub>` of the request's valid JWT, `None` without one; a token the rules
/// reject is a [`Failure::jwt`].
pub(crate) fn request_principal(
    _config: &WaypointConfig,
    _service: Option<&BoundService>,
    _headers: &HeaderMap,
) -> Result<Option<String>, Failure> {
    // Hook for weft_l7::jwt (RequestAuthentication): validate against the JwtRules whose
    // `services` are empty or list the service.
    Ok(None)
}

/// Allows the request or answers 401 / 403.
pub(crate) fn authorize(
    waypoint: &Waypoint,
    tunnel: &Tunnel,
    config: &WaypointConfig,
    parts: &Parts,
    target: &Target,
    remote_ip: IpAddr,
) -> Result<(), Failure> {
    let service = tunnel.service().map(|s| &**s);
    let principal = request_principal(config, service, &parts.headers)?;
    let host = target.authority();
    let request = RequestFacts {
        method: parts.method.as_str(),
        host: &host,
        path: &target.path,
        headers: &parts.headers,
        request_principal: principal.as_deref(),
        remote_ip,
    };
    let facts = crate::tcp::connection_facts(tunnel);
    let decision = config
        .policies(service)
        .evaluate_with(&facts, Some(&request));
    let namespace = match &tunnel.target {
        TunnelTarget::Service { mesh, .. } => &mesh.proto().namespace,
        TunnelTarget::Workload(workload) => &workload.proto().namespace,
    };
    waypoint
        .inner()
        .metrics
        .tcp
        .record_decision(&decision, namespace);
    if decision.is_allowed() {
        Ok(())
    } else {
        tracing::debug!(%decision, principal = %tunnel.source_identity, path = %target.path, "request denied");
        Err(Failure::denied())
    }
}
