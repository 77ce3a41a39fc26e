//! `weft x echo`: the built-in test workload. On each port it answers HTTP/1.1 and HTTP/2
//! (cleartext, prior knowledge) with a JSON description of the request it saw, gRPC calls of
//! the conformance suite's echo service ([`grpc`]), WebSocket upgrades by echoing messages
//! ([`ws`]), and echoes any other bytes back (raw TCP). The first bytes decide: an HTTP
//! method or the HTTP/2 preface means HTTP.
//!
//! The JSON has the fields of the Gateway API conformance suite's echo server, so route
//! tests can compare answers the way that suite does: `path` (the request target, query
//! included), `host`, `method`, `proto` (`HTTP/1.1`, `HTTP/2.0`), `headers` (canonical
//! name -> list of values, without `Host`), `namespace` and `pod`. weft adds `source` and
//! `destination` (the TCP addresses) and `body_bytes`. Two request controls of that suite
//! are honoured: an `X-Echo-Set-Header: Name:value,Name2:value2` header sets those headers
//! on the response, and a `delay=<duration>` query parameter (`500ms`, `1s`, ...) answers
//! after that long.

mod grpc;
mod ws;

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Request, Response, StatusCode, body::Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// Arguments of `weft x echo`.
#[derive(Debug, clap::Args)]
pub struct EchoArgs {
    /// Port to serve on (repeat for several ports).
    #[arg(long = "port", default_values_t = [8080])]
    ports: Vec<u16>,
    /// Address to bind.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::UNSPECIFIED))]
    bind: IpAddr,
    /// Pod name to report (default: $POD_NAME, then $HOSTNAME, then "echo").
    #[arg(long, env = "POD_NAME")]
    name: Option<String>,
    /// Namespace to report (default: $NAMESPACE, then $POD_NAMESPACE, then empty).
    #[arg(long, env = "NAMESPACE")]
    namespace: Option<String>,
}

/// Who this echo server is, reported in every answer.
#[derive(Debug)]
pub struct EchoIdentity {
    /// Pod name.
    pub pod: String,
    /// Namespace.
    pub namespace: String,
}

/// Serves until killed.
pub fn run(args: EchoArgs) -> anyhow::Result<ExitCode> {
    let me = Arc::new(EchoIdentity {
        pod: args
            .name
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "echo".to_owned()),
        namespace: args
            .namespace
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .unwrap_or_default(),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("start the async runtime")?;
    runtime.block_on(async move {
        let mut servers = tokio::task::JoinSet::new();
        for port in args.ports {
            let addr = SocketAddr::new(args.bind, port);
            let listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("listen on {addr}"))?;
            tracing::info!(%addr, pod = %me.pod, "echo listening");
            servers.spawn(serve(listener, me.clone()));
        }
        while let Some(done) = servers.join_next().await {
            done.context("echo server task")?;
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// Accepts connections forever, answering each as described in the module doc.
pub async fn serve(listener: TcpListener, me: Arc<EchoIdentity>) {
    let forever = std::future::pending();
    weft_serve::accept_until(&listener, forever, "echo", |stream, peer| {
        let me = me.clone();
        tokio::spawn(async move {
            if let Err(e) = handle(stream, peer, me).await {
                tracing::debug!(%peer, error = %e, "echo connection ended with an error");
            }
        });
    })
    .await;
}

/// What the first bytes of a connection say about its protocol.
#[derive(Debug, PartialEq, Eq)]
enum Sniff {
    Http,
    Raw,
    NeedMore,
}

/// Request-line starts (with their space) and the start of the HTTP/2 preface.
const HTTP_STARTS: [&[u8]; 10] = [
    b"GET ",
    b"HEAD ",
    b"POST ",
    b"PUT ",
    b"DELETE ",
    b"CONNECT ",
    b"OPTIONS ",
    b"TRACE ",
    b"PATCH ",
    b"PRI ",
];

fn sniff(head: &[u8]) -> Sniff {
    if HTTP_STARTS.iter().any(|start| head.starts_with(start)) {
        Sniff::Http
    } else if HTTP_STARTS.iter().any(|start| start.starts_with(head)) {
        Sniff::NeedMore
    } else {
        Sniff::Raw
    }
}

/// How long a connection may hesitate inside a possible method name before it is echoed.
const SNIFF_PATIENCE: Duration = Duration::from_secs(1);

async fn handle(mut stream: TcpStream, peer: SocketAddr, me: Arc<EchoIdentity>) -> io::Result<()> {
    let local = stream.local_addr()?;
    let mut head = Vec::with_capacity(16);
    let mut buf = [0u8; 16];
    let verdict = loop {
        match tokio::time::timeout(SNIFF_PATIENCE, stream.read(&mut buf)).await {
            Ok(Ok(0)) => return stream.write_all(&head).await,
            Ok(Ok(n)) => head.extend_from_slice(&buf[..n]),
            Ok(Err(e)) => return Err(e),
            Err(_) => break Sniff::Raw,
        }
        match sniff(&head) {
            Sniff::NeedMore => {}
            verdict => break verdict,
        }
    };
    let stream = Prefixed {
        head,
        pos: 0,
        inner: stream,
    };
    if verdict == Sniff::Http {
        serve_http(stream, Arc::new(Seen { me, peer, local })).await
    } else {
        echo(stream).await
    }
}

async fn echo(mut stream: Prefixed) -> io::Result<()> {
    let (mut reader, mut writer) = tokio::io::split(&mut stream);
    tokio::io::copy(&mut reader, &mut writer).await?;
    writer.shutdown().await
}

/// Connection facts reported in every answer.
struct Seen {
    me: Arc<EchoIdentity>,
    peer: SocketAddr,
    local: SocketAddr,
}

async fn serve_http(stream: Prefixed, seen: Arc<Seen>) -> io::Result<()> {
    let grpc = grpc::server(&seen.me);
    let service = hyper::service::service_fn(move |req| {
        let (seen, grpc) = (seen.clone(), grpc.clone());
        async move { Ok::<_, std::convert::Infallible>(answer(req, &seen, grpc).await) }
    });
    hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
        .serve_connection_with_upgrades(TokioIo::new(stream), service)
        .await
        .map_err(io::Error::other)
}

/// One request: a gRPC call, a WebSocket upgrade, or an HTTP request to describe.
async fn answer(
    req: Request<Incoming>,
    seen: &Seen,
    grpc: grpc::Server,
) -> Response<tonic::body::Body> {
    if grpc::is_grpc(&req) {
        grpc::call(grpc, req).await
    } else if ws::is_upgrade(&req) {
        ws::accept(req)
    } else {
        describe(req, seen).await.map(tonic::body::Body::new)
    }
}

/// Largest request body read (to count its bytes); larger bodies get 413.
const MAX_BODY: usize = 1 << 20;

async fn describe(req: Request<Incoming>, seen: &Seen) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let (status, body_bytes) = match Limited::new(body, MAX_BODY).collect().await {
        Ok(body) => (StatusCode::OK, body.to_bytes().len()),
        Err(_) => (StatusCode::PAYLOAD_TOO_LARGE, 0),
    };
    let query = parts.uri.query().unwrap_or_default();
    if let Some(delay) = requested_delay(query) {
        tokio::time::sleep(delay).await;
    }
    let host = parts.uri.authority().map_or_else(
        || header_text(parts.headers.get(http::header::HOST)),
        |authority| authority.as_str().to_owned(),
    );
    let report = serde_json::json!({
        "path": parts.uri.path_and_query().map_or("/", |p| p.as_str()),
        "host": host,
        "method": parts.method.as_str(),
        "proto": format!("{:?}", parts.version),
        "headers": header_lists(&parts.headers),
        "namespace": &seen.me.namespace,
        "pod": &seen.me.pod,
        "source": seen.peer.to_string(),
        "destination": seen.local.to_string(),
        "body_bytes": body_bytes,
    });
    let mut response = Response::new(Full::new(Bytes::from(format!("{report}\n"))));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    for value in parts.headers.get_all(SET_HEADER) {
        set_requested_headers(headers, &header_text(Some(value)));
    }
    response
}

/// Request header whose `Name:value,Name2:value2` pairs are set on the response.
const SET_HEADER: &str = "x-echo-set-header";
/// Longest `delay` honoured (a typo must not park a connection for hours).
const MAX_DELAY: Duration = Duration::from_secs(60);

fn header_text(value: Option<&http::HeaderValue>) -> String {
    value.map_or_else(String::new, |v| {
        String::from_utf8_lossy(v.as_bytes()).into_owned()
    })
}

/// Request headers as canonical name (`X-Request-Id`) -> values in arrival order, without
/// `Host` (reported as `host`), as the conformance echo server reports them.
fn header_lists(headers: &http::HeaderMap) -> serde_json::Map<String, serde_json::Value> {
    let mut lists = serde_json::Map::new();
    for (name, value) in headers {
        if name == http::header::HOST {
            continue;
        }
        let list = lists
            .entry(canonical_header_name(name.as_str()))
            .or_insert_with(|| serde_json::Value::Array(Vec::new()));
        if let serde_json::Value::Array(values) = list {
            values.push(header_text(Some(value)).into());
        }
    }
    lists
}

/// `x-request-id` -> `X-Request-Id`: each dash-separated word capitalised.
fn canonical_header_name(name: &str) -> String {
    let mut canonical = String::with_capacity(name.len());
    let mut upper = true;
    for c in name.chars() {
        canonical.push(if upper { c.to_ascii_uppercase() } else { c });
        upper = c == '-';
    }
    canonical
}

/// Sets each `Name:value` pair of `spec` (comma separated) on `headers`; malformed pairs
/// are skipped.
fn set_requested_headers(headers: &mut http::HeaderMap, spec: &str) {
    for pair in spec.split(',') {
        let Some((name, value)) = pair.split_once(':') else {
            continue;
        };
        let name = http::HeaderName::from_bytes(name.trim().as_bytes());
        let value = http::HeaderValue::from_str(value.trim());
        if let (Ok(name), Ok(value)) = (name, value) {
            headers.insert(name, value);
        }
    }
}

/// The `delay` query parameter as a duration (`250ms`, `1s`, `1.5s`, `2m`), at most
/// [`MAX_DELAY`]; `None` when absent or unreadable.
fn requested_delay(query: &str) -> Option<Duration> {
    let value = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("delay="))?;
    let split = value.find(|c: char| !c.is_ascii_digit() && c != '.')?;
    let (number, unit) = value.split_at(split);
    let number: f64 = number.parse().ok()?;
    let seconds = match unit {
        "ms" => number / 1000.0,
        "s" => number,
        "m" => number * 60.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(seconds)
        .ok()
        .map(|delay| delay.min(MAX_DELAY))
}

/// A stream whose first bytes (already read while sniffing) are replayed before the rest.
struct Prefixed {
    head: Vec<u8>,
    pos: usize,
    inner: TcpStream,
}

impl AsyncRead for Prefixed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.pos < this.head.len() {
            let n = buf.remaining().min(this.head.len() - this.pos);
            buf.put_slice(&this.head[this.pos..this.pos + n]);
            this.pos += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    pub(super) async fn start(pod: &str) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let me = EchoIdentity {
            pod: pod.to_owned(),
            namespace: "ns".to_owned(),
        };
        tokio::spawn(serve(listener, Arc::new(me)));
        addr
    }

    async fn read_http1_json(stream: &mut TcpStream) -> Value {
        let mut text = String::new();
        stream.read_to_string(&mut text).await.unwrap();
        let (head, body) = text.split_once("\r\n\r\n").expect("http response");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        serde_json::from_str(body).expect("json body")
    }

    #[test]
    fn sniffing_tells_http_from_raw_bytes() {
        assert_eq!(sniff(b"GET / HTTP/1.1"), Sniff::Http);
        assert_eq!(sniff(b"PRI * HTTP/2.0\r\n"), Sniff::Http);
        assert_eq!(sniff(b"OPTI"), Sniff::NeedMore);
        assert_eq!(sniff(b"GETX"), Sniff::Raw);
        assert_eq!(sniff(b"\x16\x03\x01"), Sniff::Raw);
    }

    #[tokio::test]
    async fn http1_answer_describes_the_request() {
        let addr = start("pod-a").await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let me = stream.local_addr().unwrap();
        // Split the request line to exercise sniffing across reads.
        stream.write_all(b"PO").await.unwrap();
        stream.flush().await.unwrap();
        let rest = "ST /hello?x=1 HTTP/1.1\r\nHost: svc\r\nX-Test: a\r\nX-Test: b\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc";
        stream.write_all(rest.as_bytes()).await.unwrap();
        let seen = read_http1_json(&mut stream).await;
        assert_eq!(seen["pod"], "pod-a");
        assert_eq!(seen["namespace"], "ns");
        assert_eq!(seen["source"], me.to_string());
        assert_eq!(seen["destination"], addr.to_string());
        assert_eq!(seen["proto"], "HTTP/1.1");
        assert_eq!(seen["method"], "POST");
        assert_eq!(seen["path"], "/hello?x=1");
        assert_eq!(seen["host"], "svc");
        assert_eq!(seen["headers"]["X-Test"], serde_json::json!(["a", "b"]));
        assert!(seen["headers"].get("Host").is_none(), "{seen}");
        assert_eq!(seen["body_bytes"], 3);
    }

    /// A GET over HTTP/2 with prior knowledge (header `x-caller: me`); the JSON answer, with
    /// `client` set to the client's address.
    pub(super) async fn h2_get(addr: SocketAddr, path: &str) -> Value {
        let stream = TcpStream::connect(addr).await.unwrap();
        let me = stream.local_addr().unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .expect("h2 handshake");
        tokio::spawn(conn);
        let req = Request::get(format!("http://{addr}{path}"))
            .header("x-caller", "me")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = sender.send_request(req).await.expect("h2 response");
        assert_eq!(resp.version(), http::Version::HTTP_2);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let mut seen: Value = serde_json::from_slice(&body).unwrap();
        seen["client"] = me.to_string().into();
        seen
    }

    #[tokio::test]
    async fn h2c_prior_knowledge_is_answered_over_http2() {
        let addr = start("pod-b").await;
        let seen = h2_get(addr, "/grpc.Service/Method").await;
        let me = &seen["client"];
        assert_eq!(seen["pod"], "pod-b");
        assert_eq!(seen["proto"], "HTTP/2.0");
        assert_eq!(&seen["source"], me);
        assert_eq!(seen["path"], "/grpc.Service/Method");
        assert_eq!(seen["host"], addr.to_string());
        assert_eq!(seen["headers"]["X-Caller"], serde_json::json!(["me"]));
    }

    #[tokio::test]
    async fn requested_response_headers_are_set_and_the_answer_is_delayed() {
        let addr = start("pod-d").await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request = "GET /slow?delay=50ms HTTP/1.1\r\nHost: svc\r\n\
                       X-Echo-Set-Header: X-Foo:one, X-Bar : two,broken\r\nConnection: close\r\n\r\n";
        let started = std::time::Instant::now();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).await.unwrap();
        assert!(
            started.elapsed() >= Duration::from_millis(50),
            "answered early"
        );
        let head = text
            .split_once("\r\n\r\n")
            .expect("http response")
            .0
            .to_lowercase();
        assert!(head.contains("\r\nx-foo: one\r\n"), "{head}");
        assert!(head.contains("\r\nx-bar: two\r\n"), "{head}");
    }

    #[test]
    fn delays_and_header_names_read_as_the_conformance_suite_writes_them() {
        assert_eq!(
            requested_delay("a=1&delay=1s"),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            requested_delay("delay=250ms"),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            requested_delay("delay=1.5s"),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(requested_delay("delay=10h"), None);
        assert_eq!(requested_delay("delay=999m"), Some(MAX_DELAY));
        assert_eq!(requested_delay("x=delay"), None);
        assert_eq!(canonical_header_name("x-request-id"), "X-Request-Id");
        assert_eq!(canonical_header_name("content-type"), "Content-Type");
    }

    #[tokio::test]
    async fn other_bytes_are_echoed() {
        let addr = start("pod-c").await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        for chunk in [&b"\x00hello raw"[..], b"second chunk"] {
            stream.write_all(chunk).await.unwrap();
            let mut back = vec![0u8; chunk.len()];
            stream.read_exact(&mut back).await.unwrap();
            assert_eq!(back, chunk);
        }
        stream.shutdown().await.unwrap();
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
    }
}
