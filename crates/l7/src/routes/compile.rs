//! Compiling one wire route into matchers: defaults filled in (a rule without matches
//! matches `PathPrefix /` or, for gRPC, every call; a missing path is `PathPrefix /`),
//! repeated header or query names after the first ignored, regexes compiled once. Any
//! invalid part rejects the whole route with an error naming the field in Gateway API
//! terms (`spec.rules[1].matches[0].path.value`): the wire keeps the rule, match, filter
//! and backend indices of the route it was translated from.

use super::matching::{
    Condition, GrpcMatch, GrpcMethodMatch, HeaderMatch, HostPattern, HttpMatch, PathMatch,
    QueryMatch, Text,
};
use super::{RouteError, RouteKind, RouteName};
use crate::rule::Rule;
use http::{HeaderName, Method};
use weft_proto::l7::{self as pb, MatchType, route::Kind};

/// A route ready for the table.
#[derive(Debug)]
pub(crate) struct CompiledRoute {
    pub(crate) name: RouteName,
    pub(crate) created: Option<i64>,
    pub(crate) hosts: Vec<HostPattern>,
    pub(crate) rules: Vec<CompiledRule>,
}

/// One rule: its matches (at least one) and what it does.
#[derive(Debug)]
pub(crate) struct CompiledRule {
    pub(crate) matches: Vec<Condition>,
    pub(crate) rule: Rule,
}

/// A field path and what is wrong with it.
pub(crate) type FieldError = (String, String);

/// Compiles one route, or says why it is rejected.
pub(crate) fn compile_route(route: &pb::Route) -> Result<CompiledRoute, RouteError> {
    let name = route_name(route);
    let with_name = |(field, message): FieldError| RouteError {
        route: name.clone(),
        field,
        message,
    };
    if Kind::try_from(route.kind).is_err() {
        return Err(with_name((
            "kind".into(),
            format!("unknown route kind {}", route.kind),
        )));
    }
    let rules = (route.rules.iter().enumerate())
        .map(|(i, rule)| compile_rule(name.kind, rule, i))
        .collect::<Result<Vec<_>, _>>()
        .map_err(with_name)?;
    let mut hosts: Vec<_> = route
        .hostnames
        .iter()
        .map(|h| HostPattern::new(h))
        .collect();
    if hosts.is_empty() {
        hosts.push(HostPattern::Any);
    }
    Ok(CompiledRoute {
        name,
        created: route.created,
        hosts,
        rules,
    })
}

fn route_name(route: &pb::Route) -> RouteName {
    let kind = match Kind::try_from(route.kind) {
        Ok(Kind::Grpc) => RouteKind::Grpc,
        // An unknown kind is rejected by `compile_route`; it is named as HTTP.
        Ok(Kind::Http) | Err(_) => RouteKind::Http,
    };
    let namespace = if route.namespace.is_empty() {
        "default".to_owned()
    } else {
        route.namespace.clone()
    };
    RouteName {
        kind,
        namespace,
        name: route.name.clone(),
    }
}

fn compile_rule(
    kind: RouteKind,
    rule: &pb::Rule,
    index: usize,
) -> Result<CompiledRule, FieldError> {
    let at = format!("spec.rules[{index}]");
    let matches = match (kind, rule.matches.as_slice()) {
        (RouteKind::Http, []) => vec![Condition::Http(HttpMatch::every_path())],
        (RouteKind::Grpc, []) => vec![Condition::Grpc(GrpcMatch::default())],
        (kind, matches) => (matches.iter().enumerate())
            .map(|(i, m)| compile_match(kind, m, &format!("{at}.matches[{i}]")))
            .collect::<Result<_, _>>()?,
    };
    let prefix_only = matches.len() == 1 && matches[0].prefix().is_some();
    let rule = Rule::compile(rule, index, prefix_only, &at)?;
    Ok(CompiledRule { matches, rule })
}

fn compile_match(kind: RouteKind, m: &pb::Match, at: &str) -> Result<Condition, FieldError> {
    let headers = header_matches(&m.headers, &format!("{at}.headers"))?;
    match kind {
        RouteKind::Http => {
            if m.grpc.is_some() {
                return Err((
                    format!("{at}.method"),
                    "a gRPC method match in an HTTPRoute".into(),
                ));
            }
            Ok(Condition::Http(HttpMatch {
                path: path_match(m.path.as_ref(), &format!("{at}.path"))?,
                method: http_method(&m.method, &format!("{at}.method"))?,
                headers,
                query: query_matches(&m.query_params, &format!("{at}.queryParams"))?,
            }))
        }
        RouteKind::Grpc => {
            let http_only = [
                (m.path.is_some(), "path"),
                (!m.method.is_empty(), "method"),
                (!m.query_params.is_empty(), "queryParams"),
            ];
            if let Some((_, field)) = http_only.iter().find(|(set, _)| *set) {
                return Err((
                    format!("{at}.{field}"),
                    "not part of a GRPCRoute match".into(),
                ));
            }
            let method = m.grpc.as_ref();
            let method = method.map(|g| grpc_method(g, &format!("{at}.method")));
            Ok(Condition::Grpc(GrpcMatch {
                method: method.transpose()?,
                headers,
            }))
        }
    }
}

fn match_type(value: i32, at: &str) -> Result<MatchType, FieldError> {
    MatchType::try_from(value)
        .map_err(|_| (format!("{at}.type"), format!("unknown match type {value}")))
}

fn path_match(path: Option<&pb::PathMatch>, at: &str) -> Result<PathMatch, FieldError> {
    let Some(path) = path else {
        return Ok(PathMatch::prefix("/"));
    };
    let value = path.value.as_str();
    let field = || format!("{at}.value");
    match match_type(path.r#type, at)? {
        MatchType::Regex => PathMatch::regex(value).map_err(|e| (field(), e.to_string())),
        _ if !value.starts_with('/') => Err((field(), format!("{value:?} does not start with /"))),
        MatchType::Exact => Ok(PathMatch::Exact(value.into())),
        MatchType::Prefix => Ok(PathMatch::prefix(value)),
    }
}

fn http_method(method: &str, at: &str) -> Result<Option<Method>, FieldError> {
    if method.is_empty() {
        return Ok(None);
    }
    Method::from_bytes(method.as_bytes())
        .map(Some)
        .map_err(|_| (at.to_owned(), format!("{method:?} is not an HTTP method")))
}

fn grpc_method(m: &pb::GrpcMethodMatch, at: &str) -> Result<GrpcMethodMatch, FieldError> {
    let regex = match match_type(m.r#type, at)? {
        MatchType::Exact => false,
        MatchType::Regex => true,
        MatchType::Prefix => {
            return Err((
                format!("{at}.type"),
                "must be Exact or RegularExpression".into(),
            ));
        }
    };
    let part = |value: &str, field: &str| {
        let text = (!value.is_empty())
            .then(|| Text::new(value, regex))
            .transpose();
        let text = text.map_err(|e| (format!("{at}.{field}"), e.to_string()))?;
        Ok::<_, FieldError>(text)
    };
    Ok(GrpcMethodMatch {
        service: part(&m.service, "service")?,
        method: part(&m.method, "method")?,
        lengths: [m.service.len(), m.method.len()],
    })
}

fn header_matches(items: &[pb::KeyMatch], at: &str) -> Result<Vec<HeaderMatch>, FieldError> {
    let key = |name: &str| HeaderName::from_bytes(name.as_bytes()).map_err(|e| e.to_string());
    let list = first_of_each_name(items, at, key)?;
    Ok(list
        .into_iter()
        .map(|(name, value)| HeaderMatch { name, value })
        .collect())
}

fn query_matches(items: &[pb::KeyMatch], at: &str) -> Result<Vec<QueryMatch>, FieldError> {
    let key = |name: &str| match name {
        "" => Err("empty name".to_owned()),
        name => Ok(Box::<str>::from(name)),
    };
    let list = first_of_each_name(items, at, key)?;
    Ok(list
        .into_iter()
        .map(|(name, value)| QueryMatch { name, value })
        .collect())
}

/// Compiles name/value matches, keeping only the first entry of each (equivalent) name,
/// as the spec asks for both headers and query parameters.
fn first_of_each_name<K: PartialEq>(
    items: &[pb::KeyMatch],
    at: &str,
    key: impl Fn(&str) -> Result<K, String>,
) -> Result<Vec<(K, Text)>, FieldError> {
    let mut list: Vec<(K, Text)> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let name = key(&item.name).map_err(|e| (format!("{at}[{i}].name"), e))?;
        if list.iter().any(|(seen, _)| *seen == name) {
            continue;
        }
        let regex = match match_type(item.r#type, &format!("{at}[{i}]"))? {
            MatchType::Exact => false,
            MatchType::Regex => true,
            MatchType::Prefix => {
                return Err((
                    format!("{at}[{i}].type"),
                    "must be Exact or RegularExpression".into(),
                ));
            }
        };
        let value = Text::new(&item.value, regex)
            .map_err(|e| (format!("{at}[{i}].value"), e.to_string()))?;
        list.push((name, value));
    }
    Ok(list)
}
