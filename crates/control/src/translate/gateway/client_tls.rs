//! A Gateway's `spec.tls` in wire form: the client certificate validation of its HTTPS
//! listeners (`spec.tls.frontend`, per port) and the client certificate it presents to
//! BackendTLSPolicy backends (`spec.tls.backend.clientCertificateRef`).
//!
//! The rules (which validation a listener gets, which references are usable and why not)
//! are `weft_api::gateway_status::gateway_tls`'s, so the resource and the status agree.
//! Every referenced ConfigMap, ClusterTrustBundle and Secret is recorded as a dependency,
//! present or not, so creating or editing it re-translates the gateway.
//!
//! **Fails closed.** An HTTPS listener whose validation has no usable CA is left out (its
//! clients are never served without the check they were promised); a listener keeps the
//! usable references when only some fail, with a warning for the others.

use weft_api::ObjectRef;
use weft_api::ca_refs::ca_ref_object;
use weft_api::gateway::{Gateway as ApiGateway, GatewayListeners};
use weft_api::gateway_status::{
    backend_client_certificate_ref, frontend_validation, resolve_frontend_cas,
};
use weft_proto::l7::{BackendTls, Certificate, ClientValidation};

use super::super::Warning;
use super::super::context::{Context, Dep, Unit};
use super::listeners::{CertificateRef, certificate};

/// The validation of the HTTPS listener `spec`: `Ok(None)` when none applies, `Err(())`
/// (with a warning) when it applies but no CA is usable.
pub(super) fn client_validation(
    context: &Context<'_>,
    gateway_ref: &ObjectRef,
    gateway: &ApiGateway,
    spec: &GatewayListeners,
    unit: &mut Unit,
) -> Result<Option<ClientValidation>, ()> {
    let Some(validation) = frontend_validation(gateway, spec) else {
        return Ok(None);
    };
    let namespace = gateway_ref.namespace.as_deref().unwrap_or_default();
    for reference in &validation.refs {
        if let Some(object) = ca_ref_object(namespace, reference) {
            unit.deps.push(Dep::Object(object));
        }
    }
    let (ca_bundle, errors) = resolve_frontend_cas(context.snapshot, namespace, &validation);
    let mut warn = |message: String| {
        let object = gateway_ref.clone();
        unit.warnings.push(Warning { object, message });
    };
    for (index, error) in errors {
        warn(format!(
            "listener {}: {}.caCertificateRefs[{index}]: {}: {error}; this CA is not used",
            spec.name,
            validation.field,
            error.reason()
        ));
    }
    if ca_bundle.is_empty() {
        warn(format!(
            "listener {}: NoValidCACertificate: {} has no usable CA; the listener is not served",
            spec.name, validation.field
        ));
        return Err(());
    }
    Ok(Some(ClientValidation {
        ca_bundle,
        allow_insecure_fallback: validation.insecure_fallback,
        source: validation.field,
    }))
}

/// Adds the Gateway's backend client certificate, if it names a usable one, to every
/// backend TLS entry; an unusable one is warned about and no certificate is presented.
pub(super) fn add_backend_client_certificate(
    context: &Context<'_>,
    gateway_ref: &ObjectRef,
    gateway: &ApiGateway,
    entries: &mut [BackendTls],
    unit: &mut Unit,
) {
    let Some(reference) = backend_client_certificate_ref(gateway) else {
        return;
    };
    let gateway_namespace = gateway_ref.namespace.as_deref().unwrap_or_default();
    let target = CertificateRef {
        group: reference.group.as_deref().unwrap_or_default(),
        kind: reference.kind.as_deref().unwrap_or("Secret"),
        namespace: reference.namespace.as_deref().unwrap_or(gateway_namespace),
        name: &reference.name,
    };
    match certificate(context, gateway_ref, &target, unit) {
        Ok(client) => {
            for entry in entries {
                entry.client_certificate = Some(client.clone());
            }
        }
        Err(reason) => {
            let reason = reason.replacen("InvalidCertificateRef", "InvalidClientCertificateRef", 1);
            unit.warnings.push(Warning {
                object: gateway_ref.clone(),
                message: format!(
                    "spec.tls.backend.clientCertificateRef: {reason}; no client certificate is \
                     presented to backends"
                ),
            });
        }
    }
}

/// Replaces the private key of every certificate of a backend TLS entry (debug output).
pub(super) fn redact_backend_client_certificates(entries: &mut [BackendTls]) {
    let certificates = entries
        .iter_mut()
        .filter_map(|e| e.client_certificate.as_mut());
    certificates.for_each(redact);
}

/// Replaces a certificate's private key by `<redacted>`.
pub(super) fn redact(certificate: &mut Certificate) {
    if !certificate.private_key.is_empty() {
        certificate.private_key = "<redacted>".to_owned();
    }
}
