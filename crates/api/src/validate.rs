//! Per-object checks that the schema types cannot express: port ranges, CIDRs, label
//! selectors and enum-like strings of `k8s-openapi` types, and field combinations. Each problem
//! carries the path of the offending field so the loader can point at its line. The plain
//! bounds of the Istio and Gateway API CRDs (ranges, sizes, lengths, patterns) are data in
//! [`crate::constraints`], applied by [`crate::schema`].

use crate::finding::Code;
use crate::istio::{JwtRule, RequestAuthentication, ServiceEntry, WorkloadSelector};
use crate::object::Object;
use crate::suggest::Segment;
use k8s_openapi::api::core::v1::{PodSpec, PodTemplateSpec, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use std::collections::BTreeMap;

/// One problem in one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Finding code.
    pub code: Code,
    /// Path of the offending field (empty: the object itself).
    pub path: Vec<Segment>,
    /// What is wrong.
    pub message: String,
}

/// Builds a path from keys (`&str`) and indexes (`usize`).
macro_rules! path {
    ($($segment:expr),* $(,)?) => { vec![$(Segment::from($segment)),*] };
}

/// Like `path!` but builds an array, for arguments taken as slices.
macro_rules! at {
    ($($segment:expr),* $(,)?) => { [$(Segment::from($segment)),*] };
}

mod policy;
pub use policy::RESERVED_POLICY_PREFIX;

impl From<&str> for Segment {
    fn from(key: &str) -> Self {
        Segment::Key(key.to_owned())
    }
}

impl From<usize> for Segment {
    fn from(index: usize) -> Self {
        Segment::Index(index)
    }
}

#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn push(&mut self, code: Code, path: Vec<Segment>, message: impl Into<String>) {
        self.0.push(Problem {
            code,
            path,
            message: message.into(),
        });
    }

    fn port(&mut self, port: i64, path: Vec<Segment>) {
        if !(1..=65535).contains(&port) {
            self.push(
                Code::PortOutOfRange,
                path,
                format!("port {port} is out of range 1-65535"),
            );
        }
    }

    fn one_of(&mut self, value: Option<&str>, allowed: &[&str], path: Vec<Segment>) {
        if let Some(value) = value.filter(|v| !allowed.contains(v)) {
            let message = format!("\"{value}\" is not one of {}", allowed.join(", "));
            self.push(Code::InvalidEnum, path, message);
        }
    }

    fn cidr(&mut self, value: &str, path: Vec<Segment>) {
        let ok = value.parse::<ipnet::IpNet>().is_ok() || value.parse::<std::net::IpAddr>().is_ok();
        if !ok {
            self.push(
                Code::BadCidr,
                path,
                format!("\"{value}\" is not an IP address or CIDR"),
            );
        }
    }

    fn match_labels(&mut self, labels: &BTreeMap<String, String>, path: &[Segment]) {
        for (key, value) in labels {
            let mut at = path.to_vec();
            at.push(Segment::Key(key.clone()));
            if let Err(why) = check_label_key(key).and_then(|()| check_label_value(value)) {
                self.push(
                    Code::BadLabelSelector,
                    at,
                    format!("label {key}={value}: {why}"),
                );
            }
        }
    }

    fn label_selector(&mut self, selector: &LabelSelector, path: &[Segment]) {
        let mut at = path.to_vec();
        at.push("matchLabels".into());
        self.match_labels(
            selector.match_labels.as_ref().unwrap_or(&BTreeMap::new()),
            &at,
        );
        for (index, expression) in selector.match_expressions.iter().flatten().enumerate() {
            let mut at = path.to_vec();
            at.extend(path!("matchExpressions", index));
            let values = expression.values.as_ref().map_or(0, Vec::len);
            let problem = match expression.operator.as_str() {
                "In" | "NotIn" if values == 0 => {
                    Some(format!("operator {} needs values", expression.operator))
                }
                "Exists" | "DoesNotExist" if values > 0 => {
                    Some(format!("operator {} takes no values", expression.operator))
                }
                "In" | "NotIn" | "Exists" | "DoesNotExist" => None,
                other => Some(format!(
                    "operator \"{other}\" is not one of In, NotIn, Exists, DoesNotExist"
                )),
            };
            let key_problem = check_label_key(&expression.key).err();
            if let Some(why) = problem.or(key_problem) {
                self.push(Code::BadLabelSelector, at, why);
            }
        }
    }
}

/// Checks a label key (`[prefix/]name`).
fn check_label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = key
        .rsplit_once('/')
        .map_or((None, key), |(p, n)| (Some(p), n));
    if let Some(prefix) = prefix {
        let valid = !prefix.is_empty()
            && prefix.len() <= 253
            && prefix.split('.').all(|part| {
                !part.is_empty()
                    && part
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && !part.starts_with('-')
                    && !part.ends_with('-')
            });
        if !valid {
            return Err(format!("key prefix \"{prefix}\" is not a DNS subdomain"));
        }
    }
    if name.is_empty() {
        return Err("key name is empty".to_owned());
    }
    check_label_value(name).map_err(|why| format!("key name: {why}"))
}

/// Checks a label value: up to 63 chars, alphanumeric at both ends, `-_.` inside.
fn check_label_value(value: &str) -> Result<(), String> {
    let edges_ok = value.is_empty()
        || (value.starts_with(|c: char| c.is_ascii_alphanumeric())
            && value.ends_with(|c: char| c.is_ascii_alphanumeric()));
    let chars_ok = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if value.len() > 63 {
        Err(format!("\"{value}\" is longer than 63 characters"))
    } else if !edges_ok || !chars_ok {
        Err(format!(
            "\"{value}\" must be alphanumeric, '-', '_' or '.', starting and ending alphanumeric"
        ))
    } else {
        Ok(())
    }
}

/// Every problem of one object.
#[must_use]
pub fn check_object(object: &Object) -> Vec<Problem> {
    let mut problems = Problems::default();
    if object.name().is_empty() {
        problems.push(
            Code::MissingName,
            path!("metadata"),
            "metadata.name is required",
        );
    }
    match object {
        Object::Service(service) => check_service(service, &mut problems),
        Object::Pod(pod) => check_pod_spec(pod.spec.as_ref(), &at!("spec"), &mut problems),
        Object::Deployment(d) => {
            let spec = d.spec.as_ref();
            check_replicas(spec.and_then(|s| s.replicas), &mut problems);
            check_workload(
                spec.map(|s| &s.selector),
                spec.map(|s| &s.template),
                &mut problems,
            );
        }
        Object::StatefulSet(s) => {
            let spec = s.spec.as_ref();
            check_replicas(spec.and_then(|s| s.replicas), &mut problems);
            check_workload(
                spec.map(|s| &s.selector),
                spec.map(|s| &s.template),
                &mut problems,
            );
        }
        Object::DaemonSet(d) => {
            let spec = d.spec.as_ref();
            check_workload(
                spec.map(|s| &s.selector),
                spec.map(|s| &s.template),
                &mut problems,
            );
        }
        Object::Node(node) => {
            let spec = node.spec.as_ref();
            if let Some(cidr) = spec.and_then(|s| s.pod_cidr.as_deref()) {
                problems.cidr(cidr, path!("spec", "podCIDR"));
            }
            for (i, cidr) in spec
                .and_then(|s| s.pod_cidrs.as_ref())
                .into_iter()
                .flatten()
                .enumerate()
            {
                problems.cidr(cidr, path!("spec", "podCIDRs", i));
            }
        }
        Object::AuthorizationPolicy(policy) => {
            policy::check_authorization_policy(policy, &mut problems);
        }
        Object::PeerAuthentication(peer) => {
            policy::check_peer_authentication(peer, &mut problems);
        }
        Object::RequestAuthentication(authn) => check_request_authentication(authn, &mut problems),
        Object::ServiceEntry(entry) => check_service_entry(entry, &mut problems),
        _ => {}
    }
    problems.0
}

fn check_service(service: &Service, problems: &mut Problems) {
    let Some(spec) = service.spec.as_ref() else {
        return;
    };
    problems.one_of(
        spec.type_.as_deref(),
        &["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"],
        path!("spec", "type"),
    );
    if let Some(selector) = &spec.selector {
        problems.match_labels(selector, &at!("spec", "selector"));
    }
    let cluster_ip = spec
        .cluster_ip
        .as_deref()
        .filter(|ip| !ip.is_empty() && *ip != "None");
    if let Some(ip) = cluster_ip.filter(|ip| ip.parse::<std::net::IpAddr>().is_err()) {
        problems.push(
            Code::BadCidr,
            path!("spec", "clusterIP"),
            format!("\"{ip}\" is not an IP address"),
        );
    }
    for (i, port) in spec.ports.iter().flatten().enumerate() {
        problems.port(i64::from(port.port), path!("spec", "ports", i, "port"));
        problems.one_of(
            port.protocol.as_deref(),
            &["TCP", "UDP", "SCTP"],
            path!("spec", "ports", i, "protocol"),
        );
        if let Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(target)) =
            &port.target_port
        {
            problems.port(i64::from(*target), path!("spec", "ports", i, "targetPort"));
        }
    }
}

fn check_pod_spec(spec: Option<&PodSpec>, at: &[Segment], problems: &mut Problems) {
    let Some(spec) = spec else { return };
    for (c, container) in spec.containers.iter().enumerate() {
        if container.name.is_empty() {
            let mut path = at.to_vec();
            path.extend(path!("containers", c));
            problems.push(
                Code::MissingField,
                path,
                format!("containers[{c}].name is required"),
            );
        }
        for (p, port) in container.ports.iter().flatten().enumerate() {
            let mut path = at.to_vec();
            path.extend(path!("containers", c, "ports", p));
            let mut port_path = path.clone();
            port_path.push("containerPort".into());
            problems.port(i64::from(port.container_port), port_path);
            path.push("protocol".into());
            problems.one_of(port.protocol.as_deref(), &["TCP", "UDP", "SCTP"], path);
        }
    }
}

/// `spec.replicas`: not negative (as Kubernetes requires), and within the pods weft runs
/// for one workload ([`crate::expand::MAX_REPLICAS`]).
fn check_replicas(replicas: Option<i32>, problems: &mut Problems) {
    let max = crate::expand::MAX_REPLICAS;
    match replicas {
        Some(n) if n < 0 => problems.push(
            Code::OutOfRange,
            path!("spec", "replicas"),
            format!("is {n}; allowed: 0 or more"),
        ),
        Some(n) if n > max => problems.push(
            Code::OverLimit,
            path!("spec", "replicas"),
            format!(
                "is {n}, over weft's limit of {max} pods per workload (each replica is a pod \
                 of the mesh)"
            ),
        ),
        _ => {}
    }
}

fn check_workload(
    selector: Option<&LabelSelector>,
    template: Option<&PodTemplateSpec>,
    problems: &mut Problems,
) {
    if let Some(selector) = selector {
        problems.label_selector(selector, &at!("spec", "selector"));
        let template_labels = template
            .and_then(|t| t.metadata.as_ref())
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        if !crate::selector::label_selector_matches(selector, &template_labels) {
            let message = "spec.selector does not match spec.template.metadata.labels; the workload would own no pods";
            problems.push(Code::BadLabelSelector, path!("spec", "selector"), message);
        }
    }
    check_pod_spec(
        template.and_then(|t| t.spec.as_ref()),
        &at!("spec", "template", "spec"),
        problems,
    );
}

fn check_workload_selector(selector: Option<&WorkloadSelector>, problems: &mut Problems) {
    if let Some(selector) = selector {
        problems.match_labels(
            &selector.match_labels,
            &at!("spec", "selector", "matchLabels"),
        );
    }
}

fn check_request_authentication(authn: &RequestAuthentication, problems: &mut Problems) {
    let spec = &authn.spec;
    check_workload_selector(spec.selector.as_ref(), problems);
    let has_targets =
        spec.target_ref.is_some() || spec.target_refs.as_ref().is_some_and(|t| !t.is_empty());
    if spec.selector.is_some() && has_targets {
        let message = "selector and targetRefs are mutually exclusive: targetRefs attach the rules \
                       to a waypoint or gateway, a selector to workloads";
        problems.push(Code::InvalidValue, path!("spec", "targetRefs"), message);
    }
    for (r, rule) in spec.jwt_rules.iter().flatten().enumerate() {
        check_jwt_rule(rule, r, problems);
    }
}

fn check_jwt_rule(rule: &JwtRule, r: usize, problems: &mut Problems) {
    if let Some(jwks) = &rule.jwks
        && let Err(why) = check_jwks(jwks)
    {
        let message = format!("spec.jwtRules[{r}].jwks is not a JSON Web Key Set: {why}");
        problems.push(
            Code::InvalidValue,
            path!("spec", "jwtRules", r, "jwks"),
            message,
        );
    }
    if let Some(uri) = rule.jwks_uri.as_deref()
        && !(uri.starts_with("https://") || uri.starts_with("http://"))
    {
        let message = format!("spec.jwtRules[{r}].jwksUri \"{uri}\" is not an http(s) URL");
        problems.push(
            Code::InvalidValue,
            path!("spec", "jwtRules", r, "jwksUri"),
            message,
        );
    }
}

/// A JWKS is a JSON object whose `keys` is a list of objects.
fn check_jwks(text: &str) -> Result<(), String> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let keys = value
        .get("keys")
        .and_then(serde_json::Value::as_array)
        .ok_or("it has no \"keys\" list")?;
    match keys.iter().position(|k| !k.is_object()) {
        Some(i) => Err(format!("keys[{i}] is not an object")),
        None => Ok(()),
    }
}

fn check_service_entry(entry: &ServiceEntry, problems: &mut Problems) {
    let spec = &entry.spec;
    if spec.hosts.is_empty() {
        problems.push(
            Code::MissingField,
            path!("spec", "hosts"),
            "spec.hosts needs at least one host",
        );
    }
    for (i, address) in spec.addresses.iter().flatten().enumerate() {
        problems.cidr(address, path!("spec", "addresses", i));
    }
    if spec.endpoints.is_some() && spec.workload_selector.is_some() {
        let message = "endpoints and workloadSelector are mutually exclusive";
        problems.push(
            Code::InvalidValue,
            path!("spec", "workloadSelector"),
            message,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_syntax() {
        assert!(check_label_key("app").is_ok());
        assert!(check_label_key("istio.io/dataplane-mode").is_ok());
        assert!(check_label_key("bad key").is_err());
        assert!(check_label_key("Bad_Prefix/x").is_err());
        assert!(check_label_value("").is_ok());
        assert!(check_label_value("-x").is_err());
        assert!(check_label_value(&"a".repeat(64)).is_err());
    }
}
