//! Forwarding queries for names outside the mesh to the upstream resolver, with bounds.
//!
//! All of one pod's forwarded queries share one UDP socket to the upstream (made on the
//! first forwarded query, inside the pod's network, by the pod's [`UdpFactory`]) and one
//! task reading its answers. A query in flight is one entry of a table keyed by the
//! transaction id the proxy gave it (random, unique among the pod's queries in flight);
//! the entry remembers the client's own id and where the answer goes (the pod's DNS UDP
//! socket and the client's address, or the waiting TCP connection). An answer is matched
//! to its entry by id, given back the client's id and delivered; an entry whose upstream
//! stays silent for [`Upstream::timeout`] is answered SERVFAIL.
//!
//! Queries in flight are capped per pod and across the node ([`ForwardLimits`]): a query
//! over either cap is answered SERVFAIL at once and counted in
//! `weft_dns_queries_refused_total{limit="pod"|"node"}`, so one pod flooding a silent
//! upstream costs a bounded amount of memory and no descriptors, and other pods' queries
//! keep their share.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio::net::UdpSocket;
use tokio::sync::{Notify, OnceCell, OwnedSemaphorePermit, Semaphore, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::DnsResolver;

/// Largest answer read from the upstream (the most a UDP datagram can carry).
const MAX_ANSWER: usize = 65_535;

/// Makes an unconnected UDP socket for talking to the upstream resolver.
pub type UdpFactory =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = io::Result<UdpSocket>> + Send>> + Send + Sync>;

/// The upstream resolver for names outside the mesh.
#[derive(Clone)]
pub struct Upstream {
    /// Resolver address.
    pub addr: SocketAddr,
    /// Where the socket comes from.
    pub socket: UdpFactory,
    /// How long to wait for its answer.
    pub timeout: Duration,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("addr", &self.addr)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Label set of the refusal counter.
type LimitLabel = [(&'static str, &'static str); 1];

/// The caps on forwarded queries in flight, shared by every pod of the node.
#[derive(Debug)]
pub struct ForwardLimits {
    per_pod: usize,
    node: Arc<Semaphore>,
    refused: Family<LimitLabel, Counter>,
}

impl ForwardLimits {
    /// At most `per_pod` queries of one pod and `node` queries in all wait for the
    /// upstream at a time.
    #[must_use]
    pub fn new(per_pod: usize, node: usize) -> Self {
        Self {
            per_pod,
            node: Arc::new(Semaphore::new(node)),
            refused: Family::default(),
        }
    }

    /// Registers `weft_dns_queries_refused_total{limit}`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "weft_dns_queries_refused",
            "Forwarded DNS queries answered SERVFAIL at once because the queries in flight \
             reached a limit (pod: the asking pod's, node: the whole node's)",
            self.refused.clone(),
        );
    }

    fn refuse(&self, limit: &'static str) -> Full {
        self.refused.get_or_create(&[("limit", limit)]).inc();
        Full(limit)
    }
}

/// A query refused because a limit is reached (`pod` or `node`).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("too many DNS queries in flight ({0} limit)")]
pub struct Full(pub &'static str);

/// Where the answer of a query goes.
#[derive(Debug)]
pub enum ReplyTo {
    /// Sent from the pod's DNS socket to the client's address.
    Datagram {
        /// The pod's DNS UDP socket.
        socket: Arc<UdpSocket>,
        /// The asking client.
        client: SocketAddr,
    },
    /// Handed to a waiting task (a DNS-over-TCP connection).
    Waiter(oneshot::Sender<Vec<u8>>),
}

impl ReplyTo {
    /// Answers SERVFAIL to `query` (nothing if `query` is not a DNS message).
    pub(crate) fn fail(self, query: &[u8]) {
        if let Some(failure) = DnsResolver::server_failure(query) {
            self.deliver(failure);
        }
    }

    fn deliver(self, answer: Vec<u8>) {
        match self {
            Self::Datagram { socket, client } => {
                // A full send buffer loses this answer; the client retries, as over UDP.
                if let Err(error) = socket.try_send_to(&answer, client) {
                    tracing::debug!(%client, %error, "cannot send forwarded DNS answer");
                }
            }
            Self::Waiter(waiter) => {
                let _ = waiter.send(answer);
            }
        }
    }
}

/// A query waiting for the upstream.
#[derive(Debug)]
struct Pending {
    /// The query as the client sent it (its own id), for the SERVFAIL on timeout.
    query: Vec<u8>,
    reply: ReplyTo,
    deadline: Instant,
    _node_slot: OwnedSemaphorePermit,
}

/// One pod's queries in flight: by proxy id, and (id, deadline) in deadline order.
#[derive(Debug, Default)]
struct InFlight {
    by_id: HashMap<u16, Pending>,
    deadlines: VecDeque<(Instant, u16)>,
    /// Whether reaching the pod's limit was logged (again once it has drained).
    full_logged: bool,
}

impl InFlight {
    /// Removes the entries whose deadline passed; returns them.
    fn expire(&mut self, now: Instant) -> Vec<Pending> {
        let mut expired = Vec::new();
        while let Some(&(deadline, id)) = self.deadlines.front() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_front();
            // The id may be answered already, or reused by a later query.
            if self.by_id.get(&id).is_some_and(|p| p.deadline == deadline) {
                expired.extend(self.by_id.remove(&id));
            }
        }
        expired
    }

    /// A random id no query in flight uses (the table holds far fewer than 65 536).
    fn free_id(&self) -> u16 {
        loop {
            let id = rand::random::<u16>();
            if !self.by_id.contains_key(&id) {
                return id;
            }
        }
    }
}

/// What the pod's forwarder and its reading task share.
#[derive(Debug)]
struct Shared {
    table: Mutex<InFlight>,
    /// Woken when the table goes from empty to busy (the reader then watches deadlines).
    busy: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, InFlight> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Forwards one pod's queries to the upstream over one shared socket.
#[derive(Debug)]
pub struct Forwarder {
    upstream: Upstream,
    limits: Arc<ForwardLimits>,
    socket: OnceCell<Arc<UdpSocket>>,
    shared: Arc<Shared>,
    stop: CancellationToken,
}

impl Forwarder {
    /// A forwarder for one pod, within the node's `limits`; its reading task lives until
    /// `stop` and the queries in flight then are answered or expired.
    #[must_use]
    pub fn new(upstream: Upstream, limits: Arc<ForwardLimits>, stop: CancellationToken) -> Self {
        Self {
            upstream,
            limits,
            socket: OnceCell::new(),
            shared: Arc::new(Shared {
                table: Mutex::default(),
                busy: Notify::new(),
            }),
            stop,
        }
    }

    /// The upstream's address.
    #[must_use]
    pub fn upstream(&self) -> SocketAddr {
        self.upstream.addr
    }

    /// Sends `query` upstream; its answer goes to `reply`: the upstream's, or SERVFAIL
    /// after the timeout, or SERVFAIL at once when it cannot be sent.
    ///
    /// # Errors
    /// Why it was answered SERVFAIL at once: a limit is reached ([`Full`]) or the socket
    /// cannot be made or used.
    pub async fn forward(&self, query: &[u8], reply: ReplyTo) -> Result<(), ForwardError> {
        self.send(query, reply).await.map_err(|(error, reply)| {
            reply.fail(query);
            error
        })
    }

    async fn send(&self, query: &[u8], reply: ReplyTo) -> Result<(), (ForwardError, ReplyTo)> {
        if query.len() < 2 {
            return Err((io::Error::from(io::ErrorKind::InvalidInput).into(), reply));
        }
        let Ok(node_slot) = Arc::clone(&self.limits.node).try_acquire_owned() else {
            return Err((self.limits.refuse("node").into(), reply));
        };
        let socket = match self.socket().await {
            Ok(socket) => socket,
            Err(error) => return Err((error, reply)),
        };
        let id = {
            let mut table = self.shared.lock();
            if table.by_id.len() >= self.limits.per_pod {
                if !table.full_logged {
                    table.full_logged = true;
                    tracing::warn!(upstream = %self.upstream.addr, limit = self.limits.per_pod, "a pod reached its limit of DNS queries in flight; answering SERVFAIL until some are answered");
                }
                return Err((self.limits.refuse("pod").into(), reply));
            }
            let id = table.free_id();
            let deadline = Instant::now() + self.upstream.timeout;
            let pending = Pending {
                query: query.to_vec(),
                reply,
                deadline,
                _node_slot: node_slot,
            };
            table.by_id.insert(id, pending);
            table.deadlines.push_back((deadline, id));
            if table.by_id.len() == 1 {
                self.shared.busy.notify_one();
            }
            id
        };
        let mut sent = query.to_vec();
        sent[..2].copy_from_slice(&id.to_be_bytes());
        match socket.send(&sent).await {
            Ok(_) => Ok(()),
            // Not sent: take the entry back (unless the reader already answered it).
            Err(error) => match self.shared.lock().by_id.remove(&id) {
                Some(pending) => Err((error.into(), pending.reply)),
                None => Ok(()),
            },
        }
    }

    /// The shared socket, made (and its reading task started) on first use.
    async fn socket(&self) -> Result<Arc<UdpSocket>, ForwardError> {
        let socket = self
            .socket
            .get_or_try_init(|| async {
                let socket = (self.upstream.socket)().await?;
                socket.connect(self.upstream.addr).await?;
                let socket = Arc::new(socket);
                let reader = read_answers(
                    Arc::clone(&socket),
                    Arc::clone(&self.shared),
                    self.stop.clone(),
                );
                tokio::spawn(reader);
                Ok::<_, io::Error>(socket)
            })
            .await?;
        Ok(Arc::clone(socket))
    }
}

/// Why a query could not be forwarded.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// A limit is reached.
    #[error(transparent)]
    Full(#[from] Full),
    /// The upstream socket failed.
    #[error("DNS upstream socket: {0}")]
    Io(#[from] io::Error),
}

/// Reads the upstream's answers and expires silent queries; after `stop` (the pod's DNS
/// stopped, e.g. handed to a restarted proxy) only until the queries already in flight are
/// answered or expired, so none of them is left to the client's retry timer.
async fn read_answers(socket: Arc<UdpSocket>, shared: Arc<Shared>, stop: CancellationToken) {
    let mut buf = vec![0u8; MAX_ANSWER];
    let mut stopping = false;
    loop {
        let next_deadline = {
            let table = shared.lock();
            if stopping && table.by_id.is_empty() {
                return;
            }
            table.deadlines.front().map(|&(at, _)| at)
        };
        let expiry = async {
            match next_deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => shared.busy.notified().await,
            }
        };
        tokio::select! {
            () = stop.cancelled(), if !stopping => stopping = true,
            () = expiry => expire(&shared),
            received = socket.recv(&mut buf) => match received {
                Ok(len) => answer(&shared, &mut buf[..len]),
                // An ICMP error from the upstream (refused) or a transient failure: the
                // queries concerned time out.
                Err(error) => tracing::debug!(%error, "DNS upstream receive failed"),
            },
        }
    }
}

/// Delivers an upstream answer to the query it belongs to (unknown ids are dropped).
fn answer(shared: &Shared, answer: &mut [u8]) {
    let Some(id) = answer.get(..2).map(|id| u16::from_be_bytes([id[0], id[1]])) else {
        return;
    };
    let Some(pending) = release(shared, |table| table.by_id.remove(&id)) else {
        tracing::debug!(id, "DNS answer for no query in flight; dropped");
        return;
    };
    answer[..2].copy_from_slice(&pending.query[..2]);
    pending.reply.deliver(answer.to_vec());
}

/// Answers SERVFAIL to the queries whose upstream stayed silent.
fn expire(shared: &Shared) {
    let expired = release(shared, |table| Some(table.expire(Instant::now()))).unwrap_or_default();
    for pending in expired {
        pending.reply.fail(&pending.query);
    }
}

/// Runs `take` on the table and re-arms the "limit reached" log once it has drained.
fn release<T>(shared: &Shared, take: impl FnOnce(&mut InFlight) -> Option<T>) -> Option<T> {
    let mut table = shared.lock();
    let taken = take(&mut table);
    if table.by_id.is_empty() {
        table.full_logged = false;
    }
    taken
}
