//! Gateway API resources (`gateway.networking.k8s.io`).
//!
//! Specs come from the `gateway-api` crate (kube-rs project), which is generated from the
//! upstream CRDs of the current standard channel (v1.5: `GatewayClass`, `Gateway`,
//! `HTTPRoute`, `GRPCRoute`, `TLSRoute`, `ReferenceGrant`, `BackendTLSPolicy`, `ListenerSet`,
//! all `v1`). We only take its `spec` types and wrap them in our own [`Resource`], so the
//! kube derive machinery never touches parsing. Older versions (`v1beta1`, `v1alpha2`,
//! `v1alpha3`) of these kinds carry a subset of the `v1` schema and parse with the same types.
//! `HTTPRoute` is the exception: its spec comes from the experimental channel, a superset of
//! the standard one, so that `rules[].retry` (attempts, codes, backoff) is accepted. The other
//! experimental-only parts it brings (`sessionPersistence`, the `ExternalAuth` filter,
//! `useDefaultGateways`) parse too; the L7 engine rejects what it does not implement, naming
//! the field, rather than ignoring it. `GRPCRoute` too comes from the experimental channel,
//! for its rules' `sessionPersistence`.
//! `TCPRoute` and `UDPRoute` (`v1alpha2`, and `v1` since their promotion to the standard
//! channel; a `v1` TCPRoute has one rule): their schema is exactly TLSRoute's `parentRefs` +
//! `rules[].backendRefs` without `hostnames`, so they are defined here from those parts.
//! `TLSRoute` is read at `v1`, `v1alpha3` (hostnames required) and `v1alpha2`.

use crate::resource::Resource;
pub use gateway_api::backendtlspolicies::BackendTlsPolicySpec;
pub use gateway_api::experimental::grpcroutes::GrpcRouteSpec;
pub use gateway_api::experimental::httproutes::{
    HttpRouteParentRefs, HttpRouteRulesBackendRefs, HttpRouteSpec,
};
pub use gateway_api::gatewayclasses::GatewayClassSpec;
pub use gateway_api::gateways::{GatewayListeners, GatewaySpec};
pub use gateway_api::listenersets::ListenerSetParentRef;
pub use gateway_api::referencegrants::ReferenceGrantSpec;
pub use gateway_api::tlsroutes::{
    TlsRouteParentRefs, TlsRouteRules, TlsRouteRulesBackendRefs, TlsRouteSpec,
};
use serde::{Deserialize, Serialize};

/// `GatewayClass` (cluster-scoped).
pub type GatewayClass = Resource<GatewayClassSpec>;
/// `Gateway`; a waypoint is a Gateway of class `istio-waypoint`.
pub type Gateway = Resource<GatewaySpec>;
/// `HTTPRoute`.
pub type HttpRoute = Resource<HttpRouteSpec>;
/// `GRPCRoute`.
pub type GrpcRoute = Resource<GrpcRouteSpec>;
/// `TLSRoute`.
pub type TlsRoute = Resource<TlsRouteSpec>;
/// `TCPRoute` (`v1`, `v1alpha2`).
pub type TcpRoute = Resource<L4RouteSpec>;
/// `UDPRoute` (`v1`, `v1alpha2`).
pub type UdpRoute = Resource<L4RouteSpec>;
/// `ReferenceGrant`.
pub type ReferenceGrant = Resource<ReferenceGrantSpec>;
/// `BackendTLSPolicy`.
pub type BackendTlsPolicy = Resource<BackendTlsPolicySpec>;
/// `ListenerSet`.
pub type ListenerSet = Resource<ListenerSetSpec>;

/// Spec of `ListenerSet`: the Gateway it adds listeners to, and the listeners. A
/// ListenerSet's `ListenerEntry` has exactly the fields of a Gateway's `Listener`, so the
/// listeners are read as Gateway listeners: the status and the gateway treat both alike.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerSetSpec {
    /// The Gateway (group `gateway.networking.k8s.io`, kind `Gateway`; namespace defaults
    /// to the ListenerSet's).
    pub parent_ref: ListenerSetParentRef,
    /// The listeners (at least one).
    pub listeners: Vec<GatewayListeners>,
}

/// Spec of `TCPRoute` and `UDPRoute`: parents plus rules that only forward to backends.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct L4RouteSpec {
    /// Gateways (or Services) the route attaches to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_refs: Option<Vec<TlsRouteParentRefs>>,
    /// Forwarding rules (required, at least one).
    pub rules: Vec<TlsRouteRules>,
    /// Experimental: attach to the defaulted Gateways (`All` or `None`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_default_gateways: Option<String>,
}

/// Gateway class name that marks a `Gateway` as an ambient waypoint.
pub const WAYPOINT_CLASS: &str = "istio-waypoint";

#[cfg(test)]
mod tests {
    use crate::{Object, parse_manifests, validate::check_object};
    use std::path::Path;

    const ROUTE: &str = r"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: reviews, namespace: default}
spec:
  parentRefs: [{group: '', kind: Service, name: reviews}]
  rules:
  - backendRefs: [{name: reviews, port: 9080}]
    retry: {attempts: 3, codes: [503, 504], backoff: 100ms}
";

    #[test]
    fn an_http_route_retry_parses_without_findings() {
        let loaded = parse_manifests(ROUTE, Path::new("route.yaml"));
        assert_eq!(loaded.findings, vec![]);
        let Object::HttpRoute(route) = &loaded.objects[0].object else {
            panic!("not an HTTPRoute: {loaded:?}");
        };
        let retry = route.spec.rules.as_ref().unwrap()[0].retry.clone().unwrap();
        assert_eq!(retry.attempts, Some(3));
        assert_eq!(retry.codes, Some(vec![503, 504]));
        assert_eq!(retry.backoff.as_deref(), Some("100ms"));
        assert!(check_object(&loaded.objects[0].object).is_empty());
    }

    #[test]
    fn an_http_route_retry_code_out_of_range_is_reported() {
        let text = ROUTE.replace("[503, 504]", "[200]");
        let loaded = parse_manifests(&text, Path::new("route.yaml"));
        let messages: Vec<_> = loaded.findings.iter().map(|f| f.message.clone()).collect();
        assert_eq!(messages.len(), 1, "{messages:?}");
        assert!(messages[0].contains("retry.codes[0]"), "{messages:?}");
    }
}
