//! The gateway's configuration: one `weft.l7.v1.Gateway` resource, validated and compiled
//! once when it arrives into (a) the listener table — per port, the protocol and the
//! listeners with their hostnames — and (b) the L7 engine's configuration, the same
//! [`WaypointConfig`] a waypoint runs: each listener becomes a bound "service" keyed
//! `listener <name>` carrying the listener's HTTP routes, the Gateway's policies, JWT rules,
//! trusted hops and backend TLS. A resource that does not validate is refused with a
//! [`ConfigError`] naming the field (`listeners[1].port`), and the previous configuration
//! stays in force.

use std::collections::BTreeMap;
use std::sync::Arc;

use weft_proto::l7::{self as pb, listener::Protocol as ListenerProtocol};

use super::auto_cert::AutoCerts;
use super::sni::HostTable;
use crate::config::{ConfigError, WaypointConfig};

/// How a port's connections are served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortKind {
    /// Plain HTTP (HTTP/1.1, h2c) straight into the pipeline.
    Http,
    /// HTTPS, TLS or TCP: handed to the TLS layer (`gateway::tls`).
    Tls,
}

/// One listener of a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerEntry {
    /// The listener's name (section name).
    pub name: String,
    /// Lower-case hostname: exact, `*.suffix`, or empty (every host).
    pub hostname: String,
    /// Its protocol.
    pub protocol: ListenerProtocol,
    /// Key of its bound service in the engine configuration.
    pub key: String,
}

/// The listeners sharing one port.
#[derive(Debug, Clone)]
pub struct PortListeners {
    /// How connections are served.
    pub kind: PortKind,
    /// The listeners, in resource order.
    pub listeners: Vec<ListenerEntry>,
    /// Positions in `listeners` by hostname (Gateway API precedence).
    pub(crate) hosts: HostTable<usize>,
}

impl PortListeners {
    /// The listener for a request or handshake naming `host`: exact hostname, then the
    /// longest wildcard, then a listener without hostname.
    #[must_use]
    pub fn for_host(&self, host: Option<&str>) -> Option<&ListenerEntry> {
        self.hosts.select(host).map(|&i| &self.listeners[i])
    }
}

/// The compiled listener table of one gateway.
#[derive(Debug, Default)]
pub struct GatewayConfig {
    /// `<namespace>/<name>` of the Gateway.
    pub key: String,
    /// Listeners by port.
    pub ports: BTreeMap<u16, PortListeners>,
    /// The resource as received (the TLS layer reads certificates and L4 routes from it).
    pub resource: pb::Gateway,
    /// The HTTPS, TLS and TCP ports, compiled (certificates, L4 routes).
    pub tls: super::tls::TlsPorts,
}

/// The engine key of a listener's bound service (a space never occurs in service keys).
#[must_use]
pub fn listener_key(name: &str) -> String {
    format!("listener {name}")
}

impl GatewayConfig {
    /// Validates and compiles `gateway`, received under `resource_name`, into the listener
    /// table and the engine configuration; `auto` serves the `auto_certificate` listeners.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the first malformed field.
    pub fn compile(
        resource_name: &str,
        gateway: &pb::Gateway,
        auto: Option<Arc<AutoCerts>>,
    ) -> Result<(Self, WaypointConfig), ConfigError> {
        let err = |field: String, reason: String| ConfigError {
            resource: resource_name.to_owned(),
            field,
            reason,
        };
        let mut ports: BTreeMap<u16, PortListeners> = BTreeMap::new();
        let mut names = std::collections::HashSet::new();
        for (index, listener) in gateway.listeners.iter().enumerate() {
            let at = |field: &str| format!("listeners[{index}].{field}");
            let entry = compile_listener(listener).map_err(|(f, r)| err(at(f), r))?;
            if !names.insert(listener.name.clone()) {
                return Err(err(
                    at("name"),
                    format!("listener {:?} is listed twice", listener.name),
                ));
            }
            let port = u16::try_from(listener.port).unwrap_or_default();
            let kind = kind_of(entry.protocol);
            let shared = ports.entry(port).or_insert_with(|| PortListeners {
                kind,
                listeners: Vec::new(),
                hosts: HostTable::default(),
            });
            if shared.kind != kind {
                return Err(err(
                    at("protocol"),
                    format!("port {port} mixes plain HTTP with TLS or TCP listeners"),
                ));
            }
            shared
                .hosts
                .push(Some(&entry.hostname), shared.listeners.len());
            shared.listeners.push(entry);
        }
        let engine = WaypointConfig::compile(resource_name, &engine_resource(gateway))
            .map_err(|e| rename_fields(e, gateway))?;
        let config = Self {
            key: resource_name.to_owned(),
            ports,
            resource: gateway.clone(),
            tls: super::tls::TlsPorts::compile(gateway, auto),
        };
        Ok((config, engine))
    }

    /// The listeners of `port`.
    #[must_use]
    pub fn port(&self, port: u16) -> Option<&PortListeners> {
        self.ports.get(&port)
    }

    /// The resource with private keys left out (for the admin config dump).
    #[must_use]
    pub fn redacted(&self) -> pb::Gateway {
        let mut resource = self.resource.clone();
        let listeners = resource.listeners.iter_mut();
        let served = listeners.flat_map(|l| l.certificates.iter_mut());
        let presented =
            (resource.backend_tls.iter_mut()).filter_map(|b| b.client_certificate.as_mut());
        for certificate in served.chain(presented) {
            if !certificate.private_key.is_empty() {
                certificate.private_key = "<redacted>".into();
            }
        }
        resource
    }
}

type FieldError = (&'static str, String);

fn compile_listener(listener: &pb::Listener) -> Result<ListenerEntry, FieldError> {
    if listener.name.is_empty() {
        return Err(("name", "empty".into()));
    }
    u16::try_from(listener.port)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| ("port", format!("{} is not a port number", listener.port)))?;
    let protocol = ListenerProtocol::try_from(listener.protocol).map_err(|_| {
        (
            "protocol",
            format!("unknown protocol {}", listener.protocol),
        )
    })?;
    let hostname = listener.hostname.trim_end_matches('.').to_ascii_lowercase();
    let wildcard_ok = hostname
        .strip_prefix("*.")
        .is_some_and(|suffix| !suffix.contains('*'));
    if hostname.contains('*') && !wildcard_ok {
        return Err((
            "hostname",
            format!("{hostname:?}: a wildcard must be the whole first label (`*.example.com`)"),
        ));
    }
    Ok(ListenerEntry {
        name: listener.name.clone(),
        hostname,
        protocol,
        key: listener_key(&listener.name),
    })
}

fn kind_of(protocol: ListenerProtocol) -> PortKind {
    match protocol {
        ListenerProtocol::Http => PortKind::Http,
        ListenerProtocol::Https | ListenerProtocol::Tls | ListenerProtocol::Tcp => PortKind::Tls,
    }
}

/// The engine's view: one bound service per listener with its HTTP routes (for every port:
/// a listener has one), and the Gateway's policies, JWT rules, hops and backend TLS.
fn engine_resource(gateway: &pb::Gateway) -> pb::Waypoint {
    let services = gateway
        .listeners
        .iter()
        .map(|listener| pb::Service {
            key: listener_key(&listener.name),
            hostname: listener.hostname.clone(),
            ports: vec![pb::ServicePort {
                port: listener.port,
                protocol: pb::Protocol::Http as i32,
                ..Default::default()
            }],
            routes: listener
                .http_routes
                .iter()
                .map(|route| pb::Route {
                    port: 0,
                    ..route.clone()
                })
                .collect(),
            ..Default::default()
        })
        .collect();
    pb::Waypoint {
        namespace: gateway.namespace.clone(),
        name: gateway.name.clone(),
        services,
        policies: gateway.policies.clone(),
        jwt_rules: gateway.jwt_rules.clone(),
        trusted_hops: gateway.trusted_hops,
        backend_tls: gateway.backend_tls.clone(),
        ..Default::default()
    }
}

/// An engine error in the Gateway's terms: `services[i].routes[j]` is
/// `listeners[i].http_routes[j]`.
fn rename_fields(mut error: ConfigError, gateway: &pb::Gateway) -> ConfigError {
    if let Some(rest) = error.field.strip_prefix("services[") {
        error.field = format!(
            "listeners[{}",
            rest.replacen("].routes", "].http_routes", 1)
        );
    }
    if error.field == "name" {
        error.reason = format!(
            "the resource describes {}/{}",
            gateway.namespace, gateway.name
        );
    }
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gateway(listeners: Vec<pb::Listener>) -> pb::Gateway {
        pb::Gateway {
            namespace: "ns".into(),
            name: "gw".into(),
            listeners,
            ..Default::default()
        }
    }

    fn listener(name: &str, port: u32, protocol: ListenerProtocol, host: &str) -> pb::Listener {
        pb::Listener {
            name: name.into(),
            port,
            protocol: protocol as i32,
            hostname: host.into(),
            ..Default::default()
        }
    }

    #[test]
    fn bad_fields_are_named() {
        use ListenerProtocol::{Http, Https};
        let cases = [
            (gateway(vec![]), "other/gw", "name"),
            (
                gateway(vec![listener("", 80, Http, "")]),
                "ns/gw",
                "listeners[0].name",
            ),
            (
                gateway(vec![listener("a", 70000, Http, "")]),
                "ns/gw",
                "listeners[0].port",
            ),
            (
                gateway(vec![listener("a", 80, Http, "a.*.com")]),
                "ns/gw",
                "listeners[0].hostname",
            ),
            (
                gateway(vec![
                    listener("a", 80, Http, ""),
                    listener("a", 81, Http, ""),
                ]),
                "ns/gw",
                "listeners[1].name",
            ),
            (
                gateway(vec![
                    listener("a", 80, Http, ""),
                    listener("b", 80, Https, ""),
                ]),
                "ns/gw",
                "listeners[1].protocol",
            ),
        ];
        for (resource, name, field) in cases {
            let error = GatewayConfig::compile(name, &resource, None).expect_err(field);
            assert_eq!(error.field, field, "{error}");
        }
    }

    #[test]
    fn listeners_share_ports_and_become_engine_services() {
        let resource = gateway(vec![
            listener("a", 80, ListenerProtocol::Http, "A.example.com"),
            listener("b", 80, ListenerProtocol::Http, ""),
            listener("s", 443, ListenerProtocol::Https, "*.example.com"),
        ]);
        let (config, engine) = GatewayConfig::compile("ns/gw", &resource, None).expect("valid");
        let http = config.port(80).expect("port 80");
        assert_eq!(http.kind, PortKind::Http);
        assert_eq!(http.listeners[0].hostname, "a.example.com");
        assert_eq!(config.port(443).expect("443").kind, PortKind::Tls);
        assert!(engine.service(&listener_key("s")).is_some());
    }

    #[test]
    fn private_keys_are_not_dumped() {
        let mut with_key = listener("s", 443, ListenerProtocol::Https, "");
        with_key.certificates.push(pb::Certificate {
            source: "ns/cert".into(),
            cert_chain: "chain".into(),
            private_key: "secret".into(),
        });
        let (config, _) = GatewayConfig::compile("ns/gw", &gateway(vec![with_key]), None).unwrap();
        let dumped = config.redacted();
        assert_eq!(
            dumped.listeners[0].certificates[0].private_key,
            "<redacted>"
        );
    }
}
