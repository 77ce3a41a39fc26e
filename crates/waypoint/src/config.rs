//! The waypoint's configuration: one `weft.l7.v1.Waypoint` resource, validated and compiled
//! once when it arrives ([`WaypointConfig::compile`]) into what a request needs — the bound
//! services by key with their ports' protocols and route tables, and the authorization
//! policies that apply to each service, precompiled into a [`PolicySet`]. A resource that
//! does not validate is refused with a [`ConfigError`] naming the field, and the previous
//! configuration stays in force.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use weft_l7::jwt::JwtValidator;
use weft_policy::{CompiledPolicy, PolicySet};
use weft_proto::l7::{self as pb, Protocol};

use crate::routing::Routes;

/// Why a Waypoint resource was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("waypoint {resource}: {field}: {reason}")]
pub struct ConfigError {
    /// The resource name (`<ns>/<name>`).
    pub resource: String,
    /// Path of the offending field, e.g. `services[1].ports[0].port`.
    pub field: String,
    /// What is wrong.
    pub reason: String,
}

/// A service port bound to the waypoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoundPort {
    /// The service port.
    pub port: u16,
    /// How its traffic is parsed.
    pub protocol: Protocol,
}

/// A service whose traffic goes through the waypoint.
#[derive(Debug)]
pub struct BoundService {
    /// `<namespace>/<hostname>`.
    pub key: String,
    /// The service's hostname.
    pub hostname: String,
    /// Its ports.
    pub ports: Vec<BoundPort>,
    /// Its attached routes, compiled.
    pub routes: Routes,
    /// The policies that apply to its requests.
    pub policies: Arc<PolicySet>,
}

impl BoundService {
    /// The protocol of `port`; a port the resource does not list is sniffed.
    #[must_use]
    pub fn protocol(&self, port: u16) -> Protocol {
        self.ports
            .iter()
            .find(|p| p.port == port)
            .map_or(Protocol::Detect, |p| p.protocol)
    }
}

/// The compiled configuration of one waypoint.
#[derive(Debug, Default)]
pub struct WaypointConfig {
    /// `<namespace>/<name>` of the Gateway.
    pub key: String,
    services: HashMap<String, Arc<BoundService>>,
    workloads: HashSet<String>,
    /// Policies attached to the waypoint itself (every request through it).
    waypoint_policies: Arc<PolicySet>,
    /// Trusted X-Forwarded-For hops.
    pub trusted_hops: u32,
    /// RequestAuthentication rules, compiled (a rule that cannot be compiled rejects every
    /// token of its issuer).
    pub jwt: JwtValidator,
    /// TLS towards backends (BackendTLSPolicy).
    pub backend_tls: crate::backend_tls::BackendTlsSet,
    /// The resource as received (for the admin config dump).
    pub resource: pb::Waypoint,
}

impl WaypointConfig {
    /// Validates and compiles `waypoint`, received under `resource_name`.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the first malformed field.
    pub fn compile(resource_name: &str, waypoint: &pb::Waypoint) -> Result<Self, ConfigError> {
        let err = |field: String, reason: String| ConfigError {
            resource: resource_name.to_owned(),
            field,
            reason,
        };
        let key = format!("{}/{}", waypoint.namespace, waypoint.name);
        if key != resource_name {
            return Err(err(
                "name".into(),
                format!("the resource is named {resource_name:?} but describes {key:?}"),
            ));
        }
        let policies = compile_policies(&waypoint.policies).map_err(|(f, r)| err(f, r))?;
        let attached_to =
            |service: Option<&str>| policy_set(&policies, |targets| applies(targets, service));
        let mut services = HashMap::new();
        for (index, service) in waypoint.services.iter().enumerate() {
            let bound = compile_service(service, attached_to(Some(&service.key)))
                .map_err(|(f, r)| err(format!("services[{index}].{f}"), r))?;
            if services
                .insert(bound.key.clone(), Arc::new(bound))
                .is_some()
            {
                return Err(err(
                    format!("services[{index}].key"),
                    format!("service {:?} is listed twice", service.key),
                ));
            }
        }
        let (jwt, jwt_errors) = JwtValidator::new_lenient(&waypoint.jwt_rules);
        for error in &jwt_errors {
            tracing::warn!(resource = resource_name, %error, "tokens of this issuer are rejected");
        }
        Ok(Self {
            key,
            services,
            workloads: waypoint.workloads.iter().cloned().collect(),
            waypoint_policies: Arc::new(attached_to(None)),
            trusted_hops: waypoint.trusted_hops,
            jwt,
            backend_tls: crate::backend_tls::BackendTlsSet::compile(&waypoint.backend_tls),
            resource: waypoint.clone(),
        })
    }

    /// The bound service with this key.
    #[must_use]
    pub fn service(&self, key: &str) -> Option<&Arc<BoundService>> {
        self.services.get(key)
    }

    /// Whether traffic addressed to the workload `uid` goes through this waypoint.
    #[must_use]
    pub fn takes_workload(&self, uid: &str) -> bool {
        self.workloads.contains(uid)
    }

    /// The policies for a request to `service` (or to a workload: the waypoint's own).
    #[must_use]
    pub fn policies<'a>(&'a self, service: Option<&'a BoundService>) -> &'a Arc<PolicySet> {
        service.map_or(&self.waypoint_policies, |s| &s.policies)
    }

    /// Number of bound services.
    #[must_use]
    pub fn service_count(&self) -> usize {
        self.services.len()
    }
}

type FieldError = (String, String);

/// A compiled policy and the service keys it is attached to (empty: all).
type Attached = (Arc<CompiledPolicy>, Vec<String>);

fn compile_policies(policies: &[pb::Policy]) -> Result<Vec<Attached>, FieldError> {
    policies
        .iter()
        .enumerate()
        .map(|(index, policy)| {
            let field = format!("policies[{index}].policy");
            let wire = policy
                .policy
                .as_ref()
                .ok_or_else(|| (field.clone(), "missing".to_owned()))?;
            let compiled =
                CompiledPolicy::compile(None, wire).map_err(|e| (field, e.to_string()))?;
            Ok((Arc::new(compiled), policy.services.clone()))
        })
        .collect()
}

/// A policy applies to a service when it lists it or lists none; to workload traffic
/// (no service) only when it lists none.
fn applies(targets: &[String], service: Option<&str>) -> bool {
    targets.is_empty() || service.is_some_and(|key| targets.iter().any(|t| t == key))
}

fn policy_set(policies: &[Attached], keep: impl Fn(&[String]) -> bool) -> PolicySet {
    let selected = policies
        .iter()
        .filter(|(_, targets)| keep(targets))
        .map(|(policy, _)| Arc::clone(policy));
    PolicySet::new(selected, Vec::new())
}

fn compile_service(service: &pb::Service, policies: PolicySet) -> Result<BoundService, FieldError> {
    if service.key.is_empty() {
        return Err(("key".into(), "empty".into()));
    }
    let ports = service
        .ports
        .iter()
        .enumerate()
        .map(|(index, port)| {
            compile_port(port).map_err(|(f, r)| (format!("ports[{index}].{f}"), r))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let routes = Routes::compile(&service.routes, &service.namespace, &ports)
        .map_err(|(f, r)| (format!("routes{f}"), r))?;
    Ok(BoundService {
        key: service.key.clone(),
        hostname: service.hostname.clone(),
        ports,
        routes,
        policies: Arc::new(policies),
    })
}

fn compile_port(port: &pb::ServicePort) -> Result<BoundPort, FieldError> {
    let number = u16::try_from(port.port)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| {
            (
                "port".to_owned(),
                format!("{} is not a port number", port.port),
            )
        })?;
    let protocol = Protocol::try_from(port.protocol).map_err(|_| {
        (
            "protocol".to_owned(),
            format!("unknown protocol {}", port.protocol),
        )
    })?;
    Ok(BoundPort {
        port: number,
        protocol,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waypoint(services: Vec<pb::Service>) -> pb::Waypoint {
        pb::Waypoint {
            namespace: "ns".into(),
            name: "wp".into(),
            services,
            ..Default::default()
        }
    }

    fn service(key: &str, port: u32, protocol: i32) -> pb::Service {
        pb::Service {
            key: key.into(),
            ports: vec![pb::ServicePort {
                port,
                protocol,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn bad_fields_are_named() {
        let cases = [
            (waypoint(vec![]), "other/wp", "name"),
            (
                waypoint(vec![service("", 80, 0)]),
                "ns/wp",
                "services[0].key",
            ),
            (
                waypoint(vec![service("ns/a", 70000, 0)]),
                "ns/wp",
                "services[0].ports[0].port",
            ),
            (
                waypoint(vec![service("ns/a", 80, 99)]),
                "ns/wp",
                "services[0].ports[0].protocol",
            ),
            (
                waypoint(vec![service("ns/a", 80, 0), service("ns/a", 81, 0)]),
                "ns/wp",
                "services[1].key",
            ),
        ];
        for (resource, name, field) in cases {
            let error = WaypointConfig::compile(name, &resource).expect_err(field);
            assert_eq!(error.field, field, "{error}");
        }
    }

    #[test]
    fn ports_keep_their_protocol_and_unknown_ports_are_sniffed() {
        let config = WaypointConfig::compile(
            "ns/wp",
            &waypoint(vec![service("ns/a", 80, Protocol::Grpc as i32)]),
        )
        .expect("valid");
        let bound = config.service("ns/a").expect("bound");
        assert_eq!(bound.protocol(80), Protocol::Grpc);
        assert_eq!(bound.protocol(81), Protocol::Detect);
    }
}
