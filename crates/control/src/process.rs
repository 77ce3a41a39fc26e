//! `weft control`: the control-plane process. It follows its objects (a watched config
//! directory, or the Kubernetes API through [`Objects::Source`]), keeps the xDS snapshot
//! equal to their translation, and serves on
//! - the secure port (default 15012): TLS, CA (`CreateCertificate`) and delta xDS, both
//!   authenticated by bearer tokens from the operator's token file (watched like the config
//!   directory: edits apply to new requests, a broken edit keeps the last good tokens), or
//!   by the authenticator given in [`Overrides`] (TokenReview with `--kubernetes`, whose
//!   CA root also comes from [`Overrides`]);
//! - optionally a plaintext xDS port (`--plaintext-xds-port`, local development only; the
//!   same bearer tokens are required there);
//! - the admin port (default 15014): `/ready` (503 until the CA and the configuration are
//!   there, see [`crate::readiness`]), `/metrics`, `/debug/syncz`, `/debug/configz`,
//!   `/debug/config_errors`.

use crate::admin::{AdminState, admin_router};
use crate::ca_service::{
    CaMetrics, CaService, CaServiceConfig, GatewayServingNames, RotationDriver,
};
use crate::callers::{
    CallerAuthenticator, ReloadEffects, ReloadableTokenFile, TokenFileWatch, XdsCallerAuth,
    watch_token_file,
};
use crate::push::{ConfigNodeIdentities, ConfigPusher};
use crate::readiness::{self, Readiness};
use crate::secure_server::{SecureServer, SecureServerConfig};
use crate::state_dir::StateDir;
use crate::translate::TranslateOptions;
use prometheus_client::registry::Registry;
use std::collections::BTreeSet;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::net::TcpListener;
use weft_api::{ConfigStore, ObjectSource};
use weft_identity::ca::{DirRootStore, RootRotation, RootStore};
use weft_xds::XdsServer;

/// Default quiet time of the config-directory watch: long enough to group one editor save
/// or a `git checkout` (their file events arrive within a few milliseconds), short enough
/// to keep edit-to-push latency low.
pub const DEFAULT_WATCH_DEBOUNCE: Duration = Duration::from_millis(20);

/// Where the control plane's objects come from.
#[derive(Clone)]
pub enum Objects {
    /// A directory of YAML manifests, watched for edits.
    Directory(PathBuf),
    /// Objects kept current by someone else: the Kubernetes API's watchers
    /// (`weft_kube::ApiSource`), in `weft control --kubernetes`.
    Source(Arc<dyn ObjectSource>),
}

impl std::fmt::Debug for Objects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Objects::Directory(dir) => f.debug_tuple("Directory").field(dir).finish(),
            Objects::Source(_) => f.write_str("Source"),
        }
    }
}

/// Everything `weft control` is configured with (built from its flags).
#[derive(Debug, Clone)]
pub struct ControlConfig {
    /// Where the objects come from.
    pub objects: Objects,
    /// Private state (the generated CA root lives here).
    pub state_dir: PathBuf,
    /// Plug-in CA directory (Istio `cacerts` layout); overrides the generated root.
    pub ca_dir: Option<PathBuf>,
    /// Token file mapping bearer tokens to nodes or identities; watched for edits.
    pub token_file: PathBuf,
    /// TLS port for CA + xDS.
    pub secure_addr: SocketAddr,
    /// Plaintext xDS port, only when asked for.
    pub plaintext_xds_addr: Option<SocketAddr>,
    /// Admin/monitoring port.
    pub admin_addr: SocketAddr,
    /// Translation settings (trust domain, root namespace, ...).
    pub translate: TranslateOptions,
    /// Serving certificate settings.
    pub secure: SecureServerConfig,
    /// Certificate lifetimes and request limits.
    pub ca: CaServiceConfig,
    /// Quiet time before a burst of edits (config dir or token file) is re-read.
    pub watch_debounce: Duration,
    /// xDS server settings (push debounce, queue sizes).
    pub xds: weft_xds::ServerConfig,
}

/// Parts supplied by the embedding process instead of the defaults made from
/// [`ControlConfig`] (`weft control --kubernetes` supplies both).
#[derive(Clone, Default)]
pub struct Overrides {
    /// Authenticates callers instead of [`ControlConfig::token_file`] (which is then not
    /// read).
    pub callers: Option<Arc<dyn CallerAuthenticator>>,
    /// Keeps the CA's roots instead of [`ControlConfig::state_dir`] /
    /// [`ControlConfig::ca_dir`] (which are then not used).
    pub roots: Option<Arc<dyn RootStore>>,
    /// What an [`Objects::Source`] still lists before its objects are complete (empty once
    /// they are, for good): the control plane serves, and `/ready` answers 200, only then.
    pub first_sync: Option<tokio::sync::watch::Receiver<BTreeSet<String>>>,
}

/// Why the control plane could not start.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("state directory: {0}")]
    StateDir(#[from] crate::state_dir::StateDirError),
    #[error("certificate authority: {0}")]
    Ca(#[from] weft_identity::ca::CaError),
    #[error("token file: {0}")]
    Tokens(#[from] crate::callers::TokenFileError),
    #[error("config directory: {0}")]
    Store(#[from] weft_api::store::StoreError),
    #[error("secure port: {0}")]
    Secure(#[from] crate::secure_server::SecureServerError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("plaintext xDS port failed: {0}")]
    Plaintext(#[from] tonic::transport::Error),
}

/// The addresses a running control plane actually listens on (ports may be 0 in config).
#[derive(Debug, Clone, Copy)]
pub struct BoundAddrs {
    /// Secure port.
    pub secure: SocketAddr,
    /// Admin port.
    pub admin: SocketAddr,
    /// Plaintext xDS port, if enabled.
    pub plaintext_xds: Option<SocketAddr>,
}

/// Runs the control plane until `shutdown` completes. `on_bound` is told the listening
/// addresses once every port is bound (tests and `weft up` use it).
///
/// # Errors
/// Start-up failures: state dir, CA, token file, config dir, ports.
pub async fn run(
    config: ControlConfig,
    on_bound: impl FnOnce(BoundAddrs) + Send,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ControlError> {
    run_with(config, Overrides::default(), on_bound, shutdown).await
}

/// [`run`] with some parts supplied by the caller ([`Overrides`]).
///
/// Start-up: the admin port first (`/ready` answers 503 naming what is awaited, liveness
/// holds), then the CA and the secure port (bound, answering once configured); then the
/// configuration (with [`Overrides::first_sync`], until the source's first full list), and
/// only then translation, xDS and the CA service. `on_bound` is told the ports before the
/// configuration with [`Overrides::first_sync`], after it otherwise.
///
/// # Errors
/// As [`run`].
pub async fn run_with(
    config: ControlConfig,
    overrides: Overrides,
    on_bound: impl FnOnce(BoundAddrs) + Send,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ControlError> {
    let readiness = Readiness::new();
    let admin_state = Arc::new(OnceLock::new());
    let admin_listener = bind(config.admin_addr).await?;
    let admin = admin_router(readiness.clone(), Arc::clone(&admin_state));
    let admin_addr = local_addr(admin_listener.local_addr(), config.admin_addr);
    tokio::spawn(weft_serve::serve(admin_listener, admin));

    let root_store = match overrides.roots {
        Some(store) => store,
        None => {
            let state_dir = StateDir::open(&config.state_dir)?;
            Arc::new(DirRootStore::new(
                &state_dir.ca_dir(),
                config.ca_dir.as_deref(),
            ))
        }
    };
    let ca = Arc::new(load_rotation(&*root_store, config.ca.max_validity)?);
    tracing::info!(root = %ca.signer().description(), phase = ca.phase().name(), "certificate authority ready");
    readiness.done(readiness::CA);
    let rotation = Arc::new(RotationDriver::new(Arc::clone(&ca), root_store));
    tokio::spawn(Arc::clone(&rotation).run());
    let (tokens, token_file) = match overrides.callers {
        Some(callers) => (callers, None),
        None => {
            let file = Arc::new(ReloadableTokenFile::load(&config.token_file)?);
            (
                Arc::clone(&file) as Arc<dyn CallerAuthenticator>,
                Some(file),
            )
        }
    };

    let mut registry = Registry::with_prefix("weft_control");
    let (xds, publisher) = XdsServer::new(config.xds, XdsCallerAuth(tokens.clone()), &mut registry);
    let ca_metrics = CaMetrics::new();
    ca_metrics.register(&mut registry);
    let secure = SecureServer::bind(config.secure_addr, ca.clone(), config.secure.clone()).await?;
    secure.register_metrics(&mut registry);
    let plaintext = match config.plaintext_xds_addr {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    let bound = BoundAddrs {
        secure: local_addr(secure.local_addr(), config.secure_addr),
        admin: admin_addr,
        plaintext_xds: plaintext
            .as_ref()
            .map(|l| local_addr(l.local_addr(), config.secure_addr)),
    };
    tracing::info!(secure = %bound.secure, admin = %bound.admin, plaintext_xds = ?bound.plaintext_xds, "control plane listening");
    // following a source that lists first, the caller learns the ports before it is
    // complete (to watch `/ready`); a directory is read at once, so there it learns them
    // once every page serves
    let mut on_bound = Some(on_bound);
    if overrides.first_sync.is_some()
        && let Some(tell) = on_bound.take()
    {
        tell(bound);
    }

    let (store, watch) = open_objects(&config.objects, config.watch_debounce)?;
    match overrides.first_sync {
        Some(first_sync) => readiness.follow_config(first_sync).await,
        None => readiness.done(readiness::CONFIG),
    }
    tracing::info!("configuration complete: serving");
    for finding in store.errors() {
        tracing::error!("{finding}");
    }
    let effects = ReloadEffects {
        metrics: ca_metrics.clone(),
        xds: xds.clone(),
    };
    let _token_watch = follow_token_file(token_file, config.watch_debounce, effects)?;

    let nodes = Arc::new(ConfigNodeIdentities::default());
    let pusher = ConfigPusher::start(
        &*store,
        config.translate.clone(),
        publisher,
        Arc::clone(&nodes),
    );
    let output = pusher.output();
    let trust_domain = &config.translate.trust_domain;
    let serving_names = GatewayServingNames::new(Arc::clone(&store), pusher.output(), trust_domain);
    let _ = admin_state.set(AdminState {
        registry: Arc::new(Mutex::new(registry)),
        xds: xds.clone(),
        output,
        store: Arc::clone(&store),
        rotation,
    });
    tokio::spawn(follow_store(Arc::clone(&store), pusher, watch));
    if let Some(tell) = on_bound {
        tell(bound);
    }

    let ca_service = CaService::new(ca.clone(), tokens, nodes, ca_metrics, config.ca.clone())
        .with_serving_names(Arc::new(serving_names))
        .with_reserved_names(&config.secure.dns_names());
    if let Some(listener) = plaintext {
        tracing::warn!(
            "plaintext xDS port enabled: not encrypted (tokens still required), for local development only"
        );
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(xds.service())
                .serve_with_incoming(incoming),
        );
    }
    serve_secure(secure, ca_service, &xds, shutdown).await
}

/// Serves the CA and xDS on the secure port until `shutdown`, then lets calls finish for
/// [`SHUTDOWN_GRACE`] and closes the streams still open.
async fn serve_secure(
    secure: SecureServer,
    ca_service: CaService,
    xds: &XdsServer,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ControlError> {
    let routes = tonic::service::Routes::new(ca_service.into_server()).add_service(xds.service());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop.send(true);
    });
    let graceful = secure.serve(routes, stop_requested(stopped.clone()));
    tokio::select! {
        result = graceful => result?,
        () = async {
            stop_requested(stopped).await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => {
            // xDS streams never end on their own: without this the process would wait for
            // every connected node proxy to hang up.
            tracing::info!(
                grace = ?SHUTDOWN_GRACE,
                "closing the streams still open after the shutdown grace period"
            );
        }
    }
    Ok(())
}

/// The CA from the store, resuming a rotation found in progress (no phase ends before the
/// longest certificate issued before the restart, `longest_certificate`, has expired).
fn load_rotation(
    store: &dyn RootStore,
    longest_certificate: Duration,
) -> Result<RootRotation, ControlError> {
    let loaded = store.load()?;
    Ok(match loaded.next {
        None => RootRotation::new(Arc::new(loaded.current)),
        Some(next) => {
            tracing::warn!(
                wait = ?longest_certificate,
                "resuming a root rotation: both roots are published again, and no phase ends before certificates issued before the restart have expired"
            );
            RootRotation::resume(loaded.current, next, longest_certificate)
        }
    })
}

/// Watches the token file, when callers are authenticated by one.
fn follow_token_file(
    file: Option<Arc<ReloadableTokenFile>>,
    debounce: Duration,
    effects: ReloadEffects,
) -> Result<Option<TokenFileWatch>, ControlError> {
    file.map(|file| watch_token_file(file, debounce, effects))
        .transpose()
        .map_err(ControlError::from)
}

/// After shutdown is requested, how long in-flight calls (CA requests) may finish before
/// the remaining connections (long-lived xDS streams) are dropped.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Completes once `stopped` turns true (or its sender is gone).
async fn stop_requested(mut stopped: tokio::sync::watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}

fn local_addr(result: std::io::Result<SocketAddr>, fallback: SocketAddr) -> SocketAddr {
    result.unwrap_or(fallback)
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, ControlError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ControlError::Bind { addr, source })
}

/// The object source, and for a directory the watch that keeps it current (it stops when
/// dropped).
fn open_objects(
    objects: &Objects,
    debounce: Duration,
) -> Result<(Arc<dyn ObjectSource>, Option<weft_api::WatchHandle>), ControlError> {
    match objects {
        Objects::Directory(dir) => {
            let store = ConfigStore::open(dir)?;
            let watch = store.watch(debounce)?;
            Ok((store, Some(watch)))
        }
        Objects::Source(source) => Ok((Arc::clone(source), None)),
    }
}

/// Applies every burst of config edits to the translation (and hence to the xDS snapshot).
async fn follow_store(
    store: Arc<dyn ObjectSource>,
    mut pusher: ConfigPusher,
    watch: Option<weft_api::WatchHandle>,
) {
    let _watch = watch;
    let mut events = store.subscribe();
    while let Some(first) = events.recv().await {
        let mut count = 1;
        while events.try_recv().is_ok() {
            count += 1;
        }
        tracing::debug!(events = count, trigger = %first.object_ref(), "config changed");
        for finding in store.errors() {
            tracing::error!("{finding}");
        }
        // translation is CPU work of tens of milliseconds on a big mesh: off the async
        // workers, so xDS streams and the CA keep being served meanwhile
        let refresh_store = Arc::clone(&store);
        pusher = match tokio::task::spawn_blocking(move || {
            pusher.refresh(&*refresh_store);
            pusher
        })
        .await
        {
            Ok(pusher) => pusher,
            Err(err) => {
                tracing::error!(%err, "config translation failed; no further config changes are applied");
                return;
            }
        };
    }
}
