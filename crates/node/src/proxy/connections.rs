//! The table of open connections: what `/connections` shows, what a policy update is
//! re-evaluated against, and how a connection is cut (its cancellation token).
//!
//! An entry is held for each open connection, so it is kept small: its strings are the
//! workloads' shared names (`Arc<str>`, see [`crate::state::WorkloadNames`]), and the
//! reason a connection was cut lives in the entry, read under the table's lock.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::state::MeshState;
use crate::telemetry::shared;
use weft_policy::{self as policy, ConnectionFacts, Decision, OpenConnection};

/// Which way a connection goes through this proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// From a local workload (explicit proxy or capture).
    Outbound,
    /// Into a local workload over HBONE.
    InboundHbone,
    /// Into a local workload as plain TCP.
    InboundPlaintext,
}

/// One open connection as shown on `/connections`.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionInfo {
    /// Which way.
    pub direction: Direction,
    /// Client address (original source).
    pub src_addr: SocketAddr,
    /// Verified client identity (inbound HBONE) or the identity presented (outbound).
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "shared")]
    pub src_identity: Option<Arc<str>>,
    /// Destination workload address.
    pub dst_addr: SocketAddr,
    /// Destination workload `<ns>/<name>`.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "shared")]
    pub dst_workload: Option<Arc<str>>,
    /// Destination workload namespace (for denial metrics).
    #[serde(skip)]
    pub dst_namespace: Option<Arc<str>>,
    /// Start, ms since the Unix epoch.
    pub start_unix_ms: u64,
}

struct OpenEntry {
    info: ConnectionInfo,
    /// Destination workload uid and the facts it was authorized with (inbound only).
    enforced: Option<(Arc<str>, ConnectionFacts)>,
    cancel: CancellationToken,
    /// Why the proxy cut the connection, once it did.
    close_reason: OnceLock<String>,
}

/// Open connections by id. Entries are boxed: the map's spare capacity (up to half of
/// it after growing) then costs a pointer per slot, not a whole entry.
#[derive(Default)]
pub(crate) struct ConnectionTable {
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Box<OpenEntry>>>,
}

/// Keeps a connection in the table until dropped.
pub(crate) struct Registration {
    table: Arc<ConnectionTable>,
    id: u64,
    /// Cancelled to cut the connection (policy change, drain deadline).
    pub(crate) cancel: CancellationToken,
}

impl Registration {
    /// Why the connection was cut by the proxy, if it was.
    pub(crate) fn close_reason(&self) -> Option<String> {
        let open = self.table.lock();
        open.get(&self.id)?.close_reason.get().cloned()
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.table.lock().remove(&self.id);
    }
}

impl ConnectionTable {
    /// Adds a connection; its token is a child of `parent` (the drain-deadline token).
    pub(crate) fn register(
        self: &Arc<Self>,
        info: ConnectionInfo,
        enforced: Option<(Arc<str>, ConnectionFacts)>,
        parent: &CancellationToken,
    ) -> Registration {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let cancel = parent.child_token();
        let entry = Box::new(OpenEntry {
            info,
            enforced,
            cancel: cancel.clone(),
            close_reason: OnceLock::new(),
        });
        self.lock().insert(id, entry);
        Registration {
            table: Arc::clone(self),
            id,
            cancel,
        }
    }

    /// Snapshot for display.
    pub(crate) fn list(&self) -> Vec<ConnectionInfo> {
        let mut all: Vec<ConnectionInfo> = self.lock().values().map(|e| e.info.clone()).collect();
        all.sort_by_key(|c| (c.start_unix_ms, c.src_addr));
        all
    }

    /// Re-evaluates enforced connections against `state`, cuts the denied ones and
    /// returns them with their decision.
    pub(crate) fn recheck(&self, state: &MeshState) -> Vec<(ConnectionInfo, Decision)> {
        let open = self.lock();
        let candidates = open.iter().filter_map(|(id, entry)| {
            let (uid, facts) = entry.enforced.as_ref()?;
            Some(OpenConnection {
                id: *id,
                destination_workload: uid,
                facts,
            })
        });
        let denied = policy::recheck(state, candidates);
        denied
            .into_iter()
            .filter_map(|(id, decision)| {
                let entry = open.get(&id)?;
                let _ = entry
                    .close_reason
                    .set(format!("policy update denies the connection: {decision}"));
                entry.cancel.cancel();
                Some((entry.info.clone(), decision))
            })
            .collect()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Box<OpenEntry>>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
