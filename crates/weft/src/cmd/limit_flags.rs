//! Resource limits of the long-running processes, as flags (`weft control`,
//! `weft waypoint run`; `weft node`'s are in `weft_node::cli::flags`);
//! the defaults are the libraries' production defaults (see docs/limits.md). A count
//! limit of 0 is taken as 1 (0 would refuse everything).

use std::time::Duration;

use weft_control::secure_server::{DEFAULT_MAX_CONNECTIONS_PER_SOURCE, SecureServerConfig};
/// The node proxy's limits live with its command line (`weft_node::cli`), shared with the
/// `weft-node` binary; `weft waypoint run` takes its HBONE listener limits.
pub use weft_node::cli::HboneLimits;

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
