//! In-pod traffic capture for `weft node` (Istio's "in-pod" mode).
//!
//! The node proxy learns its pods from a local source ([`source`]: a Unix socket that
//! `weft up`, or later a Kubernetes node agent, writes to). For each known pod that the
//! mesh state says is a mesh-enrolled (HBONE) workload on this node, the
//! [`CaptureManager`]:
//! 1. starts a thread inside the pod's network namespace (a [`weft_netns::NetnsWorker`]);
//! 2. opens the pod's listeners there: outbound `127.0.0.1:15001`, plaintext inbound
//!    `0.0.0.0:15006`, HBONE `<pod ip>:15008`, DNS `127.0.0.1:15053` (UDP and TCP);
//! 3. hands them to the data path ([`crate::proxy::WorkloadListeners::attach`]) and
//!    registers a [`crate::proxy::PodNetwork`] so every connection the proxy makes for the
//!    pod (outbound passthrough, HBONE tunnels to `<peer ip>:15008`, inbound connects to
//!    the workload, DNS upstream queries) is made from inside the pod with the bypass mark
//!    `0x539`, and inbound connects are bound transparently to the caller's IP;
//! 4. installs the redirect rules ([`weft_netns::install_capture`], native nftables: one
//!    table per pod replaced atomically, see weft-netns for why nftables).
//!
//! A pod that leaves (removed from the source, or no longer enrolled in the mesh state)
//! loses its rules first and its listeners next; other pods are untouched. The pod list is
//! kept in a state file; after a restart the proxy reloads it and captures the pods again
//! (rules are idempotent; listeners are reopened in the existing namespaces). On shutdown
//! the rules stay: a pod's traffic fails while its proxy is down instead of leaving the
//! mesh in plaintext.
//!
//! With [`CaptureOptions::hold_unknown`] (`weft node --cni-socket`), a pod added before
//! any workload with its address is known (the CNI plugin announces a pod before the
//! kubelet reports its address to the API, so before the control plane can place it) is
//! held at once: [`weft_netns::install_hold`] drops its new connections, which its kernel
//! retries, until the mesh state names a workload with one of its addresses; then it is
//! captured (enrolled) or let go (not enrolled). Its traffic never leaves uncaptured while
//! the mesh may still enroll it: fail closed, at the cost of a retry (about a second).
//!
//! A pod whose network namespace is gone is forgotten (its CNI DEL may have come while the
//! proxy was down). With [`CaptureOptions::discover`] (`weft node --cni-socket`), enrolled
//! workloads of this node that no known pod holds are looked for in the node's network
//! namespaces ([`discover`]): pods that started before the node proxy or its CNI plugin.
//! [`CaptureManager::release_all`] takes the whole node out of the mesh (uninstall).
//!
//! With [`CaptureOptions::probe_snat_netns`] (the node's own namespace), the node's
//! connections to captured pods (the kubelet's probes) get a link-local source that the
//! pods' rules let through to the workload ([`probes`]): probes work under STRICT mTLS.
//!
//! This module does not create namespaces or links (that is `weft up` / the CNI), and it
//! decides nothing about routing or policy (that is [`crate::proxy`]).

mod discover;
mod hold;
mod pod;
mod probes;
mod sockets;
pub mod source;

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
pub use weft_netns::CaptureConfig;

use crate::dns::DnsResolver;
use crate::dns::server::ForwardLimits;
use crate::handoff::Handoff;
use crate::proxy::{AttachError, Node};
use crate::state::MeshState;
use pod::{PodCapture, PodSetup};

/// A pod as the pod source describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodInfo {
    /// Stable id (Kubernetes pod uid or any unique string).
    pub uid: String,
    /// Pod name.
    pub name: String,
    /// Pod namespace (DNS short names are relative to it).
    pub namespace: String,
    /// Its network namespace, e.g. `/var/run/netns/NAME` or `/proc/PID/ns/net`.
    pub netns: PathBuf,
    /// Its addresses.
    pub ips: Vec<IpAddr>,
}

impl PodInfo {
    /// `<namespace>/<name>`.
    #[must_use]
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// A known pod and whether its traffic is captured now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodStatus {
    /// The pod.
    #[serde(flatten)]
    pub pod: PodInfo,
    /// Listeners and redirect rules are in place.
    pub captured: bool,
    /// The mesh lists one of its addresses as an enrolled workload of this node (so it
    /// should be captured: `enrolled && !captured` means capture failed).
    #[serde(default)]
    pub enrolled: bool,
    /// Its new connections are held until the mesh knows its workload (see
    /// [`CaptureOptions::hold_unknown`]).
    #[serde(default)]
    pub held: bool,
    /// Why it is not captured (not enrolled in the mesh, or what failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Why capture failed for a pod, or the pod source could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// Work inside the pod's network namespace failed.
    #[error("cannot {what} in {netns}: {source}")]
    Netns {
        /// What was being done.
        what: &'static str,
        /// The namespace.
        netns: PathBuf,
        /// Why.
        source: weft_netns::Error,
    },
    /// A socket opened in the pod could not be handed to the async runtime.
    #[error("pod {pod}: socket unusable: {source}")]
    Socket {
        /// `<ns>/<name>`.
        pod: String,
        /// Why.
        source: std::io::Error,
    },
    /// The data path refused the pod's listeners.
    #[error("pod {pod}: {source}")]
    Attach {
        /// `<ns>/<name>`.
        pod: String,
        /// Why.
        source: AttachError,
    },
    /// A pod whose workload is not known yet could not be held.
    #[error("pod {pod}: no workload known yet and its connections cannot be held: {reason}")]
    NotHeld {
        /// `<ns>/<name>`.
        pod: String,
        /// Why.
        reason: String,
    },
    /// A pod description is unusable.
    #[error("invalid pod {uid:?}: {reason}")]
    InvalidPod {
        /// The uid given.
        uid: String,
        /// What is wrong.
        reason: String,
    },
    /// The pod state file or socket could not be used.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The pod state file is not a pod list.
    #[error("pod state file {path} is unreadable: {reason}")]
    StateFile {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A blocking task died.
    #[error("capture task failed: {0}")]
    Task(String),
}

/// Default of [`CaptureOptions::dns_inflight_per_pod`].
pub const DEFAULT_DNS_INFLIGHT_PER_POD: usize = 256;
/// Default of [`CaptureOptions::dns_inflight_total`].
pub const DEFAULT_DNS_INFLIGHT_TOTAL: usize = 4096;

/// Settings of in-pod capture.
#[derive(Debug, Clone)]
pub struct CaptureOptions {
    /// Ports, bypass mark and routing table of the redirect rules. `hbone_port` must be
    /// the data path's HBONE port.
    pub rules: CaptureConfig,
    /// Resolver for names outside the mesh (`None`: answer them with an error at once).
    pub dns_upstream: Option<SocketAddr>,
    /// Forwarded DNS queries one pod may have waiting for the upstream at a time.
    pub dns_inflight_per_pod: usize,
    /// Forwarded DNS queries the whole node may have waiting for the upstream at a time.
    pub dns_inflight_total: usize,
    /// Kubernetes cluster domain (`cluster.local`).
    pub cluster_domain: String,
    /// Where the pod list is kept across restarts (`None`: not kept).
    pub state_file: Option<PathBuf>,
    /// Look for enrolled workloads' pods in the node's network namespaces when no known
    /// pod holds their address ([`discover`]).
    pub discover: bool,
    /// Hold the new connections of a pod added while no workload with its address is
    /// known, until one is (see the module documentation).
    pub hold_unknown: bool,
    /// The node's own network namespace (the kubelet's; `/proc/1/ns/net` from a
    /// `hostPID` pod): its connections to captured pods are source-NATed to the probe
    /// source, which the pods' rules let past the redirect. Setting it turns
    /// [`CaptureConfig::exempt_probe_source`] on; a proxy without it never installs the
    /// pod half itself (it keeps the tables it takes over from a predecessor as they are).
    pub probe_snat_netns: Option<PathBuf>,
}

impl Default for CaptureOptions {
    fn default() -> Self {
        Self {
            rules: CaptureConfig::default(),
            dns_upstream: None,
            dns_inflight_per_pod: DEFAULT_DNS_INFLIGHT_PER_POD,
            dns_inflight_total: DEFAULT_DNS_INFLIGHT_TOTAL,
            cluster_domain: "cluster.local".into(),
            state_file: None,
            discover: false,
            hold_unknown: false,
            probe_snat_netns: None,
        }
    }
}

struct PodEntry {
    pod: PodInfo,
    active: Option<PodCapture>,
    enrolled: bool,
    reason: Option<String>,
    /// Added while no workload with its address was known, and none is yet.
    awaiting: bool,
    /// The hold rules are in place.
    held: bool,
}

impl PodEntry {
    fn new(pod: PodInfo) -> Self {
        Self {
            pod,
            active: None,
            enrolled: false,
            reason: None,
            awaiting: false,
            held: false,
        }
    }

    fn status(&self) -> PodStatus {
        PodStatus {
            pod: self.pod.clone(),
            captured: self.active.is_some(),
            enrolled: self.enrolled,
            held: self.held,
            reason: self.reason.clone(),
        }
    }
}

/// Why a known pod is not captured when the mesh does not enroll it.
const NOT_ENROLLED: &str = "not a mesh-enrolled workload on this node";
/// Why no pod is captured after [`CaptureManager::release_all`].
const RELEASED: &str = "released: the mesh is being removed from this node";

/// The pods of this node and their capture. Cheap to clone.
#[derive(Clone)]
pub struct CaptureManager {
    inner: Arc<ManagerInner>,
}

struct ManagerInner {
    node: Node,
    options: CaptureOptions,
    dns: DnsResolver,
    /// Caps on forwarded DNS queries, shared by every pod.
    dns_limits: Arc<ForwardLimits>,
    /// Pod listeners inherited from the previous proxy and offered to the next.
    handoff: Handoff,
    /// Changes are rare and each may do namespace work: one at a time.
    pods: tokio::sync::Mutex<BTreeMap<String, PodEntry>>,
    /// Enrolled addresses already looked for in the node's namespaces.
    searched: std::sync::Mutex<discover::Searched>,
    /// Set by [`CaptureManager::release_all`]: nothing is captured any more.
    released: std::sync::atomic::AtomicBool,
    /// The node's probe source NAT, with [`CaptureOptions::probe_snat_netns`].
    probes: Option<probes::ProbeSnat>,
    stop: CancellationToken,
}

impl std::fmt::Debug for CaptureManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptureManager")
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

impl CaptureManager {
    /// Starts capture for `node`: loads the pod list from the state file (if any),
    /// captures the enrolled pods, and follows mesh state changes (a pod enrolled or
    /// unenrolled in the mesh gains or loses its capture).
    ///
    /// # Errors
    /// The state file exists but cannot be read or parsed.
    pub async fn start(node: Node, options: CaptureOptions) -> Result<Self, CaptureError> {
        Self::start_with_handoff(node, options, Handoff::fresh()).await
    }

    /// [`CaptureManager::start`] taking the pods' listeners from `handoff` when it holds
    /// them (a restarted proxy), and offering every pod's listeners on it.
    ///
    /// # Errors
    /// The state file exists but cannot be read or parsed.
    pub async fn start_with_handoff(
        node: Node,
        mut options: CaptureOptions,
        handoff: Handoff,
    ) -> Result<Self, CaptureError> {
        options.rules.exempt_probe_source = options.probe_snat_netns.is_some();
        let probes = options.probe_snat_netns.clone().map(probes::ProbeSnat::new);
        let saved = match &options.state_file {
            Some(path) => source::load_pods(path)?,
            None => Vec::new(),
        };
        let dns = DnsResolver::new(
            Arc::clone(node.store()),
            &options.cluster_domain,
            options.dns_upstream.is_some(),
        );
        let dns_limits =
            ForwardLimits::new(options.dns_inflight_per_pod, options.dns_inflight_total);
        dns_limits.register(
            &mut node
                .registry()
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        let pods = saved
            .into_iter()
            .map(|pod| {
                // Whatever rules the last process left in the pod (hold or capture) are
                // unknown here: counted as held, so a pod the mesh does not capture has
                // them removed instead of keeping a table that drops its connections.
                let mut entry = PodEntry::new(pod);
                entry.held = true;
                (entry.pod.uid.clone(), entry)
            })
            .collect();
        let manager = Self {
            inner: Arc::new(ManagerInner {
                node,
                options,
                dns,
                dns_limits: Arc::new(dns_limits),
                handoff,
                pods: tokio::sync::Mutex::new(pods),
                searched: std::sync::Mutex::default(),
                released: std::sync::atomic::AtomicBool::new(false),
                probes,
                stop: CancellationToken::new(),
            }),
        };
        manager.reconcile().await;
        manager.follow_state();
        Ok(manager)
    }

    /// Adds (or replaces) a pod and captures it if the mesh enrolls it. The status says
    /// whether it is captured and, if not, why.
    ///
    /// # Errors
    /// The description is invalid or the pod list cannot be saved.
    pub async fn add(&self, pod: PodInfo) -> Result<PodStatus, CaptureError> {
        validate(&pod)?;
        let mut pods = self.inner.pods.lock().await;
        if let Some(known) = pods.get(&pod.uid)
            && known.pod == pod
            && known.active.is_some()
        {
            // Announced again (a pod source reconnecting after a restart): the listeners
            // stay open, so no connection waiting to be accepted is lost.
            return Ok(known.status());
        }
        if let Some(previous) = pods.remove(&pod.uid)
            && let Some(active) = previous.active
        {
            let same_place = previous.pod.netns == pod.netns && previous.pod.ips == pod.ips;
            active
                .stop(&self.inner.node, &self.inner.options.rules, !same_place)
                .await;
        }
        let uid = pod.uid.clone();
        let mut entry = PodEntry::new(pod);
        entry.awaiting = self.inner.options.hold_unknown;
        pods.insert(uid.clone(), entry);
        self.save(&pods)?;
        let state = self.inner.node.store().snapshot();
        let entry = pods
            .get_mut(&uid)
            .ok_or_else(|| CaptureError::Task("pod vanished".into()))?;
        self.reconcile_pod(entry, &state).await;
        let status = entry.status();
        let not_held = entry.awaiting && !entry.held;
        self.sync_probes(&pods).await;
        if not_held {
            // Fail closed: the runtime retries the ADD rather than start a pod whose
            // traffic would leave uncaptured until its workload is known.
            return Err(CaptureError::NotHeld {
                pod: status.pod.key(),
                reason: status.reason.unwrap_or_default(),
            });
        }
        Ok(status)
    }

    /// Forgets a pod: removes its rules, then closes its listeners. Returns whether it
    /// was known.
    ///
    /// # Errors
    /// The pod list cannot be saved.
    pub async fn remove(&self, uid: &str) -> Result<bool, CaptureError> {
        let mut pods = self.inner.pods.lock().await;
        let Some(mut entry) = pods.remove(uid) else {
            return Ok(false);
        };
        if let Some(active) = entry.active.take() {
            active
                .stop(&self.inner.node, &self.inner.options.rules, true)
                .await;
        }
        hold::let_go(&mut entry, self.inner.options.rules).await;
        self.sync_probes(&pods).await;
        self.save(&pods)?;
        tracing::info!(pod = %entry.pod.key(), "pod removed from capture");
        Ok(true)
    }

    /// Every known pod and its capture status.
    pub async fn list(&self) -> Vec<PodStatus> {
        self.inner
            .pods
            .lock()
            .await
            .values()
            .map(PodEntry::status)
            .collect()
    }

    /// Closes every pod's listeners but keeps the redirect rules and the pod list (the
    /// next proxy picks them up). Stops following the state.
    pub async fn shutdown(&self) {
        self.inner.stop.cancel();
        let mut pods = self.inner.pods.lock().await;
        for entry in pods.values_mut() {
            if let Some(active) = entry.active.take() {
                active
                    .stop(&self.inner.node, &self.inner.options.rules, false)
                    .await;
            }
        }
    }

    /// A successor proxy took the pods' listeners over: stops following the state and
    /// serving the pod socket (its clients are disconnected, so they reconnect to the
    /// successor) and each pod's DNS. Listeners stop with the node's shutdown; redirect
    /// rules, pod networks and the pod list stay.
    pub async fn release(&self) {
        self.inner.stop.cancel();
        for entry in self.inner.pods.lock().await.values() {
            if let Some(active) = &entry.active {
                active.release();
            }
        }
    }

    /// Makes the pod list the saved one again (after taking over from a proxy that may
    /// have changed it while this one was starting): adds or replaces pods that differ,
    /// forgets pods that are no longer listed.
    ///
    /// # Errors
    /// The state file cannot be read.
    pub async fn reload_saved(&self) -> Result<(), CaptureError> {
        let Some(path) = &self.inner.options.state_file else {
            return Ok(());
        };
        let saved = source::load_pods(path)?;
        let known: Vec<String> = self.inner.pods.lock().await.keys().cloned().collect();
        for uid in known
            .iter()
            .filter(|uid| saved.iter().all(|p| p.uid != **uid))
        {
            self.remove(uid).await?;
        }
        for pod in saved {
            let key = pod.key();
            if let Err(error) = self.add(pod).await {
                tracing::warn!(pod = %key, %error, "cannot capture a saved pod");
            }
        }
        Ok(())
    }

    /// The pods' listeners offered to a successor (and inherited from a predecessor).
    #[must_use]
    pub fn handoff(&self) -> &Handoff {
        &self.inner.handoff
    }

    /// Cancelled by [`CaptureManager::shutdown`].
    pub(crate) fn stopped(&self) -> CancellationToken {
        self.inner.stop.clone()
    }

    /// Takes the whole node out of the mesh (uninstall): removes every pod's redirect
    /// rules, closes its listeners and empties the saved pod list. From then on until the
    /// proxy restarts nothing is captured: pods are still recorded and listed, with the
    /// reason. Returns how many pods were captured before.
    ///
    /// # Errors
    /// The pod list cannot be saved.
    pub async fn release_all(&self) -> Result<usize, CaptureError> {
        self.inner.released.store(true, Ordering::SeqCst);
        let mut pods = self.inner.pods.lock().await;
        let mut released = 0;
        for entry in pods.values_mut() {
            if let Some(active) = entry.active.take() {
                active
                    .stop(&self.inner.node, &self.inner.options.rules, true)
                    .await;
                released += 1;
            }
            entry.reason = Some(RELEASED.into());
        }
        if let Some(probes) = &self.inner.probes {
            probes.remove().await;
        }
        self.save(&pods)?;
        tracing::info!(released, "released every pod: nothing is captured any more");
        Ok(released)
    }

    /// Lists the captured pods in the node's probe source NAT (when configured).
    async fn sync_probes(&self, pods: &BTreeMap<String, PodEntry>) {
        if let Some(probes) = &self.inner.probes
            && !self.is_released()
        {
            probes.sync(pods).await;
        }
    }

    fn is_released(&self) -> bool {
        self.inner.released.load(Ordering::SeqCst)
    }

    /// Saves the pod list (an empty one once released, so a restart captures nothing).
    fn save(&self, pods: &BTreeMap<String, PodEntry>) -> Result<(), CaptureError> {
        let Some(path) = &self.inner.options.state_file else {
            return Ok(());
        };
        let list: Vec<&PodInfo> = if self.is_released() {
            Vec::new()
        } else {
            pods.values().map(|e| &e.pod).collect()
        };
        source::save_pods(path, &list)
    }

    /// Re-evaluates every pod against the current mesh state: forgets pods whose network
    /// namespace is gone, then (with [`CaptureOptions::discover`]) looks for the pods of
    /// enrolled workloads no known pod holds.
    async fn reconcile(&self) {
        let state = self.inner.node.store().snapshot();
        let unclaimed = {
            let mut pods = self.inner.pods.lock().await;
            self.forget_vanished(&mut pods).await;
            for entry in pods.values_mut() {
                self.reconcile_pod(entry, &state).await;
            }
            self.sync_probes(&pods).await;
            self.unclaimed(&pods, &state)
        };
        if !unclaimed.is_empty() {
            self.discover(unclaimed).await;
        }
    }

    /// Forgets pods whose network namespace no longer exists (deleted while the proxy was
    /// down, or without a CNI DEL reaching it).
    async fn forget_vanished(&self, pods: &mut BTreeMap<String, PodEntry>) {
        let gone: Vec<String> = pods
            .iter()
            .filter(|(_, entry)| !entry.pod.netns.exists())
            .map(|(uid, _)| uid.clone())
            .collect();
        if gone.is_empty() {
            return;
        }
        for uid in gone {
            let Some(entry) = pods.remove(&uid) else {
                continue;
            };
            if let Some(active) = entry.active {
                // The namespace took its rules with it.
                active
                    .stop(&self.inner.node, &self.inner.options.rules, false)
                    .await;
            }
            tracing::info!(pod = %entry.pod.key(), netns = %entry.pod.netns.display(), "the pod's network namespace is gone: forgotten");
        }
        if let Err(error) = self.save(pods) {
            tracing::warn!(%error, "cannot save the pod list");
        }
    }

    /// Enrolled addresses of this node's workloads that no known pod holds and that were
    /// not looked for yet, with their workload (empty unless discovering).
    fn unclaimed(
        &self,
        pods: &BTreeMap<String, PodEntry>,
        state: &MeshState,
    ) -> BTreeMap<IpAddr, PodInfo> {
        if !self.inner.options.discover || self.is_released() {
            return BTreeMap::new();
        }
        let claimed: HashSet<IpAddr> = pods
            .values()
            .flat_map(|e| e.pod.ips.iter().copied())
            .collect();
        let mut owners = BTreeMap::new();
        for workload in self.inner.node.local_workloads(state) {
            let proto = workload.proto();
            for ip in workload
                .addresses()
                .iter()
                .filter(|ip| !claimed.contains(ip))
            {
                let pod = PodInfo {
                    uid: workload.uid().to_owned(),
                    name: proto.name.clone(),
                    namespace: proto.namespace.clone(),
                    netns: PathBuf::new(),
                    ips: Vec::new(),
                };
                owners.insert(*ip, pod);
            }
        }
        let all: HashSet<IpAddr> = owners.keys().copied().collect();
        let fresh = self
            .inner
            .searched
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .next(&all);
        owners.retain(|ip, _| fresh.contains(ip));
        owners
    }

    /// Looks for the network namespaces holding `owners`' addresses and adds each pod
    /// found (unless a pod with its addresses was announced meanwhile).
    async fn discover(&self, owners: BTreeMap<IpAddr, PodInfo>) {
        let wanted: HashSet<IpAddr> = owners.keys().copied().collect();
        let found = match tokio::task::spawn_blocking(move || discover::namespaces_holding(&wanted))
            .await
        {
            Ok(found) => found,
            Err(error) => {
                tracing::warn!(%error, "looking for pods in network namespaces failed");
                return;
            }
        };
        for netns in found {
            let Some(owner) = netns.ips.iter().find_map(|ip| owners.get(ip)) else {
                continue;
            };
            let pod = PodInfo {
                netns: netns.path,
                ips: netns.ips,
                ..owner.clone()
            };
            let announced =
                self.inner.pods.lock().await.values().any(|e| {
                    e.pod.uid == pod.uid || e.pod.ips.iter().any(|ip| pod.ips.contains(ip))
                });
            if announced {
                continue;
            }
            tracing::info!(pod = %pod.key(), netns = %pod.netns.display(), "found a pod that started before the node proxy");
            if let Err(error) = self.add(pod).await {
                tracing::warn!(%error, "cannot add a pod found in a network namespace");
            }
        }
    }

    fn follow_state(&self) {
        let manager = self.clone();
        let mut changes = self.inner.node.store().subscribe();
        let stop = self.inner.stop.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    changed = changes.changed() => if changed.is_err() { break },
                }
                manager.reconcile().await;
            }
        });
    }

    /// Starts or stops one pod's capture so it matches the state (holding a pod whose
    /// workload is not known yet).
    async fn reconcile_pod(&self, entry: &mut PodEntry, state: &MeshState) {
        let enrolled = self.enrolled_ip(&entry.pod, state);
        entry.enrolled = enrolled.is_some();
        if self.is_released() || enrolled.is_some() || hold::workload_known(&entry.pod, state) {
            entry.awaiting = false;
        }
        if entry.awaiting {
            hold::hold(entry, self.inner.options.rules).await;
            return;
        }
        let (wanted, why_not) = if self.is_released() {
            (None, RELEASED)
        } else {
            (enrolled, NOT_ENROLLED)
        };
        let inner = &self.inner;
        match (&entry.active, wanted) {
            (Some(active), Some(ip)) if active.ip == ip => return,
            (None, None) => {
                entry.reason = Some(why_not.into());
                hold::let_go(entry, self.inner.options.rules).await;
                return;
            }
            _ => {}
        }
        if let Some(active) = entry.active.take() {
            tracing::info!(pod = %entry.pod.key(), netns = %active.netns().display(), "stopping capture");
            active.stop(&inner.node, &inner.options.rules, true).await;
        }
        entry.reason = Some(why_not.into());
        let Some(ip) = wanted else {
            hold::let_go(entry, self.inner.options.rules).await;
            return;
        };
        let setup = PodSetup {
            node: &inner.node,
            rules: &inner.options.rules,
            handoff: &inner.handoff,
            dns: inner.dns.clone(),
            dns_upstream: inner.options.dns_upstream,
            dns_limits: Arc::clone(&inner.dns_limits),
        };
        match PodCapture::start(setup, &entry.pod, ip).await {
            Ok(active) => {
                tracing::info!(pod = %entry.pod.key(), %ip, netns = %entry.pod.netns.display(), "capturing pod traffic");
                entry.active = Some(active);
                entry.reason = None;
                // the capture table replaced the hold table
                entry.held = false;
            }
            Err(error) => {
                tracing::warn!(pod = %entry.pod.key(), %error, "cannot capture pod; retrying on the next state change");
                entry.reason = Some(error.to_string());
            }
        }
    }

    /// The pod address that belongs to a mesh-enrolled workload of this node, if any.
    fn enrolled_ip(&self, pod: &PodInfo, state: &MeshState) -> Option<IpAddr> {
        let node = &self.inner.node;
        node.local_workloads(state)
            .flat_map(|w| w.addresses().iter().copied())
            .find(|ip| pod.ips.contains(ip))
    }
}

fn validate(pod: &PodInfo) -> Result<(), CaptureError> {
    let invalid = |reason: &str| CaptureError::InvalidPod {
        uid: pod.uid.clone(),
        reason: reason.into(),
    };
    if pod.uid.is_empty() {
        return Err(invalid("uid is empty"));
    }
    if pod.ips.is_empty() {
        return Err(invalid("no ips"));
    }
    if !pod.netns.is_absolute() {
        return Err(invalid("netns must be an absolute path"));
    }
    Ok(())
}
