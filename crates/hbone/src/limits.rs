//! Limits on what inbound HBONE clients hold open: connections and tunnels (CONNECT
//! streams), per peer identity and in total, shared by every server given the same
//! [`InboundLimits`].
//!
//! A new connection over a limit is closed right after the TLS handshake (the identity is
//! known only then); a new tunnel over a limit is answered 503. What is already open is
//! never touched. Each refusal is reported to the owner's callback (for its metrics) and
//! logged, at most once per [`WARN_EVERY`] per kind.
//!
//! The crate does not read certificates: the owner says how a peer's certificate chain
//! maps to an identity (for the mesh, its SPIFFE id); a chain without one is counted under
//! an empty identity.
//!
//! [`InboundLimits::counted`] is what the mesh's HBONE servers (node proxy, waypoint) use:
//! refusals counted in `weft_hbone_inbound_refused_total{kind, limit}` of the process's
//! metrics registry.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::stream::PeerCertificates;

/// Shortest time between two log lines about refusals of the same kind.
pub const WARN_EVERY: Duration = Duration::from_secs(10);

/// The limits (each must be at least 1 to let anything in).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitConfig {
    /// Open connections of one peer identity.
    pub connections_per_identity: usize,
    /// Open connections in all.
    pub connections_total: usize,
    /// Open tunnels of one peer identity.
    pub tunnels_per_identity: usize,
    /// Open tunnels in all.
    pub tunnels_total: usize,
}

impl Default for LimitConfig {
    /// Generous for a node proxy (a client node pools a few connections per identity
    /// pair, each carrying up to 1000 tunnels) while keeping one identity from taking
    /// every descriptor of a process with the usual 64 Ki limit.
    fn default() -> Self {
        Self {
            connections_per_identity: 256,
            connections_total: 8192,
            tunnels_per_identity: 4096,
            tunnels_total: 32_768,
        }
    }
}

/// What was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// A connection.
    Connection,
    /// A tunnel.
    Tunnel,
}

/// Which limit refused it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// The peer identity's.
    Identity,
    /// The total.
    Total,
}

impl Held {
    /// `connection` or `tunnel` (a metric label value).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connection => "connection",
            Self::Tunnel => "tunnel",
        }
    }
}

impl Limit {
    /// `identity` or `total` (a metric label value).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Identity => "identity",
            Self::Total => "total",
        }
    }
}

/// Maps a peer's certificate chain to its identity.
pub type Identify = Box<dyn Fn(&PeerCertificates) -> Option<String> + Send + Sync>;
/// Told of every refusal.
pub type OnRefused = Box<dyn Fn(Held, Limit) + Send + Sync>;
/// Label set of the refusal counter of [`InboundLimits::counted`].
type RefusalLabels = [(&'static str, &'static str); 2];

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    connections: usize,
    tunnels: usize,
}

impl Counts {
    fn get(self, held: Held) -> usize {
        match held {
            Held::Connection => self.connections,
            Held::Tunnel => self.tunnels,
        }
    }

    fn slot(&mut self, held: Held) -> &mut usize {
        match held {
            Held::Connection => &mut self.connections,
            Held::Tunnel => &mut self.tunnels,
        }
    }
}

#[derive(Debug, Default)]
struct Table {
    by_identity: HashMap<Arc<str>, Counts>,
    total: Counts,
    last_warned: [Option<Instant>; 2],
}

/// Connection and tunnel counts checked against a [`LimitConfig`].
pub struct InboundLimits {
    config: LimitConfig,
    identify: Identify,
    on_refused: OnRefused,
    table: Mutex<Table>,
}

impl fmt::Debug for InboundLimits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InboundLimits")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl InboundLimits {
    /// Limits `config`; `identify` names a peer, `on_refused` hears of each refusal.
    #[must_use]
    pub fn new(config: LimitConfig, identify: Identify, on_refused: OnRefused) -> Self {
        Self {
            config,
            identify,
            on_refused,
            table: Mutex::default(),
        }
    }

    /// Limits `config` whose refusals are counted in
    /// `weft_hbone_inbound_refused_total{kind="connection"|"tunnel", limit="identity"|"total"}`,
    /// registered in `registry`.
    #[must_use]
    pub fn counted(config: LimitConfig, identify: Identify, registry: &mut Registry) -> Arc<Self> {
        let refused = Family::<RefusalLabels, Counter>::default();
        registry.register(
            "weft_hbone_inbound_refused",
            "New inbound HBONE connections (closed after TLS) and tunnels (answered 503) \
             refused because a limit was reached (limit: identity, the client identity's; total)",
            refused.clone(),
        );
        let on_refused = move |held: Held, limit: Limit| {
            let labels = [("kind", held.as_str()), ("limit", limit.as_str())];
            refused.get_or_create(&labels).inc();
        };
        Arc::new(Self::new(config, identify, Box::new(on_refused)))
    }

    /// The peer identity limits are counted under.
    #[must_use]
    pub fn identity_of(&self, certificates: &PeerCertificates) -> Arc<str> {
        (self.identify)(certificates).unwrap_or_default().into()
    }

    /// Takes a slot of kind `held` for `identity`, or says which limit refuses it.
    ///
    /// # Errors
    /// The identity's or the total limit is reached (reported and logged).
    pub fn admit(self: &Arc<Self>, held: Held, identity: &Arc<str>) -> Result<Slot, Limit> {
        let (per_identity, total) = match held {
            Held::Connection => (
                self.config.connections_per_identity,
                self.config.connections_total,
            ),
            Held::Tunnel => (self.config.tunnels_per_identity, self.config.tunnels_total),
        };
        let mut table = self.lock();
        let mine = table.by_identity.get(identity).copied().unwrap_or_default();
        let refused = if table.total.get(held) >= total {
            Some(Limit::Total)
        } else if mine.get(held) >= per_identity {
            Some(Limit::Identity)
        } else {
            None
        };
        if let Some(limit) = refused {
            let warn = Self::should_warn(&mut table, held);
            drop(table);
            if warn {
                tracing::warn!(kind = held.as_str(), limit = limit.as_str(), %identity, "refusing new inbound HBONE {}s: limit reached (open ones are kept)", held.as_str());
            }
            (self.on_refused)(held, limit);
            return Err(limit);
        }
        *table.total.slot(held) += 1;
        *table
            .by_identity
            .entry(Arc::clone(identity))
            .or_default()
            .slot(held) += 1;
        Ok(Slot {
            limits: Arc::clone(self),
            identity: Arc::clone(identity),
            held,
        })
    }

    /// Open connections and tunnels of `identity` (all when `None`).
    #[must_use]
    pub fn open(&self, identity: Option<&str>) -> (usize, usize) {
        let table = self.lock();
        let counts = match identity {
            Some(identity) => table.by_identity.get(identity).copied().unwrap_or_default(),
            None => table.total,
        };
        (counts.connections, counts.tunnels)
    }

    fn should_warn(table: &mut Table, held: Held) -> bool {
        let last = &mut table.last_warned[held as usize];
        let now = Instant::now();
        let due = last.is_none_or(|at| now.duration_since(at) >= WARN_EVERY);
        if due {
            *last = Some(now);
        }
        due
    }

    fn release(&self, held: Held, identity: &Arc<str>) {
        let mut table = self.lock();
        *table.total.slot(held) -= 1;
        if let Some(counts) = table.by_identity.get_mut(identity) {
            *counts.slot(held) -= 1;
            if counts.connections == 0 && counts.tunnels == 0 {
                table.by_identity.remove(identity);
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// An open connection or tunnel counted against the limits; released when dropped.
#[derive(Debug)]
pub struct Slot {
    limits: Arc<InboundLimits>,
    identity: Arc<str>,
    held: Held,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.limits.release(self.held, &self.identity);
    }
}
