//! Every proxy connected to the control plane (`/debug/syncz`): its kind, sync state per
//! resource type, and where its metrics page is: always at the address its xDS stream came
//! from, on the port of the `WEFT_METRICS_ADDR` node metadata weft's proxies send (15020
//! for other proxies, such as Istio's ztunnel). Any xDS client can announce anything, so an
//! announced IP is used only when it is that peer address, or loopback while the peer is
//! loopback too; any other is refused, never fetched.

pub mod cert_expiry;

use serde::Serialize;
use serde_json::Value;
use std::net::{IpAddr, SocketAddr};

pub use cert_expiry::CertExpiry;

/// The metrics port of Istio's proxies and weft's.
pub const DEFAULT_METRICS_PORT: u16 = 15020;

/// One proxy as the page shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ProxyView {
    /// `Node.id`, e.g. `weft-node~node-a`.
    pub id: String,
    /// `node`, `waypoint`, `gateway` or `proxy`.
    pub kind: &'static str,
    /// The name after the kind: the node, or `<namespace>/<name>` of the Gateway.
    pub name: String,
    /// The identity the control plane authenticated.
    pub principal: String,
    /// Seconds since the Unix epoch when its xDS stream opened.
    pub connected_at_unix: u64,
    /// Whether every subscribed type is ACKed at the current version.
    pub in_sync: bool,
    /// Per type: `<short type> <acked version>` and its state.
    pub types: Vec<TypeView>,
    /// Where its metrics are read.
    pub metrics_addr: Option<SocketAddr>,
    /// Whether the last scrape worked.
    pub reachable: bool,
    /// Why the last scrape failed.
    pub error: Option<String>,
    /// Connections open now, by its own counters (opened minus closed).
    pub open_connections: f64,
    /// Requests per second it reported over the window (waypoints and gateways).
    pub requests_per_second: f64,
    /// The certificate it holds that expires first; `None` when not scraped or none
    /// reported.
    pub cert_expiry: Option<CertExpiry>,
}

/// One resource type of a proxy.
#[derive(Debug, Clone, Serialize)]
pub struct TypeView {
    /// The type URL's last part, e.g. `Address`.
    pub resource: String,
    /// Version last ACKed.
    pub acked: Option<String>,
    /// `SYNCED`, `NOT SYNCED` or `NACK: <error>`.
    pub state: String,
}

/// The proxies of a `/debug/syncz` page.
#[must_use]
pub fn from_syncz(syncz: &Value) -> Vec<ProxyView> {
    syncz.as_array().into_iter().flatten().map(proxy).collect()
}

fn proxy(status: &Value) -> ProxyView {
    let id = status["node_id"].as_str().unwrap_or_default().to_owned();
    let (kind, name) = kind_and_name(&id);
    let types: Vec<TypeView> = status["types"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(type_url, state)| TypeView {
            resource: type_url.rsplit('.').next().unwrap_or(type_url).to_owned(),
            acked: state["last_acked"]["version"].as_str().map(str::to_owned),
            state: type_state(state),
        })
        .collect();
    let metrics = metrics_addr(status);
    ProxyView {
        in_sync: types.iter().all(|t| t.state == "SYNCED"),
        metrics_addr: metrics.as_ref().ok().copied(),
        principal: status["identity"]["principal"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        connected_at_unix: status["connected_at_unix"].as_u64().unwrap_or_default(),
        id,
        kind,
        name,
        types,
        reachable: false,
        error: metrics.err(),
        open_connections: 0.0,
        requests_per_second: 0.0,
        cert_expiry: None,
    }
}

fn type_state(state: &Value) -> String {
    if let Some(error) = state["last_nack"]["error"].as_str() {
        format!("NACK: {error}")
    } else if state["in_sync"] == Value::Bool(true) {
        "SYNCED".to_owned()
    } else {
        "NOT SYNCED".to_owned()
    }
}

/// weft's node ids: `weft-node~NODE`, `weft-waypoint~NS~NAME`, `weft-gateway~NS~NAME`.
fn kind_and_name(id: &str) -> (&'static str, String) {
    let mut parts = id.split('~');
    let kind = match parts.next() {
        Some("weft-node") => "node",
        Some("weft-waypoint") => "waypoint",
        Some("weft-gateway") => "gateway",
        _ => return ("proxy", id.to_owned()),
    };
    (kind, parts.collect::<Vec<_>>().join("/"))
}

/// Where the proxy's metrics are read: the announced port (15020 when none is announced)
/// at the IP its xDS stream came from. An announced IP other than that one is accepted
/// only when both are loopback (proxies on this machine's loopback connect from
/// 127.0.0.1 whatever address they serve on); anything else is refused, with the reason.
fn metrics_addr(status: &Value) -> Result<SocketAddr, String> {
    const KEY: &str = weft_xds::METRICS_ADDR_METADATA;
    let peer: IpAddr = status["remote_addr"]
        .as_str()
        .and_then(|a| a.parse::<SocketAddr>().ok())
        .map(|a| a.ip().to_canonical())
        .ok_or("not scraped: the address its xDS stream came from is unknown")?;
    let Some(text) = status["metadata"][KEY].as_str() else {
        return Ok(SocketAddr::new(peer, DEFAULT_METRICS_PORT));
    };
    let announced: SocketAddr = text
        .parse()
        .map_err(|_| format!("not scraped: its {KEY} {text:?} is not IP:PORT"))?;
    let ip = announced.ip().to_canonical();
    if ip.is_unspecified() || ip == peer {
        Ok(SocketAddr::new(peer, announced.port()))
    } else if ip.is_loopback() && peer.is_loopback() {
        Ok(SocketAddr::new(ip, announced.port()))
    } else {
        Err(format!(
            "not scraped: its {KEY} {announced} is not at {peer}, where its xDS stream comes from"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_kind_sync_state_and_metrics_address() {
        let syncz = json!([
            {"node_id": "weft-waypoint~shop~waypoint", "remote_addr": "10.0.0.9:41000",
             "identity": {"principal": "spiffe://cluster.local/ns/shop/sa/waypoint"},
             "metadata": {"WEFT_METRICS_ADDR": "0.0.0.0:15020"},
             "types": {"type.googleapis.com/istio.workload.Address":
                 {"in_sync": true, "last_acked": {"version": "v7", "nonce": "1"}}}},
            {"node_id": "ztunnel~x", "remote_addr": "10.0.0.3:5000", "types": {
                "type.googleapis.com/istio.security.Authorization":
                 {"in_sync": false, "last_nack": {"error": "bad rule"}}}},
        ]);
        let proxies = from_syncz(&syncz);
        assert_eq!(proxies[0].kind, "waypoint");
        assert_eq!(proxies[0].name, "shop/waypoint");
        assert!(proxies[0].in_sync);
        assert_eq!(proxies[0].types[0].acked.as_deref(), Some("v7"));
        assert_eq!(
            proxies[0].metrics_addr,
            Some("10.0.0.9:15020".parse().unwrap())
        );
        assert_eq!(proxies[1].kind, "proxy");
        assert!(!proxies[1].in_sync);
        assert_eq!(proxies[1].types[0].state, "NACK: bad rule");
        assert_eq!(
            proxies[1].metrics_addr,
            Some("10.0.0.3:15020".parse().unwrap())
        );
    }

    fn address_of(remote: &str, announced: &str) -> Result<SocketAddr, String> {
        metrics_addr(&json!({"remote_addr": remote,
            "metadata": {"WEFT_METRICS_ADDR": announced}}))
    }

    #[test]
    fn announced_address_is_used_only_at_the_xds_peer_address() {
        let ok = |a: &str| Ok(a.parse::<SocketAddr>().unwrap());
        assert_eq!(
            address_of("10.0.0.9:41000", "10.0.0.9:9090"),
            ok("10.0.0.9:9090")
        );
        assert_eq!(
            address_of("[::ffff:10.0.0.9]:41000", "10.0.0.9:9090"),
            ok("10.0.0.9:9090"),
            "an IPv4-mapped peer is the same address"
        );
        assert_eq!(
            address_of("127.0.0.1:41000", "127.3.0.2:15020"),
            ok("127.3.0.2:15020"),
            "loopback proxies connect from 127.0.0.1"
        );
        for (remote, announced) in [
            ("10.0.0.9:41000", "10.0.0.50:15020"),
            ("10.0.0.9:41000", "127.0.0.1:15014"),
            ("127.0.0.1:41000", "169.254.169.254:80"),
        ] {
            let refused = address_of(remote, announced).unwrap_err();
            assert!(
                refused.contains(announced) && refused.contains("not scraped"),
                "{remote} announcing {announced}: {refused}"
            );
        }
        assert!(address_of("10.0.0.9:41000", "metrics").is_err());
        assert!(
            metrics_addr(&json!({"metadata": {}})).is_err(),
            "no peer address"
        );
    }
}
