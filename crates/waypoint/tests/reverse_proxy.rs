//! `weft_waypoint::reverse_proxy` (the engine of `weft x l7-proxy`) in front of a real
//! HTTP/1.1 echo upstream on loopback: an HTTP/1.1 request and an h2c request both come
//! back with the upstream's answer, which saw the proxy's request id.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};

/// An HTTP/1.1 upstream answering `<method> <path> host=<host> id=<has x-request-id>`.
async fn echo_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    |request: Request<hyper::body::Incoming>| async move {
                        let host = request
                            .headers()
                            .get("host")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("-")
                            .to_owned();
                        let text = format!(
                            "{} {} host={host} id={}",
                            request.method(),
                            request.uri(),
                            request.headers().contains_key("x-request-id")
                        );
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(text))))
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

async fn proxy(upstream: SocketAddr) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(weft_waypoint::reverse_proxy::serve(listener, upstream));
    addr
}

fn get(uri: &str, host: &str) -> Request<Full<Bytes>> {
    Request::builder()
        .uri(uri)
        .header("host", host)
        .body(Full::new(Bytes::new()))
        .unwrap()
}

#[tokio::test]
async fn http1_and_h2c_requests_get_the_upstreams_answer() {
    let proxy = proxy(echo_upstream().await).await;

    let stream = TcpStream::connect(proxy).await.unwrap();
    let (mut h1, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    for path in ["/one", "/two?x=1"] {
        let response = h1.send_request(get(path, "svc.test")).await.unwrap();
        assert_eq!(response.status(), 200);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, format!("GET {path} host=svc.test id=true"));
    }

    let stream = TcpStream::connect(proxy).await.unwrap();
    let (mut h2, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let request = Request::builder()
        .uri("http://svc.test/h2")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = h2.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), http::Version::HTTP_2);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "GET /h2 host=svc.test id=true");
}
