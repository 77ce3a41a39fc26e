//! Resource limits of the long-running processes, as flags (`weft node`, `weft control`,
//! `weft waypoint run`);
//! the defaults are the libraries' production defaults (see docs/limits.md). A count
//! limit of 0 is taken as 1 (0 would refuse everything).

use std::time::Duration;

use weft_control::secure_server::{DEFAULT_MAX_CONNECTIONS_PER_SOURCE, SecureServerConfig};
use weft_node::capture::{
    CaptureOptions, DEFAULT_DNS_INFLIGHT_PER_POD, DEFAULT_DNS_INFLIGHT_TOTAL,
};
use weft_node::proxy::{LimitConfig, ProxyOptions};

/// Limits of `weft node`.
#[derive(Debug, Clone, clap::Args)]
pub struct NodeLimits {
    /// Seconds an explicit-port client may take to send its whole SOCKS5 / HTTP CONNECT
    /// request head.
    #[arg(long, default_value_t = 10, value_name = "SECONDS")]
    pub explicit_head_timeout: u64,
    #[command(flatten)]
    pub hbone: HboneLimits,
    /// Forwarded DNS queries one pod may have waiting for the upstream.
    #[arg(long, default_value_t = DEFAULT_DNS_INFLIGHT_PER_POD, value_name = "N")]
    pub dns_max_inflight_per_pod: usize,
    /// Forwarded DNS queries the node may have waiting for the upstream.
    #[arg(long, default_value_t = DEFAULT_DNS_INFLIGHT_TOTAL, value_name = "N")]
    pub dns_max_inflight: usize,
}

/// Limits of an inbound HBONE listener (`weft node`, `weft waypoint run`).
#[derive(Debug, Clone, clap::Args)]
pub struct HboneLimits {
    /// Open inbound HBONE connections allowed per client identity.
    #[arg(long, default_value_t = LimitConfig::default().connections_per_identity, value_name = "N")]
    pub hbone_max_connections_per_identity: usize,
    /// Open inbound HBONE connections allowed in all.
    #[arg(long, default_value_t = LimitConfig::default().connections_total, value_name = "N")]
    pub hbone_max_connections: usize,
    /// Open inbound HBONE tunnels allowed per client identity.
    #[arg(long, default_value_t = LimitConfig::default().tunnels_per_identity, value_name = "N")]
    pub hbone_max_tunnels_per_identity: usize,
    /// Open inbound HBONE tunnels allowed in all.
    #[arg(long, default_value_t = LimitConfig::default().tunnels_total, value_name = "N")]
    pub hbone_max_tunnels: usize,
}

impl HboneLimits {
    /// The limits as the `hbone` crate takes them.
    pub fn config(&self) -> LimitConfig {
        LimitConfig {
            connections_per_identity: self.hbone_max_connections_per_identity.max(1),
            connections_total: self.hbone_max_connections.max(1),
            tunnels_per_identity: self.hbone_max_tunnels_per_identity.max(1),
            tunnels_total: self.hbone_max_tunnels.max(1),
        }
    }
}

impl NodeLimits {
    /// Sets the data path's limits.
    pub fn apply(&self, options: &mut ProxyOptions) {
        options.head_timeout = Duration::from_secs(self.explicit_head_timeout);
        options.inbound_limits = self.hbone.config();
    }

    /// Sets the DNS proxy's limits.
    pub fn apply_capture(&self, options: &mut CaptureOptions) {
        options.dns_inflight_per_pod = self.dns_max_inflight_per_pod.max(1);
        options.dns_inflight_total = self.dns_max_inflight.max(1);
    }
}

/// Limits of `weft control`.
#[derive(Debug, Clone, clap::Args)]
pub struct ControlLimits {
    /// Seconds from accepting a secure-port connection by which its TLS handshake, HTTP/2
    /// preface and first request must be done.
    #[arg(long, default_value_t = 10, value_name = "SECONDS")]
    pub connection_deadline: u64,
    /// Open secure-port connections allowed from one source address.
    #[arg(long, default_value_t = DEFAULT_MAX_CONNECTIONS_PER_SOURCE, value_name = "N")]
    pub max_connections_per_source: usize,
    /// Open xDS streams allowed per caller (bearer token).
    #[arg(long, default_value_t = weft_xds::ServerConfig::default().max_streams_per_caller, value_name = "N")]
    pub max_xds_streams_per_token: usize,
}

impl ControlLimits {
    /// Sets the secure port's and the xDS server's limits.
    pub fn apply(&self, secure: &mut SecureServerConfig, xds: &mut weft_xds::ServerConfig) {
        secure.handshake_timeout = Duration::from_secs(self.connection_deadline);
        secure.max_connections_per_source = self.max_connections_per_source.max(1);
        xds.max_streams_per_caller = self.max_xds_streams_per_token.max(1);
    }
}
