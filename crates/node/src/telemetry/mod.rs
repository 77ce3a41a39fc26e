//! Telemetry of the node proxy: Istio-named L4 metrics with the standard labels
//! ([`ConnectionLabels`], derived from the state's workload and service records), policy
//! denial and HBONE pool counters ([`Metrics`]), and one access-log line per connection
//! ([`AccessLogEntry`], emitted on the `weft::access` tracing target).

mod access_log;
mod labels;
mod metrics;
#[cfg(test)]
mod tests;

pub(crate) use access_log::shared;
pub use access_log::{ACCESS_LOG_TARGET, AccessLogEntry, AccessLogFormat, ConnectionResult};
pub use labels::{ConnectionEnds, ConnectionLabels, Reporter, SecurityPolicy, UNKNOWN};
pub use metrics::{ConnectionMetrics, DenialLabels, Metrics, PoolMetrics};
