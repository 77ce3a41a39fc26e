//! The pod source: how a local agent (`weft up`, later a Kubernetes node agent) tells the
//! node proxy which pods live on its node.
//!
//! Protocol: a Unix stream socket (`weft node --pod-socket PATH`, mode 0600). Each request
//! is one line of JSON; each gets one line of JSON back, in order, on the same connection:
//!
//! ```text
//! -> {"op":"add","uid":"u1","name":"web-1","namespace":"shop","netns":"/var/run/netns/web-1","ips":["10.0.1.2"]}
//! <- {"ok":true,"pod":{"uid":"u1",...,"captured":true}}
//! -> {"op":"remove","uid":"u1"}
//! <- {"ok":true,"removed":true}
//! -> {"op":"list"}
//! <- {"ok":true,"pods":[{"uid":"u1",...,"captured":false,"enrolled":false,"reason":"not a mesh-enrolled workload on this node"}]}
//! -> {"op":"release_all"}
//! <- {"ok":true,"released":3}
//! -> not json
//! <- {"ok":false,"error":"..."}
//! ```
//!
//! `add` replaces a pod with the same uid. `release_all` takes the node out of the mesh
//! (uninstall, [`CaptureManager::release_all`]). A pod is captured only while the mesh state
//! also lists a mesh-enrolled (HBONE) workload on this node with one of its IPs, so the
//! source says where pods are and the mesh configuration says which are in the mesh.
//! Lines longer than 64 KiB close the connection.
//!
//! The pod list is saved (JSON, written atomically) to `PATH.pods.json` next to the
//! socket and reloaded when the proxy starts.

use std::path::{Path, PathBuf};

use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::codec::{Framed, LinesCodec};

use super::{CaptureError, CaptureManager, CaptureOptions, PodInfo, PodStatus};
use crate::handoff::{Handoff, NodeSocket};
use crate::proxy::Node;

/// Longest request line accepted.
const MAX_LINE: usize = 64 * 1024;

/// One request line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum PodRequest {
    /// Add or replace a pod.
    Add(PodInfo),
    /// Forget a pod.
    Remove {
        /// Its uid.
        uid: String,
    },
    /// List the known pods.
    List,
    /// Release every pod and capture nothing more (uninstall).
    ReleaseAll,
}

/// One response line.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PodResponse {
    /// Whether the request was carried out.
    pub ok: bool,
    /// Why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `add`: the pod's status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<PodStatus>,
    /// `remove`: whether the pod was known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed: Option<bool>,
    /// `list`: every pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<Vec<PodStatus>>,
    /// `release_all`: how many pods were captured before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released: Option<usize>,
}

impl PodResponse {
    fn failed(error: impl ToString) -> Self {
        Self {
            error: Some(error.to_string()),
            ..Self::default()
        }
    }
}

/// Where the pod list of the socket at `socket` is saved.
#[must_use]
pub fn state_file_for(socket: &Path) -> PathBuf {
    let mut name = socket.as_os_str().to_owned();
    name.push(".pods.json");
    PathBuf::from(name)
}

#[derive(Serialize, Deserialize)]
struct SavedPods<P> {
    pods: Vec<P>,
}

/// Reads a saved pod list; a missing file is an empty list.
///
/// # Errors
/// The file exists but cannot be read or is not a pod list.
pub fn load_pods(path: &Path) -> Result<Vec<PodInfo>, CaptureError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(CaptureError::Io {
                what: "read pod state file",
                path: path.to_owned(),
                source,
            });
        }
    };
    let saved: SavedPods<PodInfo> =
        serde_json::from_str(&text).map_err(|e| CaptureError::StateFile {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    Ok(saved.pods)
}

/// Writes the pod list atomically (temporary file, then rename).
///
/// # Errors
/// The file cannot be written.
pub fn save_pods(path: &Path, pods: &[&PodInfo]) -> Result<(), CaptureError> {
    let io = |what| {
        move |source| CaptureError::Io {
            what,
            path: path.to_owned(),
            source,
        }
    };
    let text = serde_json::to_string_pretty(&SavedPods {
        pods: pods.to_vec(),
    })
    .map_err(|e| io("encode pod state file")(std::io::Error::other(e)))?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, text).map_err(io("write pod state file"))?;
    std::fs::rename(&tmp, path).map_err(io("replace pod state file"))
}

/// Listens on the Unix socket at `path` (replacing a stale socket file) and serves pod
/// requests to `manager` until it shuts down.
///
/// # Errors
/// The socket cannot be created.
pub fn serve_pod_socket(path: &Path, manager: CaptureManager) -> Result<(), CaptureError> {
    let listener = bind_pod_socket(path)?;
    serve_pod_listener(listener, path, manager);
    Ok(())
}

/// Starts capture and serves the pod socket at `path`: the saved pods are recaptured
/// ([`CaptureManager::start_with_handoff`]). A proxy taking over (its `handoff` holds the
/// predecessor's sockets) takes the pods' listeners and the pod socket, completes the
/// hand-off (the predecessor stops answering the pod socket) and reloads the pod list the
/// predecessor saved last before answering pod requests itself.
///
/// # Errors
/// The state file is unreadable, or the socket cannot be created or taken over.
pub async fn start_with_pod_socket(
    node: Node,
    path: &Path,
    options: CaptureOptions,
    handoff: Handoff,
) -> Result<CaptureManager, CaptureError> {
    let manager = CaptureManager::start_with_handoff(node, options, handoff.clone()).await?;
    let inherited = handoff
        .take_unix(NodeSocket::PodSource.name())
        .map_err(|source| CaptureError::Io {
            what: "take over pod socket",
            path: path.to_owned(),
            source,
        })?;
    let listener = match inherited {
        Some(listener) => {
            if let Err(error) = handoff.complete().await {
                tracing::warn!(%error, "the previous proxy did not confirm the hand-off");
            }
            manager.reload_saved().await?;
            listener
        }
        None => bind_pod_socket(path)?,
    };
    serve_pod_listener(listener, path, manager.clone());
    Ok(manager)
}

/// Listens on the Unix socket at `path` (mode 0600), replacing a stale socket file.
///
/// # Errors
/// The socket cannot be created.
pub fn bind_pod_socket(path: &Path) -> Result<UnixListener, CaptureError> {
    let io = |what| {
        move |source| CaptureError::Io {
            what,
            path: path.to_owned(),
            source,
        }
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io("create the pod socket's directory"))?;
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(io("remove stale pod socket")(e));
        }
        _ => {}
    }
    let listener = UnixListener::bind(path).map_err(io("listen on pod socket"))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(io("restrict pod socket"))?;
    }
    Ok(listener)
}

/// Serves pod requests on `listener` (bound at `path`, or inherited from the previous
/// proxy) to `manager` until it shuts down or is released, offering the socket to a
/// successor meanwhile.
pub fn serve_pod_listener(listener: UnixListener, path: &Path, manager: CaptureManager) {
    let stop = manager.stopped();
    let offer = manager
        .handoff()
        .offer(NodeSocket::PodSource.name(), &listener);
    tracing::info!(path = %path.display(), "pod source socket listening");
    tokio::spawn(async move {
        weft_serve::accept_until(&listener, stop.cancelled(), "pod socket", |stream, _| {
            tokio::spawn(serve_client(stream, manager.clone()));
        })
        .await;
        drop(offer);
    });
}

async fn serve_client(stream: UnixStream, manager: CaptureManager) {
    let mut lines = Framed::new(stream, LinesCodec::new_with_max_length(MAX_LINE));
    let stop = manager.stopped();
    // A request in progress finishes; the connection closes before the next one, so a
    // client of a released proxy reconnects to its successor.
    while let Some(line) = tokio::select! {
        () = stop.cancelled() => None,
        line = lines.next() => line,
    } {
        let Ok(line) = line else {
            // Too long or not UTF-8: this client is not speaking the protocol.
            return;
        };
        if line.trim().is_empty() {
            continue;
        }
        let response = match serde_json::from_str::<PodRequest>(&line) {
            Ok(request) => handle(&manager, request).await,
            Err(error) => PodResponse::failed(format!("bad request: {error}")),
        };
        let Ok(text) = serde_json::to_string(&response) else {
            return;
        };
        if lines.send(text).await.is_err() {
            return;
        }
    }
}

async fn handle(manager: &CaptureManager, request: PodRequest) -> PodResponse {
    match request {
        PodRequest::Add(pod) => match manager.add(pod).await {
            Ok(status) => PodResponse {
                ok: true,
                pod: Some(status),
                ..PodResponse::default()
            },
            Err(error) => PodResponse::failed(error),
        },
        PodRequest::Remove { uid } => match manager.remove(&uid).await {
            Ok(removed) => PodResponse {
                ok: true,
                removed: Some(removed),
                ..PodResponse::default()
            },
            Err(error) => PodResponse::failed(error),
        },
        PodRequest::List => PodResponse {
            ok: true,
            pods: Some(manager.list().await),
            ..PodResponse::default()
        },
        PodRequest::ReleaseAll => match manager.release_all().await {
            Ok(released) => PodResponse {
                ok: true,
                released: Some(released),
                ..PodResponse::default()
            },
            Err(error) => PodResponse::failed(error),
        },
    }
}

/// A client of the pod socket (what `weft up` uses).
#[derive(Debug)]
pub struct PodSourceClient {
    lines: Framed<UnixStream, LinesCodec>,
}

/// Why a pod socket request failed to get an answer.
#[derive(Debug, thiserror::Error)]
pub enum PodClientError {
    /// Connecting failed.
    #[error("cannot connect to pod socket {path}: {source}")]
    Connect {
        /// Socket path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The exchange failed or the node proxy closed the connection.
    #[error("pod socket exchange failed: {0}")]
    Exchange(String),
}

impl PodSourceClient {
    /// Connects to the node proxy's pod socket.
    ///
    /// # Errors
    /// Nothing listens at `path`.
    pub async fn connect(path: &Path) -> Result<Self, PodClientError> {
        let stream = UnixStream::connect(path)
            .await
            .map_err(|source| PodClientError::Connect {
                path: path.to_owned(),
                source,
            })?;
        Ok(Self {
            lines: Framed::new(stream, LinesCodec::new_with_max_length(MAX_LINE * 64)),
        })
    }

    /// Sends one request and reads its response.
    ///
    /// # Errors
    /// The connection failed or the answer is not a response line.
    pub async fn request(&mut self, request: &PodRequest) -> Result<PodResponse, PodClientError> {
        let text =
            serde_json::to_string(request).map_err(|e| PodClientError::Exchange(e.to_string()))?;
        self.lines
            .send(text)
            .await
            .map_err(|e| PodClientError::Exchange(e.to_string()))?;
        let line = self
            .lines
            .next()
            .await
            .ok_or_else(|| PodClientError::Exchange("connection closed".into()))?
            .map_err(|e| PodClientError::Exchange(e.to_string()))?;
        serde_json::from_str(&line).map_err(|e| PodClientError::Exchange(e.to_string()))
    }
}
