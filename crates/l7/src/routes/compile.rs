//! Compiling one `HTTPRoute` or `GRPCRoute` into matchers: defaults filled in (a rule
//! without matches matches `PathPrefix /`, a path match without type is a prefix), repeated
//! header or query names after the first ignored, regexes compiled once. Any invalid part
//! rejects the whole route with an error naming the field.

use super::matching::{
    Condition, GrpcMatch, GrpcMethodMatch, HeaderMatch, HostPattern, HttpMatch, PathMatch,
    QueryMatch, Text,
};
use super::{AttachedRoute, RouteError, RouteKind, RouteName, RuleAction};
use gateway_api::grpcroutes::{
    GrpcRouteRules, GrpcRouteRulesMatches, GrpcRouteRulesMatchesHeadersType,
    GrpcRouteRulesMatchesMethod, GrpcRouteRulesMatchesMethodType,
};
use gateway_api::httproutes::{
    HttpRouteRules, HttpRouteRulesMatches, HttpRouteRulesMatchesHeadersType,
    HttpRouteRulesMatchesMethod, HttpRouteRulesMatchesPathType,
    HttpRouteRulesMatchesQueryParamsType,
};
use http::{HeaderName, Method};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

/// A route ready for the table.
#[derive(Debug)]
pub(crate) struct CompiledRoute {
    pub(crate) name: RouteName,
    pub(crate) created: Option<Time>,
    pub(crate) hosts: Vec<HostPattern>,
    pub(crate) rules: Vec<Rule>,
}

/// One rule: its matches (at least one) and what it carries through.
#[derive(Debug)]
pub(crate) struct Rule {
    pub(crate) name: Option<String>,
    pub(crate) matches: Vec<Condition>,
    pub(crate) action: RuleAction,
}

/// A field path and what is wrong with it.
type FieldError = (String, String);

/// Compiles one route, or says why it is rejected.
pub(crate) fn compile(route: AttachedRoute<'_>) -> Result<CompiledRoute, RouteError> {
    let (kind, metadata, hostnames) = match route {
        AttachedRoute::Http(r) => (RouteKind::Http, &r.metadata, &r.spec.hostnames),
        AttachedRoute::Grpc(r) => (RouteKind::Grpc, &r.metadata, &r.spec.hostnames),
    };
    let name = route_name(kind, metadata);
    let rules = match route {
        AttachedRoute::Http(r) => each_rule(r.spec.rules.as_deref(), http_rule),
        AttachedRoute::Grpc(r) => each_rule(r.spec.rules.as_deref(), grpc_rule),
    };
    let rules = rules.map_err(|(field, message)| RouteError {
        route: name.clone(),
        field,
        message,
    })?;
    let mut hosts: Vec<_> = hostnames
        .iter()
        .flatten()
        .map(|h| HostPattern::new(h))
        .collect();
    if hosts.is_empty() {
        hosts.push(HostPattern::Any);
    }
    Ok(CompiledRoute {
        name,
        created: metadata.creation_timestamp.clone(),
        hosts,
        rules,
    })
}

fn route_name(kind: RouteKind, metadata: &ObjectMeta) -> RouteName {
    RouteName {
        kind,
        namespace: metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_owned()),
        name: metadata.name.clone().unwrap_or_default(),
    }
}

fn each_rule<R>(
    rules: Option<&[R]>,
    compile: fn(&R, &str) -> Result<Rule, FieldError>,
) -> Result<Vec<Rule>, FieldError> {
    let rules = rules.unwrap_or_default().iter().enumerate();
    rules
        .map(|(i, rule)| compile(rule, &format!("spec.rules[{i}]")))
        .collect()
}

/// Compiles `matches[]`, or the one implicit match of a rule without matches.
fn each_match<M: Default>(
    matches: Option<&[M]>,
    at: &str,
    compile: impl Fn(&M, &str) -> Result<Condition, FieldError>,
) -> Result<Vec<Condition>, FieldError> {
    match matches.unwrap_or_default() {
        [] => Ok(vec![compile(&M::default(), at)?]),
        matches => (matches.iter().enumerate())
            .map(|(i, m)| compile(m, &format!("{at}.matches[{i}]")))
            .collect(),
    }
}

fn http_rule(rule: &HttpRouteRules, at: &str) -> Result<Rule, FieldError> {
    Ok(Rule {
        name: rule.name.clone(),
        matches: each_match(rule.matches.as_deref(), at, http_match)?,
        action: RuleAction::Http {
            backend_refs: rule.backend_refs.clone().unwrap_or_default(),
            filters: rule.filters.clone().unwrap_or_default(),
        },
    })
}

fn grpc_rule(rule: &GrpcRouteRules, at: &str) -> Result<Rule, FieldError> {
    Ok(Rule {
        name: rule.name.clone(),
        matches: each_match(rule.matches.as_deref(), at, grpc_match)?,
        action: RuleAction::Grpc {
            backend_refs: rule.backend_refs.clone().unwrap_or_default(),
            filters: rule.filters.clone().unwrap_or_default(),
        },
    })
}

fn http_match(m: &HttpRouteRulesMatches, at: &str) -> Result<Condition, FieldError> {
    let path = m.path.as_ref();
    let value = path.and_then(|p| p.value.as_deref()).unwrap_or("/");
    let path = match path.and_then(|p| p.r#type.as_ref()) {
        Some(HttpRouteRulesMatchesPathType::Exact) => PathMatch::Exact(value.into()),
        Some(HttpRouteRulesMatchesPathType::RegularExpression) => {
            PathMatch::regex(value).map_err(|e| (format!("{at}.path.value"), e.to_string()))?
        }
        Some(HttpRouteRulesMatchesPathType::PathPrefix) | None => PathMatch::prefix(value),
    };
    let headers = m.headers.iter().flatten().map(|h| {
        let regex = h.r#type == Some(HttpRouteRulesMatchesHeadersType::RegularExpression);
        (h.name.as_str(), regex, h.value.as_str())
    });
    let query = m.query_params.iter().flatten().map(|q| {
        let regex = q.r#type == Some(HttpRouteRulesMatchesQueryParamsType::RegularExpression);
        (q.name.as_str(), regex, q.value.as_str())
    });
    Ok(Condition::Http(HttpMatch {
        path,
        method: m.method.as_ref().map(http_method),
        headers: header_matches(headers, &format!("{at}.headers"))?,
        query: query_matches(query, &format!("{at}.queryParams"))?,
    }))
}

fn grpc_match(m: &GrpcRouteRulesMatches, at: &str) -> Result<Condition, FieldError> {
    let headers = m.headers.iter().flatten().map(|h| {
        let regex = h.r#type == Some(GrpcRouteRulesMatchesHeadersType::RegularExpression);
        (h.name.as_str(), regex, h.value.as_str())
    });
    let method = m.method.as_ref();
    Ok(Condition::Grpc(GrpcMatch {
        method: method
            .map(|m| grpc_method(m, &format!("{at}.method")))
            .transpose()?,
        headers: header_matches(headers, &format!("{at}.headers"))?,
    }))
}

fn grpc_method(m: &GrpcRouteRulesMatchesMethod, at: &str) -> Result<GrpcMethodMatch, FieldError> {
    let regex = m.r#type == Some(GrpcRouteRulesMatchesMethodType::RegularExpression);
    let part = |value: &Option<String>, field: &str| {
        let value = value.as_deref().filter(|v| !v.is_empty());
        let text = value.map(|v| Text::new(v, regex)).transpose();
        let text = text.map_err(|e| (format!("{at}.{field}"), e.to_string()))?;
        Ok::<_, FieldError>((text, value.map_or(0, str::len)))
    };
    let (service, service_len) = part(&m.service, "service")?;
    let (method, method_len) = part(&m.method, "method")?;
    Ok(GrpcMethodMatch {
        service,
        method,
        lengths: [service_len, method_len],
    })
}

fn http_method(method: &HttpRouteRulesMatchesMethod) -> Method {
    use HttpRouteRulesMatchesMethod as M;
    match method {
        M::Get => Method::GET,
        M::Head => Method::HEAD,
        M::Post => Method::POST,
        M::Put => Method::PUT,
        M::Delete => Method::DELETE,
        M::Connect => Method::CONNECT,
        M::Options => Method::OPTIONS,
        M::Trace => Method::TRACE,
        M::Patch => Method::PATCH,
    }
}

/// `(name, is regex, value)` of a header or query parameter match as written.
type NameValue<'a> = (&'a str, bool, &'a str);

fn header_matches<'a>(
    items: impl Iterator<Item = NameValue<'a>>,
    at: &str,
) -> Result<Vec<HeaderMatch>, FieldError> {
    let key = |name: &str| HeaderName::from_bytes(name.as_bytes()).map_err(|e| e.to_string());
    let list = first_of_each_name(items, at, key)?;
    Ok(list
        .into_iter()
        .map(|(name, value)| HeaderMatch { name, value })
        .collect())
}

fn query_matches<'a>(
    items: impl Iterator<Item = NameValue<'a>>,
    at: &str,
) -> Result<Vec<QueryMatch>, FieldError> {
    let list = first_of_each_name(items, at, |name| Ok(Box::<str>::from(name)))?;
    Ok(list
        .into_iter()
        .map(|(name, value)| QueryMatch { name, value })
        .collect())
}

/// Compiles name/value matches, keeping only the first entry of each (equivalent) name,
/// as the spec asks for both headers and query parameters.
fn first_of_each_name<'a, K: PartialEq>(
    items: impl Iterator<Item = NameValue<'a>>,
    at: &str,
    key: impl Fn(&str) -> Result<K, String>,
) -> Result<Vec<(K, Text)>, FieldError> {
    let mut list: Vec<(K, Text)> = Vec::new();
    for (i, (name, regex, value)) in items.enumerate() {
        let name = key(name).map_err(|e| (format!("{at}[{i}].name"), e))?;
        if list.iter().any(|(seen, _)| *seen == name) {
            continue;
        }
        let value =
            Text::new(value, regex).map_err(|e| (format!("{at}[{i}].value"), e.to_string()))?;
        list.push((name, value));
    }
    Ok(list)
}
