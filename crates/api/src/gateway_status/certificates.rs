//! A terminating listener's `tls.certificateRefs`: each must be a core `Secret` of type
//! `kubernetes.io/tls` whose `tls.crt` holds a PEM certificate chain and `tls.key` a PEM
//! private key (`data`, base64, or `stringData`); a Secret in another namespace needs a
//! `ReferenceGrant` there from the kind declaring the listener (`Gateway`, `ListenerSet` or
//! `XListenerSet`, GEP-1713: a grant to one does not reach the other) in its namespace.

use super::listeners::{Problem, auto_certificate};
use crate::gateway::{Gateway, GatewayListeners};
use crate::object::{Kind, Object};
use crate::routes::{GrantFrom, GrantTo, reference_grant_allows};
use crate::snapshot::ConfigSnapshot;
use k8s_openapi::api::core::v1::Secret;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Secret type a certificate reference must have.
pub const TLS_SECRET_TYPE: &str = "kubernetes.io/tls";

/// The problems of a listener's certificate references, and whether at least one usable
/// certificate (or an auto-certificate) remains; `owner` is the kind and namespace of the
/// object declaring the listener.
pub(crate) fn check_certificates(
    snapshot: &ConfigSnapshot,
    gateway: &Gateway,
    owner: (Kind, &str),
    listener: &GatewayListeners,
) -> (Vec<Problem>, bool) {
    let namespace = owner.1;
    let refs = listener
        .tls
        .as_ref()
        .and_then(|t| t.certificate_refs.as_deref())
        .unwrap_or_default();
    let auto = auto_certificate(gateway, listener);
    if refs.is_empty() && !auto {
        let message = format!(
            "listener {} terminates TLS but has no tls.certificateRefs (nor tls.options {}: \"true\")",
            listener.name,
            super::AUTO_CERTIFICATE
        );
        return (vec![("InvalidCertificateRef", message)], false);
    }
    let mut problems = Vec::new();
    let mut usable = auto;
    for (index, reference) in refs.iter().enumerate() {
        let target = CertificateTarget {
            group: reference.group.as_deref().unwrap_or(""),
            kind: reference.kind.as_deref().unwrap_or("Secret"),
            namespace: reference.namespace.as_deref().unwrap_or(namespace),
            name: &reference.name,
        };
        match check_reference(snapshot, owner, &target) {
            Ok(()) => usable = true,
            Err((reason, message)) => {
                problems.push((reason, format!("tls.certificateRefs[{index}]: {message}")));
            }
        }
    }
    (problems, usable)
}

/// A Secret reference with the spec's defaults filled in.
pub(super) struct CertificateTarget<'a> {
    pub group: &'a str,
    pub kind: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
}

/// Whether the object `owner` (kind, namespace: a Gateway or a ListenerSet) may use the
/// Secret `target` names as a certificate: kind, ReferenceGrant, type and PEM content.
pub(super) fn check_reference(
    snapshot: &ConfigSnapshot,
    (owner, owner_namespace): (Kind, &str),
    target: &CertificateTarget<'_>,
) -> Result<(), Problem> {
    let what = format!("{} {}/{}", target.kind, target.namespace, target.name);
    if !matches!(target.group, "" | "core") || target.kind != "Secret" {
        return Err((
            "InvalidCertificateRef",
            format!("{what} (group {:?}) is not a core Secret", target.group),
        ));
    }
    if target.namespace != owner_namespace {
        let from = GrantFrom {
            kind: owner,
            namespace: owner_namespace,
        };
        let to = GrantTo {
            namespace: target.namespace,
            group: "",
            kind: "Secret",
            name: target.name,
        };
        if !reference_grant_allows(snapshot, &from, &to) {
            let message = format!(
                "{what} is in another namespace and no ReferenceGrant in {} allows {owner}s ({}) from namespace {owner_namespace} to use it",
                target.namespace,
                owner.group()
            );
            return Err(("RefNotPermitted", message));
        }
    }
    let Some(Object::Secret(secret)) = snapshot
        .get(Kind::Secret, Some(target.namespace), target.name)
        .map(|l| &l.object)
    else {
        return Err(("InvalidCertificateRef", format!("{what} does not exist")));
    };
    check_secret(secret).map_err(|why| ("InvalidCertificateRef", format!("{what}: {why}")))
}

/// Whether a Secret holds a usable PEM certificate chain and private key.
fn check_secret(secret: &Secret) -> Result<(), String> {
    let type_ = secret.type_.as_deref().unwrap_or("Opaque");
    if type_ != TLS_SECRET_TYPE {
        return Err(format!("type is {type_}, not {TLS_SECRET_TYPE}"));
    }
    let certificate = secret_value(secret, "tls.crt").ok_or("tls.crt is missing")?;
    let key = secret_value(secret, "tls.key").ok_or("tls.key is missing")?;
    let chain: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&certificate).collect();
    if chain.map_or(true, |c| c.is_empty()) {
        return Err("tls.crt holds no PEM certificate".to_owned());
    }
    PrivateKeyDer::from_pem_slice(&key).map_err(|_| "tls.key holds no PEM private key")?;
    Ok(())
}

/// A Secret value from `data` (already decoded) or `stringData`.
#[must_use]
pub fn secret_value(secret: &Secret, key: &str) -> Option<Vec<u8>> {
    let data = secret.data.as_ref().and_then(|d| d.get(key));
    let text = secret.string_data.as_ref().and_then(|d| d.get(key));
    data.map(|b| b.0.clone())
        .or_else(|| text.map(|t| t.as_bytes().to_vec()))
        .filter(|v| !v.is_empty())
}
