//! `weft.l7.v1.Gateway`: one resource per Gateway of a class weft runs as an ingress or
//! egress gateway (controller `weft.dev/gateway` or `istio.io/gateway-controller`, see
//! `weft_api::gateway_status::gateway_controller`), named `<namespace>/<gateway name>`.
//!
//! - `listeners`: only the listeners the status computation Accepts (the Gateway's own and
//!   those of the ListenerSets it takes, named `<namespace>/<listener set>/<listener>`), each with its
//!   serving certificates ([`listeners`]) and the routes attached to it exactly as
//!   `weft_api::gateway_status::attach` decides, so the resource and the status users read
//!   never disagree ([`routes`]);
//! - `policies` / `jwt_rules`: AuthorizationPolicies and RequestAuthentications whose
//!   targetRefs name the Gateway (or its GatewayClass, from the root namespace);
//! - `trusted_hops`: `numTrustedProxies` of the `proxy.istio.io/config` annotation;
//! - `backend_tls`: BackendTLSPolicies of every backend service the gateway uses.
//!
//! **Visibility.** The resource carries private keys, so it is restricted
//! ([`super::Resource::restricted_to`]) to the node proxies of the nodes where a pod of
//! the gateway runs (label `gateway.networking.k8s.io/gateway-name: <gateway>` in its
//! namespace) and to the gateway's own identity, `spiffe://<td>/ns/<ns>/sa/<gw>-<class>`
//! (the service account Istio's deployment controller gives the gateway's deployment).
//!
//! Dependencies: the Gateway, its GatewayClass, the Secrets, CA ConfigMaps and
//! ClusterTrustBundles its TLS settings name (`gateway_status::tls_references`), the routes it uses, every
//! backend Service looked up and the attached policies; [`affected_gateways`] names the
//! gateways an edited object concerns now, and every gateway is re-translated when pods
//! change (its readers follow its pods).

mod client_tls;
mod listeners;
mod routes;

use std::collections::BTreeSet;

use weft_api::gateway::{Gateway as ApiGateway, WAYPOINT_CLASS};
pub use weft_api::gateway_status::GATEWAY_NAME_LABEL;
use weft_api::gateway_status::{self, GatewayAttachment};
use weft_api::{Kind, Object, ObjectRef};
use weft_identity::SpiffeId;
use weft_proto::GATEWAY_TYPE_URL;
use weft_proto::l7::Gateway;

use super::context::{Context, Dep, Unit};
use super::l7::policies::{self, Target};
use super::{Resource, ResourceKey, Warning};
use crate::callers::Caller;

/// The key of a Gateway resource.
pub(crate) fn gateway_key(name: impl Into<String>) -> ResourceKey {
    ResourceKey::new(GATEWAY_TYPE_URL, name)
}

/// `<namespace>/<name>` of an object.
fn resource_name(object: &ObjectRef) -> String {
    let namespace = object.namespace.as_deref().unwrap_or_default();
    format!("{namespace}/{}", object.name)
}

/// Names of the Gateway resources: one per Gateway of a class weft runs.
pub(crate) fn gateway_names(context: &Context<'_>) -> Vec<String> {
    let gateways = gateway_status::weft_gateways(context.snapshot);
    gateways.iter().map(resource_name).collect()
}

/// The service account a gateway's pods run as: `<gateway>-<class>`.
#[must_use]
pub fn gateway_service_account(gateway: &str, class: &str) -> String {
    format!("{gateway}-{class}")
}

/// The Gateway unit for `<ns>/<gateway>`.
pub(crate) fn translate_gateway(context: &Context<'_>, name: &str) -> Unit {
    let mut unit = Unit::default();
    let Some((namespace, gateway_name)) = name.split_once('/') else {
        return unit;
    };
    let gateway_ref = ObjectRef {
        kind: Kind::Gateway,
        namespace: Some(namespace.to_owned()),
        name: gateway_name.to_owned(),
    };
    unit.deps.push(Dep::Object(gateway_ref.clone()));
    let found = context
        .snapshot
        .get(Kind::Gateway, Some(namespace), gateway_name);
    let Some(Object::Gateway(gateway)) = found.map(|l| &l.object) else {
        return unit;
    };
    let class = gateway.spec.gateway_class_name.as_str();
    unit.deps.push(Dep::Object(ObjectRef {
        kind: Kind::GatewayClass,
        namespace: None,
        name: class.to_owned(),
    }));
    if gateway_status::gateway_controller(context.snapshot, class).is_none() {
        return unit;
    }
    let Some(attachment) = gateway_status::attach(context.snapshot, &gateway_ref) else {
        return unit;
    };
    let message = build(context, &gateway_ref, gateway, &attachment, &mut unit);
    let readers = readers(context, &gateway_ref, class, &mut unit);
    let resource = Resource::encode(name.to_owned(), Vec::new(), &message);
    unit.resource = Some(resource.restricted_to(readers));
    unit
}

/// The Gateway message: accepted listeners with their routes (and, without certificates,
/// those that fail closed), policies, backend TLS.
fn build(
    context: &Context<'_>,
    gateway_ref: &ObjectRef,
    gateway: &ApiGateway,
    attachment: &GatewayAttachment,
    unit: &mut Unit,
) -> Gateway {
    let parent = format!("gateway {}", resource_name(gateway_ref));
    let mut backends = BTreeSet::new();
    let accepted = (attachment.listeners.iter()).filter(|l| l.accepted || l.fails_closed);
    let listeners = accepted
        .filter_map(|attached| {
            let mut listener = match &attached.listener_set {
                None => {
                    let spec = gateway.spec.listeners.get(attached.index)?;
                    let owners = listeners::ListenerOwner {
                        owner: gateway_ref,
                        gateway_ref,
                    };
                    listeners::listener(context, &owners, gateway, spec, unit)?
                }
                Some(set) => {
                    let owners = listeners::ListenerOwner {
                        owner: set,
                        gateway_ref,
                    };
                    listeners::from_listener_set(context, &owners, attached.index, gateway, unit)?
                }
            };
            routes::attach(context, &parent, attached, &mut listener, unit);
            backends.extend(routes::backend_services(&listener));
            Some(listener)
        })
        .collect();
    let annotations = gateway.metadata.annotations.as_ref();
    let trusted_hops = super::l7::trusted_hops(annotations).unwrap_or_else(|message| {
        let object = gateway_ref.clone();
        unit.warnings.push(Warning { object, message });
        0
    });
    let mut backend_tls = super::l7::backend_tls::backend_tls_for(context, &backends, unit);
    client_tls::add_backend_client_certificate(
        context,
        gateway_ref,
        gateway,
        &mut backend_tls,
        unit,
    );
    let no_services = BTreeSet::new();
    let target = Target {
        gateway: gateway_ref,
        class: &gateway.spec.gateway_class_name,
        services: &no_services,
    };
    Gateway {
        namespace: gateway_ref.namespace.clone().unwrap_or_default(),
        name: gateway_ref.name.clone(),
        listeners,
        policies: policies::authorization_policies(context, &target, unit),
        jwt_rules: policies::jwt_rules(context, &target, unit),
        trusted_hops,
        backend_tls,
        generation: gateway.metadata.generation.unwrap_or(1),
    }
}

/// Who may receive the resource: the node proxies of the nodes running the gateway's pods,
/// and the gateway's own workload identity.
fn readers(
    context: &Context<'_>,
    gateway: &ObjectRef,
    class: &str,
    unit: &mut Unit,
) -> Vec<String> {
    let namespace = gateway.namespace.as_deref().unwrap_or_default();
    let pods = context.pods.iter().filter(|pod| {
        pod.namespace() == namespace
            && pod.labels().get(GATEWAY_NAME_LABEL).map(String::as_str) == Some(&gateway.name)
    });
    let nodes: BTreeSet<&str> = pods.filter_map(|pod| pod.node_name()).collect();
    let mut readers: Vec<String> = nodes
        .into_iter()
        .map(|node| Caller::Node(node.to_owned()).principal())
        .collect();
    let account = gateway_service_account(&gateway.name, class);
    match SpiffeId::new(&context.options.trust_domain, namespace, &account) {
        Ok(id) => readers.push(Caller::Workload(id).principal()),
        Err(error) => unit.warnings.push(Warning {
            object: gateway.clone(),
            message: format!(
                "service account {account} is no valid identity ({error}); only node proxies \
                 of the gateway's nodes receive its configuration"
            ),
        }),
    }
    readers
}

/// Gateway resources an edit of `object` may affect, judged on the snapshot after it (the
/// ones it affected before are found through recorded dependencies).
pub(crate) fn affected_gateways(context: &Context<'_>, object: &ObjectRef) -> Vec<ResourceKey> {
    let snapshot = context.snapshot;
    let names: Vec<String> = match object.kind {
        // attachment (allowedRoutes selectors, grants) or waypoint use may change anywhere
        Kind::Namespace | Kind::ReferenceGrant | Kind::GatewayClass => gateway_names(context),
        // a ListenerSet adds listeners to the Gateway it names, which may change
        Kind::ListenerSet | Kind::XListenerSet => gateway_names(context),
        // a new policy or a ServiceEntry behind a Hostname backend is no recorded dependency
        Kind::BackendTlsPolicy | Kind::ServiceEntry => gateway_names(context),
        // a waypoint appearing or going changes which backends go through one
        Kind::Gateway if is_waypoint(context, object) => gateway_names(context),
        Kind::Gateway => vec![resource_name(object)],
        Kind::HttpRoute | Kind::GrpcRoute | Kind::TlsRoute | Kind::TcpRoute => {
            routes::gateways_of_route(snapshot, object)
        }
        Kind::Secret | Kind::ConfigMap | Kind::ClusterTrustBundle => {
            gateways_referencing(context, object)
        }
        Kind::AuthorizationPolicy | Kind::RequestAuthentication => {
            gateways_of_policy(context, object)
        }
        _ => Vec::new(),
    };
    let weft: BTreeSet<String> = gateway_names(context).into_iter().collect();
    names
        .into_iter()
        .filter(|n| weft.contains(n))
        .map(gateway_key)
        .collect()
}

/// Whether `object` is (or was, when it is gone) a waypoint Gateway: unknown counts as one.
fn is_waypoint(context: &Context<'_>, object: &ObjectRef) -> bool {
    let found = context
        .snapshot
        .get(Kind::Gateway, object.namespace.as_deref(), &object.name);
    match found.map(|l| &l.object) {
        Some(Object::Gateway(g)) => g.spec.gateway_class_name == WAYPOINT_CLASS,
        _ => true,
    }
}

/// Every gateway's key: re-translated when pods change (readers follow the pods).
pub(crate) fn all_gateways(context: &Context<'_>) -> Vec<ResourceKey> {
    gateway_names(context)
        .into_iter()
        .map(gateway_key)
        .collect()
}

/// Gateways (names) whose TLS settings name `object` (a Secret, ConfigMap or
/// ClusterTrustBundle): certificateRefs, frontend CA references, backend client certificate.
fn gateways_referencing(context: &Context<'_>, object: &ObjectRef) -> Vec<String> {
    let gateways = context.snapshot.gateways();
    gateways
        .filter_map(|(gateway, loaded)| {
            let gateway_ref = loaded.object.object_ref();
            let namespace = gateway_ref.namespace.as_deref().unwrap_or_default();
            let references = gateway_status::tls_references(gateway, namespace);
            references
                .contains(object)
                .then(|| resource_name(&gateway_ref))
        })
        .collect()
}

/// Gateways (names) a policy targets directly or through their GatewayClass.
fn gateways_of_policy(context: &Context<'_>, object: &ObjectRef) -> Vec<String> {
    let (mut gateways, classes) = policies::gateways_of_policy(context, object);
    if !classes.is_empty() {
        let of_class = context
            .snapshot
            .gateways()
            .filter(|(g, _)| classes.contains(&g.spec.gateway_class_name));
        gateways.extend(of_class.map(|(_, l)| resource_name(&l.object.object_ref())));
    }
    gateways
}

/// Renders a Gateway resource as proto JSON with every private key replaced by
/// `<redacted>` (`/debug/configz` and `weft x translate` show everything else).
pub(crate) fn render_redacted(
    full_name: &str,
    encoded: &[u8],
) -> Result<serde_json::Value, weft_proto::JsonError> {
    use prost::Message as _;
    let mut message = Gateway::decode(encoded).map_err(|source| weft_proto::JsonError::Decode {
        name: full_name.to_owned(),
        source,
    })?;
    let certificates = message
        .listeners
        .iter_mut()
        .flat_map(|l| &mut l.certificates);
    certificates.for_each(client_tls::redact);
    client_tls::redact_backend_client_certificates(&mut message.backend_tls);
    weft_proto::to_json(full_name, &message)
}
