//! Every Kubernetes API permission weft's processes use, in one place: the install's
//! ClusterRoles and Roles are written from [`CONTROL_PLANE`] (the node proxy calls no
//! Kubernetes API: it has no role at all), and
//! `docs/kubernetes.md` explains each row. A permission nobody calls is a hole; one that is
//! missing is an outage: keep this list in step with what the code calls.

use k8s_openapi::api::rbac::v1::PolicyRule;

/// Where a permission holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every namespace (a ClusterRole bound by a ClusterRoleBinding).
    Cluster,
    /// Only the install's own namespace (a Role bound by a RoleBinding).
    OwnNamespace,
}

/// One rule: verbs on resources of an API group, and why weft needs them.
#[derive(Debug, Clone, Copy)]
pub struct Permission {
    /// API group (`""` for the core group).
    pub group: &'static str,
    /// Resources (plural names, `kind/status` for the status subresource).
    pub resources: &'static [&'static str],
    /// Verbs.
    pub verbs: &'static [&'static str],
    /// Where it holds.
    pub scope: Scope,
    /// What uses it.
    pub why: &'static str,
}

/// What a watcher does: list, then watch from the list's version.
const WATCH: &[&str] = &["list", "watch"];
/// Server-side apply of a status is a `patch` of the status subresource.
const APPLY_STATUS: &[&str] = &["patch"];

/// The Gateway API kinds the control plane watches (and writes the status of).
pub const GATEWAY_API_RESOURCES: &[&str] = &[
    "gatewayclasses",
    "gateways",
    "httproutes",
    "grpcroutes",
    "tlsroutes",
    "tcproutes",
    "udproutes",
    "referencegrants",
    "backendtlspolicies",
    "listenersets",
];

/// The status subresources of [`GATEWAY_API_RESOURCES`] the leader writes.
const GATEWAY_API_STATUS: &[&str] = &[
    "gatewayclasses/status",
    "gateways/status",
    "httproutes/status",
    "grpcroutes/status",
    "tlsroutes/status",
    "tcproutes/status",
    "udproutes/status",
    "listenersets/status",
];

/// The control plane's permissions (`weft control --kubernetes`).
pub const CONTROL_PLANE: &[Permission] = &[
    Permission {
        group: "",
        resources: &["namespaces", "pods", "services", "nodes", "serviceaccounts"],
        verbs: WATCH,
        scope: Scope::Cluster,
        why: "watched: enrollment labels, pod addresses and placement, services, node locality, service accounts",
    },
    Permission {
        group: "discovery.k8s.io",
        resources: &["endpointslices"],
        verbs: WATCH,
        scope: Scope::Cluster,
        why: "watched: the endpoints of Services without a selector",
    },
    Permission {
        group: "security.istio.io",
        resources: &[
            "authorizationpolicies",
            "peerauthentications",
            "requestauthentications",
        ],
        verbs: WATCH,
        scope: Scope::Cluster,
        why: "watched: policy",
    },
    Permission {
        group: "security.istio.io",
        resources: &["authorizationpolicies/status"],
        verbs: APPLY_STATUS,
        scope: Scope::Cluster,
        why: "the leader applies the enforcement condition of each AuthorizationPolicy",
    },
    Permission {
        group: "networking.istio.io",
        resources: &["serviceentries", "workloadentries"],
        verbs: WATCH,
        scope: Scope::Cluster,
        why: "watched: services and workloads outside the cluster",
    },
    Permission {
        group: "gateway.networking.k8s.io",
        resources: GATEWAY_API_RESOURCES,
        verbs: WATCH,
        scope: Scope::Cluster,
        why: "watched: waypoints, gateways and routes",
    },
    Permission {
        group: "gateway.networking.k8s.io",
        resources: GATEWAY_API_STATUS,
        verbs: APPLY_STATUS,
        scope: Scope::Cluster,
        why: "the leader applies gateway, listener and route conditions",
    },
    Permission {
        group: "gateway.networking.x-k8s.io",
        resources: &["xlistenersets"],
        verbs: WATCH,
        scope: Scope::Cluster,
        why: "watched: ListenerSets of the experimental channel",
    },
    Permission {
        group: "gateway.networking.x-k8s.io",
        resources: &["xlistenersets/status"],
        verbs: APPLY_STATUS,
        scope: Scope::Cluster,
        why: "the leader applies the conditions of experimental-channel ListenerSets",
    },
    Permission {
        group: "",
        resources: &["secrets"],
        verbs: WATCH,
        scope: Scope::Cluster,
        why: "watched by name (fieldSelector metadata.name): the certificates gateways reference",
    },
    Permission {
        group: "",
        resources: &["configmaps"],
        verbs: &["list", "watch", "patch"],
        scope: Scope::Cluster,
        why: "watched by name: CA bundles gateways reference, the mesh config; applies \
              istio-ca-root-cert in every namespace",
    },
    Permission {
        group: "certificates.k8s.io",
        resources: &["clustertrustbundles"],
        verbs: WATCH,
        scope: Scope::Cluster,
        why: "watched by name: trust bundles that gateway client validation and \
              BackendTLSPolicies reference",
    },
    Permission {
        group: "",
        resources: &["serviceaccounts", "services"],
        verbs: &["patch"],
        scope: Scope::Cluster,
        why: "the leader applies each Gateway's ServiceAccount and Service (server-side apply)",
    },
    Permission {
        group: "apps",
        resources: &["deployments"],
        verbs: &["patch"],
        scope: Scope::Cluster,
        why: "the leader applies each Gateway's Deployment (server-side apply)",
    },
    Permission {
        group: "authentication.k8s.io",
        resources: &["tokenreviews"],
        verbs: &["create"],
        scope: Scope::Cluster,
        why: "checks the service account tokens of node proxies and workloads",
    },
    Permission {
        group: "",
        resources: &["secrets"],
        verbs: &["get", "create"],
        scope: Scope::OwnNamespace,
        why: "reads cacerts or istio-ca-secret; creates istio-ca-secret, the self-signed root, \
              when neither exists",
    },
    Permission {
        group: "",
        resources: &["pods"],
        verbs: &["get"],
        scope: Scope::OwnNamespace,
        why: "reads the node proxy pod a reviewed token is bound to (its node)",
    },
    Permission {
        group: "coordination.k8s.io",
        resources: &["leases"],
        verbs: &["get", "create", "update"],
        scope: Scope::OwnNamespace,
        why: "leader election: one replica writes status",
    },
];

/// The rules of `permissions` that hold in `scope`.
#[must_use]
pub fn rules(permissions: &[Permission], scope: Scope) -> Vec<PolicyRule> {
    permissions
        .iter()
        .filter(|p| p.scope == scope)
        .map(|p| PolicyRule {
            api_groups: Some(vec![p.group.to_owned()]),
            resources: Some(p.resources.iter().map(|r| (*r).to_owned()).collect()),
            verbs: p.verbs.iter().map(|v| (*v).to_owned()).collect(),
            ..PolicyRule::default()
        })
        .collect()
}

/// Whether `permissions` allow `verb` on `resource` of `group` in `scope` (a cluster-wide
/// permission also holds in the own namespace).
#[must_use]
pub fn allows(
    permissions: &[Permission],
    group: &str,
    resource: &str,
    verb: &str,
    scope: Scope,
) -> bool {
    permissions.iter().any(|p| {
        p.group == group
            && p.resources.contains(&resource)
            && p.verbs.contains(&verb)
            && (p.scope == Scope::Cluster || scope == Scope::OwnNamespace)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_is_only_patched_and_secrets_only_written_in_the_own_namespace() {
        assert!(allows(
            CONTROL_PLANE,
            "gateway.networking.k8s.io",
            "gateways/status",
            "patch",
            Scope::Cluster
        ));
        assert!(!allows(
            CONTROL_PLANE,
            "gateway.networking.k8s.io",
            "gateways",
            "patch",
            Scope::Cluster
        ));
        assert!(allows(
            CONTROL_PLANE,
            "",
            "secrets",
            "create",
            Scope::OwnNamespace
        ));
        assert!(!allows(
            CONTROL_PLANE,
            "",
            "secrets",
            "create",
            Scope::Cluster
        ));
        // gateways are deployed by apply alone: no read, no delete (the Gateway owns them)
        assert!(allows(
            CONTROL_PLANE,
            "apps",
            "deployments",
            "patch",
            Scope::Cluster
        ));
        assert!(!allows(
            CONTROL_PLANE,
            "apps",
            "deployments",
            "get",
            Scope::Cluster
        ));
        for permission in CONTROL_PLANE {
            assert!(!permission.verbs.contains(&"*") && !permission.resources.contains(&"*"));
            assert!(
                !permission.verbs.contains(&"delete"),
                "weft deletes nothing at run time"
            );
        }
    }
}
