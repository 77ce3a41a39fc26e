//! HTTP through the waypoint or gateway: each tunnel or client connection ([`conn`]) is
//! served by hyper (HTTP/1.1 with upgrades, or HTTP/2), every request goes through the one
//! [`pipeline`] (authorization, routing, filters,
//! backend choice, forwarding with timeouts and retries, telemetry), and upstream
//! connections are pooled per endpoint ([`client`]).

mod authz;
pub(crate) mod body;
pub(crate) mod client;
pub(crate) mod conn;
mod forward;
pub(crate) mod headers;
pub(crate) mod local;
mod pipeline;

use std::convert::Infallible;
use std::pin::pin;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

use crate::Waypoint;
use conn::Conn;

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

/// Serves the HTTP requests of one connection until the client closes it; once `drain` is
/// cancelled, the connection finishes the requests in flight and closes (HTTP/1.1: after
/// the current response; HTTP/2: GOAWAY).
pub(crate) async fn serve<IO>(
    waypoint: Waypoint,
    conn: Conn,
    io: IO,
    h2: bool,
    drain: Option<CancellationToken>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request| {
        let (waypoint, conn) = (waypoint.clone(), conn.clone());
        async move {
            let response = pipeline::handle(waypoint, conn, h2, request).await;
            Ok::<_, Infallible>(response)
        }
    });
    let io = TokioIo::new(io);
    let drained = async move {
        match drain {
            Some(token) => token.cancelled_owned().await,
            None => std::future::pending().await,
        }
    };
    let mut drained = pin!(drained);
    // One select per protocol (not a generic helper): the connection futures stay concrete,
    // which the Send check of the upstream client's borrowed futures needs.
    let result = if h2 {
        let connection = http2::Builder::new(TokioExecutor::new()).serve_connection(io, service);
        let mut connection = pin!(connection);
        tokio::select! {
            result = connection.as_mut() => result,
            () = drained.as_mut() => {
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        }
    } else {
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .serve_connection(io, service)
            .with_upgrades();
        let mut connection = pin!(connection);
        tokio::select! {
            result = connection.as_mut() => result,
            () = drained.as_mut() => {
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, "HTTP connection ended with an error");
    }
}
