//! The node proxy's DNS proxy (port 15053 inside each captured pod).
//!
//! It answers A and AAAA queries for mesh service names from the mesh state: a service's
//! `hostname` (`<svc>.<ns>.svc.<cluster domain>`, or a ServiceEntry host such as
//! `api.example.com`) resolves to its VIPs. Short names are relative to the asking pod's
//! namespace, as a Kubernetes search path would make them: `<svc>.<ns>` means
//! `<svc>.<ns>.svc.<domain>` and `<svc>` means `<svc>.<pod ns>.svc.<domain>`.
//!
//! Any other name is forwarded to the upstream resolver when one is configured (over UDP,
//! from the pod's network, with the capture bypass mark; one shared socket per pod and a
//! bounded number of queries in flight per pod and per node, see [`forward`]); without one the
//! answer is immediate: NXDOMAIN for names under the cluster domain (this proxy is
//! authoritative there) and REFUSED for the rest. A query must carry exactly one question
//! (RFC 9619 allows a QUERY at most one; none is only for DNS cookies, not implemented
//! here): others get FORMERR without their questions echoed. Message parsing and encoding
//! use `hickory-proto`; this module never touches wire bytes itself.
//!
//! [`DnsResolver`] is the pure part (query bytes in, answer out); [`server`] serves it on
//! UDP and TCP sockets.

mod forward;
pub mod server;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{RData, Record, RecordType};

use crate::proxy::ip_from_bytes;
use crate::state::{MeshState, StateStore};

/// TTL of the answers built from the mesh state (seconds).
pub const ANSWER_TTL: u32 = 30;

/// What a query turned into.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// Send these bytes back.
    Reply(Vec<u8>),
    /// Not a mesh name: forward the query to the upstream resolver.
    Forward,
}

/// Why a query could not be answered at all (nothing useful to send back).
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// The bytes are not a DNS message.
    #[error("malformed DNS query ({len} bytes): {reason}")]
    Malformed {
        /// Size of what was received.
        len: usize,
        /// The parser's message.
        reason: String,
    },
    /// The answer could not be encoded.
    #[error("cannot encode DNS answer for {name}: {reason}")]
    Encode {
        /// The question.
        name: String,
        /// The encoder's message.
        reason: String,
    },
}

/// Hostnames of the mesh services (lower case, no trailing dot) and their VIPs.
#[derive(Debug, Default)]
struct NameIndex {
    generation: u64,
    addresses: HashMap<String, Vec<IpAddr>>,
}

impl NameIndex {
    fn build(state: &MeshState) -> Self {
        let mut addresses: HashMap<String, Vec<IpAddr>> = HashMap::new();
        for service in state.services() {
            let proto = service.proto();
            if proto.hostname.is_empty() {
                continue;
            }
            let mut found: Vec<IpAddr> = (proto.addresses.iter())
                .filter_map(|a| ip_from_bytes(&a.address))
                .collect();
            if found.is_empty() {
                // No VIP (a headless Service, a ServiceEntry without addresses): the name
                // stands for its healthy endpoints' addresses, as cluster DNS answers it;
                // with none (endpoints known by name only) it is not the mesh's to answer.
                let endpoints = service.endpoints().iter().map(|e| &e.workload);
                let healthy = endpoints.filter(|w| w.is_healthy());
                found.extend(healthy.flat_map(|w| w.addresses().iter().copied()));
            }
            if found.is_empty() {
                continue;
            }
            let ips = addresses
                .entry(proto.hostname.trim_end_matches('.').to_ascii_lowercase())
                .or_default();
            ips.extend(found);
            ips.sort();
            ips.dedup();
        }
        Self {
            generation: state.generation(),
            addresses,
        }
    }
}

/// Answers queries from the mesh state. Cheap to clone; the name index is rebuilt once
/// per state generation, on the first query that sees it.
#[derive(Debug, Clone)]
pub struct DnsResolver {
    store: Arc<StateStore>,
    cluster_domain: Arc<str>,
    forward: bool,
    index: Arc<ArcSwap<NameIndex>>,
}

impl DnsResolver {
    /// A resolver over `store`'s services; `forward` says whether an upstream exists.
    #[must_use]
    pub fn new(store: Arc<StateStore>, cluster_domain: &str, forward: bool) -> Self {
        Self {
            store,
            cluster_domain: cluster_domain.trim_matches('.').to_ascii_lowercase().into(),
            forward,
            index: Arc::default(),
        }
    }

    /// Answers `query` asked by a pod in `namespace`.
    ///
    /// # Errors
    /// The query is not a DNS message (drop it) or the answer cannot be encoded.
    pub fn answer(&self, query: &[u8], namespace: &str) -> Result<Answer, DnsError> {
        let request = Message::from_vec(query).map_err(|e| DnsError::Malformed {
            len: query.len(),
            reason: e.to_string(),
        })?;
        let mut response = Message::response(request.id, request.op_code);
        response.metadata.recursion_desired = request.recursion_desired;
        response.metadata.recursion_available = self.forward;
        // Only a single question is echoed. RFC 9619: a QUERY carries exactly one; a
        // QUERY with none or several is malformed and gets FORMERR.
        let single = match request.queries.as_slice() {
            [question] => Some(question),
            _ => None,
        };
        response.add_queries(single.cloned());
        let name = single.map_or_else(|| "<no question>".to_owned(), |q| q.name.to_ascii());
        if request.message_type != MessageType::Query || request.op_code != OpCode::Query {
            return encode(&with_code(response, ResponseCode::NotImp), &name);
        }
        let Some(question) = single else {
            return encode(&with_code(response, ResponseCode::FormErr), &name);
        };
        let index = self.index();
        match self.lookup(&index, &name, namespace) {
            Some(ips) => {
                response.metadata.authoritative = true;
                for ip in ips {
                    let rdata = match (ip, question.query_type) {
                        (IpAddr::V4(v4), RecordType::A) => RData::A(A(*v4)),
                        (IpAddr::V6(v6), RecordType::AAAA) => RData::AAAA(AAAA(*v6)),
                        _ => continue,
                    };
                    response.add_answer(Record::from_rdata(
                        question.name.clone(),
                        ANSWER_TTL,
                        rdata,
                    ));
                }
                encode(&response, &name)
            }
            None if self.forward => Ok(Answer::Forward),
            None if self.in_cluster_domain(&name) => {
                response.metadata.authoritative = true;
                encode(&with_code(response, ResponseCode::NXDomain), &name)
            }
            None => encode(&with_code(response, ResponseCode::Refused), &name),
        }
    }

    /// A SERVFAIL answer to `query` (the upstream did not answer); `None` if `query`
    /// is not a DNS message.
    #[must_use]
    pub fn server_failure(query: &[u8]) -> Option<Vec<u8>> {
        let request = Message::from_vec(query).ok()?;
        let mut response = Message::error_msg(request.id, request.op_code, ResponseCode::ServFail);
        // The question is echoed only when there is exactly one (see `answer`).
        if let [question] = request.queries.as_slice() {
            response.add_query(question.clone());
        }
        response.to_vec().ok()
    }

    /// The index for the current state generation.
    fn index(&self) -> Arc<NameIndex> {
        let current = self.index.load_full();
        let state = self.store.snapshot();
        if current.generation == state.generation() {
            return current;
        }
        let fresh = Arc::new(NameIndex::build(&state));
        self.index.store(Arc::clone(&fresh));
        fresh
    }

    /// The service addresses `name` means for a pod in `namespace`.
    fn lookup<'a>(
        &self,
        index: &'a NameIndex,
        name: &str,
        namespace: &str,
    ) -> Option<&'a [IpAddr]> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let domain = &self.cluster_domain;
        let candidates = [
            Some(name.clone()),
            // `<svc>.<ns>`
            (name.matches('.').count() == 1).then(|| format!("{name}.svc.{domain}")),
            // `<svc>`
            (!name.contains('.') && !namespace.is_empty())
                .then(|| format!("{name}.{namespace}.svc.{domain}")),
        ];
        candidates
            .into_iter()
            .flatten()
            .find_map(|candidate| index.addresses.get(&candidate).map(Vec::as_slice))
    }

    fn in_cluster_domain(&self, name: &str) -> bool {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        name == *self.cluster_domain || name.ends_with(&format!(".{}", self.cluster_domain))
    }
}

/// `response` with its response code set to `code`.
fn with_code(mut response: Message, code: ResponseCode) -> Message {
    response.metadata.response_code = code;
    response
}

fn encode(response: &Message, name: &str) -> Result<Answer, DnsError> {
    response
        .to_vec()
        .map(Answer::Reply)
        .map_err(|e| DnsError::Encode {
            name: name.to_owned(),
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests;
