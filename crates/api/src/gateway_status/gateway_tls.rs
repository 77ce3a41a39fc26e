//! A Gateway's `spec.tls`: frontend (client) certificate validation of its HTTPS listeners
//! and the client certificate it presents to backends.
//!
//! - `spec.tls.frontend.default.validation` applies to every HTTPS listener, unless
//!   `spec.tls.frontend.perPort[]` has an entry for the listener's port, which replaces it
//!   there. Its `caCertificateRefs` name ConfigMaps (`ca.crt`) or ClusterTrustBundles
//!   ([`crate::ca_refs`]); `mode` is `AllowValidOnly` (default) or `AllowInsecureFallback`.
//!   A bad reference makes the listener's `ResolvedRefs` False (`InvalidCACertificateRef`,
//!   `InvalidCACertificateKind`, `RefNotPermitted`); when none is usable the listener is
//!   `Accepted=False` with `NoValidCACertificate` and is not served (never served without
//!   the validation asked for).
//! - `spec.tls.backend.clientCertificateRef` names a `kubernetes.io/tls` Secret; a bad one
//!   makes the Gateway's `ResolvedRefs` False (`InvalidClientCertificateRef`,
//!   `RefNotPermitted`).
//!
//! This is the current (v1.4+) layout; the older experimental
//! `listeners[].tls.frontendValidation` is not read (`weft validate` reports it as an
//! unknown field).

use super::certificates::{CertificateTarget, check_reference};
use super::listeners::Problem;
use crate::ca_refs::{CaRef, ca_ref_object, resolve_ca_refs};
use crate::gateway::{Gateway, GatewayListeners};
use crate::object::{Kind, ObjectRef};
use crate::routes::GrantFrom;
use crate::snapshot::ConfigSnapshot;
use gateway_api::gateways::{
    GatewayTlsFrontendDefaultValidationMode as DefaultMode,
    GatewayTlsFrontendPerPortTlsValidationMode as PerPortMode,
};

/// The client certificate validation that applies to one HTTPS listener.
#[derive(Debug, Clone)]
pub struct FrontendValidation<'g> {
    /// Where it is written: `spec.tls.frontend.default.validation` or
    /// `spec.tls.frontend.perPort[i].tls.validation`.
    pub field: String,
    /// Its `caCertificateRefs`.
    pub refs: Vec<CaRef<'g>>,
    /// `mode: AllowInsecureFallback`.
    pub insecure_fallback: bool,
}

/// The validation for `listener` of `gateway`: its port's `perPort` entry, else the
/// default; `None` for a listener that does not serve HTTPS or when none is configured.
#[must_use]
pub fn frontend_validation<'g>(
    gateway: &'g Gateway,
    listener: &GatewayListeners,
) -> Option<FrontendValidation<'g>> {
    if listener.protocol != "HTTPS" {
        return None;
    }
    let frontend = gateway.spec.tls.as_ref()?.frontend.as_ref()?;
    let per_port = frontend.per_port.iter().flatten().enumerate();
    let overridden = per_port.clone().find(|(_, p)| p.port == listener.port);
    if let Some((index, entry)) = overridden {
        let validation = entry.tls.validation.as_ref()?;
        let refs = validation.ca_certificate_refs.iter();
        return Some(FrontendValidation {
            field: format!("spec.tls.frontend.perPort[{index}].tls.validation"),
            refs: refs
                .map(|r| ca_ref(&r.group, &r.kind, &r.name, r.namespace.as_deref()))
                .collect(),
            insecure_fallback: matches!(validation.mode, Some(PerPortMode::AllowInsecureFallback)),
        });
    }
    let validation = frontend.default.validation.as_ref()?;
    let refs = validation.ca_certificate_refs.iter();
    Some(FrontendValidation {
        field: "spec.tls.frontend.default.validation".to_owned(),
        refs: refs
            .map(|r| ca_ref(&r.group, &r.kind, &r.name, r.namespace.as_deref()))
            .collect(),
        insecure_fallback: matches!(validation.mode, Some(DefaultMode::AllowInsecureFallback)),
    })
}

fn ca_ref<'g>(
    group: &'g str,
    kind: &'g str,
    name: &'g str,
    namespace: Option<&'g str>,
) -> CaRef<'g> {
    CaRef {
        group,
        kind,
        name,
        namespace,
    }
}

/// What the frontend validation of one listener resolves to.
#[derive(Debug, Default)]
pub(crate) struct FrontendCheck {
    /// Each bad reference (`ResolvedRefs` False).
    pub problems: Vec<Problem>,
    /// Set when validation is configured and no reference is usable (`Accepted` False).
    pub no_valid_ca: Option<Problem>,
}

/// Checks the frontend validation of `listener` (namespace `namespace`).
pub(crate) fn check_frontend(
    snapshot: &ConfigSnapshot,
    gateway: &Gateway,
    namespace: &str,
    listener: &GatewayListeners,
) -> FrontendCheck {
    let Some(validation) = frontend_validation(gateway, listener) else {
        return FrontendCheck::default();
    };
    let (bundle, errors) = resolve_frontend_cas(snapshot, namespace, &validation);
    let problems = errors
        .iter()
        .map(|(index, error)| {
            let message = format!(
                "{}.caCertificateRefs[{index}]: {}",
                validation.field,
                error.message()
            );
            (error.reason(), message)
        })
        .collect();
    let no_valid_ca = bundle.is_empty().then(|| {
        let message = format!(
            "listener {}: no usable CA certificate in {}.caCertificateRefs; the listener is not \
             served",
            listener.name, validation.field
        );
        ("NoValidCACertificate", message)
    });
    FrontendCheck {
        problems,
        no_valid_ca,
    }
}

/// The joined PEM bundle of a validation's references (Gateways of `namespace` refer) and
/// the errors by reference index.
#[must_use]
pub fn resolve_frontend_cas(
    snapshot: &ConfigSnapshot,
    namespace: &str,
    validation: &FrontendValidation<'_>,
) -> (String, Vec<(usize, crate::ca_refs::CaRefError)>) {
    let from = GrantFrom {
        kind: Kind::Gateway,
        namespace,
    };
    resolve_ca_refs(snapshot, &from, &validation.refs)
}

/// The Gateway's `spec.tls.backend.clientCertificateRef` problem, if it has one
/// (`None` when unset or usable); `Some(Ok(()))` when set and usable.
pub(crate) fn check_backend_client_certificate(
    snapshot: &ConfigSnapshot,
    gateway: &Gateway,
    namespace: &str,
) -> Option<Result<(), Problem>> {
    let reference = backend_client_certificate_ref(gateway)?;
    let target = CertificateTarget {
        group: reference.group.as_deref().unwrap_or(""),
        kind: reference.kind.as_deref().unwrap_or("Secret"),
        namespace: reference.namespace.as_deref().unwrap_or(namespace),
        name: &reference.name,
    };
    Some(
        check_reference(snapshot, (Kind::Gateway, namespace), &target).map_err(
            |(reason, message)| {
                let reason = match reason {
                    "RefNotPermitted" => reason,
                    _ => "InvalidClientCertificateRef",
                };
                (
                    reason,
                    format!("spec.tls.backend.clientCertificateRef: {message}"),
                )
            },
        ),
    )
}

/// `spec.tls.backend.clientCertificateRef`, if set.
#[must_use]
pub fn backend_client_certificate_ref(
    gateway: &Gateway,
) -> Option<&gateway_api::gateways::GatewayTlsBackendClientCertificateRef> {
    let backend = gateway.spec.tls.as_ref()?.backend.as_ref()?;
    backend.client_certificate_ref.as_ref()
}

/// Every object a Gateway's TLS settings name, present or not: the Secrets of its
/// listeners' `certificateRefs` and of `spec.tls.backend.clientCertificateRef`, and the
/// ConfigMaps and ClusterTrustBundles of its frontend validation. Translation must follow
/// them, and a source of objects (the Kubernetes API) must watch their kinds.
#[must_use]
pub fn tls_references(gateway: &Gateway, namespace: &str) -> Vec<ObjectRef> {
    let secret = |name: &str, ns: Option<&str>| ObjectRef {
        kind: Kind::Secret,
        namespace: Some(ns.unwrap_or(namespace).to_owned()),
        name: name.to_owned(),
    };
    let mut out = Vec::new();
    for listener in &gateway.spec.listeners {
        let refs = listener.tls.iter();
        let refs = refs.flat_map(|t| t.certificate_refs.iter().flatten());
        let secrets = refs.filter(|r| r.kind.as_deref().unwrap_or("Secret") == "Secret");
        out.extend(secrets.map(|r| secret(&r.name, r.namespace.as_deref())));
        if let Some(validation) = frontend_validation(gateway, listener) {
            let cas = validation.refs.iter();
            out.extend(cas.filter_map(|r| ca_ref_object(namespace, r)));
        }
    }
    if let Some(reference) = backend_client_certificate_ref(gateway) {
        out.push(secret(&reference.name, reference.namespace.as_deref()));
    }
    out.sort();
    out.dedup();
    out
}
