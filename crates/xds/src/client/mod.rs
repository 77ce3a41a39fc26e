//! The delta ADS client used by weft's proxies.
//!
//! ```no_run
//! # async fn example(channel: tonic::transport::Channel) {
//! use weft_xds::client::{RejectedResource, ResourceHandler, ResourceUpdate, XdsClient};
//!
//! struct Addresses;
//! impl ResourceHandler for Addresses {
//!     fn apply(&mut self, updates: Vec<ResourceUpdate>, removed: Vec<String>) -> Vec<RejectedResource> {
//!         // decode each update; keep the valid ones, return the others with the reason
//!         Vec::new()
//!     }
//! }
//!
//! let node = weft_proto::discovery::Node { id: "node-1".into(), ..Default::default() };
//! let (client, handle) = XdsClient::builder(node)
//!     .bearer_token("secret")
//!     .wildcard(weft_proto::ADDRESS_TYPE_URL, Addresses)
//!     .build(channel);
//! tokio::spawn(client.run());
//! handle.ready().await; // every type got its first response
//! # }
//! ```

mod backoff;
mod session;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tonic::transport::Channel;
use weft_proto::discovery::Node;

pub use backoff::Backoff;

/// One resource of a response, handed to a [`ResourceHandler`].
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceUpdate {
    /// Resource name.
    pub name: String,
    /// Server-assigned version.
    pub version: String,
    /// Other names the server knows it by (e.g. `<network>/<ip>`).
    pub aliases: Vec<String>,
    /// The encoded resource (its `type_url` already checked against the response's).
    pub body: prost_types::Any,
}

/// A resource the handler refused, and why. The client NACKs the response naming it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedResource {
    /// Resource name.
    pub name: String,
    /// Why it was refused (e.g. a decode or validation error).
    pub error: String,
}

impl RejectedResource {
    /// A rejection of `name` because of `error`.
    pub fn new(name: impl Into<String>, error: impl std::fmt::Display) -> Self {
        Self {
            name: name.into(),
            error: error.to_string(),
        }
    }
}

/// Applies the resources of one type URL to the proxy's state.
pub trait ResourceHandler: Send + 'static {
    /// Applies one response: store every valid update, delete `removed` names (which may
    /// include names the handler never had), and return the updates it refused. A refused
    /// update must leave the previous version of that resource in place (last good state).
    fn apply(
        &mut self,
        updates: Vec<ResourceUpdate>,
        removed: Vec<String>,
    ) -> Vec<RejectedResource>;
}

/// Tuning of the client.
#[derive(Debug, Clone, Copy)]
pub struct ClientConfig {
    /// First reconnect delay; doubles per failed attempt (with jitter).
    pub backoff_initial: Duration,
    /// Largest reconnect delay.
    pub backoff_max: Duration,
    /// Largest response message accepted.
    pub max_message_bytes: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            backoff_initial: Duration::from_millis(200),
            backoff_max: Duration::from_secs(15),
            max_message_bytes: 16 * 1024 * 1024,
        }
    }
}

/// Produces the bearer token for each connection attempt (tokens may rotate).
pub type TokenSource = Arc<dyn Fn() -> Option<String> + Send + Sync>;

pub(crate) struct TypeRegistration {
    pub(crate) wildcard: bool,
    /// Readiness waits for this type's first response (false: an optional type, which a
    /// control plane may not serve at all).
    pub(crate) required: bool,
    pub(crate) names: BTreeSet<String>,
    pub(crate) handler: Box<dyn ResourceHandler>,
}

/// Builds an [`XdsClient`]: node identity, credentials and one handler per type URL.
pub struct XdsClientBuilder {
    node: Node,
    config: ClientConfig,
    token: Option<TokenSource>,
    metadata: Vec<(String, String)>,
    types: HashMap<String, TypeRegistration>,
}

impl XdsClientBuilder {
    /// Sets the reconnect and message-size tuning.
    #[must_use]
    pub fn config(mut self, config: ClientConfig) -> Self {
        self.config = config;
        self
    }

    /// Sends `authorization: Bearer <token>` on every stream.
    #[must_use]
    pub fn bearer_token(self, token: impl Into<String>) -> Self {
        let token = token.into();
        self.bearer_token_source(Arc::new(move || Some(token.clone())))
    }

    /// Asks `source` for the bearer token before every connection attempt.
    #[must_use]
    pub fn bearer_token_source(mut self, source: TokenSource) -> Self {
        self.token = Some(source);
        self
    }

    /// Adds a request header (e.g. `clusterid`) sent on every stream.
    #[must_use]
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.push((key.into(), value.into()));
        self
    }

    /// Subscribes to every resource of `type_url`.
    #[must_use]
    pub fn wildcard(self, type_url: &str, handler: impl ResourceHandler) -> Self {
        self.register(type_url, true, BTreeSet::new(), handler)
    }

    /// Subscribes to every resource of `type_url` without making readiness wait for it: a
    /// type the control plane may not serve (others ignore unknown types and never answer).
    #[must_use]
    pub fn optional_wildcard(mut self, type_url: &str, handler: impl ResourceHandler) -> Self {
        self = self.register(type_url, true, BTreeSet::new(), handler);
        if let Some(registration) = self.types.get_mut(type_url) {
            registration.required = false;
        }
        self
    }

    /// Subscribes to the named resources (names or aliases) of `type_url`; more can be added
    /// at runtime with [`XdsClientHandle::subscribe`]. An empty list subscribes to nothing.
    #[must_use]
    pub fn explicit(
        self,
        type_url: &str,
        names: impl IntoIterator<Item = String>,
        handler: impl ResourceHandler,
    ) -> Self {
        self.register(type_url, false, names.into_iter().collect(), handler)
    }

    fn register(
        mut self,
        type_url: &str,
        wildcard: bool,
        names: BTreeSet<String>,
        handler: impl ResourceHandler,
    ) -> Self {
        let registration = TypeRegistration {
            wildcard,
            required: true,
            names,
            handler: Box::new(handler),
        };
        self.types.insert(type_url.to_owned(), registration);
        self
    }

    /// Builds the client (run it with [`XdsClient::run`]) and a handle to control it.
    /// `channel` is built by the caller (address, TLS); tonic reconnects it as needed.
    #[must_use]
    pub fn build(self, channel: Channel) -> (XdsClient, XdsClientHandle) {
        let (commands_tx, commands_rx) = mpsc::unbounded_channel();
        let (state_tx, state_rx) = watch::channel(ClientState::default());
        let session = session::Session::new(
            channel,
            self.node,
            self.config,
            self.token,
            self.metadata,
            self.types,
            commands_rx,
            state_tx,
        );
        let handle = XdsClientHandle {
            commands: commands_tx,
            state: state_rx,
        };
        (XdsClient { session }, handle)
    }
}

/// The client task. It never gives up: it reconnects with backoff until dropped.
pub struct XdsClient {
    session: session::Session,
}

impl XdsClient {
    /// Starts building a client that identifies itself as `node`.
    #[must_use]
    pub fn builder(node: Node) -> XdsClientBuilder {
        XdsClientBuilder {
            node,
            config: ClientConfig::default(),
            token: None,
            metadata: Vec::new(),
            types: HashMap::new(),
        }
    }

    /// Runs the client until the future is dropped (e.g. the spawned task is aborted).
    pub async fn run(self) {
        self.session.run().await;
    }
}

/// Connection and readiness, as observed through [`XdsClientHandle`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientState {
    /// A stream to the control plane is open.
    pub connected: bool,
    /// Every registered type (but optional ones) has received at least one response (stays
    /// true across outages: handlers keep their last good state).
    pub ready: bool,
}

#[derive(Debug)]
pub(crate) enum Command {
    Subscribe {
        type_url: String,
        names: Vec<String>,
    },
    Unsubscribe {
        type_url: String,
        names: Vec<String>,
    },
}

/// Controls a running client: on-demand subscriptions and readiness.
#[derive(Debug, Clone)]
pub struct XdsClientHandle {
    commands: mpsc::UnboundedSender<Command>,
    state: watch::Receiver<ClientState>,
}

impl XdsClientHandle {
    /// Adds names or aliases to an explicit subscription (sent now, and on every reconnect).
    pub fn subscribe(&self, type_url: &str, names: impl IntoIterator<Item = String>) {
        let command = Command::Subscribe {
            type_url: type_url.to_owned(),
            names: names.into_iter().collect(),
        };
        // A closed channel means the client was dropped; nothing left to subscribe.
        let _ = self.commands.send(command);
    }

    /// Removes names from an explicit subscription.
    pub fn unsubscribe(&self, type_url: &str, names: impl IntoIterator<Item = String>) {
        let command = Command::Unsubscribe {
            type_url: type_url.to_owned(),
            names: names.into_iter().collect(),
        };
        let _ = self.commands.send(command);
    }

    /// Current connection/readiness.
    #[must_use]
    pub fn state(&self) -> ClientState {
        *self.state.borrow()
    }

    /// Waits until every registered type has received its first response. Returns
    /// immediately if that already happened; never returns if the client was dropped first.
    pub async fn ready(&self) {
        let mut state = self.state.clone();
        if state.wait_for(|s| s.ready).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
