//! Streams per caller: a principal holding its limit of open streams gets new ones refused
//! with RESOURCE_EXHAUSTED (counted), its open streams keep being served, another caller is
//! unaffected, and a closed stream frees its slot.

mod common;

use common::*;
use weft_xds::ServerConfig;
use weft_xds::{AuthError, PeerIdentity, bearer_token};

/// Tokens `a` and `b` are two callers.
fn two_callers(metadata: &tonic::metadata::MetadataMap) -> Result<PeerIdentity, AuthError> {
    match bearer_token(metadata) {
        Some(token @ ("a" | "b")) => Ok(PeerIdentity {
            principal: format!("node-{token}"),
        }),
        _ => Err(AuthError::new("bad token")),
    }
}

async fn open(server: &TestServer, token: &str) -> Result<RawClient, tonic::Status> {
    let mut client =
        RawClient::try_connect(server.channel(), first_request(token, &["x"]), Some(token)).await?;
    client.recv_ack().await;
    Ok(client)
}

#[tokio::test]
async fn a_caller_at_its_stream_limit_is_refused_new_streams_only() {
    let config = ServerConfig {
        max_streams_per_caller: 2,
        ..fast_config()
    };
    let server = TestServer::start_with(config, two_callers, "127.0.0.1:0");
    server.publisher.replace(T, [thing("x", &[], "1")]);
    settled(&server).await;

    let first = open(&server, "a").await.expect("first stream");
    let mut second = open(&server, "a").await.expect("second stream");
    let refused = open(&server, "a")
        .await
        .err()
        .expect("a third stream is refused");
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );
    open(&server, "b").await.expect("another caller's stream");

    // The open streams still get updates.
    server.publisher.replace(T, [thing("x", &[], "2")]);
    assert_eq!(names(&second.recv_ack().await), strings(&["x"]));
    assert!(
        server
            .metrics_text()
            .contains("xds_streams_refused_total 1"),
        "{}",
        server.metrics_text()
    );

    // Closing one frees its slot (the server notices the stream end asynchronously).
    drop(first);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match open(&server, "a").await {
            Ok(_) => break,
            Err(status) if status.code() == tonic::Code::ResourceExhausted => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the slot is never freed"
                );
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Err(status) => panic!("{status:?}"),
        }
    }
}
