//! The relay on in-memory streams: half-close, byte counts, idle timeout, cancellation.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use weft_hbone::{Plain, RelayCause, RelayOptions, RelayStats, relay};

/// Two pipes joined by a relay: returns the outer ends and the relay task.
fn relayed(
    options: RelayOptions,
) -> (
    DuplexStream,
    DuplexStream,
    tokio::task::JoinHandle<Result<RelayStats, weft_hbone::RelayError>>,
) {
    let (outer_a, inner_a) = duplex(64 * 1024);
    let (outer_b, inner_b) = duplex(64 * 1024);
    let task = tokio::spawn(async move {
        let (mut a, mut b) = (Plain(inner_a), Plain(inner_b));
        relay(&mut a, &mut b, &options).await
    });
    (outer_a, outer_b, task)
}

#[tokio::test]
async fn half_close_in_one_direction_keeps_the_other_open() {
    let (mut a, mut b, task) = relayed(RelayOptions::default());
    let request = vec![7u8; 300_000];
    let writer = {
        let request = request.clone();
        tokio::spawn(async move {
            a.write_all(&request).await.unwrap();
            a.shutdown().await.unwrap();
            a
        })
    };
    let mut got = Vec::new();
    b.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, request);
    // b saw EOF; its own direction is still open.
    let mut a = writer.await.unwrap();
    b.write_all(b"late answer").await.unwrap();
    b.shutdown().await.unwrap();
    let mut answer = Vec::new();
    a.read_to_end(&mut answer).await.unwrap();
    assert_eq!(answer, b"late answer");
    let stats = task.await.unwrap().unwrap();
    assert_eq!(
        stats,
        RelayStats {
            a_to_b: 300_000,
            b_to_a: 11
        }
    );
}

#[tokio::test(start_paused = true)]
async fn idle_timeout_counts_from_the_last_byte() {
    let timeout = Duration::from_secs(60);
    let (mut a, mut b, task) = relayed(RelayOptions {
        idle_timeout: Some(timeout),
        cancel: None,
    });
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(40)).await;
    a.write_all(b"keepalive").await.unwrap();
    let mut buf = [0u8; 9];
    b.read_exact(&mut buf).await.unwrap();
    let error = task.await.unwrap().unwrap_err();
    assert!(
        matches!(error.cause, RelayCause::IdleTimeout(t) if t == timeout),
        "{error}"
    );
    assert_eq!(error.stats.a_to_b, 9);
    assert!(
        start.elapsed() >= Duration::from_secs(100),
        "{:?}",
        start.elapsed()
    );
    assert!(
        start.elapsed() < Duration::from_secs(130),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn cancellation_stops_the_relay_with_its_byte_counts() {
    let cancel = CancellationToken::new();
    let (mut a, mut b, task) = relayed(RelayOptions {
        idle_timeout: None,
        cancel: Some(cancel.clone()),
    });
    a.write_all(b"abc").await.unwrap();
    let mut buf = [0u8; 3];
    b.read_exact(&mut buf).await.unwrap();
    cancel.cancel();
    let error = task.await.unwrap().unwrap_err();
    assert!(matches!(error.cause, RelayCause::Cancelled), "{error}");
    assert_eq!(error.stats.a_to_b, 3);
    // The relay dropped its ends: both peers see the pipes close.
    let mut rest = Vec::new();
    assert_eq!(b.read_to_end(&mut rest).await.unwrap(), 0);
}
