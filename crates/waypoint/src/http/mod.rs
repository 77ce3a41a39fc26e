//! HTTP through the waypoint: each tunnel is served by hyper (HTTP/1.1 with upgrades, or
//! h2c), every request goes through the [`pipeline`] (authorization, routing, filters,
//! backend choice, forwarding with timeouts and retries, telemetry), and upstream
//! connections are pooled per endpoint ([`client`]).

mod authz;
pub(crate) mod body;
pub(crate) mod client;
mod forward;
pub(crate) mod headers;
mod local;
mod pipeline;

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::Waypoint;
use crate::tunnel::Tunnel;

/// How long an HTTP/1.1 client may take to send a request head (the first or the next
/// one on a kept-alive connection) before the connection is closed.
pub(crate) const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Errors carried in bodies.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type of every request and response the waypoint handles.
pub(crate) type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// Boxes any body.
pub(crate) fn boxed<B>(body: B) -> Body
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

/// An empty body.
pub(crate) fn empty() -> Body {
    boxed(http_body_util::Empty::<Bytes>::new())
}

/// A body of `text`.
pub(crate) fn full(text: impl Into<Bytes>) -> Body {
    boxed(http_body_util::Full::new(text.into()))
}

/// Serves the HTTP requests of one tunnel until the client closes it.
pub(crate) async fn serve<IO>(waypoint: Waypoint, tunnel: Arc<Tunnel>, io: IO, h2: bool)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request| {
        let (waypoint, tunnel) = (waypoint.clone(), Arc::clone(&tunnel));
        async move {
            let response = pipeline::handle(waypoint, tunnel, h2, request).await;
            Ok::<_, Infallible>(response)
        }
    });
    let io = TokioIo::new(io);
    let result = if h2 {
        http2::Builder::new(TokioExecutor::new())
            .serve_connection(io, service)
            .await
    } else {
        http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .serve_connection(io, service)
            .with_upgrades()
            .await
    };
    if let Err(error) = result {
        tracing::debug!(%error, "HTTP connection in a tunnel ended with an error");
    }
}
