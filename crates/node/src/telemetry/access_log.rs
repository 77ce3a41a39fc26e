//! One access-log line per connection.
//!
//! Lines are emitted as `tracing` events at INFO on the dedicated target
//! [`ACCESS_LOG_TARGET`] (`weft::access`), so operators route or silence them with the usual
//! filter (`RUST_LOG=weft::access=off`, or a separate layer writing them to a file). The event
//! message is the whole line, rendered either as `key=value` text (default, one line, values
//! quoted when they contain spaces, quotes or `=`) or as a JSON object, per
//! [`AccessLogFormat`]. Absent values are left out.

use std::fmt::{self, Write as _};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::labels::Reporter;
use crate::state::{MeshService, WorkloadNames};

/// The `tracing` target of access-log events.
pub const ACCESS_LOG_TARGET: &str = "weft::access";

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnectionResult {
    /// Relayed and closed normally.
    Ok,
    /// Refused by authorization.
    Denied,
    /// Could not be established or broke (the reason says why).
    Failed,
}

/// Everything logged about one connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessLogEntry {
    /// Which proxy logged it.
    pub reporter: Reporter,
    /// Start time, milliseconds since the Unix epoch.
    pub start_unix_ms: u64,
    /// Client address.
    pub src_addr: SocketAddr,
    /// Client workload `<ns>/<name>`.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "shared")]
    pub src_workload: Option<Arc<str>>,
    /// Client identity (`spiffe://...`).
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "shared")]
    pub src_identity: Option<Arc<str>>,
    /// Destination workload address and port.
    pub dst_addr: SocketAddr,
    /// Tunnel endpoint (`<ip>:15008`) when sent over HBONE.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dst_hbone_addr: Option<SocketAddr>,
    /// Service hostname the client addressed.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "shared")]
    pub dst_service: Option<Arc<str>>,
    /// Destination workload `<ns>/<name>`.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "shared")]
    pub dst_workload: Option<Arc<str>>,
    /// Destination identity (`spiffe://...`).
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "shared")]
    pub dst_identity: Option<Arc<str>>,
    /// Bytes from source to destination.
    pub bytes_sent: u64,
    /// Bytes from destination to source.
    pub bytes_received: u64,
    /// Connection lifetime in milliseconds.
    pub duration_ms: u64,
    /// How it ended.
    pub result: ConnectionResult,
    /// Failure or denial reason (for `denied`, the decision text).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Rendering of access-log lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AccessLogFormat {
    /// `key=value` pairs.
    #[default]
    Text,
    /// One JSON object.
    Json,
    /// No access log: nothing is rendered or written (ingress operators turn it off for
    /// cost; metrics are still recorded).
    Off,
}

/// Serializes a shared string field like the `String` it replaces.
///
/// # Errors
/// Those of the serializer.
pub(crate) fn shared<S: serde::Serializer>(
    value: &Option<Arc<str>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    value.as_deref().serialize(serializer)
}

impl AccessLogEntry {
    /// An entry with the addresses and the parts known from the state filled in; the data
    /// path sets bytes, duration, result and reason when the connection ends.
    #[must_use]
    pub fn new(
        reporter: Reporter,
        src_addr: SocketAddr,
        dst_addr: SocketAddr,
        start_unix_ms: u64,
    ) -> Self {
        Self {
            reporter,
            start_unix_ms,
            src_addr,
            src_workload: None,
            src_identity: None,
            dst_addr,
            dst_hbone_addr: None,
            dst_service: None,
            dst_workload: None,
            dst_identity: None,
            bytes_sent: 0,
            bytes_received: 0,
            duration_ms: 0,
            result: ConnectionResult::Ok,
            reason: None,
        }
    }

    /// Fills the source workload (its shared names) and the identity it presented.
    #[must_use]
    pub fn with_source(
        mut self,
        workload: Option<&WorkloadNames>,
        identity: Option<Arc<str>>,
    ) -> Self {
        self.src_workload = workload.map(|w| Arc::clone(&w.reference));
        self.src_identity = identity;
        self
    }

    /// Fills the destination workload, its identity and the service.
    #[must_use]
    pub fn with_destination(
        mut self,
        workload: Option<&WorkloadNames>,
        service: Option<&MeshService>,
    ) -> Self {
        self.dst_workload = workload.map(|w| Arc::clone(&w.reference));
        self.dst_identity = workload.map(|w| Arc::clone(&w.identity));
        self.dst_service = service.map(|s| s.proto().hostname.as_str().into());
        self
    }

    /// Records how the connection ended.
    pub fn finish(&mut self, duration: Duration, result: ConnectionResult, reason: Option<String>) {
        self.duration_ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        self.result = result;
        self.reason = reason;
    }

    /// Renders the line in `format`.
    #[must_use]
    pub fn render(&self, format: AccessLogFormat) -> String {
        match format {
            AccessLogFormat::Text => self.to_string(),
            // Serializing this struct (strings, numbers, addresses) cannot fail.
            AccessLogFormat::Json => serde_json::to_string(self).unwrap_or_default(),
            AccessLogFormat::Off => String::new(),
        }
    }

    /// Emits the line on [`ACCESS_LOG_TARGET`].
    pub fn emit(&self, format: AccessLogFormat) {
        if format != AccessLogFormat::Off
            && tracing::enabled!(target: ACCESS_LOG_TARGET, tracing::Level::INFO)
        {
            tracing::info!(target: ACCESS_LOG_TARGET, "{}", self.render(format));
        }
    }
}

/// The text form: `reporter=source start_unix_ms=... src.addr=... ... result=ok`.
impl fmt::Display for AccessLogEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut line = String::with_capacity(256);
        let mut field = |key: &str, value: &dyn fmt::Display| {
            if !line.is_empty() {
                line.push(' ');
            }
            let value = value.to_string();
            let needs_quotes = value.is_empty() || value.contains([' ', '"', '=', '\\', '\n']);
            // Writing into a String cannot fail.
            let _ = if needs_quotes {
                write!(line, "{key}={value:?}")
            } else {
                write!(line, "{key}={value}")
            };
        };
        field("reporter", &self.reporter);
        field("start_unix_ms", &self.start_unix_ms);
        field("src.addr", &self.src_addr);
        let optional = [
            ("src.workload", &self.src_workload),
            ("src.identity", &self.src_identity),
        ];
        for (key, value) in optional {
            if let Some(value) = value {
                field(key, value);
            }
        }
        field("dst.addr", &self.dst_addr);
        if let Some(hbone) = &self.dst_hbone_addr {
            field("dst.hbone_addr", hbone);
        }
        let optional = [
            ("dst.service", &self.dst_service),
            ("dst.workload", &self.dst_workload),
            ("dst.identity", &self.dst_identity),
        ];
        for (key, value) in optional {
            if let Some(value) = value {
                field(key, value);
            }
        }
        field("bytes_sent", &self.bytes_sent);
        field("bytes_received", &self.bytes_received);
        field("duration_ms", &self.duration_ms);
        let result = match self.result {
            ConnectionResult::Ok => "ok",
            ConnectionResult::Denied => "denied",
            ConnectionResult::Failed => "failed",
        };
        field("result", &result);
        if let Some(reason) = &self.reason {
            field("reason", reason);
        }
        f.write_str(&line)
    }
}
