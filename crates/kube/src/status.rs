//! Status written back to the API with server-side apply (field manager `weft`) on each
//! object's `status` subresource:
//! - GatewayClasses, Gateways and routes: the conditions `weft_api::gateway_status`
//!   computes (the same model as `weft x status` and `/debug/gatewayz`), with the route
//!   check of the control plane's L7 converter so status says what is served;
//! - AuthorizationPolicies: one condition of type [`ENFORCED_CONDITION`] saying whether and
//!   where the policy is enforced (node proxies at L4, a waypoint, or not at all and why),
//!   from the analyzer's `policy-enforcement` finding, with its warnings appended.
//!
//! Only what changed since the last write is applied again. Applies are forced: weft is the
//! controller of these conditions, as Istio is of its own; an object deleted meanwhile
//! (404) is skipped.

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use serde_json::{Value, json};
use std::collections::HashMap;
use weft_api::ConfigSnapshot;
use weft_api::analyze::analyze;
use weft_api::finding::{Code, Finding, Severity};
use weft_api::gateway_status::{ObjectStatus, Stamp, statuses_with};
use weft_api::object::{Kind, LoadedObject};

/// The field manager of every status weft writes.
pub const FIELD_MANAGER: &str = "weft";
/// The AuthorizationPolicy condition saying whether and where the policy is enforced.
pub const ENFORCED_CONDITION: &str = "weft.io/Enforced";
/// The apiVersion AuthorizationPolicy status is written at (versions share objects).
const AUTHORIZATION_POLICY_API_VERSION: &str = "security.istio.io/v1";

/// One status document to apply: the object's identity and its `status`.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusApply {
    /// `group/version` of the object.
    pub api_version: String,
    /// Its kind.
    pub kind: String,
    /// Namespace (`None` for cluster-scoped kinds).
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
    /// The `status` to apply.
    pub status: Value,
}

impl StatusApply {
    /// The apply patch: `{apiVersion, kind, metadata: {name, namespace}, status}`.
    #[must_use]
    pub fn patch(&self) -> Value {
        let mut metadata = json!({ "name": self.name });
        if let Some(namespace) = &self.namespace {
            metadata["namespace"] = json!(namespace);
        }
        json!({
            "apiVersion": self.api_version,
            "kind": self.kind,
            "metadata": metadata,
            "status": self.status,
        })
    }

    fn key(&self) -> (String, Option<String>, String) {
        (self.kind.clone(), self.namespace.clone(), self.name.clone())
    }
}

/// Every status weft has for `snapshot`: Gateway API objects, then AuthorizationPolicies.
#[must_use]
pub fn desired_statuses(snapshot: &ConfigSnapshot) -> Vec<StatusApply> {
    let route_check = weft_control::admin::route_check;
    let mut out: Vec<StatusApply> = statuses_with(snapshot, &route_check)
        .into_iter()
        .filter_map(gateway_api_status)
        .collect();
    let findings = analyze(snapshot);
    for (_, loaded) in snapshot.authorization_policies() {
        out.push(authorization_policy_status(loaded, &findings));
    }
    out
}

fn gateway_api_status(object: ObjectStatus) -> Option<StatusApply> {
    let status = serde_json::to_value(&object.status).ok()?;
    Some(StatusApply {
        api_version: object.api_version,
        kind: object.kind,
        namespace: object.metadata.namespace,
        name: object.metadata.name,
        status,
    })
}

fn authorization_policy_status(loaded: &LoadedObject, findings: &[Finding]) -> StatusApply {
    let object_ref = loaded.object.object_ref();
    let about_policy = |f: &&Finding| f.object.as_ref() == Some(&object_ref);
    let enforcement = findings
        .iter()
        .filter(about_policy)
        .find(|f| f.code == Code::PolicyEnforcement)
        .map_or_else(
            || "not enforced: not analyzed".to_owned(),
            |f| f.message.clone(),
        );
    let warnings: Vec<&str> = findings
        .iter()
        .filter(about_policy)
        .filter(|f| f.severity != Severity::Info)
        .map(|f| f.message.as_str())
        .collect();
    let (enforced, reason) = enforcement_reason(&enforcement);
    let message = if warnings.is_empty() {
        enforcement
    } else {
        format!("{enforcement}; {}", warnings.join("; "))
    };
    let condition = Stamp::of(loaded).condition(ENFORCED_CONDITION, enforced, reason, message);
    StatusApply {
        api_version: AUTHORIZATION_POLICY_API_VERSION.to_owned(),
        kind: Kind::AuthorizationPolicy.name().to_owned(),
        namespace: object_ref.namespace,
        name: object_ref.name,
        status: json!({ "conditions": [condition] }),
    }
}

/// Whether the analyzer's enforcement sentence says the policy is enforced, and the
/// condition's reason: `NodeProxies`, `Waypoint` or `NotEnforced`.
fn enforcement_reason(message: &str) -> (bool, &'static str) {
    if message.starts_with("enforced by node proxies") {
        (true, "NodeProxies")
    } else if message.contains("enforced by waypoint")
        || message.contains("enforced by every waypoint")
    {
        (true, "Waypoint")
    } else {
        (false, "NotEnforced")
    }
}

/// Applies statuses, remembering what was written so only changes are applied again.
pub struct StatusWriter {
    client: kube::Client,
    written: HashMap<(String, Option<String>, String), Value>,
}

impl StatusWriter {
    /// A writer with nothing written yet.
    #[must_use]
    pub fn new(client: kube::Client) -> Self {
        Self {
            client,
            written: HashMap::new(),
        }
    }

    /// Forgets what was written (a new leader writes everything once).
    pub fn forget(&mut self) {
        self.written.clear();
    }

    /// Applies every status of `snapshot` that differs from the last one written; returns
    /// how many were applied. A failed apply is logged and tried again next time.
    pub async fn write(&mut self, snapshot: &ConfigSnapshot) -> usize {
        let mut applied = 0;
        for status in desired_statuses(snapshot) {
            let key = status.key();
            if self.written.get(&key) == Some(&status.status) {
                continue;
            }
            match self.apply(&status).await {
                Ok(()) => {
                    applied += 1;
                    self.written.insert(key, status.status);
                }
                Err(kube::Error::Api(failure)) if failure.code == 404 => {
                    tracing::debug!(kind = %status.kind, name = %status.name, "object gone; status not written");
                }
                Err(error) => {
                    tracing::warn!(%error, kind = %status.kind, namespace = ?status.namespace, name = %status.name, "status not written");
                }
            }
        }
        applied
    }

    async fn apply(&self, status: &StatusApply) -> Result<(), kube::Error> {
        let (group, version) = status
            .api_version
            .rsplit_once('/')
            .unwrap_or(("", status.api_version.as_str()));
        let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, &status.kind));
        let api: Api<DynamicObject> = match &status.namespace {
            Some(namespace) => Api::namespaced_with(self.client.clone(), namespace, &resource),
            None => Api::all_with(self.client.clone(), &resource),
        };
        let params = PatchParams::apply(FIELD_MANAGER).force();
        api.patch_status(&status.name, &params, &Patch::Apply(status.patch()))
            .await
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_analyzers_sentences_map_to_reasons() {
        assert_eq!(
            enforcement_reason("enforced by node proxies (L4) on every workload of namespace a"),
            (true, "NodeProxies")
        );
        assert_eq!(
            enforcement_reason("enforced by waypoint a/w (L7, as written)"),
            (true, "Waypoint")
        );
        assert_eq!(
            enforcement_reason("not enforced: Service a/s has no waypoint"),
            (false, "NotEnforced")
        );
    }
}
