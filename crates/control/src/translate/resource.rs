//! The generic resource model: every translated resource is keyed by its xDS type URL and
//! name ([`ResourceKey`]), held encoded once ([`Resource`]), and its type is described by
//! a [`ResourceType`] in [`RESOURCE_TYPES`], the one registry the translator, the pusher
//! and the renderers loop over.
//!
//! Adding a resource type: a translation unit (like `context::translate_address`) that
//! produces a [`Resource`] under `(type URL, name)`, and an entry in [`RESOURCE_TYPES`].
//! Output, dependency tracking, publishing and rendering need no change.

use super::context::{self, Context, Unit};
use prost::Message;
use serde_json::Value;
use std::fmt;
use weft_proto::l7::Waypoint;
use weft_proto::mesh::MeshConfig;
use weft_proto::security::Authorization;
use weft_proto::workload::Address;
use weft_proto::{
    ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL, GATEWAY_TYPE_URL, JsonError, MESH_CONFIG_TYPE_URL,
    WAYPOINT_TYPE_URL,
};

/// Renders a resource body, given the message's full protobuf name, as proto JSON.
type RenderFn = fn(&str, &[u8]) -> Result<Value, JsonError>;
/// The names of one type a snapshot produces (or raises warnings under).
type NamesFn = for<'c> fn(&Context<'c>) -> Vec<String>;
/// Translates one name of one type.
type TranslateFn = for<'c> fn(&Context<'c>, &str) -> Unit;

/// One resource type the control plane serves: its type URL, how it is rendered, and the
/// translation unit that produces it.
pub struct ResourceType {
    /// xDS type URL (`type.googleapis.com/<full message name>`).
    pub type_url: &'static str,
    /// Key of the type's list in rendered output (`weft x translate`, `/debug/configz`).
    pub section: &'static str,
    render: RenderFn,
    pub(crate) names: NamesFn,
    pub(crate) translate: TranslateFn,
}

impl fmt::Debug for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResourceType")
            .field("type_url", &self.type_url)
            .field("section", &self.section)
            .finish_non_exhaustive()
    }
}

impl ResourceType {
    /// A type whose resources are `M` messages.
    const fn of<M: Message + Default>(
        type_url: &'static str,
        section: &'static str,
        names: NamesFn,
        translate: TranslateFn,
    ) -> Self {
        ResourceType {
            type_url,
            section,
            render: render_as::<M>,
            names,
            translate,
        }
    }

    /// Renders an encoded resource of this type as proto JSON.
    ///
    /// # Errors
    /// Fails if the bytes do not decode as this type (a build bug).
    pub fn render(&self, encoded: &[u8]) -> Result<Value, JsonError> {
        (self.render)(message_name(self.type_url), encoded)
    }
}

fn render_as<M: Message + Default>(full_name: &str, encoded: &[u8]) -> Result<Value, JsonError> {
    let message = M::decode(encoded).map_err(|source| JsonError::Decode {
        name: full_name.to_owned(),
        source,
    })?;
    weft_proto::to_json(full_name, &message)
}

/// Workloads and services (`istio.workload.Address`).
pub const ADDRESS: ResourceType = ResourceType::of::<Address>(
    ADDRESS_TYPE_URL,
    "addresses",
    context::address_names,
    context::translate_address,
);

/// L4 policies (`istio.security.Authorization`).
pub const AUTHORIZATION: ResourceType = ResourceType::of::<Authorization>(
    AUTHORIZATION_TYPE_URL,
    "authorizations",
    context::authorization_names,
    context::translate_authorization,
);

/// One waypoint's L7 configuration (`weft.l7.v1.Waypoint`).
pub const WAYPOINT: ResourceType = ResourceType::of::<Waypoint>(
    WAYPOINT_TYPE_URL,
    "waypoints",
    super::l7::waypoint_names,
    super::l7::translate_waypoint,
);

/// One ingress or egress gateway's configuration (`weft.l7.v1.Gateway`); rendered with
/// its private keys redacted.
pub const GATEWAY: ResourceType = ResourceType {
    type_url: GATEWAY_TYPE_URL,
    section: "gateways",
    render: super::gateway::render_redacted,
    names: super::gateway::gateway_names,
    translate: super::gateway::translate_gateway,
};

/// Mesh-wide settings for node proxies (`weft.mesh.v1.MeshConfig`, named `mesh`).
pub const MESH_CONFIG: ResourceType = ResourceType::of::<MeshConfig>(
    MESH_CONFIG_TYPE_URL,
    "mesh",
    super::mesh::mesh_names,
    super::mesh::translate_mesh,
);

/// Every type the translator produces and the pusher announces, in output order.
pub const RESOURCE_TYPES: &[ResourceType] =
    &[ADDRESS, AUTHORIZATION, WAYPOINT, GATEWAY, MESH_CONFIG];

/// The registered type with this URL.
#[must_use]
pub fn resource_type(type_url: &str) -> Option<&'static ResourceType> {
    RESOURCE_TYPES.iter().find(|t| t.type_url == type_url)
}

/// The full protobuf message name in a type URL (`istio.workload.Address`).
#[must_use]
pub fn message_name(type_url: &str) -> &str {
    type_url.rsplit_once('/').map_or(type_url, |(_, name)| name)
}

/// Identity of one output resource: its type URL and xDS resource name. Keys order by
/// registered type (in [`RESOURCE_TYPES`] order, unregistered types after), then name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResourceKey {
    /// xDS type URL.
    pub type_url: &'static str,
    /// xDS resource name.
    pub name: String,
}

impl ResourceKey {
    /// The key of `name` in `type_url`.
    pub fn new(type_url: &'static str, name: impl Into<String>) -> Self {
        ResourceKey {
            type_url,
            name: name.into(),
        }
    }

    /// An `istio.workload.Address`, named by workload uid or `<ns>/<hostname>`.
    pub fn address(name: impl Into<String>) -> Self {
        Self::new(ADDRESS_TYPE_URL, name)
    }

    /// An `istio.security.Authorization`, named `<ns>/<name>`.
    pub fn authorization(name: impl Into<String>) -> Self {
        Self::new(AUTHORIZATION_TYPE_URL, name)
    }

    /// A `weft.l7.v1.Waypoint`, named `<ns>/<gateway>`.
    pub fn waypoint(name: impl Into<String>) -> Self {
        Self::new(WAYPOINT_TYPE_URL, name)
    }

    /// A `weft.l7.v1.Gateway`, named `<ns>/<gateway>`.
    pub fn gateway(name: impl Into<String>) -> Self {
        Self::new(GATEWAY_TYPE_URL, name)
    }

    /// The xDS resource name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    fn rank(&self) -> usize {
        RESOURCE_TYPES
            .iter()
            .position(|t| t.type_url == self.type_url)
            .unwrap_or(RESOURCE_TYPES.len())
    }
}

impl Ord for ResourceKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        if self.type_url == other.type_url {
            return self.name.cmp(&other.name);
        }
        (self.rank(), self.type_url).cmp(&(other.rank(), other.type_url))
    }
}

impl PartialOrd for ResourceKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for ResourceKey {
    /// `Address <name>`: the message's short name, then the resource name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let message = message_name(self.type_url);
        let short = message.rsplit_once('.').map_or(message, |(_, name)| name);
        write!(f, "{short} {}", self.name)
    }
}

/// One translated resource, encoded once: what is published and rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// xDS resource name.
    pub name: String,
    /// Hash of the content (see [`super::content_version`]).
    pub version: String,
    /// Other names the resource answers to (`<network>/<ip>` per address).
    pub aliases: Vec<String>,
    /// The protobuf encoding (deterministic: equal content, equal bytes).
    pub encoded: Vec<u8>,
    /// Principals ([`crate::callers::Caller::principal`]) allowed to receive it; `None`:
    /// every caller. Set on resources that carry secrets (a gateway's private keys).
    pub readers: Option<Vec<String>>,
}

impl Resource {
    /// A resource from its deterministic encoding and content version.
    #[must_use]
    pub fn new(name: String, version: String, aliases: Vec<String>, encoded: Vec<u8>) -> Self {
        Resource {
            name,
            version,
            aliases,
            encoded,
            readers: None,
        }
    }

    /// The resource, sent only to callers authenticated as one of `readers` (sorted and
    /// deduplicated); its version covers them, so a change of readers is pushed.
    #[must_use]
    pub fn restricted_to(mut self, mut readers: Vec<String>) -> Self {
        readers.sort();
        readers.dedup();
        let mut canonical = self.version.clone().into_bytes();
        for reader in &readers {
            canonical.push(0);
            canonical.extend_from_slice(reader.as_bytes());
        }
        self.version = super::content_version(&canonical);
        self.readers = Some(readers);
        self
    }

    /// Encodes `message` (which must encode deterministically: no map with two or more
    /// entries), versioned by a hash of its bytes.
    #[must_use]
    pub fn encode<M: Message>(name: String, aliases: Vec<String>, message: &M) -> Self {
        let encoded = message.encode_to_vec();
        let version = super::content_version(&encoded);
        Self::new(name, version, aliases, encoded)
    }

    /// Size of the protobuf encoding, in bytes.
    #[must_use]
    pub fn encoded_len(&self) -> usize {
        self.encoded.len()
    }

    /// The resource as its message type.
    ///
    /// # Errors
    /// Fails if `M` is not the resource's type.
    pub fn decode<M: Message + Default>(&self) -> Result<M, prost::DecodeError> {
        M::decode(self.encoded.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_order_by_registered_type_then_name() {
        let mut keys = [
            ResourceKey::new("type.googleapis.com/test.Zeta", "a"),
            ResourceKey::authorization("a"),
            ResourceKey::address("b"),
            ResourceKey::new("type.googleapis.com/test.Alpha", "z"),
            ResourceKey::address("a"),
        ];
        keys.sort();
        let shown: Vec<String> = keys.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "Address a",
                "Address b",
                "Authorization a",
                "Alpha z",
                "Zeta a"
            ]
        );
    }
}
