//! Applying and removing a [`Manifest`] through the Kubernetes API: server-side apply with
//! field manager [`FIELD_MANAGER`] (forced: weft owns the fields it sets); removal first
//! releases every node's pods ([`teardown`]), then deletes in reverse order, where an
//! object already gone counts as removed.

use crate::manifest::{FIELD_MANAGER, Manifest, ManifestObject};
use crate::settings::Settings;
use crate::teardown;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Node};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::GroupVersionKind;
use std::path::Path;
use std::time::Duration;

/// A client for the cluster of `kubeconfig`, or the one the environment names
/// (`$KUBECONFIG`, `~/.kube/config`, the in-cluster service account).
///
/// # Errors
/// An unreadable kubeconfig or no cluster found, saying which.
pub async fn connect(kubeconfig: Option<&Path>) -> Result<kube::Client, ConnectError> {
    use kube::config::{KubeConfigOptions, Kubeconfig};
    let config = match kubeconfig {
        Some(path) => {
            let named = |error: &dyn std::fmt::Display| {
                ConnectError(format!("--kubeconfig {}: {error}", path.display()))
            };
            let file = Kubeconfig::read_from(path).map_err(|e| named(&e))?;
            kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .map_err(|e| named(&e))?
        }
        None => kube::Config::infer().await.map_err(|error| {
            ConnectError(format!(
                "no Kubernetes API found ({error}); give --kubeconfig FILE"
            ))
        })?,
    };
    kube::Client::try_from(config)
        .map_err(|error| ConnectError(format!("Kubernetes client: {error}")))
}

/// No client could be made.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConnectError(String);

/// An object the API refused, naming it.
#[derive(Debug, thiserror::Error)]
#[error("{kind} {name}: {source}")]
pub struct ApplyError {
    /// The kind of the object.
    pub kind: &'static str,
    /// `namespace/name` or `name`.
    pub name: String,
    /// What the API said.
    #[source]
    pub source: kube::Error,
}

/// What happened to one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// `Kind namespace/name`.
    pub object: String,
    /// `applied`, `deleted`, `not found`, or how a node's release went.
    pub what: &'static str,
}

/// Applies every object of `manifest`, in order; stops at the first refusal.
///
/// # Errors
/// The first object the API refused.
pub async fn install(
    client: &kube::Client,
    manifest: &Manifest,
) -> Result<Vec<Outcome>, ApplyError> {
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let mut outcomes = Vec::new();
    for object in &manifest.objects {
        api_for(client, object)
            .patch(&object.name, &params, &Patch::Apply(&object.body))
            .await
            .map_err(|source| refused(object, source))?;
        outcomes.push(outcome(object, "applied"));
    }
    Ok(outcomes)
}

/// Releases every node's captured pods ([`crate::teardown`] Jobs, waited for up to
/// `wait`), then deletes every object of `manifest`, the namespace last; objects already
/// gone are fine. A node whose Job did not succeed is reported, not fatal: its proxy stops
/// with the DaemonSet and its pods' redirect rules stay until they restart.
///
/// # Errors
/// The first call the API refused.
pub async fn uninstall(
    client: &kube::Client,
    settings: &Settings,
    wait: Duration,
) -> Result<Vec<Outcome>, ApplyError> {
    let manifest = Manifest::generate(settings);
    let mut outcomes = release_pods(client, settings, wait).await?;
    for object in manifest.deletion_order() {
        outcomes.push(delete(client, object).await?);
    }
    Ok(outcomes)
}

/// Runs a release Job on every node (when weft's namespace exists) and removes the Jobs.
async fn release_pods(
    client: &kube::Client,
    settings: &Settings,
    wait: Duration,
) -> Result<Vec<Outcome>, ApplyError> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let installed = namespaces
        .get_opt(settings.namespace())
        .await
        .map_err(|source| ApplyError::call("Namespace", settings.namespace(), source))?;
    if installed.is_none() {
        return Ok(Vec::new());
    }
    let nodes: Api<Node> = Api::all(client.clone());
    let nodes: Vec<String> = nodes
        .list(&ListParams::default())
        .await
        .map_err(|source| ApplyError::call("Node", "*", source))?
        .items
        .into_iter()
        .filter_map(|node| node.metadata.name)
        .collect();
    let jobs = teardown::release_jobs(settings, &nodes);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    for job in &jobs {
        api_for(client, job)
            .patch(&job.name, &params, &Patch::Apply(&job.body))
            .await
            .map_err(|source| refused(job, source))?;
    }
    let outcomes = wait_for_jobs(client, settings, &nodes, wait).await?;
    for job in &jobs {
        delete(client, job).await?;
    }
    Ok(outcomes)
}

/// Polls the release Jobs until each succeeded or failed, or `wait` passed.
async fn wait_for_jobs(
    client: &kube::Client,
    settings: &Settings,
    nodes: &[String],
    wait: Duration,
) -> Result<Vec<Outcome>, ApplyError> {
    let jobs: Api<Job> = Api::namespaced(client.clone(), settings.namespace());
    let deadline = tokio::time::Instant::now() + wait;
    let mut done: Vec<Option<&'static str>> = vec![None; nodes.len()];
    while done.iter().any(Option::is_none) && tokio::time::Instant::now() < deadline {
        for (index, state) in done.iter_mut().enumerate().filter(|(_, s)| s.is_none()) {
            let name = format!("weft-release-{index}");
            let job = jobs
                .get_opt(&name)
                .await
                .map_err(|source| ApplyError::call("Job", &name, source))?;
            *state = job.and_then(|job| job.status).and_then(|status| {
                let failed = status.failed.unwrap_or(0) > teardown::BACKOFF_LIMIT;
                match (status.succeeded.unwrap_or(0) > 0, failed) {
                    (true, _) => Some("pods released"),
                    (false, true) => Some("release FAILED (see the Job's logs)"),
                    _ => None,
                }
            });
        }
        tokio::time::sleep(JOB_POLL).await;
    }
    Ok(nodes
        .iter()
        .zip(done)
        .map(|(node, state)| Outcome {
            object: format!("Node {node}"),
            what: state.unwrap_or("release TIMED OUT"),
        })
        .collect())
}

/// How often release Jobs are checked.
const JOB_POLL: Duration = Duration::from_millis(200);

async fn delete(client: &kube::Client, object: &ManifestObject) -> Result<Outcome, ApplyError> {
    let deleted = api_for(client, object)
        .delete(&object.name, &DeleteParams::background())
        .await;
    let what = match deleted {
        Ok(_) => "deleted",
        Err(kube::Error::Api(status)) if status.code == 404 => "not found",
        Err(source) => return Err(refused(object, source)),
    };
    Ok(outcome(object, what))
}

/// The API of `object`'s kind, in its namespace if it has one.
#[must_use]
pub fn api_for(client: &kube::Client, object: &ManifestObject) -> Api<DynamicObject> {
    let (group, version) = object
        .api_version
        .rsplit_once('/')
        .unwrap_or(("", object.api_version));
    let gvk = GroupVersionKind::gvk(group, version, object.kind);
    let resource = ApiResource::from_gvk_with_plural(&gvk, object.plural);
    match &object.namespace {
        Some(namespace) => Api::namespaced_with(client.clone(), namespace, &resource),
        None => Api::all_with(client.clone(), &resource),
    }
}

fn display_name(object: &ManifestObject) -> String {
    match &object.namespace {
        Some(namespace) => format!("{namespace}/{}", object.name),
        None => object.name.clone(),
    }
}

impl ApplyError {
    fn call(kind: &'static str, name: &str, source: kube::Error) -> ApplyError {
        ApplyError {
            kind,
            name: name.to_owned(),
            source,
        }
    }
}

fn refused(object: &ManifestObject, source: kube::Error) -> ApplyError {
    ApplyError {
        kind: object.kind,
        name: display_name(object),
        source,
    }
}

fn outcome(object: &ManifestObject, what: &'static str) -> Outcome {
    Outcome {
        object: format!("{} {}", object.kind, display_name(object)),
        what,
    }
}
