//! `GRPCRoute` to a wire route: service/method matches (type `Exact` when unset), header
//! matches, filters and backends through the shared converters, and `sessionPersistence`
//! as on an HTTPRoute (the experimental channel's GRPCRoute has it).

use super::filters::{self, BackendRef, Filter, mirror, mirror_all};
use super::{BackendResolver, FieldError, backend, checked, named, wire_route};
use crate::routes::{RouteError, RouteKind};
use gateway_api::experimental::grpcroutes::{
    GrpcRouteRules, GrpcRouteRulesMatches, GrpcRouteRulesMatchesHeadersType,
    GrpcRouteRulesMatchesMethodType,
};
use weft_api::gateway::GrpcRoute;
use weft_proto::l7::{self as pb, MatchType};

/// Converts a `GRPCRoute` attached to a parent (`parent_port`: the parentRef's port).
///
/// # Errors
/// [`RouteError`] naming the field when the route is invalid or uses what weft does not
/// support (the spec's `Accepted=False`).
pub fn grpc_route(
    route: &GrpcRoute,
    parent_port: Option<u16>,
    resolver: &dyn BackendResolver,
) -> Result<pb::Route, RouteError> {
    let (name, mut wire) = wire_route(RouteKind::Grpc, &route.metadata, parent_port);
    wire.hostnames = route.spec.hostnames.clone().unwrap_or_default();
    let rules = route.spec.rules.iter().flatten().enumerate();
    wire.rules = rules
        .map(|(i, rule)| grpc_rule(rule, &name.namespace, resolver, &format!("spec.rules[{i}]")))
        .collect::<Result<_, _>>()
        .map_err(named(&name))?;
    checked(wire)
}

fn grpc_rule(
    rule: &GrpcRouteRules,
    namespace: &str,
    resolver: &dyn BackendResolver,
    at: &str,
) -> Result<pb::Rule, FieldError> {
    let filters: Vec<Filter> = mirror_all(rule.filters.as_ref(), &format!("{at}.filters"))?;
    let backends: Vec<BackendRef> =
        mirror_all(rule.backend_refs.as_ref(), &format!("{at}.backendRefs"))?;
    Ok(pb::Rule {
        name: rule.name.clone().unwrap_or_default(),
        matches: (rule.matches.iter().flatten().enumerate())
            .map(|(i, m)| grpc_match(m, &format!("{at}.matches[{i}]")))
            .collect::<Result<_, _>>()?,
        filters: filters::convert(&filters, namespace, resolver, &format!("{at}.filters"))?,
        backends: (backends.iter().enumerate())
            .map(|(i, b)| backend(b, namespace, resolver, &format!("{at}.backendRefs[{i}]")))
            .collect::<Result<_, _>>()?,
        session: (rule.session_persistence.as_ref())
            .map(|s| {
                let at = format!("{at}.sessionPersistence");
                super::http::session(&mirror(s, &at)?, &at)
            })
            .transpose()?,
        ..pb::Rule::default()
    })
}

fn grpc_match(m: &GrpcRouteRulesMatches, at: &str) -> Result<pb::Match, FieldError> {
    let method = match &m.method {
        None => None,
        Some(method) => {
            let service = method.service.clone().unwrap_or_default();
            let name = method.method.clone().unwrap_or_default();
            if service.is_empty() && name.is_empty() {
                let message = "one or both of service and method must be set";
                return Err((format!("{at}.method"), message.into()));
            }
            let regex = method.r#type == Some(GrpcRouteRulesMatchesMethodType::RegularExpression);
            Some(pb::GrpcMethodMatch {
                r#type: if regex {
                    MatchType::Regex
                } else {
                    MatchType::Exact
                }
                .into(),
                service,
                method: name,
            })
        }
    };
    Ok(pb::Match {
        headers: (m.headers.iter().flatten())
            .map(|h| pb::KeyMatch {
                name: h.name.clone(),
                r#type: if h.r#type == Some(GrpcRouteRulesMatchesHeadersType::RegularExpression) {
                    MatchType::Regex
                } else {
                    MatchType::Exact
                }
                .into(),
                value: h.value.clone(),
            })
            .collect(),
        grpc: method,
        ..pb::Match::default()
    })
}
