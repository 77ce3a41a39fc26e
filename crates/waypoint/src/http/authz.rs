//! Authentication and authorization of one request: the request principal from a JWT the
//! RequestAuthentication rules accept (a token that fails them answers 401), then the
//! waypoint's policies for the destination service evaluated with the request's facts
//! (a denial answers 403 `RBAC: access denied`).
//!
//! JWT validation is `weft_l7::jwt`'s, over the resource's compiled JwtRules: a request
//! without a token has no principal (positive `requestPrincipals` conditions do not match);
//! a valid token's header is removed before forwarding unless its rule forwards it.

use std::net::IpAddr;

use http::request::Parts;
use weft_l7::jwt::JwtOutcome;
use weft_policy::RequestFacts;

use super::conn::Conn;
use super::local::Failure;
use super::target::Target;
use crate::Waypoint;
use crate::config::{BoundService, WaypointConfig};

/// The `<iss>/<sub>` of the request's valid JWT, `None` without one; a token the rules
/// reject is a [`Failure::jwt`]. Rules apply when their `services` are empty or list the
/// request's service.
pub(crate) fn request_principal(
    config: &WaypointConfig,
    service: Option<&BoundService>,
    parts: &mut Parts,
) -> Result<Option<String>, Failure> {
    let key = service.map_or("", |s| s.key.as_str());
    match config.jwt.validate(key, &parts.headers, parts.uri.query()) {
        JwtOutcome::NoToken => Ok(None),
        JwtOutcome::Valid {
            principal,
            strip_header,
            ..
        } => {
            if let Some(name) = strip_header {
                parts.headers.remove(name);
            }
            Ok(Some(principal))
        }
        JwtOutcome::Invalid(reason) => {
            tracing::debug!(%reason, service = key, "JWT rejected");
            Err(Failure::jwt())
        }
    }
}

/// Allows the request or answers 401 / 403.
pub(crate) fn authorize(
    waypoint: &Waypoint,
    conn: &Conn,
    config: &WaypointConfig,
    service: Option<&BoundService>,
    parts: &mut Parts,
    target: &Target,
    remote_ip: IpAddr,
) -> Result<(), Failure> {
    let principal = request_principal(config, service, parts)?;
    let request = RequestFacts {
        method: parts.method.as_str(),
        host: target.authority(),
        path: &target.path,
        headers: &parts.headers,
        request_principal: principal.as_deref(),
        remote_ip,
    };
    let facts = conn.facts();
    let decision = config
        .policies(service)
        .evaluate_with(&facts, Some(&request));
    waypoint
        .inner()
        .metrics
        .tcp
        .record_decision(&decision, conn.namespace());
    if decision.is_allowed() {
        Ok(())
    } else {
        tracing::debug!(%decision, principal = %conn.principal(), path = %target.path, "request denied");
        Err(Failure::denied())
    }
}
