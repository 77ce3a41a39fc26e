//! The waypoint's HTTP engine as a plain reverse proxy (`weft x l7-proxy`, the `weft-l7`
//! row of `bench/l7`): hyper serves each downstream connection (HTTP/1.1, or h2c when it
//! opens with the HTTP/2 preface), every request gets the waypoint's request-id and
//! forwarding headers and goes to one upstream address over the waypoint's pooled HTTP/1.1
//! client, bodies streaming both ways. No HBONE, policy, routing, retries, metrics or
//! access log: the job Envoy does in that bench row.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{HeaderValue, Request, Response, StatusCode, Uri, Version, header};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use weft_upstream::UpstreamConnection;

use crate::detect::H2_PREFACE;
use crate::http::client::{self, ClientPool, Sender};
use crate::http::{Body, BoxError, boxed, full, headers};

/// Runs `workers` threads, each with a current-thread tokio runtime accepting from
/// `listener` with its own upstream pool, until one fails.
///
/// # Errors
/// The listener could not be shared with a worker, or accepting failed.
pub fn run(
    listener: std::net::TcpListener,
    upstream: SocketAddr,
    workers: usize,
) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let mut threads = Vec::new();
    for worker in 0..workers.max(1) {
        let listener = listener.try_clone()?;
        let thread = std::thread::Builder::new()
            .name(format!("l7-proxy-{worker}"))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                runtime.block_on(
                    async move { serve(TcpListener::from_std(listener)?, upstream).await },
                )
            })?;
        threads.push(thread);
    }
    for thread in threads {
        thread
            .join()
            .map_err(|_| io::Error::other("an l7-proxy worker panicked"))??;
    }
    Ok(())
}

/// Accepts on `listener` and proxies every connection's requests to `upstream`, on the
/// current runtime, until accepting fails.
///
/// # Errors
/// Accepting failed.
pub async fn serve(listener: TcpListener, upstream: SocketAddr) -> io::Result<()> {
    let pool = Arc::new(ClientPool::default());
    loop {
        let (stream, _) = listener.accept().await?;
        let pool = Arc::clone(&pool);
        tokio::spawn(connection(stream, upstream, pool));
    }
}

/// Serves one downstream connection.
async fn connection(stream: TcpStream, upstream: SocketAddr, pool: Arc<ClientPool>) {
    let _ = stream.set_nodelay(true);
    let Ok(h2) = is_h2(&stream).await else {
        return;
    };
    let service = service_fn(move |request| {
        let pool = Arc::clone(&pool);
        async move { Ok::<_, Infallible>(proxy(&pool, upstream, request).await) }
    });
    let io = TokioIo::new(stream);
    let result = if h2 {
        http2::Builder::new(TokioExecutor::new())
            .max_header_list_size(crate::http::MAX_HEADER_LIST_BYTES)
            .serve_connection(io, service)
            .await
    } else {
        http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(crate::http::HEADER_READ_TIMEOUT)
            .serve_connection(io, service)
            .await
    };
    if let Err(error) = result {
        tracing::debug!(%error, "l7-proxy connection ended with an error");
    }
}

/// Whether the connection opens with the HTTP/2 preface (decided on its first bytes).
async fn is_h2(stream: &TcpStream) -> io::Result<bool> {
    let mut buf = [0u8; 24];
    loop {
        let n = stream.peek(&mut buf).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if buf[..n] != H2_PREFACE[..n] {
            return Ok(false);
        }
        if n >= 4 {
            return Ok(true);
        }
        tokio::task::yield_now().await;
    }
}

/// Sends one request upstream as HTTP/1.1 and returns the answer (502 when none came).
async fn proxy(
    pool: &Arc<ClientPool>,
    upstream: SocketAddr,
    request: Request<Incoming>,
) -> Response<Body> {
    let (mut parts, body) = request.into_parts();
    if parts.version == Version::HTTP_2
        && !parts.headers.contains_key(header::HOST)
        && let Some(authority) = parts.uri.authority()
        && let Ok(host) = HeaderValue::from_str(authority.as_str())
    {
        parts.headers.insert(header::HOST, host);
    }
    headers::strip_hop_by_hop(&mut parts.headers);
    headers::prepare(&mut parts.headers, "http", false);
    parts.uri = parts
        .uri
        .path_and_query()
        .map_or_else(|| Uri::from_static("/"), |p| Uri::from(p.clone()));
    parts.version = Version::HTTP_11;
    let request = Request::from_parts(parts, boxed(body));
    match send(pool, upstream, request).await {
        Ok(response) => {
            let (mut parts, body) = response.into_parts();
            headers::strip_hop_by_hop(&mut parts.headers);
            Response::from_parts(parts, boxed(body))
        }
        Err(error) => {
            tracing::debug!(%error, "l7-proxy upstream request failed");
            let mut response = Response::new(full("upstream connect error or reset\n"));
            *response.status_mut() = StatusCode::BAD_GATEWAY;
            response
        }
    }
}

/// Sends on a pooled HTTP/1.1 connection, or a new one when none is idle or the pooled one
/// turned out closed before the request left; the connection is pooled again at the
/// response head and handed out once that response has been read.
async fn send(
    pool: &Arc<ClientPool>,
    upstream: SocketAddr,
    request: Request<Body>,
) -> Result<Response<Incoming>, BoxError> {
    let request = match pool.checkout(client::PoolKey::new(upstream, None), false) {
        Some(mut sender) => match sender.try_send(request).await {
            Ok(response) => {
                recycle(pool, upstream, sender);
                return Ok(response);
            }
            Err((error, None)) => return Err(error.into()),
            Err((_, Some(unsent))) => unsent,
        },
        None => request,
    };
    let stream = TcpStream::connect(upstream).await?;
    let mut sender = client::handshake(UpstreamConnection::Tcp(stream), false, false, None).await?;
    let response = sender.try_send(request).await.map_err(|(error, _)| error)?;
    recycle(pool, upstream, sender);
    Ok(response)
}

/// Pools an HTTP/1.1 connection as soon as its response head arrived (the pool hands it
/// out again once the response has been read).
fn recycle(pool: &ClientPool, upstream: SocketAddr, sender: Sender) {
    if let Sender::H1(sender) = sender {
        pool.put_h1(client::PoolKey::new(upstream, None), sender);
    }
}
