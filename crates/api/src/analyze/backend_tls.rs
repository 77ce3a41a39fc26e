//! BackendTLSPolicy references: a targetRef that names no Service or ServiceEntry (or no
//! port of it) applies to nothing; a CA reference that is not a ConfigMap with a `ca.crt`
//! or a ClusterTrustBundle ([`crate::ca_refs`]) makes the policy unusable, and the proxies then refuse to connect to its targets (they
//! never fall back to plaintext, see `docs/egress.md`).

use super::Context;
use crate::ca_refs::{CaRef, resolve_ca_ref};
use crate::finding::{Code, Finding};
use crate::gateway::BackendTlsPolicy;
use crate::object::{Kind, LoadedObject, Object};
use crate::routes::GrantFrom;
use crate::suggest::Segment;

/// Group of Istio's networking kinds (`ServiceEntry`).
const ISTIO_NETWORKING: &str = "networking.istio.io";

pub(super) fn check_backend_tls_policies(context: &Context<'_>, findings: &mut Vec<Finding>) {
    for (policy, loaded) in context.snapshot.backend_tls_policies() {
        let namespace = loaded.object.object_ref().namespace.unwrap_or_default();
        let mut report = |code: Code, path: Vec<Segment>, message: String| {
            let at = crate::suggest::display_path(&path);
            findings.push(Finding::new(
                code,
                Some(loaded.object.object_ref()),
                loaded.source_at(&path),
                format!("{at}: {message}"),
            ));
        };
        for (index, target) in policy.spec.target_refs.iter().enumerate() {
            let path = field(&["spec", "targetRefs"], index);
            if let Err(reason) = target_exists(context, &namespace, target) {
                report(Code::BackendTlsTargetNotFound, path, reason);
            }
        }
        for (index, reason) in ca_problems(context, &namespace, policy) {
            let path = field(&["spec", "validation", "caCertificateRefs"], index);
            report(Code::BackendTlsCaNotFound, path, reason);
        }
    }
}

fn field(keys: &[&str], index: usize) -> Vec<Segment> {
    let mut path: Vec<Segment> = keys.iter().map(|k| Segment::Key((*k).to_owned())).collect();
    path.push(Segment::Index(index));
    path
}

/// Whether a targetRef names an existing Service or ServiceEntry (and its port).
fn target_exists(
    context: &Context<'_>,
    namespace: &str,
    target: &gateway_api::backendtlspolicies::BackendTlsPolicyTargetRefs,
) -> Result<(), String> {
    let kind = match (target.group.as_str(), target.kind.as_str()) {
        ("", "Service") => Kind::Service,
        (ISTIO_NETWORKING, "ServiceEntry") => Kind::ServiceEntry,
        (group, kind) => {
            return Err(format!(
                "kind {kind:?} of group {group:?} cannot be a target (Service or \
                 networking.istio.io ServiceEntry); the policy applies to nothing there"
            ));
        }
    };
    let name = &target.name;
    let found = context.snapshot.get(kind, Some(namespace), name);
    let Some(loaded) = found else {
        return Err(format!(
            "{} {namespace}/{name} does not exist; the policy applies to nothing there",
            target.kind
        ));
    };
    let Some(section) = target.section_name.as_deref() else {
        return Ok(());
    };
    if port_names(loaded).iter().any(|p| p == section) {
        return Ok(());
    }
    Err(format!(
        "{} {namespace}/{name} has no port named {section:?}; the policy applies to nothing \
         there",
        target.kind
    ))
}

fn port_names(loaded: &LoadedObject) -> Vec<String> {
    match &loaded.object {
        Object::Service(svc) => (svc.spec.iter())
            .flat_map(|s| s.ports.iter().flatten())
            .filter_map(|p| p.name.clone())
            .collect(),
        Object::ServiceEntry(entry) => (entry.spec.ports.iter().flatten())
            .filter_map(|p| p.name.clone())
            .collect(),
        _ => Vec::new(),
    }
}

/// Each caCertificateRef that is neither a ConfigMap of the namespace with a PEM `ca.crt`
/// nor a ClusterTrustBundle with a PEM `spec.trustBundle`.
fn ca_problems(
    context: &Context<'_>,
    namespace: &str,
    policy: &BackendTlsPolicy,
) -> Vec<(usize, String)> {
    let refs = policy.spec.validation.ca_certificate_refs.iter().flatten();
    let from = GrantFrom {
        kind: Kind::BackendTlsPolicy,
        namespace,
    };
    let refused = "the proxies refuse to connect to the policy's targets";
    refs.enumerate()
        .filter_map(|(index, reference)| {
            let reference = CaRef {
                group: &reference.group,
                kind: &reference.kind,
                name: &reference.name,
                namespace: None,
            };
            let error = resolve_ca_ref(context.snapshot, &from, &reference).err()?;
            Some((index, format!("{error}; {refused}")))
        })
        .collect()
}
