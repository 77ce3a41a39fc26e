//! `weft install` and `weft uninstall` against the in-process test API server: every object
//! is created by server-side apply with field manager `weft`, applying again changes
//! nothing, and uninstall runs a release Job on each node, reports how each went, then
//! deletes every object (the test plays the Job controller: it marks the Jobs done).

use kube::api::Api;
use serde_json::{Value, json};
use std::time::Duration;
use weft_install::teardown::NODE_ANNOTATION;
use weft_install::{Manifest, Settings, apply};
use weft_kubetest::TestApiServer;

fn node(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}})
}

/// Acts as the Job controller: once each release Job exists, checks it is pinned to the
/// node it names and marks it succeeded (node-a) or failed past its retries (node-b).
async fn finish_release_jobs(server: &TestApiServer, client: &kube::Client) {
    let jobs: Api<k8s_openapi::api::batch::v1::Job> =
        Api::namespaced(client.clone(), "weft-system");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut finished = 0;
    while finished < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "release Jobs did not appear"
        );
        finished = 0;
        for index in 0..2 {
            let Some(job) = jobs
                .get_opt(&format!("weft-release-{index}"))
                .await
                .unwrap()
            else {
                continue;
            };
            finished += 1;
            if job.status.is_some() {
                continue;
            }
            let node = job.metadata.annotations.as_ref().unwrap()[NODE_ANNOTATION].clone();
            let pod = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
            assert_eq!(pod.node_name.as_ref(), Some(&node));
            let args = pod.containers[0].args.clone().unwrap();
            assert_eq!(args[..2], ["cni".to_owned(), "release-all".to_owned()]);
            let status = if node == "node-a" {
                json!({"succeeded": 1})
            } else {
                json!({"failed": 3})
            };
            let mut job = serde_json::to_value(&job).unwrap();
            job["status"] = status;
            server.put(job);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn install_applies_every_object_and_uninstall_releases_the_nodes_then_deletes_all() {
    let server = TestApiServer::start().await;
    let client = server.client();
    server.put(node("node-a"));
    server.put(node("node-b"));
    let settings = Settings::default();
    let manifest = Manifest::generate(&settings);

    let outcomes = apply::install(&client, &manifest).await.unwrap();
    assert_eq!(outcomes.len(), manifest.objects.len());
    let mut versions = Vec::new();
    for object in &manifest.objects {
        let stored = apply::api_for(&client, object)
            .get(&object.name)
            .await
            .unwrap();
        let managers: Vec<String> = stored
            .metadata
            .managed_fields
            .unwrap_or_default()
            .into_iter()
            .filter_map(|entry| entry.manager)
            .collect();
        assert_eq!(managers, ["weft"], "{} {}", object.kind, object.name);
        versions.push(stored.metadata.resource_version);
    }
    // applying the same install again is accepted (upgrade path)
    apply::install(&client, &manifest).await.unwrap();

    let (outcomes, ()) = tokio::join!(
        apply::uninstall(&client, &settings, Duration::from_secs(10)),
        finish_release_jobs(&server, &client),
    );
    let outcomes = outcomes.unwrap();
    let said = |object: &str| outcomes.iter().find(|o| o.object == object).map(|o| o.what);
    assert_eq!(said("Node node-a"), Some("pods released"));
    assert_eq!(
        said("Node node-b"),
        Some("release FAILED (see the Job's logs)")
    );
    for object in &manifest.objects {
        let gone = apply::api_for(&client, object)
            .get_opt(&object.name)
            .await
            .unwrap();
        assert!(
            gone.is_none(),
            "{} {} still there",
            object.kind,
            object.name
        );
    }
    let jobs: Api<k8s_openapi::api::batch::v1::Job> =
        Api::namespaced(client.clone(), "weft-system");
    assert!(jobs.get_opt("weft-release-0").await.unwrap().is_none());

    // nothing installed: uninstall runs no Job and reports every object as not found
    let outcomes = apply::uninstall(&client, &settings, Duration::from_secs(1))
        .await
        .unwrap();
    assert!(
        outcomes.iter().all(|o| o.what == "not found"),
        "{outcomes:?}"
    );
}
