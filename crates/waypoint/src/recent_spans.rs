//! The last finished spans of a waypoint or gateway, kept in memory for the dashboard
//! (`/debug/traces` on the metrics port) beside, or instead of, OTLP export.
//!
//! [`RecentSpans`] is a ring buffer of fixed capacity: its memory is allocated once, a
//! sampled request's span is moved in under a short lock (the oldest is dropped when it is
//! full), and nothing is kept for requests that are not sampled or when the capacity is 0.

use serde::Serialize;
use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use weft_l7::trace::TraceContext;

use crate::telemetry::AccessEntry;

/// One request as a proxy saw it: its span ids and the access-log fields that matter in a
/// trace.
#[derive(Debug, Clone, Serialize)]
pub struct RecentSpan {
    /// W3C trace id (32 hex digits).
    pub trace_id: String,
    /// This proxy's span id (16 hex digits).
    pub span_id: String,
    /// The caller's span, if the request continued a trace.
    pub parent_span_id: Option<String>,
    /// The proxy: its `service.name` (`<name>.<namespace>`).
    pub proxy: String,
    /// `waypoint` or `source` (a gateway).
    pub reporter: &'static str,
    /// Method.
    pub method: String,
    /// `:authority` / Host.
    pub authority: String,
    /// Path (without the query).
    pub path: String,
    /// Status sent.
    pub status: u16,
    /// Envoy-style response flags (`-` when none).
    pub flags: &'static str,
    /// The route that matched.
    pub route: Option<String>,
    /// `<ip>:<port>` of the endpoint the request went to.
    pub upstream_host: Option<String>,
    /// The service key the request went to.
    pub upstream_service: Option<String>,
    /// The caller's SPIFFE id (empty: plaintext).
    pub source_principal: String,
    /// Start (milliseconds since the Unix epoch).
    pub start_unix_ms: u64,
    /// Duration in milliseconds.
    pub duration_ms: u64,
    /// Time to the upstream's response headers, in milliseconds.
    pub upstream_ms: Option<u64>,
}

impl RecentSpan {
    /// The span of the request `entry` describes, traced under `context` by `proxy`.
    #[must_use]
    pub fn new(
        proxy: &str,
        context: &TraceContext,
        entry: &AccessEntry,
        start: SystemTime,
    ) -> Self {
        let start_unix_ms = start
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Self {
            trace_id: context.trace_id.to_string(),
            span_id: context.span_id.to_string(),
            parent_span_id: context.parent_span_id.map(|p| p.to_string()),
            proxy: proxy.to_owned(),
            reporter: entry.reporter,
            method: entry.method.clone(),
            authority: entry.authority.clone(),
            path: entry.path.split('?').next().unwrap_or_default().to_owned(),
            status: entry.status,
            flags: entry.flags,
            route: entry.route.clone(),
            upstream_host: entry.upstream_host.clone(),
            upstream_service: entry.upstream_service.clone(),
            source_principal: entry.source_principal.clone(),
            start_unix_ms,
            duration_ms: entry.duration_ms,
            upstream_ms: entry.upstream_ms,
        }
    }
}

/// A bounded buffer of the last finished spans.
#[derive(Debug)]
pub struct RecentSpans {
    capacity: usize,
    spans: Mutex<VecDeque<RecentSpan>>,
}

impl RecentSpans {
    /// A buffer keeping the last `capacity` spans (0: keeps none).
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            spans: Mutex::new(VecDeque::with_capacity(capacity)),
        }
    }

    /// How many spans it keeps at most.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Keeps `span`, dropping the oldest when full.
    pub fn push(&self, span: RecentSpan) {
        if self.capacity == 0 {
            return;
        }
        let mut spans = self.spans.lock().unwrap_or_else(PoisonError::into_inner);
        if spans.len() == self.capacity {
            spans.pop_front();
        }
        spans.push_back(span);
    }

    /// The spans kept, oldest first.
    #[must_use]
    pub fn snapshot(&self) -> Vec<RecentSpan> {
        let spans = self.spans.lock().unwrap_or_else(PoisonError::into_inner);
        spans.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_l7::trace::Sampler;

    fn span(path: &str) -> RecentSpan {
        let context = TraceContext::begin(
            &http::HeaderMap::new(),
            &Sampler::from_percent(100.0),
            &mut rand::rng(),
        );
        let entry = AccessEntry {
            method: "GET".into(),
            path: format!("{path}?q=1"),
            status: 200,
            flags: "-",
            reporter: "waypoint",
            ..AccessEntry::default()
        };
        RecentSpan::new("wp.ns", &context, &entry, SystemTime::now())
    }

    #[test]
    fn keeps_only_the_last_spans_up_to_its_capacity() {
        let recent = RecentSpans::new(3);
        for i in 0..10 {
            recent.push(span(&format!("/{i}")));
        }
        let paths: Vec<String> = recent.snapshot().into_iter().map(|s| s.path).collect();
        assert_eq!(paths, ["/7", "/8", "/9"]);
        assert!(
            recent.spans.lock().unwrap().capacity() < 8,
            "no growth past capacity"
        );
    }

    #[test]
    fn keeps_nothing_at_capacity_zero() {
        let recent = RecentSpans::new(0);
        recent.push(span("/a"));
        assert!(recent.snapshot().is_empty());
    }

    #[test]
    fn spans_carry_the_trace_ids_and_the_path_without_query() {
        let s = span("/x");
        assert_eq!(s.trace_id.len(), 32);
        assert_eq!(s.span_id.len(), 16);
        assert_eq!(s.path, "/x");
        assert_eq!(s.proxy, "wp.ns");
    }
}
