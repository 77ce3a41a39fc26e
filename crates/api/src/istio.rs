//! Istio resources: `security.istio.io` (`AuthorizationPolicy`, `PeerAuthentication`,
//! `RequestAuthentication`) and
//! `networking.istio.io` (`ServiceEntry`, `WorkloadEntry`), versions `v1` and `v1beta1`
//! (same schema). Written from the public API reference; field names are the upstream
//! camelCase ones. Every field is optional unless the upstream API requires it.

use crate::resource::Resource;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `security.istio.io` `AuthorizationPolicy`.
pub type AuthorizationPolicy = Resource<AuthorizationPolicySpec>;
/// The annotation that makes an AuthorizationPolicy dry-run (`"true"`, case-insensitive):
/// evaluated and reported, never enforced.
pub const DRY_RUN_ANNOTATION: &str = "istio.io/dry-run";

impl AuthorizationPolicy {
    /// Whether [`DRY_RUN_ANNOTATION`] is `"true"` (any case).
    #[must_use]
    pub fn is_dry_run(&self) -> bool {
        let annotations = self.metadata.annotations.as_ref();
        annotations
            .and_then(|a| a.get(DRY_RUN_ANNOTATION))
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }
}

impl WorkloadEntry {
    /// The labels the workload has (what selectors match): `metadata.labels` overlaid by
    /// `spec.labels`.
    #[must_use]
    pub fn workload_labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.metadata.labels.clone().unwrap_or_default();
        labels.extend(self.spec.labels.clone().unwrap_or_default());
        labels
    }
}

/// `security.istio.io` `PeerAuthentication`.
pub type PeerAuthentication = Resource<PeerAuthenticationSpec>;
/// `security.istio.io` `RequestAuthentication`.
pub type RequestAuthentication = Resource<RequestAuthenticationSpec>;
/// `networking.istio.io` `ServiceEntry`.
pub type ServiceEntry = Resource<ServiceEntrySpec>;
/// `networking.istio.io` `WorkloadEntry`.
pub type WorkloadEntry = Resource<WorkloadEntrySpec>;

/// Label selector used by Istio security resources (`matchLabels` only).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadSelector {
    /// Labels a workload must carry (all of them) to be selected.
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
}

/// Reference to the resource a policy attaches to (a `Gateway`, `Service` or `ServiceEntry`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyTargetReference {
    /// API group of the target (`""` for core, `gateway.networking.k8s.io`...).
    #[serde(default)]
    pub group: Option<String>,
    /// Kind of the target, e.g. `Gateway` or `Service`.
    pub kind: String,
    /// Name of the target.
    pub name: String,
    /// Namespace of the target; must equal the policy's namespace when set.
    #[serde(default)]
    pub namespace: Option<String>,
}

/// `AuthorizationPolicy.spec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizationPolicySpec {
    /// Workloads the policy applies to (node-proxy enforcement).
    pub selector: Option<WorkloadSelector>,
    /// Deprecated single target reference.
    pub target_ref: Option<PolicyTargetReference>,
    /// Gateways, waypoints or services the policy attaches to (proxy enforcement).
    pub target_refs: Option<Vec<PolicyTargetReference>>,
    /// Rules; a missing or empty list matches nothing.
    pub rules: Option<Vec<Rule>>,
    /// What to do when a rule matches; default ALLOW.
    pub action: Option<Action>,
    /// Extension provider used with action CUSTOM.
    pub provider: Option<ExtensionProvider>,
}

/// Authorization action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Action {
    /// Allow a request only if it matches a rule.
    Allow,
    /// Deny a request if it matches a rule.
    Deny,
    /// Record a matching request; no effect on the decision.
    Audit,
    /// Delegate the decision to an extension provider.
    Custom,
}

/// Extension provider of a CUSTOM policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExtensionProvider {
    /// Provider name from the mesh config.
    pub name: Option<String>,
}

/// One rule: all of `from`, `to` and `when` must match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    /// Sources; any one matching is enough.
    pub from: Option<Vec<RuleFrom>>,
    /// Operations; any one matching is enough.
    pub to: Option<Vec<RuleTo>>,
    /// Extra conditions; all must match.
    pub when: Option<Vec<Condition>>,
}

/// `rules[].from[]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleFrom {
    /// The source of the request.
    pub source: Option<Source>,
}

/// `rules[].to[]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleTo {
    /// The operation of the request.
    pub operation: Option<Operation>,
}

/// Request source attributes. Empty lists mean "not checked".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    /// Peer identities (`<trust-domain>/ns/<ns>/sa/<sa>`), `*` prefix/suffix wildcards.
    pub principals: Option<Vec<String>>,
    /// Negated `principals`.
    pub not_principals: Option<Vec<String>>,
    /// JWT request principals (`iss/sub`); L7 only.
    pub request_principals: Option<Vec<String>>,
    /// Negated `request_principals`; L7 only.
    pub not_request_principals: Option<Vec<String>>,
    /// Source namespaces (from the peer identity).
    pub namespaces: Option<Vec<String>>,
    /// Negated `namespaces`.
    pub not_namespaces: Option<Vec<String>>,
    /// Source service accounts (`ns/name` or `name` in the policy namespace).
    pub service_accounts: Option<Vec<String>>,
    /// Negated `service_accounts`.
    pub not_service_accounts: Option<Vec<String>>,
    /// Source IPs or CIDRs of the peer connection.
    pub ip_blocks: Option<Vec<String>>,
    /// Negated `ip_blocks`.
    pub not_ip_blocks: Option<Vec<String>>,
    /// Original client IPs (from X-Forwarded-For / PROXY protocol).
    pub remote_ip_blocks: Option<Vec<String>>,
    /// Negated `remote_ip_blocks`.
    pub not_remote_ip_blocks: Option<Vec<String>>,
}

/// Request operation attributes. Empty lists mean "not checked".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    /// HTTP Host / authority values; L7 only.
    pub hosts: Option<Vec<String>>,
    /// Negated `hosts`; L7 only.
    pub not_hosts: Option<Vec<String>>,
    /// Destination ports, as strings.
    pub ports: Option<Vec<String>>,
    /// Negated `ports`.
    pub not_ports: Option<Vec<String>>,
    /// HTTP methods; L7 only.
    pub methods: Option<Vec<String>>,
    /// Negated `methods`; L7 only.
    pub not_methods: Option<Vec<String>>,
    /// HTTP paths; L7 only.
    pub paths: Option<Vec<String>>,
    /// Negated `paths`; L7 only.
    pub not_paths: Option<Vec<String>>,
}

/// `rules[].when[]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Attribute name, e.g. `source.ip` or `request.headers[x-user]`.
    pub key: String,
    /// Accepted values.
    pub values: Option<Vec<String>>,
    /// Rejected values.
    pub not_values: Option<Vec<String>>,
}

/// `PeerAuthentication.spec`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerAuthenticationSpec {
    /// Workloads the policy applies to; absent means the whole namespace.
    pub selector: Option<WorkloadSelector>,
    /// Mode for all ports.
    pub mtls: Option<MutualTls>,
    /// Per-port overrides, keyed by the workload (target) port.
    pub port_level_mtls: Option<BTreeMap<u32, MutualTls>>,
}

/// mTLS setting.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MutualTls {
    /// The mode; default UNSET (inherit).
    pub mode: Option<MtlsMode>,
}

/// Peer authentication mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MtlsMode {
    /// Inherit from the parent scope.
    Unset,
    /// Plaintext is not accepted.
    Disable,
    /// Both mTLS and plaintext are accepted.
    Permissive,
    /// Only mTLS is accepted.
    Strict,
}

/// `RequestAuthentication.spec`: which JWTs a proxy accepts. A request carrying an invalid
/// token is rejected; a request without one is not (an AuthorizationPolicy requiring
/// `requestPrincipals` does that).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestAuthenticationSpec {
    /// Workloads it applies to (sidecar/gateway form); exclusive with `targetRefs`.
    pub selector: Option<WorkloadSelector>,
    /// Deprecated single target reference.
    pub target_ref: Option<PolicyTargetReference>,
    /// Gateways, waypoints or services it attaches to.
    pub target_refs: Option<Vec<PolicyTargetReference>>,
    /// Accepted token issuers and how to verify and find their tokens.
    pub jwt_rules: Option<Vec<JwtRule>>,
}

/// `RequestAuthentication.spec.jwtRules[]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JwtRule {
    /// The `iss` a token must carry (required).
    pub issuer: String,
    /// Accepted `aud` values; empty accepts any audience.
    pub audiences: Option<Vec<String>>,
    /// URL of the issuer's JSON Web Key Set.
    pub jwks_uri: Option<String>,
    /// The JSON Web Key Set inline (takes precedence over `jwksUri`).
    pub jwks: Option<String>,
    /// Headers the token is read from; default `Authorization: Bearer <token>`.
    pub from_headers: Option<Vec<JwtHeader>>,
    /// Query parameters the token is read from.
    pub from_params: Option<Vec<String>>,
    /// Cookies the token is read from.
    pub from_cookies: Option<Vec<String>>,
    /// Header that receives the verified payload (base64url).
    pub output_payload_to_header: Option<String>,
    /// Claims copied into request headers.
    pub output_claim_to_headers: Option<Vec<ClaimToHeader>>,
    /// Keep the token in the request forwarded upstream.
    pub forward_original_token: Option<bool>,
    /// How long fetching `jwksUri` may take, e.g. `5s`.
    pub timeout: Option<String>,
}

/// `jwtRules[].fromHeaders[]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JwtHeader {
    /// Header name (required).
    pub name: String,
    /// Prefix before the token in the value, e.g. `Bearer `.
    pub prefix: Option<String>,
}

/// `jwtRules[].outputClaimToHeaders[]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimToHeader {
    /// Request header to set.
    pub header: String,
    /// Claim whose value it receives.
    pub claim: String,
}

/// `ServiceEntry.spec`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceEntrySpec {
    /// Hostnames of the service (required).
    pub hosts: Vec<String>,
    /// Virtual IPs or CIDRs of the service.
    pub addresses: Option<Vec<String>>,
    /// Ports of the service.
    pub ports: Option<Vec<ServicePort>>,
    /// Whether the service is inside or outside the mesh.
    pub location: Option<Location>,
    /// How endpoints are discovered.
    pub resolution: Option<Resolution>,
    /// Static endpoints.
    pub endpoints: Option<Vec<WorkloadEntrySpec>>,
    /// Selects `WorkloadEntry`s and pods as endpoints (exclusive with `endpoints`).
    pub workload_selector: Option<EntryWorkloadSelector>,
    /// Namespaces the entry is visible to (`.`, `*` or names).
    pub export_to: Option<Vec<String>>,
    /// Identities the service's servers may present.
    pub subject_alt_names: Option<Vec<String>>,
}

/// `ServiceEntry.spec.workloadSelector`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EntryWorkloadSelector {
    /// Labels an endpoint must carry.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// `ServiceEntry.spec.ports[]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePort {
    /// Port number (required).
    pub number: u32,
    /// Protocol: HTTP, HTTPS, GRPC, HTTP2, MONGO, TCP, TLS.
    pub protocol: Option<String>,
    /// Port name (required upstream for some resolutions; unique in the entry).
    pub name: Option<String>,
    /// Port on the endpoints, when it differs from `number`.
    pub target_port: Option<u32>,
}

/// `ServiceEntry.spec.location`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Location {
    /// Outside the mesh (no mTLS to it).
    MeshExternal,
    /// Part of the mesh.
    MeshInternal,
}

/// `ServiceEntry.spec.resolution`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Resolution {
    /// Use the original destination address.
    None,
    /// Use the static endpoint addresses.
    Static,
    /// Resolve endpoints by DNS, connect to all answers.
    Dns,
    /// Resolve by DNS, use the first answer.
    DnsRoundRobin,
    /// Resolved by the proxy at request time.
    DynamicDns,
}

/// `WorkloadEntry.spec` (also used for `ServiceEntry.spec.endpoints[]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadEntrySpec {
    /// IP address or hostname (or `unix://` path) of the workload.
    pub address: Option<String>,
    /// Port name to port number on this workload.
    pub ports: Option<BTreeMap<String, u32>>,
    /// Labels of the workload.
    pub labels: Option<BTreeMap<String, String>>,
    /// Network the workload is on.
    pub network: Option<String>,
    /// Locality `region/zone/subzone`.
    pub locality: Option<String>,
    /// Load-balancing weight.
    pub weight: Option<u32>,
    /// Service account of the workload (identity).
    pub service_account: Option<String>,
}
