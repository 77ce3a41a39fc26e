//! Flag groups of the node proxy's command line that other weft proxies share: the
//! resource limits (`weft waypoint run` takes [`HboneLimits`] too) and the access-log
//! format (`weft waypoint run`, `weft gateway`). The limit defaults are the libraries'
//! production defaults (see docs/limits.md); a count limit of 0 is taken as 1 (0 would
//! refuse everything).

use std::time::Duration;

use crate::capture::{CaptureOptions, DEFAULT_DNS_INFLIGHT_PER_POD, DEFAULT_DNS_INFLIGHT_TOTAL};
use crate::proxy::{LimitConfig, ProxyOptions};
use crate::telemetry::AccessLogFormat;

/// Limits of the node proxy.
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

/// Limits of an inbound HBONE listener (the node proxy, `weft waypoint run`).
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

/// The access log of a proxy (`weft node`, `weft waypoint run`, `weft gateway`).
#[derive(Debug, clap::Args)]
pub struct AccessLogArgs {
    /// Access-log line format; `off` writes no access log (metrics are still
    /// recorded), as operators often choose at an ingress for cost.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    access_log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
    Off,
}

impl AccessLogArgs {
    /// The chosen format.
    pub fn format(&self) -> AccessLogFormat {
        match self.access_log_format {
            LogFormat::Text => AccessLogFormat::Text,
            LogFormat::Json => AccessLogFormat::Json,
            LogFormat::Off => AccessLogFormat::Off,
        }
    }
}
