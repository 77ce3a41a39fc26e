//! The Kubernetes-shaped status weft computes for Gateway API objects: conditions, listener
//! and route-parent entries, and the `{apiVersion, kind, metadata, status}` document each
//! object's status is printed as. Everything here (de)serializes, so the control plane's
//! `/debug/gatewayz` answer reads back into the same types.

use crate::object::{Kind, LoadedObject, Object, ObjectRef};
use serde::{Deserialize, Serialize};

/// `lastTransitionTime` for objects without `metadata.creationTimestamp`: weft computes
/// status from specs, so the only stable time it knows is when the object was created.
pub const EPOCH: &str = "1970-01-01T00:00:00Z";

/// One condition, as in `metav1.Condition`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Accepted`, `Programmed`, `ResolvedRefs`, `Conflicted`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True` or `False`.
    pub status: String,
    /// CamelCase reason from the Gateway API spec.
    pub reason: String,
    /// What it means for this object, naming the field or reference concerned.
    pub message: String,
    /// The `metadata.generation` the condition was computed from.
    pub observed_generation: i64,
    /// RFC 3339 time (the object's creation time; see [`EPOCH`]).
    pub last_transition_time: String,
}

impl Condition {
    /// Whether `status` is `True`.
    #[must_use]
    pub fn is_true(&self) -> bool {
        self.status == "True"
    }
}

/// Stamps conditions of one object with its generation and time.
#[derive(Debug, Clone)]
pub struct Stamp {
    /// `metadata.generation` (1 when the manifest does not say).
    pub generation: i64,
    /// The creation time (RFC 3339), or [`EPOCH`].
    pub time: String,
}

impl Stamp {
    /// The generation and creation time of `loaded`.
    #[must_use]
    pub fn of(loaded: &LoadedObject) -> Self {
        let metadata = loaded.object.metadata();
        let time = metadata
            .creation_timestamp
            .as_ref()
            .and_then(|t| serde_json::to_value(t).ok())
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_else(|| EPOCH.to_owned());
        Stamp {
            generation: metadata.generation.unwrap_or(1),
            time,
        }
    }

    /// A condition of `type_` with `status` True when `ok`.
    #[must_use]
    pub fn condition(
        &self,
        type_: &str,
        ok: bool,
        reason: &str,
        message: impl Into<String>,
    ) -> Condition {
        Condition {
            type_: type_.to_owned(),
            status: if ok { "True" } else { "False" }.to_owned(),
            reason: reason.to_owned(),
            message: message.into(),
            observed_generation: self.generation,
            last_transition_time: self.time.clone(),
        }
    }
}

/// `{group, kind}` of a route kind a listener supports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteGroupKind {
    /// Always `gateway.networking.k8s.io`.
    pub group: String,
    /// `HTTPRoute`, `GRPCRoute`, `TLSRoute`, `TCPRoute`.
    pub kind: String,
}

/// `status.addresses[]` of a Gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayStatusAddress {
    /// `IPAddress`.
    #[serde(rename = "type")]
    pub type_: String,
    /// The address.
    pub value: String,
}

/// `status.listeners[]` of a Gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerStatus {
    /// The listener's name.
    pub name: String,
    /// Route kinds that may attach.
    pub supported_kinds: Vec<RouteGroupKind>,
    /// How many routes are attached.
    pub attached_routes: i32,
    /// `Accepted`, `Programmed`, `ResolvedRefs`, `Conflicted`.
    pub conditions: Vec<Condition>,
}

/// `status` of a Gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayStatus {
    /// Addresses the gateway is reachable at (its pods' IPs; none for a ListenerSet, whose
    /// status has this shape otherwise).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<GatewayStatusAddress>,
    /// ListenerSets attached to the Gateway, when any names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attached_listener_sets: Option<i32>,
    /// `Accepted`, `Programmed` (and `AttachedListenerSets` when a ListenerSet names the
    /// Gateway).
    pub conditions: Vec<Condition>,
    /// One entry per listener, in spec order.
    pub listeners: Vec<ListenerStatus>,
}

/// The `parentRef` echoed in a route's status, as the route wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParentReference {
    /// API group, when written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Kind, when written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Namespace, when written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
    /// Listener name, when written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
    /// Port, when written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
}

/// `status.parents[]` of a route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteParentStatus {
    /// The parentRef.
    pub parent_ref: ParentReference,
    /// `weft.dev/gateway`, `istio.io/gateway-controller` or `istio.io/mesh-controller`.
    pub controller_name: String,
    /// `Accepted`, `ResolvedRefs`.
    pub conditions: Vec<Condition>,
    /// Index of the parentRef in `spec.parentRefs` (weft's own; not serialized).
    #[serde(default, skip)]
    pub parent_index: usize,
}

/// `status` of a route (HTTPRoute, GRPCRoute, TLSRoute, TCPRoute).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteStatus {
    /// One entry per parentRef weft handles.
    pub parents: Vec<RouteParentStatus>,
}

/// `status` of a GatewayClass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayClassStatus {
    /// `Accepted`.
    pub conditions: Vec<Condition>,
}

/// The status of one object, by kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Status {
    /// A Gateway.
    Gateway(GatewayStatus),
    /// A route.
    Route(RouteStatus),
    /// A GatewayClass.
    GatewayClass(GatewayClassStatus),
}

/// `metadata` of a status document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusMetadata {
    /// Name.
    pub name: String,
    /// Namespace (absent for GatewayClass).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// `metadata.generation` (1 when the manifest does not say).
    pub generation: i64,
}

/// The part of a Gateway's spec its status is about, echoed so the status reads on its
/// own (`weft status --gateways` shows class, ports and protocols).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySpecEcho {
    /// `spec.gatewayClassName`.
    pub gateway_class_name: String,
    /// Name, port, protocol and hostname of each listener.
    pub listeners: Vec<ListenerEcho>,
}

/// A listener's name, port, protocol and hostname.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerEcho {
    /// Name.
    pub name: String,
    /// Port.
    pub port: i32,
    /// Protocol.
    pub protocol: String,
    /// Hostname, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
}

/// One object's computed status: `{apiVersion, kind, metadata, status}` (Gateways also
/// echo part of their `spec`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectStatus {
    /// The object's apiVersion, as written.
    pub api_version: String,
    /// The object's kind.
    pub kind: String,
    /// Name, namespace, generation.
    pub metadata: StatusMetadata,
    /// Gateways only: class and listeners.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<GatewaySpecEcho>,
    /// The computed status.
    pub status: Status,
}

impl ObjectStatus {
    pub(crate) fn new(loaded: &LoadedObject, status: Status) -> Self {
        ObjectStatus {
            api_version: api_version(&loaded.object),
            kind: loaded.object.kind().name().to_owned(),
            metadata: StatusMetadata {
                name: loaded.object.name().to_owned(),
                namespace: loaded.object.namespace().map(str::to_owned),
                generation: Stamp::of(loaded).generation,
            },
            spec: spec_echo(&loaded.object),
            status,
        }
    }

    /// The object this status is about (`None` for a kind weft does not know).
    #[must_use]
    pub fn object_ref(&self) -> Option<ObjectRef> {
        let kind = Kind::ALL.iter().copied().find(|k| k.name() == self.kind)?;
        Some(ObjectRef {
            kind,
            namespace: self.metadata.namespace.clone(),
            name: self.metadata.name.clone(),
        })
    }
}

/// The apiVersion an object of a Gateway API kind was written with.
fn api_version(object: &Object) -> String {
    let written = match object {
        Object::GatewayClass(o) => &o.api_version,
        Object::Gateway(o) => &o.api_version,
        Object::HttpRoute(o) => &o.api_version,
        Object::GrpcRoute(o) => &o.api_version,
        Object::TlsRoute(o) => &o.api_version,
        Object::TcpRoute(o) | Object::UdpRoute(o) => &o.api_version,
        Object::ListenerSet(o) | Object::XListenerSet(o) => &o.api_version,
        _ => return String::new(),
    };
    written.clone()
}

fn spec_echo(object: &Object) -> Option<GatewaySpecEcho> {
    let Object::Gateway(gateway) = object else {
        return None;
    };
    let listeners = gateway
        .spec
        .listeners
        .iter()
        .map(|l| ListenerEcho {
            name: l.name.clone(),
            port: l.port,
            protocol: l.protocol.clone(),
            hostname: l.hostname.clone(),
        })
        .collect();
    Some(GatewaySpecEcho {
        gateway_class_name: gateway.spec.gateway_class_name.clone(),
        listeners,
    })
}
