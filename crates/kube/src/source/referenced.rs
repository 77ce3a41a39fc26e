//! Which Secrets, ConfigMaps and ClusterTrustBundles the control plane reads: only those
//! that configuration names, so a Secret nothing references never leaves the API server
//! (least exposure).
//!
//! - a Gateway's or ListenerSet's listener `tls.certificateRefs` (in the declaring
//!   object's namespace) and the Gateway's
//!   `spec.tls.backend.clientCertificateRef` (core `Secret`; one in another namespace only
//!   when a ReferenceGrant there lets Gateways of the Gateway's namespace use it, as the
//!   translation requires);
//! - the CA bundles of a Gateway's client certificate validation
//!   (`spec.tls.frontend.default` / `perPort[]`, `caCertificateRefs`) and of a
//!   BackendTLSPolicy's `spec.validation.caCertificateRefs`: a core `ConfigMap` (in another
//!   namespace only with a ReferenceGrant) or a `certificates.k8s.io` `ClusterTrustBundle`;
//! - fixed objects the caller names (the mesh config ConfigMap `istio` in the root
//!   namespace).
//!
//! References of another kind or group are not fetched: the translation refuses them with
//! an error naming the field.

use std::collections::BTreeSet;
use weft_api::ca_refs::{CaRef, ca_ref_object};
use weft_api::gateway::GatewayListeners;
use weft_api::gateway_status::{backend_client_certificate_ref, frontend_validation};
use weft_api::routes::{GrantFrom, GrantTo, reference_grant_allows};
use weft_api::{ConfigSnapshot, Kind, ObjectRef};

/// The kinds whose objects decide what is referenced: a change of one of them is
/// followed by a new [`referenced`].
pub(super) const REFERRING: &[Kind] = &[
    Kind::Gateway,
    Kind::ListenerSet,
    Kind::XListenerSet,
    Kind::BackendTlsPolicy,
    Kind::ReferenceGrant,
];

/// The objects `snapshot` (holding at least the [`REFERRING`] kinds) references.
pub(super) fn referenced(snapshot: &ConfigSnapshot) -> BTreeSet<ObjectRef> {
    let mut out = BTreeSet::new();
    for (gateway, loaded) in snapshot.gateways() {
        let namespace = loaded.object.namespace().unwrap_or_default();
        let from = GrantFrom {
            kind: Kind::Gateway,
            namespace,
        };
        listener_certificates(snapshot, &from, &gateway.spec.listeners, &mut out);
        if let Some(reference) = backend_client_certificate_ref(gateway) {
            let certificate = Reference {
                group: reference.group.as_deref().unwrap_or_default(),
                kind: reference.kind.as_deref().unwrap_or("Secret"),
                namespace: reference.namespace.as_deref().unwrap_or(namespace),
                name: &reference.name,
            };
            out.extend(certificate_secret(snapshot, &from, &certificate));
        }
        for listener in &gateway.spec.listeners {
            let Some(validation) = frontend_validation(gateway, listener) else {
                continue;
            };
            let bundles = validation.refs.iter();
            out.extend(bundles.filter_map(|r| ca_bundle(snapshot, &from, r)));
        }
    }
    for (set, loaded) in snapshot.listener_sets() {
        // a ListenerSet's listeners resolve certificates in its own namespace, with grants
        // to its own kind, as the Gateway's translation does (whether the Gateway admits it
        // is decided there)
        let from = GrantFrom {
            kind: loaded.object.kind(),
            namespace: loaded.object.namespace().unwrap_or_default(),
        };
        listener_certificates(snapshot, &from, &set.spec.listeners, &mut out);
    }
    for (policy, loaded) in snapshot.backend_tls_policies() {
        let from = GrantFrom {
            kind: Kind::BackendTlsPolicy,
            namespace: loaded.object.namespace().unwrap_or_default(),
        };
        for reference in policy.spec.validation.ca_certificate_refs.iter().flatten() {
            let bundle = CaRef {
                group: &reference.group,
                kind: &reference.kind,
                name: &reference.name,
                namespace: None,
            };
            out.extend(ca_bundle(snapshot, &from, &bundle));
        }
    }
    out
}

/// The Secrets the `certificateRefs` of `listeners`, declared in `namespace`, may use.
fn listener_certificates(
    snapshot: &ConfigSnapshot,
    from: &GrantFrom<'_>,
    listeners: &[GatewayListeners],
    out: &mut BTreeSet<ObjectRef>,
) {
    let tls = listeners.iter().filter_map(|l| l.tls.as_ref());
    for reference in tls.flat_map(|t| t.certificate_refs.iter().flatten()) {
        let certificate = Reference {
            group: reference.group.as_deref().unwrap_or_default(),
            kind: reference.kind.as_deref().unwrap_or("Secret"),
            namespace: reference.namespace.as_deref().unwrap_or(from.namespace),
            name: &reference.name,
        };
        out.extend(certificate_secret(snapshot, from, &certificate));
    }
}

/// The ConfigMap or ClusterTrustBundle a CA reference of `from` may read: a ConfigMap in
/// another namespace only with a ReferenceGrant there, as the translation requires.
fn ca_bundle(
    snapshot: &ConfigSnapshot,
    from: &GrantFrom<'_>,
    reference: &CaRef<'_>,
) -> Option<ObjectRef> {
    let object = ca_ref_object(from.namespace, reference)?;
    if let Some(namespace) = object.namespace.as_deref()
        && namespace != from.namespace
    {
        let to = GrantTo {
            namespace,
            group: "",
            kind: "ConfigMap",
            name: &object.name,
        };
        if !reference_grant_allows(snapshot, from, &to) {
            return None;
        }
    }
    Some(object)
}

/// A reference as written, its namespace defaulted.
struct Reference<'a> {
    group: &'a str,
    kind: &'a str,
    namespace: &'a str,
    name: &'a str,
}

/// The Secret the object `from` (a Gateway, or a ListenerSet for its listeners) may use,
/// if `reference` names one it is allowed to read.
fn certificate_secret(
    snapshot: &ConfigSnapshot,
    from: &GrantFrom<'_>,
    reference: &Reference<'_>,
) -> Option<ObjectRef> {
    if !matches!(reference.group, "" | "core") || reference.kind != "Secret" {
        return None;
    }
    let crosses = reference.namespace != from.namespace;
    let to = GrantTo {
        namespace: reference.namespace,
        group: "",
        kind: "Secret",
        name: reference.name,
    };
    if crosses && !reference_grant_allows(snapshot, from, &to) {
        return None;
    }
    Some(namespaced(
        Kind::Secret,
        reference.namespace,
        reference.name,
    ))
}

fn namespaced(kind: Kind, namespace: &str, name: &str) -> ObjectRef {
    ObjectRef {
        kind,
        namespace: Some(namespace.to_owned()),
        name: name.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::referenced;
    use std::path::Path;
    use weft_api::{ConfigSnapshot, parse_manifests};

    const CONFIG: &str = r"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: web, namespace: shop}
spec:
  gatewayClassName: weft
  tls:
    frontend:
      default:
        validation:
          caCertificateRefs:
          - {group: '', kind: ConfigMap, name: client-ca}
          - {group: '', kind: ConfigMap, name: foreign-ca, namespace: vault}
          - {group: certificates.k8s.io, kind: ClusterTrustBundle, name: partners}
    backend:
      clientCertificateRef: {name: gateway-client}
  listeners:
  - name: https
    port: 443
    protocol: HTTPS
    tls:
      certificateRefs:
      - {name: shop-cert}
      - {name: shared-cert, namespace: certs}
      - {name: denied-cert, namespace: vault}
      - {group: example.com, kind: Vault, name: not-a-secret}
---
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {name: extra, namespace: team}
spec:
  parentRef: {name: web, namespace: shop}
  listeners:
  - {name: https, port: 8443, protocol: HTTPS, tls: {certificateRefs: [{name: team-cert}]}}
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: gateways, namespace: certs}
spec:
  from: [{group: gateway.networking.k8s.io, kind: Gateway, namespace: shop}]
  to: [{group: '', kind: Secret}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: BackendTLSPolicy
metadata: {name: db, namespace: shop}
spec:
  targetRefs: [{group: '', kind: Service, name: db}]
  validation:
    hostname: db.shop
    caCertificateRefs:
    - {group: '', kind: ConfigMap, name: db-ca}
    - {group: certificates.k8s.io, kind: ClusterTrustBundle, name: db-roots}
";

    #[test]
    fn certificates_and_ca_bundles_in_reach_are_referenced_nothing_else() {
        let loaded = parse_manifests(CONFIG, Path::new("config.yaml"));
        let snapshot = ConfigSnapshot::observed(loaded.objects);
        let names: Vec<String> = referenced(&snapshot)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            names,
            [
                "ConfigMap/shop/client-ca",
                "ConfigMap/shop/db-ca",
                "Secret/certs/shared-cert",
                "Secret/shop/gateway-client",
                "Secret/shop/shop-cert",
                "Secret/team/team-cert",
                "ClusterTrustBundle/-/db-roots",
                "ClusterTrustBundle/-/partners",
            ]
        );
    }
}
