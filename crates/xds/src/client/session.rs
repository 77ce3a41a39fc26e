//! The client's connect / exchange / reconnect loop and its per-type bookkeeping.

use std::collections::{BTreeSet, HashMap};

use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::metadata::{MetadataKey, MetadataValue};
use tonic::transport::Channel;
use weft_proto::discovery::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use weft_proto::discovery::{DeltaDiscoveryRequest, DeltaDiscoveryResponse, Node, Resource};
use weft_proto::google::rpc::Status as RpcStatus;

use super::backoff::Backoff;
use super::{
    ClientConfig, ClientState, Command, RejectedResource, ResourceUpdate, TokenSource,
    TypeRegistration,
};

/// gRPC `INVALID_ARGUMENT`, the code of a NACK's `error_detail`.
const INVALID_ARGUMENT: i32 = 3;
/// Rejections named individually in one NACK message.
const MAX_NAMED_REJECTIONS: usize = 20;

/// Why one stream attempt ended.
#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("opening the xDS stream failed: {0}")]
    Open(tonic::Status),
    #[error("the xDS stream failed: {0}")]
    Stream(tonic::Status),
    #[error("the control plane closed the xDS stream")]
    ClosedByServer,
    #[error("request header {key:?} has an invalid name or value")]
    BadMetadata { key: String },
}

struct TypeState {
    registration: TypeRegistration,
    /// Accepted resources: name -> version (declared on reconnect).
    known: HashMap<String, String>,
    got_response: bool,
}

pub(crate) struct Session {
    channel: Channel,
    node: Node,
    config: ClientConfig,
    token: Option<TokenSource>,
    metadata: Vec<(String, String)>,
    types: HashMap<String, TypeState>,
    commands: mpsc::UnboundedReceiver<Command>,
    commands_open: bool,
    state: watch::Sender<ClientState>,
}

type RequestSender = mpsc::UnboundedSender<DeltaDiscoveryRequest>;

impl Session {
    #[allow(clippy::too_many_arguments)] // built only by XdsClientBuilder
    pub(crate) fn new(
        channel: Channel,
        node: Node,
        config: ClientConfig,
        token: Option<TokenSource>,
        metadata: Vec<(String, String)>,
        types: HashMap<String, TypeRegistration>,
        commands: mpsc::UnboundedReceiver<Command>,
        state: watch::Sender<ClientState>,
    ) -> Self {
        let types = types
            .into_iter()
            .map(|(type_url, registration)| {
                let state = TypeState {
                    registration,
                    known: HashMap::new(),
                    got_response: false,
                };
                (type_url, state)
            })
            .collect();
        Self {
            channel,
            node,
            config,
            token,
            metadata,
            types,
            commands,
            commands_open: true,
            state,
        }
    }

    pub(crate) async fn run(mut self) {
        let mut backoff = Backoff::new(self.config.backoff_initial, self.config.backoff_max);
        loop {
            let result = self.exchange(&mut backoff).await;
            self.state.send_modify(|s| s.connected = false);
            let delay = backoff.next_delay();
            match result {
                Err(error) => {
                    tracing::warn!(%error, retry_in = ?delay, "xDS connection lost; keeping last good state");
                }
                Ok(()) => tracing::warn!(retry_in = ?delay, "xDS stream ended"),
            }
            self.wait_handling_commands(delay).await;
        }
    }

    /// Sleeps `delay` while still recording subscription changes (sent on reconnect).
    async fn wait_handling_commands(&mut self, delay: std::time::Duration) {
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = &mut sleep => return,
                command = self.commands.recv(), if self.commands_open => match command {
                    Some(command) => { self.apply_command(command); }
                    None => self.commands_open = false,
                },
            }
        }
    }

    /// One stream: send the subscriptions, then answer responses and forward commands.
    async fn exchange(&mut self, backoff: &mut Backoff) -> Result<(), SessionError> {
        let (requests, receiver) = mpsc::unbounded_channel();
        let mut first = true;
        for type_url in self.types.keys() {
            // Only the first request of a stream needs the node.
            let request = self.initial_request(type_url, first);
            first = false;
            let _ = requests.send(request);
        }
        let mut request = tonic::Request::new(UnboundedReceiverStream::new(receiver));
        self.add_metadata(request.metadata_mut())?;
        let mut client = AggregatedDiscoveryServiceClient::new(self.channel.clone())
            .max_decoding_message_size(self.config.max_message_bytes)
            .max_encoding_message_size(self.config.max_message_bytes);
        let mut responses = client
            .delta_aggregated_resources(request)
            .await
            .map_err(SessionError::Open)?
            .into_inner();
        self.state.send_modify(|s| s.connected = true);
        tracing::info!(node = %self.node.id, "xDS stream open");
        loop {
            tokio::select! {
                response = responses.message() => {
                    let response = response.map_err(SessionError::Stream)?
                        .ok_or(SessionError::ClosedByServer)?;
                    backoff.reset();
                    let reply = self.handle_response(response);
                    let _ = requests.send(reply);
                }
                command = self.commands.recv(), if self.commands_open => match command {
                    Some(command) => send_if_any(&requests, self.apply_command(command)),
                    None => self.commands_open = false,
                },
            }
        }
    }

    fn add_metadata(
        &self,
        metadata: &mut tonic::metadata::MetadataMap,
    ) -> Result<(), SessionError> {
        let token = self.token.as_ref().and_then(|source| source());
        let authorization =
            token.map(|token| ("authorization".to_owned(), format!("Bearer {token}")));
        for (key, value) in self.metadata.iter().cloned().chain(authorization) {
            let bad = || SessionError::BadMetadata { key: key.clone() };
            let name = MetadataKey::from_bytes(key.as_bytes()).map_err(|_| bad())?;
            let value = MetadataValue::try_from(value.as_str()).map_err(|_| bad())?;
            metadata.insert(name, value);
        }
        Ok(())
    }

    fn initial_request(&self, type_url: &str, with_node: bool) -> DeltaDiscoveryRequest {
        let mut request = DeltaDiscoveryRequest {
            node: with_node.then(|| self.node.clone()),
            type_url: type_url.to_owned(),
            ..Default::default()
        };
        let Some(state) = self.types.get(type_url) else {
            return request;
        };
        let registration = &state.registration;
        request.resource_names_subscribe = registration.names.iter().cloned().collect();
        if registration.wildcard {
            request.resource_names_subscribe.push("*".to_owned());
        } else if registration.names.is_empty() {
            // An empty first request would mean "everything"; ask for nothing explicitly.
            request.resource_names_subscribe.push("*".to_owned());
            request.resource_names_unsubscribe.push("*".to_owned());
        }
        request.initial_resource_versions = state.known.clone();
        request
    }

    /// Records a subscription change; returns the request announcing it, if any.
    fn apply_command(&mut self, command: Command) -> Option<DeltaDiscoveryRequest> {
        let (type_url, names, subscribe) = match command {
            Command::Subscribe { type_url, names } => (type_url, names, true),
            Command::Unsubscribe { type_url, names } => (type_url, names, false),
        };
        let Some(state) = self.types.get_mut(&type_url) else {
            tracing::warn!(%type_url, "ignoring subscription change for an unregistered xDS type");
            return None;
        };
        let set: &mut BTreeSet<String> = &mut state.registration.names;
        let changed: Vec<String> = names
            .into_iter()
            .filter(|name| {
                if subscribe {
                    set.insert(name.clone())
                } else {
                    set.remove(name)
                }
            })
            .collect();
        if changed.is_empty() {
            return None;
        }
        let mut request = DeltaDiscoveryRequest {
            type_url,
            ..Default::default()
        };
        if subscribe {
            request.resource_names_subscribe = changed;
        } else {
            request.resource_names_unsubscribe = changed;
        }
        Some(request)
    }

    /// Applies a response through its handler and returns the ACK or NACK.
    fn handle_response(&mut self, response: DeltaDiscoveryResponse) -> DeltaDiscoveryRequest {
        let DeltaDiscoveryResponse {
            system_version_info,
            resources,
            type_url,
            nonce,
            removed_resources,
        } = response;
        let mut reply = DeltaDiscoveryRequest {
            type_url: type_url.clone(),
            response_nonce: nonce,
            ..Default::default()
        };
        let Some(state) = self.types.get_mut(&type_url) else {
            reply.error_detail = Some(nack_status(format!(
                "received resources of type {type_url}, which this client did not subscribe to"
            )));
            return reply;
        };
        let (updates, mut rejected) = check_resources(&type_url, resources);
        let offered: Vec<(String, String)> = updates
            .iter()
            .map(|update| (update.name.clone(), update.version.clone()))
            .collect();
        rejected.extend(
            state
                .registration
                .handler
                .apply(updates, removed_resources.clone()),
        );
        for (name, version) in offered {
            if !rejected.iter().any(|r| r.name == name) {
                state.known.insert(name, version);
            }
        }
        for name in &removed_resources {
            state.known.remove(name);
        }
        if !system_version_info.ends_with(crate::PARTIAL_VERSION_SUFFIX) {
            state.got_response = true;
            self.update_readiness();
        }
        if !rejected.is_empty() {
            let message = describe_rejections(&rejected);
            tracing::warn!(%type_url, version = %system_version_info, %message, "NACKing xDS response");
            reply.error_detail = Some(nack_status(message));
        }
        reply
    }

    fn update_readiness(&self) {
        let ready =
            (self.types.values()).all(|state| state.got_response || !state.registration.required);
        if ready && !self.state.borrow().ready {
            tracing::info!(node = %self.node.id, "xDS client ready: every type received");
            self.state.send_modify(|s| s.ready = true);
        }
    }
}

fn send_if_any(requests: &RequestSender, request: Option<DeltaDiscoveryRequest>) {
    if let Some(request) = request {
        let _ = requests.send(request);
    }
}

/// Splits a response's resources into well-formed updates and generic rejections (missing
/// body, or a body of another type).
fn check_resources(
    type_url: &str,
    resources: Vec<Resource>,
) -> (Vec<ResourceUpdate>, Vec<RejectedResource>) {
    let mut updates = Vec::with_capacity(resources.len());
    let mut rejected = Vec::new();
    for resource in resources {
        match resource.resource {
            None => rejected.push(RejectedResource::new(resource.name, "resource has no body")),
            Some(body) if body.type_url != type_url => rejected.push(RejectedResource::new(
                resource.name,
                format!("body has type {}, expected {type_url}", body.type_url),
            )),
            Some(body) => updates.push(ResourceUpdate {
                name: resource.name,
                version: resource.version,
                aliases: resource.aliases,
                body,
            }),
        }
    }
    (updates, rejected)
}

fn describe_rejections(rejected: &[RejectedResource]) -> String {
    let mut message = format!("rejected {} resource(s): ", rejected.len());
    let named: Vec<String> = rejected
        .iter()
        .take(MAX_NAMED_REJECTIONS)
        .map(|r| format!("{}: {}", r.name, r.error))
        .collect();
    message.push_str(&named.join("; "));
    if rejected.len() > MAX_NAMED_REJECTIONS {
        message.push_str("; ...");
    }
    message
}

fn nack_status(message: String) -> RpcStatus {
    RpcStatus {
        code: INVALID_ARGUMENT,
        message,
        details: Vec::new(),
    }
}
