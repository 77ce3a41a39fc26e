//! The constraint table [`crate::schema`] applies: bounds taken from the upstream CRDs, the
//! Gateway API standard channel (`apis/v1` kubebuilder markers: `MaxItems`, `Minimum`,
//! `Pattern`...) and Istio's generated CRDs. Shared shapes (a parent reference, a backend
//! reference, a listener, a workload entry) are listed once and placed under each path that
//! holds one.
//!
//! Fields whose Rust type is already an enum (Istio `action`, mTLS `mode`, `location`,
//! `resolution`; Gateway API match and filter `type`s, `method`) are checked by the typed
//! parse, which reports `invalid-enum`; they are not repeated here.

use crate::object::Kind;
use crate::schema::Check::{Count, Format as Pattern, Length, Port, Range};
use crate::schema::{Block, Check, Format, UNBOUNDED};

const ROUTES: &[Kind] = &[
    Kind::HttpRoute,
    Kind::GrpcRoute,
    Kind::TlsRoute,
    Kind::TcpRoute,
    Kind::UdpRoute,
];
const HTTP_AND_GRPC: &[Kind] = &[Kind::HttpRoute, Kind::GrpcRoute];
const L4_ROUTES: &[Kind] = &[Kind::TcpRoute, Kind::UdpRoute];
const LISTENER_KINDS: &[Kind] = &[Kind::Gateway, Kind::ListenerSet, Kind::XListenerSet];
const LISTENER_SET_KINDS: &[Kind] = &[Kind::ListenerSet, Kind::XListenerSet];
const ISTIO_SELECTED: &[Kind] = &[
    Kind::AuthorizationPolicy,
    Kind::PeerAuthentication,
    Kind::RequestAuthentication,
];
const TARGETED: &[Kind] = &[Kind::AuthorizationPolicy, Kind::RequestAuthentication];
const ANY_VERSION: &[&str] = &[];
const GATEWAY_V1: &[&str] = &["gateway.networking.k8s.io/v1"];
const GATEWAY_V1ALPHA2: &[&str] = &["gateway.networking.k8s.io/v1alpha2"];
const GATEWAY_V1ALPHA3: &[&str] = &["gateway.networking.k8s.io/v1alpha3"];

/// `Group`, `Kind`, `Namespace` and `ObjectName` of a reference.
const OBJECT_REF: &[(&str, Check)] = &[
    ("group", Length(0, 253)),
    ("group", Pattern(Format::Group)),
    ("kind", Length(1, 63)),
    ("kind", Pattern(Format::Kind)),
    ("namespace", Length(1, 63)),
    ("namespace", Pattern(Format::Namespace)),
    ("name", Length(1, 253)),
    ("port", Port),
];

/// `ParentReference` (on top of [`OBJECT_REF`]).
const PARENT_REF: &[(&str, Check)] = &[
    ("sectionName", Length(1, 253)),
    ("sectionName", Pattern(Format::SectionName)),
];

/// `BackendRef` (on top of [`OBJECT_REF`]).
const BACKEND_REF: &[(&str, Check)] = &[("weight", Range(0, 1_000_000))];

/// A `Hostname` list entry.
const HOSTNAME: &[(&str, Check)] = &[("", Length(1, 253)), ("", Pattern(Format::Hostname))];

/// A `SectionName`.
const SECTION_NAME: &[(&str, Check)] = &[("", Length(1, 253)), ("", Pattern(Format::SectionName))];

/// An HTTP or gRPC header match.
const HEADER_MATCH: &[(&str, Check)] = &[
    ("name", Length(1, 256)),
    ("name", Pattern(Format::HeaderName)),
    ("value", Length(1, 4096)),
];

/// Gateway and ListenerSet listeners.
const LISTENER: &[(&str, Check)] = &[
    ("name", Length(1, 253)),
    ("name", Pattern(Format::SectionName)),
    ("hostname", Length(1, 253)),
    ("hostname", Pattern(Format::Hostname)),
    ("port", Port),
    ("protocol", Length(1, 255)),
    ("protocol", Pattern(Format::ListenerProtocol)),
    ("tls.certificateRefs", Count(0, 64)),
    ("tls.options", Count(0, 16)),
    ("allowedRoutes.kinds", Count(0, 8)),
];

/// Istio `targetRef`/`targetRefs[]` (`PolicyTargetReference`).
const POLICY_TARGET: &[(&str, Check)] = &[
    ("group", Length(0, 253)),
    ("group", Pattern(Format::Group)),
    ("kind", Length(1, 63)),
    ("kind", Pattern(Format::Kind)),
    ("name", Length(1, 253)),
];

/// `ServiceEntry.workloadSelector.labels` (not a label selector `validate` checks).
const LABEL_SELECTOR: &[(&str, Check)] = &[
    ("{}", Length(1, UNBOUNDED)),
    ("{}", Pattern(Format::NoWildcard)),
    ("*", Length(0, 63)),
    ("*", Pattern(Format::NoWildcard)),
];

/// `WorkloadEntry.spec` and `ServiceEntry.spec.endpoints[]`.
const WORKLOAD_ENTRY: &[(&str, Check)] = &[
    ("address", Length(0, 256)),
    ("labels", Count(0, 256)),
    ("ports", Count(0, 128)),
    ("ports.*", Port),
    ("ports.{}", Length(1, 62)),
    ("ports.{}", Pattern(Format::PortName)),
    ("network", Length(0, 2048)),
    ("locality", Length(0, 2048)),
    ("serviceAccount", Length(0, 253)),
    ("weight", Range(0, 4_294_967_295)),
];

const fn block(
    kinds: &'static [Kind],
    at: &'static str,
    fields: &'static [(&'static str, Check)],
) -> Block {
    Block {
        kinds,
        versions: ANY_VERSION,
        at,
        fields,
    }
}

const fn versioned(
    kinds: &'static [Kind],
    versions: &'static [&'static str],
    at: &'static str,
    fields: &'static [(&'static str, Check)],
) -> Block {
    Block {
        kinds,
        versions,
        at,
        fields,
    }
}

/// Every constraint, by kind and path.
pub static BLOCKS: &[Block] = &[
    // Every route: parents and backends.
    block(ROUTES, "spec", &[("parentRefs", Count(0, 32))]),
    block(ROUTES, "spec.parentRefs[]", OBJECT_REF),
    block(ROUTES, "spec.parentRefs[]", PARENT_REF),
    block(ROUTES, "spec.rules[].backendRefs[]", OBJECT_REF),
    block(ROUTES, "spec.rules[].backendRefs[]", BACKEND_REF),
    block(ROUTES, "spec.rules[].name", SECTION_NAME),
    // HTTPRoute and GRPCRoute.
    block(HTTP_AND_GRPC, "spec", &[("hostnames", Count(0, 16))]),
    block(HTTP_AND_GRPC, "spec.hostnames[]", HOSTNAME),
    block(
        HTTP_AND_GRPC,
        "spec.rules[]",
        &[("filters", Count(0, 16)), ("backendRefs", Count(0, 16))],
    ),
    block(
        HTTP_AND_GRPC,
        "spec.rules[].matches[]",
        &[("headers", Count(0, 16))],
    ),
    block(
        HTTP_AND_GRPC,
        "spec.rules[].matches[].headers[]",
        HEADER_MATCH,
    ),
    block(
        HTTP_AND_GRPC,
        "spec.rules[].backendRefs[]",
        &[("filters", Count(0, 16))],
    ),
    // HTTPRoute.
    // rules is optional upstream (an empty list is valid; a missing one defaults to `/`)
    block(&[Kind::HttpRoute], "spec", &[("rules", Count(0, 16))]),
    block(
        &[Kind::HttpRoute],
        "spec.rules[]",
        &[("matches", Count(0, 64))],
    ),
    block(
        &[Kind::HttpRoute],
        "spec.rules[].matches[]",
        &[
            ("path.value", Length(0, 1024)),
            ("queryParams", Count(0, 16)),
        ],
    ),
    block(
        &[Kind::HttpRoute],
        "spec.rules[].matches[].queryParams[]",
        &[
            ("name", Length(1, 256)),
            ("name", Pattern(Format::HeaderName)),
            ("value", Length(1, 1024)),
        ],
    ),
    block(
        &[Kind::HttpRoute],
        "spec.rules[]",
        &[
            ("timeouts.request", Pattern(Format::Duration)),
            ("timeouts.backendRequest", Pattern(Format::Duration)),
            ("retry.backoff", Pattern(Format::Duration)),
            ("retry.codes[]", Range(400, 599)),
        ],
    ),
    // GRPCRoute.
    block(&[Kind::GrpcRoute], "spec", &[("rules", Count(0, 16))]),
    block(
        &[Kind::GrpcRoute],
        "spec.rules[]",
        &[("matches", Count(0, 8))],
    ),
    block(
        &[Kind::GrpcRoute],
        "spec.rules[].matches[].method",
        &[("service", Length(0, 1024)), ("method", Length(0, 1024))],
    ),
    // TLSRoute: v1 narrowed rules to one and widened hostnames to 1024.
    block(&[Kind::TlsRoute], "spec.hostnames[]", HOSTNAME),
    block(
        &[Kind::TlsRoute],
        "spec.rules[]",
        &[("backendRefs", Count(1, 16))],
    ),
    versioned(
        &[Kind::TlsRoute],
        GATEWAY_V1,
        "spec",
        &[("hostnames", Count(1, 1024)), ("rules", Count(1, 1))],
    ),
    versioned(
        &[Kind::TlsRoute],
        GATEWAY_V1ALPHA3,
        "spec",
        &[("hostnames", Count(1, 16)), ("rules", Count(1, 16))],
    ),
    versioned(
        &[Kind::TlsRoute],
        GATEWAY_V1ALPHA2,
        "spec",
        &[("hostnames", Count(0, 16)), ("rules", Count(1, 16))],
    ),
    // TCPRoute and UDPRoute: v1 (TCPRoute: one rule) and v1alpha2.
    versioned(
        &[Kind::TcpRoute],
        GATEWAY_V1,
        "spec",
        &[("rules", Count(1, 1))],
    ),
    versioned(
        &[Kind::TcpRoute],
        GATEWAY_V1ALPHA2,
        "spec",
        &[("rules", Count(1, 16))],
    ),
    block(&[Kind::UdpRoute], "spec", &[("rules", Count(1, 16))]),
    block(L4_ROUTES, "spec.rules[]", &[("backendRefs", Count(1, 16))]),
    // Gateway and ListenerSet.
    block(LISTENER_KINDS, "spec", &[("listeners", Count(1, 64))]),
    block(LISTENER_KINDS, "spec.listeners[]", LISTENER),
    block(LISTENER_SET_KINDS, "spec.parentRef", OBJECT_REF),
    block(
        &[Kind::Gateway],
        "spec",
        &[
            ("gatewayClassName", Length(1, 253)),
            ("addresses", Count(0, 16)),
        ],
    ),
    block(
        &[Kind::Gateway],
        "spec.addresses[]",
        &[
            ("type", Length(1, 253)),
            ("type", Pattern(Format::AddressType)),
            ("value", Length(1, 253)),
        ],
    ),
    // ReferenceGrant.
    block(
        &[Kind::ReferenceGrant],
        "spec",
        &[("from", Count(1, 16)), ("to", Count(1, 16))],
    ),
    block(&[Kind::ReferenceGrant], "spec.from[]", OBJECT_REF),
    block(&[Kind::ReferenceGrant], "spec.to[]", OBJECT_REF),
    // Istio selectors (keys and values are checked as label selectors by `validate`).
    block(
        ISTIO_SELECTED,
        "spec.selector",
        &[("matchLabels", Count(0, 4096))],
    ),
    // AuthorizationPolicy.
    block(TARGETED, "spec", &[("targetRefs", Count(0, 16))]),
    block(TARGETED, "spec.targetRef", POLICY_TARGET),
    block(TARGETED, "spec.targetRefs[]", POLICY_TARGET),
    // RequestAuthentication.
    block(
        &[Kind::RequestAuthentication],
        "spec",
        &[("jwtRules", Count(0, 4096))],
    ),
    block(
        &[Kind::RequestAuthentication],
        "spec.jwtRules[]",
        &[
            ("issuer", Length(1, UNBOUNDED)),
            ("fromHeaders[].name", Length(1, UNBOUNDED)),
            ("fromHeaders[].name", Pattern(Format::HeaderName)),
            ("outputPayloadToHeader", Pattern(Format::HeaderName)),
            ("outputClaimToHeaders[].header", Pattern(Format::HeaderName)),
            ("timeout", Pattern(Format::Duration)),
        ],
    ),
    // PeerAuthentication.
    block(
        &[Kind::PeerAuthentication],
        "spec",
        &[("portLevelMtls.{}", Port)],
    ),
    // ServiceEntry.
    block(
        &[Kind::ServiceEntry],
        "spec",
        &[
            ("hosts", Count(0, 256)),
            ("addresses", Count(0, 256)),
            ("addresses[]", Length(0, 64)),
            ("ports", Count(0, 256)),
            ("endpoints", Count(0, 4096)),
            ("workloadSelector.labels", Count(0, 256)),
        ],
    ),
    block(
        &[Kind::ServiceEntry],
        "spec.ports[]",
        &[
            ("number", Port),
            ("targetPort", Port),
            ("name", Length(0, 256)),
            ("protocol", Length(0, 256)),
        ],
    ),
    block(&[Kind::ServiceEntry], "spec.endpoints[]", WORKLOAD_ENTRY),
    block(
        &[Kind::ServiceEntry],
        "spec.workloadSelector.labels",
        LABEL_SELECTOR,
    ),
    // WorkloadEntry.
    block(&[Kind::WorkloadEntry], "spec", WORKLOAD_ENTRY),
];
