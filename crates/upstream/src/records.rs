//! Validation of `istio.workload.Address` resources into records with parsed addresses and
//! ports. A record is immutable once built and shared by every snapshot that contains it.

use std::net::IpAddr;

use weft_identity::{DEFAULT_SERVICE_ACCOUNT, DEFAULT_TRUST_DOMAIN, SpiffeId, SpiffeIdError};
use weft_proto::workload::{self, Address, address};

use weft_policy::validation::{Ctx, Problem, ValidationError};

/// A validated workload.
#[derive(Debug)]
pub struct WorkloadRecord {
    /// The resource as received.
    pub proto: workload::Workload,
    /// Parsed `addresses`, in order.
    pub addresses: Vec<IpAddr>,
    /// SPIFFE identity, with the trust domain and service account defaults applied.
    pub identity: SpiffeId,
    /// Per service key (`<ns>/<hostname>`): `(service_port, target_port)` pairs, where a
    /// target port of `None` means "same as the service's".
    pub service_ports: Vec<(String, Vec<PortMapping>)>,
}

/// A validated service.
#[derive(Debug)]
pub struct ServiceRecord {
    /// The resource as received.
    pub proto: workload::Service,
    /// `<namespace>/<hostname>`: the resource name and the key workloads use.
    pub key: String,
    /// Parsed VIPs as `(network, ip)`.
    pub vips: Vec<(String, IpAddr)>,
    /// Parsed ports.
    pub ports: Vec<PortMapping>,
}

/// A service port and where it lands on the workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortMapping {
    /// Port on the service VIP.
    pub service_port: u16,
    /// Port on the workload, if it differs / is known.
    pub target_port: Option<u16>,
}

/// A validated `Address`.
#[derive(Debug, Clone)]
pub enum AddressRecord {
    /// A workload.
    Workload(std::sync::Arc<WorkloadRecord>),
    /// A service.
    Service(std::sync::Arc<ServiceRecord>),
}

impl AddressRecord {
    /// The xDS resource name the content implies (workload uid or `<ns>/<hostname>`).
    #[must_use]
    pub fn name(&self) -> &str {
        match self {
            Self::Workload(w) => &w.proto.uid,
            Self::Service(s) => &s.key,
        }
    }

    /// Validates `address`. When `resource_name` is given (xDS) it must equal the name the
    /// content implies.
    ///
    /// # Errors
    /// A [`ValidationError`] naming the resource and the first malformed field.
    pub fn validate(
        resource_name: Option<&str>,
        address: Address,
    ) -> Result<Self, ValidationError> {
        let record = match address.r#type {
            Some(address::Type::Workload(w)) => {
                Self::Workload(WorkloadRecord::validate(resource_name, w)?.into())
            }
            Some(address::Type::Service(s)) => {
                Self::Service(ServiceRecord::validate(resource_name, s)?.into())
            }
            None => {
                let resource = resource_name.unwrap_or("<unnamed>");
                return Err(Ctx { resource }.error("type", Problem::Unset));
            }
        };
        if let Some(name) = resource_name.filter(|n| *n != record.name()) {
            let expected = record.name().to_owned();
            return Err(Ctx { resource: name }.error("name", Problem::NameMismatch { expected }));
        }
        Ok(record)
    }
}

impl WorkloadRecord {
    fn validate(
        resource_name: Option<&str>,
        proto: workload::Workload,
    ) -> Result<Self, ValidationError> {
        let fallback = format!("{}/{}", proto.namespace, proto.name);
        let resource = if proto.uid.is_empty() {
            resource_name.unwrap_or(&fallback)
        } else {
            &proto.uid
        };
        let ctx = Ctx { resource };
        ctx.non_empty("uid", &proto.uid)?;
        ctx.non_empty("name", &proto.name)?;
        ctx.non_empty("namespace", &proto.namespace)?;
        let addresses = proto
            .addresses
            .iter()
            .enumerate()
            .map(|(i, a)| ctx.ip(|| format!("addresses[{i}]"), a))
            .collect::<Result<Vec<_>, _>>()?;
        ctx.known_enum::<workload::TunnelProtocol>("tunnel_protocol", proto.tunnel_protocol)?;
        ctx.known_enum::<workload::WorkloadStatus>("status", proto.status)?;
        let mut service_ports = proto
            .services
            .iter()
            .map(|(key, list)| {
                validate_service_key(ctx, &format!("services[{key:?}]"), key)?;
                let ports = list
                    .ports
                    .iter()
                    .enumerate()
                    .map(|(i, p)| port_mapping(ctx, &format!("services[{key:?}].ports[{i}]"), p))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok((key.clone(), ports))
            })
            .collect::<Result<Vec<_>, ValidationError>>()?;
        service_ports.sort_by(|a, b| a.0.cmp(&b.0));
        let identity = workload_identity(ctx, &proto)?;
        Ok(Self {
            proto,
            addresses,
            identity,
            service_ports,
        })
    }
}

/// The workload's SPIFFE id, with the trust domain and service account defaults applied.
fn workload_identity(
    ctx: Ctx<'_>,
    proto: &workload::Workload,
) -> Result<SpiffeId, ValidationError> {
    let trust_domain = non_empty_or(&proto.trust_domain, DEFAULT_TRUST_DOMAIN);
    let service_account = non_empty_or(&proto.service_account, DEFAULT_SERVICE_ACCOUNT);
    SpiffeId::new(trust_domain, &proto.namespace, service_account).map_err(|err| {
        let field = match &err {
            SpiffeIdError::BadTrustDomain { .. } => "trust_domain",
            SpiffeIdError::BadSegment { segment, .. } if *segment == proto.namespace => "namespace",
            SpiffeIdError::BadSegment { .. } => "service_account",
            // `/` inside a part breaks the path shape.
            SpiffeIdError::MissingScheme { .. } | SpiffeIdError::BadPath { .. } => {
                "namespace/service_account/trust_domain"
            }
        };
        ctx.error(field, Problem::Malformed(err.to_string()))
    })
}

impl ServiceRecord {
    fn validate(
        resource_name: Option<&str>,
        proto: workload::Service,
    ) -> Result<Self, ValidationError> {
        let key = format!("{}/{}", proto.namespace, proto.hostname);
        let ctx = Ctx {
            resource: resource_name.unwrap_or(&key),
        };
        ctx.non_empty("namespace", &proto.namespace)?;
        ctx.non_empty("hostname", &proto.hostname)?;
        let vips = proto
            .addresses
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let ip = ctx.ip(|| format!("addresses[{i}].address"), &a.address)?;
                Ok((a.network.clone(), ip))
            })
            .collect::<Result<Vec<_>, ValidationError>>()?;
        let ports = proto
            .ports
            .iter()
            .enumerate()
            .map(|(i, p)| port_mapping(ctx, &format!("ports[{i}]"), p))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(lb) = &proto.load_balancing {
            ctx.known_enum::<workload::load_balancing::Mode>("load_balancing.mode", lb.mode)?;
            ctx.known_enum::<workload::load_balancing::HealthPolicy>(
                "load_balancing.health_policy",
                lb.health_policy,
            )?;
            for (i, scope) in lb.routing_preference.iter().enumerate() {
                ctx.known_enum::<workload::load_balancing::Scope>(
                    &format!("load_balancing.routing_preference[{i}]"),
                    *scope,
                )?;
            }
        }
        Ok(Self {
            proto,
            key,
            vips,
            ports,
        })
    }
}

fn port_mapping(
    ctx: Ctx<'_>,
    path: &str,
    port: &workload::Port,
) -> Result<PortMapping, ValidationError> {
    Ok(PortMapping {
        service_port: ctx.port(|| format!("{path}.service_port"), port.service_port)?,
        target_port: ctx.optional_port(|| format!("{path}.target_port"), port.target_port)?,
    })
}

fn validate_service_key(ctx: Ctx<'_>, field: &str, key: &str) -> Result<(), ValidationError> {
    match key.split_once('/') {
        Some((ns, host)) if !ns.is_empty() && !host.is_empty() && !host.contains('/') => Ok(()),
        _ => Err(ctx.error(
            field,
            Problem::Malformed(format!("service key {key:?} is not <namespace>/<hostname>")),
        )),
    }
}

fn non_empty_or<'a>(value: &'a str, default: &'a str) -> &'a str {
    if value.is_empty() { default } else { value }
}
