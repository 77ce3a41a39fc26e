//! Telling a node proxy which pods live on its node, over its pod socket (`weft node
//! --pod-socket PATH`): one JSON request per line (`{"op":"add", ...pod}`,
//! `{"op":"remove","uid":...}`, `{"op":"list"}`), one JSON response line each
//! (`{"ok":true,...}` or `{"ok":false,"error":...}`).
//!
//! Every pod of the node is announced, enrolled or not: the node proxy captures those its
//! mesh state lists as enrolled, so enrolling a namespace needs no message from here.
//! [`NodeLink::sync`] sends only the difference to what was sent; on a new connection
//! (first use, or after the node proxy restarted) it asks for the node's list, removes
//! pods it should not have and (re)announces the others.

use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::Ipv4Addr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long the node proxy may take to answer one request.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// A pod as the node proxy learns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PodAnnouncement {
    /// Workload uid (as in the control plane's workload resources).
    pub uid: String,
    /// Pod name.
    pub name: String,
    /// Pod namespace.
    pub namespace: String,
    /// The pod's network namespace file.
    pub netns: PathBuf,
    /// The pod's addresses.
    pub ips: Vec<Ipv4Addr>,
}

#[derive(Serialize)]
#[serde(tag = "op", rename_all = "lowercase")]
enum Request<'a> {
    Add(&'a PodAnnouncement),
    Remove { uid: &'a str },
    List,
}

/// Why a node could not be told.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The socket could not be used.
    #[error("pod socket {path}: {source}")]
    Io {
        /// The socket.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The node proxy refused a request.
    #[error("pod socket {path}: node proxy refused {request}: {error}")]
    Refused {
        /// The socket.
        path: PathBuf,
        /// The request line.
        request: String,
        /// Its answer.
        error: String,
    },
}

struct Connection {
    writer: UnixStream,
    reader: BufReader<UnixStream>,
}

impl Connection {
    fn open(path: &Path) -> std::io::Result<Self> {
        let writer = UnixStream::connect(path)?;
        writer.set_write_timeout(Some(ANSWER_TIMEOUT))?;
        writer.set_read_timeout(Some(ANSWER_TIMEOUT))?;
        let reader = BufReader::new(writer.try_clone()?);
        Ok(Self { writer, reader })
    }

    /// Sends one request and reads its answer.
    fn ask(&mut self, request: &Request<'_>) -> std::io::Result<(String, Value)> {
        let line = serde_json::to_string(request).map_err(std::io::Error::other)?;
        self.writer.write_all(format!("{line}\n").as_bytes())?;
        let mut answer = String::new();
        if self.reader.read_line(&mut answer)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let answer = serde_json::from_str(&answer).map_err(std::io::Error::other)?;
        Ok((line, answer))
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Connection")
    }
}

/// The pod list of one node proxy.
#[derive(Debug)]
pub struct NodeLink {
    socket: PathBuf,
    connection: Option<Connection>,
    sent: BTreeMap<String, PodAnnouncement>,
}

impl NodeLink {
    /// A link to the node proxy listening on `socket` (connected on first use).
    #[must_use]
    pub fn new(socket: &Path) -> Self {
        Self {
            socket: socket.to_owned(),
            connection: None,
            sent: BTreeMap::new(),
        }
    }

    /// Makes the node's pod list `pods`: adds new or changed pods and removes the others.
    ///
    /// # Errors
    /// The socket cannot be used (the next call starts over with a new connection) or the
    /// node proxy refused a request (the others were still sent).
    pub fn sync(&mut self, pods: Vec<PodAnnouncement>) -> Result<(), LinkError> {
        let wanted: BTreeMap<String, PodAnnouncement> =
            pods.into_iter().map(|p| (p.uid.clone(), p)).collect();
        let result = self.send_changes(&wanted);
        if matches!(result, Err(LinkError::Io { .. })) {
            self.connection = None;
        }
        result
    }

    fn send_changes(
        &mut self,
        wanted: &BTreeMap<String, PodAnnouncement>,
    ) -> Result<(), LinkError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| LinkError::Io { path, source }
        };
        if self.connection.is_none() {
            let mut connection = Connection::open(&self.socket).map_err(io(&self.socket))?;
            // The node proxy keeps its list across restarts: start from what it has.
            let (_, answer) = connection.ask(&Request::List).map_err(io(&self.socket))?;
            self.sent = known_uids(&answer)
                .into_iter()
                .map(|uid| {
                    let placeholder = stale(&uid);
                    (uid, placeholder)
                })
                .collect();
            self.connection = Some(connection);
        }
        let mut requests: Vec<Request<'_>> = Vec::new();
        for (uid, pod) in wanted {
            if self.sent.get(uid) != Some(pod) {
                requests.push(Request::Add(pod));
            }
        }
        let sent = std::mem::take(&mut self.sent);
        for uid in sent.keys().filter(|uid| !wanted.contains_key(*uid)) {
            requests.push(Request::Remove { uid });
        }
        self.sent = wanted.clone();
        let mut refused = None;
        for request in &requests {
            let Some(connection) = &mut self.connection else {
                break;
            };
            let (line, answer) = connection.ask(request).map_err(io(&self.socket))?;
            if answer["ok"] != Value::Bool(true) && refused.is_none() {
                refused = Some(LinkError::Refused {
                    path: self.socket.clone(),
                    request: line,
                    error: answer["error"].as_str().unwrap_or("no reason").to_owned(),
                });
            }
        }
        refused.map_or(Ok(()), Err)
    }
}

/// A placeholder for a pod the node knows but whose details we did not send: never equal
/// to a real announcement, so the pod is re-announced (or removed).
fn stale(uid: &str) -> PodAnnouncement {
    PodAnnouncement {
        uid: uid.to_owned(),
        name: String::new(),
        namespace: String::new(),
        netns: PathBuf::new(),
        ips: Vec::new(),
    }
}

/// The uids of a `list` answer.
fn known_uids(answer: &Value) -> Vec<String> {
    answer["pods"]
        .as_array()
        .map(|pods| {
            pods.iter()
                .filter_map(|p| p["uid"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;
    use std::sync::{Arc, Mutex};

    fn pod(uid: &str, ip: u8) -> PodAnnouncement {
        PodAnnouncement {
            uid: uid.into(),
            name: uid.into(),
            namespace: "ns".into(),
            netns: format!("/run/netns/{uid}").into(),
            ips: vec![Ipv4Addr::new(10, 0, 0, ip)],
        }
    }

    /// A node-proxy-like pod source: keeps the pods, answers each line, logs the ops.
    /// Serves one connection per `accept`, then returns.
    fn serve_one(
        listener: &UnixListener,
        pods: &Arc<Mutex<Vec<String>>>,
        log: &Arc<Mutex<Vec<String>>>,
    ) {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap_or(0) > 0 {
            let request: Value = serde_json::from_str(&line).unwrap();
            let uid = request["uid"].as_str().unwrap_or_default().to_owned();
            let op = request["op"].as_str().unwrap().to_owned();
            let mut known = pods.lock().unwrap();
            let answer = match op.as_str() {
                "list" => {
                    let list: Vec<Value> = known
                        .iter()
                        .map(|u| serde_json::json!({"uid": u}))
                        .collect();
                    serde_json::json!({"ok": true, "pods": list})
                }
                "add" if request["netns"] == "/run/netns/bad" => {
                    serde_json::json!({"ok": false, "error": "no such namespace"})
                }
                "add" => {
                    assert_eq!(request["ips"][0].as_str().unwrap().split('.').count(), 4);
                    known.retain(|u| *u != uid);
                    known.push(uid.clone());
                    serde_json::json!({"ok": true})
                }
                _ => {
                    known.retain(|u| *u != uid);
                    serde_json::json!({"ok": true, "removed": true})
                }
            };
            log.lock()
                .unwrap()
                .push(format!("{op} {uid}").trim().to_owned());
            writer.write_all(format!("{answer}\n").as_bytes()).unwrap();
            line.clear();
        }
    }

    #[test]
    fn sends_differences_and_resyncs_with_a_restarted_node() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let pods = Arc::new(Mutex::new(vec!["old".to_owned()]));
        let log = Arc::new(Mutex::new(Vec::new()));
        let server = {
            let (pods, log) = (Arc::clone(&pods), Arc::clone(&log));
            std::thread::spawn(move || {
                serve_one(&listener, &pods, &log);
                serve_one(&listener, &pods, &log);
            })
        };
        let take = |log: &Arc<Mutex<Vec<String>>>| std::mem::take(&mut *log.lock().unwrap());

        let mut link = NodeLink::new(&path);
        link.sync(vec![pod("a", 1), pod("b", 2)]).unwrap();
        assert_eq!(take(&log), ["list", "add a", "add b", "remove old"]);
        link.sync(vec![pod("b", 2), pod("c", 3)]).unwrap();
        assert_eq!(take(&log), ["add c", "remove a"]);
        link.sync(vec![pod("b", 2), pod("c", 3)]).unwrap();
        assert!(take(&log).is_empty());

        let mut bad = pod("e", 5);
        bad.netns = "/run/netns/bad".into();
        let err = link.sync(vec![pod("b", 2), pod("c", 3), bad]).unwrap_err();
        assert!(err.to_string().contains("no such namespace"), "{err}");
        take(&log);

        // The node proxy restarts (new connection) and reloaded b and c from its state file.
        link.connection = None;
        link.sync(vec![pod("b", 2), pod("d", 4)]).unwrap();
        assert_eq!(take(&log), ["list", "add b", "add d", "remove c"]);
        drop(link);
        server.join().unwrap();
        assert_eq!(*pods.lock().unwrap(), ["b", "d"]);
    }
}
