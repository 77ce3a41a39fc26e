//! The WebSocket side of `weft x echo`: an HTTP/1.1 request that asks to upgrade to
//! `websocket` (RFC 6455 handshake: `GET`, `Upgrade: websocket`, `Sec-WebSocket-Key`,
//! version 13) is switched over, and every text or binary message it sends afterwards comes
//! back unchanged until it closes. Pings are answered by the WebSocket layer. A request that
//! names the upgrade but breaks the handshake gets `400` saying what is missing.

use bytes::Bytes;
use futures::{SinkExt as _, StreamExt as _};
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

/// Whether the request asks to upgrade to WebSocket (`Upgrade: websocket`, any case).
pub(super) fn is_upgrade(req: &Request<Incoming>) -> bool {
    req.headers()
        .get_all(header::UPGRADE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("websocket"))
}

/// Answers the handshake: `101` with the accept key, and a task that echoes the messages
/// once hyper hands over the connection; or `400` naming what the handshake lacks.
pub(super) fn accept(mut req: Request<Incoming>) -> Response<tonic::body::Body> {
    let key = match handshake_key(&req) {
        Ok(key) => key,
        Err(reason) => return refuse(reason),
    };
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let upgraded = match upgrade.await {
            Ok(upgraded) => upgraded,
            Err(e) => return tracing::debug!(error = %e, "websocket upgrade failed"),
        };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        if let Err(e) = echo_messages(ws).await {
            tracing::debug!(error = %e, "websocket echo ended with an error");
        }
    });
    let mut response = Response::new(tonic::body::Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    response
}

/// The client's `Sec-WebSocket-Key`, after checking the rest of the handshake.
fn handshake_key(req: &Request<Incoming>) -> Result<String, &'static str> {
    if req.version() != http::Version::HTTP_11 {
        return Err("websocket upgrade needs HTTP/1.1");
    }
    if req.method() != http::Method::GET {
        return Err("websocket upgrade needs GET");
    }
    let version = req.headers().get(header::SEC_WEBSOCKET_VERSION);
    if version.is_none_or(|v| v.as_bytes() != b"13") {
        return Err("websocket upgrade needs Sec-WebSocket-Version: 13");
    }
    req.headers()
        .get(header::SEC_WEBSOCKET_KEY)
        .and_then(|key| key.to_str().ok())
        .map(str::to_owned)
        .ok_or("websocket upgrade needs Sec-WebSocket-Key")
}

fn refuse(reason: &'static str) -> Response<tonic::body::Body> {
    let mut response = Response::new(tonic::body::Body::new(Full::new(Bytes::from(format!(
        "{reason}\n"
    )))));
    *response.status_mut() = StatusCode::BAD_REQUEST;
    response
}

/// Sends every text and binary message back until the peer closes.
async fn echo_messages<S>(
    mut ws: WebSocketStream<S>,
) -> Result<(), tokio_tungstenite::tungstenite::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    while let Some(message) = ws.next().await {
        let message = message?;
        if message.is_text() || message.is_binary() {
            ws.send(message).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::tests::start;
    use futures::{SinkExt as _, StreamExt as _};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpStream;
    use tokio_tungstenite::tungstenite::Message;

    #[tokio::test]
    async fn websocket_messages_are_echoed() {
        let addr = start("pod-w").await;
        let stream = TcpStream::connect(addr).await.unwrap();
        let (mut ws, response) = tokio_tungstenite::client_async(format!("ws://{addr}/ws"), stream)
            .await
            .expect("websocket handshake");
        assert_eq!(response.status(), http::StatusCode::SWITCHING_PROTOCOLS);
        for message in [
            Message::text("hello"),
            Message::binary(vec![0u8, 1, 2, 255]),
        ] {
            ws.send(message.clone()).await.unwrap();
            let back = ws.next().await.expect("an answer").unwrap();
            assert_eq!(back, message);
        }
        ws.close(None).await.unwrap();
        while let Some(Ok(message)) = ws.next().await {
            assert!(message.is_close(), "{message:?}");
        }
    }

    #[tokio::test]
    async fn a_broken_handshake_is_refused_with_the_reason() {
        let addr = start("pod-x").await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request = "GET /ws HTTP/1.1\r\nHost: svc\r\nConnection: Upgrade\r\n\
                       Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n";
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut text = Vec::new();
        let mut buf = [0u8; 1024];
        while !String::from_utf8_lossy(&text).contains("Sec-WebSocket-Key\n") {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&text));
            text.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&text);
        assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    }
}
