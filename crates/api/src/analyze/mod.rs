//! Cross-object analysis (`weft analyze`): checks that need more than one object, such as
//! references between routes, gateways and services, policies and the workloads they select,
//! and waypoint labels. Single-object checks live in [`crate::validate`].

mod addresses;
mod backend_tls;
mod enforcement;
mod entries;
mod gateways;
mod policy;
mod routes;
mod waypoints;

pub use addresses::{vip_claims, vip_conflict_message};
pub use waypoints::waypoint_allows_namespace;

use crate::expand::ExpandedPod;
use crate::finding::{Code, Finding};
use crate::gateway::WAYPOINT_CLASS;
use crate::object::{Kind, LoadedObject, Object};
use crate::selector::labels_match;
use crate::snapshot::ConfigSnapshot;
use std::collections::{BTreeMap, HashMap};

/// Label naming the waypoint a namespace, service or pod uses.
pub const USE_WAYPOINT_LABEL: &str = "istio.io/use-waypoint";
/// Label naming the namespace of that waypoint (default: the object's own).
pub const USE_WAYPOINT_NAMESPACE_LABEL: &str = "istio.io/use-waypoint-namespace";

/// Findings about objects that exist more than once (same kind, namespace and name).
#[must_use]
pub fn check_duplicates(objects: &[LoadedObject]) -> Vec<Finding> {
    let mut first_seen: HashMap<crate::object::ObjectRef, &LoadedObject> = HashMap::new();
    let mut findings = Vec::new();
    for loaded in objects {
        let object_ref = loaded.object.object_ref();
        if let Some(first) = first_seen.get(&object_ref) {
            let message = format!(
                "{object_ref} is already defined at {}; the later definition is ignored",
                first.source
            );
            findings.push(Finding::new(
                Code::DuplicateObject,
                Some(object_ref),
                loaded.source.clone(),
                message,
            ));
        } else {
            first_seen.insert(object_ref, loaded);
        }
    }
    findings
}

/// Runs every cross-object check (including duplicates).
#[must_use]
pub fn analyze(snapshot: &ConfigSnapshot) -> Vec<Finding> {
    let context = Context::new(snapshot);
    let mut findings = check_duplicates(snapshot.objects());
    policy::check_authorization_policies(&context, &mut findings);
    policy::check_peer_authentications(&context, &mut findings);
    enforcement::report_enforcement(&context, &mut findings);
    routes::check_routes(&context, &mut findings);
    gateways::check_gateway_status(&context, &mut findings);
    backend_tls::check_backend_tls_policies(&context, &mut findings);
    check_service_selectors(&context, &mut findings);
    check_pod_limit(&context, &mut findings);
    addresses::check_service_addresses(&context, &mut findings);
    addresses::check_workload_addresses(&context, &mut findings);
    entries::check_entries_without_addresses(&context, &mut findings);
    entries::check_endpoint_labels(&context, &mut findings);
    waypoints::check_waypoint_labels(&context, &mut findings);
    findings
}

/// Shared lookups for the checks.
pub(crate) struct Context<'a> {
    snapshot: &'a ConfigSnapshot,
    pods: std::sync::Arc<[ExpandedPod]>,
}

impl<'a> Context<'a> {
    fn new(snapshot: &'a ConfigSnapshot) -> Self {
        Context {
            snapshot,
            pods: snapshot.pods(),
        }
    }

    /// Pods of `namespace` whose labels carry all of `selector`.
    fn pods_matching<'s>(
        &'s self,
        namespace: &'s str,
        selector: &'s BTreeMap<String, String>,
    ) -> impl Iterator<Item = &'s ExpandedPod> {
        self.pods.iter().filter(move |pod| {
            pod.namespace() == namespace && labels_match(selector, &pod.labels())
        })
    }

    /// Whether a waypoint Gateway `namespace/name` exists.
    fn is_waypoint(&self, namespace: &str, name: &str) -> bool {
        self.snapshot
            .get(Kind::Gateway, Some(namespace), name)
            .is_some_and(|o| matches!(&o.object, Object::Gateway(g) if g.spec.gateway_class_name == WAYPOINT_CLASS))
    }

    /// The waypoint (namespace, name) a service uses through its own or its namespace's label.
    fn service_waypoint(&self, namespace: &str, name: &str) -> Option<(String, String)> {
        self.target_waypoint(Kind::Service, namespace, name)
    }

    /// The waypoint (namespace, name) an object of `kind` (Service, ServiceEntry) uses through
    /// its own or its namespace's label.
    fn target_waypoint(&self, kind: Kind, namespace: &str, name: &str) -> Option<(String, String)> {
        target_waypoint(self.snapshot, kind, namespace, name)
    }
}

/// The waypoint (namespace, name) an object of `kind` (Service, ServiceEntry) uses through
/// its own or its namespace's `istio.io/use-waypoint` label (the most specific label wins,
/// `none` included).
pub(crate) fn target_waypoint(
    snapshot: &ConfigSnapshot,
    kind: Kind,
    namespace: &str,
    name: &str,
) -> Option<(String, String)> {
    let service_labels = snapshot
        .get(kind, Some(namespace), name)
        .map(|s| s.object.labels().clone());
    let namespace_labels = snapshot.namespace_labels(namespace);
    let labels = [service_labels.unwrap_or_default(), namespace_labels]
        .into_iter()
        .find(|labels| labels.contains_key(USE_WAYPOINT_LABEL))?;
    let waypoint = &labels[USE_WAYPOINT_LABEL];
    (waypoint != "none" && !waypoint.is_empty()).then(|| {
        let ns = labels
            .get(USE_WAYPOINT_NAMESPACE_LABEL)
            .cloned()
            .unwrap_or_else(|| namespace.to_owned());
        (ns, waypoint.clone())
    })
}

/// Workloads that run fewer pods than they ask for: a DaemonSet on more nodes than a
/// workload's limit, or any workload once the mesh is at its limit of pods (a Deployment
/// or StatefulSet whose `replicas` is over the limit is a validation error already).
fn check_pod_limit(context: &Context<'_>, findings: &mut Vec<Finding>) {
    use crate::expand::{MAX_PODS, MAX_REPLICAS};
    let per_workload = MAX_REPLICAS as usize;
    for shortfall in crate::expand::pod_shortfalls(context.snapshot) {
        let (running, asked) = (shortfall.running, shortfall.asked);
        let message = if running < asked.min(per_workload) {
            format!(
                "runs {running} of its {asked} pods: the mesh is at weft's limit of {MAX_PODS} \
                 pods in all (workloads are expanded in kind and load order)"
            )
        } else if shortfall.owner.kind == Kind::DaemonSet {
            format!(
                "runs on {running} of the {asked} nodes: over weft's limit of {MAX_REPLICAS} \
                 pods per workload"
            )
        } else {
            continue;
        };
        findings.push(Finding::new(
            Code::OverLimit,
            Some(shortfall.owner),
            shortfall.source,
            message,
        ));
    }
}

fn check_service_selectors(context: &Context<'_>, findings: &mut Vec<Finding>) {
    for (service, loaded) in context.snapshot.services() {
        let Some(selector) = service
            .spec
            .as_ref()
            .and_then(|s| s.selector.as_ref())
            .filter(|s| !s.is_empty())
        else {
            continue;
        };
        let namespace = loaded.object.namespace().unwrap_or_default();
        let entries = context.snapshot.workload_entries();
        let mut selected_entries = entries.filter(|(entry, entry_loaded)| {
            entry_loaded.object.namespace() == Some(namespace)
                && labels_match(selector, &entry.workload_labels())
        });
        if context.pods_matching(namespace, selector).next().is_none()
            && selected_entries.next().is_none()
        {
            let wanted: Vec<String> = selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let message = format!(
                "selector {} matches no Pod in namespace {namespace} (bare or from a Deployment/StatefulSet/DaemonSet template) and no WorkloadEntry; the service has no endpoints",
                wanted.join(",")
            );
            findings.push(Finding::new(
                Code::ServiceSelectsNoPods,
                Some(loaded.object.object_ref()),
                loaded.source.clone(),
                message,
            ));
        }
    }
}
