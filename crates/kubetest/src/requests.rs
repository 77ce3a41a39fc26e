//! What clients asked of the server: every resource request it answered, as RBAC sees it
//! (verb, group, resource with its subresource, namespace), so a test can check a process
//! against the roles it is installed with; and lists of a resource held back on demand
//! (a slow API server), so a test can watch a client wait for its first list.

use crate::path::ResourcePath;
use crate::routes::Query;
use http::Method;
use std::collections::BTreeSet;
use std::sync::{Mutex, PoisonError};
use tokio::sync::watch;

/// One request, in RBAC's terms.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ApiRequest {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete` or `deletecollection`.
    pub verb: &'static str,
    /// API group (`""` for the core group).
    pub group: String,
    /// API version of the path (`v1`, `v1alpha2`...).
    pub version: String,
    /// Plural resource name, `plural/subresource` for a subresource (`gateways/status`).
    pub resource: String,
    /// The namespace in the path (`None`: cluster-scoped, or across all namespaces).
    pub namespace: Option<String>,
    /// The object's name, for requests on one object.
    pub name: Option<String>,
    /// The `fieldSelector` of a list or watch.
    pub field_selector: Option<String>,
}

impl ApiRequest {
    /// The request `method` on `path` with `query` makes.
    #[must_use]
    pub fn of(method: &Method, path: &ResourcePath, query: &Query) -> ApiRequest {
        let one = path.name.is_some();
        let verb = match *method {
            Method::GET if one => "get",
            Method::GET if query.flag("watch") => "watch",
            Method::GET => "list",
            Method::POST => "create",
            Method::PUT => "update",
            Method::PATCH => "patch",
            Method::DELETE if one => "delete",
            Method::DELETE => "deletecollection",
            _ => "unknown",
        };
        let resource = match &path.subresource {
            Some(sub) => format!("{}/{sub}", path.plural),
            None => path.plural.clone(),
        };
        ApiRequest {
            verb,
            group: path.group.clone(),
            version: path.version.clone(),
            resource,
            namespace: path.namespace.clone(),
            name: path.name.clone(),
            field_selector: query.get("fieldSelector").map(str::to_owned),
        }
    }
}

/// The requests answered so far, and the resources whose lists are held.
pub struct RequestLog {
    requests: Mutex<Vec<ApiRequest>>,
    /// `plural.group` of the resources whose lists wait.
    held: watch::Sender<BTreeSet<String>>,
}

impl Default for RequestLog {
    fn default() -> Self {
        RequestLog {
            requests: Mutex::default(),
            held: watch::channel(BTreeSet::new()).0,
        }
    }
}

fn held_name(group: &str, plural: &str) -> String {
    format!("{plural}.{group}")
}

impl RequestLog {
    /// Notes one request.
    pub fn record(&self, request: ApiRequest) {
        self.requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(request);
    }

    /// Every request so far, in order.
    #[must_use]
    pub fn requests(&self) -> Vec<ApiRequest> {
        self.requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Holds every list of `plural` in `group` (`""`: core) until [`RequestLog::release`].
    pub fn hold(&self, group: &str, plural: &str) {
        self.held.send_modify(|held| {
            held.insert(held_name(group, plural));
        });
    }

    /// Answers the held lists of `plural` in `group`, and every later one at once.
    pub fn release(&self, group: &str, plural: &str) {
        self.held.send_modify(|held| {
            held.remove(&held_name(group, plural));
        });
    }

    /// Completes when lists of `plural` in `group` are not held.
    pub async fn wait_released(&self, group: &str, plural: &str) {
        let name = held_name(group, plural);
        let mut held = self.held.subscribe();
        let _ = held.wait_for(|held| !held.contains(&name)).await;
    }
}
