//! Leader election between control plane replicas with a `coordination.k8s.io/v1` Lease:
//! every replica serves xDS and the CA, and only the Lease's holder writes to the API
//! (status, the trust bundle ConfigMaps).
//!
//! The holder renews the Lease every `renew_interval`; the others check it every
//! `retry_interval` and take it over once it has not changed for `lease_duration`,
//! measured on their own clock from when they saw it change (not from the `renewTime`
//! written by another machine's clock). Every write carries the resourceVersion it was
//! read at, so of two replicas taking over at once the API accepts exactly one (the other
//! gets 409 Conflict). A holder that cannot renew for `lease_duration` stops leading
//! before anyone can take over; a holder that stops releases the Lease so a successor
//! takes over at its next check.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The Lease's default name.
pub const DEFAULT_LEASE_NAME: &str = "weft-control-leader";

/// Lease timing and naming.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// The Lease's name.
    pub name: String,
    /// Its namespace (the control plane's).
    pub namespace: String,
    /// This replica's holder identity (its pod name).
    pub identity: String,
    /// How long a Lease that is not renewed stays held.
    pub lease_duration: Duration,
    /// How often the holder renews.
    pub renew_interval: Duration,
    /// How often the others check whether it expired.
    pub retry_interval: Duration,
}

impl LeaseConfig {
    /// The usual timing (15 s lease, renewed every 5 s, checked every 2 s), as Kubernetes'
    /// own controllers use.
    #[must_use]
    pub fn new(namespace: &str, identity: &str) -> Self {
        Self {
            name: DEFAULT_LEASE_NAME.to_owned(),
            namespace: namespace.to_owned(),
            identity: identity.to_owned(),
            lease_duration: Duration::from_secs(15),
            renew_interval: Duration::from_secs(5),
            retry_interval: Duration::from_secs(2),
        }
    }
}

/// A running election; [`Leadership::is_leader`] says whether this replica holds the Lease.
pub struct Leadership {
    leading: watch::Receiver<bool>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Leadership {
    /// Starts electing on the current tokio runtime.
    #[must_use]
    pub fn start(client: kube::Client, config: LeaseConfig) -> Self {
        let (leading_tx, leading) = watch::channel(false);
        let (stop, stopped) = watch::channel(false);
        let elector = Elector {
            leases: Api::namespaced(client, &config.namespace),
            config,
            seen: None,
            renewed_at: None,
        };
        let task = tokio::spawn(elector.run(leading_tx, stopped));
        Self {
            leading,
            stop,
            task,
        }
    }

    /// Whether this replica leads now.
    #[must_use]
    pub fn is_leader(&self) -> bool {
        *self.leading.borrow()
    }

    /// Follows leadership changes.
    #[must_use]
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.leading.clone()
    }

    /// Stops electing and releases the Lease if held, so another replica takes over at
    /// its next check.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }

    /// Stops without releasing, as a replica that dies or hangs does: the others take
    /// over only once the Lease expires.
    pub fn abandon(self) {
        self.task.abort();
    }
}

/// The Lease as last seen: what identifies a renewal, and when this replica saw it.
struct Seen {
    holder: Option<String>,
    renew_time: Option<MicroTime>,
    at: Instant,
}

struct Elector {
    leases: Api<Lease>,
    config: LeaseConfig,
    seen: Option<Seen>,
    /// When this replica last renewed successfully (while leading).
    renewed_at: Option<Instant>,
}

impl Elector {
    async fn run(mut self, leading: watch::Sender<bool>, mut stopped: watch::Receiver<bool>) {
        loop {
            let now_leading = self.try_acquire_or_renew().await;
            if leading.send_replace(now_leading) != now_leading {
                tracing::info!(
                    lease = %self.config.name,
                    identity = %self.config.identity,
                    leading = now_leading,
                    "leadership changed"
                );
            }
            let pause = if now_leading {
                self.config.renew_interval
            } else {
                self.config.retry_interval
            };
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                _ = stopped.changed() => break,
            }
        }
        if *leading.borrow() {
            leading.send_replace(false);
            self.release().await;
        }
    }

    /// One round; true when this replica holds the Lease afterwards.
    async fn try_acquire_or_renew(&mut self) -> bool {
        match self.round().await {
            Ok(leading) => {
                self.renewed_at = leading.then(Instant::now);
                leading
            }
            Err(error) => {
                // keep leading only while the Lease we last renewed cannot expire before
                // the next attempt
                let still_valid = self.renewed_at.is_some_and(|at| {
                    at.elapsed() + self.config.renew_interval < self.config.lease_duration
                });
                tracing::warn!(%error, still_leading = still_valid, "lease not renewed");
                if !still_valid {
                    self.renewed_at = None;
                }
                still_valid
            }
        }
    }

    async fn round(&mut self) -> Result<bool, kube::Error> {
        let Some(lease) = self.leases.get_opt(&self.config.name).await? else {
            return self.create().await;
        };
        let spec = lease.spec.clone().unwrap_or_default();
        self.observe(&spec);
        let holder = spec.holder_identity.as_deref().filter(|h| !h.is_empty());
        if holder == Some(self.config.identity.as_str()) {
            return self.write(lease, false).await;
        }
        if holder.is_none() || self.expired() {
            return self.write(lease, true).await;
        }
        Ok(false)
    }

    /// Notes when the Lease last changed, by this replica's clock.
    fn observe(&mut self, spec: &LeaseSpec) {
        let unchanged = self.seen.as_ref().is_some_and(|seen| {
            seen.holder == spec.holder_identity && seen.renew_time == spec.renew_time
        });
        if !unchanged {
            self.seen = Some(Seen {
                holder: spec.holder_identity.clone(),
                renew_time: spec.renew_time.clone(),
                at: Instant::now(),
            });
        }
    }

    fn expired(&self) -> bool {
        self.seen
            .as_ref()
            .is_some_and(|seen| seen.at.elapsed() >= self.config.lease_duration)
    }

    async fn create(&self) -> Result<bool, kube::Error> {
        let now = MicroTime(Timestamp::now());
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.config.name.clone()),
                namespace: Some(self.config.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.config.identity.clone()),
                lease_duration_seconds: Some(self.duration_seconds()),
                acquire_time: Some(now.clone()),
                renew_time: Some(now),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        match self.leases.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Renews (`takeover` false) or takes over the Lease as read; a 409 means another
    /// replica wrote it first.
    async fn write(&self, mut lease: Lease, takeover: bool) -> Result<bool, kube::Error> {
        let now = MicroTime(Timestamp::now());
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if takeover {
            spec.holder_identity = Some(self.config.identity.clone());
            spec.acquire_time = Some(now.clone());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.renew_time = Some(now);
        spec.lease_duration_seconds = Some(self.duration_seconds());
        match self
            .leases
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Clears the holder so the next check of another replica takes over.
    async fn release(&self) {
        let result = async {
            let Some(mut lease) = self.leases.get_opt(&self.config.name).await? else {
                return Ok(());
            };
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
                return Ok(());
            }
            spec.holder_identity = None;
            self.leases
                .replace(&self.config.name, &PostParams::default(), &lease)
                .await
                .map(drop)
        }
        .await;
        if let Err(error) = result {
            tracing::warn!(%error, "could not release the lease; it expires on its own");
        }
    }

    fn duration_seconds(&self) -> i32 {
        i32::try_from(self.config.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX)
    }
}
