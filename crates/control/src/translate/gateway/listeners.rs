//! A Gateway listener in wire form: protocol, port, hostname, TLS mode and the serving
//! certificates of a terminating listener.
//!
//! Certificates come from `certificateRefs` to Secrets (group `""`, kind `Secret`) of type
//! `kubernetes.io/tls` with PEM `tls.crt` and `tls.key` (in `data`, or `stringData`), in
//! the Gateway's namespace or in another one whose ReferenceGrant lets the Gateway's
//! namespace use them. A reference that cannot be used is skipped with a warning; a
//! terminating listener left with no certificate is left out (its port is not served
//! rather than served without TLS).
//!
//! `weft.dev/auto-certificate: "true"` asks weft's CA for the listener's certificate
//! instead: as a listener's `tls.options` entry (that listener), or as a Gateway
//! annotation (every terminating listener without certificateRefs).
//!
//! An HTTPS listener also carries the client certificate validation of its port
//! ([`super::client_tls`]).

use k8s_openapi::api::core::v1::Secret;
use weft_api::gateway::{Gateway as ApiGateway, GatewayListeners};
use weft_api::gateway_status::{
    AUTO_CERTIFICATE, TLS_SECRET_TYPE, auto_certificate, secret_value, terminates_tls,
};
use weft_api::routes::{GrantFrom, GrantTo, reference_grant_allows};
use weft_api::{Kind, Object, ObjectRef};
use weft_proto::l7::{Certificate, Listener, listener};

use super::super::Warning;
use super::super::context::{Context, Dep, Unit};

/// Who a listener belongs to: `owner` (the Gateway, or the ListenerSet that declares it)
/// resolves its certificates and is named in warnings; the client certificate validation
/// is the Gateway's `spec.tls`, resolved in the Gateway's namespace whoever declares the
/// listener (a ListenerSet cannot choose the CA its port is checked against).
pub(super) struct ListenerOwner<'a> {
    pub owner: &'a ObjectRef,
    pub gateway_ref: &'a ObjectRef,
}

/// The wire listener of `spec` (routes are attached later), or `None` with a warning when
/// it cannot be served.
pub(super) fn listener(
    context: &Context<'_>,
    owners: &ListenerOwner<'_>,
    gateway: &ApiGateway,
    spec: &GatewayListeners,
    unit: &mut Unit,
) -> Option<Listener> {
    let gateway_ref = owners.owner;
    let mut warn = |message: String| {
        let object = gateway_ref.clone();
        unit.warnings.push(Warning { object, message });
    };
    let protocol = match spec.protocol.as_str() {
        "HTTP" => listener::Protocol::Http,
        "HTTPS" => listener::Protocol::Https,
        "TLS" => listener::Protocol::Tls,
        "TCP" => listener::Protocol::Tcp,
        other => {
            warn(format!(
                "listener {}: protocol {other} is not served by weft's gateway; left out",
                spec.name
            ));
            return None;
        }
    };
    let Some(port) = u32::try_from(spec.port)
        .ok()
        .filter(|p| (1..=65535).contains(p))
    else {
        warn(format!(
            "listener {}: port {} is not a port number; left out",
            spec.name, spec.port
        ));
        return None;
    };
    let terminates = terminates_tls(spec);
    let passthrough = matches!(protocol, listener::Protocol::Tls) && !terminates;
    let mut wire = Listener {
        name: spec.name.clone(),
        port,
        protocol: protocol.into(),
        hostname: spec.hostname.clone().unwrap_or_default(),
        tls_mode: if passthrough {
            listener::TlsMode::Passthrough
        } else {
            listener::TlsMode::Terminate
        }
        .into(),
        ..Listener::default()
    };
    let usable = !terminates
        || serving_certificates(context, gateway_ref, gateway, spec, &mut wire, unit).is_some();
    match super::client_tls::client_validation(context, owners.gateway_ref, gateway, spec, unit) {
        Ok(validation) if usable => wire.client_validation = validation,
        Ok(_) => return Some(closed(wire)),
        Err(()) if terminates => return Some(closed(wire)),
        Err(()) => return None,
    }
    Some(wire)
}

/// A terminating listener that cannot be served as configured, sent without certificates:
/// the gateway closes its connections (rather than it being left out, when a wildcard
/// listener of the port would answer for its hostname with its own certificate and routes).
fn closed(wire: Listener) -> Listener {
    Listener {
        certificates: Vec::new(),
        auto_certificate: false,
        client_validation: None,
        ..wire
    }
}

/// Listener `index` of the ListenerSet `set`, merged into `gateway`: certificates resolve
/// in the ListenerSet's namespace, warnings name it, and the wire name
/// `<namespace>/<listener set>/<listener>` keeps it apart from the Gateway's own listeners.
pub(super) fn from_listener_set(
    context: &Context<'_>,
    owners: &ListenerOwner<'_>,
    index: usize,
    gateway: &ApiGateway,
    unit: &mut Unit,
) -> Option<Listener> {
    let set = owners.owner;
    unit.deps.push(Dep::Object(set.clone()));
    let found = context
        .snapshot
        .get(set.kind, set.namespace.as_deref(), &set.name);
    let Some(Object::ListenerSet(listener_set) | Object::XListenerSet(listener_set)) =
        found.map(|l| &l.object)
    else {
        return None;
    };
    let spec = listener_set.spec.listeners.get(index)?;
    let mut wire = listener(context, owners, gateway, spec, unit)?;
    let namespace = set.namespace.as_deref().unwrap_or_default();
    wire.name = format!("{namespace}/{}/{}", set.name, spec.name);
    Some(wire)
}

/// Fills the certificates (or `auto_certificate`) of a terminating listener; `None` when
/// it has neither.
fn serving_certificates(
    context: &Context<'_>,
    gateway_ref: &ObjectRef,
    gateway: &ApiGateway,
    spec: &GatewayListeners,
    wire: &mut Listener,
    unit: &mut Unit,
) -> Option<()> {
    let tls = spec.tls.as_ref();
    let refs: Vec<_> = tls
        .iter()
        .flat_map(|t| t.certificate_refs.iter().flatten())
        .collect();
    if auto_certificate(gateway, spec) {
        if !refs.is_empty() {
            unit.warnings.push(Warning {
                object: gateway_ref.clone(),
                message: format!(
                    "listener {}: tls.options {AUTO_CERTIFICATE} is \"true\": its \
                     certificateRefs are ignored, weft's CA issues the certificate",
                    spec.name
                ),
            });
        }
        wire.auto_certificate = true;
        return Some(());
    }
    for (index, reference) in refs.into_iter().enumerate() {
        let at = format!("listener {}: tls.certificateRefs[{index}]", spec.name);
        let namespace = reference.namespace.as_deref();
        let target = CertificateRef {
            group: reference.group.as_deref().unwrap_or_default(),
            kind: reference.kind.as_deref().unwrap_or("Secret"),
            namespace: namespace.unwrap_or(gateway_ref.namespace.as_deref().unwrap_or_default()),
            name: &reference.name,
        };
        match certificate(context, gateway_ref, &target, unit) {
            Ok(certificate) => wire.certificates.push(certificate),
            Err(reason) => unit.warnings.push(Warning {
                object: gateway_ref.clone(),
                message: format!("{at}: {reason}; this certificate is not served"),
            }),
        }
    }
    if wire.certificates.is_empty() {
        unit.warnings.push(Warning {
            object: gateway_ref.clone(),
            message: format!(
                "listener {}: no usable serving certificate (certificateRefs, or tls.options \
                 {AUTO_CERTIFICATE}: \"true\"); the listener is not served",
                spec.name
            ),
        });
        return None;
    }
    Some(())
}

/// A certificateRef with the spec's defaults filled in.
pub(super) struct CertificateRef<'a> {
    pub group: &'a str,
    pub kind: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
}

/// The certificate and key of the Secret `target` names, or why it cannot be used.
pub(super) fn certificate(
    context: &Context<'_>,
    gateway_ref: &ObjectRef,
    target: &CertificateRef<'_>,
    unit: &mut Unit,
) -> Result<Certificate, String> {
    let what = format!("Secret {}/{}", target.namespace, target.name);
    if !matches!(target.group, "" | "core") || target.kind != "Secret" {
        return Err(format!(
            "InvalidCertificateRef: {} {}/{} (group {:?}) is not a Secret",
            target.kind, target.namespace, target.name, target.group
        ));
    }
    let gateway_namespace = gateway_ref.namespace.as_deref().unwrap_or_default();
    if target.namespace != gateway_namespace {
        // the kind declaring the listener: a ListenerSet needs a grant of its own
        let from = GrantFrom {
            kind: gateway_ref.kind,
            namespace: gateway_namespace,
        };
        let to = GrantTo {
            namespace: target.namespace,
            group: "",
            kind: "Secret",
            name: target.name,
        };
        if !reference_grant_allows(context.snapshot, &from, &to) {
            return Err(format!(
                "RefNotPermitted: {what} is in another namespace and no ReferenceGrant there \
                 allows {}s of {gateway_namespace} to use it",
                gateway_ref.kind
            ));
        }
    }
    let object = ObjectRef {
        kind: Kind::Secret,
        namespace: Some(target.namespace.to_owned()),
        name: target.name.to_owned(),
    };
    unit.deps.push(Dep::Object(object));
    let found = context
        .snapshot
        .get(Kind::Secret, Some(target.namespace), target.name);
    let Some(Object::Secret(secret)) = found.map(|l| &l.object) else {
        return Err(format!("InvalidCertificateRef: {what} does not exist"));
    };
    let (cert_chain, private_key) =
        tls_pair(secret).map_err(|reason| format!("InvalidCertificateRef: {what}: {reason}"))?;
    Ok(Certificate {
        source: format!("{}/{}", target.namespace, target.name),
        cert_chain,
        private_key,
    })
}

/// `tls.crt` and `tls.key` of a `kubernetes.io/tls` Secret, as PEM text.
fn tls_pair(secret: &Secret) -> Result<(String, String), String> {
    let kind = secret.type_.as_deref().unwrap_or("Opaque");
    if kind != TLS_SECRET_TYPE {
        return Err(format!("type is {kind}, not {TLS_SECRET_TYPE}"));
    }
    let cert = pem_field(secret, "tls.crt", "CERTIFICATE")?;
    let key = pem_field(secret, "tls.key", "PRIVATE KEY")?;
    Ok((cert, key))
}

/// One PEM field of a Secret, checked to hold a block whose label ends with `label`.
fn pem_field(secret: &Secret, field: &str, label: &str) -> Result<String, String> {
    let bytes = secret_value(secret, field).ok_or_else(|| format!("{field} is missing"))?;
    let text = String::from_utf8(bytes).map_err(|_| format!("{field} is not PEM text"))?;
    let end = format!("{label}-----");
    let has_block = text
        .lines()
        .any(|line| line.starts_with("-----BEGIN ") && line.trim_end().ends_with(&end));
    if !has_block {
        return Err(format!("{field} holds no PEM {label} block"));
    }
    Ok(text)
}
