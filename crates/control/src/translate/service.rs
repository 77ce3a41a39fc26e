//! Kubernetes `Service`s and `ServiceEntry` hosts -> `istio.workload.Service`.

use super::context::{Context, Dep, ServiceSource, Unit};
use super::version::address_resource;
use super::waypoint::{WaypointUser, resolve_waypoint};
use super::{TranslateOptions, Warning};
use ipnet::IpNet;
use k8s_openapi::api::core::v1::{Service as KubeService, ServicePort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::net::IpAddr;
use weft_api::analyze::vip_conflict_message;
use weft_api::istio::ServiceEntry;
use weft_api::{Kind, ObjectRef};
use weft_proto::workload::load_balancing::{HealthPolicy, Mode, Scope};
use weft_proto::workload::{
    Address, AppProtocol, IpFamilies, LoadBalancing, NetworkAddress, Port, Service, address,
};

/// Annotation asking for locality-aware load balancing (`PreferClose`).
pub const TRAFFIC_DISTRIBUTION_ANNOTATION: &str = "networking.istio.io/traffic-distribution";

/// `<namespace>/<hostname>`: the resource name of a service.
#[must_use]
pub fn service_key(namespace: &str, hostname: &str) -> String {
    format!("{namespace}/{hostname}")
}

fn namespace_of(meta: &ObjectMeta) -> &str {
    meta.namespace
        .as_deref()
        .unwrap_or(weft_api::object::DEFAULT_NAMESPACE)
}

fn object_ref(kind: Kind, meta: &ObjectMeta) -> ObjectRef {
    ObjectRef {
        kind,
        namespace: Some(namespace_of(meta).to_owned()),
        name: meta.name.clone().unwrap_or_default(),
    }
}

/// `<name>.<namespace>.svc.<domain>`.
#[must_use]
pub fn kube_hostname(service: &KubeService, options: &TranslateOptions) -> String {
    let name = service.metadata.name.as_deref().unwrap_or_default();
    format!(
        "{name}.{}.svc.{}",
        namespace_of(&service.metadata),
        options.domain_suffix
    )
}

/// Application protocol from a Kubernetes `appProtocol`, or else the port name's prefix
/// (`http`, `http2`, `grpc`, `tcp`, `tls`/`https`, before the first `-`).
#[must_use]
pub fn app_protocol(app_protocol: Option<&str>, port_name: Option<&str>) -> AppProtocol {
    let from_name = || port_name.map(|name| name.split('-').next().unwrap_or(name));
    match app_protocol
        .or_else(from_name)
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("http" | "http1.1" | "http/1.1") => AppProtocol::Http11,
        Some("http2" | "h2c" | "kubernetes.io/h2c") => AppProtocol::Http2,
        Some("grpc") => AppProtocol::Grpc,
        Some("tcp") => AppProtocol::Tcp,
        Some("tls" | "https") => AppProtocol::Tls,
        _ => AppProtocol::Unknown,
    }
}

/// Application protocol of a ServiceEntry port's `protocol`.
fn entry_protocol(protocol: Option<&str>) -> AppProtocol {
    match protocol.map(str::to_ascii_uppercase).as_deref() {
        Some("HTTP") => AppProtocol::Http11,
        Some("HTTP2") => AppProtocol::Http2,
        Some("GRPC") => AppProtocol::Grpc,
        Some("TCP") => AppProtocol::Tcp,
        Some("TLS" | "HTTPS") => AppProtocol::Tls,
        _ => AppProtocol::Unknown,
    }
}

/// Load balancing for a `traffic-distribution` value; `Err` names an unknown value.
fn load_balancing(value: Option<&str>) -> Result<Option<LoadBalancing>, String> {
    let close = [Scope::Network, Scope::Region, Scope::Zone, Scope::Subzone];
    let scopes: Vec<Scope> = match value {
        None | Some("" | "Any") => return Ok(None),
        Some("PreferClose" | "PreferSameZone") => close.to_vec(),
        Some("PreferSameNode") => close.into_iter().chain([Scope::Node]).collect(),
        Some(other) => return Err(other.to_owned()),
    };
    Ok(Some(LoadBalancing {
        routing_preference: scopes.into_iter().map(i32::from).collect(),
        mode: Mode::Failover.into(),
        health_policy: 0,
    }))
}

fn annotation<'m>(meta: &'m ObjectMeta, key: &str) -> Option<&'m str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

/// One resolved ServiceEntry/Service address (IP or CIDR).
pub(crate) fn network_address(value: &str, network: &str) -> Option<NetworkAddress> {
    let (ip, length) = match value.parse::<IpAddr>() {
        Ok(ip) => (ip, None),
        Err(_) => {
            let net: IpNet = value.parse().ok()?;
            (net.network(), Some(u32::from(net.prefix_len())))
        }
    };
    Some(NetworkAddress {
        network: network.to_owned(),
        address: ip_bytes(ip),
        length,
    })
}

/// The 4 or 16 raw bytes of an address.
#[must_use]
pub fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

/// Translates the service with resource name `key`; the first source wins a name conflict.
pub(crate) fn translate_service(
    context: &Context<'_>,
    key: &str,
    sources: &[ServiceSource<'_>],
) -> Unit {
    let mut unit = Unit::default();
    for source in sources {
        let object = match source {
            ServiceSource::Kube(svc) => object_ref(Kind::Service, &svc.metadata),
            ServiceSource::Entry { entry, .. } => object_ref(Kind::ServiceEntry, &entry.metadata),
        };
        unit.deps.push(Dep::Object(object));
    }
    let Some(first) = sources.first() else {
        return unit;
    };
    for ignored in &unit.deps[1..] {
        let Dep::Object(object) = ignored else {
            continue;
        };
        let message = format!(
            "service {key} is also defined by {}; this one is ignored",
            unit.deps[0].object()
        );
        unit.warnings.push(Warning {
            object: object.clone(),
            message,
        });
    }
    let service = match first {
        ServiceSource::Kube(svc) => kube_service(context, svc, &mut unit),
        ServiceSource::Entry { entry, host } => entry_service(context, entry, host, &mut unit),
    };
    if let Some(service) = service {
        unit.deps.push(Dep::Object(ObjectRef {
            kind: Kind::Namespace,
            namespace: None,
            name: service.namespace.clone(),
        }));
        let aliases = service.addresses.iter().filter_map(alias).collect();
        let message = Address {
            r#type: Some(address::Type::Service(service)),
        };
        unit.resource = Some(address_resource(key.to_owned(), aliases, message));
    }
    unit
}

impl Dep {
    fn object(&self) -> &ObjectRef {
        match self {
            Dep::Object(object) | Dep::Selection(object) => object,
        }
    }
}

/// `<network>/<ip>` of a plain address (CIDRs are not aliases).
fn alias(address: &NetworkAddress) -> Option<String> {
    if address.length.is_some() {
        return None;
    }
    let ip: IpAddr = match address.address.len() {
        4 => <[u8; 4]>::try_from(address.address.as_slice()).ok()?.into(),
        16 => <[u8; 16]>::try_from(address.address.as_slice())
            .ok()?
            .into(),
        _ => return None,
    };
    Some(format!("{}/{ip}", address.network))
}

fn kube_service(context: &Context<'_>, svc: &KubeService, unit: &mut Unit) -> Option<Service> {
    let object = object_ref(Kind::Service, &svc.metadata);
    let warn = |unit: &mut Unit, message: String| {
        unit.warnings.push(Warning {
            object: object.clone(),
            message,
        });
    };
    let spec = svc.spec.clone().unwrap_or_default();
    if spec.type_.as_deref() == Some("ExternalName") {
        warn(
            unit,
            "ExternalName services have no workload API form; skipped".to_owned(),
        );
        return None;
    }
    let ips = spec
        .cluster_ips
        .clone()
        .unwrap_or_else(|| spec.cluster_ip.clone().into_iter().collect());
    let mut addresses = Vec::new();
    for ip in ips.iter().filter(|ip| !ip.is_empty() && *ip != "None") {
        match ip.parse::<IpAddr>() {
            Ok(ip) => addresses.push(NetworkAddress {
                network: context.options.network.clone(),
                address: ip_bytes(ip),
                length: None,
            }),
            Err(_) => warn(
                unit,
                format!("clusterIP {ip:?} is not an IP address; ignored"),
            ),
        }
    }
    let distribution = annotation(&svc.metadata, TRAFFIC_DISTRIBUTION_ANNOTATION)
        .or(spec.traffic_distribution.as_deref());
    let preferred = load_balancing(distribution).unwrap_or_else(|value| {
        warn(
            unit,
            format!("traffic distribution {value:?} is not known (expected PreferClose); ignored"),
        );
        None
    });
    let load_balancing = kube_load_balancing(&spec, preferred);
    let namespace = namespace_of(&svc.metadata);
    let labels = svc.metadata.labels.clone().unwrap_or_default();
    Some(Service {
        name: object.name.clone(),
        namespace: namespace.to_owned(),
        hostname: kube_hostname(svc, context.options),
        addresses,
        ports: spec.ports.iter().flatten().map(service_port).collect(),
        waypoint: resolve_waypoint(
            context,
            namespace,
            &labels,
            WaypointUser::Service,
            &object,
            unit,
        ),
        load_balancing,
        ip_families: ip_families(spec.ip_families.as_deref()).into(),
        ..Service::default()
    })
}

/// What a Service's own fields add to its traffic distribution, as istiod sends them:
/// `internalTrafficPolicy: Local` keeps traffic on the caller's node (NODE, STRICT: no
/// other node's endpoint, ever); `publishNotReadyAddresses` lets unready endpoints serve.
fn kube_load_balancing(
    spec: &k8s_openapi::api::core::v1::ServiceSpec,
    preferred: Option<LoadBalancing>,
) -> Option<LoadBalancing> {
    let mut load_balancing = preferred;
    if spec.internal_traffic_policy.as_deref() == Some("Local") {
        load_balancing = Some(LoadBalancing {
            routing_preference: vec![Scope::Node.into()],
            mode: Mode::Strict.into(),
            health_policy: 0,
        });
    }
    if spec.publish_not_ready_addresses == Some(true) {
        load_balancing
            .get_or_insert_with(LoadBalancing::default)
            .health_policy = HealthPolicy::AllowAll.into();
    }
    load_balancing
}

/// `spec.ipFamilies`: both families, one of them, or (unset) whatever the addresses are.
fn ip_families(families: Option<&[String]>) -> IpFamilies {
    match families.unwrap_or_default() {
        [_, _] => IpFamilies::Dual,
        [only] if only == "IPv4" => IpFamilies::Ipv4Only,
        [only] if only == "IPv6" => IpFamilies::Ipv6Only,
        _ => IpFamilies::Automatic,
    }
}

/// A Service port: numeric target ports are kept, named ones are resolved per workload.
pub(crate) fn service_port(port: &ServicePort) -> Port {
    let service_port = u32::try_from(port.port).unwrap_or_default();
    let target_port = match &port.target_port {
        None => service_port,
        Some(IntOrString::Int(number)) => u32::try_from(*number).unwrap_or_default(),
        Some(IntOrString::String(name)) => name.parse().unwrap_or(0),
    };
    let protocol = app_protocol(port.app_protocol.as_deref(), port.name.as_deref());
    Port {
        service_port,
        target_port,
        app_protocol: protocol.into(),
    }
}

/// A ServiceEntry port.
pub(crate) fn entry_port(port: &weft_api::istio::ServicePort) -> Port {
    Port {
        service_port: port.number,
        target_port: port.target_port.unwrap_or(port.number),
        app_protocol: entry_protocol(port.protocol.as_deref()).into(),
    }
}

/// The object that keeps `value` when it is a VIP several objects claim.
fn vip_keeper<'c>(context: &'c Context<'_>, value: &str) -> Option<(IpAddr, &'c ObjectRef)> {
    let ip: IpAddr = value.parse().ok()?;
    Some((ip, context.vip_claims.get(&ip)?.first()?))
}

fn entry_service(
    context: &Context<'_>,
    entry: &ServiceEntry,
    host: &str,
    unit: &mut Unit,
) -> Option<Service> {
    let object = object_ref(Kind::ServiceEntry, &entry.metadata);
    if host.contains('*') {
        let message = format!("wildcard host {host:?} cannot be a workload API service; skipped");
        unit.warnings.push(Warning { object, message });
        return None;
    }
    let network = &context.options.network;
    let mut addresses = Vec::new();
    for value in entry.spec.addresses.iter().flatten() {
        if let Some((ip, keeper)) = vip_keeper(context, value).filter(|(_, k)| **k != object) {
            unit.deps.push(Dep::Object(keeper.clone()));
            let message = vip_conflict_message(ip, keeper);
            unit.warnings.push(Warning {
                object: object.clone(),
                message,
            });
            continue;
        }
        match network_address(value, network) {
            Some(address) => addresses.push(address),
            None => {
                let message = format!("address {value:?} is not an IP or CIDR; ignored");
                unit.warnings.push(Warning {
                    object: object.clone(),
                    message,
                });
            }
        }
    }
    let ports = entry.spec.ports.iter().flatten().map(entry_port).collect();
    let namespace = namespace_of(&entry.metadata);
    let labels = entry.metadata.labels.clone().unwrap_or_default();
    let load_balancing =
        load_balancing(annotation(&entry.metadata, TRAFFIC_DISTRIBUTION_ANNOTATION))
            .unwrap_or_else(|value| {
                let message = format!(
                    "traffic distribution {value:?} is not known (expected PreferClose); ignored"
                );
                unit.warnings.push(Warning {
                    object: object.clone(),
                    message,
                });
                None
            });
    Some(Service {
        name: object.name.clone(),
        namespace: namespace.to_owned(),
        hostname: host.to_owned(),
        addresses,
        ports,
        subject_alt_names: entry.spec.subject_alt_names.clone().unwrap_or_default(),
        waypoint: resolve_waypoint(
            context,
            namespace,
            &labels,
            WaypointUser::Service,
            &object,
            unit,
        ),
        load_balancing,
        ..Service::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_protocol_prefers_app_protocol_then_name_prefix() {
        assert_eq!(
            app_protocol(Some("grpc"), Some("http-web")),
            AppProtocol::Grpc
        );
        assert_eq!(app_protocol(None, Some("http-web")), AppProtocol::Http11);
        assert_eq!(app_protocol(None, Some("http2")), AppProtocol::Http2);
        assert_eq!(app_protocol(None, Some("tls-db")), AppProtocol::Tls);
        assert_eq!(app_protocol(None, Some("web")), AppProtocol::Unknown);
        assert_eq!(app_protocol(None, None), AppProtocol::Unknown);
    }

    #[test]
    fn prefer_close_is_failover_from_network_to_subzone() {
        let lb = load_balancing(Some("PreferClose"))
            .ok()
            .flatten()
            .unwrap_or_default();
        let expected: Vec<i32> = [Scope::Network, Scope::Region, Scope::Zone, Scope::Subzone]
            .into_iter()
            .map(i32::from)
            .collect();
        assert_eq!(lb.routing_preference, expected);
        assert_eq!(lb.mode, i32::from(Mode::Failover));
        assert!(load_balancing(Some("Nearby")).is_err());
        assert_eq!(load_balancing(None), Ok(None));
    }
}
