//! `weft-kubetest`: an in-process Kubernetes API server for tests, over real HTTP/1.1 on
//! an ephemeral loopback port, following the API's list/watch contract closely enough
//! for `kube`'s client and runtime (reflectors, watchers) to run against it unchanged.
//!
//! - [`store`]: every object as JSON (any group/version/kind, namespaced or cluster),
//!   one global resourceVersion, and the event history watches replay, bounded by a
//!   compaction window;
//! - [`routes`]: the router, one module per concern (reads and watches here; writes,
//!   apply, TokenReview, Leases are added beside them);
//! - [`TestApiServer`]: starts it, gives its URL and a [`kube::Client`], and seeds or
//!   changes objects from the test ([`TestApiServer::put`], [`TestApiServer::delete`],
//!   [`TestApiServer::compact`]);
//! - [`requests`]: every request in RBAC's terms ([`TestApiServer::requests`]), and lists
//!   held back on demand ([`TestApiServer::hold_lists`]);
//! - [`fixtures`]: small clusters tests seed it with.
//!
//! It is a test double of the API's protocol, not of its semantics: no admission, no
//! defaulting, no authorization, no garbage collection.

pub mod fixtures;
pub mod kinds;
pub mod managed_fields;
pub mod path;
pub mod requests;
pub mod routes;
pub mod select;
pub mod store;

pub use kinds::ResourceType;
pub use requests::ApiRequest;
pub use store::{ObjectKey, Read, Store, StoreError};

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// How the server behaves.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// How many changes the history keeps for watches (older resourceVersions: 410 Gone).
    pub history_window: usize,
    /// How often a watch that allows bookmarks gets one.
    pub bookmark_interval: Duration,
    /// The longest a watch stays open, whatever `timeoutSeconds` asks (the real server
    /// also ends watches on its own schedule).
    pub max_watch_timeout: Duration,
    /// API versions (`group/version`, e.g. `gateway.networking.k8s.io/v1`) this server does
    /// not serve: every request under them is 404, as when a CRD lacks that version.
    pub unserved_versions: Vec<String>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            history_window: store::DEFAULT_HISTORY_WINDOW,
            bookmark_interval: Duration::from_secs(1),
            max_watch_timeout: Duration::from_secs(300),
            unserved_versions: Vec::new(),
        }
    }
}

/// A running test API server; stops when dropped.
pub struct TestApiServer {
    addr: SocketAddr,
    store: Arc<Store>,
    tokens: Arc<routes::tokenreview::TokenRegistry>,
    requests: Arc<requests::RequestLog>,
    task: tokio::task::JoinHandle<()>,
}

impl TestApiServer {
    /// Starts a server with default options on `127.0.0.1`, an ephemeral port.
    ///
    /// # Panics
    /// If no loopback port can be bound (the test cannot run).
    pub async fn start() -> TestApiServer {
        TestApiServer::start_with(ServerOptions::default()).await
    }

    /// Starts a server with `options`.
    ///
    /// # Panics
    /// If no loopback port can be bound (the test cannot run).
    pub async fn start_with(options: ServerOptions) -> TestApiServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port for the test API server");
        let addr = listener.local_addr().expect("listener address");
        let store = Arc::new(Store::new(options.history_window));
        let tokens = Arc::default();
        let requests = Arc::default();
        let ctx = routes::Ctx {
            store: Arc::clone(&store),
            options,
            tokens: Arc::clone(&tokens),
            requests: Arc::clone(&requests),
        };
        let task = tokio::spawn(accept_loop(listener, ctx));
        TestApiServer {
            addr,
            store,
            tokens,
            requests,
            task,
        }
    }

    /// The server's base URL, `http://127.0.0.1:PORT`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A `kube` client talking to this server.
    ///
    /// # Panics
    /// If `kube` refuses the configuration (a bug in this crate).
    #[must_use]
    pub fn client(&self) -> kube::Client {
        let uri: http::Uri = self.url().parse().expect("server URL");
        kube::Client::try_from(kube::Config::new(uri)).expect("kube client for the test API server")
    }

    /// The server's objects and history.
    #[must_use]
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Creates or replaces an object (see [`Store::put`]); returns it as stored.
    ///
    /// # Panics
    /// If the object lacks `apiVersion`, `kind` or `metadata.name` (a broken test).
    pub fn put(&self, object: Value) -> Value {
        self.store.put(object).expect("a complete object")
    }

    /// Deletes the object of `kind` at `api_version` named `name` (in `namespace`).
    ///
    /// # Errors
    /// [`StoreError::NotFound`] when there is none.
    pub fn delete(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value, StoreError> {
        let key = ResourceType::new(api_version, kind).key(namespace, name);
        self.store.remove(&key)
    }

    /// Every resource request answered so far, in RBAC's terms (verb, group, resource,
    /// namespace), in order.
    #[must_use]
    pub fn requests(&self) -> Vec<ApiRequest> {
        self.requests.requests()
    }

    /// Holds every list of `plural` in `group` (`""`: core) until
    /// [`TestApiServer::release_lists`]: a slow API server, for clients that must wait for
    /// their first list.
    pub fn hold_lists(&self, group: &str, plural: &str) {
        self.requests.hold(group, plural);
    }

    /// Answers the held lists of `plural` in `group`, and later ones at once.
    pub fn release_lists(&self, group: &str, plural: &str) {
        self.requests.release(group, plural);
    }

    /// Forgets the history: watches from any resourceVersion so far get 410 Gone.
    pub fn compact(&self) {
        self.store.compact();
    }
}

impl Drop for TestApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, ctx: routes::Ctx) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let ctx = ctx.clone();
                async move { Ok::<_, std::convert::Infallible>(routes::route(ctx, request).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            if let Err(error) = connection.await {
                tracing::debug!(%error, "test API server connection ended");
            }
        });
    }
}
