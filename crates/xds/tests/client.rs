//! weft's delta ADS client against weft's server over real gRPC on 127.0.0.1.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use weft_xds::client::{
    ClientConfig, RejectedResource, ResourceHandler, ResourceUpdate, XdsClient, XdsClientHandle,
};
use weft_xds::{AuthError, PeerIdentity, ServerConfig, bearer_token};

/// A proxy-side store: values starting with "bad" fail validation.
#[derive(Clone, Default)]
struct Store {
    inner: Arc<Mutex<StoreInner>>,
}

#[derive(Default)]
struct StoreInner {
    items: BTreeMap<String, String>,
    /// Names of every update the handler was given, in order.
    received: Vec<String>,
}

impl ResourceHandler for Store {
    fn apply(
        &mut self,
        updates: Vec<ResourceUpdate>,
        removed: Vec<String>,
    ) -> Vec<RejectedResource> {
        let mut inner = self.inner.lock().expect("store lock");
        let mut rejected = Vec::new();
        for update in updates {
            inner.received.push(update.name.clone());
            match String::from_utf8(update.body.value) {
                Ok(value) if value.starts_with("bad") => {
                    rejected.push(RejectedResource::new(
                        update.name,
                        "value must not start with 'bad'",
                    ));
                }
                Ok(value) => {
                    inner.items.insert(update.name, value);
                }
                Err(error) => rejected.push(RejectedResource::new(update.name, error)),
            }
        }
        for name in removed {
            inner.items.remove(&name);
        }
        rejected
    }
}

impl Store {
    fn items(&self) -> BTreeMap<String, String> {
        self.inner.lock().expect("store lock").items.clone()
    }

    fn take_received(&self) -> Vec<String> {
        let mut received = std::mem::take(&mut self.inner.lock().expect("store lock").received);
        received.sort();
        received
    }
}

fn items(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn quick_reconnect() -> ClientConfig {
    ClientConfig {
        backoff_initial: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        ..ClientConfig::default()
    }
}

fn start_client(
    server: &TestServer,
    store: &Store,
    wildcard: bool,
) -> (tokio::task::JoinHandle<()>, XdsClientHandle) {
    let builder = XdsClient::builder(node("weft-node~10.0.0.7"))
        .config(quick_reconnect())
        .bearer_token("t0k3n")
        .metadata("clusterid", "Kubernetes");
    let builder = if wildcard {
        builder.wildcard(T, store.clone())
    } else {
        builder.explicit(T, Vec::new(), store.clone())
    };
    let (client, handle) = builder.build(server.channel());
    (tokio::spawn(client.run()), handle)
}

async fn ready(handle: &XdsClientHandle) {
    tokio::time::timeout(WAIT, handle.ready())
        .await
        .expect("client ready in time");
}

fn token_auth(metadata: &tonic::metadata::MetadataMap) -> Result<PeerIdentity, AuthError> {
    match bearer_token(metadata) {
        Some("t0k3n") => Ok(PeerIdentity {
            principal: "node-7".into(),
        }),
        _ => Err(AuthError::new("bad token")),
    }
}

#[tokio::test]
async fn client_nacks_the_bad_resource_and_keeps_the_good_ones() {
    let server = TestServer::start_with(fast_config(), token_auth, "127.0.0.1:0");
    server.publisher.replace(
        T,
        [
            thing("a", &[], "1"),
            thing("b", &[], "bad"),
            thing("c", &[], "3"),
        ],
    );
    settled(&server).await;
    let store = Store::default();
    let (task, handle) = start_client(&server, &store, true);
    ready(&handle).await;
    assert_eq!(store.items(), items(&[("a", "1"), ("c", "3")]));

    eventually("the NACK naming b to reach the server", || {
        server.server.sync_status().first().is_some_and(|proxy| {
            proxy.identity.principal == "node-7"
                && proxy.node_id == "weft-node~10.0.0.7"
                && proxy.types[T]
                    .last_nack
                    .as_ref()
                    .is_some_and(|n| n.error.contains("b: value must not start with 'bad'"))
        })
    })
    .await;

    // A good resource turning bad keeps its last good value; a fix is accepted.
    server.publisher.apply(
        T,
        [thing("a", &[], "bad-2"), thing("b", &[], "2")],
        Vec::<String>::new(),
    );
    eventually("b to be fixed", || {
        store.items().get("b").is_some_and(|v| v == "2")
    })
    .await;
    assert_eq!(store.items(), items(&[("a", "1"), ("b", "2"), ("c", "3")]));
    eventually("the second NACK", || {
        server.server.sync_status()[0].types[T].nacks == 2
    })
    .await;
    task.abort();
}

#[tokio::test]
async fn client_keeps_last_good_state_while_the_server_is_down_and_resyncs() {
    let server = TestServer::start_with(fast_config(), token_auth, "127.0.0.1:0");
    server.publisher.replace(
        T,
        [
            thing("a", &[], "1"),
            thing("b", &[], "2"),
            thing("c", &[], "3"),
        ],
    );
    settled(&server).await;
    let store = Store::default();
    let (task, handle) = start_client(&server, &store, true);
    ready(&handle).await;
    eventually("all three", || store.items().len() == 3).await;
    assert_eq!(store.take_received(), strings(&["a", "b", "c"]));

    let addr = server.kill();
    eventually("the client to notice the outage", || {
        !handle.state().connected
    })
    .await;
    assert_eq!(store.items(), items(&[("a", "1"), ("b", "2"), ("c", "3")]));
    assert!(handle.state().ready, "readiness survives an outage");

    let restarted = TestServer::start_with(ServerConfig::default(), token_auth, &addr.to_string());
    restarted.publisher.replace(
        T,
        [
            thing("a", &[], "1"),
            thing("b", &[], "22"),
            thing("d", &[], "4"),
        ],
    );
    eventually("the resync", || {
        store.items() == items(&[("a", "1"), ("b", "22"), ("d", "4")])
    })
    .await;
    assert!(handle.state().connected);
    // initial_resource_versions told the new server the client already had "a".
    assert_eq!(store.take_received(), strings(&["b", "d"]));
    task.abort();
}

#[tokio::test]
async fn client_subscribes_on_demand_by_alias_at_runtime() {
    let server = TestServer::start(fast_config());
    server.publisher.replace(
        T,
        [
            thing("Kubernetes//Pod/ns/p1", &["net1/10.1.0.1"], "p1"),
            thing("Kubernetes//Pod/ns/p2", &["net1/10.1.0.2"], "p2"),
        ],
    );
    settled(&server).await;
    let store = Store::default();
    let (task, handle) = start_client(&server, &store, false);
    ready(&handle).await;
    assert!(
        store.items().is_empty(),
        "explicit subscription of nothing receives nothing"
    );

    handle.subscribe(T, ["net1/10.1.0.2".to_owned()]);
    eventually("the on-demand workload", || {
        store.items() == items(&[("Kubernetes//Pod/ns/p2", "p2")])
    })
    .await;

    handle.unsubscribe(T, ["net1/10.1.0.2".to_owned()]);
    eventually("the unsubscribed workload to go", || {
        store.items().is_empty()
    })
    .await;
    task.abort();
}

#[tokio::test]
async fn a_client_is_ready_only_once_the_last_part_of_a_split_update_arrived() {
    // one resource per response: the first sync takes 40 responses
    let config = weft_xds::ServerConfig {
        max_response_bytes: 1,
        ..fast_config()
    };
    let server = TestServer::start_with(config, token_auth, "127.0.0.1:0");
    let all: Vec<_> = (0..40)
        .map(|i| thing(&format!("r{i:02}"), &[], "v"))
        .collect();
    server.publisher.replace(T, all);
    settled(&server).await;
    let store = Store::default();
    let (task, handle) = start_client(&server, &store, true);
    ready(&handle).await;
    assert_eq!(store.items().len(), 40, "ready with part of the update");
    task.abort();
}
