//! What `weft uninstall` runs on every node before it deletes the install: a Job pinned to
//! the node that first takes `weft-cni` out of the node's CNI configuration (no new pod is
//! handed over) and then asks the node proxy, over its CNI socket on the host, to release
//! every pod it captured (`weft cni release-all`: redirect rules removed, listeners closed).
//! Pods keep running and talk plain TCP again; nothing depends on weft after the delete.

use crate::manifest::{ManifestObject, meta, template_meta};
use crate::node::{self, CNI_SOCKET};
use crate::settings::Settings;
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{PodSpec, PodTemplateSpec, Toleration};

/// Label carrying the index of a release Job (its node is in [`NODE_ANNOTATION`]).
pub const RELEASE_LABEL: &str = "weft.dev/release";
/// Annotation naming the node a release Job runs on.
pub const NODE_ANNOTATION: &str = "weft.dev/node";
/// Retries of a release Job before it counts as failed.
pub const BACKOFF_LIMIT: i32 = 2;

/// One release Job per node, named `weft-release-<index>`.
#[must_use]
pub fn release_jobs(settings: &Settings, nodes: &[String]) -> Vec<ManifestObject> {
    nodes
        .iter()
        .enumerate()
        .map(|(index, node)| ManifestObject::typed(&release_job(settings, index, node)))
        .collect()
}

fn release_job(settings: &Settings, index: usize, node_name: &str) -> Job {
    let index_text = index.to_string();
    let mut metadata = meta(
        &format!("weft-release-{index}"),
        Some(settings.namespace()),
        &[(RELEASE_LABEL, &index_text)],
    );
    metadata.annotations = Some([(NODE_ANNOTATION.to_owned(), node_name.to_owned())].into());
    let uninstall_cni = node::weft_tool(
        settings,
        "cni-uninstall",
        &[
            "cni",
            "uninstall",
            "--bin-dir",
            node::HOST_CNI_BIN,
            "--conf-dir",
            node::HOST_CNI_CONF,
        ],
    );
    let release = node::weft_tool(
        settings,
        "release",
        &["cni", "release-all", "--socket", CNI_SOCKET],
    );
    let pod = PodSpec {
        node_name: Some(node_name.to_owned()),
        restart_policy: Some("Never".to_owned()),
        automount_service_account_token: Some(false),
        init_containers: Some(vec![uninstall_cni]),
        containers: vec![release],
        volumes: Some(node::host_volumes(settings)),
        tolerations: Some(vec![Toleration {
            operator: Some("Exists".to_owned()),
            ..Toleration::default()
        }]),
        ..PodSpec::default()
    };
    Job {
        metadata,
        spec: Some(JobSpec {
            backoff_limit: Some(BACKOFF_LIMIT),
            template: PodTemplateSpec {
                metadata: Some(template_meta(&[(RELEASE_LABEL, &index_text)])),
                spec: Some(pod),
            },
            ..JobSpec::default()
        }),
        ..Job::default()
    }
}
