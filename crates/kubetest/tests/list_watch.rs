//! The test API server's list/watch contract, through `kube`'s own client over real HTTP.

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, WatchEvent, WatchParams};
use serde_json::json;
use std::time::Duration;
use weft_kubetest::{ServerOptions, TestApiServer};

const DEADLINE: Duration = Duration::from_secs(10);

fn pod(name: &str, app: &str) -> serde_json::Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "shop", "labels": {"app": app}},
        "spec": {"containers": [{"name": "main", "image": "app"}]},
    })
}

/// The resourceVersion of a list of the pods.
async fn list_version(pods: &Api<Pod>) -> String {
    let list = pods.list(&ListParams::default()).await.unwrap();
    list.metadata.resource_version.unwrap()
}

/// The events of a watch, as `(type, pod name)`, until `count` arrived.
async fn next_events(
    stream: impl futures::Stream<Item = kube::Result<WatchEvent<Pod>>>,
    count: usize,
) -> Vec<(String, String)> {
    let events = stream
        .map_ok(|event| match event {
            WatchEvent::Added(p) => ("ADDED".to_owned(), p.metadata.name.unwrap_or_default()),
            WatchEvent::Modified(p) => ("MODIFIED".to_owned(), p.metadata.name.unwrap_or_default()),
            WatchEvent::Deleted(p) => ("DELETED".to_owned(), p.metadata.name.unwrap_or_default()),
            WatchEvent::Bookmark(b) => ("BOOKMARK".to_owned(), b.metadata.resource_version),
            WatchEvent::Error(status) => ("ERROR".to_owned(), status.code.to_string()),
        })
        .take(count)
        .try_collect::<Vec<_>>();
    tokio::time::timeout(DEADLINE, events)
        .await
        .expect("events before the deadline")
        .expect("a readable watch")
}

#[tokio::test]
async fn a_watch_from_a_lists_version_gets_every_later_change_once_in_order() {
    let server = TestApiServer::start().await;
    server.put(pod("web-0", "web"));
    let pods: Api<Pod> = Api::namespaced(server.client(), "shop");
    let list = pods.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 1);
    let version = list.metadata.resource_version.unwrap();

    server.put(pod("web-1", "web"));
    server.put(pod("web-0", "web-v2"));
    server.delete("v1", "Pod", Some("shop"), "web-0").unwrap();
    let stream = pods.watch(&WatchParams::default(), &version).await.unwrap();
    let events = next_events(stream, 3).await;
    let expected = [
        ("ADDED", "web-1"),
        ("MODIFIED", "web-0"),
        ("DELETED", "web-0"),
    ];
    assert_eq!(events, expected.map(|(t, n)| (t.to_owned(), n.to_owned())));
}

#[tokio::test]
async fn a_watch_from_a_compacted_version_gets_410_gone() {
    let server = TestApiServer::start().await;
    let pods: Api<Pod> = Api::namespaced(server.client(), "shop");
    server.put(pod("web-0", "web"));
    let version = list_version(&pods).await;
    server.put(pod("web-1", "web"));
    server.compact();
    let stream = pods.watch(&WatchParams::default(), &version).await.unwrap();
    assert_eq!(
        next_events(stream, 1).await,
        [("ERROR".to_owned(), "410".to_owned())]
    );
}

#[tokio::test]
async fn bookmarks_arrive_and_the_server_ends_the_watch_at_its_timeout() {
    let options = ServerOptions {
        bookmark_interval: Duration::from_millis(100),
        ..ServerOptions::default()
    };
    let server = TestApiServer::start_with(options).await;
    server.put(pod("web-0", "web"));
    let pods: Api<Pod> = Api::namespaced(server.client(), "shop");
    let version = list_version(&pods).await;
    let params = WatchParams::default().timeout(1);
    let stream = pods.watch(&params, &version).await.unwrap();
    let started = tokio::time::Instant::now();
    let events: Vec<_> = tokio::time::timeout(DEADLINE, stream.collect::<Vec<_>>())
        .await
        .expect("the server ends the watch at timeoutSeconds");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "ended early"
    );
    let bookmarks = events
        .iter()
        .filter(
            |e| matches!(e, Ok(WatchEvent::Bookmark(b)) if b.metadata.resource_version == version),
        )
        .count();
    assert!(bookmarks >= 3, "bookmarks at {version}: {events:?}");
}

#[tokio::test]
async fn a_selected_watch_sees_objects_enter_and_leave_its_selector() {
    let server = TestApiServer::start().await;
    let pods: Api<Pod> = Api::namespaced(server.client(), "shop");
    let version = server.store().resource_version().to_string();
    let params = WatchParams::default().labels("app=web");
    let stream = pods.watch(&params, &version).await.unwrap();
    server.put(pod("db-0", "db"));
    server.put(pod("web-0", "web"));
    server.put(pod("db-0", "web"));
    server.put(pod("web-0", "other"));
    let events = next_events(stream, 3).await;
    let expected = [("ADDED", "web-0"), ("ADDED", "db-0"), ("DELETED", "web-0")];
    assert_eq!(events, expected.map(|(t, n)| (t.to_owned(), n.to_owned())));
}
