//! `weft control --kubernetes`: the pieces of this crate put together around the control
//! process ([`weft_control::process::run_with`]):
//! - callers are authenticated by `TokenReview` ([`crate::tokenreview`]) instead of a token
//!   file;
//! - the CA's root comes from the control plane namespace's Secrets ([`crate::cluster_ca`]),
//!   kept by a [`ClusterRootStore`];
//! - every replica takes part in the Lease election ([`crate::leader`]); the leader alone
//!   publishes the trust bundle ConfigMap ([`crate::root_configmap`]), deploys the
//!   Gateways weft runs ([`crate::deploy`]) and writes status ([`crate::status`]) after
//!   each change of the objects. Every replica serves xDS and the CA.

use crate::cluster_ca::{
    CaOrigin, ClusterCaError, PLUGIN_SECRET, SELF_SIGNED_SECRET, load_cluster_ca,
};
use crate::deploy::GatewayDeployer;
use crate::leader::{Leadership, LeaseConfig};
use crate::root_configmap::publish_trust_bundle;
use crate::status::StatusWriter;
use crate::tokenreview::{ServiceAccount, TokenReviewAuthenticator, TokenReviewConfig};
use crate::{ApiSource, WatchOptions};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::{mpsc, watch};
use weft_api::{ConfigEvent, ObjectSource};
use weft_control::process::Overrides;
use weft_identity::CertificateAuthority;
use weft_identity::ca::{CaError, LoadedRoots, NextRoot, RootStore};

/// What [`ClusterControl::start`] needs to know.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// The control plane's namespace (its Secrets, its Lease).
    pub namespace: String,
    /// Trust domain of workload identities.
    pub trust_domain: String,
    /// Service accounts of node proxies (`--node-service-account`).
    pub node_accounts: Vec<ServiceAccount>,
    /// This replica's name in the Lease (its pod name).
    pub identity: String,
    /// The election's timing.
    pub lease: LeaseConfig,
    /// What the gateways and waypoints the leader deploys run with: the control plane's
    /// namespace (their control address), image, pull policy, log level, trust domain.
    pub proxies: weft_install::Settings,
}

impl ClusterSettings {
    /// Defaults for a replica named `identity` in `namespace`: node proxies run as
    /// `NAMESPACE/weft-node`, the usual Lease timing.
    #[must_use]
    pub fn new(namespace: &str, trust_domain: &str, identity: &str) -> Self {
        Self {
            namespace: namespace.to_owned(),
            trust_domain: trust_domain.to_owned(),
            node_accounts: TokenReviewConfig::new(namespace, trust_domain).node_accounts,
            identity: identity.to_owned(),
            lease: LeaseConfig::new(namespace, identity),
            proxies: proxy_settings(namespace, trust_domain),
        }
    }
}

/// The install's default proxy settings in `namespace` with `trust_domain` (a value the
/// settings refuse keeps its default and is logged).
fn proxy_settings(namespace: &str, trust_domain: &str) -> weft_install::Settings {
    let mut settings = weft_install::Settings::default();
    for set in [
        format!("namespace={namespace}"),
        format!("trustDomain={trust_domain}"),
    ] {
        if let Err(error) = settings.set(&set) {
            tracing::warn!(%error, "proxy setting not applied");
        }
    }
    settings
}

/// The Kubernetes side of a running control plane: the API's objects, the parts handed to
/// [`weft_control::process::run_with`], and the election with the leader's work.
pub struct ClusterControl {
    api: ApiSource,
    overrides: Overrides,
    leadership: Leadership,
    leader_work: tokio::task::JoinHandle<()>,
}

impl ClusterControl {
    /// [`ClusterControl::spawn`], returning once the API's first sync is done (every kind
    /// listed, then the objects referenced at that point).
    ///
    /// # Errors
    /// The CA's Secret could not be read, created or used.
    pub async fn start(
        client: kube::Client,
        settings: ClusterSettings,
        watch: &WatchOptions,
    ) -> Result<Self, ClusterCaError> {
        let cluster = Self::spawn(client, settings, watch).await?;
        cluster.api.synced().await;
        Ok(cluster)
    }

    /// Loads (or creates) the CA root from the Secrets, starts the API's watches and the
    /// election, and returns without waiting for the first lists: the control process
    /// waits for them ([`Overrides::first_sync`]) with its admin port already answering.
    /// The leader's work starts only after the first sync.
    ///
    /// # Errors
    /// The CA's Secret could not be read, created or used.
    pub async fn spawn(
        client: kube::Client,
        settings: ClusterSettings,
        watch: &WatchOptions,
    ) -> Result<Self, ClusterCaError> {
        let (ca, origin) = load_cluster_ca(client.clone(), &settings.namespace).await?;
        tracing::info!(?origin, namespace = %settings.namespace, "CA root loaded from the cluster");
        let roots = ClusterRootStore::new(ca, &settings.namespace, origin);
        let bundle = roots.bundle();
        let review = TokenReviewConfig {
            node_accounts: settings.node_accounts.clone(),
            ..TokenReviewConfig::new(&settings.namespace, &settings.trust_domain)
        };
        let callers = TokenReviewAuthenticator::new(client.clone(), review);
        tracing::info!("listing the Kubernetes API");
        let api = ApiSource::spawn(client.clone(), watch);
        let leadership = Leadership::start(client.clone(), settings.lease.clone());
        let objects: Arc<dyn ObjectSource> = api.objects();
        let deployer = GatewayDeployer::new(client.clone(), settings.proxies.clone());
        let leader_work = tokio::spawn(lead_while_elected(
            client,
            leadership.subscribe(),
            (objects, api.pending()),
            bundle,
            deployer,
        ));
        Ok(Self {
            overrides: Overrides {
                callers: Some(Arc::new(callers)),
                roots: Some(Arc::new(roots)),
                first_sync: Some(api.pending()),
            },
            api,
            leadership,
            leader_work,
        })
    }

    /// The API's objects, kept current.
    #[must_use]
    pub fn objects(&self) -> Arc<dyn ObjectSource> {
        self.api.objects()
    }

    /// The callers' authenticator and the CA's root store for the control process.
    #[must_use]
    pub fn overrides(&self) -> Overrides {
        self.overrides.clone()
    }

    /// Whether this replica leads now.
    #[must_use]
    pub fn is_leader(&self) -> bool {
        self.leadership.is_leader()
    }

    /// Stops the leader's work and releases the Lease if held.
    pub async fn stop(self) {
        self.leader_work.abort();
        self.leadership.stop().await;
    }
}

/// Once `objects` are complete (their first sync: nothing pending), whenever `leading` is
/// true: publishes `bundle` in every namespace and writes the status of `objects` after
/// each change; stops both when leadership is lost.
async fn lead_while_elected(
    client: kube::Client,
    mut leading: watch::Receiver<bool>,
    (objects, mut pending): (Arc<dyn ObjectSource>, watch::Receiver<BTreeSet<String>>),
    bundle: watch::Receiver<String>,
    mut deployer: GatewayDeployer,
) {
    // status written from incomplete lists would be wrong (a missing route, a Secret)
    let _ = pending.wait_for(BTreeSet::is_empty).await;
    let mut writer = StatusWriter::new(client.clone());
    loop {
        if leading.wait_for(|leads| *leads).await.is_err() {
            return;
        }
        tracing::info!("leading: publishing the trust bundle and writing status");
        writer.forget();
        deployer.forget();
        let changes = objects.subscribe();
        tokio::select! {
            () = publish_trust_bundle(client.clone(), bundle.clone()) => {}
            () = follow_changes(&mut writer, &mut deployer, &*objects, changes) => {}
            lost = leading.wait_for(|leads| !*leads) => {
                if lost.is_err() {
                    return;
                }
            }
        }
        tracing::info!("no longer leading: trust bundle and status left to the new leader");
    }
}

/// Deploys the Gateways of `objects` ([`crate::deploy`]) and writes their status now and
/// after each burst of changes (until the source ends, then waits forever: the caller
/// stops it).
async fn follow_changes(
    writer: &mut StatusWriter,
    deployer: &mut GatewayDeployer,
    objects: &dyn ObjectSource,
    mut changes: mpsc::UnboundedReceiver<ConfigEvent>,
) {
    loop {
        let snapshot = objects.snapshot();
        let deployed = deployer.deploy(&snapshot).await;
        let applied = writer.write(&snapshot).await;
        tracing::debug!(deployed, applied, "gateways deployed, status written");
        if changes.recv().await.is_none() {
            return std::future::pending().await;
        }
        while changes.try_recv().is_ok() {}
    }
}

/// The CA root loaded from the cluster's Secret, as a [`RootStore`]: the trust bundle is
/// published to a watch channel (read by the leader's ConfigMap publisher). Root rotation
/// is not supported in this mode yet: a rotation is refused with a clear error.
pub struct ClusterRootStore {
    ca: Mutex<Option<CertificateAuthority>>,
    secret: PathBuf,
    bundle: watch::Sender<String>,
}

impl ClusterRootStore {
    /// Keeps `ca`, loaded from `namespace`'s Secret named by `origin`.
    #[must_use]
    pub fn new(ca: CertificateAuthority, namespace: &str, origin: CaOrigin) -> Self {
        let (bundle, _) = watch::channel(ca.root_pem().to_owned());
        let secret = match origin {
            CaOrigin::Plugin => PLUGIN_SECRET,
            CaOrigin::SelfSigned | CaOrigin::Created => SELF_SIGNED_SECRET,
        };
        Self {
            ca: Mutex::new(Some(ca)),
            secret: PathBuf::from(format!("Secret {namespace}/{secret}")),
            bundle,
        }
    }

    /// Follows the trust bundle (PEM).
    #[must_use]
    pub fn bundle(&self) -> watch::Receiver<String> {
        self.bundle.subscribe()
    }

    fn unsupported(&self, what: &str) -> CaError {
        CaError::Io {
            path: self.secret.clone(),
            source: std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                format!("{what} is not supported with --kubernetes yet"),
            ),
        }
    }
}

impl RootStore for ClusterRootStore {
    fn load(&self) -> Result<LoadedRoots, CaError> {
        let current = self
            .ca
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .ok_or_else(|| self.unsupported("loading the CA twice"))?;
        Ok(LoadedRoots {
            current,
            next: None,
        })
    }

    fn prepare_next(&self, _next: &NextRoot) -> Result<CertificateAuthority, CaError> {
        Err(self.unsupported("root rotation"))
    }

    fn promote_next(&self) -> Result<(), CaError> {
        Err(self.unsupported("root rotation"))
    }

    fn publish_bundle(&self, pem: &str) -> Result<(), CaError> {
        self.bundle.send_replace(pem.to_owned());
        Ok(())
    }

    fn take_request(&self) -> Option<NextRoot> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_root_is_loaded_once_published_and_never_rotated() {
        let ca = CertificateAuthority::generate_in_memory().expect("ca");
        let root = ca.root_pem().to_owned();
        let store = ClusterRootStore::new(ca, "weft-system", CaOrigin::Created);
        let bundle = store.bundle();
        assert_eq!(
            *bundle.borrow(),
            root,
            "the root is the bundle from the start"
        );

        let loaded = store.load().expect("loaded");
        assert_eq!(loaded.current.root_pem(), root);
        assert!(loaded.next.is_none());
        assert!(store.take_request().is_none());

        let refused = store
            .prepare_next(&NextRoot::Generate)
            .expect_err("no rotation");
        let message = refused.to_string();
        assert!(
            message.contains("Secret weft-system/istio-ca-secret")
                && message.contains("root rotation is not supported with --kubernetes"),
            "{message}"
        );

        store.publish_bundle("BOTH ROOTS").expect("published");
        assert_eq!(*bundle.borrow(), "BOTH ROOTS");
    }
}
