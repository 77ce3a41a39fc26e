//! A blocking client of the node proxy's pod socket (the protocol of
//! `weft_node::capture::source`: one JSON line per request, one per response), for the
//! CNI plugin and the `weft cni release-all` admin command.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use weft_node::capture::source::{PodRequest, PodResponse};

/// How long connecting and each exchange may take. Capturing a pod enters its network
/// namespace and installs rules: well under a second normally.
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the node proxy gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens on the socket (the node proxy is not running).
    #[error("the node proxy is not reachable at {path}: {source}")]
    Unreachable {
        /// The socket.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The exchange broke off or the answer is not a response.
    #[error("no answer from the node proxy at {path}: {reason}")]
    Exchange {
        /// The socket.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

/// Sends one request to the node proxy at `socket` and returns its response.
///
/// # Errors
/// The node proxy cannot be reached or does not answer in time.
pub fn request(socket: &Path, request: &PodRequest) -> Result<PodResponse, ClientError> {
    let stream = UnixStream::connect(socket).map_err(|source| ClientError::Unreachable {
        path: socket.to_owned(),
        source,
    })?;
    let failed = |reason: String| ClientError::Exchange {
        path: socket.to_owned(),
        reason,
    };
    stream
        .set_read_timeout(Some(EXCHANGE_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(EXCHANGE_TIMEOUT)))
        .map_err(|e| failed(e.to_string()))?;
    let mut line = serde_json::to_string(request).map_err(|e| failed(e.to_string()))?;
    line.push('\n');
    (&stream)
        .write_all(line.as_bytes())
        .map_err(|e| failed(e.to_string()))?;
    let mut answer = String::new();
    BufReader::new(&stream)
        .read_line(&mut answer)
        .map_err(|e| failed(e.to_string()))?;
    if answer.is_empty() {
        return Err(failed("connection closed".into()));
    }
    serde_json::from_str(&answer).map_err(|e| failed(format!("bad response: {e}")))
}
