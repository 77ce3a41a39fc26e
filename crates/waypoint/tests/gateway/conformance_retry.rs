//! GATEWAY-HTTP retry features (HTTPRouteRetry, HTTPRouteRetryBackendTimeout,
//! HTTPRouteRetryConnectionError) through the gateway's real listener, written as the
//! other conformance cases are (`conformance.rs`): manifests translated by the control
//! plane, requests from a plain client, assertions on what the client and the backend saw.
//!
//! The backend is a [`Flaky`] echo pod outside the mesh (namespace `web`, reached
//! directly) that misbehaves on demand: the test arms it to fail or stall its next
//! requests, so each attempt the gateway makes is counted and the answer the client gets
//! shows whether the gateway retried.

use std::convert::Infallible;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use tokio_util::sync::CancellationToken;

use crate::conformance::{Conformance, GATEWAY, request};
use crate::fixture::send;
use crate::harness::{Net, eventually};

/// How long a stalled request waits before answering (far beyond the backend timeout).
const STALL: Duration = Duration::from_secs(5);

/// An echo pod that answers its next `fail` requests with `status` and stalls its next
/// `stall` requests by [`STALL`]; otherwise 200. Counts every request it gets.
#[derive(Debug, Default)]
struct Flaky {
    requests: AtomicUsize,
    fail: AtomicUsize,
    status: AtomicU16,
    stall: AtomicUsize,
}

impl Flaky {
    /// Fails the next `count` requests with `status`.
    fn fail_next(&self, count: usize, status: u16) {
        self.status.store(status, Relaxed);
        self.fail.store(count, Relaxed);
    }

    /// Takes one from `counter` if it is above zero.
    fn take(counter: &AtomicUsize) -> bool {
        (counter.fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1))).is_ok()
    }

    async fn answer(&self) -> Response<Full<Bytes>> {
        self.requests.fetch_add(1, Relaxed);
        if Self::take(&self.stall) {
            tokio::time::sleep(STALL).await;
        }
        let status = if Self::take(&self.fail) {
            StatusCode::from_u16(self.status.load(Relaxed)).unwrap()
        } else {
            StatusCode::OK
        };
        let mut response = Response::new(Full::new(Bytes::from_static(b"flaky")));
        *response.status_mut() = status;
        response
    }
}

/// Serves `flaky` over plain HTTP/1.1 on `<ip>:8080` until dropped.
async fn serve_flaky(ip: Ipv4Addr, flaky: Arc<Flaky>) -> CancellationToken {
    let listener = tokio::net::TcpListener::bind((ip, 8080)).await.unwrap();
    let stop = CancellationToken::new();
    let token = stop.clone();
    tokio::spawn(async move {
        weft_serve::accept_until(&listener, token.cancelled(), "flaky", |stream, _| {
            let flaky = Arc::clone(&flaky);
            let service = hyper::service::service_fn(move |_request| {
                let flaky = Arc::clone(&flaky);
                async move { Ok::<_, Infallible>(flaky.answer().await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::spawn(connection);
        })
        .await;
    });
    stop
}

/// Where the pods of Service `web/flaky` live: `flaky-0` serves, `refuse-0` has nothing
/// listening (a connection to it is refused).
fn flaky_ip(net: Net) -> Ipv4Addr {
    net.ip(4, 2)
}

fn refusing_ip(net: Net) -> Ipv4Addr {
    net.ip(4, 3)
}

/// Service `web/flaky` with pod `flaky-0` (and `refuse-0` with `refusing`), and an
/// HTTPRoute `web/retry` on `ns/gw` whose rules are `rules` (YAML, indented by two spaces).
fn manifests(net: Net, refusing: bool, rules: &str) -> String {
    let pod = |name: &str, ip: Ipv4Addr| {
        format!(
            "---\napiVersion: v1\nkind: Pod\n\
             metadata: {{name: {name}, namespace: web, labels: {{app: flaky}}}}\n\
             spec: {{nodeName: node-a, containers: [{{name: echo, image: echo}}]}}\n\
             status: {{podIP: {ip}}}\n"
        )
    };
    let mut text = format!(
        "{GATEWAY}---\napiVersion: v1\nkind: Service\nmetadata: {{name: flaky, namespace: web}}\n\
         spec:\n  selector: {{app: flaky}}\n  ports: [{{name: http, port: 8080}}]\n{}",
        pod("flaky-0", flaky_ip(net))
    );
    if refusing {
        text += &pod("refuse-0", refusing_ip(net));
    }
    text + "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n\
            metadata: {name: retry, namespace: web}\n\
            spec:\n  parentRefs: [{name: gw, namespace: ns}]\n  rules:\n"
        + rules
}

/// A running case with the flaky pod serving.
struct RetryCase {
    case: Conformance,
    flaky: Arc<Flaky>,
    _server: CancellationToken,
}

impl RetryCase {
    /// Starts the gateway, the flaky pod, applies `rules` and waits until the gateway
    /// knows every pod of `web/flaky`.
    async fn start(refusing: bool, rules: &str) -> Self {
        let case = Conformance::start(GATEWAY).await;
        let net = case.fixture.net;
        let flaky = Arc::new(Flaky::default());
        let server = serve_flaky(flaky_ip(net), Arc::clone(&flaky)).await;
        case.apply(&manifests(net, refusing, rules)).await;
        let mut ips = vec![flaky_ip(net)];
        ips.extend(refusing.then(|| refusing_ip(net)));
        let state = || case.fixture.gateway.gateway.engine().state();
        eventually("the gateway to know the flaky pods", || async {
            let state = state();
            (ips.iter()).all(|ip| state.workloads_with_ip((*ip).into()).next().is_some())
        })
        .await;
        Self {
            case,
            flaky,
            _server: server,
        }
    }

    /// `GET /` through the gateway on a new connection: the status the client gets.
    async fn get(&self) -> u16 {
        let mut client = self.case.fixture.h1(80).await;
        send(&mut client, request("GET", "/", &[])).await.status
    }

    fn requests(&self) -> usize {
        self.flaky.requests.load(Relaxed)
    }
}

/// Feature HTTPRouteRetry: a response with a listed code is retried up to `attempts`
/// times (the client sees the first success, the backend every attempt); when every
/// attempt fails the client gets the last failure; an unlisted code is not retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_on_listed_codes() {
    let rules = "  - backendRefs: [{name: flaky, port: 8080}]
    retry: {attempts: 2, codes: [503], backoff: 10ms}
";
    let retry = RetryCase::start(false, rules).await;
    assert_eq!(retry.get().await, 200, "a healthy backend answers at once");
    assert_eq!(retry.requests(), 1);
    retry.flaky.fail_next(2, 503);
    assert_eq!(retry.get().await, 200, "two 503s are retried");
    assert_eq!(retry.requests(), 1 + 3, "one attempt and two retries");
    retry.flaky.fail_next(3, 503);
    assert_eq!(retry.get().await, 503, "retries are spent");
    assert_eq!(retry.requests(), 4 + 3, "no more than attempts + 1");
    retry.flaky.fail_next(1, 500);
    assert_eq!(retry.get().await, 500, "500 is not listed");
    assert_eq!(retry.requests(), 7 + 1, "an unlisted code is not retried");
}

/// Feature HTTPRouteRetryBackendTimeout: an attempt that outlives
/// `timeouts.backendRequest` is abandoned and retried, so the client gets the retry's
/// answer well before the stalled attempt would have answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_backend_timeout() {
    let rules = "  - backendRefs: [{name: flaky, port: 8080}]
    timeouts: {request: 20s, backendRequest: 300ms}
    retry: {attempts: 2, backoff: 10ms}
";
    let retry = RetryCase::start(false, rules).await;
    retry.flaky.stall.store(1, Relaxed);
    let started = Instant::now();
    assert_eq!(retry.get().await, 200, "the stalled attempt is retried");
    assert!(
        started.elapsed() < STALL,
        "answered by the retry, not the stalled attempt: {:?}",
        started.elapsed()
    );
    assert_eq!(retry.requests(), 2, "the stalled attempt and its retry");
    retry.flaky.stall.store(3, Relaxed);
    assert_eq!(retry.get().await, 504, "every attempt timed out");
    assert_eq!(retry.requests(), 2 + 3);
}

/// Feature HTTPRouteRetryConnectionError: an attempt whose connection is refused is
/// retried on another endpoint, so no client sees the refusing endpoint; without `retry`
/// the same endpoint's refusal reaches the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_on_connection_error() {
    let rules = "  - matches: [{path: {type: PathPrefix, value: /no-retry}}]
    backendRefs: [{name: flaky, port: 8080}]
  - backendRefs: [{name: flaky, port: 8080}]
    retry: {attempts: 1, backoff: 10ms}
";
    let retry = RetryCase::start(true, rules).await;
    let mut client = retry.case.fixture.h1(80).await;
    // Without retry: requests until the refusing endpoint is chosen once (it is not
    // ejected by one failure, so it stays in the rotation below).
    let mut refused = false;
    for _ in 0..40 {
        let answer = send(&mut client, request("GET", "/no-retry", &[])).await;
        if answer.status != 200 {
            assert_eq!(answer.status, 502, "{answer:?}");
            refused = true;
            break;
        }
    }
    assert!(refused, "the refusing endpoint was never chosen");
    let before = retry.requests();
    for attempt in 0..16 {
        assert_eq!(retry.get().await, 200, "request {attempt}");
    }
    assert_eq!(retry.requests(), before + 16, "each served by flaky-0");
}
