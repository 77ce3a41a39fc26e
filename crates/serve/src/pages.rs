//! Admin, metrics and readiness pages: one tiny router over hyper, so the control plane
//! (15014) and the node proxy (15000 admin, 15020 metrics, 15021 readiness) answer the same
//! way. What a page says is the caller's business (a closure per route).

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use tokio::net::{TcpListener, TcpStream};

/// A page's answer.
#[derive(Debug, Clone)]
pub struct Page {
    /// HTTP status.
    pub status: StatusCode,
    /// `Content-Type` header.
    pub content_type: &'static str,
    /// Body.
    pub body: Bytes,
}

impl Page {
    /// 200 with a plain-text body.
    pub fn text(body: impl Into<String>) -> Self {
        Self::with_status(StatusCode::OK, body)
    }

    /// A plain-text body with the given status.
    pub fn with_status(status: StatusCode, body: impl Into<String>) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            body: Bytes::from(body.into()),
        }
    }

    /// 200 with pretty-printed JSON.
    pub fn json(value: &impl serde::Serialize) -> Self {
        match serde_json::to_vec_pretty(value) {
            Ok(body) => Self {
                status: StatusCode::OK,
                content_type: "application/json",
                body: Bytes::from(body),
            },
            Err(err) => Self::with_status(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot render JSON: {err}\n"),
            ),
        }
    }

    /// The Prometheus text exposition of `registry`.
    pub fn metrics(registry: &Mutex<Registry>) -> Self {
        let mut text = String::new();
        let encoded = {
            let registry = registry
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            prometheus_client::encoding::text::encode(&mut text, &registry)
        };
        match encoded {
            Ok(()) => Self {
                status: StatusCode::OK,
                content_type: "application/openmetrics-text; version=1.0.0; charset=utf-8",
                body: Bytes::from(text),
            },
            Err(err) => Self::with_status(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot encode metrics: {err}\n"),
            ),
        }
    }
}

/// What a handler sees of a request.
#[derive(Debug, Clone)]
pub struct AdminRequest {
    /// HTTP method.
    pub method: Method,
    /// Query parameters, last value wins.
    pub query: BTreeMap<String, String>,
    /// Request body (bounded; see [`MAX_BODY`]).
    pub body: Bytes,
}

/// Largest request body an admin endpoint reads.
pub const MAX_BODY: usize = 64 * 1024;

type BoxFuture = Pin<Box<dyn Future<Output = Page> + Send>>;
type Handler = Arc<dyn Fn(AdminRequest) -> BoxFuture + Send + Sync>;

/// Routes by exact path.
#[derive(Clone, Default)]
pub struct Router {
    routes: BTreeMap<String, Handler>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("paths", &self.routes.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Router {
    /// An empty router (every path answers 404 with the list of known paths).
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a synchronous page.
    #[must_use]
    pub fn page<F>(self, path: &str, page: F) -> Self
    where
        F: Fn(AdminRequest) -> Page + Send + Sync + 'static,
    {
        let page = Arc::new(page);
        self.route(path, move |req| {
            let page = Arc::clone(&page);
            async move { page(req) }
        })
    }

    /// Adds an asynchronous page.
    #[must_use]
    pub fn route<F, Fut>(mut self, path: &str, handler: F) -> Self
    where
        F: Fn(AdminRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Page> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |req| Box::pin(handler(req)));
        self.routes.insert(path.to_owned(), handler);
        self
    }

    async fn dispatch(&self, request: Request<Incoming>) -> Page {
        let path = request.uri().path().to_owned();
        let Some(handler) = self.routes.get(&path).cloned() else {
            let known: Vec<&str> = self.routes.keys().map(String::as_str).collect();
            return Page::with_status(
                StatusCode::NOT_FOUND,
                format!("no page {path}; known pages: {}\n", known.join(" ")),
            );
        };
        let method = request.method().clone();
        let query = parse_query(request.uri().query().unwrap_or(""));
        let body = match Limited::new(request.into_body(), MAX_BODY).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(err) => {
                return Page::with_status(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("cannot read request body: {err}\n"),
                );
            }
        };
        handler(AdminRequest {
            method,
            query,
            body,
        })
        .await
    }
}

fn parse_query(query: &str) -> BTreeMap<String, String> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (key.to_owned(), value.to_owned())
        })
        .collect()
}

/// Serves `router` on `listener` until the task is dropped (aborted), which closes its open
/// connections too: a process replaced by a successor stops answering on kept-alive
/// connections (a scraper's) as well. Each connection runs on its own task; HTTP/1.1 and
/// HTTP/2 are both accepted.
pub async fn serve(listener: TcpListener, router: Router) {
    let router = Arc::new(router);
    let forever = std::future::pending();
    let mut connections = tokio::task::JoinSet::new();
    crate::accept_until(&listener, forever, "admin pages", |stream, peer| {
        while connections.try_join_next().is_some() {}
        connections.spawn(serve_connection(stream, peer, Arc::clone(&router)));
    })
    .await;
}

async fn serve_connection(stream: TcpStream, peer: SocketAddr, router: Arc<Router>) {
    let service = hyper::service::service_fn(move |request| {
        let router = Arc::clone(&router);
        async move {
            let page = router.dispatch(request).await;
            Response::builder()
                .status(page.status)
                .header(header::CONTENT_TYPE, page.content_type)
                .body(Full::new(page.body))
        }
    });
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    if let Err(err) = builder
        .serve_connection(TokioIo::new(stream), service)
        .await
    {
        tracing::debug!(%peer, %err, "admin connection ended with an error");
    }
}

/// Fetches `http://{addr}{path}` with HTTP/1.1 and returns status and body. For CLI
/// commands (`weft status`) and tests that read admin pages.
///
/// # Errors
/// Connection or protocol errors, as a readable string.
pub async fn get(addr: &str, path: &str) -> Result<(StatusCode, Bytes), String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|err| format!("cannot connect to {addr}: {err}"))?;
    get_on(stream, addr, path).await
}

/// [`get`] over a connection the caller opened (e.g. from another network namespace);
/// `addr` is the `Host` header and names the peer in errors.
///
/// # Errors
/// Protocol errors, as a readable string.
pub async fn get_on(
    stream: TcpStream,
    addr: &str,
    path: &str,
) -> Result<(StatusCode, Bytes), String> {
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|err| format!("HTTP handshake with {addr} failed: {err}"))?;
    tokio::spawn(connection);
    let request = Request::get(path)
        .header(header::HOST, addr)
        .body(Full::new(Bytes::new()))
        .map_err(|err| format!("bad request path {path}: {err}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|err| format!("GET {path} on {addr} failed: {err}"))?;
    let status = response.status();
    let body = Limited::new(response.into_body(), MAX_GET_BODY)
        .collect()
        .await
        .map_err(|err| format!("reading {path} from {addr} failed: {err}"))?
        .to_bytes();
    Ok((status, body))
}

/// The most [`get`] and [`get_on`] read of a page: a peer cannot make the caller buffer
/// more (a metrics page or a config dump of a large mesh is well under this).
pub const MAX_GET_BODY: usize = 64 * 1024 * 1024;

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;

    async fn start(router: Router) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(serve(listener, router));
        addr
    }

    #[tokio::test]
    async fn routes_pages_and_reports_unknown_paths() {
        let registry = Arc::new(Mutex::new(Registry::default()));
        let counter = Counter::<u64>::default();
        registry
            .lock()
            .unwrap()
            .register("demo_events", "Demo events", counter.clone());
        counter.inc_by(3);
        let metrics_registry = Arc::clone(&registry);
        let router = Router::new()
            .page("/ready", |_| Page::text("ready\n"))
            .page("/metrics", move |_| Page::metrics(&metrics_registry))
            .page("/echo", |req| {
                Page::text(format!("{:?}", req.query.get("level")))
            });
        let addr = start(router).await;

        let (status, body) = get(&addr, "/ready").await.unwrap();
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "ready\n");

        let (_, body) = get(&addr, "/metrics").await.unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(text.contains("demo_events_total 3"), "{text}");

        let (_, body) = get(&addr, "/echo?level=debug").await.unwrap();
        assert_eq!(body, "Some(\"debug\")");

        let (status, body) = get(&addr, "/nope").await.unwrap();
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(String::from_utf8_lossy(&body).contains("/ready"));
    }

    #[tokio::test]
    async fn a_page_over_the_limit_is_an_error_not_a_buffer() {
        let router = Router::new()
            .page("/huge", |_| Page::text("x".repeat(MAX_GET_BODY + 1)))
            .page("/fits", |_| Page::text("x".repeat(MAX_GET_BODY)));
        let addr = start(router).await;
        let err = get(&addr, "/huge").await.unwrap_err();
        assert!(err.contains("/huge"), "{err}");
        let (_, body) = get(&addr, "/fits").await.unwrap();
        assert_eq!(body.len(), MAX_GET_BODY);
    }

    /// Aborting the serving task (a replaced process stopping its pages) closes the
    /// kept-alive connections too, not only the listener.
    #[tokio::test]
    async fn stopping_the_pages_closes_kept_alive_connections() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let serving = tokio::spawn(serve(
            listener,
            Router::new().page("/ready", |_| Page::text("ok")),
        ));
        let mut client = TcpStream::connect(addr).await.unwrap();
        client
            .write_all(b"GET /ready HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut answer = vec![0u8; 1024];
        let read = client.read(&mut answer).await.unwrap();
        assert!(answer[..read].starts_with(b"HTTP/1.1 200"));
        serving.abort();
        let _ = serving.await;
        let closed =
            tokio::time::timeout(std::time::Duration::from_secs(10), client.read(&mut answer))
                .await
                .expect("the connection is closed, not left open");
        assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
    }

    #[tokio::test]
    async fn unreachable_admin_port_is_a_readable_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let err = get(&addr, "/ready").await.unwrap_err();
        assert!(err.contains(&addr), "{err}");
    }
}
