//! `HTTPRoute` to a wire route: matches with the spec's defaults written out (a path
//! without type is a `PathPrefix`, without value `/`; header and query matches without type
//! are `Exact`), filters and backends through the shared converters, timeouts and retry in
//! milliseconds with weft's retry defaults.

use super::filters::{self, BackendRef, Filter, mirror_all};
use super::{
    BackendResolver, FieldError, backend, checked, defaults, duration_ms, named, wire_route,
};
use crate::routes::{RouteError, RouteKind};
use gateway_api::experimental::httproutes::{
    HttpRouteRules, HttpRouteRulesMatches, HttpRouteRulesMatchesHeadersType,
    HttpRouteRulesMatchesMethod, HttpRouteRulesMatchesPathType,
    HttpRouteRulesMatchesQueryParamsType, HttpRouteRulesRetry, HttpRouteRulesSessionPersistence,
    HttpRouteRulesSessionPersistenceCookieConfigLifetimeType, HttpRouteRulesSessionPersistenceType,
};
use weft_api::gateway::HttpRoute;
use weft_proto::l7::{self as pb, MatchType};

/// Converts an `HTTPRoute` attached to a parent (`parent_port`: the parentRef's port).
///
/// # Errors
/// [`RouteError`] naming the field when the route is invalid or uses what weft does not
/// support (the spec's `Accepted=False`).
pub fn http_route(
    route: &HttpRoute,
    parent_port: Option<u16>,
    resolver: &dyn BackendResolver,
) -> Result<pb::Route, RouteError> {
    let (name, mut wire) = wire_route(RouteKind::Http, &route.metadata, parent_port);
    wire.hostnames = route.spec.hostnames.clone().unwrap_or_default();
    let rules = route.spec.rules.iter().flatten().enumerate();
    wire.rules = rules
        .map(|(i, rule)| http_rule(rule, &name.namespace, resolver, &format!("spec.rules[{i}]")))
        .collect::<Result<_, _>>()
        .map_err(named(&name))?;
    checked(wire)
}

fn http_rule(
    rule: &HttpRouteRules,
    namespace: &str,
    resolver: &dyn BackendResolver,
    at: &str,
) -> Result<pb::Rule, FieldError> {
    let filters: Vec<Filter> = mirror_all(rule.filters.as_ref(), &format!("{at}.filters"))?;
    let backends: Vec<BackendRef> =
        mirror_all(rule.backend_refs.as_ref(), &format!("{at}.backendRefs"))?;
    let timeouts = rule.timeouts.as_ref();
    Ok(pb::Rule {
        name: rule.name.clone().unwrap_or_default(),
        matches: rule.matches.iter().flatten().map(http_match).collect(),
        filters: filters::convert(&filters, namespace, resolver, &format!("{at}.filters"))?,
        backends: (backends.iter().enumerate())
            .map(|(i, b)| backend(b, namespace, resolver, &format!("{at}.backendRefs[{i}]")))
            .collect::<Result<_, _>>()?,
        request_timeout_ms: duration_ms(
            timeouts.and_then(|t| t.request.as_deref()),
            &format!("{at}.timeouts.request"),
        )?,
        backend_request_timeout_ms: duration_ms(
            timeouts.and_then(|t| t.backend_request.as_deref()),
            &format!("{at}.timeouts.backendRequest"),
        )?,
        retry: rule
            .retry
            .as_ref()
            .map(|r| retry(r, &format!("{at}.retry")))
            .transpose()?,
        session: (rule.session_persistence.as_ref())
            .map(|s| session(s, &format!("{at}.sessionPersistence")))
            .transpose()?,
    })
}

/// `sessionPersistence` (of an HTTPRoute rule, or a GRPCRoute rule read through this type):
/// a cookie (Session lifetime, or Permanent with `absoluteTimeout` as its Max-Age) or a
/// header; `absoluteTimeout` and `idleTimeout` end the session as the spec says (the
/// gateway keeps the times in the token, see `crate::session`).
pub(super) fn session(
    s: &HttpRouteRulesSessionPersistence,
    at: &str,
) -> Result<pb::SessionPersistence, FieldError> {
    use pb::session_persistence::Type;
    let permanent = (s.cookie_config.as_ref()).and_then(|c| c.lifetime_type.as_ref())
        == Some(&HttpRouteRulesSessionPersistenceCookieConfigLifetimeType::Permanent);
    let header = s.r#type == Some(HttpRouteRulesSessionPersistenceType::Header);
    let absolute = s.absolute_timeout.as_deref();
    let absolute_ms = duration_ms(absolute, &format!("{at}.absoluteTimeout"))?;
    let idle_ms = duration_ms(s.idle_timeout.as_deref(), &format!("{at}.idleTimeout"))?;
    if permanent && (header || absolute.is_none()) {
        let (field, why) = if header {
            ("cookieConfig", "a Permanent lifetime needs type Cookie")
        } else {
            (
                "absoluteTimeout",
                "a Permanent cookie needs absoluteTimeout (its Max-Age)",
            )
        };
        return Err((format!("{at}.{field}"), why.into()));
    }
    for (field, ms, value) in [
        ("absoluteTimeout", absolute_ms, absolute),
        ("idleTimeout", idle_ms, s.idle_timeout.as_deref()),
    ] {
        if ms == 0 && value.is_some() {
            return Err((format!("{at}.{field}"), "must be longer than 0".into()));
        }
    }
    Ok(pb::SessionPersistence {
        r#type: if header { Type::Header } else { Type::Cookie }.into(),
        name: s.session_name.clone().unwrap_or_default(),
        max_age_seconds: if permanent {
            absolute_ms.div_ceil(1000)
        } else {
            0
        },
        absolute_timeout_ms: absolute_ms,
        idle_timeout_ms: idle_ms,
    })
}

fn http_match(m: &HttpRouteRulesMatches) -> pb::Match {
    let path = m.path.as_ref();
    let path_type = match path.and_then(|p| p.r#type.as_ref()) {
        Some(HttpRouteRulesMatchesPathType::Exact) => MatchType::Exact,
        Some(HttpRouteRulesMatchesPathType::RegularExpression) => MatchType::Regex,
        Some(HttpRouteRulesMatchesPathType::PathPrefix) | None => MatchType::Prefix,
    };
    let key = |name: &str, regex: bool, value: &str| pb::KeyMatch {
        name: name.to_owned(),
        r#type: if regex {
            MatchType::Regex
        } else {
            MatchType::Exact
        }
        .into(),
        value: value.to_owned(),
    };
    pb::Match {
        path: Some(pb::PathMatch {
            r#type: path_type.into(),
            value: path
                .and_then(|p| p.value.clone())
                .unwrap_or_else(|| "/".to_owned()),
        }),
        headers: (m.headers.iter().flatten())
            .map(|h| {
                let regex = h.r#type == Some(HttpRouteRulesMatchesHeadersType::RegularExpression);
                key(&h.name, regex, &h.value)
            })
            .collect(),
        query_params: (m.query_params.iter().flatten())
            .map(|q| {
                let regex =
                    q.r#type == Some(HttpRouteRulesMatchesQueryParamsType::RegularExpression);
                key(&q.name, regex, &q.value)
            })
            .collect(),
        method: m.method.as_ref().map_or("", method_name).to_owned(),
        grpc: None,
    }
}

fn method_name(method: &HttpRouteRulesMatchesMethod) -> &'static str {
    use HttpRouteRulesMatchesMethod as M;
    match method {
        M::Get => "GET",
        M::Head => "HEAD",
        M::Post => "POST",
        M::Put => "PUT",
        M::Delete => "DELETE",
        M::Connect => "CONNECT",
        M::Options => "OPTIONS",
        M::Trace => "TRACE",
        M::Patch => "PATCH",
    }
}

fn retry(r: &HttpRouteRulesRetry, at: &str) -> Result<pb::Retry, FieldError> {
    let attempts = match r.attempts {
        None => defaults::RETRY_ATTEMPTS,
        Some(n) => u32::try_from(n)
            .map_err(|_| (format!("{at}.attempts"), format!("{n} is not a count")))?,
    };
    let codes = (r.codes.iter().flatten().enumerate())
        .map(|(i, code)| {
            u32::try_from(*code)
                .ok()
                .filter(|c| (400..=599).contains(c))
                .ok_or_else(|| {
                    (
                        format!("{at}.codes[{i}]"),
                        format!("{code} is not in 400..=599"),
                    )
                })
        })
        .collect::<Result<_, _>>()?;
    let backoff_ms = match r.backoff.as_deref() {
        None => defaults::RETRY_BACKOFF_MS,
        backoff => duration_ms(backoff, &format!("{at}.backoff"))?,
    };
    Ok(pb::Retry {
        attempts,
        codes,
        backoff_ms,
    })
}
