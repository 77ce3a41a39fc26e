//! One read-only view over the five route kinds (`HTTPRoute`, `GRPCRoute`, `TLSRoute`,
//! `TCPRoute`, `UDPRoute`): their parent and backend references, with the path of each;
//! and whether a `ReferenceGrant` permits a cross-namespace reference.

use crate::object::{Kind, Object};
use crate::snapshot::ConfigSnapshot;
use crate::suggest::Segment;

/// The Gateway API group (`gateway.networking.k8s.io`).
pub const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";

/// The referring side of a cross-namespace reference.
#[derive(Debug, Clone, Copy)]
pub struct GrantFrom<'a> {
    /// Kind of the referring object (a route, a Gateway).
    pub kind: Kind,
    /// Its namespace.
    pub namespace: &'a str,
}

/// The referred-to side of a cross-namespace reference.
#[derive(Debug, Clone, Copy)]
pub struct GrantTo<'a> {
    /// Namespace of the target (where the ReferenceGrant must live).
    pub namespace: &'a str,
    /// API group of the target (`""` or `core` for core kinds).
    pub group: &'a str,
    /// Kind of the target, e.g. `Service`.
    pub kind: &'a str,
    /// Name of the target.
    pub name: &'a str,
}

/// Whether a ReferenceGrant in `to.namespace` lets objects of `from` refer to `to`.
#[must_use]
pub fn reference_grant_allows(
    snapshot: &ConfigSnapshot,
    from: &GrantFrom<'_>,
    to: &GrantTo<'_>,
) -> bool {
    let group = if to.group == "core" { "" } else { to.group };
    snapshot
        .reference_grants()
        .filter(|(_, loaded)| loaded.object.namespace() == Some(to.namespace))
        .any(|(grant, _)| {
            let from_ok = grant.spec.from.iter().any(|f| {
                f.group == from.kind.group()
                    && f.kind == from.kind.name()
                    && f.namespace == from.namespace
            });
            let to_ok = grant.spec.to.iter().any(|t| {
                t.group == group
                    && t.kind == to.kind
                    && t.name.as_deref().is_none_or(|n| n == to.name)
            });
            from_ok && to_ok
        })
}

/// A `parentRefs[]` or `backendRefs[]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRef<'a> {
    /// API group (`None`/`""` = core for backends, Gateway API group for parents).
    pub group: Option<&'a str>,
    /// Kind (`None` = `Gateway` for parents, `Service` for backends).
    pub kind: Option<&'a str>,
    /// Name.
    pub name: &'a str,
    /// Namespace (`None` = the route's).
    pub namespace: Option<&'a str>,
    /// Port, if given.
    pub port: Option<i32>,
    /// Listener name (parents only).
    pub section_name: Option<&'a str>,
    /// Path of the entry in the route.
    pub path: Vec<Segment>,
}

/// The references of one route.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteView<'a> {
    /// `spec.parentRefs`.
    pub parents: Vec<RouteRef<'a>>,
    /// Every `spec.rules[].backendRefs[]`, then the `backendRef` of every `RequestMirror`
    /// filter (of a rule or of a backendRef).
    pub backends: Vec<RouteRef<'a>>,
}

macro_rules! route_ref {
    ($r:expr, $section:expr, $path:expr) => {
        RouteRef {
            group: $r.group.as_deref(),
            kind: $r.kind.as_deref(),
            name: &$r.name,
            namespace: $r.namespace.as_deref(),
            port: $r.port,
            section_name: $section,
            path: $path,
        }
    };
}

fn key(k: &str) -> Segment {
    Segment::Key(k.to_owned())
}

fn at(parts: &[Segment]) -> Vec<Segment> {
    parts.to_vec()
}

/// The references of `object` if it is a route.
#[must_use]
pub fn route_view(object: &Object) -> Option<RouteView<'_>> {
    macro_rules! parents {
        ($refs:expr) => {
            $refs
                .iter()
                .flatten()
                .enumerate()
                .map(|(i, r)| {
                    route_ref!(
                        r,
                        r.section_name.as_deref(),
                        at(&[key("spec"), key("parentRefs"), Segment::Index(i)])
                    )
                })
                .collect()
        };
    }
    macro_rules! backends {
        ($lists:expr) => {
            $lists
                .enumerate()
                .flat_map(|(r, list)| {
                    list.into_iter()
                        .flatten()
                        .enumerate()
                        .map(move |(b, backend)| {
                            let path = at(&[
                                key("spec"),
                                key("rules"),
                                Segment::Index(r),
                                key("backendRefs"),
                                Segment::Index(b),
                            ]);
                            route_ref!(backend, None, path)
                        })
                })
                .collect()
        };
    }
    // The `requestMirror.backendRef` of each filter of `$filters` (an iterator of
    // (path prefix, filter list)).
    macro_rules! mirrors {
        ($filters:expr) => {
            $filters
                .flat_map(|(prefix, list)| {
                    list.into_iter()
                        .flatten()
                        .enumerate()
                        .filter_map(move |(f, filter)| {
                            let mirror = filter.request_mirror.as_ref()?;
                            let mut path: Vec<Segment> = prefix.clone();
                            path.extend([
                                key("filters"),
                                Segment::Index(f),
                                key("requestMirror"),
                                key("backendRef"),
                            ]);
                            Some(route_ref!(mirror.backend_ref, None, path))
                        })
                })
                .collect::<Vec<_>>()
        };
    }
    let view = match object {
        Object::HttpRoute(route) => RouteView {
            parents: parents!(route.spec.parent_refs),
            backends: backends!(
                route
                    .spec
                    .rules
                    .iter()
                    .flatten()
                    .map(|r| r.backend_refs.as_ref())
            ),
        },
        Object::GrpcRoute(route) => RouteView {
            parents: parents!(route.spec.parent_refs),
            backends: backends!(
                route
                    .spec
                    .rules
                    .iter()
                    .flatten()
                    .map(|r| r.backend_refs.as_ref())
            ),
        },
        Object::TlsRoute(route) => RouteView {
            parents: parents!(route.spec.parent_refs),
            backends: backends!(route.spec.rules.iter().map(|r| Some(&r.backend_refs))),
        },
        Object::TcpRoute(route) | Object::UdpRoute(route) => RouteView {
            parents: parents!(route.spec.parent_refs),
            backends: backends!(route.spec.rules.iter().map(|r| Some(&r.backend_refs))),
        },
        _ => return None,
    };
    let mut view = view;
    let rule_path = |r: usize| vec![key("spec"), key("rules"), Segment::Index(r)];
    let backend_path = |r: usize, b: usize| {
        let mut path = rule_path(r);
        path.extend([key("backendRefs"), Segment::Index(b)]);
        path
    };
    match object {
        Object::HttpRoute(route) => {
            let rules = || route.spec.rules.iter().flatten().enumerate();
            view.backends.extend(mirrors!(
                rules().map(|(r, rule)| (rule_path(r), rule.filters.as_ref()))
            ));
            view.backends.extend(mirrors!(rules().flat_map(|(r, rule)| {
                rule.backend_refs
                    .iter()
                    .flatten()
                    .enumerate()
                    .map(move |(b, backend)| (backend_path(r, b), backend.filters.as_ref()))
            })));
        }
        Object::GrpcRoute(route) => {
            let rules = || route.spec.rules.iter().flatten().enumerate();
            view.backends.extend(mirrors!(
                rules().map(|(r, rule)| (rule_path(r), rule.filters.as_ref()))
            ));
            view.backends.extend(mirrors!(rules().flat_map(|(r, rule)| {
                rule.backend_refs
                    .iter()
                    .flatten()
                    .enumerate()
                    .map(move |(b, backend)| (backend_path(r, b), backend.filters.as_ref()))
            })));
        }
        _ => {}
    }
    Some(view)
}
