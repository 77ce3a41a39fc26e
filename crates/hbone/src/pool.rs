//! Connection pool: many CONNECT streams share one TLS + HTTP/2 connection per key.
//!
//! Per key there is a list of live connections and one handshake lock. A stream takes a
//! slot on the least loaded connection below the stream cap; when none has room, the
//! caller takes the handshake lock, so a burst of first requests performs one handshake
//! and the others reuse its connection (or share its failure). Each connection has a
//! driver task that polls HTTP/2, evicts the connection when it dies, and closes it after
//! the idle timeout.
//!
//! Spreading: all streams of one connection are framed, encrypted and decrypted by its one
//! driver task, so they share one core. With [`PoolConfig::spread_connections`] above 1, a
//! busy key opens more connections (up to that many) while each existing one carries at
//! least [`PoolConfig::spread_at_streams`] streams, so its streams run on several cores; a
//! failed spreading handshake falls back to the existing connections.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use bytes::Bytes;
use h2::client::SendRequest;

use crate::keepalive::{self, Keepalive};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::client::{
    ClientDriver, ConnectRequest, Established, OpenFailure, SocketHook, TunnelTarget, establish,
    open_stream,
};
use crate::error::{HandshakeError, HboneError};
use crate::stream::{HboneStream, PeerCertificates};

/// Attempts to open a stream when pooled connections turn out to be closing, or a new one
/// is ended by a draining server before its first request.
const OPEN_ATTEMPTS: usize = 3;

/// Pool limits.
#[derive(Clone)]
pub struct PoolConfig {
    /// Streams per connection before another connection is opened (default 100).
    pub max_streams_per_connection: usize,
    /// Connections per key a busy key is spread over (default 1: no spreading; more
    /// connections are then opened only when every one is at the stream cap).
    pub spread_connections: usize,
    /// A connection this many streams busy counts as busy for spreading (default 1).
    pub spread_at_streams: usize,
    /// A connection with no stream for this long is closed (default 5 minutes).
    pub idle_timeout: Duration,
    /// Limit for TCP connect + TLS handshake + HTTP/2 preface (default 10 s).
    pub connect_timeout: Duration,
    /// HTTP/2 PINGs on every pooled connection, busy or idle, so a peer that vanished
    /// without closing (node lost, network partition) is noticed and its connection
    /// replaced instead of hanging the streams on it (default 30 s / 10 s; `None`: off).
    pub keepalive: Option<Keepalive>,
    /// Called on each outbound socket before connect (e.g. to set `SO_MARK`).
    pub socket_hook: Option<SocketHook>,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            max_streams_per_connection: 100,
            spread_connections: 1,
            spread_at_streams: 1,
            idle_timeout: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(10),
            keepalive: Some(Keepalive::default()),
            socket_hook: None,
        }
    }
}

impl fmt::Debug for PoolConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolConfig")
            .field(
                "max_streams_per_connection",
                &self.max_streams_per_connection,
            )
            .field("spread_connections", &self.spread_connections)
            .field("spread_at_streams", &self.spread_at_streams)
            .field("idle_timeout", &self.idle_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("keepalive", &self.keepalive)
            .field("socket_hook", &self.socket_hook.is_some())
            .finish()
    }
}

/// Live pool counters, readable at any time (e.g. by the metrics layer).
#[derive(Debug, Default)]
pub struct PoolStats {
    handshakes: AtomicU64,
    handshake_failures: AtomicU64,
    connections_open: AtomicU64,
    streams_open: AtomicU64,
    streams_opened: AtomicU64,
}

/// A point-in-time copy of [`PoolStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStatsSnapshot {
    /// Connections established (TCP + TLS + HTTP/2 handshakes that succeeded).
    pub handshakes: u64,
    /// Handshakes that failed.
    pub handshake_failures: u64,
    /// Connections currently open.
    pub connections_open: u64,
    /// Streams currently open or being opened.
    pub streams_open: u64,
    /// CONNECT streams that got a 200 answer, in total.
    pub streams_opened: u64,
}

impl PoolStats {
    /// Reads every counter.
    #[must_use]
    pub fn snapshot(&self) -> PoolStatsSnapshot {
        PoolStatsSnapshot {
            handshakes: self.handshakes.load(Ordering::Relaxed),
            handshake_failures: self.handshake_failures.load(Ordering::Relaxed),
            connections_open: self.connections_open.load(Ordering::Relaxed),
            streams_open: self.streams_open.load(Ordering::Relaxed),
            streams_opened: self.streams_opened.load(Ordering::Relaxed),
        }
    }
}

/// HBONE client connection pool. `K` is the caller's key; it must identify everything
/// that makes a connection non-shareable (source identity, expected destination
/// identity, source IP, tunnel address). Cloning the pool is cheap and shares it.
pub struct Pool<K> {
    inner: Arc<PoolInner<K>>,
}

impl<K> Clone for Pool<K> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

struct PoolInner<K> {
    config: PoolConfig,
    stats: Arc<PoolStats>,
    entries: Mutex<HashMap<K, Arc<KeyEntry>>>,
}

/// Connections and handshake serialization for one key.
#[derive(Default)]
struct KeyEntry {
    conns: Mutex<Vec<Arc<PooledConn>>>,
    handshake: tokio::sync::Mutex<Option<Arc<HandshakeError>>>,
    handshakes_finished: AtomicU64,
}

/// One pooled TLS + HTTP/2 connection.
pub(crate) struct PooledConn {
    sender: SendRequest<Bytes>,
    peer: PeerCertificates,
    usable: AtomicBool,
    active: AtomicUsize,
    /// When `active` last dropped to zero; guarded so it is consistent with `active`.
    idle_since: Mutex<Instant>,
    became_idle: Notify,
}

/// A reserved stream on a pooled connection, released on drop.
pub(crate) struct StreamSlot {
    conn: Arc<PooledConn>,
    stats: Arc<PoolStats>,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.stats.streams_open.fetch_sub(1, Ordering::Relaxed);
        let mut idle_since = lock(&self.conn.idle_since);
        if self.conn.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            *idle_since = Instant::now();
            drop(idle_since);
            self.conn.became_idle.notify_one();
        }
    }
}

impl<K> Pool<K>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    /// An empty pool.
    #[must_use]
    pub fn new(config: PoolConfig) -> Self {
        Self {
            inner: Arc::new(PoolInner {
                config,
                stats: Arc::default(),
                entries: Mutex::default(),
            }),
        }
    }

    /// The pool's live counters.
    #[must_use]
    pub fn stats(&self) -> Arc<PoolStats> {
        Arc::clone(&self.inner.stats)
    }

    /// Opens a CONNECT stream to `request.authority` through `target`, reusing a pooled
    /// connection for `key` when one has room.
    ///
    /// # Errors
    /// [`HboneError::Handshake`] when no connection could be established,
    /// [`HboneError::Status`] when the server refused the stream (400/401/503...),
    /// [`HboneError::Http2`] when the exchange failed.
    pub async fn connect(
        &self,
        key: K,
        target: &TunnelTarget,
        request: &ConnectRequest,
    ) -> Result<HboneStream, HboneError> {
        let entry = self.inner.entry(&key);
        let result = self.open_with_retries(&key, &entry, target, request).await;
        if result.is_err() {
            drop(entry);
            self.inner.forget_if_unused(&key);
        }
        result
    }

    async fn open_with_retries(
        &self,
        key: &K,
        entry: &Arc<KeyEntry>,
        target: &TunnelTarget,
        request: &ConnectRequest,
    ) -> Result<HboneStream, HboneError> {
        let mut attempt = 1;
        loop {
            let slot = match self.reserve_or_connect(key, entry, target).await {
                Ok(slot) => slot,
                Err(HboneError::Handshake(error))
                    if error.peer_went_away() && attempt < OPEN_ATTEMPTS =>
                {
                    tracing::debug!(%error, attempt, "new HBONE connection ended by its server; trying another");
                    attempt += 1;
                    continue;
                }
                Err(error) => return Err(error),
            };
            match open_stream(&slot.conn.sender, target.tunnel_addr, request).await {
                Ok((send, recv)) => {
                    self.inner
                        .stats
                        .streams_opened
                        .fetch_add(1, Ordering::Relaxed);
                    let peer = Arc::clone(&slot.conn.peer);
                    return Ok(HboneStream::new(send, recv, peer, Some(slot)));
                }
                Err(OpenFailure::Final(error)) => return Err(error),
                Err(OpenFailure::ConnectionUnusable(error)) => {
                    tracing::debug!(%error, attempt, "pooled HBONE connection unusable, evicting");
                    entry.evict(&slot.conn);
                    if attempt == OPEN_ATTEMPTS {
                        return Err(error);
                    }
                    attempt += 1;
                }
            }
        }
    }

    async fn reserve_or_connect(
        &self,
        key: &K,
        entry: &Arc<KeyEntry>,
        target: &TunnelTarget,
    ) -> Result<StreamSlot, HboneError> {
        let inner = &self.inner;
        let caps = Caps::of(&inner.config);
        if let Reserved::Slot(slot) = entry.try_reserve(caps, &inner.stats) {
            return Ok(slot);
        }
        let finished_before = entry.handshakes_finished.load(Ordering::Acquire);
        let mut last_failure = entry.handshake.lock().await;
        if let Reserved::Slot(slot) = entry.try_reserve(caps, &inner.stats) {
            return Ok(slot);
        }
        if entry.handshakes_finished.load(Ordering::Acquire) != finished_before
            && let Some(failure) = last_failure.as_ref()
        {
            // The handshake we waited for failed: share its error instead of retrying
            // serially once per waiter (or use a connection with room when spreading).
            let failure = HboneError::Handshake(Arc::clone(failure));
            return entry.reserve_unspread(caps, &inner.stats).ok_or(failure);
        }
        let config = &inner.config;
        let result = establish(target, config.socket_hook.as_ref(), config.connect_timeout).await;
        entry.handshakes_finished.fetch_add(1, Ordering::Release);
        match result {
            Ok(established) => {
                *last_failure = None;
                Ok(self.install(key, entry, established))
            }
            Err(error) => {
                inner
                    .stats
                    .handshake_failures
                    .fetch_add(1, Ordering::Relaxed);
                let error = Arc::new(error);
                *last_failure = Some(Arc::clone(&error));
                if let Some(slot) = entry.reserve_unspread(caps, &inner.stats) {
                    tracing::debug!(%error, "could not spread over another HBONE connection");
                    return Ok(slot);
                }
                Err(HboneError::Handshake(error))
            }
        }
    }

    /// Adds a new connection to the key's list with one slot taken, and spawns its driver.
    fn install(&self, key: &K, entry: &Arc<KeyEntry>, established: Established) -> StreamSlot {
        let stats = &self.inner.stats;
        let conn = Arc::new(PooledConn {
            sender: established.sender,
            peer: established.peer,
            usable: AtomicBool::new(true),
            active: AtomicUsize::new(1),
            idle_since: Mutex::new(Instant::now()),
            became_idle: Notify::new(),
        });
        lock(&entry.conns).push(Arc::clone(&conn));
        stats.handshakes.fetch_add(1, Ordering::Relaxed);
        stats.connections_open.fetch_add(1, Ordering::Relaxed);
        stats.streams_open.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(drive_connection(
            Arc::downgrade(&self.inner),
            key.clone(),
            Arc::clone(entry),
            Arc::clone(&conn),
            established.driver,
        ));
        StreamSlot {
            conn,
            stats: Arc::clone(stats),
        }
    }
}

impl<K: Hash + Eq + Clone> PoolInner<K> {
    fn entry(&self, key: &K) -> Arc<KeyEntry> {
        let mut entries = lock(&self.entries);
        if let Some(entry) = entries.get(key) {
            return Arc::clone(entry);
        }
        let entry = Arc::new(KeyEntry::default());
        entries.insert(key.clone(), Arc::clone(&entry));
        entry
    }

    /// Drops the key's entry when it has no connection and nobody else is using it.
    fn forget_if_unused(&self, key: &K) {
        let mut entries = lock(&self.entries);
        let unused = entries
            .get(key)
            .is_some_and(|entry| Arc::strong_count(entry) == 1 && lock(&entry.conns).is_empty());
        if unused {
            entries.remove(key);
        }
    }
}

/// The pool's limits as [`KeyEntry::try_reserve`] applies them.
#[derive(Clone, Copy)]
struct Caps {
    streams: usize,
    spread_connections: usize,
    spread_at_streams: usize,
}

impl Caps {
    fn of(config: &PoolConfig) -> Self {
        Self {
            streams: config.max_streams_per_connection.max(1),
            spread_connections: config.spread_connections.max(1),
            spread_at_streams: config.spread_at_streams.max(1),
        }
    }
}

/// What [`KeyEntry::try_reserve`] found.
enum Reserved {
    Slot(StreamSlot),
    /// Every connection is at the stream cap (or there is none): open one.
    Full,
    /// Every connection is busy and the key may have more: open one to spread over.
    Spread,
}

impl KeyEntry {
    /// Takes a slot on the least loaded usable connection, unless a new connection is due.
    fn try_reserve(&self, caps: Caps, stats: &Arc<PoolStats>) -> Reserved {
        let conns = lock(&self.conns);
        let usable = conns
            .iter()
            .filter(|conn| conn.usable.load(Ordering::Acquire));
        let Some(least) = usable
            .clone()
            .min_by_key(|conn| conn.active.load(Ordering::Acquire))
        else {
            return Reserved::Full;
        };
        let active = least.active.load(Ordering::Acquire);
        if active >= caps.streams {
            return Reserved::Full;
        }
        if active >= caps.spread_at_streams && usable.count() < caps.spread_connections {
            return Reserved::Spread;
        }
        Reserved::Slot(take_slot(least, stats))
    }

    /// A slot on any connection with room, spreading or not.
    fn reserve_unspread(&self, caps: Caps, stats: &Arc<PoolStats>) -> Option<StreamSlot> {
        let unspread = Caps {
            spread_connections: 1,
            ..caps
        };
        match self.try_reserve(unspread, stats) {
            Reserved::Slot(slot) => Some(slot),
            Reserved::Full | Reserved::Spread => None,
        }
    }

    fn evict(&self, conn: &Arc<PooledConn>) {
        conn.usable.store(false, Ordering::Release);
        lock(&self.conns).retain(|c| !Arc::ptr_eq(c, conn));
    }

    /// Evicts `conn` if it has had no stream for `timeout`; decided under the list lock so
    /// no slot can be reserved concurrently.
    fn evict_if_idle(&self, conn: &Arc<PooledConn>, timeout: Duration) -> bool {
        let mut conns = lock(&self.conns);
        let idle_since = *lock(&conn.idle_since);
        if conn.active.load(Ordering::Acquire) != 0 || idle_since + timeout > Instant::now() {
            return false;
        }
        conn.usable.store(false, Ordering::Release);
        conns.retain(|c| !Arc::ptr_eq(c, conn));
        true
    }
}

fn take_slot(conn: &Arc<PooledConn>, stats: &Arc<PoolStats>) -> StreamSlot {
    conn.active.fetch_add(1, Ordering::AcqRel);
    stats.streams_open.fetch_add(1, Ordering::Relaxed);
    StreamSlot {
        conn: Arc::clone(conn),
        stats: Arc::clone(stats),
    }
}

impl PooledConn {
    /// When the connection expires if it stays idle; `None` while streams are open.
    fn idle_deadline(&self, timeout: Duration) -> Option<Instant> {
        let idle_since = lock(&self.idle_since);
        (self.active.load(Ordering::Acquire) == 0).then(|| *idle_since + timeout)
    }
}

/// Polls the HTTP/2 connection until it ends or expires idle, then removes it.
async fn drive_connection<K>(
    pool: Weak<PoolInner<K>>,
    key: K,
    entry: Arc<KeyEntry>,
    conn: Arc<PooledConn>,
    driver: ClientDriver,
) where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    let Some((idle_timeout, keepalive)) = pool
        .upgrade()
        .map(|p| (p.config.idle_timeout, p.config.keepalive))
    else {
        return;
    };
    let stats = pool.upgrade().map(|p| Arc::clone(&p.stats));
    let mut driver = driver;
    let pings = driver.ping_pong().zip(keepalive);
    tokio::select! {
        result = &mut driver => {
            if let Err(error) = result {
                tracing::debug!(%error, "pooled HBONE connection failed");
            }
        }
        () = expire_when_idle(&entry, &conn, idle_timeout) => {
            tracing::debug!(?idle_timeout, "closing idle HBONE connection");
        }
        () = keepalive::until_peer_silent(pings) => {}
    }
    entry.evict(&conn);
    drop(entry);
    if let Some(stats) = stats {
        stats.connections_open.fetch_sub(1, Ordering::Relaxed);
    }
    if let Some(pool) = pool.upgrade() {
        pool.forget_if_unused(&key);
    }
}

async fn expire_when_idle(entry: &KeyEntry, conn: &Arc<PooledConn>, timeout: Duration) {
    loop {
        match conn.idle_deadline(timeout) {
            None => conn.became_idle.notified().await,
            Some(deadline) => {
                tokio::time::sleep_until(deadline).await;
                if entry.evict_if_idle(conn, timeout) {
                    return;
                }
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<K> fmt::Debug for Pool<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("config", &self.inner.config)
            .field("stats", &self.inner.stats.snapshot())
            .finish_non_exhaustive()
    }
}
