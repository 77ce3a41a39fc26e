//! CA certificate references: the trust anchors a Gateway (`spec.tls.frontend` client
//! validation) or a BackendTLSPolicy (`spec.validation.caCertificateRefs`) names.
//!
//! Two kinds hold a PEM bundle:
//! - a core `ConfigMap`, its `ca.crt` key (namespaced: one in another namespace than the
//!   referring object needs a `ReferenceGrant` there, when the referring kind may cross
//!   namespaces at all);
//! - a `ClusterTrustBundle` (group `certificates.k8s.io`, cluster-scoped, no grant needed),
//!   its `spec.trustBundle`.
//!
//! Every bundle must hold at least one PEM certificate that parses. Errors carry the Gateway
//! API reason a status reports for them ([`CaRefError::reason`]). The same rules serve
//! status, analysis and translation, so what `weft analyze` says is what the proxies get.

use crate::object::{Kind, Object, ObjectRef};
use crate::routes::{GrantFrom, GrantTo, reference_grant_allows};
use crate::snapshot::ConfigSnapshot;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// ConfigMap key holding the PEM CA bundle.
pub const CA_KEY: &str = "ca.crt";
/// API group of `ClusterTrustBundle`.
pub const CERTIFICATES_GROUP: &str = "certificates.k8s.io";

/// One CA reference, as written (group `""` is the core group).
#[derive(Debug, Clone, Copy)]
pub struct CaRef<'a> {
    /// API group.
    pub group: &'a str,
    /// Kind (`ConfigMap` or `ClusterTrustBundle`).
    pub kind: &'a str,
    /// Name.
    pub name: &'a str,
    /// Namespace, for a namespaced kind (`None`: the referring object's).
    pub namespace: Option<&'a str>,
}

/// Why a CA reference gives no trust anchors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaRefError {
    /// The kind is neither a core ConfigMap nor a ClusterTrustBundle.
    UnsupportedKind(String),
    /// A ConfigMap in another namespace without a ReferenceGrant allowing it.
    NotPermitted(String),
    /// The object is missing or holds no PEM certificate.
    Invalid(String),
}

impl CaRefError {
    /// The Gateway API condition reason for this error.
    #[must_use]
    pub fn reason(&self) -> &'static str {
        match self {
            Self::UnsupportedKind(_) => "InvalidCACertificateKind",
            Self::NotPermitted(_) => "RefNotPermitted",
            Self::Invalid(_) => "InvalidCACertificateRef",
        }
    }

    /// What is wrong, naming the object.
    #[must_use]
    pub fn message(&self) -> &str {
        match self {
            Self::UnsupportedKind(m) | Self::NotPermitted(m) | Self::Invalid(m) => m,
        }
    }
}

impl std::fmt::Display for CaRefError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

/// The object a reference names (whether or not it exists), or `None` for an unsupported
/// kind; `namespace` is the referring object's. Translation records it as a dependency and
/// the Kubernetes source must watch its kind.
#[must_use]
pub fn ca_ref_object(namespace: &str, reference: &CaRef<'_>) -> Option<ObjectRef> {
    let (kind, namespace) = match (reference.group, reference.kind) {
        ("" | "core", "ConfigMap") => (
            Kind::ConfigMap,
            Some(reference.namespace.unwrap_or(namespace).to_owned()),
        ),
        (CERTIFICATES_GROUP, "ClusterTrustBundle") => (Kind::ClusterTrustBundle, None),
        _ => return None,
    };
    Some(ObjectRef {
        kind,
        namespace,
        name: reference.name.to_owned(),
    })
}

/// The PEM bundle `reference` names, seen from an object of kind `from.kind` in
/// `from.namespace`. A ConfigMap in another namespace needs a ReferenceGrant there.
///
/// # Errors
/// Why the reference gives no usable trust anchors, with its Gateway API reason.
pub fn resolve_ca_ref(
    snapshot: &ConfigSnapshot,
    from: &GrantFrom<'_>,
    reference: &CaRef<'_>,
) -> Result<String, CaRefError> {
    let Some(object) = ca_ref_object(from.namespace, reference) else {
        return Err(CaRefError::UnsupportedKind(format!(
            "kind {:?} of group {:?} cannot hold CA certificates (ConfigMap with {CA_KEY}, or \
             {CERTIFICATES_GROUP} ClusterTrustBundle)",
            reference.kind, reference.group
        )));
    };
    let namespace = object.namespace.as_deref();
    let what = match namespace {
        Some(ns) => format!("{} {ns}/{}", object.kind, object.name),
        None => format!("{} {}", object.kind, object.name),
    };
    if let Some(target_namespace) = namespace
        && target_namespace != from.namespace
    {
        let to = GrantTo {
            namespace: target_namespace,
            group: "",
            kind: "ConfigMap",
            name: &object.name,
        };
        if !reference_grant_allows(snapshot, from, &to) {
            return Err(CaRefError::NotPermitted(format!(
                "{what} is in another namespace and no ReferenceGrant in {target_namespace} \
                 allows {}s from namespace {} to use it",
                from.kind, from.namespace
            )));
        }
    }
    let found = snapshot.get(object.kind, namespace, &object.name);
    let pem = match found.map(|l| &l.object) {
        Some(Object::ConfigMap(map)) => map
            .data
            .as_ref()
            .and_then(|d| d.get(CA_KEY))
            .ok_or_else(|| CaRefError::Invalid(format!("{what} has no {CA_KEY}")))?,
        Some(Object::ClusterTrustBundle(bundle)) => &bundle.spec.trust_bundle,
        _ => return Err(CaRefError::Invalid(format!("{what} does not exist"))),
    };
    check_pem_bundle(pem).map_err(|why| CaRefError::Invalid(format!("{what}: {why}")))?;
    Ok(pem.clone())
}

/// Resolves every reference and joins the usable bundles; the errors are returned beside it
/// with the index of their reference.
#[must_use]
pub fn resolve_ca_refs(
    snapshot: &ConfigSnapshot,
    from: &GrantFrom<'_>,
    references: &[CaRef<'_>],
) -> (String, Vec<(usize, CaRefError)>) {
    let mut bundle = String::new();
    let mut errors = Vec::new();
    for (index, reference) in references.iter().enumerate() {
        match resolve_ca_ref(snapshot, from, reference) {
            Ok(pem) => {
                bundle.push_str(pem.trim_end());
                bundle.push('\n');
            }
            Err(error) => errors.push((index, error)),
        }
    }
    (bundle, errors)
}

/// Whether `pem` holds at least one PEM certificate, all of them well formed.
fn check_pem_bundle(pem: &str) -> Result<(), String> {
    let certificates: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(pem.as_bytes()).collect();
    match certificates {
        Ok(list) if !list.is_empty() => Ok(()),
        Ok(_) => Err("holds no PEM certificate".to_owned()),
        Err(error) => Err(format!("not a PEM certificate bundle ({error})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ConfigSnapshot, load::parse_manifests};
    use std::path::Path;

    /// A self-signed CA certificate (any well-formed DER works for these checks).
    fn ca_pem() -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.self_signed(&key).unwrap().pem()
    }

    fn snapshot(yaml: &str) -> ConfigSnapshot {
        let loaded = parse_manifests(yaml, Path::new("t.yaml"));
        assert!(loaded.findings.is_empty(), "{:?}", loaded.findings);
        ConfigSnapshot::new(loaded.objects)
    }

    fn indent(pem: &str) -> String {
        pem.lines().map(|l| format!("      {l}\n")).collect()
    }

    #[test]
    fn config_maps_and_cluster_trust_bundles_resolve_with_their_reasons() {
        let pem = ca_pem();
        let yaml = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: ca, namespace: gw}}\ndata:\n  ca.crt: |\n{pem_cm}---\n\
             apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: other, namespace: certs}}\ndata:\n  ca.crt: |\n{pem_cm}---\n\
             apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: empty, namespace: gw}}\ndata:\n  other: x\n---\n\
             apiVersion: certificates.k8s.io/v1beta1\nkind: ClusterTrustBundle\nmetadata: {{name: corp}}\nspec:\n  trustBundle: |\n{pem_ctb}",
            pem_cm = indent(&pem).replace("      ", "    "),
            pem_ctb = indent(&pem).replace("      ", "    "),
        );
        let snapshot = snapshot(&yaml);
        let from = GrantFrom {
            kind: Kind::Gateway,
            namespace: "gw",
        };
        let config_map = |name, namespace| CaRef {
            group: "",
            kind: "ConfigMap",
            name,
            namespace,
        };
        let resolve = |r: CaRef<'_>| resolve_ca_ref(&snapshot, &from, &r);
        assert_eq!(resolve(config_map("ca", None)).unwrap().trim(), pem.trim());
        let bundle = CaRef {
            group: CERTIFICATES_GROUP,
            kind: "ClusterTrustBundle",
            name: "corp",
            namespace: None,
        };
        assert_eq!(resolve(bundle).unwrap().trim(), pem.trim());
        let reason = |r: CaRef<'_>| resolve(r).unwrap_err().reason();
        assert_eq!(
            reason(config_map("other", Some("certs"))),
            "RefNotPermitted"
        );
        assert_eq!(reason(config_map("empty", None)), "InvalidCACertificateRef");
        assert_eq!(
            reason(config_map("missing", None)),
            "InvalidCACertificateRef"
        );
        let secret = CaRef {
            kind: "Secret",
            ..config_map("ca", None)
        };
        assert_eq!(reason(secret), "InvalidCACertificateKind");
        let (joined, errors) = resolve_ca_refs(
            &snapshot,
            &from,
            &[config_map("ca", None), config_map("x", None)],
        );
        assert_eq!(joined.trim(), pem.trim());
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].0, 1);
    }
}
