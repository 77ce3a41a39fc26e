//! `weft x echo`: the built-in test workload. On each port it answers HTTP/1.1 and HTTP/2
//! (cleartext, prior knowledge) with a JSON description of the request it saw (its pod
//! name, the caller's source address, method, path, headers), and echoes any other bytes
//! back (raw TCP). The first bytes decide: an HTTP method or the HTTP/2 preface means HTTP.

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
}

/// Serves until killed.
pub fn run(args: EchoArgs) -> anyhow::Result<ExitCode> {
    let pod: Arc<str> = args
        .name
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "echo".to_owned())
        .into();
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
            tracing::info!(%addr, pod = %pod, "echo listening");
            servers.spawn(serve(listener, pod.clone()));
        }
        while let Some(done) = servers.join_next().await {
            done.context("echo server task")?.context("accept")?;
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// Accepts connections forever, answering each as described in the module doc.
///
/// # Errors
/// Accepting fails (e.g. out of file descriptors).
pub async fn serve(listener: TcpListener, pod: Arc<str>) -> io::Result<()> {
    loop {
        let (stream, peer) = listener.accept().await?;
        let pod = pod.clone();
        tokio::spawn(async move {
            if let Err(e) = handle(stream, peer, pod).await {
                tracing::debug!(%peer, error = %e, "echo connection ended with an error");
            }
        });
    }
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

async fn handle(mut stream: TcpStream, peer: SocketAddr, pod: Arc<str>) -> io::Result<()> {
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
        serve_http(stream, Arc::new(Seen { pod, peer, local })).await
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
    pod: Arc<str>,
    peer: SocketAddr,
    local: SocketAddr,
}

async fn serve_http(stream: Prefixed, seen: Arc<Seen>) -> io::Result<()> {
    let service = hyper::service::service_fn(move |req| {
        let seen = seen.clone();
        async move { Ok::<_, std::convert::Infallible>(describe(req, &seen).await) }
    });
    hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(stream), service)
        .await
        .map_err(io::Error::other)
}

/// Largest request body read (to count its bytes); larger bodies get 413.
const MAX_BODY: usize = 1 << 20;

async fn describe(req: Request<Incoming>, seen: &Seen) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let mut headers = serde_json::Map::new();
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        match headers.get_mut(name.as_str()) {
            Some(serde_json::Value::String(existing)) => {
                existing.push_str(", ");
                existing.push_str(&value);
            }
            _ => {
                headers.insert(name.as_str().to_owned(), value.into());
            }
        }
    }
    let (status, body_bytes) = match Limited::new(body, MAX_BODY).collect().await {
        Ok(body) => (StatusCode::OK, body.to_bytes().len()),
        Err(_) => (StatusCode::PAYLOAD_TOO_LARGE, 0),
    };
    let report = serde_json::json!({
        "pod": &*seen.pod,
        "source": seen.peer.to_string(),
        "destination": seen.local.to_string(),
        "protocol": format!("{:?}", parts.version),
        "method": parts.method.as_str(),
        "path": parts.uri.path_and_query().map_or("/", |p| p.as_str()),
        "headers": headers,
        "body_bytes": body_bytes,
    });
    let mut response = Response::new(Full::new(Bytes::from(format!("{report}\n"))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
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

    async fn start(pod: &str) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, pod.into()));
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
        assert_eq!(seen["source"], me.to_string());
        assert_eq!(seen["destination"], addr.to_string());
        assert_eq!(seen["protocol"], "HTTP/1.1");
        assert_eq!(seen["method"], "POST");
        assert_eq!(seen["path"], "/hello?x=1");
        assert_eq!(seen["headers"]["x-test"], "a, b");
        assert_eq!(seen["body_bytes"], 3);
    }

    #[tokio::test]
    async fn h2c_prior_knowledge_is_answered_over_http2() {
        let addr = start("pod-b").await;
        let stream = TcpStream::connect(addr).await.unwrap();
        let me = stream.local_addr().unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .expect("h2 handshake");
        tokio::spawn(conn);
        let req = Request::get(format!("http://{addr}/grpc.Service/Method"))
            .header("x-caller", "me")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = sender.send_request(req).await.expect("h2 response");
        assert_eq!(resp.version(), http::Version::HTTP_2);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let seen: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(seen["pod"], "pod-b");
        assert_eq!(seen["protocol"], "HTTP/2.0");
        assert_eq!(seen["source"], me.to_string());
        assert_eq!(seen["path"], "/grpc.Service/Method");
        assert_eq!(seen["headers"]["x-caller"], "me");
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
