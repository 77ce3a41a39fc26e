//! One Gateway's listeners as the status sees them: protocol and route kinds (`Accepted`,
//! `ResolvedRefs`/`InvalidRouteKinds`), conflicts on a shared port (`Conflicted`), TLS
//! certificate references (`ResolvedRefs`/`InvalidCertificateRef`/`RefNotPermitted`), the
//! Gateway's frontend client validation of HTTPS listeners (`ResolvedRefs` with the CA
//! reference reasons, `Accepted`/`NoValidCACertificate`), and which namespaces may attach
//! routes.

use super::AUTO_CERTIFICATE;
use super::certificates::check_certificates;
use super::gateway_tls::check_frontend;
use crate::gateway::{Gateway, GatewayListeners};
use crate::object::Kind;
use crate::routes::GATEWAY_GROUP;
use crate::snapshot::ConfigSnapshot;
use gateway_api::gateways::{
    GatewayListenersAllowedRoutesNamespacesFrom as From, GatewayListenersTlsMode,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

/// A condition that is not as it should be: reason and message.
pub(crate) type Problem = (&'static str, String);

/// What the status computation decided about one listener.
#[derive(Debug)]
pub(crate) struct ListenerEval<'g> {
    pub listener: &'g GatewayListeners,
    /// `Err` when the protocol (or protocol + TLS mode) is not supported.
    pub protocol: Result<(), Problem>,
    /// Route kinds that may attach.
    pub kinds: Vec<Kind>,
    /// `allowedRoutes.kinds` entries that are not valid for the protocol.
    pub invalid_kinds: Vec<String>,
    /// Set when an earlier listener on the same port conflicts with this one.
    pub conflict: Option<Problem>,
    /// Certificate reference problems.
    pub certificate_problems: Vec<Problem>,
    /// Whether the listener has a certificate to serve with (or needs none).
    pub has_certificate: bool,
    /// Set when the frontend validation it must apply has no usable CA (not Accepted).
    pub no_valid_ca: Option<Problem>,
}

impl ListenerEval<'_> {
    /// Accepted and not conflicted: routes may attach.
    pub(crate) fn attachable(&self) -> bool {
        self.protocol.is_ok() && self.no_valid_ca.is_none() && self.conflict.is_none()
    }

    /// Attachable and able to serve (a terminating listener has a certificate).
    pub(crate) fn programmed(&self) -> bool {
        self.attachable() && self.has_certificate
    }

    /// A listener of a known protocol, not conflicted, that cannot serve (no usable
    /// certificate or client CA): its hostname must still be claimed on the gateway, so that
    /// a less specific listener of the port never answers for it.
    pub(crate) fn fails_closed(&self) -> bool {
        self.protocol.is_ok() && self.conflict.is_none() && !self.programmed()
    }
}

/// Whether a listener terminates TLS (HTTPS, or TLS in Terminate mode).
#[must_use]
pub fn terminates_tls(listener: &GatewayListeners) -> bool {
    let passthrough = listener
        .tls
        .as_ref()
        .and_then(|t| t.mode.as_ref())
        .is_some_and(|m| matches!(m, GatewayListenersTlsMode::Passthrough));
    matches!(listener.protocol.as_str(), "HTTPS" | "TLS") && !passthrough
}

/// Whether the listener gets its serving certificate from weft's CA: its
/// `tls.options["weft.dev/auto-certificate"]` is `"true"`, or the Gateway carries that
/// annotation and the listener terminates TLS without `certificateRefs`.
#[must_use]
pub fn auto_certificate(gateway: &Gateway, listener: &GatewayListeners) -> bool {
    let tls = listener.tls.as_ref();
    let option = tls
        .and_then(|t| t.options.as_ref())
        .and_then(|o| o.get(AUTO_CERTIFICATE));
    let annotation = gateway
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(AUTO_CERTIFICATE));
    let no_refs = tls
        .and_then(|t| t.certificate_refs.as_ref())
        .is_none_or(Vec::is_empty);
    terminates_tls(listener)
        && (option.is_some_and(|v| v == "true")
            || (no_refs && annotation.is_some_and(|v| v == "true")))
}

/// The route kinds a protocol carries, or why the protocol is not supported.
fn protocol_kinds(listener: &GatewayListeners) -> Result<Vec<Kind>, Problem> {
    let passthrough = !terminates_tls(listener);
    match listener.protocol.as_str() {
        "HTTP" => Ok(vec![Kind::HttpRoute, Kind::GrpcRoute]),
        "HTTPS" if passthrough => Err((
            "UnsupportedProtocol",
            "protocol HTTPS requires tls.mode Terminate; for TLS passthrough use protocol TLS with TLSRoutes".to_owned(),
        )),
        "HTTPS" => Ok(vec![Kind::HttpRoute, Kind::GrpcRoute]),
        "TLS" if passthrough => Ok(vec![Kind::TlsRoute]),
        "TLS" => Ok(vec![Kind::TlsRoute, Kind::TcpRoute]),
        "TCP" => Ok(vec![Kind::TcpRoute]),
        other => Err((
            "UnsupportedProtocol",
            format!("protocol {other} is not supported by weft's gateway (HTTP, HTTPS, TLS, TCP are)"),
        )),
    }
}

/// The protocol family that may share a port: HTTP alone, HTTPS with TLS (told apart by
/// SNI), TCP alone.
fn port_family(protocol: &str) -> &str {
    match protocol {
        "HTTPS" | "TLS" => "TLS",
        other => other,
    }
}

/// Evaluates the listeners of `gateway` (namespace `namespace`) in merge order:
/// `listeners` are the Gateway's own (in `namespace`) followed by those of the ListenerSets
/// it takes, each with the kind and namespace of the object declaring it (certificates
/// resolve in that namespace, and a ReferenceGrant across namespaces must name that kind).
pub(crate) fn evaluate<'g, 'n>(
    snapshot: &ConfigSnapshot,
    gateway: &Gateway,
    namespace: &str,
    listeners: impl Iterator<Item = (&'g GatewayListeners, (Kind, &'n str))>,
) -> Vec<ListenerEval<'g>> {
    let mut evals: Vec<ListenerEval<'g>> = Vec::new();
    for (listener, owner) in listeners {
        let protocol = protocol_kinds(listener);
        let (kinds, invalid_kinds) = match &protocol {
            Ok(allowed) => allowed_kinds(listener, allowed),
            Err(_) => (Vec::new(), Vec::new()),
        };
        let conflict = protocol
            .is_ok()
            .then(|| conflict_with(&evals, listener))
            .flatten();
        let (mut certificate_problems, has_certificate) = if terminates_tls(listener) {
            check_certificates(snapshot, gateway, owner, listener)
        } else {
            (Vec::new(), true)
        };
        let frontend = check_frontend(snapshot, gateway, namespace, listener);
        certificate_problems.extend(frontend.problems);
        evals.push(ListenerEval {
            listener,
            protocol: protocol.map(|_| ()),
            kinds,
            invalid_kinds,
            conflict,
            certificate_problems,
            has_certificate,
            no_valid_ca: frontend.no_valid_ca,
        });
    }
    evals
}

/// `allowedRoutes.kinds` split into the kinds the protocol carries and the others; unset or
/// empty means every kind of the protocol.
fn allowed_kinds(listener: &GatewayListeners, protocol: &[Kind]) -> (Vec<Kind>, Vec<String>) {
    let listed = listener
        .allowed_routes
        .as_ref()
        .and_then(|a| a.kinds.as_ref())
        .filter(|k| !k.is_empty());
    let Some(listed) = listed else {
        return (protocol.to_vec(), Vec::new());
    };
    let mut kinds = Vec::new();
    let mut invalid = Vec::new();
    for entry in listed {
        let group = entry.group.as_deref().unwrap_or(GATEWAY_GROUP);
        let found = protocol
            .iter()
            .find(|k| group == GATEWAY_GROUP && k.name() == entry.kind);
        match found {
            Some(kind) if !kinds.contains(kind) => kinds.push(*kind),
            Some(_) => {}
            None => invalid.push(format!("{group}/{}", entry.kind)),
        }
    }
    (kinds, invalid)
}

/// The conflict between `listener` and an earlier, unconflicted listener on its port.
fn conflict_with(earlier: &[ListenerEval<'_>], listener: &GatewayListeners) -> Option<Problem> {
    let hostname = listener.hostname.as_deref().unwrap_or("");
    earlier
        .iter()
        .filter(|e| e.attachable() && e.listener.port == listener.port)
        .find_map(|e| {
            let other = e.listener;
            if port_family(&other.protocol) != port_family(&listener.protocol) {
                Some((
                    "ProtocolConflict",
                    format!(
                        "port {} is already used by listener {} with protocol {}, which cannot share it with {}",
                        listener.port, other.name, other.protocol, listener.protocol
                    ),
                ))
            } else if other.hostname.as_deref().unwrap_or("") == hostname {
                let shown = if hostname.is_empty() { "(any)" } else { hostname };
                Some((
                    "HostnameConflict",
                    format!(
                        "listener {} already serves hostname {shown} on port {}",
                        other.name, listener.port
                    ),
                ))
            } else {
                None
            }
        })
}

/// Whether routes from `route_namespace` may attach to `listener` of a Gateway in
/// `gateway_namespace` (`allowedRoutes.namespaces`; Same by default). A namespace's labels
/// always include `kubernetes.io/metadata.name`.
pub(crate) fn namespace_allowed(
    snapshot: &ConfigSnapshot,
    listener: &GatewayListeners,
    gateway_namespace: &str,
    route_namespace: &str,
) -> bool {
    let namespaces = listener
        .allowed_routes
        .as_ref()
        .and_then(|a| a.namespaces.as_ref());
    match namespaces.and_then(|n| n.from.as_ref()) {
        Some(From::All) => true,
        Some(From::Selector) => {
            namespaces
                .and_then(|n| n.selector.as_ref())
                .is_some_and(|selector| {
                    let selector = LabelSelector {
                        match_labels: selector.match_labels.clone(),
                        match_expressions: selector.match_expressions.as_ref().map(|list| {
                            list.iter()
                                .map(|e| LabelSelectorRequirement {
                                    key: e.key.clone(),
                                    operator: e.operator.clone(),
                                    values: e.values.clone(),
                                })
                                .collect()
                        }),
                    };
                    let mut labels = snapshot.namespace_labels(route_namespace);
                    labels.insert(
                        "kubernetes.io/metadata.name".to_owned(),
                        route_namespace.to_owned(),
                    );
                    crate::selector::label_selector_matches(&selector, &labels)
                })
        }
        Some(From::Same) | None => gateway_namespace == route_namespace,
    }
}
