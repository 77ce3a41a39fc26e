//! The closed set of kinds weft understands, the [`Object`] enum holding one parsed object of
//! any of them, and where each object came from ([`Source`]).

use crate::gateway::{
    BackendTlsPolicy, Gateway, GatewayClass, GrpcRoute, HttpRoute, ListenerSet, ReferenceGrant,
    TcpRoute, TlsRoute, UdpRoute,
};
use crate::istio::{
    AuthorizationPolicy, PeerAuthentication, RequestAuthentication, ServiceEntry, WorkloadEntry,
};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::certificates::v1beta1::ClusterTrustBundle;
use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, Node, Pod, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

/// Namespace used for namespaced objects that do not name one.
pub const DEFAULT_NAMESPACE: &str = "default";

const CORE: &[&str] = &["v1"];
const APPS: &[&str] = &["apps/v1"];
const DISCOVERY: &[&str] = &["discovery.k8s.io/v1"];
const SECURITY: &[&str] = &["security.istio.io/v1", "security.istio.io/v1beta1"];
const NETWORKING: &[&str] = &[
    "networking.istio.io/v1",
    "networking.istio.io/v1beta1",
    "networking.istio.io/v1alpha3",
];
const GW_V1: &[&str] = &[
    "gateway.networking.k8s.io/v1",
    "gateway.networking.k8s.io/v1beta1",
];
const GW_ALPHA: &[&str] = &[
    "gateway.networking.k8s.io/v1",
    "gateway.networking.k8s.io/v1alpha2",
];
/// TCPRoute and UDPRoute: `v1alpha2` first (the more lenient schema: Kubernetes mode
/// watches the first version the cluster serves), then `v1`.
const GW_L4_ROUTE: &[&str] = &[
    "gateway.networking.k8s.io/v1alpha2",
    "gateway.networking.k8s.io/v1",
];
const GW_TLS_ROUTE: &[&str] = &[
    "gateway.networking.k8s.io/v1",
    "gateway.networking.k8s.io/v1alpha3",
    "gateway.networking.k8s.io/v1alpha2",
];
const GW_GRANT: &[&str] = &[
    "gateway.networking.k8s.io/v1",
    "gateway.networking.k8s.io/v1beta1",
    "gateway.networking.k8s.io/v1alpha2",
];
const GW_BACKEND_TLS: &[&str] = &[
    "gateway.networking.k8s.io/v1",
    "gateway.networking.k8s.io/v1alpha3",
];
const GW_ONLY_V1: &[&str] = &["gateway.networking.k8s.io/v1"];
const GW_EXPERIMENTAL: &[&str] = &["gateway.networking.x-k8s.io/v1alpha1"];
const CERTIFICATES: &[&str] = &[
    "certificates.k8s.io/v1beta1",
    "certificates.k8s.io/v1alpha1",
];

macro_rules! kinds {
    ($( $variant:ident($ty:ty) = $kind:literal, $versions:expr, namespaced: $namespaced:literal; )*) => {
        /// A kind weft understands.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        pub enum Kind { $( #[doc = $kind] $variant, )* }

        impl Kind {
            /// Every kind, in declaration order.
            pub const ALL: &'static [Kind] = &[ $( Kind::$variant, )* ];

            /// The `kind:` string.
            #[must_use]
            pub fn name(self) -> &'static str {
                match self { $( Kind::$variant => $kind, )* }
            }

            /// The `apiVersion:` values accepted for this kind.
            #[must_use]
            pub fn api_versions(self) -> &'static [&'static str] {
                match self { $( Kind::$variant => $versions, )* }
            }

            /// Whether objects of this kind live in a namespace.
            #[must_use]
            pub fn is_namespaced(self) -> bool {
                match self { $( Kind::$variant => $namespaced, )* }
            }
        }

        /// One parsed object of a known kind.
        #[derive(Debug, Clone, PartialEq)]
        #[allow(clippy::large_enum_variant)]
        pub enum Object { $( #[doc = $kind] $variant($ty), )* }

        /// Serializes as the manifest it is (`apiVersion`, `kind`, `metadata`, ...), so
        /// objects can be written back to YAML (e.g. `weft up`'s effective config).
        impl Serialize for Object {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                match self { $( Object::$variant(o) => o.serialize(serializer), )* }
            }
        }

        impl Object {
            /// The object's kind.
            #[must_use]
            pub fn kind(&self) -> Kind {
                match self { $( Object::$variant(_) => Kind::$variant, )* }
            }

            /// The object's metadata.
            #[must_use]
            pub fn metadata(&self) -> &ObjectMeta {
                match self { $( Object::$variant(o) => &o.metadata, )* }
            }

            /// Mutable metadata (used to default the namespace).
            pub fn metadata_mut(&mut self) -> &mut ObjectMeta {
                match self { $( Object::$variant(o) => &mut o.metadata, )* }
            }

            /// Deserializes an object of `kind` (the caller checked apiVersion and kind).
            pub(crate) fn deserialize_as<'de, D: serde::Deserializer<'de>>(kind: Kind, deserializer: D) -> Result<Object, D::Error> {
                match kind { $( Kind::$variant => <$ty as serde::Deserialize>::deserialize(deserializer).map(Object::$variant), )* }
            }

            /// The struct fields expected at `path` inside an object of `kind` ("did you mean").
            pub(crate) fn known_fields(kind: Kind, path: &[crate::suggest::Segment]) -> Option<&'static [&'static str]> {
                match kind { $( Kind::$variant => crate::suggest::known_fields::<$ty>(path), )* }
            }
        }
    };
}

kinds! {
    Namespace(Namespace) = "Namespace", CORE, namespaced: false;
    Service(Service) = "Service", CORE, namespaced: true;
    EndpointSlice(EndpointSlice) = "EndpointSlice", DISCOVERY, namespaced: true;
    Pod(Pod) = "Pod", CORE, namespaced: true;
    ServiceAccount(ServiceAccount) = "ServiceAccount", CORE, namespaced: true;
    Node(Node) = "Node", CORE, namespaced: false;
    ConfigMap(ConfigMap) = "ConfigMap", CORE, namespaced: true;
    Secret(Secret) = "Secret", CORE, namespaced: true;
    ClusterTrustBundle(ClusterTrustBundle) = "ClusterTrustBundle", CERTIFICATES, namespaced: false;
    Deployment(Deployment) = "Deployment", APPS, namespaced: true;
    StatefulSet(StatefulSet) = "StatefulSet", APPS, namespaced: true;
    DaemonSet(DaemonSet) = "DaemonSet", APPS, namespaced: true;
    AuthorizationPolicy(AuthorizationPolicy) = "AuthorizationPolicy", SECURITY, namespaced: true;
    PeerAuthentication(PeerAuthentication) = "PeerAuthentication", SECURITY, namespaced: true;
    RequestAuthentication(RequestAuthentication) = "RequestAuthentication", SECURITY, namespaced: true;
    ServiceEntry(ServiceEntry) = "ServiceEntry", NETWORKING, namespaced: true;
    WorkloadEntry(WorkloadEntry) = "WorkloadEntry", NETWORKING, namespaced: true;
    GatewayClass(GatewayClass) = "GatewayClass", GW_V1, namespaced: false;
    Gateway(Gateway) = "Gateway", GW_V1, namespaced: true;
    HttpRoute(HttpRoute) = "HTTPRoute", GW_V1, namespaced: true;
    GrpcRoute(GrpcRoute) = "GRPCRoute", GW_ALPHA, namespaced: true;
    TlsRoute(TlsRoute) = "TLSRoute", GW_TLS_ROUTE, namespaced: true;
    TcpRoute(TcpRoute) = "TCPRoute", GW_L4_ROUTE, namespaced: true;
    UdpRoute(UdpRoute) = "UDPRoute", GW_L4_ROUTE, namespaced: true;
    ReferenceGrant(ReferenceGrant) = "ReferenceGrant", GW_GRANT, namespaced: true;
    BackendTlsPolicy(BackendTlsPolicy) = "BackendTLSPolicy", GW_BACKEND_TLS, namespaced: true;
    ListenerSet(ListenerSet) = "ListenerSet", GW_ONLY_V1, namespaced: true;
    XListenerSet(ListenerSet) = "XListenerSet", GW_EXPERIMENTAL, namespaced: true;
}

/// How an `apiVersion`/`kind` pair resolves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KindLookup {
    /// A kind and version weft reads.
    Known(Kind),
    /// A kind weft reads, but not at this `apiVersion`.
    UnsupportedVersion(Kind),
    /// A kind weft does not know.
    Unknown,
}

impl Kind {
    /// The API group (`""` for core kinds), of its first accepted `apiVersion`.
    #[must_use]
    pub fn group(self) -> &'static str {
        let api_version = self.api_versions()[0];
        api_version.rsplit_once('/').map_or("", |(group, _)| group)
    }

    /// Resolves `apiVersion` + `kind` as written in a manifest.
    #[must_use]
    pub fn lookup(api_version: &str, kind: &str) -> KindLookup {
        let group = |v: &str| v.rsplit_once('/').map_or("", |(group, _)| group).to_owned();
        let wanted_group = group(api_version);
        let Some(known) = Kind::ALL.iter().copied().find(|k| {
            k.name() == kind && k.api_versions().iter().any(|v| group(v) == wanted_group)
        }) else {
            return KindLookup::Unknown;
        };
        if known.api_versions().contains(&api_version) {
            KindLookup::Known(known)
        } else {
            KindLookup::UnsupportedVersion(known)
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Object {
    /// `metadata.name` (empty if missing; validation reports that).
    #[must_use]
    pub fn name(&self) -> &str {
        self.metadata().name.as_deref().unwrap_or("")
    }

    /// The namespace for namespaced kinds (`default` when unset), `None` for cluster-scoped.
    #[must_use]
    pub fn namespace(&self) -> Option<&str> {
        self.kind().is_namespaced().then(|| {
            self.metadata()
                .namespace
                .as_deref()
                .unwrap_or(DEFAULT_NAMESPACE)
        })
    }

    /// `metadata.labels` (empty map if none).
    #[must_use]
    pub fn labels(&self) -> &BTreeMap<String, String> {
        static EMPTY: BTreeMap<String, String> = BTreeMap::new();
        self.metadata().labels.as_ref().unwrap_or(&EMPTY)
    }

    /// A label value.
    #[must_use]
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels().get(key).map(String::as_str)
    }

    /// The object's identity: kind, namespace, name.
    #[must_use]
    pub fn object_ref(&self) -> ObjectRef {
        ObjectRef {
            kind: self.kind(),
            namespace: self.namespace().map(str::to_owned),
            name: self.name().to_owned(),
        }
    }
}

/// Identity of an object: `kind/namespace/name` (`-` as namespace for cluster-scoped kinds).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ObjectRef {
    /// Kind.
    pub kind: Kind,
    /// Namespace, `None` for cluster-scoped kinds.
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}",
            self.kind,
            self.namespace.as_deref().unwrap_or("-"),
            self.name
        )
    }
}

/// Where an object (or finding) came from: file and 1-based line.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Source {
    /// The file, as it was given or found while walking a directory.
    pub file: PathBuf,
    /// 1-based line (the document's first line for objects).
    pub line: usize,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// A parsed object and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedObject {
    /// The object.
    pub object: Object,
    /// Its file and line.
    pub source: Source,
    /// Its text, to place findings on the line of a field (`None`: not loaded from text).
    pub layout: Option<crate::locate::Layout>,
}

impl LoadedObject {
    /// The file and line of the field at `path` in the object (its first line if unknown).
    #[must_use]
    pub fn source_at(&self, path: &[crate::suggest::Segment]) -> Source {
        let line = self.layout.as_ref().and_then(|l| l.line_of(path));
        Source {
            file: self.source.file.clone(),
            line: line.unwrap_or(self.source.line),
        }
    }
}
