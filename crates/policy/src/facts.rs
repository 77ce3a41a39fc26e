//! What the engine is told about a connection ([`ConnectionFacts`]) and, at an L7 proxy,
//! about one HTTP request on it ([`RequestFacts`]).

use std::net::{IpAddr, SocketAddr};

use weft_identity::SpiffeId;

/// How a connection reached the enforcing proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// Mutual TLS HBONE tunnel; the peer identity comes from its certificate.
    Hbone,
    /// Plain TCP; there is no peer identity.
    Plaintext,
}

/// What the policy engine knows about a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionFacts {
    /// Verified peer identity (`None` for plaintext: principal, namespace and service
    /// account rules then cannot match, and their `not_` forms hold).
    pub source_identity: Option<SpiffeId>,
    /// Original source IP of the client workload.
    pub source_ip: IpAddr,
    /// Destination workload address and target port (after service VIP resolution).
    pub destination: SocketAddr,
    /// How the connection arrived.
    pub transport: Transport,
}
