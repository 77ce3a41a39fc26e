//! `BackendTLSPolicy` -> `weft.l7.v1.BackendTls`: how a waypoint or gateway originates TLS
//! to a backend service.
//!
//! A policy applies to the services its `targetRefs` name: a `Service` (group `""`), or a
//! `ServiceEntry` (group `networking.istio.io`, every host of the entry), optionally one
//! port of it (`sectionName`, the port's name). Its validation gives the SNI and expected
//! name (`hostname`), the accepted `subjectAltNames`, and the trust anchors: the `ca.crt`
//! of the ConfigMaps (policy's namespace) and the `spec.trustBundle` of the
//! ClusterTrustBundles (`certificates.k8s.io`) in `caCertificateRefs`, or the platform's
//! roots (`wellKnownCACertificates: System`).
//!
//! **Fails closed.** A policy that cannot be used (a missing ConfigMap, no `ca.crt`, both
//! or neither CA source, a reference of another kind) still yields an entry, with an empty
//! `ca_bundle` and `system_roots` false: the proxy then refuses to connect to the backend
//! rather than sending plaintext where the user asked for TLS. A warning names the policy
//! and field. When several policies target the same service port, the oldest wins
//! (creation time, then namespace/name, as the Gateway API orders conflicts); the others
//! are reported.
//!
//! Dependencies: the unit records every policy that targets one of the services and every
//! ConfigMap or ClusterTrustBundle it references (present or not), so editing them
//! re-translates the resource;
//! a newly created policy is found through [`services_targeted`].

use super::super::Warning;
use super::super::context::{Context, Dep, Unit};
use super::super::service::{kube_hostname, service_key};
use std::collections::{BTreeMap, BTreeSet};
use weft_api::ca_refs::{CaRef, ca_ref_object, resolve_ca_ref};
use weft_api::gateway::BackendTlsPolicy;
use weft_api::routes::GrantFrom;
use weft_api::{Kind, Object, ObjectRef};
use weft_proto::l7::BackendTls;

/// Group of Istio's networking kinds (`ServiceEntry`).
const ISTIO_NETWORKING: &str = "networking.istio.io";

/// The TLS origination settings for the services `services` (service keys), one entry per
/// (service, port) in service-key then port order.
pub(crate) fn backend_tls_for(
    context: &Context<'_>,
    services: &BTreeSet<String>,
    unit: &mut Unit,
) -> Vec<BackendTls> {
    let mut chosen: BTreeMap<(String, u32), BackendTls> = BTreeMap::new();
    for (policy, object) in policies_oldest_first(context) {
        let targets: Vec<(String, u32)> = targets(context, policy, &object, unit)
            .into_iter()
            .filter(|(key, _)| services.contains(key))
            .collect();
        if targets.is_empty() {
            continue;
        }
        unit.deps.push(Dep::Object(object.clone()));
        let settings = settings(context, policy, &object, unit);
        for (service, port) in targets {
            if let Some(winner) = chosen.get(&(service.clone(), port)) {
                unit.warnings.push(Warning {
                    object: object.clone(),
                    message: format!(
                        "conflicts with BackendTLSPolicy {} on service {service} port {port} \
                         (the older policy applies)",
                        winner.source
                    ),
                });
                continue;
            }
            let entry = BackendTls {
                service: service.clone(),
                port,
                ..settings.clone()
            };
            chosen.insert((service, port), entry);
        }
    }
    chosen.into_values().collect()
}

/// Service keys the BackendTLSPolicy `object` targets in `context` (empty if it is gone).
pub(crate) fn services_targeted(context: &Context<'_>, object: &ObjectRef) -> Vec<String> {
    let namespace = object.namespace.as_deref();
    let found = context
        .snapshot
        .get(Kind::BackendTlsPolicy, namespace, &object.name);
    let Some(Object::BackendTlsPolicy(policy)) = found.map(|l| &l.object) else {
        return Vec::new();
    };
    let mut scratch = Unit::default();
    let keys = targets(context, policy, object, &mut scratch);
    keys.into_iter().map(|(key, _)| key).collect()
}

/// Every BackendTLSPolicy, oldest first (creation time, unset last; then namespace/name).
fn policies_oldest_first<'c>(context: &Context<'c>) -> Vec<(&'c BackendTlsPolicy, ObjectRef)> {
    let mut policies: Vec<_> = context
        .snapshot
        .backend_tls_policies()
        .map(|(policy, loaded)| {
            let created = policy
                .metadata
                .creation_timestamp
                .as_ref()
                .and_then(|t| serde_json::to_value(t).ok())
                .and_then(|v| v.as_str().map(str::to_owned));
            (
                created.is_none(),
                created,
                loaded.object.object_ref(),
                policy,
            )
        })
        .collect();
    policies.sort_by(|a, b| (a.0, &a.1, &a.2).cmp(&(b.0, &b.1, &b.2)));
    policies
        .into_iter()
        .map(|(_, _, object, policy)| (policy, object))
        .collect()
}

/// The (service key, port) pairs a policy's targetRefs resolve to (port 0: every port).
/// Records a dependency on each target object it looks up.
fn targets(
    context: &Context<'_>,
    policy: &BackendTlsPolicy,
    object: &ObjectRef,
    unit: &mut Unit,
) -> Vec<(String, u32)> {
    let namespace = object.namespace.clone().unwrap_or_default();
    let mut out = Vec::new();
    for target in &policy.spec.target_refs {
        let section = target.section_name.as_deref();
        match (target.group.as_str(), target.kind.as_str()) {
            ("", "Service") => {
                out.extend(service_target(context, &namespace, &target.name, section));
            }
            (ISTIO_NETWORKING, "ServiceEntry") => {
                let entry_ref = ObjectRef {
                    kind: Kind::ServiceEntry,
                    namespace: Some(namespace.clone()),
                    name: target.name.clone(),
                };
                unit.deps.push(Dep::Object(entry_ref));
                out.extend(entry_targets(context, &namespace, &target.name, section));
            }
            _ => {}
        }
    }
    out
}

/// The Service `<namespace>/<name>` as a target (none if it or its named port is missing).
fn service_target(
    context: &Context<'_>,
    namespace: &str,
    name: &str,
    section: Option<&str>,
) -> Option<(String, u32)> {
    let found = context.snapshot.get(Kind::Service, Some(namespace), name);
    let Some(Object::Service(svc)) = found.map(|l| &l.object) else {
        return None;
    };
    let key = service_key(namespace, &kube_hostname(svc, context.options));
    let Some(section) = section else {
        return Some((key, 0));
    };
    let ports = svc.spec.iter().flat_map(|s| s.ports.iter().flatten());
    let port = ports
        .filter(|p| p.name.as_deref() == Some(section))
        .find_map(|p| u32::try_from(p.port).ok())?;
    Some((key, port))
}

/// Every host of the ServiceEntry `<namespace>/<name>` as a target.
fn entry_targets(
    context: &Context<'_>,
    namespace: &str,
    name: &str,
    section: Option<&str>,
) -> Vec<(String, u32)> {
    let found = context
        .snapshot
        .get(Kind::ServiceEntry, Some(namespace), name);
    let Some(Object::ServiceEntry(entry)) = found.map(|l| &l.object) else {
        return Vec::new();
    };
    let port = match section {
        None => 0,
        Some(section) => {
            let ports = entry.spec.ports.iter().flatten();
            let named = ports.filter(|p| p.name.as_deref() == Some(section));
            match named.map(|p| p.number).next() {
                Some(number) => number,
                None => return Vec::new(),
            }
        }
    };
    let hosts = entry.spec.hosts.iter();
    hosts
        .map(|host| (service_key(namespace, host), port))
        .collect()
}

/// The TLS settings of a policy (service and port left empty). An unusable policy gives
/// settings that refuse every connection, with a warning.
fn settings(
    context: &Context<'_>,
    policy: &BackendTlsPolicy,
    object: &ObjectRef,
    unit: &mut Unit,
) -> BackendTls {
    let validation = &policy.spec.validation;
    let namespace = object.namespace.clone().unwrap_or_default();
    let source = format!("{namespace}/{}", object.name);
    let subject_alt_names = validation
        .subject_alt_names
        .iter()
        .flatten()
        .filter_map(|san| san.hostname.clone().or_else(|| san.uri.clone()))
        .collect();
    let refusing = BackendTls {
        hostname: validation.hostname.clone(),
        subject_alt_names,
        source,
        ..BackendTls::default()
    };
    match trust(context, policy, &namespace, unit) {
        Ok(Trust::System) => BackendTls {
            system_roots: true,
            ..refusing
        },
        Ok(Trust::Bundle(ca_bundle)) => BackendTls {
            ca_bundle,
            ..refusing
        },
        Err(reason) => {
            unit.warnings.push(Warning {
                object: object.clone(),
                message: format!("{reason}; connections to its targets are refused"),
            });
            refusing
        }
    }
}

/// Where a policy's trust anchors come from.
enum Trust {
    System,
    Bundle(String),
}

/// The policy's trust anchors, or why it has none usable (naming the field).
fn trust(
    context: &Context<'_>,
    policy: &BackendTlsPolicy,
    namespace: &str,
    unit: &mut Unit,
) -> Result<Trust, String> {
    let validation = &policy.spec.validation;
    let refs = validation
        .ca_certificate_refs
        .as_deref()
        .unwrap_or_default();
    let well_known = validation.well_known_ca_certificates.as_deref();
    match (refs.is_empty(), well_known) {
        (true, Some("System")) => Ok(Trust::System),
        (true, Some(other)) => Err(format!(
            "spec.validation.wellKnownCACertificates: {other:?} is not supported (only \
             \"System\")"
        )),
        (true, None) => Err("spec.validation: neither caCertificateRefs nor \
                             wellKnownCACertificates is set"
            .to_owned()),
        (false, Some(_)) => Err("spec.validation: caCertificateRefs and \
                                 wellKnownCACertificates are mutually exclusive"
            .to_owned()),
        (false, None) => {
            let mut bundle = String::new();
            for (index, reference) in refs.iter().enumerate() {
                let field = format!("spec.validation.caCertificateRefs[{index}]");
                let reference = (
                    reference.group.as_str(),
                    reference.kind.as_str(),
                    reference.name.as_str(),
                );
                let pem = referenced_ca(context, namespace, reference, unit)
                    .map_err(|reason| format!("{field}: {reason}"))?;
                bundle.push_str(pem.trim_end());
                bundle.push('\n');
            }
            Ok(Trust::Bundle(bundle))
        }
    }
}

/// The PEM bundle of a referenced ConfigMap (`ca.crt`) or ClusterTrustBundle (a dependency
/// is recorded even when it is missing).
fn referenced_ca(
    context: &Context<'_>,
    namespace: &str,
    (group, kind, name): (&str, &str, &str),
    unit: &mut Unit,
) -> Result<String, String> {
    let reference = CaRef {
        group,
        kind,
        name,
        namespace: None,
    };
    if let Some(object) = ca_ref_object(namespace, &reference) {
        unit.deps.push(Dep::Object(object));
    }
    let from = GrantFrom {
        kind: Kind::BackendTlsPolicy,
        namespace,
    };
    resolve_ca_ref(context.snapshot, &from, &reference).map_err(|e| e.to_string())
}
