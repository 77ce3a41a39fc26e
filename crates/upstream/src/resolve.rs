//! Addresses of endpoints known by host name only: a ServiceEntry with `resolution: DNS`
//! and no endpoints (each host is its own endpoint), or with endpoints given by name.
//!
//! Names are resolved with the system's DNS configuration (`/etc/resolv.conf`), or with
//! the servers the proxy is given; the resolver caches answers for their TTL. A name is looked up as written (absolute: never tried in the pod's search
//! domains). An answer pointing at the proxy's own host (loopback, unspecified) or at
//! link-local or multicast addresses is refused, so whoever controls a DNS zone cannot make
//! the proxy call its own admin port or a cloud metadata service.

use std::net::{IpAddr, SocketAddr};

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use tokio::sync::OnceCell;

/// A proxy's resolver, built on first use (a proxy that never meets a name needs no DNS
/// configuration).
pub struct NameResolver {
    servers: Vec<SocketAddr>,
    allow_loopback: bool,
    resolver: OnceCell<Result<TokioResolver, String>>,
}

impl NameResolver {
    /// A resolver asking `servers` (UDP, then TCP), or the system's when empty; loopback
    /// answers are refused unless `allow_loopback`.
    #[must_use]
    pub fn new(servers: Vec<SocketAddr>, allow_loopback: bool) -> Self {
        Self {
            servers,
            allow_loopback,
            resolver: OnceCell::new(),
        }
    }

    /// The first usable address of `host`.
    ///
    /// # Errors
    /// The DNS configuration cannot be read, the lookup failed, or the answer held no
    /// usable address (why, for the 503 and the log).
    pub async fn resolve(&self, host: &str) -> Result<IpAddr, String> {
        let resolver = self
            .resolver
            .get_or_init(|| async { build(&self.servers) })
            .await
            .as_ref()
            .map_err(Clone::clone)?;
        let absolute = if host.ends_with('.') {
            host.to_owned()
        } else {
            format!("{host}.")
        };
        let answer = resolver
            .lookup_ip(absolute)
            .await
            .map_err(|error| error.to_string())?;
        let mut refused = None;
        for ip in answer.iter() {
            match refusal(ip, self.allow_loopback) {
                None => return Ok(ip),
                Some(reason) => refused = Some(format!("the answer {ip} is {reason}")),
            }
        }
        Err(refused.unwrap_or_else(|| "the answer holds no address".to_owned()))
    }
}

impl std::fmt::Debug for NameResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NameResolver")
            .field("servers", &self.servers)
            .field("allow_loopback", &self.allow_loopback)
            .finish_non_exhaustive()
    }
}

fn build(servers: &[SocketAddr]) -> Result<TokioResolver, String> {
    let builder = if servers.is_empty() {
        TokioResolver::builder_tokio()
            .map_err(|error| format!("reading the system's DNS configuration: {error}"))?
    } else {
        let name_servers = servers.iter().map(|server| {
            let connections = [ConnectionConfig::udp(), ConnectionConfig::tcp()]
                .into_iter()
                .map(|mut connection| {
                    connection.port = server.port();
                    connection
                })
                .collect();
            NameServerConfig::new(server.ip(), true, connections)
        });
        let config = ResolverConfig::from_parts(None, Vec::new(), name_servers.collect());
        TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
    };
    builder
        .build()
        .map_err(|error| format!("building the DNS resolver: {error}"))
}

/// Why `ip` may not be dialled for a name, if it may not.
fn refusal(ip: IpAddr, allow_loopback: bool) -> Option<&'static str> {
    let ip = ip.to_canonical();
    if ip.is_loopback() && !allow_loopback {
        return Some("a loopback address");
    }
    if ip.is_unspecified() {
        return Some("unspecified");
    }
    if ip.is_multicast() {
        return Some("multicast");
    }
    let link_local = match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.is_unicast_link_local(),
    };
    link_local.then_some("link-local")
}

#[cfg(test)]
mod tests {
    use super::refusal;

    #[test]
    fn answers_for_the_proxys_own_host_and_link_local_are_refused() {
        for refused in [
            "127.0.0.1",
            "::1",
            "0.0.0.0",
            "::ffff:127.0.0.1",
            "169.254.169.254",
            "fe80::1",
            "224.0.0.1",
        ] {
            assert!(
                refusal(refused.parse().unwrap(), false).is_some(),
                "{refused}"
            );
        }
        for allowed in ["192.0.2.10", "10.1.2.3", "2001:db8::1"] {
            assert_eq!(refusal(allowed.parse().unwrap(), false), None, "{allowed}");
        }
        assert_eq!(refusal("127.0.0.1".parse().unwrap(), true), None);
        assert!(refusal("0.0.0.0".parse().unwrap(), true).is_some());
    }
}
