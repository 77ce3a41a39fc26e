//! Per-proxy synchronisation status (backs `/debug/syncz` and `weft status`).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use serde::Serialize;

use crate::auth::PeerIdentity;

/// One connected proxy.
#[derive(Debug, Clone, Serialize)]
pub struct ProxyStatus {
    /// Server-local stream id (unique while the server runs).
    pub stream_id: u64,
    /// `Node.id` from the proxy's first request (empty until it arrives).
    pub node_id: String,
    /// `Node.cluster`, or the call's `clusterid` metadata header when that is empty.
    pub cluster: String,
    /// Identity established by the authenticator.
    pub identity: PeerIdentity,
    /// Remote socket address, when known.
    pub remote_addr: Option<String>,
    /// Seconds since the Unix epoch when the stream opened.
    pub connected_at_unix: u64,
    /// The string values of `Node.metadata` from the proxy's first request (other kinds
    /// of value are left out), e.g. [`METRICS_ADDR_METADATA`].
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    /// Per type URL.
    pub types: BTreeMap<String, TypeStatus>,
}

/// `Node.metadata` key under which weft's proxies announce where their Prometheus metrics
/// page is (`IP:PORT`; an unspecified IP means every address of the proxy). `weft
/// dashboard` reads it from `/debug/syncz` to find the pages it scrapes.
pub const METRICS_ADDR_METADATA: &str = "WEFT_METRICS_ADDR";

/// The string values of a `Node.metadata` struct.
#[must_use]
pub fn string_metadata(metadata: Option<&prost_types::Struct>) -> BTreeMap<String, String> {
    metadata
        .into_iter()
        .flat_map(|s| &s.fields)
        .filter_map(|(key, value)| match &value.kind {
            Some(prost_types::value::Kind::StringValue(text)) => Some((key.clone(), text.clone())),
            _ => None,
        })
        .collect()
}

/// A `Node.metadata` struct of string values: `fields`, then the proxy's metrics page
/// under [`METRICS_ADDR_METADATA`] when it has one (the inverse of [`string_metadata`]).
#[must_use]
pub fn proxy_metadata(
    fields: &[(&str, &str)],
    metrics: Option<std::net::SocketAddr>,
) -> prost_types::Struct {
    let metrics = metrics.map(|addr| (METRICS_ADDR_METADATA, addr.to_string()));
    let string = |text: String| prost_types::Value {
        kind: Some(prost_types::value::Kind::StringValue(text)),
    };
    prost_types::Struct {
        fields: fields
            .iter()
            .map(|(key, value)| ((*key).to_owned(), string((*value).to_owned())))
            .chain(metrics.map(|(key, addr)| (key.to_owned(), string(addr))))
            .collect(),
    }
}

/// The state of one type URL on one stream.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TypeStatus {
    /// True for a wildcard subscription.
    pub wildcard: bool,
    /// Names and aliases explicitly subscribed.
    pub subscribed_names: usize,
    /// Resources the proxy is believed to hold.
    pub resources: usize,
    /// The generation (`system_version_info`) the server currently has for this type.
    pub current_version: String,
    /// Last response sent.
    pub last_sent: Option<VersionNonce>,
    /// Last response the proxy ACKed.
    pub last_acked: Option<VersionNonce>,
    /// Last rejection, kept until a later ACK.
    pub last_nack: Option<NackStatus>,
    /// Total NACKs on this stream for this type.
    pub nacks: u64,
    /// True when the last response sent was ACKed and the proxy has everything current.
    pub in_sync: bool,
}

/// A response identified by the snapshot generation it came from and its nonce.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionNonce {
    /// `system_version_info` of the response.
    pub version: String,
    /// Nonce of the response.
    pub nonce: String,
}

/// A NACK and the proxy's reason.
#[derive(Debug, Clone, Serialize)]
pub struct NackStatus {
    /// The rejected response.
    pub response: VersionNonce,
    /// `error_detail.message` from the proxy.
    pub error: String,
}

/// Shared table of connected proxies.
#[derive(Debug, Clone, Default)]
pub(crate) struct StatusTable {
    proxies: Arc<Mutex<HashMap<u64, ProxyStatus>>>,
}

impl StatusTable {
    pub(crate) fn insert(&self, status: ProxyStatus) -> StatusEntry {
        let stream_id = status.stream_id;
        self.lock().insert(stream_id, status);
        StatusEntry {
            table: self.clone(),
            stream_id,
        }
    }

    pub(crate) fn list(&self) -> Vec<ProxyStatus> {
        let mut proxies: Vec<ProxyStatus> = self.lock().values().cloned().collect();
        proxies.sort_by(|a, b| {
            a.node_id
                .cmp(&b.node_id)
                .then(a.stream_id.cmp(&b.stream_id))
        });
        proxies
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, ProxyStatus>> {
        self.proxies.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A stream's row in the table; removed when dropped.
#[derive(Debug)]
pub(crate) struct StatusEntry {
    table: StatusTable,
    stream_id: u64,
}

impl StatusEntry {
    pub(crate) fn update(&self, change: impl FnOnce(&mut ProxyStatus)) {
        if let Some(status) = self.table.lock().get_mut(&self.stream_id) {
            change(status);
        }
    }
}

impl Drop for StatusEntry {
    fn drop(&mut self) {
        self.table.lock().remove(&self.stream_id);
    }
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_metadata_reads_back_as_the_same_strings() {
        let addr: std::net::SocketAddr = "10.0.0.7:15020".parse().unwrap();
        let metadata = proxy_metadata(&[("NAME", "gw"), ("NAMESPACE", "edge")], Some(addr));
        let read = string_metadata(Some(&metadata));
        assert_eq!(read.get("NAME").map(String::as_str), Some("gw"));
        assert_eq!(read.get("NAMESPACE").map(String::as_str), Some("edge"));
        assert_eq!(
            read.get(METRICS_ADDR_METADATA).map(String::as_str),
            Some("10.0.0.7:15020")
        );
        let without = proxy_metadata(&[("NAME", "gw")], None);
        assert!(!string_metadata(Some(&without)).contains_key(METRICS_ADDR_METADATA));
    }
}
