//! The delta ADS server against a wire-level client over real gRPC on 127.0.0.1.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use weft_proto::discovery::DeltaDiscoveryRequest;
use weft_xds::{AuthError, BoxFuture, PeerIdentity, StreamAuthenticator, bearer_token};

#[tokio::test]
async fn wildcard_gets_everything_and_ack_is_recorded_in_sync_status() {
    let server = TestServer::start(fast_config());
    server
        .publisher
        .replace(T, [thing("a", &[], "1"), thing("b", &[], "2")]);
    settled(&server).await;

    let mut client = RawClient::connect(&server, first_request("ztunnel~10.0.0.5~n1", &[])).await;
    let response = client.recv_ack().await;
    assert_eq!(response.type_url, T);
    assert_eq!(names(&response), strings(&["a", "b"]));
    assert!(response.resources.iter().all(|r| !r.version.is_empty()));

    eventually("the ACK to show in sync status", || {
        let status = server.server.sync_status();
        status.len() == 1
            && status[0].node_id == "ztunnel~10.0.0.5~n1"
            && status[0].types.get(T).is_some_and(|t| {
                t.in_sync
                    && t.wildcard
                    && t.resources == 2
                    && t.last_acked.as_ref().map(|a| &a.nonce) == Some(&response.nonce)
            })
    })
    .await;
    let json = serde_json::to_value(server.server.sync_status()).expect("serializable");
    assert_eq!(json[0]["types"][T]["in_sync"], true);
}

#[tokio::test]
async fn explicit_subscribe_and_unsubscribe() {
    let server = TestServer::start(fast_config());
    server.publisher.replace(
        T,
        [
            thing("a", &[], "1"),
            thing("b", &[], "2"),
            thing("c", &[], "3"),
        ],
    );
    settled(&server).await;

    let mut client = RawClient::connect(&server, first_request("n", &["a"])).await;
    assert_eq!(names(&client.recv_ack().await), strings(&["a"]));

    client.send(subscribe(T, &["b"]));
    let response = client.recv_ack().await;
    assert_eq!(names(&response), strings(&["b"]));
    assert!(response.removed_resources.is_empty());

    client.send(unsubscribe(T, &["a"]));
    let response = client.recv_ack().await;
    assert!(response.resources.is_empty());
    assert_eq!(removed(&response), strings(&["a"]));

    // Changes to unsubscribed resources are not pushed; changes to subscribed ones are.
    server
        .publisher
        .apply(T, [thing("a", &[], "1b")], Vec::<String>::new());
    server
        .publisher
        .apply(T, [thing("b", &[], "2b")], Vec::<String>::new());
    let response = client.recv_ack().await;
    assert_eq!(names(&response), strings(&["b"]));
}

#[tokio::test]
async fn on_demand_by_alias_with_ztunnel_star_unstar_first_request() {
    let server = TestServer::start(fast_config());
    server.publisher.replace(
        T,
        [
            thing("Kubernetes//Pod/default/web-1", &["/10.0.0.1"], "w1"),
            thing("Kubernetes//Pod/default/web-2", &["/10.0.0.2"], "w2"),
        ],
    );
    settled(&server).await;

    let first = DeltaDiscoveryRequest {
        resource_names_unsubscribe: strings(&["*"]),
        ..first_request("ztunnel", &["*"])
    };
    let mut client = RawClient::connect(&server, first).await;
    let initial = client.recv_ack().await;
    assert!(initial.resources.is_empty() && initial.removed_resources.is_empty());

    client.send(subscribe(T, &["/10.0.0.1"]));
    let response = client.recv_ack().await;
    assert_eq!(
        names(&response),
        strings(&["Kubernetes//Pod/default/web-1"])
    );
    assert_eq!(response.resources[0].aliases, strings(&["/10.0.0.1"]));

    // An address nobody has is answered as removed, so the client need not wait.
    client.send(subscribe(T, &["/10.0.0.9"]));
    let response = client.recv_ack().await;
    assert!(response.resources.is_empty());
    assert_eq!(removed(&response), strings(&["/10.0.0.9"]));

    // When it appears later, the subscription delivers it.
    server.publisher.apply(
        T,
        [thing("Kubernetes//Pod/default/web-9", &["/10.0.0.9"], "w9")],
        Vec::<String>::new(),
    );
    let response = client.recv_ack().await;
    assert_eq!(
        names(&response),
        strings(&["Kubernetes//Pod/default/web-9"])
    );
}

#[tokio::test]
async fn nacked_version_is_not_resent_and_the_next_version_is_delivered() {
    let server = TestServer::start(fast_config());
    server.publisher.replace(T, [thing("a", &[], "v1")]);
    settled(&server).await;
    let mut client = RawClient::connect(&server, first_request("nacker", &[])).await;
    client.recv_ack().await;

    server
        .publisher
        .apply(T, [thing("a", &[], "v2-bad")], Vec::<String>::new());
    let bad = client.recv().await;
    assert_eq!(names(&bad), strings(&["a"]));
    client.send(nack(&bad, "a: field x is invalid"));

    // A later, unrelated change is the next response: "a" v2 was not sent again.
    server
        .publisher
        .apply(T, [thing("b", &[], "b1")], Vec::<String>::new());
    let next = client.recv_ack().await;
    assert_eq!(names(&next), strings(&["b"]));

    server
        .publisher
        .apply(T, [thing("a", &[], "v3")], Vec::<String>::new());
    let fixed = client.recv_ack().await;
    assert_eq!(names(&fixed), strings(&["a"]));
    assert_eq!(
        fixed.resources[0]
            .resource
            .as_ref()
            .map(|a| a.value.clone()),
        Some(b"v3".to_vec())
    );

    let status = server.server.sync_status();
    let t = &status[0].types[T];
    assert_eq!(t.nacks, 1);
    let nack = t.last_nack.as_ref().expect("NACK recorded");
    assert_eq!(nack.error, "a: field x is invalid");
    assert_eq!(nack.response.nonce, bad.nonce);
    assert!(
        server
            .metrics_text()
            .contains(&format!("xds_nacks_total{{type_url=\"{T}\"}} 1")),
        "{}",
        server.metrics_text()
    );
}

#[tokio::test]
async fn reconnect_with_initial_versions_gets_only_changes_and_removals() {
    let server = TestServer::start(fast_config());
    server.publisher.replace(
        T,
        [
            thing("a", &[], "1"),
            thing("b", &[], "2"),
            thing("c", &[], "3"),
        ],
    );
    settled(&server).await;
    let mut client = RawClient::connect(&server, first_request("re", &[])).await;
    let response = client.recv_ack().await;
    let held: HashMap<String, String> = response
        .resources
        .iter()
        .map(|r| (r.name.clone(), r.version.clone()))
        .collect();
    drop(client);

    server.publisher.replace(
        T,
        [
            thing("a", &[], "1"),
            thing("b", &[], "2-new"),
            thing("d", &[], "4"),
        ],
    );
    settled(&server).await;
    let first = DeltaDiscoveryRequest {
        initial_resource_versions: held,
        ..first_request("re", &["*"])
    };
    let mut client = RawClient::connect(&server, first).await;
    let response = client.recv_ack().await;
    assert_eq!(names(&response), strings(&["b", "d"]));
    assert_eq!(removed(&response), strings(&["c"]));
}

#[tokio::test]
async fn one_edit_reaches_a_connected_client_as_exactly_one_changed_resource() {
    let server = TestServer::start(fast_config());
    let many: Vec<_> = (0..200)
        .map(|i| thing(&format!("r{i}"), &[], "same"))
        .collect();
    server.publisher.replace(T, many.clone());
    settled(&server).await;
    let mut client = RawClient::connect(&server, first_request("one", &[])).await;
    assert_eq!(client.recv_ack().await.resources.len(), 200);

    // Re-publishing identical content changes nothing; one real edit yields one resource.
    server.publisher.replace(T, many);
    server
        .publisher
        .apply(T, [thing("r42", &[], "changed")], Vec::<String>::new());
    let response = client.recv_ack().await;
    assert_eq!(names(&response), strings(&["r42"]));
    assert!(response.removed_resources.is_empty());
}

#[tokio::test]
async fn a_burst_of_edits_is_one_push() {
    let mut config = fast_config();
    config.debounce.quiet = std::time::Duration::from_millis(200);
    config.debounce.max_delay = std::time::Duration::from_secs(5);
    let server = TestServer::start(config);
    server.publisher.replace(T, [thing("a", &[], "0")]);
    settled(&server).await;
    let mut client = RawClient::connect(&server, first_request("burst", &[])).await;
    client.recv_ack().await;

    for i in 1..=100 {
        server
            .publisher
            .apply(T, [thing("a", &[], &format!("{i}"))], Vec::<String>::new());
    }
    let response = client.recv_ack().await;
    let body = response.resources[0]
        .resource
        .as_ref()
        .map(|a| a.value.clone());
    assert_eq!(
        body,
        Some(b"100".to_vec()),
        "the push carries the final state"
    );

    // The next response is the sentinel: no intermediate version of "a" was queued.
    server
        .publisher
        .apply(T, [thing("sentinel", &[], "s")], Vec::<String>::new());
    assert_eq!(names(&client.recv_ack().await), strings(&["sentinel"]));
    let pushes = format!("xds_pushes_total{{type_url=\"{T}\"}} 3");
    assert!(
        server.metrics_text().contains(&pushes),
        "{}",
        server.metrics_text()
    );
}

#[tokio::test]
async fn unauthenticated_streams_are_refused_and_sotw_is_unimplemented() {
    let auth = |metadata: &tonic::metadata::MetadataMap| match weft_xds::bearer_token(metadata) {
        Some("good-token") => Ok(weft_xds::PeerIdentity {
            principal: "node-a".into(),
        }),
        _ => Err(weft_xds::AuthError::new("missing or unknown bearer token")),
    };
    let server = TestServer::start_with(fast_config(), auth, "127.0.0.1:0");
    server.publisher.replace(T, []);
    let refused = RawClient::try_connect(server.channel(), first_request("x", &[]), None).await;
    let status = refused.err().expect("refused without a token");
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    let refused =
        RawClient::try_connect(server.channel(), first_request("x", &[]), Some("bad")).await;
    assert_eq!(
        refused.err().map(|s| s.code()),
        Some(tonic::Code::Unauthenticated)
    );

    let mut ok = RawClient::try_connect(
        server.channel(),
        first_request("x", &[]),
        Some("good-token"),
    )
    .await
    .expect("accepted");
    ok.recv().await;
    assert_eq!(server.server.sync_status()[0].identity.principal, "node-a");

    let mut sotw = weft_proto::discovery::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient::new(server.channel());
    let result = sotw
        .stream_aggregated_resources(tokio_stream::iter(Vec::<
            weft_proto::discovery::DiscoveryRequest,
        >::new()))
        .await;
    assert_eq!(
        result.err().map(|s| s.code()),
        Some(tonic::Code::Unimplemented)
    );
}

#[tokio::test]
async fn connected_proxies_gauge_follows_streams() {
    let server = TestServer::start(fast_config());
    let mut client = RawClient::connect(&server, first_request("g", &[])).await;
    // The initial empty state is still published, and answered.
    server.publisher.replace(T, []);
    let response = client.recv().await;
    assert!(response.resources.is_empty() && response.removed_resources.is_empty());
    assert!(server.metrics_text().contains("xds_connected_proxies 1"));
    drop(client);
    eventually("the stream to be gone", || {
        server.server.sync_status().is_empty()
            && server.metrics_text().contains("xds_connected_proxies 0")
    })
    .await;
}

#[tokio::test]
async fn cluster_id_comes_from_the_clusterid_header_when_the_node_has_none() {
    let server = TestServer::start(fast_config());
    server.publisher.replace(T, []);
    let header_only = DeltaDiscoveryRequest {
        node: Some(weft_proto::discovery::Node {
            id: "header-only".into(),
            ..Default::default()
        }),
        ..subscribe(T, &[])
    };
    let headers = [("clusterid", "Kubernetes")];
    let mut client = RawClient::try_connect_with(server.channel(), header_only, &headers)
        .await
        .expect("stream opens");
    client.recv().await;
    let both = first_request("both", &[]);
    let headers = [("clusterid", "ignored")];
    let mut other = RawClient::try_connect_with(server.channel(), both, &headers)
        .await
        .expect("stream opens");
    other.recv().await;

    let status = server.server.sync_status();
    let clusters: Vec<(&str, &str)> = status
        .iter()
        .map(|proxy| (proxy.node_id.as_str(), proxy.cluster.as_str()))
        .collect();
    assert_eq!(
        clusters,
        [("both", "Kubernetes"), ("header-only", "Kubernetes")],
        "Node.cluster wins; the header fills in when it is empty"
    );
}

#[tokio::test]
async fn string_node_metadata_is_shown_in_sync_status() {
    let server = TestServer::start(fast_config());
    server.publisher.replace(T, []);
    let text = |v: &str| prost_types::Value {
        kind: Some(prost_types::value::Kind::StringValue(v.into())),
    };
    let metadata = prost_types::Struct {
        fields: [
            (
                weft_xds::METRICS_ADDR_METADATA.to_owned(),
                text("10.0.0.2:15020"),
            ),
            ("NAME".to_owned(), text("weft-node")),
            (
                "FLAG".to_owned(),
                prost_types::Value {
                    kind: Some(prost_types::value::Kind::BoolValue(true)),
                },
            ),
        ]
        .into(),
    };
    let request = DeltaDiscoveryRequest {
        node: Some(weft_proto::discovery::Node {
            id: "with-metadata".into(),
            metadata: Some(metadata),
            ..Default::default()
        }),
        ..subscribe(T, &[])
    };
    let mut client = RawClient::try_connect_with(server.channel(), request, &[])
        .await
        .expect("stream opens");
    client.recv().await;
    let status = server.server.sync_status();
    let expected: std::collections::BTreeMap<String, String> = [
        ("NAME".to_owned(), "weft-node".to_owned()),
        (
            weft_xds::METRICS_ADDR_METADATA.to_owned(),
            "10.0.0.2:15020".to_owned(),
        ),
    ]
    .into();
    assert_eq!(status[0].metadata, expected, "string values only");
    let json = serde_json::to_value(&status[0]).expect("serializes");
    assert_eq!(json["metadata"]["WEFT_METRICS_ADDR"], "10.0.0.2:15020");
}

/// Accepts any bearer token as its principal; `slow` only once the test opens the gate,
/// like a check that waits on I/O (a Kubernetes TokenReview).
struct GatedAuth {
    gate: Arc<tokio::sync::Semaphore>,
    waiting: Arc<AtomicUsize>,
}

impl StreamAuthenticator for GatedAuth {
    fn authenticate<'a>(
        &'a self,
        metadata: &'a tonic::metadata::MetadataMap,
    ) -> BoxFuture<'a, Result<PeerIdentity, AuthError>> {
        Box::pin(async move {
            let token = bearer_token(metadata).ok_or_else(|| AuthError::new("no token"))?;
            if token == "slow" {
                self.waiting.fetch_add(1, Ordering::SeqCst);
                let _permit = self.gate.acquire().await.expect("gate open");
            }
            Ok(PeerIdentity {
                principal: token.to_owned(),
            })
        })
    }
}

#[tokio::test]
async fn a_pending_authentication_does_not_hold_up_other_streams() {
    const SLOW: usize = 4; // more than the server's worker threads
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let waiting = Arc::new(AtomicUsize::new(0));
    let auth = GatedAuth {
        gate: Arc::clone(&gate),
        waiting: Arc::clone(&waiting),
    };
    let server = TestServer::start_with(fast_config(), auth, "127.0.0.1:0");
    server.publisher.replace(T, [thing("a", &[], "1")]);
    let slow: Vec<_> = (0..SLOW)
        .map(|i| {
            let first = first_request(&format!("slow-{i}"), &[]);
            tokio::spawn(RawClient::try_connect(
                server.channel(),
                first,
                Some("slow"),
            ))
        })
        .collect();
    eventually("every slow check to be waiting", || {
        waiting.load(Ordering::SeqCst) == SLOW
    })
    .await;

    let mut fast =
        RawClient::try_connect(server.channel(), first_request("fast", &[]), Some("fast"))
            .await
            .expect("accepted while the slow checks wait");
    assert_eq!(names(&fast.recv().await), strings(&["a"]));

    gate.add_permits(SLOW);
    // kept open until the count below: a dropped client's stream leaves the table
    let mut clients = Vec::new();
    for stream in slow {
        let mut client = stream.await.expect("task").expect("accepted once checked");
        assert_eq!(names(&client.recv().await), strings(&["a"]));
        clients.push(client);
    }
    assert_eq!(server.server.sync_status().len(), SLOW + 1);
}

/// The next message on `client`'s stream is its end with `code`.
async fn stream_ends_with(client: &mut RawClient, code: tonic::Code) -> String {
    loop {
        match client.next().await {
            Ok(Some(_)) => {}
            Ok(None) => panic!("the stream ended without a status"),
            Err(status) => {
                assert_eq!(status.code(), code, "{status}");
                return status.message().to_owned();
            }
        }
    }
}

/// One token holder cannot make the server keep an unbounded set of names: requests that
/// keep subscribing new names end the stream once it holds 100,000 (each request is only
/// bounded by the message size), and so do requests for ever new resource types and a
/// reconnect declaring far more versions than the server has. Tens of
/// thousands of unknown names in one request are answered at once (reporting them absent
/// was quadratic: this request took the server minutes).
#[tokio::test]
async fn a_stream_subscribing_without_end_is_closed_at_its_limits() {
    let server = TestServer::start(fast_config());
    server.publisher.replace(T, [thing("a", &[], "1")]);
    let mut client = RawClient::connect(&server, first_request("greedy", &["a"])).await;
    client.recv_ack().await;
    let batch: Vec<String> = (0..40_000).map(|i| format!("name-{i:06}")).collect();
    for round in 0..3 {
        let names: Vec<String> = batch.iter().map(|n| format!("{round}-{n}")).collect();
        client.send(DeltaDiscoveryRequest {
            resource_names_subscribe: names,
            ..subscribe(T, &[])
        });
        if round == 0 {
            let absent = client.recv_ack().await.removed_resources.len();
            assert_eq!(absent, batch.len(), "every unknown name is reported absent");
        }
    }
    let message = stream_ends_with(&mut client, tonic::Code::ResourceExhausted).await;
    assert!(message.contains("100000 resource names"), "{message}");

    let mut client = RawClient::connect(&server, first_request("types", &["a"])).await;
    client.recv_ack().await;
    for i in 0..40 {
        client.send(subscribe(&format!("type.example/t{i}"), &["x"]));
    }
    let message = stream_ends_with(&mut client, tonic::Code::ResourceExhausted).await;
    assert!(message.contains("32 resource types"), "{message}");
    // A reconnecting client declares what it holds (a wildcard client: everything): as
    // many versions as the type has, and up to 100,000 more, are fine; beyond, refused.
    let declaring = |count: usize| DeltaDiscoveryRequest {
        initial_resource_versions: (0..count)
            .map(|i| (format!("gone-{i}"), "1".into()))
            .collect(),
        ..first_request("reconnecting", &[])
    };
    let mut client = RawClient::connect(&server, declaring(100_002)).await;
    let message = stream_ends_with(&mut client, tonic::Code::ResourceExhausted).await;
    assert!(message.contains("declared"), "{message}");
    let mut reconnected = RawClient::connect(&server, declaring(100_001)).await;
    let response = reconnected.recv_ack().await;
    assert_eq!(names(&response), ["a"]);
    assert_eq!(
        response.removed_resources.len(),
        100_001,
        "told what no longer exists"
    );
    // A well-behaved stream is unaffected.
    let mut fine = RawClient::connect(&server, first_request("fine", &["a"])).await;
    assert_eq!(names(&fine.recv_ack().await), ["a"]);
}

const AUTHORIZATION: &str = "type.googleapis.com/istio.security.Authorization";
const ADDRESS: &str = "type.googleapis.com/istio.workload.Address";

/// A client subscribing to addresses and policies, as Istio's node proxy does.
async fn both_types_client(server: &TestServer) -> RawClient {
    let first = DeltaDiscoveryRequest {
        node: Some(node("ztunnel~10.0.0.5~n1")),
        ..subscribe(ADDRESS, &[])
    };
    let client = RawClient::connect(server, first).await;
    client.send(subscribe(AUTHORIZATION, &[]));
    client
}

/// The responses of one push, in order: (type URL, upserted names, removed names).
async fn push_of(client: &mut RawClient, count: usize) -> Vec<(String, Vec<String>, Vec<String>)> {
    let mut seen = Vec::new();
    for _ in 0..count {
        let response = client.recv_ack().await;
        seen.push((
            response.type_url.clone(),
            names(&response),
            removed(&response),
        ));
    }
    seen
}

#[tokio::test]
async fn a_workload_moves_to_a_new_policy_make_before_break() {
    let server = TestServer::start(fast_config());
    let policy = |name: &str| (AUTHORIZATION, vec![thing(name, &[], "v")], Vec::new());
    let workload = |refers: &str| (ADDRESS, vec![thing("w", &[], refers)], Vec::new());
    server
        .publisher
        .apply_types([policy("old"), workload("old")]);
    settled(&server).await;
    let mut client = both_types_client(&server).await;
    let mut initial = push_of(&mut client, 2).await;
    initial.sort();
    assert_eq!(initial[0].1, strings(&["old"]));
    assert_eq!(initial[1].1, strings(&["w"]));

    // One edit: the workload now refers to policy "new", and "old" is gone.
    let mut authorization = policy("new");
    authorization.2.push("old".to_owned());
    server
        .publisher
        .apply_types([authorization, workload("new")]);
    let push = push_of(&mut client, 3).await;
    let expected = [
        (AUTHORIZATION, strings(&["new"]), vec![]),
        (ADDRESS, strings(&["w"]), vec![]),
        (AUTHORIZATION, vec![], strings(&["old"])),
    ]
    .map(|(t, upserts, removals)| (t.to_owned(), upserts, removals));
    assert_eq!(
        push, expected,
        "the new policy, then the workload, then the old policy's removal"
    );

    // Leaving: the workload and its policy go, the workload first.
    server.publisher.apply_types([
        (AUTHORIZATION, Vec::new(), strings(&["new"])),
        (ADDRESS, Vec::new(), strings(&["w"])),
    ]);
    let push = push_of(&mut client, 2).await;
    assert_eq!(push[0], (ADDRESS.to_owned(), vec![], strings(&["w"])));
    assert_eq!(
        push[1],
        (AUTHORIZATION.to_owned(), vec![], strings(&["new"]))
    );
}

#[tokio::test]
async fn a_removal_waits_for_every_part_of_a_large_update_of_another_type() {
    let mut config = fast_config();
    // every resource is a response of its own: the Address update comes in many parts
    config.max_response_bytes = 1;
    let server = TestServer::start(config);
    let workloads = |refers: &str| {
        let all = (0..40).map(|i| thing(&format!("w{i:02}"), &[], refers));
        (ADDRESS, all.collect::<Vec<_>>(), Vec::new())
    };
    let policy = |name: &str| (AUTHORIZATION, vec![thing(name, &[], "v")], Vec::new());
    server
        .publisher
        .apply_types([policy("old"), workloads("old")]);
    settled(&server).await;
    let mut client = both_types_client(&server).await;
    push_of(&mut client, 41).await;

    let mut authorization = policy("new");
    authorization.2.push("old".to_owned());
    server
        .publisher
        .apply_types([authorization, workloads("new")]);
    let push = push_of(&mut client, 42).await;
    let removal_at = push
        .iter()
        .position(|(_, _, removed)| !removed.is_empty())
        .expect("the old policy is removed");
    let addresses: Vec<usize> = (0..push.len()).filter(|i| push[*i].0 == ADDRESS).collect();
    assert_eq!(addresses.len(), 40, "{push:?}");
    assert_eq!(
        removal_at, 41,
        "the removal comes after every Address part: {push:?}"
    );
    assert_eq!(push[removal_at].2, strings(&["old"]));
}
