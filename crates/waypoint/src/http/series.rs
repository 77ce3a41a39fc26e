//! A connection's cache of the request-metric series its requests were counted in. The
//! standard labels of a request (about twenty strings derived from the source, endpoint
//! and service records) are the same for every request of a connection that goes to the
//! same endpoint and gets the same answer, so they are derived and hashed once per
//! connection and outcome, not once per request. Entries are told apart by the identity
//! of the records (`Arc` pointers, kept alive by the entry, so an address cannot be
//! reused by another record meanwhile): a record replaced by a configuration update is a
//! new entry with freshly derived labels.

use std::sync::{Arc, Mutex, PoisonError};

use weft_upstream::{MeshService, MeshWorkload};

use crate::telemetry::{Metrics, RequestLabels, RequestSeries};

/// Series kept per connection; the oldest goes when a new one does not fit.
const MAX_ENTRIES: usize = 8;

/// What decides a request's labels besides its connection.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// The endpoint that answered.
    pub endpoint: Option<Arc<MeshWorkload>>,
    /// The backend service.
    pub service: Option<Arc<MeshService>>,
    /// Whether the request was gRPC.
    pub grpc: bool,
    /// Response flags (`-` when none).
    pub flags: &'static str,
    /// Status sent to the client.
    pub status: u16,
    /// `grpc-status` of the response, empty when none.
    pub grpc_status: String,
}

impl Outcome {
    fn same(&self, other: &Self) -> bool {
        same_arc(self.endpoint.as_ref(), other.endpoint.as_ref())
            && same_arc(self.service.as_ref(), other.service.as_ref())
            && self.grpc == other.grpc
            && self.flags == other.flags
            && self.status == other.status
            && self.grpc_status == other.grpc_status
    }
}

fn same_arc<T>(a: Option<&Arc<T>>, b: Option<&Arc<T>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        (None, None) => true,
        _ => false,
    }
}

/// The series of one connection's requests by outcome.
#[derive(Debug, Default)]
pub(crate) struct SeriesCache {
    entries: Mutex<Vec<(Outcome, RequestSeries)>>,
}

impl SeriesCache {
    /// The series of `outcome`, its labels made by `labels` (and registered in `metrics`)
    /// the first time.
    pub fn series(
        &self,
        metrics: &Metrics,
        outcome: Outcome,
        labels: impl FnOnce(&Outcome) -> RequestLabels,
    ) -> RequestSeries {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, series)) = entries.iter().find(|(known, _)| known.same(&outcome)) {
            return series.clone();
        }
        let series = metrics.series(&labels(&outcome));
        if entries.len() == MAX_ENTRIES {
            entries.remove(0);
        }
        entries.push((outcome, series.clone()));
        series
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::registry::Registry;
    use weft_node::telemetry::{ConnectionEnds, ConnectionLabels, Reporter};
    use weft_policy::Transport;

    fn labels(outcome: &Outcome) -> RequestLabels {
        let connection = ConnectionLabels::derive(&ConnectionEnds {
            reporter: Reporter::Source,
            source_workload: None,
            source_identity: None,
            destination_workload: outcome.endpoint.as_deref(),
            destination_service: outcome.service.as_deref(),
            transport: Transport::Plaintext,
        });
        RequestLabels {
            connection,
            response_code: outcome.status,
            grpc_response_status: outcome.grpc_status.clone(),
        }
    }

    fn outcome(status: u16) -> Outcome {
        Outcome {
            endpoint: None,
            service: None,
            grpc: false,
            flags: "-",
            status,
            grpc_status: String::new(),
        }
    }

    /// Counts one request per status through `cache`; how many times labels were derived.
    fn record(
        cache: &SeriesCache,
        metrics: &Metrics,
        statuses: impl IntoIterator<Item = u16>,
    ) -> usize {
        let mut derived = 0;
        for status in statuses {
            let series = cache.series(metrics, outcome(status), |o| {
                derived += 1;
                labels(o)
            });
            series.observe(1.0, 0, 10);
        }
        derived
    }

    fn exposition(registry: &Registry) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry).expect("encode");
        text
    }

    #[test]
    fn requests_with_the_same_outcome_share_a_series_and_others_get_their_own() {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        let cache = SeriesCache::default();
        let derived = record(&cache, &metrics, [200, 200, 200, 503, 200]);
        assert_eq!(derived, 2, "labels are derived once per outcome");
        let text = exposition(&registry);
        let count = |code: &str| {
            text.lines()
                .find(|l| {
                    l.starts_with("istio_requests_total{")
                        && l.contains(&format!("response_code=\"{code}\""))
                })
                .and_then(|l| l.rsplit(' ').next())
                .map(str::to_owned)
        };
        assert_eq!(count("200").as_deref(), Some("4"));
        assert_eq!(count("503").as_deref(), Some("1"));
    }

    #[test]
    fn the_oldest_outcome_goes_when_the_cache_is_full() {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        let cache = SeriesCache::default();
        let statuses = (0..=MAX_ENTRIES).map(|i| 200 + u16::try_from(i).expect("small"));
        let last = 201 + u16::try_from(MAX_ENTRIES).expect("small");
        let derived = record(&cache, &metrics, statuses.chain([200, last]));
        // Statuses 200-208 are nine outcomes for eight entries: 208 evicts 200, so 200
        // is derived again (evicting 201), and 209 is new.
        assert_eq!(derived, MAX_ENTRIES + 3);
        assert_eq!(cache.entries.lock().expect("lock").len(), MAX_ENTRIES);
    }
}
