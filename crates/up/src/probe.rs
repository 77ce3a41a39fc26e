//! Plain HTTP/1.1 GETs made from inside a network namespace (the control plane and node
//! proxies listen in namespaces the root namespace cannot reach) or, in explicit mode, from
//! here, and polling them until ready.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Why a GET failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// Connecting, sending or reading failed.
    #[error("GET http://{addr}{path}: {reason}")]
    Io {
        /// Target.
        addr: SocketAddr,
        /// Path.
        path: String,
        /// Why.
        reason: String,
    },
}

/// One endpoint to GET inside a namespace.
#[derive(Debug, Clone)]
pub struct Probe {
    /// What it checks (for messages).
    pub what: String,
    /// Namespace file to connect from (`None`: this process's own namespace).
    pub netns: Option<PathBuf>,
    /// Address.
    pub addr: SocketAddr,
    /// Path, e.g. `/ready`.
    pub path: String,
}

impl Probe {
    /// GETs the endpoint; returns the status code and body.
    ///
    /// # Errors
    /// The connection or the exchange failed.
    pub fn get(&self, timeout: Duration) -> Result<(u16, String), ProbeError> {
        let fail = |reason: String| ProbeError::Io {
            addr: self.addr,
            path: self.path.clone(),
            reason,
        };
        let mut stream = match &self.netns {
            Some(netns) => weft_netns::connect_in(netns, self.addr, Default::default())
                .map_err(|e| fail(e.to_string()))?,
            None => std::net::TcpStream::connect_timeout(&self.addr, timeout)
                .map_err(|e| fail(e.to_string()))?,
        };
        stream
            .set_read_timeout(Some(timeout))
            .and_then(|()| stream.set_write_timeout(Some(timeout)))
            .map_err(|e| fail(e.to_string()))?;
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.path, self.addr
        );
        stream
            .write_all(request.as_bytes())
            .map_err(|e| fail(e.to_string()))?;
        let mut response = Vec::new();
        stream
            .read_to_end(&mut response)
            .map_err(|e| fail(e.to_string()))?;
        let text = String::from_utf8_lossy(&response);
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| fail(format!("not an HTTP response: {:?}", truncate(&text))))?;
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_owned())
            .unwrap_or_default();
        Ok((status, body))
    }

    /// Whether the endpoint answers 200.
    #[must_use]
    pub fn is_ready(&self) -> bool {
        matches!(self.get(Duration::from_secs(1)), Ok((200, _)))
    }
}

fn truncate(text: &str) -> &str {
    text.get(..80).unwrap_or(text)
}

/// Polls every probe until all answer 200 or `timeout` passes; `still_alive` is asked
/// between rounds and stops the wait early with its message (e.g. a process exited).
///
/// # Errors
/// The names of the probes not ready at the deadline, or `still_alive`'s message.
pub fn wait_all_ready(
    probes: &[Probe],
    timeout: Duration,
    mut still_alive: impl FnMut() -> Result<(), String>,
) -> Result<Duration, String> {
    let start = Instant::now();
    let mut pending: Vec<&Probe> = probes.iter().collect();
    loop {
        pending.retain(|probe| !probe.is_ready());
        if pending.is_empty() {
            return Ok(start.elapsed());
        }
        still_alive()?;
        if start.elapsed() >= timeout {
            let names: Vec<String> = pending
                .iter()
                .map(|p| format!("{} (http://{}{})", p.what, p.addr, p.path))
                .collect();
            return Err(format!(
                "not ready after {}s: {}",
                timeout.as_secs(),
                names.join(", ")
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
