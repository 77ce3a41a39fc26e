//! One delta ADS stream: reads requests, tracks subscriptions per type, and sends the
//! latest differences whenever its bounded send queue has room (so a slow reader gets the
//! newest state once it drains, never a backlog of old versions).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tonic::{Status, Streaming};
use weft_proto::discovery::{DeltaDiscoveryRequest, DeltaDiscoveryResponse, Node, Resource};

use super::Shared;
use super::held::{HeldRemovals, Progress};
use super::subscription::{Delta, TypeSubscription};
use crate::publisher::Published;
use crate::resource::TypeResources;
use crate::status::{NackStatus, StatusEntry, TypeStatus, VersionNonce, string_metadata};

/// Responses awaiting ACK/NACK that are remembered (older ones are forgotten).
const MAX_IN_FLIGHT: usize = 64;

/// Resource types one stream may subscribe to (weft serves a handful; Istio's proxies ask
/// for fewer than ten).
pub(crate) const MAX_TYPES_PER_STREAM: usize = 32;
/// Resource names one stream may subscribe to by name, over all its types. Far above what a
/// node proxy asks for (a wildcard and a few on-demand names), it bounds what one token
/// holder's requests can make the control plane keep. A reconnecting client's declared
/// versions (`initial_resource_versions`, everything it holds: the whole mesh for a wildcard
/// client) are bounded apart: at most this many beyond what the server publishes of the type.
pub(crate) const MAX_NAMES_PER_STREAM: usize = 100_000;

pub(crate) type ResponseSender = mpsc::Sender<Result<DeltaDiscoveryResponse, Status>>;

#[derive(Debug)]
struct InFlight {
    type_url: String,
    response: VersionNonce,
}

/// Everything one stream knows.
pub(crate) struct StreamState {
    shared: Arc<Shared>,
    stream_id: u64,
    node_id: String,
    /// The `clusterid` header of the call; used when `Node.cluster` is empty.
    header_cluster: String,
    nonce_counter: u64,
    types: BTreeMap<String, TypeSubscription>,
    /// Removals held back for make-before-break across types.
    held: HeldRemovals,
    in_flight: VecDeque<InFlight>,
    /// Per type: when the oldest edit not yet pushed happened (for push latency).
    pending_since: HashMap<String, Instant>,
    empty: Arc<TypeResources>,
    status: StatusEntry,
    /// The authenticated principal: decides which restricted resources it receives.
    principal: String,
}

impl StreamState {
    pub(crate) fn new(
        shared: Arc<Shared>,
        stream_id: u64,
        header_cluster: String,
        status: StatusEntry,
        principal: String,
    ) -> Self {
        Self {
            shared,
            stream_id,
            node_id: String::new(),
            header_cluster,
            nonce_counter: 0,
            types: BTreeMap::new(),
            held: HeldRemovals::default(),
            in_flight: VecDeque::new(),
            pending_since: HashMap::new(),
            empty: Arc::default(),
            status,
            principal,
        }
    }

    /// Drives the stream until the client goes away or sends something invalid.
    pub(crate) async fn run(
        mut self,
        mut requests: Streaming<DeltaDiscoveryRequest>,
        responses: ResponseSender,
        mut snapshots: watch::Receiver<Arc<Published>>,
        mut revoked: oneshot::Receiver<()>,
    ) {
        let mut current = Arc::clone(&snapshots.borrow_and_update());
        let mut publisher_alive = true;
        let mut revocable = true;
        loop {
            let has_work = current.initialized
                && (!self.held.is_empty() || self.types.values().any(TypeSubscription::is_dirty));
            tokio::select! {
                request = requests.message() => match request {
                    Ok(Some(request)) => {
                        if let Err(status) = self.handle_request(request, &current) {
                            tracing::warn!(node = %self.node_id, %status, "closing xDS stream");
                            let _ = responses.send(Err(status)).await;
                            return;
                        }
                    }
                    Ok(None) => return,
                    Err(status) => {
                        tracing::debug!(node = %self.node_id, %status, "xDS stream ended");
                        return;
                    }
                },
                changed = snapshots.changed(), if publisher_alive => {
                    if changed.is_ok() {
                        current = Arc::clone(&snapshots.borrow_and_update());
                        self.resources_changed(&current);
                    } else {
                        publisher_alive = false;
                    }
                },
                signal = &mut revoked, if revocable => {
                    if signal.is_ok() {
                        tracing::warn!(node = %self.node_id, "closing xDS stream: its credential is no longer accepted");
                        let status = Status::unauthenticated("credential no longer accepted");
                        let _ = responses.send(Err(status)).await;
                        return;
                    }
                    revocable = false;
                },
                permit = responses.reserve(), if has_work => {
                    let Ok(permit) = permit else { return };
                    if let Some(response) = self.next_response(&current) {
                        permit.send(Ok(response));
                    }
                },
            }
        }
    }

    fn handle_request(
        &mut self,
        request: DeltaDiscoveryRequest,
        current: &Published,
    ) -> Result<(), Status> {
        if request.type_url.is_empty() {
            return Err(Status::invalid_argument(
                "DeltaDiscoveryRequest has an empty type_url",
            ));
        }
        if let Some(node) = &request.node {
            self.record_node(node);
        }
        if !request.response_nonce.is_empty() {
            self.handle_ack_or_nack(&request);
        }
        let DeltaDiscoveryRequest {
            type_url,
            resource_names_subscribe: subscribe,
            resource_names_unsubscribe: unsubscribe,
            initial_resource_versions,
            ..
        } = request;
        let published = self.resources_of(current, &type_url).len();
        self.check_limits(&type_url, &subscribe, &initial_resource_versions, published)?;
        if let Some(subscription) = self.types.get_mut(&type_url) {
            subscription.change(subscribe, unsubscribe);
        } else {
            tracing::debug!(node = %self.node_id, %type_url, ?subscribe, "new xDS subscription");
            let subscription =
                TypeSubscription::first_request(subscribe, unsubscribe, initial_resource_versions)
                    .read_as(&self.principal);
            self.types.insert(type_url.clone(), subscription);
        }
        self.refresh_status(&type_url, current);
        Ok(())
    }

    /// Refuses a request that would take the stream over [`MAX_TYPES_PER_STREAM`] or
    /// [`MAX_NAMES_PER_STREAM`] subscribed names (counting every name it subscribes as new:
    /// a bound, not an exact count), or that declares more versions than the `published`
    /// resources of its type plus [`MAX_NAMES_PER_STREAM`].
    fn check_limits(
        &self,
        type_url: &str,
        subscribe: &[String],
        declared: &HashMap<String, String>,
        published: usize,
    ) -> Result<(), Status> {
        if !self.types.contains_key(type_url) && self.types.len() >= MAX_TYPES_PER_STREAM {
            return Err(Status::resource_exhausted(format!(
                "a stream may subscribe to at most {MAX_TYPES_PER_STREAM} resource types; {type_url} is one more"
            )));
        }
        let held: usize = self
            .types
            .values()
            .map(TypeSubscription::subscribed_names)
            .sum();
        if held + subscribe.len() > MAX_NAMES_PER_STREAM {
            return Err(Status::resource_exhausted(format!(
                "a stream may subscribe to at most {MAX_NAMES_PER_STREAM} resource names; it \
                 holds {held} and this request adds {}",
                subscribe.len()
            )));
        }
        if declared.len() > published + MAX_NAMES_PER_STREAM {
            return Err(Status::resource_exhausted(format!(
                "{} declared resource versions for {type_url}, which has {published}: at most \
                 {MAX_NAMES_PER_STREAM} more than it has",
                declared.len()
            )));
        }
        Ok(())
    }

    fn record_node(&mut self, node: &Node) {
        if self.node_id == node.id {
            return;
        }
        self.node_id.clone_from(&node.id);
        let cluster = if node.cluster.is_empty() {
            &self.header_cluster
        } else {
            &node.cluster
        };
        tracing::info!(stream = self.stream_id, node = %node.id, %cluster, "xDS proxy connected");
        self.status.update(|status| {
            status.node_id.clone_from(&node.id);
            status.cluster.clone_from(cluster);
            status.metadata = string_metadata(node.metadata.as_ref());
        });
    }

    fn handle_ack_or_nack(&mut self, request: &DeltaDiscoveryRequest) {
        let response = self
            .take_in_flight(&request.type_url, &request.response_nonce)
            .unwrap_or_else(|| VersionNonce {
                version: String::new(),
                nonce: request.response_nonce.clone(),
            });
        match &request.error_detail {
            Some(error) => self.record_nack(&request.type_url, response, &error.message),
            None => self.status.update(|status| {
                let entry = status.types.entry(request.type_url.clone()).or_default();
                entry.last_acked = Some(response);
            }),
        }
    }

    /// Forgets the answered response and older responses of the same type (superseded).
    fn take_in_flight(&mut self, type_url: &str, nonce: &str) -> Option<VersionNonce> {
        let is_answered =
            |sent: &InFlight| sent.type_url == type_url && sent.response.nonce == nonce;
        if !self.in_flight.iter().any(is_answered) {
            return None;
        }
        let mut answered = None;
        self.in_flight.retain(|sent| {
            if answered.is_some() || sent.type_url != type_url {
                return true;
            }
            if sent.response.nonce == nonce {
                answered = Some(sent.response.clone());
            }
            false
        });
        answered
    }

    fn record_nack(&self, type_url: &str, response: VersionNonce, error: &str) {
        tracing::warn!(
            node = %self.node_id,
            %type_url,
            version = %response.version,
            nonce = %response.nonce,
            %error,
            "proxy rejected xDS response (NACK); not resending that version"
        );
        self.shared.metrics.record_nack(type_url);
        self.status.update(|status| {
            let entry = status.types.entry(type_url.to_owned()).or_default();
            entry.nacks += 1;
            entry.last_nack = Some(NackStatus {
                response,
                error: error.to_owned(),
            });
        });
    }

    fn resources_changed(&mut self, current: &Published) {
        let type_urls: Vec<String> = self.types.keys().cloned().collect();
        for type_url in type_urls {
            if let Some(subscription) = self.types.get_mut(&type_url) {
                subscription.resources_changed();
            }
            self.pending_since
                .entry(type_url.clone())
                .or_insert(current.first_edit_at);
            self.refresh_status(&type_url, current);
        }
    }

    fn resources_of(&self, current: &Published, type_url: &str) -> Arc<TypeResources> {
        current
            .snapshot
            .resources(type_url)
            .map_or_else(|| Arc::clone(&self.empty), Arc::clone)
    }

    /// The next response, if any. Make-before-break across types: a removal found while
    /// other types have changes to send is held back until each of them has completed
    /// the diff it had then (or has nothing pending), so the new and changed resources that
    /// may refer to what is removed reach the client first; types go in type URL order,
    /// which puts `istio.security.Authorization` before the `istio.workload.Address`
    /// resources that refer to its policies.
    fn next_response(&mut self, current: &Published) -> Option<DeltaDiscoveryResponse> {
        if let Some(released) = self.release_held(current) {
            return Some(released);
        }
        let max_bytes = self.shared.config.max_response_bytes;
        let dirty: Vec<String> = self
            .types
            .iter()
            .filter(|(_, subscription)| subscription.is_dirty())
            .map(|(type_url, _)| type_url.clone())
            .collect();
        for type_url in dirty {
            let resources = self.resources_of(current, &type_url);
            let waits_for: Vec<(String, u64)> = self
                .types
                .iter()
                .filter(|(other, subscription)| **other != type_url && subscription.is_dirty())
                .map(|(other, subscription)| (other.clone(), subscription.completed_diffs()))
                .collect();
            let delta = self
                .types
                .get_mut(&type_url)
                .and_then(|subscription| subscription.next_delta(&resources, max_bytes))
                .and_then(|delta| self.hold_removals(&type_url, delta, waits_for));
            let pending_since = self.pending_since.remove(&type_url);
            if let Some(delta) = delta {
                let response = self.build_response(&type_url, resources.generation(), delta);
                let latency = pending_since.map(|since| since.elapsed());
                self.shared.metrics.record_push(&type_url, latency);
                self.refresh_status(&type_url, current);
                return Some(response);
            }
            self.refresh_status(&type_url, current);
        }
        self.release_held(current)
    }

    /// `delta` of `type_url` without its removals when other types had changes pending
    /// (`waits_for`): those are held back. `None` when nothing is left to send now.
    fn hold_removals(
        &mut self,
        type_url: &str,
        mut delta: Delta,
        waits_for: Vec<(String, u64)>,
    ) -> Option<Delta> {
        let upserted = delta.upserts.iter().map(|r| r.name.as_str());
        self.held.forget(type_url, upserted);
        if waits_for.is_empty() || delta.removed.is_empty() {
            self.held
                .forget(type_url, delta.removed.iter().map(String::as_str));
            return Some(delta);
        }
        self.held
            .hold(type_url, std::mem::take(&mut delta.removed), waits_for);
        (!delta.upserts.is_empty() || delta.more).then_some(delta)
    }

    /// Held-back removals whose wait is over, one type per response.
    fn release_held(&mut self, current: &Published) -> Option<DeltaDiscoveryResponse> {
        let types = &self.types;
        let (type_url, removed) = self.held.take_ready(|type_url| {
            types.get(type_url).map(|subscription| Progress {
                completed_diffs: subscription.completed_diffs(),
                pending: subscription.is_dirty(),
            })
        })?;
        let generation = self.resources_of(current, &type_url).generation();
        let delta = Delta {
            removed,
            ..Delta::default()
        };
        let response = self.build_response(&type_url, generation, delta);
        self.refresh_status(&type_url, current);
        Some(response)
    }

    fn build_response(
        &mut self,
        type_url: &str,
        generation: u64,
        delta: Delta,
    ) -> DeltaDiscoveryResponse {
        self.nonce_counter += 1;
        let nonce = format!("{}-{}", self.stream_id, self.nonce_counter);
        let version = if delta.more {
            format!("{generation}{}", crate::PARTIAL_VERSION_SUFFIX)
        } else {
            generation.to_string()
        };
        tracing::debug!(
            node = %self.node_id, %type_url, %nonce, %version,
            upserts = delta.upserts.len(), removed = delta.removed.len(),
            "sending xDS response"
        );
        let sent = VersionNonce {
            version: version.clone(),
            nonce: nonce.clone(),
        };
        self.in_flight.push_back(InFlight {
            type_url: type_url.to_owned(),
            response: sent.clone(),
        });
        if self.in_flight.len() > MAX_IN_FLIGHT {
            self.in_flight.pop_front();
        }
        self.status.update(|status| {
            status
                .types
                .entry(type_url.to_owned())
                .or_default()
                .last_sent = Some(sent);
        });
        DeltaDiscoveryResponse {
            system_version_info: version,
            resources: delta
                .upserts
                .iter()
                .map(|resource| Resource {
                    version: resource.version.clone(),
                    resource: Some(resource.body.clone()),
                    name: resource.name.clone(),
                    aliases: resource.aliases.clone(),
                    ttl: None,
                    cache_control: None,
                })
                .collect(),
            type_url: type_url.to_owned(),
            nonce,
            removed_resources: delta.removed,
        }
    }

    fn refresh_status(&self, type_url: &str, current: &Published) {
        let Some(subscription) = self.types.get(type_url) else {
            return;
        };
        let current_version = self
            .resources_of(current, type_url)
            .generation()
            .to_string();
        let held = self.held.holds(type_url);
        self.status.update(|status| {
            let entry: &mut TypeStatus = status.types.entry(type_url.to_owned()).or_default();
            entry.wildcard = subscription.is_wildcard();
            entry.subscribed_names = subscription.subscribed_names();
            entry.resources = subscription.client_resource_count();
            entry.current_version = current_version;
            entry.in_sync = !subscription.is_dirty()
                && !held
                && entry.last_sent.is_some()
                && entry.last_sent == entry.last_acked;
        });
    }
}
