//! The kinds the control plane watches, and the API resource each is served as.
//!
//! Every kind weft translates, at the first `apiVersion` weft reads it at that the cluster
//! serves ([`served_resource`]): Namespaces,
//! Pods, Services (and their EndpointSlices), Nodes, the Istio kinds and the Gateway API
//! kinds. Deployments,
//! StatefulSets and DaemonSets are not watched: in a cluster, pods are observed as the
//! cluster placed and addressed them, never expanded from their workloads.

use kube::Api;
use kube::api::{DynamicObject, ListParams};
use kube::core::{ApiResource, GroupVersionKind};
use weft_api::Kind;

/// The kinds followed, in the order their watches start.
pub const WATCHED: &[Kind] = &[
    Kind::Namespace,
    Kind::Node,
    Kind::Pod,
    Kind::Service,
    Kind::EndpointSlice,
    Kind::ServiceAccount,
    Kind::AuthorizationPolicy,
    Kind::PeerAuthentication,
    Kind::RequestAuthentication,
    Kind::ServiceEntry,
    Kind::WorkloadEntry,
    Kind::GatewayClass,
    Kind::Gateway,
    Kind::HttpRoute,
    Kind::GrpcRoute,
    Kind::TlsRoute,
    Kind::TcpRoute,
    Kind::UdpRoute,
    Kind::ReferenceGrant,
    Kind::BackendTlsPolicy,
    Kind::ListenerSet,
    Kind::XListenerSet,
];

/// The API resource `kind` is watched as when nothing is known of the cluster: its first
/// accepted `apiVersion`, the plural the API serves it under (kube's pluralisation, right
/// for every kind weft reads).
#[must_use]
pub fn api_resource(kind: Kind) -> ApiResource {
    resource_at(kind, kind.api_versions()[0])
}

fn resource_at(kind: Kind, api_version: &str) -> ApiResource {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind.name()))
}

/// The API resource to watch `kind` as on this cluster: of its accepted versions, the first
/// the API server serves (asked with a list of at most one object; a CRD
/// serves only some versions, e.g. TLSRoute only `v1alpha2` before Gateway API 1.5).
/// [`api_resource`] when none answers, or when asking fails otherwise (the watch then
/// reports what is wrong, and chooses again if that version is not served). A watch of one
/// object asks in its `namespace`, where a namespaced role allows it.
pub async fn served_resource(
    client: &kube::Client,
    kind: Kind,
    namespace: Option<&str>,
) -> ApiResource {
    let versions = kind.api_versions();
    if versions.len() > 1 {
        for api_version in versions {
            let resource = resource_at(kind, api_version);
            let api: Api<DynamicObject> = match namespace {
                Some(namespace) => Api::namespaced_with(client.clone(), namespace, &resource),
                None => Api::all_with(client.clone(), &resource),
            };
            match api.list(&ListParams::default().limit(1)).await {
                Ok(_) => return resource,
                Err(kube::Error::Api(status)) if status.is_not_found() => {}
                Err(_) => break,
            }
        }
    }
    api_resource(kind)
}

#[cfg(test)]
mod tests {
    use super::{WATCHED, api_resource};
    use weft_api::Kind;

    #[test]
    fn kinds_map_to_the_resources_the_api_serves() {
        let policy = api_resource(Kind::AuthorizationPolicy);
        assert_eq!(policy.api_version, "security.istio.io/v1");
        assert_eq!(policy.plural, "authorizationpolicies");
        assert_eq!(api_resource(Kind::Pod).group, "");
        assert_eq!(api_resource(Kind::GatewayClass).plural, "gatewayclasses");
        assert_eq!(api_resource(Kind::TcpRoute).version, "v1alpha2");
        let experimental = api_resource(Kind::XListenerSet);
        assert_eq!(
            (
                experimental.api_version.as_str(),
                experimental.plural.as_str()
            ),
            ("gateway.networking.x-k8s.io/v1alpha1", "xlistenersets")
        );
        let slices = api_resource(Kind::EndpointSlice);
        assert_eq!(
            (slices.group.as_str(), slices.plural.as_str()),
            ("discovery.k8s.io", "endpointslices")
        );
        assert!(!WATCHED.contains(&Kind::Deployment));
    }
}
