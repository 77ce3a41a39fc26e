//! Addresses of endpoints known by host name only: a ServiceEntry with `resolution: DNS`
//! and no endpoints (each host is its own endpoint), or with endpoints given by name.
//!
//! Names are resolved with the system's DNS configuration (`/etc/resolv.conf`), or with
//! the servers the proxy is given; the resolver caches answers for their TTL. A name is
//! looked up as written (absolute: never tried in the search domains), A and AAAA at once.
//! Each connection dials one usable address of the answer chosen at random, so a name with
//! several addresses spreads its connections over them and a client's retry can land on
//! another; addresses of the caller's family come first (the family of the address the
//! client dialled, or of the service's VIP), the other family only when the answer has
//! none of it, so an IPv4-only or IPv6-only cluster is not sent across families. An
//! answer pointing at the proxy's own host (loopback, `0.0.0.0/8`, `::`), at link-local or
//! multicast addresses, or at a cloud metadata address is refused (IPv4-mapped and NAT64
//! forms too), so whoever controls a DNS zone cannot make the proxy call its own admin port
//! or a metadata service.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolverConfig,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use rand::seq::IndexedRandom;
use tokio::sync::OnceCell;

/// A proxy's resolver, built on first use (a proxy that never meets a name needs no DNS
/// configuration).
pub struct NameResolver {
    servers: Vec<SocketAddr>,
    allow_loopback: bool,
    resolver: OnceCell<TokioResolver>,
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

    /// A usable address of `host` chosen at random, of the family `prefer_ipv6` names when
    /// the answer has one.
    ///
    /// # Errors
    /// The DNS configuration cannot be read, the lookup failed, or the answer held no
    /// usable address (why, for the 503 and the log).
    pub async fn resolve(&self, host: &str, prefer_ipv6: bool) -> Result<IpAddr, String> {
        if let Ok(ip) = host.trim_end_matches('.').parse::<IpAddr>() {
            // an address written as a name needs no lookup, but the same refusals
            return match refusal(ip, self.allow_loopback) {
                None => Ok(ip),
                Some(reason) => Err(format!("{ip} is {reason}")),
            };
        }
        // a configuration that cannot be read now is tried again on the next connection
        let resolver = self
            .resolver
            .get_or_try_init(|| async { build(&self.servers) })
            .await?;
        let absolute = if host.ends_with('.') {
            host.to_owned()
        } else {
            format!("{host}.")
        };
        let answer = resolver
            .lookup_ip(absolute)
            .await
            .map_err(|error| error.to_string())?;
        pick(answer.iter(), prefer_ipv6, self.allow_loopback)
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

/// One usable address of `answer` at random, of the preferred family if it has one; why
/// none is usable otherwise.
fn pick(
    answer: impl Iterator<Item = IpAddr>,
    prefer_ipv6: bool,
    allow_loopback: bool,
) -> Result<IpAddr, String> {
    let mut refused = None;
    let (preferred, other): (Vec<IpAddr>, Vec<IpAddr>) = answer
        .filter(|ip| match refusal(*ip, allow_loopback) {
            None => true,
            Some(reason) => {
                refused = Some(format!("the answer {ip} is {reason}"));
                false
            }
        })
        .partition(|ip| ip.to_canonical().is_ipv6() == prefer_ipv6);
    let usable = if preferred.is_empty() {
        other
    } else {
        preferred
    };
    usable
        .choose(&mut rand::rng())
        .copied()
        .ok_or_else(|| refused.unwrap_or_else(|| "the answer holds no address".to_owned()))
}

fn build(servers: &[SocketAddr]) -> Result<TokioResolver, String> {
    let mut builder = if servers.is_empty() {
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
    let options = builder.options_mut();
    options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    // a lookup takes at most LOOKUP_TIMEOUT x LOOKUP_ATTEMPTS before the connection fails
    options.timeout = LOOKUP_TIMEOUT;
    options.attempts = LOOKUP_ATTEMPTS;
    builder
        .build()
        .map_err(|error| format!("building the DNS resolver: {error}"))
}

/// How long one query waits for an answer, and how many tries a lookup makes: a name
/// that cannot be resolved fails its connection within 4 s.
const LOOKUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
const LOOKUP_ATTEMPTS: usize = 2;

/// Cloud metadata services outside the link-local ranges (AWS and GCP over IPv6,
/// Alibaba Cloud).
const METADATA: [IpAddr; 3] = [
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)),
    IpAddr::V6(Ipv6Addr::new(0xfd20, 0xce, 0, 0, 0, 0, 0, 0x254)),
    IpAddr::V4(Ipv4Addr::new(100, 100, 100, 200)),
];

/// Why `ip` may not be dialled for a name, if it may not.
fn refusal(ip: IpAddr, allow_loopback: bool) -> Option<&'static str> {
    let ip = match ip.to_canonical() {
        // NAT64 (64:ff9b::/96) reaches the IPv4 address in its last 32 bits
        IpAddr::V6(v6) if v6.segments()[..6] == [0x64, 0xff9b, 0, 0, 0, 0] => {
            let [.., a, b, c, d] = v6.octets();
            IpAddr::V4(Ipv4Addr::new(a, b, c, d))
        }
        other => other,
    };
    if ip.is_loopback() && !allow_loopback {
        return Some("a loopback address");
    }
    if METADATA.contains(&ip) {
        return Some("a cloud metadata address");
    }
    match ip {
        IpAddr::V4(v4) if v4.octets()[0] == 0 => Some("this host (0.0.0.0/8)"),
        IpAddr::V6(v6) if v6.is_unspecified() => Some("unspecified"),
        IpAddr::V4(v4) if v4.is_link_local() => Some("link-local"),
        IpAddr::V6(v6) if v6.is_unicast_link_local() => Some("link-local"),
        _ if ip.is_multicast() => Some("multicast"),
        _ => None,
    }
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
            "0.1.2.3",
            "fd00:ec2::254",
            "100.100.100.200",
            "64:ff9b::a9fe:a9fe",
            "::ffff:169.254.169.254",
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
