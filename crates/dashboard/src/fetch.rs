//! Reading pages of the control plane and the proxies. Connections are opened by a
//! [`Dialer`], so `weft up` can make them from inside the mesh's network namespace while
//! the dashboard itself listens in the machine's own.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// How long one page may take, connection included.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(2);

/// Opens TCP connections to the pages the dashboard reads (blocking; run off the
/// async threads).
pub trait Dialer: Send + Sync + 'static {
    /// A connected stream to `addr`.
    ///
    /// # Errors
    /// The connection failed.
    fn dial(&self, addr: SocketAddr) -> std::io::Result<std::net::TcpStream>;
}

/// Connects from this process's own network namespace.
#[derive(Debug, Clone, Copy, Default)]
pub struct DirectDialer;

impl Dialer for DirectDialer {
    fn dial(&self, addr: SocketAddr) -> std::io::Result<std::net::TcpStream> {
        std::net::TcpStream::connect_timeout(&addr, FETCH_TIMEOUT)
    }
}

/// GETs `path` on `addr` through `dialer`; the body when the answer is 2xx.
///
/// # Errors
/// A readable reason naming the address and page: no connection, timeout, or a non-2xx
/// status.
pub async fn get(dialer: &Arc<dyn Dialer>, addr: SocketAddr, path: &str) -> Result<String, String> {
    let fetch = async {
        let dialer = Arc::clone(dialer);
        let stream = tokio::task::spawn_blocking(move || {
            let stream = dialer.dial(addr)?;
            stream.set_nonblocking(true)?;
            Ok::<_, std::io::Error>(stream)
        })
        .await
        .map_err(|err| format!("cannot connect to {addr}: {err}"))?
        .map_err(|err| format!("cannot connect to {addr}: {err}"))?;
        let stream = tokio::net::TcpStream::from_std(stream)
            .map_err(|err| format!("cannot use the connection to {addr}: {err}"))?;
        weft_serve::get_on(stream, &addr.to_string(), path).await
    };
    let (status, body) = tokio::time::timeout(FETCH_TIMEOUT, fetch)
        .await
        .map_err(|_| {
            format!(
                "GET http://{addr}{path}: no answer within {}s",
                FETCH_TIMEOUT.as_secs()
            )
        })??;
    if !status.is_success() {
        return Err(format!("GET http://{addr}{path} answered {status}"));
    }
    String::from_utf8(body.to_vec())
        .map_err(|err| format!("GET http://{addr}{path}: the body is not UTF-8: {err}"))
}

/// [`get`], parsed as JSON.
///
/// # Errors
/// As [`get`], or the body is not JSON.
pub async fn get_json(
    dialer: &Arc<dyn Dialer>,
    addr: SocketAddr,
    path: &str,
) -> Result<serde_json::Value, String> {
    let body = get(dialer, addr, path).await?;
    serde_json::from_str(&body).map_err(|err| format!("GET http://{addr}{path}: not JSON: {err}"))
}
