//! The Istio standard label set of the L4 metrics and its derivation from the state's
//! workload and service records.

use std::fmt;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};

use crate::state::{MeshService, MeshWorkload};
use weft_identity::SpiffeId;
use weft_policy::Transport;

/// The value Istio dashboards expect for anything not known.
pub const UNKNOWN: &str = "unknown";

/// Which side of the connection records the metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Reporter {
    /// The client's node proxy (outbound).
    Source,
    /// The server's node proxy (inbound).
    Destination,
    /// A waypoint (L7 proxy between the two).
    Waypoint,
}

/// `connection_security_policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SecurityPolicy {
    /// Carried over HBONE (mutual TLS).
    MutualTls,
    /// Plain TCP.
    Unknown,
}

impl Reporter {
    /// `source`, `destination` or `waypoint`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Source => "source",
            Self::Destination => "destination",
            Self::Waypoint => "waypoint",
        }
    }
}

impl SecurityPolicy {
    /// `mutual_tls` or `unknown`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MutualTls => "mutual_tls",
            Self::Unknown => UNKNOWN,
        }
    }
}

impl From<Transport> for SecurityPolicy {
    fn from(transport: Transport) -> Self {
        match transport {
            Transport::Hbone => Self::MutualTls,
            Transport::Plaintext => Self::Unknown,
        }
    }
}

impl fmt::Display for Reporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl EncodeLabelValue for Reporter {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), fmt::Error> {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

impl EncodeLabelValue for SecurityPolicy {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), fmt::Error> {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

/// Labels of `istio_tcp_*` metrics (names and order as in `docs/telemetry.md`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ConnectionLabels {
    pub reporter: Reporter,
    pub source_workload: String,
    pub source_canonical_service: String,
    pub source_canonical_revision: String,
    pub source_workload_namespace: String,
    pub source_principal: String,
    pub source_app: String,
    pub source_version: String,
    pub source_cluster: String,
    pub destination_service: String,
    pub destination_service_name: String,
    pub destination_service_namespace: String,
    pub destination_workload: String,
    pub destination_canonical_service: String,
    pub destination_canonical_revision: String,
    pub destination_workload_namespace: String,
    pub destination_principal: String,
    pub destination_app: String,
    pub destination_version: String,
    pub destination_cluster: String,
    pub request_protocol: &'static str,
    pub response_flags: &'static str,
    pub connection_security_policy: SecurityPolicy,
}

/// What the data path knows about a connection when it is established.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionEnds<'a> {
    /// Which proxy records.
    pub reporter: Reporter,
    /// The client workload, if known (by source address or because it is local).
    pub source_workload: Option<&'a MeshWorkload>,
    /// The client identity: its certificate's on the destination side, the identity the
    /// source proxy presented on the source side; `None` for plaintext.
    pub source_identity: Option<&'a SpiffeId>,
    /// The server workload, if known.
    pub destination_workload: Option<&'a MeshWorkload>,
    /// The service the client addressed, if it used a VIP.
    pub destination_service: Option<&'a MeshService>,
    /// HBONE (mTLS) or plaintext.
    pub transport: Transport,
}

/// The labels derived from one workload record.
struct WorkloadLabels {
    workload: String,
    canonical_service: String,
    canonical_revision: String,
    namespace: String,
    app: String,
    version: String,
    cluster: String,
}

impl WorkloadLabels {
    /// Canonical name and revision come pre-resolved from the control plane (labels, then
    /// workload name / `latest`); the same fallback is applied here if they are empty.
    fn of(workload: Option<&MeshWorkload>) -> Self {
        let Some(w) = workload.map(MeshWorkload::proto) else {
            return Self {
                workload: UNKNOWN.into(),
                canonical_service: UNKNOWN.into(),
                canonical_revision: UNKNOWN.into(),
                namespace: UNKNOWN.into(),
                app: UNKNOWN.into(),
                version: UNKNOWN.into(),
                cluster: UNKNOWN.into(),
            };
        };
        let workload_name = first_known(&[&w.workload_name, &w.name]);
        let canonical_service = first_known(&[&w.canonical_name, &workload_name]);
        let canonical_revision = first_known(&[&w.canonical_revision, "latest"]);
        Self {
            app: canonical_service.clone(),
            version: canonical_revision.clone(),
            canonical_service,
            canonical_revision,
            workload: workload_name,
            namespace: first_known(&[&w.namespace]),
            cluster: first_known(&[&w.cluster_id]),
        }
    }
}

fn first_known(candidates: &[&str]) -> String {
    candidates
        .iter()
        .find(|c| !c.is_empty())
        .copied()
        .unwrap_or(UNKNOWN)
        .to_owned()
}

impl ConnectionLabels {
    /// Derives the full label set. The destination principal is reported only for HBONE
    /// connections (where the destination identity is verified).
    #[must_use]
    pub fn derive(ends: &ConnectionEnds<'_>) -> Self {
        let src = WorkloadLabels::of(ends.source_workload);
        let dst = WorkloadLabels::of(ends.destination_workload);
        let principal =
            |id: Option<&SpiffeId>| id.map_or_else(|| UNKNOWN.to_owned(), SpiffeId::to_string);
        let destination_identity = ends
            .destination_workload
            .filter(|_| ends.transport == Transport::Hbone)
            .map(MeshWorkload::identity);
        let service = ends.destination_service.map(MeshService::proto);
        let service_field =
            |f: fn(&weft_proto::workload::Service) -> &str| service.map_or(UNKNOWN, f).to_owned();
        Self {
            reporter: ends.reporter,
            source_workload: src.workload,
            source_canonical_service: src.canonical_service,
            source_canonical_revision: src.canonical_revision,
            source_workload_namespace: src.namespace,
            source_principal: principal(ends.source_identity),
            source_app: src.app,
            source_version: src.version,
            source_cluster: src.cluster,
            destination_service: service_field(|s| &s.hostname),
            destination_service_name: service_field(|s| &s.name),
            destination_service_namespace: service_field(|s| &s.namespace),
            destination_workload: dst.workload,
            destination_canonical_service: dst.canonical_service,
            destination_canonical_revision: dst.canonical_revision,
            destination_workload_namespace: dst.namespace,
            destination_principal: principal(destination_identity),
            destination_app: dst.app,
            destination_version: dst.version,
            destination_cluster: dst.cluster,
            request_protocol: "tcp",
            response_flags: "-",
            connection_security_policy: ends.transport.into(),
        }
    }
}
