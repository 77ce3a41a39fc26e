//! Findings reported by loading, validation and analysis, and their stable codes.

use crate::object::{ObjectRef, Source};
use serde::Serialize;
use std::fmt;

/// How bad a finding is. `error` makes `weft validate`/`weft analyze` exit 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The configuration is wrong or will not do what it says.
    Error,
    /// Probably a mistake, or weft will enforce it differently from how it reads.
    Warning,
    /// Worth knowing; nothing is wrong.
    Info,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        })
    }
}

macro_rules! codes {
    ($( $variant:ident = $code:literal, $severity:ident, $doc:literal; )*) => {
        /// Stable finding codes. The string form never changes once released; see the
        /// crate README for the table.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Code { $( #[doc = $doc] $variant, )* }

        impl Code {
            /// Every code, for documentation and tests.
            pub const ALL: &'static [Code] = &[ $( Code::$variant, )* ];

            /// The kebab-case code printed in reports.
            #[must_use]
            pub fn as_str(self) -> &'static str {
                match self { $( Code::$variant => $code, )* }
            }

            /// The severity findings with this code have.
            #[must_use]
            pub fn severity(self) -> Severity {
                match self { $( Code::$variant => Severity::$severity, )* }
            }

            /// One line saying what the code means.
            #[must_use]
            pub fn description(self) -> &'static str {
                match self { $( Code::$variant => $doc, )* }
            }
        }
    };
}

codes! {
    ReadError = "read-error", Error, "A file or directory could not be read.";
    YamlSyntax = "yaml-syntax", Error, "The file is not valid YAML (line and column given).";
    DuplicateKey = "duplicate-key", Error, "A mapping has the same key twice (Kubernetes' strict decoding refuses it too); both lines are named.";
    NotAnObject = "not-an-object", Error, "A YAML document is not a mapping with apiVersion and kind.";
    UnknownKind = "unknown-kind", Info, "A kind weft does not read; the object is skipped.";
    UnsupportedVersion = "unsupported-api-version", Warning, "A known kind at an apiVersion weft does not read; skipped.";
    UnknownField = "unknown-field", Error, "A field the kind's schema does not have (typo?).";
    WrongType = "wrong-type", Error, "A field has the wrong type (e.g. text where a number is expected).";
    MissingField = "missing-field", Error, "A required field is missing.";
    InvalidEnum = "invalid-enum", Error, "A field holds a value outside its allowed set.";
    InvalidValue = "invalid-value", Error, "A field holds a value of the right type but not allowed.";
    MissingName = "missing-name", Error, "metadata.name is missing or empty.";
    PortOutOfRange = "port-out-of-range", Error, "A port number is not in 1..=65535.";
    OutOfRange = "out-of-range", Error, "A number is outside the minimum..maximum of its upstream schema (e.g. a backendRef weight).";
    BadItemCount = "bad-item-count", Error, "A list or map has fewer or more entries than its upstream schema allows (minItems/maxItems).";
    BadLength = "bad-length", Error, "A string is shorter or longer than its upstream schema allows (minLength/maxLength).";
    BadFormat = "bad-format", Error, "A string does not match the pattern of its upstream schema (hostname, name, duration...).";
    BadCidr = "bad-cidr", Error, "An IP address or CIDR does not parse.";
    BadLabelSelector = "bad-label-selector", Error, "A label selector has an invalid key, value or operator.";
    DuplicateObject = "duplicate-object", Error, "Two objects have the same kind, namespace and name.";
    PolicySelectorAndTargetRefs = "policy-selector-and-targetrefs", Error, "An AuthorizationPolicy sets both selector and targetRefs.";
    PolicyL7WithoutWaypoint = "policy-l7-without-waypoint", Warning, "An AuthorizationPolicy uses L7 fields but is enforced at L4 (no waypoint).";
    PolicyPrincipalScheme = "policy-principal-spiffe-scheme", Warning, "An AuthorizationPolicy principal is written with spiffe://; principals are compared without the scheme (as in Istio), so it matches no peer.";
    PolicyTargetNotFound = "policy-target-not-found", Error, "An AuthorizationPolicy targetRef names nothing that exists.";
    PolicyTargetNoWaypoint = "policy-target-without-waypoint", Warning, "An AuthorizationPolicy targets a Service that has no waypoint, so nothing enforces it.";
    PolicyEnforcement = "policy-enforcement", Info, "Which proxy enforces an AuthorizationPolicy or RequestAuthentication (node proxies at L4, a waypoint, or none).";
    PeerAuthPortNotExposed = "peerauth-port-not-exposed", Warning, "portLevelMtls names a port no selected workload exposes.";
    PeerAuthNamespaceConflict = "peerauth-namespace-conflict", Error, "More than one namespace-wide PeerAuthentication in a namespace.";
    RouteParentNotFound = "route-parent-not-found", Error, "A route's parentRef names no Gateway, ListenerSet or Service, or no listener of the Gateway (status NoMatchingParent).";
    RouteParentNotAllowed = "route-parent-not-allowed", Error, "No listener the parentRef names allows the route's kind or namespace (status NotAllowedByListeners).";
    RouteNoMatchingHostname = "route-no-matching-hostname", Error, "A route's hostnames intersect none of its Gateway listeners' hostnames (status NoMatchingListenerHostname).";
    RouteBackendNotFound = "route-backend-not-found", Error, "A route's backendRef names no Service (or no such port) or ServiceEntry (status BackendNotFound).";
    RouteBackendInvalidKind = "route-backend-invalid-kind", Error, "A route's backendRef is of a kind weft does not route to (status InvalidKind).";
    RouteCrossNamespaceNoGrant = "route-cross-namespace-no-grant", Error, "A route refers to another namespace without a ReferenceGrant there (status RefNotPermitted).";
    GatewayListenerNotAccepted = "gateway-listener-not-accepted", Error, "A Gateway listener is not Accepted (UnsupportedProtocol, NoValidCACertificate): it is not served.";
    GatewayListenerConflicted = "gateway-listener-conflicted", Error, "A Gateway listener conflicts with an earlier one on its port (ProtocolConflict, HostnameConflict): it is not served.";
    GatewayListenerRefsNotResolved = "gateway-listener-refs-not-resolved", Error, "A Gateway listener's certificateRefs, frontend CA references or allowedRoutes.kinds do not resolve (InvalidCertificateRef, InvalidCACertificateRef, InvalidCACertificateKind, RefNotPermitted, InvalidRouteKinds).";
    GatewayRefsNotResolved = "gateway-refs-not-resolved", Error, "A Gateway's spec.tls.backend.clientCertificateRef does not resolve (InvalidClientCertificateRef, RefNotPermitted): no client certificate is presented to backends.";
    BackendTlsTargetNotFound = "backend-tls-target-not-found", Warning, "A BackendTLSPolicy targetRef names no Service or ServiceEntry (or no port of it) in its namespace: it applies to nothing there.";
    BackendTlsCaNotFound = "backend-tls-ca-not-found", Error, "A BackendTLSPolicy caCertificateRef is not a ConfigMap of its namespace with a PEM ca.crt, nor a ClusterTrustBundle: proxies refuse to connect to its targets.";
    RouteNeedsWaypoint = "route-needs-waypoint", Warning, "A route attached to a Service that has no waypoint is not enforced in ambient mode.";
    ServiceSelectsNoPods = "service-selects-no-pods", Warning, "A Service selector matches no Pod (bare or from a workload template) and no WorkloadEntry.";
    WaypointNotFound = "waypoint-not-found", Error, "istio.io/use-waypoint names a waypoint Gateway that does not exist.";
    WaypointNamespaceNotAllowed = "waypoint-namespace-not-allowed", Error, "istio.io/use-waypoint-namespace names a waypoint whose HBONE listener's allowedRoutes.namespaces does not allow the labelled object's namespace; the waypoint is not used.";
    ServiceAddressConflict = "service-address-conflict", Error, "A ServiceEntry claims a VIP that a Kubernetes Service or an older ServiceEntry already has; the VIP is dropped from it.";
    WorkloadAddressConflict = "workload-address-conflict", Warning, "A WorkloadEntry's address is already a pod's or an older WorkloadEntry's on the same network: proxies find workloads by address and cannot tell them apart.";
    ServiceEntryWithoutAddress = "service-entry-without-address", Warning, "A ServiceEntry host without addresses gets no VIP (weft allocates none) and no route sends to the entry: captured pods' connections to the host are not routed as the entry's service (no waypoint, service policy or telemetry for it).";
    ServiceEntryEndpointLabelIgnored = "service-entry-endpoint-label-ignored", Warning, "A ServiceEntry endpoint is labelled networking.istio.io/tunnel or ambient.istio.io/redirection, which are read from the entry itself (as in Istio), never from its endpoints: the endpoint's tunnel does not change.";
    IgnoredPath = "ignored-path", Info, "A path was skipped because a .weftignore file lists it.";
    NotARegularFile = "not-a-regular-file", Error, "A manifest path is a FIFO, socket or device (directly or through a symlink); it is not read.";
    OverLimit = "over-limit", Error, "A file or YAML document is over weft's size or nesting-depth limit (it is not read), or workloads ask for more pods than weft runs (per workload or in all).";
    DirectoryLoop = "directory-loop", Warning, "A directory is reached a second time (a symlink loop or a second link to it); it is read once.";
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// One problem (or note) about the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Severity (from the code).
    pub severity: Severity,
    /// Stable code.
    pub code: Code,
    /// The object concerned, when known (not for YAML syntax errors).
    pub object: Option<ObjectRef>,
    /// File and line.
    pub source: Source,
    /// What is wrong and what to do.
    pub message: String,
}

impl Finding {
    /// A finding with the code's default severity.
    pub fn new(
        code: Code,
        object: Option<ObjectRef>,
        source: Source,
        message: impl Into<String>,
    ) -> Self {
        Finding {
            severity: code.severity(),
            code,
            object,
            source,
            message: message.into(),
        }
    }
}

/// `error|warning|info  <code>  <kind>/<namespace>/<name>  <file>:<line>  <message>`
/// (`-` in place of an unknown object).
impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let object = self
            .object
            .as_ref()
            .map_or_else(|| "-".to_owned(), ToString::to_string);
        write!(
            f,
            "{}  {}  {}  {}  {}",
            self.severity, self.code, object, self.source, self.message
        )
    }
}

/// Whether any finding is an error.
#[must_use]
pub fn has_errors(findings: &[Finding]) -> bool {
    findings.iter().any(|f| f.severity == Severity::Error)
}

/// Sorts findings by file, line, then code, so output is stable.
pub fn sort_findings(findings: &mut [Finding]) {
    findings.sort_by(|a, b| (&a.source, a.code, &a.object).cmp(&(&b.source, b.code, &b.object)));
}
