//! ServiceEntries whose hosts get no VIP: weft allocates none (Istio can), so a captured
//! pod's connection to such a host is not routed as the entry's service, unless the entry
//! is only reached through a route of a gateway or waypoint (which needs no VIP). And
//! endpoints carrying a tunnel label that only the entry itself can carry.

use super::Context;
use crate::finding::{Code, Finding};
use crate::gateway_status::backends::ISTIO_NETWORKING_GROUP;
use crate::routes::route_view;
use crate::suggest::Segment;
use std::collections::HashSet;

/// A ServiceEntry with hosts (not only wildcards), no `addresses`, and no route sending to
/// it by name or host.
pub(super) fn check_entries_without_addresses(context: &Context<'_>, findings: &mut Vec<Finding>) {
    let routed = RoutedEntries::collect(context);
    for (entry, loaded) in context.snapshot.service_entries() {
        let spec = &entry.spec;
        if spec.addresses.as_ref().is_some_and(|a| !a.is_empty()) {
            continue;
        }
        let Some(host) = spec.hosts.iter().find(|h| !h.contains('*')) else {
            continue;
        };
        let object = loaded.object.object_ref();
        let namespace = object.namespace.as_deref().unwrap_or_default();
        if routed.entries.contains(&(namespace, object.name.as_str()))
            || spec.hosts.iter().any(|h| routed.hosts.contains(h.as_str()))
        {
            continue;
        }
        findings.push(Finding::new(
            Code::ServiceEntryWithoutAddress,
            Some(object.clone()),
            loaded.source_at(&[Segment::from("spec"), Segment::from("hosts")]),
            format!(
                "host {host} has no addresses: weft allocates no VIP, so captured pods resolve \
                 {host} upstream (or to the entry's endpoint addresses) and their connections \
                 are not routed as this service (no waypoint, service policy or telemetry for \
                 it); give the entry an unused address (e.g. from 240.240.0.0/16)"
            ),
        ));
    }
}

/// Labels that say how a ServiceEntry's endpoints are reached, read from the entry (the
/// redirection one from its annotations), as istiod reads them: on an endpoint they do
/// nothing.
const ENTRY_LEVEL_LABELS: [(&str, &str); 2] = [
    ("networking.istio.io/tunnel", "metadata.labels"),
    ("ambient.istio.io/redirection", "metadata.annotations"),
];

/// A ServiceEntry endpoint labelled with one of [`ENTRY_LEVEL_LABELS`].
pub(super) fn check_endpoint_labels(context: &Context<'_>, findings: &mut Vec<Finding>) {
    for (entry, loaded) in context.snapshot.service_entries() {
        let endpoints = entry.spec.endpoints.iter().flatten().enumerate();
        for (index, endpoint) in endpoints {
            for (label, belongs) in ENTRY_LEVEL_LABELS {
                if !endpoint
                    .labels
                    .as_ref()
                    .is_some_and(|l| l.contains_key(label))
                {
                    continue;
                }
                let path: [Segment; 5] = [
                    "spec".into(),
                    "endpoints".into(),
                    index.into(),
                    "labels".into(),
                    label.into(),
                ];
                let address = endpoint.address.as_deref().unwrap_or("without address");
                findings.push(Finding::new(
                    Code::ServiceEntryEndpointLabelIgnored,
                    Some(loaded.object.object_ref()),
                    loaded.source_at(&path),
                    format!(
                        "endpoint {index} ({address}) has label {label}, which is read from the \
                         ServiceEntry, never from its endpoints: it does not change how this \
                         endpoint is reached; put it in the entry's {belongs} (it then applies \
                         to every endpoint of the entry)"
                    ),
                ));
            }
        }
    }
}

/// The ServiceEntries (namespace, name) and hosts that some route sends to.
struct RoutedEntries<'a> {
    entries: HashSet<(&'a str, &'a str)>,
    hosts: HashSet<&'a str>,
}

impl<'a> RoutedEntries<'a> {
    fn collect(context: &Context<'a>) -> Self {
        let mut routed = Self {
            entries: HashSet::new(),
            hosts: HashSet::new(),
        };
        for loaded in context.snapshot.objects() {
            let Some(view) = route_view(&loaded.object) else {
                continue;
            };
            let route_namespace = loaded.object.metadata().namespace.as_deref();
            for backend in view.backends {
                if backend.group != Some(ISTIO_NETWORKING_GROUP) {
                    continue;
                }
                match backend.kind {
                    Some("ServiceEntry") => {
                        let namespace = backend.namespace.or(route_namespace);
                        let namespace = namespace.unwrap_or(crate::object::DEFAULT_NAMESPACE);
                        routed.entries.insert((namespace, backend.name));
                    }
                    Some("Hostname") => {
                        routed.hosts.insert(backend.name);
                    }
                    _ => {}
                }
            }
        }
        routed
    }
}
