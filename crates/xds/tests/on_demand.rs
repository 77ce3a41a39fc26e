//! Request-by-name (on-demand) delta xDS over real gRPC on 127.0.0.1: a client that never
//! subscribes to the wildcard gets exactly the resources it names, nothing after it
//! unsubscribes from one, and a removal for a still-subscribed resource the server drops,
//! reported once.

mod common;

use common::*;
use weft_proto::discovery::DeltaDiscoveryResponse;

/// Waits until the stream has handled the latest published version of [`T`]: either it
/// is in sync again (nothing to send) or it sent something after `before`. Returns what
/// it last sent.
async fn handled_latest(server: &TestServer, before: &str) -> Option<String> {
    settled(server).await;
    let latest = server
        .server
        .published()
        .resources(T)
        .map(|resources| resources.generation().to_string());
    let mut last_sent = None;
    eventually("the stream to handle the latest version", || {
        let status = server.server.sync_status();
        let Some(state) = status.first().and_then(|proxy| proxy.types.get(T)) else {
            return false;
        };
        last_sent = state.last_sent.as_ref().map(|sent| sent.nonce.clone());
        Some(&state.current_version) == latest.as_ref()
            && (state.in_sync || last_sent.as_deref() != Some(before))
    })
    .await;
    last_sent
}

fn assert_only(response: &DeltaDiscoveryResponse, upserts: &[&str], removals: &[&str]) {
    assert_eq!(names(response), strings(upserts), "upserts of {response:?}");
    assert_eq!(
        removed(response),
        strings(removals),
        "removals of {response:?}"
    );
}

#[tokio::test]
async fn named_subscriptions_get_exactly_their_resources_then_unsubscribe_and_removal() {
    let server = TestServer::start(fast_config());
    server.publisher.replace(
        T,
        [
            thing("a", &[], "a1"),
            thing("b", &[], "b1"),
            thing("c", &[], "c1"),
        ],
    );
    settled(&server).await;

    let mut client = RawClient::connect(&server, first_request("od", &["a", "b"])).await;
    assert_only(&client.recv_ack().await, &["a", "b"], &[]);
    let status = &server.server.sync_status()[0].types[T];
    assert!(!status.wildcard, "named subscription only: {status:?}");

    client.send(unsubscribe(T, &["a"]));
    assert_only(&client.recv_ack().await, &[], &["a"]);

    // Edits to the unsubscribed "a" and the never-subscribed "c" are not pushed: the next
    // response is the edit of "b".
    server.publisher.apply(
        T,
        [thing("a", &[], "a2"), thing("c", &[], "c2")],
        Vec::<String>::new(),
    );
    settled(&server).await;
    server
        .publisher
        .apply(T, [thing("b", &[], "b2")], Vec::<String>::new());
    let response = client.recv_ack().await;
    assert_only(&response, &["b"], &[]);

    // The server drops the still-subscribed "b": the client is told so.
    server.publisher.apply(T, [], ["b"]);
    let response = client.recv_ack().await;
    assert_only(&response, &[], &["b"]);

    // An unrelated edit does not repeat that removal...
    server
        .publisher
        .apply(T, [thing("c", &[], "c3")], Vec::<String>::new());
    let last_sent = handled_latest(&server, &response.nonce).await;
    assert_eq!(
        last_sent.as_deref(),
        Some(response.nonce.as_str()),
        "nothing is sent for an edit of an unsubscribed resource"
    );
    // ...and when "b" comes back, the subscription still delivers it.
    server
        .publisher
        .apply(T, [thing("b", &[], "b3")], Vec::<String>::new());
    assert_only(&client.recv_ack().await, &["b"], &[]);
}
